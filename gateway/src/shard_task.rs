//! One shard on its executor: the [`Shard`] handle every task of the shard
//! shares, and how it applies what the core asks for ([`Shard::with`]):
//! messages to shards (`mesh.rs`), jobs (`jobs.rs`), commits, and the
//! drivers to wake. The shard's main future is in `lifecycle.rs`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use chat_core::{Config, ConnId, Effects, ShardId, ShardMsg, ShardState, Stats};

use crate::store_io::StoreIo;
use crate::util::{now_ms, Notify};

/// State shared by every shard of one gateway process.
pub(crate) struct Global {
    pub(crate) stats: Arc<Stats>,
    pub(crate) max_connections: usize,
    /// Set once to start a graceful shutdown.
    pub(crate) shutdown: AtomicBool,
    /// Set (before `shutdown`) when the shutdown is to be a drain.
    pub(crate) drain: AtomicBool,
    /// Set when a drain or shutdown begins: `/readyz` answers 503 from then
    /// on.
    pub(crate) draining: AtomicBool,
    /// Shards whose owners have finished every commit after the shutdown began.
    pub(crate) drained: AtomicUsize,
    /// The address shards bind (the first binder fills it in for port 0).
    pub(crate) bound: Mutex<Option<SocketAddr>>,
    /// This node's advertised WebSocket URL (set once the address is bound).
    pub(crate) node_url: Mutex<Option<String>>,
    /// The live nodes of the cluster as of the last heartbeat (`nodes.rs`;
    /// empty without a cluster).
    pub(crate) nodes: Mutex<Vec<storage::NodeInfo>>,
    /// Set once this node is registered in the cluster: shard 0 then starts
    /// its heartbeat and inbox tasks.
    pub(crate) in_cluster: AtomicBool,
    /// One per shard, rung after `shutdown` is set: the shard's supervisor
    /// sleeps on it rather than polling the flag (an idle shard then has
    /// no timer of its own to wake for but the once-a-second tick).
    pub(crate) shutdown_bells: Vec<crate::doorbell::Doorbell>,
    /// Rung after `in_cluster` or `shutdown` is set: shard 0's cluster
    /// task sleeps on it until the node joins a cluster.
    pub(crate) cluster_bell: crate::doorbell::Doorbell,
}

impl Global {
    /// Sets `shutdown` and wakes every shard's supervisor (and shard 0's
    /// cluster task).
    pub(crate) fn start_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        for bell in &self.shutdown_bells {
            bell.ring();
        }
        self.cluster_bell.ring();
    }

    /// Sets `in_cluster` and wakes shard 0's cluster task.
    pub(crate) fn joined_cluster(&self) {
        self.in_cluster.store(true, Ordering::Release);
        self.cluster_bell.ring();
    }
}

/// One shard: its state and the handles its tasks share.
pub(crate) struct Shard {
    pub(crate) id: ShardId,
    pub(crate) cfg: Arc<Config>,
    pub(crate) state: RefCell<ShardState>,
    pub(crate) mesh: crate::mesh::MeshEnd,
    pub(crate) backlog: Vec<RefCell<VecDeque<ShardMsg>>>,
    pub(crate) backlog_busy: Vec<Cell<bool>>,
    pub(crate) backlog_notify: Vec<Notify>,
    pub(crate) store: StoreIo,
    pub(crate) global: Arc<Global>,
    pub(crate) read_buf: RefCell<Vec<u8>>,
    /// The one permessage-deflate inflater of the shard's connections
    /// (they were told `client_no_context_takeover`: each message inflates
    /// on its own). ~43 KiB once a client sends a compressed message.
    pub(crate) inflater: RefCell<chat_proto::deflate::Inflater>,
    pub(crate) commit_running: Cell<bool>,
    /// Presence fan-outs waiting for their batch (`jobs.rs`,
    /// [`PRESENCE_BATCH_WINDOW`](crate::jobs::PRESENCE_BATCH_WINDOW)), and
    /// whether the task that runs the batches is alive.
    pub(crate) presence: RefCell<VecDeque<chat_core::IoJob>>,
    pub(crate) presence_running: Cell<bool>,
    pub(crate) accepting: Cell<bool>,
    /// Which browser origins may use the gateway (`allowed_origins`).
    pub(crate) origins: chat_proto::origin::OriginPolicy,
    /// The wakers of parked connection drivers.
    pub(crate) wakers: RefCell<HashMap<ConnId, Waker>>,
    /// The woken list's buffer, handed back and forth with the state
    /// ([`ShardState::take_woken_into`]) so it keeps its capacity.
    pub(crate) woken: RefCell<Vec<ConnId>>,
    /// The flush tick: how often a busy connection may write.
    pub(crate) flush: Rc<crate::flush::FlushTick>,
    /// The shard's socket ring, which drives its WebSocket sessions
    /// (`socket_ring`; `None`: one task per session, `driver.rs`).
    pub(crate) ring: Option<Rc<crate::ring::Ring>>,
}

