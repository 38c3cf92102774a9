//! The shard runtime: the only code that touches sockets, timers, the mesh
//! and the store. It owns one [`ShardState`] per shard and applies the
//! [`Effects`] its handlers produce.
//!
//! Tasks of one shard (all on its pinned glommio executor):
//! - the accept loop (backs off on EMFILE/ENFILE, refuses past the maximum);
//! - one driver per connection: upgrade, then one `poll` that writes the
//!   outbox (one write of everything queued this turn) and reads frames
//!   into the shard's one shared read buffer;
//! - one receiver per peer shard, and one sender ("pump") per peer that
//!   drains the backlog when a queue was full — handlers never wait for
//!   queue space, so two shards can never wait on each other;
//! - the owner's commit loop, I/O jobs, the idle timer and the supervisor
//!   that runs a graceful shutdown.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::channel_mesh::{MeshBuilder, Senders};
use glommio::net::{TcpListener, TcpStream};
use glommio::{GlommioError, ResourceType};

use crate::auth::{self, AuthError, Identity};
use crate::config::Config;
use crate::conn::ConnId;
use crate::hash::ShardId;
use crate::owner::GroupOp;
use crate::protocol::http::{self, RequestHead};
use crate::protocol::ws::{Role, WsDecoder};
use crate::protocol::ErrorCode;
use crate::protocol::{self, names};
use crate::shard::{IoJob, ShardMsg, ShardState, Stats};
use crate::store_io::StoreFailure;
use crate::store_io::StoreIo;
use crate::util::{now_ms, Notify};

/// State shared by every shard of one gateway process.
pub(crate) struct Global {
    pub(crate) stats: Arc<Stats>,
    pub(crate) max_connections: usize,
    /// Set once to start a graceful shutdown.
    pub(crate) shutdown: AtomicBool,
    /// Shards whose owners have finished every commit after the shutdown began.
    pub(crate) drained: AtomicUsize,
    /// The address shards bind (the first binder fills it in for port 0).
    pub(crate) bound: Mutex<Option<SocketAddr>>,
}

/// Batches queued to one peer beyond this are replaced by `Advanced`
/// notices (the replica pages from the store instead).
const MAX_BACKLOG: usize = 8192;

/// One shard: its state and the handles its tasks share.
pub(crate) struct Shard {
    id: ShardId,
    cfg: Arc<Config>,
    pub(crate) state: RefCell<ShardState>,
    mesh: Senders<ShardMsg>,
    backlog: Vec<RefCell<VecDeque<ShardMsg>>>,
    pump_busy: Vec<Cell<bool>>,
    pump_notify: Vec<Notify>,
    store: StoreIo,
    global: Arc<Global>,
    read_buf: RefCell<Vec<u8>>,
    commit_running: Cell<bool>,
    accepting: Cell<bool>,
}

