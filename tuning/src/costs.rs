//! What one connection, one shard and the process cost, and the
//! [`Requirements`] the checks compare the host against.
//!
//! Every constant says where its number comes from: measured (with the
//! program and host), read from a dependency's source, or estimated (and what
//! will replace the estimate).

use serde::Serialize;

/// File descriptors per gateway connection: one, the accepted TCP socket.
///
/// Source: a session holds its accepted socket (`gateway/src/ring.rs`: the
/// upgrade's stream is duplicated into the shard's ring and then dropped, so
/// two for a moment; `driver.rs` with `socket_ring = false`: one
/// `rt::net::TcpStream`). The io_uring rings and their eventfds are per
/// shard, not per socket, and fit in the reserve.
pub const FDS_PER_CONNECTION: u64 = 1;

/// Descriptors kept free for the store, listeners and the runtime.
///
/// Source: the gateway's `Config::reserved_fds` default (512). The gateway's
/// default maximum of connections is the open-file limit minus this reserve,
/// which is why a preflight of the default configuration passes by
/// construction.
pub const DEFAULT_RESERVED_FDS: u64 = 512;

/// Kernel memory per idle TCP connection (the gateway's end), in bytes.
///
/// Measured on this kind of host (kernel 6.18, x86_64, 4 KiB pages): 8,000
/// idle loopback connections (16,000 sockets) grew `Slab` in `/proc/meminfo`
/// by 61.5 MiB, 3.9 KiB per socket (2.9 KiB unreclaimable: `tcp_sock`, socket
/// inode, file; 1.0 KiB reclaimable: dentry and friends). The TCP buffer pool
/// (`mem` in `/proc/net/sockstat`) stayed at 0 pages while idle. A load
/// generator on the same host pays the same again for each client socket.
pub const KERNEL_BYTES_PER_IDLE_CONNECTION: u64 = 4 * 1024;

/// Pages of the TCP buffer pool (`net.ipv4.tcp_mem`) one connection holds
/// while it has data queued.
///
/// Measured as above: 4,000 sockets each holding one unread 200-byte message
/// raised `/proc/net/sockstat` TCP `mem` to 3,738 pages, 0.93 page per
/// socket; the kernel charges socket buffers in whole pages. So a message to
/// a room holding every connection needs about one page per connection until
/// the clients have read it.
pub const TCP_MEM_PAGES_PER_BUSY_CONNECTION: u64 = 1;

/// Gateway user-space memory per idle connection, in bytes.
///
/// Measured (2026-12-02, this kind of host, `bench run idle --pin --shards 1
/// --connections 10000` and `19000`: peak RSS growth from before the first
/// connection ÷ connections, ramp included): 0.9 KiB at both counts with
/// the socket ring (`gateway/src/ring.rs`, the default) — the core's `Conn`,
/// the ring's session entry, the user's device entry, the allocator's share.
/// Rounded up to 1 KiB. A connection with joined channels holds a cursor per
/// channel more (`docs/configuration.md`, `max_channels_per_connection`);
/// with `socket_ring = false` it is ~5 KiB. The gateway can pass its own
/// figure in [`Requirements::per_connection_bytes`].
pub const GATEWAY_BYTES_PER_IDLE_CONNECTION: u64 = 1024;

/// Gateway memory per shard that does not grow with connections, in bytes.
/// **An estimate.**
///
/// The shard's one 64 KiB read buffer, 64 KiB of registered I/O memory
/// (`IO_MEMORY` in `gateway/src/server.rs`), three io_uring rings of 128
/// entries, the mesh queues to every other shard (4,096 × ~16 B each by
/// default) and the stack pages a shard thread touches; rounded up to 1 MiB.
pub const PER_SHARD_BYTES: u64 = 1024 * 1024;

/// Process memory that grows with neither shards nor connections, in bytes.
/// **An estimate**: the embedded store's memtables and caches, the committer
/// thread, the binary and its allocator arenas.
pub const PROCESS_BASE_BYTES: u64 = 64 * 1024 * 1024;

/// Locked memory one shard's io_uring rings take on kernels before 5.12,
/// which charge rings to `RLIMIT_MEMLOCK` (5.12 and newer charge them to
/// the memory cgroup, and the gateway registers no buffers), in bytes.
///
/// Source: the socket ring (`gateway/src/ring.rs`, 4,096 submission
/// entries of 64 bytes: 256 KiB; 16,384 completions of 16 bytes, rounded
/// up to a power of two of pages with the ring's header: 512 KiB) and the
/// runtime's ring (`gateway/src/rt/exec.rs`, 256 entries: 16 KiB; 2,048
/// completions: 64 KiB), rounded up to 1 MiB. (glommio, the shards'
/// executor before 2026-12-05, also refused to start below 512 KiB.)
pub const RING_MEMLOCK_BYTES_PER_SHARD: u64 = 1024 * 1024;

