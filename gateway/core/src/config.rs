//! Gateway configuration: one struct, every field documented with its unit,
//! default and memory cost. Loaded from TOML (`--config FILE`), overridden by
//! command-line flags, validated once at start ([`Config::validate`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub mod sections;

pub use storage::Durability;

/// The largest accepted `max_text_chars`: JSON escapes a control character
/// as six bytes (`\u0001`), and one message must fit a 2 MiB server frame
/// with room for its other fields (≤ ~16 KiB escaped): (2 MiB − 16 KiB) / 6.
pub const MAX_TEXT_CHARS_LIMIT: usize = 346_000;

/// The shortest accepted `auth_secret`, in bytes: 256 bits, the size of the
/// HMAC-SHA256 output (RFC 7518 §3.2 requires a key at least that long).
pub const MIN_AUTH_SECRET_BYTES: usize = 32;

/// Errors found when validating a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A field has a value outside its allowed range.
    #[error(
        "config field `{}` (top-level alias `{field}`): {reason}",
        sections::home_of(field)
    )]
    Invalid {
        /// Field name as in the TOML file.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The config file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// Path of the file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has a value of the wrong type.
    #[error("config file {path}: {source}")]
    Toml {
        /// Path of the file (`-` for text given directly).
        path: String,
        /// The parser's error, with line and column.
        #[source]
        source: toml::de::Error,
    },
    /// A key is unknown in its section or given twice.
    #[error("config file {path}: {source}")]
    Section {
        /// Path of the file (`-` for text given directly).
        path: String,
        /// What is wrong.
        #[source]
        source: sections::SectionError,
    },
}

/// Durability level as written in the config file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilitySetting {
    /// Acked only after fsync (the default).
    #[default]
    Fsync,
    /// Acked once written to the OS: survives a process crash, not a power cut.
    Buffered,
}

impl From<DurabilitySetting> for Durability {
    fn from(d: DurabilitySetting) -> Durability {
        match d {
            DurabilitySetting::Fsync => Durability::Fsync,
            DurabilitySetting::Buffered => Durability::Buffered,
        }
    }
}

/// Which storage backend holds history, membership and cursors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The embedded engine in `data_dir` (the default; no setup).
    #[default]
    Embedded,
    /// FoundationDB (`fdb_cluster_file`); needs a gateway built with the
    /// cargo feature `fdb` and a libfdb_c. See docs/storage.md.
    Fdb,
}

/// How log lines are written (to standard error).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event; ANSI colours only on a terminal.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, and
    /// `fields` holding `message` and every field of the event), for log
    /// collectors.
    Json,
}