/// Releases a connection slot when a connection's task ends.
struct Slot(Arc<Global>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.stats.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shard {
    /// The configuration.
    pub(crate) fn cfg(&self) -> &Config {
        &self.cfg
    }

    /// Runs one WebSocket-style request for an HTTP caller as a short-lived
    /// session and returns the bytes of its reply frame(s).
    pub(crate) async fn http_request(
        self: &Rc<Self>,
        identity: &Identity,
        start: impl FnOnce(&mut ShardState, ConnId),
        timeout: Duration,
    ) -> Option<Vec<u8>> {
        let conn = self.with(|st| {
            let id = st.open_http(identity, now_ms());
            start(st, id);
            id
        });
        let shard = self.clone();
        let reply = glommio::timer::timeout(timeout, async move {
            Ok(futures_lite::future::poll_fn(|cx| {
                let mut st = shard.state.borrow_mut();
                if st.has_queued(conn) {
                    st.pump_queue(conn);
                }
                let Some(c) = st.conns.get_mut(&conn) else {
                    return Poll::Ready(None);
                };
                if c.outbox.pending() > 0 {
                    let bytes = c.outbox.buf[c.outbox.pos..].to_vec();
                    return Poll::Ready(Some(bytes));
                }
                c.outbox.waker = Some(cx.waker().clone());
                Poll::Pending
            })
            .await)
        })
        .await
        .ok()
        .flatten();
        self.with(|st| st.close_conn(conn));
        reply
    }

    /// Starts an HTTP call of `user`: false when `max` are in progress on
    /// this shard.
    pub(crate) fn start_http_call(&self, user: &Arc<str>, max: u32) -> bool {
        self.state
            .borrow_mut()
            .user_limits
            .start_http_call(user, max)
    }

    /// An HTTP call of `user` ended.
    pub(crate) fn end_http_call(&self, user: &str) {
        self.state.borrow_mut().user_limits.end_http_call(user);
    }

    /// Counts a group creation of `user` (`max` per hour per shard).
    pub(crate) fn take_group_creation(&self, user: &Arc<str>, max: u32) -> bool {
        self.state
            .borrow_mut()
            .user_limits
            .take_group_creation(user, now_ms(), max)
    }

    /// Runs `f` on the state, then applies the effects it produced.
    pub(crate) fn with<R>(self: &Rc<Self>, f: impl FnOnce(&mut ShardState) -> R) -> R {
        let r = f(&mut self.state.borrow_mut());
        self.apply_effects();
        r
    }

    /// Delivers queued shard messages (local ones in place, in order) and
    /// starts queued I/O jobs, until none is left.
    fn apply_effects(self: &Rc<Self>) {
        loop {
            let (out, io, committed) = {
                let mut st = self.state.borrow_mut();
                (
                    std::mem::take(&mut st.fx.out),
                    std::mem::take(&mut st.fx.io),
                    std::mem::take(&mut st.fx.stats_committed),
                )
            };
            if committed > 0 {
                self.global
                    .stats
                    .committed
                    .fetch_add(committed, Ordering::Relaxed);
            }
            if out.is_empty() && io.is_empty() {
                return;
            }
            for (to, msg) in out {
                if to == self.id {
                    self.state.borrow_mut().on_msg(self.id, msg);
                } else {
                    self.send_remote(to, msg);
                }
            }
            for job in io {
                self.start_io(job);
            }
        }
    }

    /// Sends to a peer without ever waiting: straight into the queue when it
    /// has room and nothing is backlogged, else into the backlog.
    fn send_remote(self: &Rc<Self>, to: ShardId, msg: ShardMsg) {
        let mut backlog = self.backlog[to.0].borrow_mut();
        if backlog.is_empty() && !self.pump_busy[to.0].get() {
            match self.mesh.try_send_to(to.0, msg) {
                Ok(()) => return,
                Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) => {
                    backlog.push_back(msg);
                }
                Err(_) => return, // the peer is gone (shutdown)
            }
        } else {
            let msg = match msg {
                // Ephemeral: not worth queueing behind a backlog.
                ShardMsg::TypingNotice { .. } => return,
                ShardMsg::Batch(b) if backlog.len() >= MAX_BACKLOG => {
                    self.global
                        .stats
                        .mesh_overflows
                        .fetch_add(1, Ordering::Relaxed);
                    // Coalesce with a notice for the same channel at the tail.
                    if let Some(ShardMsg::Advanced { channel, head }) = backlog.back_mut() {
                        if *channel == b.channel {
                            *head = (*head).max(b.last_seq());
                            return;
                        }
                    }
                    ShardMsg::Advanced {
                        channel: b.channel.clone(),
                        head: b.last_seq(),
                    }
                }
                other => other,
            };
            backlog.push_back(msg);
        }
        self.pump_notify[to.0].notify();
    }

    fn start_io(self: &Rc<Self>, job: IoJob) {
        let shard = self.clone();
        match job {
            IoJob::Commit => {
                if !self.commit_running.replace(true) {
                    glommio::spawn_local(commit_loop(shard)).detach();
                }
            }
            IoJob::LoadHead(channel) => {
                glommio::spawn_local(async move {
                    let result = shard.store.head(channel.clone()).await;
                    shard.with(|st| st.owner.on_head_loaded(channel, result, &mut st.fx));
                })
                .detach();
            }
            IoJob::CatchUp {
                conn,
                channel,
                gen,
                after,
            } => {
                let limit = storage::ReadLimit {
                    messages: self.cfg.catchup_page_messages,
                    bytes: self.cfg.outbox_budget_bytes,
                };
                glommio::spawn_local(async move {
                    let result = shard
                        .store
                        .read(
                            channel.clone(),
                            storage::ReadRange::After(storage::Seq(after)),
                            limit,
                        )
                        .await;
                    shard.with(|st| st.on_catchup_page(conn, &channel, gen, result));
                })
                .detach();
            }
            IoJob::CatchUpLater { conn, channel, gen } => {
                glommio::spawn_local(async move {
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                    shard.with(|st| st.on_catchup_retry(conn, &channel, gen));
                })
                .detach();
            }
            IoJob::History {
                conn,
                channel,
                range,
                limit,
                id,
                member_check,
            } => {
                glommio::spawn_local(async move {
                    let ch = channel.clone();
                    let result = shard
                        .store
                        .call(move |s| {
                            if let Some(user) = member_check {
                                match s.members(&ch)? {
                                    None => return Ok(Err((ErrorCode::NotFound, "no such group"))),
                                    Some(m) if !m.iter().any(|u| **u == *user) => {
                                        return Ok(Err((
                                            ErrorCode::NotMember,
                                            "not a member of this group",
                                        )));
                                    }
                                    Some(_) => {}
                                }
                            }
                            s.read(&ch, range, limit).map(Ok)
                        })
                        .await
                        .and_then(|r| {
                            r.map_err(|(code, message)| StoreFailure {
                                retryable: false,
                                message: message.into(),
                                code,
                            })
                        });
                    let keep_newest = !matches!(range, storage::ReadRange::After(_));
                    shard.with(|st| {
                        st.on_history(conn, &channel, id.as_deref(), keep_newest, result);
                    });
                })
                .detach();
            }
            IoJob::ReadCheck {
                conn,
                user,
                channel,
                seq,
                id,
            } => {
                glommio::spawn_local(async move {
                    let (u, ch) = (user.clone(), channel.clone());
                    let result = shard
                        .store
                        .call(move |s| crate::receipts::check_member(s, &ch, &u))
                        .await
                        .and_then(|r| {
                            r.map_err(|(code, message)| StoreFailure::refused(code, message))
                        });
                    shard.with(|st| st.on_read_checked(conn, user, channel, seq, id, result));
                })
                .detach();
            }
            IoJob::PresenceFanout { user, online } => {
                glommio::spawn_local(async move {
                    let u = user.clone();
                    let result = shard.store.call(move |s| presence_targets(s, &u)).await;
                    shard.with(|st| st.on_presence_fanout(&user, online, result));
                })
                .detach();
            }
            IoJob::Push(job) => {
                let Some(hook) = self
                    .cfg
                    .push_webhook
                    .as_deref()
                    .and_then(|u| crate::push::Webhook::parse(u).ok())
                else {
                    return;
                };
                let max = self.cfg.push_max_attempts;
                let dead_path = self.cfg.data_dir.join("push-dead-letter.jsonl");
                glommio::spawn_local(async move {
                    match crate::push::deliver(&hook, job, max).await {
                        None => {
                            shard.global.stats.push_sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(job) => {
                            shard.global.stats.push_dead.fetch_add(1, Ordering::Relaxed);
                            let user = job.user.clone();
                            let written = glommio::executor()
                                .spawn_blocking(move || {
                                    crate::push::dead_letter(&dead_path, &job, "all delivery attempts failed")
                                })
                                .await;
                            if let Err(e) = written {
                                tracing::error!(user = %user, error = %e, "push dead letter not written");
                            }
                        }
                    }
                })
                .detach();
            }
            IoJob::Unread {
                conn,
                user,
                pending,
                channels,
            } => {
                glommio::spawn_local(async move {
                    if channels {
                        let result = shard
                            .store
                            .call(move |s| crate::discovery::my_channels(s, &user, &pending))
                            .await;
                        shard.with(|st| st.on_my_channels(conn, result));
                        return;
                    }
                    let result = shard
                        .store
                        .call(move |s| crate::receipts::unread(s, &user, &pending))
                        .await;
                    shard.with(|st| st.on_unread(conn, result));
                })
                .detach();
            }
            IoJob::FlushCursors { reads, delivered } => {
                glommio::spawn_local(async move {
                    let retry = (reads.clone(), delivered.clone());
                    let result = shard
                        .store
                        .call(move |s| crate::receipts::write_cursors(s, reads, &delivered))
                        .await;
                    shard.with(|st| st.on_cursors_flushed(result, retry));
                })
                .detach();
            }
            IoJob::LoadMembers(channel) => {
                glommio::spawn_local(async move {
                    let ch = channel.clone();
                    let result = shard.store.call(move |s| s.members(&ch)).await;
                    shard.with(|st| st.owner.on_members_loaded(channel, result, &mut st.fx));
                })
                .detach();
            }
            IoJob::GroupWrite { channel, op, reply } => {
                glommio::spawn_local(async move {
                    let ch = channel.clone();
                    let op2 = op.clone();
                    let result = shard
                        .store
                        .call(move |s| match op2 {
                            GroupOp::Create(members) => {
                                let id = ch.strip_prefix(storage::GROUP_PREFIX).unwrap_or(&ch);
                                s.create_group(id, &members).map(|()| true)
                            }
                            GroupOp::Add(user) => s.add_member(&ch, &user),
                            GroupOp::Remove(user) => s.remove_member(&ch, &user),
                        })
                        .await;
                    shard.with(|st| {
                        st.owner
                            .on_group_written(channel, op, reply, result, &mut st.fx);
                    });
                })
                .detach();
            }
        }
    }
}

/// The channels (and their other members) to tell about `user`'s presence:
/// the user's groups and DMs (a DM counts once it holds a message).
fn presence_targets(
    s: &dyn storage::Store,
    user: &str,
) -> Result<Vec<(String, Vec<String>)>, storage::StoreError> {
    let mut out = Vec::new();
    for channel in s.channels_of(user)? {
        if let Ok(names::ChannelName::Dm { a, b }) = names::parse_channel(&channel) {
            let other = if a == user { b } else { a }.to_string();
            out.push((channel, vec![other]));
        } else if let Some(members) = s.members(&channel)? {
            let others: Vec<String> = members.into_iter().filter(|m| m != user).collect();
            out.push((channel, others));
        }
    }
    Ok(out)
}

/// The owner's group commit: takes everything ready, commits it, answers,
/// repeats while anything is ready. One commit in flight per shard.
async fn commit_loop(shard: Rc<Shard>) {
    // Let every task already woken this turn add its sends first.
    futures_lite::future::yield_now().await;
    loop {
        let max = shard.cfg.commit_max_messages;
        let max_bytes = shard.cfg.commit_max_bytes;
        let job = shard.with(|st| st.owner.take_commit(max, max_bytes, now_ms()));
        let Some((job, appends)) = job else {
            shard.commit_running.set(false);
            return;
        };
        let stats = &shard.global.stats;
        stats.commits.fetch_add(1, Ordering::Relaxed);
        let n: usize = appends.iter().map(|a| a.messages.len()).sum();
        stats.detail.batch_messages.observe(n as f64);
        let t0 = std::time::Instant::now();
        let (appends, result) = shard.store.commit(appends).await;
        stats
            .detail
            .commit_ms
            .observe(t0.elapsed().as_secs_f64() * 1000.0);
        shard.with(|st| st.owner.on_committed(job, appends, result, &mut st.fx));
    }
}

/// Parameters a shard starts with.
pub(crate) struct ShardParams {
    pub(crate) cfg: Arc<Config>,
    pub(crate) global: Arc<Global>,
    pub(crate) store: StoreIo,
    pub(crate) mesh: MeshBuilder<ShardMsg, glommio::channels::channel_mesh::Full>,
    pub(crate) ready: std::sync::mpsc::Sender<Result<SocketAddr, String>>,
}

/// The main future of one shard's executor.
pub(crate) async fn run_shard(p: ShardParams) {
    let (senders, mut receivers) = match p.mesh.join().await {
        Ok(x) => x,
        Err(e) => {
            let _ = p
                .ready
                .send(Err(format!("joining the shard mesh failed: {e}")));
            return;
        }
    };
    let id = ShardId(senders.peer_id());
    let nr = senders.nr_consumers();
    let listener = {
        let mut bound = p.global.bound.lock().unwrap_or_else(|e| e.into_inner());
        let addr = bound.unwrap_or(p.cfg.listen);
        match TcpListener::bind(addr) {
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
        mesh: senders,
        backlog: (0..nr).map(|_| RefCell::new(VecDeque::new())).collect(),
        pump_busy: (0..nr).map(|_| Cell::new(false)).collect(),
        pump_notify: (0..nr).map(|_| Notify::default()).collect(),
        store: p.store,
        global: p.global.clone(),
        read_buf: RefCell::new(vec![0; p.cfg.read_chunk_bytes]),
        commit_running: Cell::new(false),
        accepting: Cell::new(true),
    });

    // Long-lived tasks are kept (not detached) so that returning from this
    // function cancels them and frees the shard.
    let mut tasks = Vec::new();
    for (peer, rx) in receivers.streams() {
        let shard = shard.clone();
        tasks.push(glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                shard.with(|st| st.on_msg(ShardId(peer), msg));
            }
        }));
    }
    for peer in 0..nr {
        if peer != id.0 {
            tasks.push(glommio::spawn_local(pump(shard.clone(), peer)));
        }
    }
    tasks.push(glommio::spawn_local(accept_loop(shard.clone(), listener)));
    tasks.push(glommio::spawn_local(idle_timer(shard.clone())));
    tasks.push(glommio::spawn_local(cursor_timer(shard.clone())));

    if let Ok(addr) = shard.global.bound.lock().map(|b| b.unwrap_or(p.cfg.listen)) {
        let _ = p.ready.send(Ok(addr));
    }

    supervise(&shard).await;
    for t in tasks {
        t.cancel().await;
    }
    shard.mesh.close();
}