/// The gateway's default `listen_backlog`: each shard's listening socket
/// asks the kernel for this many completed connections queued before it
/// accepts them (`gateway/core/src/config.rs`). The kernel caps it at
/// `net.core.somaxconn`.
pub const DEFAULT_LISTEN_BACKLOG: u64 = 4096;

/// Descriptors `fs.file-max` should leave for the rest of the host beyond
/// the gateway's own. A judgement: generous for a host dedicated to the
/// gateway (sshd, journald, the store's files), not enough to also run a
/// same-host load generator of the same size, which needs its own count.
pub const FILE_MAX_HEADROOM: u64 = 65_536;

/// Share of `MemAvailable` the planned memory may take before the check
/// warns, in percent: the rest absorbs bursts (outboxes up to their budget,
/// socket buffers, catch-up pages).
pub const MEMORY_WARN_PERCENT: u64 = 75;

/// Share of `MemTotal` that full default socket buffers of every connection
/// may take before `tcp_rmem`/`tcp_wmem` warn, in percent.
pub const SOCKET_BUFFER_WARN_PERCENT: u64 = 50;

/// Hosts with more online cores than this leave their first core to
/// interrupts and the kernel's network processing (as Seastar's
/// `perftune.py` does on large hosts); smaller hosts run a shard on every
/// core, since giving up one of four cores costs more than it saves.
pub const MANY_CORES: usize = 4;

/// What the gateway (or an operator) asks the host to hold.
///
/// A plain struct so that `tuning` does not depend on the gateway: the
/// gateway fills it from its `Config`. Start from [`Requirements::new`] and
/// override what you know better.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Requirements {
    /// Connections held at once (the gateway's `effective_max_connections()`).
    pub connections: u64,
    /// Shards, one executor each (the gateway's `nr_shards()`).
    pub shards: usize,
    /// Descriptors needed beyond one per connection (the gateway's
    /// `reserved_fds`). Default [`DEFAULT_RESERVED_FDS`].
    pub reserved_fds: u64,
    /// User-space bytes per idle connection. Default
    /// [`GATEWAY_BYTES_PER_IDLE_CONNECTION`] (measured).
    pub per_connection_bytes: u64,
    /// Kernel bytes per idle connection. Default
    /// [`KERNEL_BYTES_PER_IDLE_CONNECTION`] (measured).
    pub kernel_bytes_per_connection: u64,
    /// User-space bytes per shard that do not grow with connections.
    /// Default [`PER_SHARD_BYTES`].
    pub per_shard_bytes: u64,
    /// Process bytes that grow with neither. Default [`PROCESS_BASE_BYTES`].
    pub base_bytes: u64,
    /// The listen backlog the gateway asks for (its `listen_backlog`).
    /// Default [`DEFAULT_LISTEN_BACKLOG`].
    pub listen_backlog: u64,
}

impl Requirements {
    /// `connections` on `shards` shards, every cost at its default.
    #[must_use]
    pub fn new(connections: u64, shards: usize) -> Requirements {
        Requirements {
            connections,
            shards,
            reserved_fds: DEFAULT_RESERVED_FDS,
            per_connection_bytes: GATEWAY_BYTES_PER_IDLE_CONNECTION,
            kernel_bytes_per_connection: KERNEL_BYTES_PER_IDLE_CONNECTION,
            per_shard_bytes: PER_SHARD_BYTES,
            base_bytes: PROCESS_BASE_BYTES,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
        }
    }

    /// Open files the process needs: one per connection plus the reserve.
    #[must_use]
    pub fn fds(&self) -> u64 {
        self.connections
            .saturating_mul(FDS_PER_CONNECTION)
            .saturating_add(self.reserved_fds)
    }

    /// Memory per idle connection, user space plus kernel, in bytes.
    #[must_use]
    pub fn bytes_per_connection(&self) -> u64 {
        self.per_connection_bytes
            .saturating_add(self.kernel_bytes_per_connection)
    }

    /// Memory the process needs with every connection idle, in bytes.
    #[must_use]
    pub fn memory_bytes(&self) -> u64 {
        self.fixed_bytes()
            .saturating_add(self.connections.saturating_mul(self.bytes_per_connection()))
    }

    /// The part of [`Requirements::memory_bytes`] that does not grow with
    /// connections, in bytes.
    #[must_use]
    pub fn fixed_bytes(&self) -> u64 {
        self.base_bytes
            .saturating_add((self.shards as u64).saturating_mul(self.per_shard_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_default_maximum_needs_exactly_the_limit() {
        // The gateway's default: open-file limit 20,000 minus 512 reserved.
        let req = Requirements::new(20_000 - 512, 2);
        assert_eq!(req.fds(), 20_000);
    }

    #[test]
    fn memory_adds_fixed_and_per_connection_costs() {
        let req = Requirements::new(1_000, 2);
        assert_eq!(
            req.memory_bytes(),
            PROCESS_BASE_BYTES
                + 2 * PER_SHARD_BYTES
                + 1_000 * (GATEWAY_BYTES_PER_IDLE_CONNECTION + KERNEL_BYTES_PER_IDLE_CONNECTION)
        );
    }
}