/// The whole gateway configuration. `Serialize` lets tests compare files
/// (the example config) against the defaults; the auth secret is never
/// serialized.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address every shard listens on (`SO_REUSEPORT`). Default
    /// `127.0.0.1:8080`; port 0 picks a free port (shared by all shards).
    pub listen: SocketAddr,
    /// Data directory of the embedded store (and of files the gateway
    /// writes whatever the store, e.g. the push dead-letter file). Default
    /// `./data`.
    pub data_dir: PathBuf,
    /// Storage backend: `embedded` (default) or `fdb`.
    pub store: StoreKind,
    /// FoundationDB cluster file for `store = "fdb"`. Default: FDB's own
    /// default (`FDB_CLUSTER_FILE`, else `/etc/foundationdb/fdb.cluster`).
    pub fdb_cluster_file: Option<PathBuf>,
    /// FoundationDB namespace: keys live under the tuple `("chatgw",
    /// fdb_namespace)`, so deployments can share a cluster. Every gateway
    /// node of one deployment uses the same. Default `default`.
    pub fdb_namespace: String,
    /// Number of shards (executors, one per core). Default: one per online core.
    pub shards: Option<usize>,
    /// HMAC secret for tokens, at least [`MIN_AUTH_SECRET_BYTES`] (32) bytes
    /// (a shorter one is refused at start). With none, the gateway runs in dev auth
    /// (`?user=&device=` trusted), allowed only on a loopback listener.
    #[serde(skip_serializing)]
    pub auth_secret: Option<String>,
    /// Browser origins (`scheme://host[:port]`) whose pages may use the
    /// gateway: a WebSocket upgrade or HTTP API request with an `Origin`
    /// header that is not allowed gets HTTP 403; an allowed one gets CORS
    /// headers (`Access-Control-Allow-Origin` echoed, preflights answered).
    /// Requests without `Origin` (non-browser clients) are not affected.
    /// Pages of the gateway's own origin (the request's `Host`) are always
    /// allowed, and in dev auth so are loopback origins (`localhost`,
    /// `127.0.0.0/8`, `[::1]`). `"*"` allows every origin; `"null"` the
    /// opaque origin of sandboxed frames and `file:` pages. Default: empty
    /// (same origin only). Memory: a few bytes per entry, once.
    pub allowed_origins: Vec<String>,
    /// When an ack is given: `fsync` (on disk, default) or `buffered`.
    pub durability: DurabilitySetting,
    /// Maximum concurrent connections of the process (WebSocket and HTTP).
    /// Default: the open-file limit minus [`Config::reserved_fds`]. Each
    /// connection holds one file descriptor; connections past the maximum get
    /// HTTP 503 and are closed.
    pub max_connections: Option<usize>,
    /// File descriptors kept free for the store, listeners and the runtime
    /// when the default maximum of connections is derived. Default 512.
    pub reserved_fds: usize,
    /// The listen backlog of each shard's listening socket: connections the
    /// kernel completes and queues before the shard accepts them. A burst
    /// of connects past it (every client reconnecting after a restart)
    /// loses SYNs, and each lost one costs its client a 1 s retransmit:
    /// 4,096 took a 10,000-connection storm from ~7,300 to ~17,000
    /// upgrades/s here (glommio, the executor before 2026-12-05, listened
    /// with 1,024 in its own `bind`). The kernel caps it at
    /// `net.core.somaxconn` (4,096 since Linux 5.4). Costs kernel memory
    /// only for connections actually queued. Default 4,096; 1..=65,535.
    pub listen_backlog: u32,
    /// Largest WebSocket message a client may send, in bytes (after
    /// reassembly of fragments). Larger frames close the connection with 1009.
    /// Default 2 MiB. Memory: a connection buffers at most one partial frame.
    pub max_frame_bytes: usize,
    /// Longest text, in Unicode scalar values. Default 100,000.
    pub max_text_chars: usize,
    /// Per-connection outbox budget in bytes. Past it, live messages stop
    /// queueing for that connection (it catches up from history as its socket
    /// drains) and the gateway stops reading its requests. One frame is always
    /// admitted into an empty outbox, so the worst case per connection is
    /// max(budget, one frame) plus the replies to one read. Default 256 KiB;
    /// idle connections hold no outbox memory.
    pub outbox_budget_bytes: usize,
    /// Size of the one read buffer each shard shares between all its
    /// connections, in bytes. Default 64 KiB (per shard, not per connection).
    pub read_chunk_bytes: usize,
    /// `SO_SNDBUF` for accepted sockets in bytes; 0 keeps the kernel default
    /// (autotuning). Smaller values bound kernel memory per slow client.
    pub socket_send_buffer_bytes: usize,
    /// The flush tick, in microseconds: a connection's pending output is
    /// written at most once per tick. The first write after a quiet tick
    /// goes at once (a connection that writes rarely — a DM, a small room
    /// — never waits); what is queued after it waits for the next tick and
    /// goes in one write with everything else queued meanwhile. A member of
    /// a busy room then gets one TCP segment per tick instead of one per
    /// batch: on loopback a small segment costs ~8–11 µs of kernel time, so
    /// this is what bounds a big room's fan-out. Costs: up to one tick of
    /// added delivery and ack latency on busy connections, one shared timer
    /// per shard; no memory per connection. 0 turns it off (each turn's
    /// output is written when the driver runs). Default 0 (see
    /// docs/benchmarks.md for the measurement). At most 1,000,000 (1 s).
    pub flush_tick_us: u64,
    /// Drive each shard's WebSocket sessions from one io_uring of the
    /// shard's own (`gateway/src/ring.rs`): a session is then an entry in
    /// the shard's map (fd, decoder, flags; ~0.3 KB with the core's state
    /// besides) and one multishot poll in the kernel, instead of a task
    /// and stream per connection (~1.3 KB more, measured under glommio,
    /// the executor before 2026-12-05). `false` runs every session as a
    /// task of its own (`driver.rs`, the earlier driver). If the ring
    /// cannot be set up (io_uring refused) the shard logs it and uses tasks.
    /// Default true.
    pub socket_ring: bool,
    /// Accept permessage-deflate (RFC 7692) from clients that offer it
    /// (browsers always do). Negotiated with no context takeover both ways,
    /// so the gateway keeps no compressor or inflater per connection: each
    /// committed batch is compressed once (by the first shard with such a
    /// member) and the same bytes go to every such member; client messages
    /// are inflated by one inflater per shard, bounded by `max_frame_bytes`
    /// (a deflate bomb closes with 1009). Costs: per shard, a compressor
    /// (~300 KiB) and an inflater (~43 KiB), allocated on first use; per
    /// batch with such a member, its compressed copy (smaller than the
    /// plain frames) for as long as the batch lives; per message about
    /// 10–20 µs of CPU once (docs/benchmarks.md). Clients that do not offer
    /// it get plain frames. Default true.
    pub permessage_deflate: bool,
    /// Heartbeat interval announced in `hello`, in milliseconds; a
    /// connection silent for twice this long is closed with 4008. Default 30,000.
    pub heartbeat_ms: u64,
    /// Time allowed for the HTTP upgrade request, in milliseconds. Default 10,000.
    pub handshake_timeout_ms: u64,
    /// Largest HTTP request head accepted, in bytes. Default 16 KiB.
    pub max_request_head_bytes: usize,
    /// Capacity of each shard-to-shard queue, in messages. Default 4,096.
    /// Memory: taken as messages queue, 112 bytes each in blocks of 31, and
    /// given back a block at a time as they are read; an idle queue holds at most one block
    /// (~3.5 KB), so nr_shards × (nr_shards − 1) × 3.5 KB at most when
    /// idle (3.4 MB with 32 shards), up to capacity × 112 bytes per queue
    /// while one is full (0.44 MiB at the default).
    pub mesh_queue_capacity: usize,
    /// Messages one shard keeps for a peer whose queue is full, in order;
    /// past it further batches to that peer become head notices (the
    /// replica's members page the gap from the store). Default 8,192.
    pub mesh_backlog_messages: usize,
    /// Most messages one shard puts in one store commit. Default 4,096.
    pub commit_max_messages: usize,
    /// The shortest time between the starts of two commits of one shard,
    /// in microseconds: the first message after idle waits that long, and
    /// messages arriving meanwhile share its durable write. 0 (default)
    /// commits at once: the lowest latency. Under load batches form anyway
    /// (messages arriving during a commit go in the next one, and a commit
    /// that takes longer than the linger is followed at once); at low rates
    /// each message pays for its own fsync and thread hand-off, and a
    /// linger of ~1,000 µs trades up to that much added ack and delivery
    /// latency for fewer, larger commits. At most 100,000.
    pub commit_linger_us: u64,
    /// Most bytes of text one shard puts in one store commit (one message
    /// always goes). Default 8 MiB. Bounds a commit's batch memory.
    pub commit_max_bytes: usize,
    /// Capacity of the embedded store's block cache, in bytes (history and
    /// catch-up reads). Default 64 MiB, once per process; costs that much
    /// memory once reads have warmed it. At least 1 MiB.
    pub store_cache_bytes: u64,
    /// Size at which each of the embedded store's keyspaces seals its write
    /// buffer (memtable) and flushes it to disk, in bytes. Default 16 MiB
    /// (fjall's own default is 64). Memory: the keyspaces written per
    /// message (messages, heads, dedup keys) each fill theirs under load,
    /// so plan on ~3× this once warm, plus a sealed one while it flushes.
    /// Applies to a data directory when it is created (the store keeps it).
    /// 1 MiB ..= 1 GiB.
    pub store_memtable_bytes: u64,
    /// Bytes of recent committed batches each room replica keeps for fast
    /// resume and catch-up. Default 256 KiB per replica (a replica exists per
    /// shard for each channel with local subscribers); all of a shard's
    /// replicas together keep at most [`Config::replica_rings_bytes`].
    pub replica_ring_bytes: usize,
    /// Bytes of recent committed batches one shard keeps over all its
    /// replicas' rings: past it the shard forgets its oldest batches first,
    /// whichever channel they belong to (catch-up then reads the store).
    /// Bounds ring memory per shard whatever the number of channels (a
    /// thousand DMs × 256 KiB would otherwise be 256 MiB). Default 16 MiB
    /// per shard; at least 64 KiB.
    pub replica_rings_bytes: usize,
    /// Messages fetched from history per catch-up step. Default 256.
    pub catchup_page_messages: usize,
    /// How long a catch-up waits before reading again after a failed or
    /// empty read, in milliseconds. Default 100.
    pub catchup_retry_ms: u64,
    /// Audience tier `digest`: the shortest time between two deliveries to
    /// one member that joined with `mode: "digest"`, in milliseconds.
    /// What the channel committed meanwhile goes in one write (consecutive
    /// `msg` frames, up to the outbox budget). A delivery more than this
    /// after the previous one goes at once. Adds up to this much delivery
    /// latency for digest members, and saves them one write (one TCP
    /// segment) per batch beyond the first of each interval. Costs one
    /// timer per shard per distinct due time (rounded up to 10 ms, shared
    /// by every member due then) and one timer entry per member waiting;
    /// nothing else beyond its cursor. Default 250; 1..=60,000.
    pub digest_interval_ms: u64,
    /// Audience tier `counts`: the shortest time between two `head` events
    /// to one member that joined with `mode: "counts"`, in milliseconds.
    /// Such a member gets no messages, only the channel's head while it
    /// moves (for an unread badge). Default 2,000; 1..=600,000.
    pub counts_interval_ms: u64,
    /// How long a closing connection may take to flush what is queued (acks
    /// owed included) before its socket is dropped, in milliseconds.
    /// Default 5,000.
    pub close_flush_ms: u64,
    /// After a close frame, how long the socket is half-closed and drained
    /// (so a client still writing reads the close code), in milliseconds.
    /// Default 1,000.
    pub close_linger_ms: u64,
    /// Largest `history` reply frame, in bytes as encoded (JSON escapes
    /// included), never more than the 2 MiB server-frame maximum: a page
    /// stops early (`has_more` true) rather than pass it, and always holds at
    /// least one message. Also the text bytes one store read of a page takes
    /// at most. Default 1 MiB. Memory: a connection holds at most one page
    /// beyond its outbox budget (see `outbox_budget_bytes`).
    pub history_page_bytes: usize,
    /// How long a graceful shutdown waits for acks and close frames to flush,
    /// in milliseconds. Default 3,000.
    pub shutdown_grace_ms: u64,
    /// Drain, first step: after SIGTERM, how long `/readyz` answers 503 while
    /// the listener still accepts and serves new connections, so load
    /// balancers stop sending new clients before the port closes, in
    /// milliseconds. Skipped when no connection is open. Default 5,000.
    pub drain_notice_ms: u64,
    /// Drain, second step: after the listener closed, the window over which
    /// open WebSocket and SSE sessions are closed with 1001 — each at its own
    /// random time in the window, so clients reconnect spread out rather
    /// than all at once (each close waits for the acks owed to it). The
    /// process exits as soon as no connection is left. 0 closes all at
    /// once. Milliseconds; default 20,000 (a million connections reconnect
    /// at ~50,000 per second).
    pub drain_window_ms: u64,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides. Default
    /// `info,fjall=warn,lsm_tree=warn` (the engine is chatty at info).
    pub log: String,
    /// Log line format: `text` (default; colours only on a terminal) or
    /// `json` (one object per line). `--log-format` overrides.
    pub log_format: LogFormat,
    /// How long after a user's last device disconnects the user is announced
    /// offline, in milliseconds (a device returning within it announces
    /// nothing). Default 30,000.
    pub presence_debounce_ms: u64,
    /// Webhook for push notifications to members with no online device
    /// (`http://host:port/path`); none = no push.
    pub push_webhook: Option<String>,
    /// Notifications for one user gathered for this long before one POST,
    /// in milliseconds. Default 1,000.
    pub push_coalesce_ms: u64,
    /// Delivery attempts per push job before it goes to the dead-letter
    /// file (`<data_dir>/push-dead-letter.jsonl`). Default 5.
    pub push_max_attempts: u32,
    /// Most members of a group (the creator included). Default 100.
    pub max_group_members: usize,
    /// Most simultaneous connections of one user (all devices, all shards);
    /// the connection past it is closed with 4029. 0 = unlimited. Default 64.
    /// Per node: with several nodes a user on m of them holds ≤ m × this.
    pub max_connections_per_user: usize,
    /// Request rate per **user**, requests per second (token bucket; `ping`
    /// is not counted): all the user's WebSocket connections and HTTP calls
    /// on one shard draw from one bucket, kept while the user has anything
    /// there (a reconnect does not refill it). Each shard enforces the whole
    /// rate for what it serves, so a user spread over k shards gets at most
    /// k × the rate (≤ nr_shards ×). 0 = off (the default). Past it:
    /// `rate_limited` (HTTP 429). Per node: a user on m nodes gets at most
    /// m × nr_shards × the rate. Memory: ~100 bytes per active user per shard.
    pub rate_limit_per_sec: f64,
    /// Bucket size of the rate limit, in requests. Default 20.
    pub rate_limit_burst: u32,
    /// A connection refused this many requests in a row for rate is closed
    /// with 1008 (after the acks and errors already queued). Default 50.
    pub rate_limit_close_after: u32,
    /// Sends (edits, deletes) one connection may have waiting for their
    /// acks; further requests wait unread. Default 256.
    pub max_sends_in_flight: u32,
    /// `history` reads one connection may have in flight. A read is also
    /// admitted only while its reply fits the outbox budget
    /// (`outbox_budget_bytes` ≥ queued bytes + pages in flight ×
    /// `history_page_bytes`), or when it is the only one: with the defaults
    /// one at a time. Default 4.
    pub max_history_in_flight: u32,
    /// `presence` queries one connection may have in flight. Default 4.
    pub max_presence_in_flight: u32,
    /// `join`s one connection may have waiting for their `joined`. Default 64.
    pub max_joins_in_flight: u32,
    /// Bytes of received requests one connection may have waiting for
    /// admission (behind an in-flight limit or a full outbox) before the
    /// gateway stops reading its socket. Below it the socket is still read,
    /// so heartbeats are seen. Default 64 KiB; memory: at most this plus one
    /// frame per connection, only while requests wait.
    pub max_queued_request_bytes: usize,
    /// Channels one connection may have joined at once; a `join` past it is
    /// refused with `forbidden`. Memory: up to ~1 KiB per joined channel
    /// (cursor, replica and owner entries). Default 10,000.
    pub max_channels_per_connection: usize,
    /// Channels one Server-Sent Events stream (`GET /v1/events`) may
    /// follow; a longer list is refused with 400 before streaming. Memory:
    /// one subscription each, as for `max_channels_per_connection`.
    /// Default 256.
    pub max_sse_channels: usize,
    /// HTTP API calls of one user in progress at once, per shard (a user
    /// calling through k shards gets ≤ k ×, and ≤ m × that on m nodes);
    /// past it: HTTP 429. Default 16.
    pub max_http_calls_per_user: u32,
    /// Groups one user may create per hour, per shard (≤ nr_shards × across
    /// the node); past it: HTTP 429. 0 = unlimited. Default 100.
    pub max_groups_created_per_hour: u32,
    /// Longest an HTTP API call may take, reading its body and writing its
    /// response included, in milliseconds; a client that does not take its
    /// response in time is cut off. Default 30,000.
    pub http_timeout_ms: u64,
    /// HTTP keep-alive: how long a connection may wait idle for its next
    /// request after a response, in milliseconds (announced as `Keep-Alive:
    /// timeout=<s>`); then it is closed. 0 answers every request with
    /// `Connection: close`. Each request on a kept-alive connection is still
    /// a call of its own (its auth, `max_http_calls_per_user`,
    /// `http_timeout_ms`). Memory: an idle connection holds one file
    /// descriptor, its task and a ~1 KiB read buffer; it counts towards
    /// `max_connections`. Default 30,000.
    pub http_idle_timeout_ms: u64,
    /// Read and delivered cursors reported by clients are coalesced per
    /// (user[, device], channel) in memory and written to the store once per
    /// this interval per shard, in one write; `read` pushes to the other
    /// members go out then, at most once per interval per (user, channel).
    /// A reported cursor is durable within this interval; unread counts see
    /// it at once. Milliseconds; default 1,000.
    pub cursor_flush_ms: u64,
    /// Most coalesced cursors one shard holds before it writes them early;
    /// while that write is in flight, further `read`/`delivered` reports
    /// wait. Memory: ~150 bytes each. Default 65,536.
    pub max_pending_cursors: usize,
    /// Threads per shard for store reads (heads, history and catch-up pages,
    /// membership and cursor lookups, presence fan-outs): the runtime's
    /// blocking pool, shared by the shards, starts up to this many per
    /// shard as reads need them and keeps them. A slow read occupies one,
    /// others go on. Default 4.
    pub store_read_threads: usize,
    /// Window in which further `typing` events of one user in one channel are
    /// dropped after one was forwarded, in milliseconds. Default 3,000.
    pub typing_window_ms: u64,
    /// This gateway's node id: in `hello.node`, `GET /v1/nodes` and, with
    /// `store = "fdb"`, the cluster's node records (1–64 of `[A-Za-z0-9_.-]`).
    /// Default: the id kept in `<data_dir>/node-id`, written with a random
    /// id on the first start, so a restarted node keeps its id.
    pub node_id: Option<String>,
    /// The WebSocket URL other nodes and clients are told to use for this
    /// node (`GET /v1/nodes`). Default `ws://<listen address>/ws` (the bound
    /// address when the port is 0).
    pub advertise_url: Option<String>,
    /// With `store = "fdb"`: how long a node's lease lasts after each
    /// heartbeat, in milliseconds. A node that stops renewing it is dead to
    /// the others within `node_lease_ms + node_heartbeat_ms` (plus the
    /// clock skew between nodes; leases are wall-clock timestamps), and its
    /// subscriptions and inbox are then removed. Default 6,000 (dead within
    /// 8 s).
    pub node_lease_ms: u64,
    /// With `store = "fdb"`: how often a node renews its lease and looks for
    /// expired nodes, in milliseconds; one FDB transaction each, plus one
    /// per expired node found. Must be below `node_lease_ms / 2`. Default
    /// 2,000.
    pub node_heartbeat_ms: u64,
    /// Words refused in messages (case-insensitive, whole words): a send
    /// containing one gets `forbidden` and is not stored.
    pub blocklist_words: Vec<String>,
    /// Regular expressions refused in messages (Rust `regex` syntax).
    pub blocklist_patterns: Vec<String>,
    /// Serve the demo chat page (and the JavaScript SDK it is built on) at
    /// `GET /demo/`. Default: on in dev auth (no `auth_secret`), off
    /// otherwise. Costs nothing when unused: the files are compiled in.
    pub demo: Option<bool>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            store: StoreKind::Embedded,
            fdb_cluster_file: None,
            fdb_namespace: "default".into(),
            shards: None,
            auth_secret: None,
            allowed_origins: Vec::new(),
            durability: DurabilitySetting::Fsync,
            max_connections: None,
            reserved_fds: 512,
            listen_backlog: 4_096,
            max_frame_bytes: 2 * 1024 * 1024,
            max_text_chars: 100_000,
            outbox_budget_bytes: 256 * 1024,
            read_chunk_bytes: 64 * 1024,
            socket_send_buffer_bytes: 0,
            flush_tick_us: 0,
            socket_ring: true,
            permessage_deflate: true,
            heartbeat_ms: 30_000,
            handshake_timeout_ms: 10_000,
            max_request_head_bytes: 16 * 1024,
            mesh_queue_capacity: 4096,
            mesh_backlog_messages: 8192,
            commit_max_messages: 4096,
            commit_linger_us: 0,
            commit_max_bytes: 8 * 1024 * 1024,
            store_cache_bytes: 64 * 1024 * 1024,
            store_memtable_bytes: 16 * 1024 * 1024,
            replica_ring_bytes: 256 * 1024,
            replica_rings_bytes: 16 * 1024 * 1024,
            catchup_page_messages: 256,
            catchup_retry_ms: 100,
            digest_interval_ms: 250,
            counts_interval_ms: 2_000,
            close_flush_ms: 5_000,
            close_linger_ms: 1_000,
            history_page_bytes: 1024 * 1024,
            shutdown_grace_ms: 3_000,
            drain_notice_ms: 5_000,
            drain_window_ms: 20_000,
            log: "info,fjall=warn,lsm_tree=warn".to_string(),
            log_format: LogFormat::Text,
            presence_debounce_ms: 30_000,
            push_webhook: None,
            push_coalesce_ms: 1_000,
            push_max_attempts: 5,
            max_group_members: 100,
            max_connections_per_user: 64,
            rate_limit_per_sec: 0.0,
            rate_limit_burst: 20,
            rate_limit_close_after: 50,
            max_sends_in_flight: 256,
            max_history_in_flight: 4,
            max_presence_in_flight: 4,
            max_joins_in_flight: 64,
            max_queued_request_bytes: 64 * 1024,
            max_channels_per_connection: 10_000,
            max_http_calls_per_user: 16,
            max_groups_created_per_hour: 100,
            http_timeout_ms: 30_000,
            http_idle_timeout_ms: 30_000,
            cursor_flush_ms: 1_000,
            max_pending_cursors: 65_536,
            max_sse_channels: 256,
            store_read_threads: 4,
            typing_window_ms: 3_000,
            node_id: None,
            advertise_url: None,
            node_lease_ms: 6_000,
            node_heartbeat_ms: 2_000,
            blocklist_words: Vec::new(),
            blocklist_patterns: Vec::new(),
            demo: None,
        }
    }
}