/// Sends a peer's backlog in order, waiting for queue space (only this task
/// waits; handlers never do).
async fn pump(shard: Rc<Shard>, peer: usize) {
    loop {
        shard.pump_notify[peer].notified().await;
        loop {
            let Some(msg) = shard.backlog[peer].borrow_mut().pop_front() else {
                break;
            };
            shard.pump_busy[peer].set(true);
            let sent = shard.mesh.send_to(peer, msg).await;
            shard.pump_busy[peer].set(false);
            if sent.is_err() {
                shard.backlog[peer].borrow_mut().clear();
                break;
            }
        }
    }
}

async fn idle_timer(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(1000)).await;
        shard.with(|st| {
            let now = now_ms();
            st.check_conns(now);
            st.presence_tick(now);
            st.push_tick(now);
            st.user_limits
                .sweep(now, st.cfg.rate_limit_per_sec, st.cfg.rate_limit_burst);
        });
    }
}

/// Writes the coalesced read and delivered cursors every `cursor_flush_ms`.
async fn cursor_timer(shard: Rc<Shard>) {
    let every = Duration::from_millis(shard.cfg.cursor_flush_ms);
    loop {
        glommio::timer::sleep(every).await;
        shard.with(ShardState::flush_cursors);
    }
}

/// Waits for the shutdown flag, then: stop reading, let owners finish their
/// commits (all shards), close every connection with 1001, flush, return.
async fn supervise(shard: &Rc<Shard>) {
    let tick = Duration::from_millis(10);
    while !shard.global.shutdown.load(Ordering::Acquire) {
        glommio::timer::sleep(Duration::from_millis(25)).await;
    }
    shard.accepting.set(false);
    shard.with(|st| {
        st.draining = true;
        st.wake_all();
    });
    let nr = shard.state.borrow().nr_shards;
    let deadline = std::time::Instant::now() + Duration::from_millis(shard.cfg.shutdown_grace_ms);
    // Owners finish what they received.
    loop {
        let quiet = shard.state.borrow().owner.is_quiet() && !shard.commit_running.get();
        if quiet || std::time::Instant::now() > deadline {
            break;
        }
        glommio::timer::sleep(tick).await;
    }
    shard.global.drained.fetch_add(1, Ordering::AcqRel);
    while shard.global.drained.load(Ordering::Acquire) < nr && std::time::Instant::now() < deadline
    {
        glommio::timer::sleep(tick).await;
    }
    // Let the last acks cross the mesh, then say goodbye.
    glommio::timer::sleep(Duration::from_millis(20)).await;
    shard.with(|st| st.close_all(1001, "server shutting down"));
    while !shard.state.borrow().conns.is_empty() && std::time::Instant::now() < deadline {
        glommio::timer::sleep(tick).await;
    }
}

fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    let mut warned_at = 0u64;
    loop {
        if !shard.accepting.get() {
            return;
        }
        match listener.accept().await {
            Ok(stream) => {
                let global = shard.global.clone();
                let n = global.stats.connections.fetch_add(1, Ordering::Relaxed);
                let slot = Slot(global.clone());
                if n >= global.max_connections || !shard.accepting.get() {
                    global.stats.refused.fetch_add(1, Ordering::Relaxed);
                    glommio::spawn_local(refuse(stream, slot)).detach();
                } else {
                    glommio::spawn_local(serve(shard.clone(), stream, slot)).detach();
                }
            }
            Err(e) => {
                shard
                    .global
                    .stats
                    .accept_errors
                    .fetch_add(1, Ordering::Relaxed);
                let io_err: std::io::Error = e.into();
                let now = now_ms();
                if now.saturating_sub(warned_at) > 5_000 {
                    warned_at = now;
                    tracing::warn!(error = %io_err, "accept failed; backing off");
                }
                // EMFILE/ENFILE return at once without yielding: without a
                // pause this loop would spin and starve every connection.
                let pause = if is_fd_exhaustion(&io_err) { 50 } else { 5 };
                glommio::timer::sleep(Duration::from_millis(pause)).await;
            }
        }
    }
}

