//! Starting and stopping a gateway: the public handle used by the binary
//! and by tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use storage::{EmbeddedConfig, EmbeddedStore, Store, StoreError};

use chat_core::config::{Config, ConfigError, StoreKind};
use chat_core::{Stats, StatsSnapshot};

use crate::lifecycle::{run_shard, ShardParams};
use crate::shard_task::Global;
use crate::store_io::Committer;

/// Why a gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened (locked, unsupported format, I/O).
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    /// The shards could not start (executor, bind).
    #[error("starting shards: {0}")]
    Shards(String),
    /// The listen address is already served: by another gateway, or by any
    /// other process. (Every shard binds with `SO_REUSEPORT`; without this
    /// check a second gateway would silently join the first one's port
    /// group and split its traffic.)
    #[error("listen address {addr}: {reason}")]
    AddressInUse {
        /// The configured address.
        addr: SocketAddr,
        /// Who holds it.
        reason: String,
    },
}

/// Held for the life of a gateway: an abstract Unix socket named after the
/// listen address, which only one process can bind (the kernel releases it
/// when the process exits, also on SIGKILL).
struct AddressLock {
    _socket: std::os::unix::net::UnixListener,
}

impl AddressLock {
    fn take(addr: SocketAddr) -> Result<AddressLock, StartError> {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("chat-gateway/{addr}");
        let unix = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(|e| StartError::Shards(format!("address lock {name}: {e}")))?;
        match std::os::unix::net::UnixListener::bind_addr(&unix) {
            Ok(socket) => Ok(AddressLock { _socket: socket }),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(StartError::AddressInUse {
                addr,
                reason: "another gateway process serves it".into(),
            }),
            Err(e) => Err(StartError::Shards(format!("address lock {name}: {e}"))),
        }
    }
}

/// Fails when any process listens on `addr` (or on the wildcard address of
/// its port): every listening TCP socket of the host is in `/proc/net/tcp`
/// and `/proc/net/tcp6`. (A test bind would also trip over connections of
/// an earlier run still closing on the port, which must not stop a
/// restart.)
fn probe_free(addr: SocketAddr) -> Result<(), StartError> {
    match crate::sys::listening_on(addr) {
        Ok(false) => Ok(()),
        Ok(true) => Err(StartError::AddressInUse {
            addr,
            reason: "another process is listening on it".into(),
        }),
        Err(e) => {
            // Not Linux's procfs: the address lock still keeps a second
            // gateway out.
            tracing::warn!(error = %e, "cannot list listening sockets; skipping the check");
            Ok(())
        }
    }
}

/// A running gateway. Dropping it without [`Gateway::shutdown`] also shuts
/// it down.
pub struct Gateway {
    addr: SocketAddr,
    nr_shards: usize,
    global: Arc<Global>,
    handles: Option<Vec<std::thread::JoinHandle<()>>>,
    committer: Option<Committer>,
    _address_lock: Option<AddressLock>,
    /// The store (for the cluster: deregistering at a clean stop).
    store: Arc<dyn Store>,
    /// This node's id while it is registered in a cluster.
    node: Option<String>,
}

/// Opens the FoundationDB store (booting FDB's network thread, once per
/// process; every shard shares it through the committer and I/O threads).
#[cfg(feature = "fdb")]
fn open_fdb(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let store = storage::FdbStore::open(storage::FdbConfig {
        cluster_file: config.fdb_cluster_file.clone(),
        namespace: config.fdb_namespace.clone(),
        ..storage::FdbConfig::default()
    })?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "fdb"))]
fn open_fdb(_config: &Config) -> Result<Arc<dyn Store>, StartError> {
    Err(StartError::Config(ConfigError::Invalid {
        field: "store",
        reason: "`fdb` needs a gateway built with `--features fdb` (see docs/storage.md)".into(),
    }))
}

impl Gateway {
    /// Opens the configured store (the embedded one in `config.data_dir`
    /// by default) and starts.
    pub fn start(config: Config) -> Result<Gateway, StartError> {
        config.validate()?;
        let store: Arc<dyn Store> = match config.store {
            StoreKind::Embedded => Arc::new(EmbeddedStore::open(&EmbeddedConfig {
                durability: config.durability.into(),
                cache_bytes: config.store_cache_bytes,
                memtable_bytes: config.store_memtable_bytes,
                ..EmbeddedConfig::new(config.data_dir.clone())
            })?),
            StoreKind::Fdb => open_fdb(&config)?,
        };
        Gateway::start_with_store(config, store)
    }

