//! # fdb-double — a libfdb_c stand-in for tests (**test-only**)
//!
//! No FoundationDB server and no `libfdb_c` can be installed where this
//! project is built and tested, yet the FoundationDB backend of `storage`
//! must run through the real `foundationdb` crate, and a cluster of gateway
//! nodes must share one database. This crate builds `libfdb_c.so`: the
//! subset of `fdb_c.h` (API version 730) that the crate links to, over an
//! in-memory store; and `fdb-double-server`, a process holding one such
//! store for many client processes. Point the crate's link step at the
//! library (`FDB_CLIENT_LIB_PATH`) and the loader at run time
//! (`LD_LIBRARY_PATH`); `scripts/test-fdb` does both and runs a server.
//! **Test-only: it keeps nothing on disk, has no authentication and must
//! never ship.**
//!
//! ## Two modes, chosen by the cluster file
//!
//! - **In-process** — the cluster file names no coordinator (no `@`: an
//!   empty file, or `double:in-process`). One database per cluster-file path
//!   per process; the engine runs inside each call, so futures are ready
//!   when returned. Two processes never see each other's data.
//! - **Server** — the cluster file names one, as real cluster files name
//!   their coordinators: `double:test@127.0.0.1:4689`. Every call goes to
//!   the `fdb-double-server` at that address; all processes on it share one
//!   database with FDB's semantics — read versions, conflicts at commit,
//!   atomic ops, limits, watches and versionstamps are global. A coordinator
//!   that is not `ip:port` is 2104 `connection_string_invalid`.
//!
//! ## Why it is split this way
//!
//! Real FDB clients keep a transaction's writes and read-your-writes cache
//! locally and ship conflict ranges and mutations at commit. The double
//! instead keeps **the whole transaction on the server**: the client sends
//! each call as an [`proto::Op`] (mutations without waiting, reads and the
//! commit with an answer) and the server runs it on the same
//! [`kv::Transaction`] in-process mode runs. One engine thus serves both
//! modes, and read-your-writes, key selectors over own writes, conflict
//! ranges and limits cannot drift apart between them. The price — a
//! mutation is a message, a transaction's state lives in the server — does
//! not matter on loopback in tests. What the client keeps is what must
//! outlive a connection: options and the retry count (`on_error` is
//! decided in the client; see [`handle`]).
//!
//! The client's network thread is real now: `fdb_run_network` loops until
//! `fdb_stop_network`, and pending futures — server answers, watches,
//! versionstamps, `on_error` backoffs — complete there, callbacks included,
//! as in libfdb_c ([`net`], [`future`]).
//!
//! ## Lost server
//!
//! The server is not durable: a restart starts an empty database (versions
//! restart at the wall clock in µs, so they and versionstamps still grow).
//! A client whose connection drops fails instead of hanging: a commit in
//! flight gets 1021 `commit_unknown_result` (what FDB answers when the
//! connection to the proxy is lost mid-commit: the commit may or may not
//! have been applied); any other pending or later operation of a
//! transaction begun on the lost connection, and every watch, gets 1007
//! `transaction_too_old` (what a recovered FDB cluster answers for reads at
//! a read version from before the recovery). Both are retryable, so
//! `on_error` retries, and the retry opens a new connection. A server that
//! cannot be reached also gives 1007 at once, so `retry_limit` and
//! `timeout` bound the wait (real FDB would wait until `timeout`).
//!
//! ## What it implements (semantics in `kv.rs`)
//!
//! | calls | behaviour |
//! |---|---|
//! | `fdb_select_api_version_impl` (520–730), `fdb_get_max_api_version` (730), `fdb_get_client_version` | version handshake |
//! | `fdb_setup_network`, `fdb_run_network`, `fdb_stop_network`, `fdb_network_set_option`, `fdb_add_network_thread_completion_hook` | setup once; run loops until stop, completing pending futures; options accepted and ignored |
//! | `fdb_create_database` | per the cluster file (path, else `FDB_CLUSTER_FILE`, else the default path; must exist: 1515): in-process or server mode |
//! | `fdb_database_create_transaction`, `_destroy`, `_set_option` (`max_watches`; others ignored), `_get_main_thread_busyness`, `_get_client_status` | |
//! | `fdb_transaction_get`, `_get_key`, `_get_range` | MVCC reads at the read version plus the transaction's own writes; key selectors with any or_equal/offset; `limit`, `target_bytes`, `reverse`; streaming modes return ≤ 256 rows per call with `more` so callers page |
//! | `fdb_transaction_set`, `_clear`, `_clear_range`, `_atomic_op` | buffered until commit; atomic ops ADD, BIT_AND/OR/XOR, MAX, MIN, BYTE_MIN/MAX on the committed value; SET_VERSIONSTAMPED_KEY/VALUE (API ≥ 520 offsets; bad offset 2000; a stamped value reads as 1036 in its own transaction) |
//! | `fdb_transaction_commit` | conflict check (1020), age (1007), limits (2101/2102/2103), one new version per writing commit |
//! | `fdb_transaction_get_versionstamp` | the 10-byte stamp (8-byte BE version, 2-byte BE batch order) once committed; 2021 for a read-only commit; the commit's error if it failed; 1025 if reset first |
//! | `fdb_transaction_watch` | armed at commit; fires on the network thread when another commit changes the value; fails with the commit's error, 1025 when the transaction is cancelled/reset/destroyed first, 1032 past `max_watches` (10,000) outstanding, 1101 when its future is cancelled or destroyed |
//! | `fdb_transaction_on_error` | retryable codes (1007, 1009, 1020, 1021, 1037, 1213) reset and retry after a short backoff, honouring `retry_limit` and `timeout` (1031); others come back |
//! | `fdb_transaction_set_option` | `timeout` (500), `retry_limit` (501), `size_limit` (503); others accepted and ignored |
//! | `_get_read_version`, `_set_read_version`, `_get_committed_version`, `_get_approximate_size`, `_get_estimated_range_size_bytes`, `_add_conflict_range`, `_reset`, `_cancel` | |
//! | `fdb_future_*` | ready or pending; `set_callback` on a ready future calls back at once on the caller's thread, else on the network thread; `destroy`/`cancel` of a pending future completes it with 1101 |
//! | `fdb_get_error`, `fdb_error_predicate` | messages and the retryable / maybe-committed predicates |
//! | `fdb_double_inject_commit_errors` (not in fdb_c.h) | test hook: make the next commits fail with given codes, optionally after applying them (a `commit_unknown_result` that committed); in server mode it hits the next commits of every client |
//!
//! The server counts transactions, commits, conflicts, reads, rows and
//! bytes read, mutations and bytes written, watches, frames and wire bytes:
//! `fdb-double-server stats`, and its last line at `fdb-double-server stop`.
//!
//! ## What it does not do
//!
//! No durability (memory only; a server restart loses everything), no
//! authentication or TLS (loopback, tests only), no reconnection of a
//! transaction or watch across a lost connection (they fail, retryably), no
//! tenants, mapped ranges or blob granules (they fail with 4100), no
//! `fdb_transaction_get_range_split_points` beyond the range's ends, no
//! versionstamp encodings of API < 520 (such versions are refused), no
//! latency model, no read-version batching, no batching of commits (the
//! batch order in a versionstamp is always 0), no system keys (`\xff…`:
//! 2004), and `timeout` does not end a watch. Conflict ranges of range reads
//! are the whole requested range (FDB narrows them to what was read), so it
//! may report a conflict FDB would not. Versions count commits, not
//! microseconds.
//!
//! ## Layout
//!
//! | file | what |
//! |---|---|
//! | `kv.rs` | the engine: MVCC store, transactions, conflicts, atomic ops, versionstamps, watches, stats |
//! | `proto.rs` | operations as data, the wire protocol, and `Op::run` on the engine |
//! | `server.rs` | the server: one session thread per client connection |
//! | `client.rs` | cluster-file parsing and the client's connection (reader thread, lost-connection errors) |
//! | `handle.rs` | `FDBDatabase` / `FDBTransaction` in either mode |
//! | `future.rs`, `net.rs` | `FDBFuture` and the network thread that completes it |
//! | `ffi.rs` | the C ABI |
//! | `bin/fdb-double-server.rs` | the server binary (`serve`, `stats`, `stop`) |

#![allow(unsafe_code)]

pub mod client;
pub mod ffi;
pub mod future;
pub mod handle;
pub mod kv;
pub mod net;
pub mod proto;
pub mod server;