/// Answers a connection past the maximum with 503 and closes it.
async fn refuse(mut stream: TcpStream, _slot: Slot) {
    let resp = http::json_error_response(503, "unavailable", "connection limit reached");
    let _ = glommio::timer::timeout(Duration::from_millis(500), async move {
        let _ = stream.write_all(&resp).await;
        let _ = stream.close().await;
        Ok(())
    })
    .await;
}

/// Reads the HTTP request head (bounded size and time).
async fn read_head(
    stream: &mut TcpStream,
    max: usize,
) -> Result<Option<(RequestHead, Vec<u8>)>, http::HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some((head, used)) = http::parse_request_head(&buf, max)? {
            let rest = buf.split_off(used);
            return Ok(Some((head, rest)));
        }
    }
}

async fn write_and_close(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
    let _ = stream.close().await;
}

/// Serves one accepted connection: HTTP endpoints or a WebSocket session.
async fn serve(shard: Rc<Shard>, mut stream: TcpStream, _slot: Slot) {
    let _ = stream.set_nodelay(true);
    if shard.cfg.socket_send_buffer_bytes > 0 {
        let _ = socket2::SockRef::from(&stream)
            .set_send_buffer_size(shard.cfg.socket_send_buffer_bytes);
    }
    let timeout = Duration::from_millis(shard.cfg.handshake_timeout_ms);
    let max_head = shard.cfg.max_request_head_bytes;
    let head = glommio::timer::timeout(timeout, async {
        Ok(read_head(&mut stream, max_head).await)
    })
    .await;
    let (head, rest) = match head {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) | Err(_) => return,
        Ok(Err(http::HttpError::TooLarge)) => {
            let r = http::json_error_response(431, "bad_request", "request head too large");
            return write_and_close(&mut stream, &r).await;
        }
        Ok(Err(http::HttpError::Malformed(m))) => {
            let r = http::json_error_response(400, "bad_request", &m);
            return write_and_close(&mut stream, &r).await;
        }
    };
    match (head.method.as_str(), head.path.as_str()) {
        (_, "/ws") => upgrade(shard, stream, head, rest).await,
        ("GET", "/v1/events") => {
            let Some(identity) = admit(&shard, &mut stream, &head).await else {
                return;
            };
            crate::sse::serve(shard, stream, head, identity).await;
        }
        ("GET", p) if p == "/demo" || p.starts_with("/demo/") => {
            crate::demo::serve(&shard, &mut stream, &head).await;
        }
        (_, p) if p.starts_with("/v1/") => {
            let Some(identity) = admit(&shard, &mut stream, &head).await else {
                return;
            };
            // The whole call — body, work, response — within the timeout:
            // a client that does not take its response is cut off.
            let timeout = Duration::from_millis(shard.cfg.http_timeout_ms);
            let _ = glommio::timer::timeout(timeout, async {
                crate::http_api::serve(shard, &mut stream, head, rest, identity).await;
                Ok(())
            })
            .await;
            let _ = stream.close().await;
        }
        ("GET", "/healthz") => {
            let r = match shard.store.health() {
                storage::Health::Healthy => {
                    http::response(200, "application/json", b"{\"status\":\"ok\"}", &[])
                }
                storage::Health::Poisoned(why) => {
                    let body =
                        serde_json::json!({"status": "unhealthy", "reason": why}).to_string();
                    http::response(503, "application/json", body.as_bytes(), &[])
                }
            };
            write_and_close(&mut stream, &r).await;
        }
        ("GET", "/metrics") => {
            let mut body = crate::metrics::render(&shard.global.stats.snapshot());
            let nr = shard.state.borrow().nr_shards;
            crate::metrics::render_detail(&shard.global.stats.detail, nr, &mut body);
            let r = http::response(200, "text/plain; version=0.0.4", body.as_bytes(), &[]);
            write_and_close(&mut stream, &r).await;
        }
        _ => {
            let r = http::json_error_response(404, "not_found", "no such endpoint");
            write_and_close(&mut stream, &r).await;
        }
    }
}