    /// Starts on the given store (tests use a fault-injecting one).
    pub fn start_with_store(
        mut config: Config,
        store: Arc<dyn Store>,
    ) -> Result<Gateway, StartError> {
        config.validate()?;
        let node_id = crate::nodes::resolve_node_id(config.node_id.as_deref(), &config.data_dir)
            .map_err(|e| {
                StartError::Shards(format!("node id in {}: {e}", config.data_dir.display()))
            })?;
        config.node_id = Some(node_id.clone());
        // One gateway per address: a fixed port is locked and probed before
        // any shard binds it; port 0 is locked once the kernel chose it.
        let mut address_lock = None;
        if config.listen.port() != 0 {
            address_lock = Some(AddressLock::take(config.listen)?);
            probe_free(config.listen)?;
        }
        crate::sys::raise_open_file_limit();
        let nr = config.nr_shards();
        let global = Arc::new(Global {
            stats: Arc::new(Stats::default()),
            max_connections: config.effective_max_connections(crate::sys::open_file_limit()),
            shutdown: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            drain: AtomicBool::new(false),
            drained: AtomicUsize::new(0),
            bound: Mutex::new(None),
            node_url: Mutex::new(None),
            nodes: Mutex::new(Vec::new()),
            in_cluster: AtomicBool::new(false),
            shutdown_bells: (0..nr).map(|_| crate::doorbell::Doorbell::new()).collect(),
            cluster_bell: crate::doorbell::Doorbell::new(),
        });
        let (committer, store_io) =
            Committer::start(store.clone()).map_err(|e| StartError::Shards(e.to_string()))?;
        let cfg = Arc::new(config);
        let mesh = crate::mesh::Mesh::new(nr, cfg.mesh_queue_capacity);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        // Store reads run on the runtime's blocking pool (unpinned threads):
        // `store_read_threads` per shard, so a slow read holds one of them.
        crate::rt::allow_blocking_threads(nr * cfg.store_read_threads);
        let mut handles = Vec::with_capacity(nr);
        let mut spawn_error = None;
        for (i, cpu) in shard_cpus(nr).into_iter().enumerate() {
            let params = ShardParams {
                cfg: cfg.clone(),
                global: global.clone(),
                store: store_io.clone(),
                mesh: mesh.clone(),
                ready: ready_tx.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("shard-{i}"))
                .spawn(move || run_shard_thread(cpu, params));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    spawn_error = Some(format!("starting shard thread {i}: {e}"));
                    break;
                }
            }
        }
        drop(ready_tx);
        let mut gw = Gateway {
            addr: cfg.listen,
            nr_shards: nr,
            global,
            handles: Some(handles),
            committer: Some(committer),
            _address_lock: None,
            store: store.clone(),
            node: None,
        };
        if let Some(e) = spawn_error {
            gw.stop();
            return Err(StartError::Shards(e));
        }
        for _ in 0..nr {
            match ready_rx.recv_timeout(Duration::from_secs(30)) {
                Ok(Ok(addr)) => gw.addr = addr,
                Ok(Err(e)) => {
                    gw.stop();
                    return Err(StartError::Shards(e));
                }
                Err(_) => {
                    gw.stop();
                    return Err(StartError::Shards("shards did not start in 30 s".into()));
                }
            }
        }
        if address_lock.is_none() {
            match AddressLock::take(gw.addr) {
                Ok(lock) => address_lock = Some(lock),
                Err(e) => {
                    gw.stop();
                    return Err(e);
                }
            }
        }
        gw._address_lock = address_lock;
        let url = cfg
            .advertise_url
            .clone()
            .unwrap_or_else(|| format!("ws://{}/ws", gw.addr));
        *gw.global
            .node_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(url.clone());
        if let Some(cluster) = store.cluster() {
            let node = storage::NodeInfo {
                id: node_id.clone(),
                url,
                expires_ms: crate::util::now_ms() + cfg.node_lease_ms,
            };
            match cluster.register(&node) {
                Err(e) => {
                    gw.stop();
                    return Err(StartError::Store(e));
                }
                Ok(Some(previous)) if previous.expires_ms > crate::util::now_ms() => {
                    tracing::warn!(
                        node = %previous.id,
                        url = %previous.url,
                        lease_left_ms = previous.expires_ms.saturating_sub(crate::util::now_ms()),
                        "this node id's previous record had a running lease: a process that died moments ago, or another process started with the same id; this one takes the id over and any other exits at its next heartbeat (give each node its own node_id or data_dir)"
                    );
                }
                Ok(_) => {}
            }
            tracing::info!(node = %node.id, url = %node.url, "registered in the cluster");
            *gw.global
                .nodes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = vec![node];
            gw.node = Some(node_id);
            gw.global.joined_cluster();
        }
        Ok(gw)
    }

    /// The address every shard listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of shards.
    pub fn nr_shards(&self) -> usize {
        self.nr_shards
    }

    /// Current counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.global.stats.snapshot()
    }

    /// Graceful shutdown: stop reading, finish commits, flush acks, close
    /// connections with 1001, stop the shards and the committer. After
    /// [`Gateway::begin_drain`], the drain runs first.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Starts a graceful drain (what SIGTERM does) and returns at once:
    /// `/readyz` answers 503 from now on; the next [`Gateway::shutdown`]
    /// (or drop) then keeps accepting for `drain_notice_ms`, closes the
    /// listener, closes sessions with 1001 spread over `drain_window_ms`
    /// (each after its acks), and stops — at once when no connection is
    /// left.
    pub fn begin_drain(&self) {
        self.global.draining.store(true, Ordering::Release);
        self.global.drain.store(true, Ordering::Release);
    }

    /// [`Gateway::begin_drain`], then [`Gateway::shutdown`]: returns when the
    /// drain is over and the shards stopped.
    pub fn drain(self) {
        self.begin_drain();
        self.shutdown();
    }

    fn stop(&mut self) {
        self.global.draining.store(true, Ordering::Release);
        self.global.start_shutdown();
        if let Some(handles) = self.handles.take() {
            for h in handles {
                if h.join().is_err() {
                    tracing::error!("a shard thread panicked");
                }
            }
        }
        if let Some(c) = self.committer.take() {
            c.join();
        }
        // A clean stop leaves the cluster at once (a killed node is reaped
        // when its lease expires).
        if let Some(id) = self.node.take() {
            if let Some(cluster) = self.store.cluster() {
                match cluster.deregister(&id) {
                    Ok(()) => tracing::info!(node = %id, "left the cluster"),
                    Err(e) => {
                        tracing::warn!(node = %id, error = %e, "leaving the cluster failed; the lease expires")
                    }
                }
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One shard's thread: pinned to its CPU (if it has one), then its
/// executor, until the shard stops.
fn run_shard_thread(cpu: Option<usize>, params: ShardParams) {
    if let Some(cpu) = cpu {
        if let Err(e) = crate::sys::pin_current_thread(cpu) {
            tracing::warn!(cpu, error = %e, "could not pin a shard to its CPU; it runs unpinned");
        }
    }
    let ready = params.ready.clone();
    // A panic before the shard reported ready would leave `start` waiting
    // for it; it is reported instead (and then ends the thread as before).
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::rt::block_on(run_shard(params))
    }));
    match ran {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = ready.send(Err(format!(
                "the shard runtime could not set up its io_uring ({e}): a seccomp profile \
                 (Docker's default), kernel.io_uring_disabled, a kernel before 5.11, or the \
                 locked-memory limit before 5.12 — `tuning check` tells which"
            )));
        }
        Err(panic) => {
            let _ = ready.send(Err("a shard thread panicked while starting".into()));
            std::panic::resume_unwind(panic);
        }
    }
}

/// Where the shards' threads run: one CPU each, spread over physical cores
/// first (`sys::spread_cpus`), chosen among the CPUs this process is
/// allowed on (`taskset`, a container's cpuset: a shard pinned outside it
/// would fail to start, or run where the operator said it must not). More
/// shards than allowed CPUs share them: unpinned, each thread keeps the
/// process's mask.
fn shard_cpus(nr: usize) -> Vec<Option<usize>> {
    let allowed = crate::sys::allowed_cpus().unwrap_or_default();
    if allowed.is_empty() {
        return vec![None; nr];
    }
    if nr > allowed.len() {
        tracing::warn!(
            shards = nr,
            cpus = allowed.len(),
            "more shards than CPUs this process may use: shards share them (one shard per CPU is the fast path)"
        );
        return vec![None; nr];
    }
    crate::sys::spread_cpus(&allowed)
        .into_iter()
        .take(nr)
        .map(Some)
        .collect()
}