impl Config {
    /// Reads a TOML file: every field optional, under its section
    /// (`[limits] max_sends_in_flight = 64`) or, as an alias, under its
    /// top-level name (`max_sends_in_flight = 64`); see [`sections`].
    pub fn from_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses a config file's text (see [`Config::from_file`]).
    ///
    /// # Errors
    ///
    /// The text is not TOML, names an unknown key, or sets one twice.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "-")
    }

    fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let toml_error = |source| ConfigError::Toml {
            path: path.to_owned(),
            source,
        };
        let file: toml::Table = text.parse().map_err(toml_error)?;
        let flat = sections::flatten(file).map_err(|source| ConfigError::Section {
            path: path.to_owned(),
            source,
        })?;
        Config::deserialize(toml::Value::Table(flat)).map_err(toml_error)
    }

    /// The number of shards to run: the configured value or one per core.
    #[must_use]
    pub fn nr_shards(&self) -> usize {
        self.shards.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// Checks every field once, at start.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                field,
                reason: reason.into(),
            }
        }
        let shards = self.nr_shards();
        if shards == 0 || shards > 64 {
            return Err(invalid("shards", "must be 1..=64"));
        }
        if self.max_frame_bytes < 1024 {
            return Err(invalid("max_frame_bytes", "must be at least 1 KiB"));
        }
        if self.max_text_chars == 0 || self.max_text_chars > MAX_TEXT_CHARS_LIMIT {
            return Err(invalid(
                "max_text_chars",
                format!(
                    "must be 1..={MAX_TEXT_CHARS_LIMIT}: a message escaped to 6 bytes per \
                     character must fit one 2 MiB server frame"
                ),
            ));
        }
        if self.history_page_bytes < 16 * 1024
            || self.history_page_bytes > chat_proto::response::MAX_SERVER_FRAME_BYTES
        {
            return Err(invalid(
                "history_page_bytes",
                "must be 16 KiB..=2 MiB (the server-frame maximum)",
            ));
        }
        if self.fdb_namespace.is_empty() || self.fdb_namespace.len() > 255 {
            return Err(invalid("fdb_namespace", "must be 1-255 bytes"));
        }
        if self.outbox_budget_bytes < 4096 {
            return Err(invalid("outbox_budget_bytes", "must be at least 4 KiB"));
        }
        if self.flush_tick_us > 1_000_000 {
            return Err(invalid(
                "flush_tick_us",
                "must be 0 (off) ..= 1000000 (µs, one second)",
            ));
        }
        if self.read_chunk_bytes < 1024 {
            return Err(invalid("read_chunk_bytes", "must be at least 1 KiB"));
        }
        if self.heartbeat_ms < 100 {
            return Err(invalid("heartbeat_ms", "must be at least 100 ms"));
        }
        if self.mesh_queue_capacity < 16 {
            return Err(invalid("mesh_queue_capacity", "must be at least 16"));
        }
        if self.mesh_backlog_messages < 16 {
            return Err(invalid("mesh_backlog_messages", "must be at least 16"));
        }
        if !(1..=60_000).contains(&self.catchup_retry_ms) {
            return Err(invalid("catchup_retry_ms", "must be 1..=60000 ms"));
        }
        if !(1..=65_535).contains(&self.listen_backlog) {
            return Err(invalid("listen_backlog", "must be 1..=65535"));
        }
        if !(1..=60_000).contains(&self.digest_interval_ms) {
            return Err(invalid("digest_interval_ms", "must be 1..=60000 ms"));
        }
        if !(1..=600_000).contains(&self.counts_interval_ms) {
            return Err(invalid("counts_interval_ms", "must be 1..=600000 ms"));
        }
        if !(100..=600_000).contains(&self.close_flush_ms) {
            return Err(invalid("close_flush_ms", "must be 100..=600000 ms"));
        }
        if self.close_linger_ms > 60_000 {
            return Err(invalid("close_linger_ms", "must be at most 60000 ms"));
        }
        if self.commit_max_messages == 0 || self.commit_max_messages > 65_536 {
            return Err(invalid("commit_max_messages", "must be 1..=65536"));
        }
        if self.commit_linger_us > 100_000 {
            return Err(invalid("commit_linger_us", "must be 0..=100000 (µs)"));
        }
        if self.commit_max_bytes < 64 * 1024 {
            return Err(invalid("commit_max_bytes", "must be at least 64 KiB"));
        }
        if self.store_cache_bytes < 1024 * 1024 {
            return Err(invalid("store_cache_bytes", "must be at least 1 MiB"));
        }
        if !(1024 * 1024..=1024 * 1024 * 1024).contains(&self.store_memtable_bytes) {
            return Err(invalid("store_memtable_bytes", "must be 1 MiB ..= 1 GiB"));
        }
        if self.replica_rings_bytes < 64 * 1024 {
            return Err(invalid("replica_rings_bytes", "must be at least 64 KiB"));
        }
        if self.catchup_page_messages == 0 || self.catchup_page_messages > 10_000 {
            return Err(invalid("catchup_page_messages", "must be 1..=10000"));
        }
        if self.max_request_head_bytes < 1024 {
            return Err(invalid("max_request_head_bytes", "must be at least 1 KiB"));
        }
        if !(self.rate_limit_per_sec >= 0.0 && self.rate_limit_per_sec.is_finite()) {
            return Err(invalid("rate_limit_per_sec", "must be 0 (off) or positive"));
        }
        if self.rate_limit_per_sec > 0.0 && self.rate_limit_burst == 0 {
            return Err(invalid(
                "rate_limit_burst",
                "must be positive when rate limits are on",
            ));
        }
        for (field, v) in [
            ("max_sends_in_flight", self.max_sends_in_flight),
            ("max_history_in_flight", self.max_history_in_flight),
            ("max_presence_in_flight", self.max_presence_in_flight),
            ("max_joins_in_flight", self.max_joins_in_flight),
            ("max_http_calls_per_user", self.max_http_calls_per_user),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        if self.max_queued_request_bytes < 1024 {
            return Err(invalid(
                "max_queued_request_bytes",
                "must be at least 1 KiB",
            ));
        }
        if self.max_channels_per_connection == 0 {
            return Err(invalid("max_channels_per_connection", "must be at least 1"));
        }
        if self.max_sse_channels == 0 {
            return Err(invalid("max_sse_channels", "must be at least 1"));
        }
        if self.http_timeout_ms < 100 {
            return Err(invalid("http_timeout_ms", "must be at least 100 ms"));
        }
        if self.http_idle_timeout_ms > 3_600_000 {
            return Err(invalid(
                "http_idle_timeout_ms",
                "must be 0 (no keep-alive) ..=3600000 ms",
            ));
        }
        if self.drain_notice_ms > 600_000 {
            return Err(invalid("drain_notice_ms", "must be 0..=600000 ms"));
        }
        if self.drain_window_ms > 3_600_000 {
            return Err(invalid("drain_window_ms", "must be 0..=3600000 ms"));
        }
        if let Err(e) = self.origin_policy() {
            return Err(invalid("allowed_origins", e.to_string()));
        }
        if !(10..=60_000).contains(&self.cursor_flush_ms) {
            return Err(invalid("cursor_flush_ms", "must be 10..=60000 ms"));
        }
        if self.max_pending_cursors < 16 {
            return Err(invalid("max_pending_cursors", "must be at least 16"));
        }
        if let Some(id) = &self.node_id {
            if !valid_node_id(id) {
                return Err(invalid("node_id", "must be 1-64 of [A-Za-z0-9_.-]"));
            }
        }
        if self.node_heartbeat_ms == 0 || self.node_heartbeat_ms * 2 >= self.node_lease_ms {
            return Err(invalid(
                "node_heartbeat_ms",
                "must be above 0 and below node_lease_ms / 2",
            ));
        }
        if !(1..=64).contains(&self.store_read_threads) {
            return Err(invalid("store_read_threads", "must be 1..=64"));
        }
        if let Err(e) =
            crate::moderation::Blocklist::new(&self.blocklist_words, &self.blocklist_patterns)
        {
            return Err(invalid("blocklist_patterns", e.to_string()));
        }
        if let Some(url) = &self.push_webhook {
            crate::push::Webhook::parse(url).map_err(|e| invalid("push_webhook", e.to_string()))?;
        }
        if self.push_max_attempts == 0 {
            return Err(invalid("push_max_attempts", "must be at least 1"));
        }
        if let Some(secret) = &self.auth_secret {
            if secret.len() < MIN_AUTH_SECRET_BYTES {
                return Err(invalid(
                    "auth_secret",
                    format!(
                        "must be at least {MIN_AUTH_SECRET_BYTES} bytes (found {}): a short HMAC \
                         key can be guessed offline from one token; generate one with \
                         `openssl rand -base64 32`",
                        secret.len()
                    ),
                ));
            }
        }
        if self.auth_secret.is_none() && !self.listen.ip().is_loopback() {
            return Err(invalid(
                "listen",
                format!(
                    "dev auth (no auth secret) is allowed only on a loopback address, not {}; \
                     set --auth-secret or listen on 127.0.0.1",
                    self.listen
                ),
            ));
        }
        Ok(())
    }

    /// The browser-origin rule of `allowed_origins` (loopback origins too
    /// in dev auth).
    ///
    /// # Errors
    ///
    /// An entry that is not an origin (`validate` refuses it at start).
    pub fn origin_policy(
        &self,
    ) -> Result<chat_proto::origin::OriginPolicy, chat_proto::origin::OriginError> {
        chat_proto::origin::OriginPolicy::new(&self.allowed_origins, self.auth_secret.is_none())
    }

    /// Whether `GET /demo/` serves the demo page: `demo` when set, else
    /// only in dev auth.
    #[must_use]
    pub fn demo_enabled(&self) -> bool {
        self.demo.unwrap_or(self.auth_secret.is_none())
    }

    /// The maximum of connections in force: the configured value, or the
    /// open-file limit (the process's soft `RLIMIT_NOFILE`; 1024 when
    /// unknown) minus the reserve.
    #[must_use]
    pub fn effective_max_connections(&self, open_file_limit: Option<u64>) -> usize {
        self.max_connections.unwrap_or_else(|| {
            let limit = open_file_limit.unwrap_or(1024) as usize;
            limit
                .saturating_sub(self.effective_reserved_fds(open_file_limit))
                .max(16)
        })
    }

    /// The descriptors kept free: `reserved_fds`, but at most a quarter of
    /// the open-file limit (so a small limit still leaves room to serve).
    #[must_use]
    pub fn effective_reserved_fds(&self, open_file_limit: Option<u64>) -> usize {
        let limit = open_file_limit.unwrap_or(1024) as usize;
        self.reserved_fds.min(limit / 4)
    }
}

/// Whether `id` can be a node id: 1–64 of `[A-Za-z0-9_.-]`.
#[must_use]
pub fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}