async fn upgrade(shard: Rc<Shard>, mut stream: TcpStream, head: RequestHead, rest: Vec<u8>) {
    if head.method != "GET" || !head.upgrade_websocket || head.ws_version.as_deref() != Some("13") {
        let r = http::json_error_response(
            400,
            "bad_request",
            "expected a WebSocket upgrade (GET, Upgrade: websocket, Sec-WebSocket-Version: 13)",
        );
        return write_and_close(&mut stream, &r).await;
    }
    let Some(key) = head.ws_key.clone() else {
        let r = http::json_error_response(400, "bad_request", "missing Sec-WebSocket-Key");
        return write_and_close(&mut stream, &r).await;
    };
    let Some(identity) = admit(&shard, &mut stream, &head).await else {
        return;
    };
    if shard.state.borrow().draining {
        let r = http::json_error_response(503, "unavailable", "server shutting down");
        return write_and_close(&mut stream, &r).await;
    }
    if stream
        .write_all(&http::upgrade_response(&key))
        .await
        .is_err()
    {
        return;
    }
    let conn = shard.with(|st| st.open_conn(&identity, now_ms()));
    let mut driver = Driver {
        shard: shard.clone(),
        conn,
        stream,
        decoder: WsDecoder::new(Role::Server, shard.cfg.max_frame_bytes),
        closing: false,
    };
    if !rest.is_empty() {
        driver.feed(&rest);
    }
    let end = (&mut driver).await;
    shard.with(|st| st.close_conn(conn));
    let mut stream = driver.stream;
    if end == SessionEnd::CloseSent {
        linger(&mut stream).await;
    }
    let _ = stream.close().await;
}

