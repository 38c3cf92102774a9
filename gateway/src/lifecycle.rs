//! A shard's life: its main future ([`run_shard`]) binds the listener,
//! joins the mesh, starts the shard's tasks — the mesh receiver and one
//! backlog forwarder per peer (`mesh.rs`), the accept loop (`listener.rs`), the
//! once-a-second tick, the cursor flush timer — and runs the supervisor that
//! performs a graceful shutdown.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chat_core::{Config, ShardId, ShardState};

use crate::shard_task::{Global, Shard};
use crate::store_io::StoreIo;
use crate::util::{now_ms, Notify};

/// Parameters a shard starts with.
pub(crate) struct ShardParams {
    pub(crate) cfg: Arc<Config>,
    pub(crate) global: Arc<Global>,
    pub(crate) store: StoreIo,
    pub(crate) mesh: Arc<crate::mesh::Mesh>,
    pub(crate) ready: std::sync::mpsc::Sender<Result<SocketAddr, String>>,
}

/// The main future of one shard's executor.
pub(crate) async fn run_shard(p: ShardParams) {
    let Some(mesh) = p.mesh.join() else {
        let _ = p
            .ready
            .send(Err("more shards than the mesh was built for".into()));
        return;
    };
    let id = ShardId(mesh.id());
    let nr = mesh.nr();
    let listener = {
        let mut bound = p.global.bound.lock().unwrap_or_else(|e| e.into_inner());
        let addr = bound.unwrap_or(p.cfg.listen);
        match crate::sys::bind_listener(addr, p.cfg.listen_backlog, p.cfg.socket_send_buffer_bytes)
        {
            Ok(l) => {
                let local = l.local_addr().unwrap_or(addr);
                *bound = Some(local);
                l
            }
            Err(e) => {
                let _ = p.ready.send(Err(format!("binding {addr} failed: {e}")));
                return;
            }
        }
    };
    let shard = Rc::new(Shard {
        id,
        cfg: p.cfg.clone(),
        state: RefCell::new(ShardState::new(
            id,
            nr,
            p.cfg.clone(),
            p.global.stats.clone(),
        )),
        mesh,
        backlog: (0..nr).map(|_| RefCell::new(VecDeque::new())).collect(),
        backlog_busy: (0..nr).map(|_| Cell::new(false)).collect(),
        backlog_notify: (0..nr).map(|_| Notify::default()).collect(),
        store: p.store,
        global: p.global.clone(),
        read_buf: RefCell::new(vec![0; p.cfg.read_chunk_bytes]),
        inflater: RefCell::new(chat_proto::deflate::Inflater::new()),
        commit_running: Cell::new(false),
        presence: RefCell::new(VecDeque::new()),
        presence_running: Cell::new(false),
        accepting: Cell::new(true),
        // `validate` refused a bad entry at start.
        origins: p.cfg.origin_policy().unwrap_or_default(),
        wakers: RefCell::new(HashMap::new()),
        woken: RefCell::new(Vec::new()),
        flush: Rc::new(crate::flush::FlushTick::new(p.cfg.flush_tick_us)),
        ring: if p.cfg.socket_ring {
            match crate::ring::Ring::new() {
                Ok(r) => Some(Rc::new(r)),
                Err(e) => {
                    tracing::warn!(error = %e, "socket ring unavailable; sessions run as tasks of their own");
                    None
                }
            }
        } else {
            None
        },
    });

    // Long-lived tasks are kept (not detached) so that returning from this
    // function cancels them and frees the shard.
    let mut tasks = Vec::new();
    if nr > 1 {
        // With the socket ring one task does all sessions' I/O and takes a
        // round of mesh input itself every 64 sessions and after every pass
        // (`ring::run`), so the receiver runs on the default queue. With one
        // task per session (`socket_ring = false`) a 10,000-member room
        // queues 10,000 of them on the default queue, so there it stays on
        // the control queue.
        // Why the default queue with the ring: under glommio (the executor
        // before 2026-12-05) a wake-up from another shard was a foreign wake
        // that wrote the shard's eventfd every time for a task on a
        // latency-sensitive queue (to preempt whatever ran), and only when
        // the shard slept otherwise; the default queue took the cheap wake
        // (measured then: 396–400 against 412–437 µs per message in small
        // rooms on two shards, `docs/benchmarks.md`, "What a wake costs").
        // The shard runtime writes the eventfd only while the shard sleeps,
        // whatever the task's priority (`rt/exec.rs`), so that write is
        // gone; measured again on the runtime (stop 38, two shards pinned,
        // three rounds): the control queue made no difference in small
        // rooms or DMs and cost the 10,000-member room 7–11 % (its batches
        // then run before the ring's write pass has drained the last one),
        // so the receiver stays on the default queue.
        let receiver = crate::mesh::receive(shard.clone());
        tasks.push(if shard.ring.is_some() {
            crate::rt::spawn(receiver)
        } else {
            shard.spawn_control(receiver)
        });
    }
    for peer in 0..nr {
        if peer != id.0 {
            tasks.push(crate::rt::spawn(crate::mesh::forward_backlog(
                shard.clone(),
                peer,
            )));
        }
    }
    // Kept apart: cancelling it closes the listener (drop), which a drain
    // does before it closes connections.
    let accept = crate::rt::spawn(crate::listener::accept_loop(shard.clone(), listener));
    tasks.push(crate::rt::spawn(tick(shard.clone())));
    if id.0 == 0 {
        tasks.push(crate::rt::spawn(cluster_tasks(shard.clone())));
    }
    tasks.push(crate::rt::spawn(cursor_timer(shard.clone())));
    tasks.push(shard.spawn_control(shard.flush.clone().run()));
    if let Some(ring) = shard.ring.clone() {
        tasks.push(crate::rt::spawn(crate::ring::run(shard.clone(), ring)));
    }

    if let Ok(addr) = shard.global.bound.lock().map(|b| b.unwrap_or(p.cfg.listen)) {
        let _ = p.ready.send(Ok(addr));
    }

    supervise(&shard, accept).await;
    // Stopped for the other shards before the receiver ends: from here on
    // their sends to this shard fail instead of queueing for nobody.
    shard.mesh.close();
    for t in tasks {
        t.cancel().await;
    }
    crate::ring::clear_current();
    // A task cancelled while it waited left its waker in a bell; drop it
    // here, on its own thread.
    shard.global.shutdown_bells[id.0].clear();
    if id.0 == 0 {
        shard.global.cluster_bell.clear();
    }
}