impl Shard {
    /// Spawns one of the shard's own tasks on the control queue: the group
    /// commit, the flush tick, and the mesh receiver when sessions are
    /// tasks of their own (`socket_ring = false`; `lifecycle.rs` says why
    /// only then) run before the connections' tasks ready in the same pass,
    /// so that a commit's completion or a peer's batch runs as soon as it
    /// arrives instead of behind every driver woken before it (a
    /// 10,000-member room wakes 10,000 drivers per batch), and a default
    /// task that checks `rt::yield_if_needed` gives way to them.
    pub(crate) fn spawn_control<T: 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + 'static,
    ) -> crate::rt::Task<T> {
        crate::rt::spawn_with(crate::rt::Priority::Control, fut)
    }

    /// The configuration.
    pub(crate) fn cfg(&self) -> &Config {
        &self.cfg
    }

    /// Runs `f` on the state, then applies the effects it produced.
    pub(crate) fn with<R>(self: &Rc<Self>, f: impl FnOnce(&mut ShardState) -> R) -> R {
        let r = f(&mut self.state.borrow_mut());
        self.apply_effects();
        r
    }

    /// Parks a connection's driver: the next change of its outbox wakes
    /// it. Call after the driver checked, under the same borrow, that it
    /// has nothing to do.
    pub(crate) fn park(&self, st: &mut ShardState, conn: ConnId, waker: &Waker) {
        st.park(conn);
        self.wakers.borrow_mut().insert(conn, waker.clone());
    }

    /// Forgets a finished connection's waker.
    pub(crate) fn forget(&self, conn: ConnId) {
        self.wakers.borrow_mut().remove(&conn);
    }

    /// Delivers queued shard messages (local ones in place, in order),
    /// starts jobs and commits, and wakes the drivers of the connections
    /// whose outbox changed, until nothing is left.
    pub(crate) fn apply_effects(self: &Rc<Self>) {
        loop {
            // The same list every turn (taken, so a nested call finds an
            // empty one rather than a borrowed one).
            let (fx, woken): (Effects, Vec<ConnId>) = {
                let mut st = self.state.borrow_mut();
                if !st.has_work() {
                    return;
                }
                let mut woken = self.woken.take();
                st.take_woken_into(&mut woken);
                (st.take_effects(), woken)
            };
            if !woken.is_empty() {
                let mut wakers = self.wakers.borrow_mut();
                if wakers.is_empty() {
                    // Every session is on the ring (or none has a driver).
                    if let Some(ring) = &self.ring {
                        ring.wake_many(&woken);
                    }
                } else {
                    for &conn in &woken {
                        if let Some(w) = wakers.remove(&conn) {
                            w.wake();
                        } else if let Some(ring) = &self.ring {
                            ring.wake(conn);
                        }
                    }
                }
            }
            *self.woken.borrow_mut() = woken;
            if fx.stats_committed > 0 {
                self.global
                    .stats
                    .committed
                    .fetch_add(fx.stats_committed, Ordering::Relaxed);
            }
            if fx.out.is_empty() && fx.io.is_empty() && !fx.commit_ready {
                return;
            }
            for (to, msg) in fx.out {
                if to == self.id {
                    self.state.borrow_mut().on_msg(self.id, msg, now_ms());
                } else {
                    self.send_remote(to, msg);
                }
            }
            for job in fx.io {
                self.start_job(job);
            }
            if fx.commit_ready {
                self.start_commits();
            }
        }
    }

    /// Wakes every parked driver (shutdown).
    pub(crate) fn wake_all(&self) {
        for (_, w) in self.wakers.borrow_mut().drain() {
            w.wake();
        }
        if let Some(ring) = &self.ring {
            ring.wake_all();
        }
    }
}