/// After our close frame: half-close and discard what the client still
/// sends (bounded in time and bytes), so that a client in the middle of
/// writing reads the close frame instead of a reset.
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    let _ = glommio::timer::timeout(Duration::from_millis(1000), async {
        let mut sink = [0u8; 4096];
        let mut total = 0usize;
        while total < 8 * 1024 * 1024 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        Ok(())
    })
    .await;
}

/// How a WebSocket session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionEnd {
    /// The peer closed the socket, or it failed.
    PeerGone,
    /// We wrote a close frame.
    CloseSent,
}

/// Who is connecting: a verified token when a secret is configured, else
/// dev auth (`?user=&device=`, loopback only — enforced at start).
fn authenticate(cfg: &Config, head: &RequestHead) -> Result<Identity, String> {
    match cfg.auth_secret.as_deref() {
        Some(secret) => {
            let token = head
                .bearer_token()
                .or_else(|| head.query_param("token"))
                .ok_or_else(|| AuthError::Missing.to_string())?;
            auth::verify(secret.as_bytes(), token, now_ms()).map_err(|e| e.to_string())
        }
        None => {
            let user = head.query_param("user").unwrap_or("");
            let device = head.query_param("device").unwrap_or("default");
            if !names::is_valid_id(user) || !names::is_valid_id(device) {
                return Err(
                    "dev auth needs ?user=<id>[&device=<id>] with ids of 1-64 [A-Za-z0-9_.-]"
                        .into(),
                );
            }
            Ok(Identity {
                user: user.to_string(),
                device: device.to_string(),
                expires_ms: None,
            })
        }
    }
}

/// Authenticates a request; on failure counts it, answers 401 and closes.
async fn admit(shard: &Rc<Shard>, stream: &mut TcpStream, head: &RequestHead) -> Option<Identity> {
    match authenticate(&shard.cfg, head) {
        Ok(id) => Some(id),
        Err(message) => {
            shard
                .global
                .stats
                .auth_failures
                .fetch_add(1, Ordering::Relaxed);
            let r = http::json_error_response(401, "unauthorized", &message);
            write_and_close(stream, &r).await;
            None
        }
    }
}

/// The poll-driven half of a WebSocket session.
struct Driver {
    shard: Rc<Shard>,
    conn: ConnId,
    stream: TcpStream,
    decoder: WsDecoder,
    /// The close frame is queued; finish once it is written.
    closing: bool,
}

impl Driver {
    fn feed(&mut self, bytes: &[u8]) {
        let now = now_ms();
        let conn = self.conn;
        let mut st = self.shard.state.borrow_mut();
        let result = self
            .decoder
            .feed(bytes, &mut |ev| st.on_ws_event(conn, ev, now));
        if let Err(e) = result {
            st.on_ws_error(conn, e.close_code(), close_reason(&e));
        }
        drop(st);
        self.shard.apply_effects();
    }
}