/// Shard 0, once the node is registered in a cluster (`nodes.rs`): the
/// heartbeat and the inbox, for as long as the shard runs.
async fn cluster_tasks(shard: Rc<Shard>) {
    let g = &shard.global;
    g.cluster_bell
        .wait(|| g.in_cluster.load(Ordering::Acquire) || g.shutdown.load(Ordering::Acquire))
        .await;
    if !g.in_cluster.load(Ordering::Acquire) {
        return;
    }
    let heartbeat = crate::rt::spawn(crate::nodes::heartbeat_loop(shard.clone()));
    crate::nodes::inbox_loop(shard).await;
    heartbeat.cancel().await;
}

/// The once-a-second work of the shard.
async fn tick(shard: Rc<Shard>) {
    loop {
        crate::rt::sleep(Duration::from_millis(1000)).await;
        shard.with(|st| st.tick(now_ms()));
    }
}

/// Writes the coalesced read and delivered cursors every `cursor_flush_ms`.
async fn cursor_timer(shard: Rc<Shard>) {
    let every = Duration::from_millis(shard.cfg.cursor_flush_ms);
    loop {
        crate::rt::sleep(every).await;
        shard.with(|st| st.flush_cursors(now_ms()));
    }
}

/// Waits for the shutdown flag, then — after a drain if one was asked for
/// ([`drain`]) — stop reading, let owners finish their commits (all
/// shards), close every connection with 1001, flush, return.
async fn supervise(shard: &Rc<Shard>, accept: crate::rt::Task<()>) {
    let tick = Duration::from_millis(10);
    let g = &shard.global;
    g.shutdown_bells[shard.id.0]
        .wait(|| g.shutdown.load(Ordering::Acquire))
        .await;
    if shard.global.drain.load(Ordering::Acquire) {
        drain(shard, accept).await;
    } else {
        shard.accepting.set(false);
        accept.cancel().await;
    }
    shard.with(ShardState::begin_drain);
    shard.wake_all();
    let nr = shard.state.borrow().nr_shards();
    let deadline = std::time::Instant::now() + Duration::from_millis(shard.cfg.shutdown_grace_ms);
    // Owners finish what they received.
    loop {
        let quiet = shard.state.borrow().is_quiet() && !shard.commit_running.get();
        if quiet || std::time::Instant::now() > deadline {
            break;
        }
        crate::rt::sleep(tick).await;
    }
    shard.global.drained.fetch_add(1, Ordering::AcqRel);
    while shard.global.drained.load(Ordering::Acquire) < nr && std::time::Instant::now() < deadline
    {
        crate::rt::sleep(tick).await;
    }
    // Let the last acks cross the mesh, then say goodbye.
    crate::rt::sleep(Duration::from_millis(20)).await;
    while shard.mesh_busy() && std::time::Instant::now() < deadline {
        crate::rt::sleep(tick).await;
    }
    shard.with(|st| st.close_all(1001, "server shutting down", now_ms()));
    while shard.state.borrow().conn_count() > 0 && std::time::Instant::now() < deadline {
        crate::rt::sleep(tick).await;
    }
}