fn close_reason(e: &protocol::ws::WsError) -> &'static str {
    match e {
        protocol::ws::WsError::TooBig => "frame too big",
        protocol::ws::WsError::InvalidUtf8 => "invalid UTF-8",
        protocol::ws::WsError::Protocol(m) => m,
    }
}

impl Future for &mut Driver {
    type Output = SessionEnd;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SessionEnd> {
        let this = &mut **self.get_mut();
        let max_queued = this.shard.cfg.max_queued_request_bytes;
        // Bounded work per poll so one busy connection cannot starve others.
        for _ in 0..32 {
            let mut progressed = false;
            let mut write_blocked = false;
            // 0. Requests waiting for admission go before anything else: a
            // reply, an ack or a drained outbox may have made room for them.
            if this.shard.state.borrow().has_queued(this.conn) {
                this.shard.with(|st| st.pump_queue(this.conn));
            }
            // 1. Write everything queued, in one write when the socket takes it.
            let mut drained = false;
            {
                let mut st = this.shard.state.borrow_mut();
                let draining = st.draining;
                let Some(conn) = st.conns.get_mut(&this.conn) else {
                    return Poll::Ready(SessionEnd::PeerGone);
                };
                if conn.outbox.kill {
                    // The peer stopped taking bytes: drop the socket.
                    return Poll::Ready(SessionEnd::PeerGone);
                }
                let ob = &mut conn.outbox;
                while ob.pending() > 0 {
                    match Pin::new(&mut this.stream).poll_write(cx, &ob.buf[ob.pos..]) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                            return Poll::Ready(SessionEnd::PeerGone)
                        }
                        Poll::Ready(Ok(n)) => {
                            progressed = true;
                            drained = ob.wrote(n);
                        }
                        Poll::Pending => {
                            write_blocked = true;
                            break;
                        }
                    }
                }
                if ob.pending() == 0 {
                    if this.closing {
                        return Poll::Ready(SessionEnd::CloseSent);
                    }
                    if let Some(c) = ob.close {
                        if conn.in_flight.sends > 0 {
                            // Acks of sends already taken go out before the
                            // close frame (the ack wakes us; the idle check
                            // cuts a close that waits past CLOSE_FLUSH_MS).
                            conn.outbox.waker = Some(cx.waker().clone());
                            return Poll::Pending;
                        }
                        let mut frame = Vec::new();
                        protocol::ws::encode_close(&mut frame, c.code, c.reason, None);
                        ob.buf = frame;
                        ob.pos = 0;
                        ob.close_queued = true;
                        this.closing = true;
                        continue;
                    }
                }
                // 2. Read, unless closing, draining, or the requests waiting
                // for admission reached their bound (then the rest waits in
                // the kernel).
                if this.closing
                    || draining
                    || conn.outbox.close.is_some()
                    || conn.reads_paused(max_queued)
                {
                    if !progressed {
                        conn.outbox.waker = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                    drop(st);
                    if drained {
                        this.shard.with(|st| st.on_drained(this.conn));
                    }
                    continue;
                }
            }
            if drained {
                this.shard.with(|st| st.on_drained(this.conn));
            }
            let read = {
                let mut buf = this.shard.read_buf.borrow_mut();
                match Pin::new(&mut this.stream).poll_read(cx, &mut buf[..]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        return Poll::Ready(SessionEnd::PeerGone)
                    }
                    Poll::Ready(Ok(n)) => Some(n),
                    Poll::Pending => None,
                }
            };
            if let Some(n) = read {
                let now = now_ms();
                let conn = this.conn;
                let mut buf = this.shard.read_buf.borrow_mut();
                let mut st = this.shard.state.borrow_mut();
                // Unmasks in place: complete frames are never copied.
                let result = this
                    .decoder
                    .feed_mut(&mut buf[..n], &mut |ev| st.on_ws_event(conn, ev, now));
                if let Err(e) = result {
                    st.on_ws_error(conn, e.close_code(), close_reason(&e));
                }
                drop(st);
                drop(buf);
                this.shard.apply_effects();
                progressed = true;
            }
            if !progressed {
                let mut st = this.shard.state.borrow_mut();
                let Some(conn) = st.conns.get_mut(&this.conn) else {
                    return Poll::Ready(SessionEnd::PeerGone);
                };
                let queued = conn.outbox.pending() > 0 && !write_blocked;
                if queued || (conn.outbox.close.is_some() && !this.closing && !write_blocked) {
                    // Something was queued while we read: go round again.
                    continue;
                }
                conn.outbox.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