/// A graceful drain, before the shutdown proper (`/readyz` already answers
/// 503, `Global::draining`):
///
/// 1. **Notice.** For `drain_notice_ms` the listener still accepts and
///    serves new connections, so load balancers that poll `/readyz` stop
///    sending clients here before the port closes. Skipped as soon as the
///    process has no connection.
/// 2. **The listener closes** (the accept task is cancelled, which drops
///    it); new connections are refused by the kernel.
/// 3. **The window.** Every WebSocket and SSE session is closed with 1001
///    at its own random time within `drain_window_ms`
///    (`chat_core::drain`), after the acks of its sends; clients come back
///    spread out. It ends early when no session is left.
async fn drain(shard: &Rc<Shard>, accept: crate::rt::Task<()>) {
    let tick = Duration::from_millis(10);
    let connections = || shard.global.stats.connections.load(Ordering::Relaxed);
    let notice_end = std::time::Instant::now() + Duration::from_millis(shard.cfg.drain_notice_ms);
    while connections() > 0 && std::time::Instant::now() < notice_end {
        crate::rt::sleep(tick).await;
    }
    shard.accepting.set(false);
    accept.cancel().await;
    let window = shard.cfg.drain_window_ms;
    let seed = now_ms() ^ (shard.id.0 as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let sessions = shard.with(|st| st.start_drain_window(now_ms(), window, seed));
    tracing::info!(
        shard = shard.id.0,
        sessions,
        window_ms = window,
        "draining: closing sessions over the window"
    );
    // Past the window, sessions still waiting for their acks get the
    // shutdown's grace; then the shutdown closes whatever is left.
    let deadline =
        std::time::Instant::now() + Duration::from_millis(window + shard.cfg.shutdown_grace_ms);
    loop {
        shard.with(|st| st.drain_step(now_ms()));
        let done = {
            let st = shard.state.borrow();
            st.drain_remaining() == 0 || st.conn_count() == 0
        };
        if done || std::time::Instant::now() > deadline {
            break;
        }
        crate::rt::sleep(tick).await;
    }
}
