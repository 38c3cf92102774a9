//! The full mesh of bounded queues between shards, created at start and
//! kept. **No shard waits for another**: a handler's message goes straight
//! into the peer's queue when it has room, else into a per-peer backlog that
//! one task per peer ([`forward_backlog`]) drains in order (waiting for space is fine
//! there: the peer's receiver is a task of its own and keeps draining). Past
//! `mesh_backlog_messages`, further batches to that peer are replaced by
//! `Advanced` notices (consecutive notices for one channel coalesce into
//! one): the replica's members see a head beyond their cursor and page the
//! gap from the store. `typing` notices are dropped rather than backlogged.
//!
//! The queues are the gateway's own ([`Mesh`]), not glommio's channel
//! mesh, which the shards used while glommio was their executor (before
//! 2026-12-05): a glommio receiver that took an item notified the
//! producer's executor, and a shard that sent a message to a peer usually
//! sleeps waiting for the answer, so each hop woke the sender once for
//! nothing (~0.3 wakes per message in small rooms on two shards; a glommio
//! park and wake was 18–62 µs of CPU here, `docs/benchmarks.md`, "What a
//! wake costs"). Each queue here is a crossbeam list channel, bounded by a
//! count of its own (its memory is taken as messages queue, not up front),
//! with two [`Doorbell`]s: the receiving shard's (rung by every send; it
//! wakes the receiver task only while that task waits) and the queue's room
//! bell (rung by the receiver after it takes from the queue; heard only by
//! a backlog forwarder waiting for room). One receiver task per shard
//! ([`receive`]) takes up to [`RECV_BURST`] messages from each peer in turn
//! until every queue is empty.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use chat_core::{ShardId, ShardMsg};

use crate::doorbell::Doorbell;
use crate::shard_task::Shard;
use crate::util::now_ms;

/// Messages a receiver takes from one peer before it turns to the next
/// (and tells a waiting producer there is room); after each round over the
/// peers it lets the executor run other work if it asks.
pub(crate) const RECV_BURST: usize = 64;

/// The queues between the shards of one process.
pub(crate) struct Mesh {
    nr: usize,
    /// `links[from * nr + to]` (`from == to` is unused).
    links: Vec<Link>,
    /// Each shard's bell, rung by every send to it.
    inbox: Vec<Doorbell>,
    /// Set when a shard has stopped: sends to it fail from then on.
    gone: Vec<AtomicBool>,
    /// Shard ids handed out by [`Mesh::join`], in order.
    joined: AtomicUsize,
}

/// One direction between two shards: one producer (the `from` shard's
/// thread) and one consumer (the `to` shard's receiver).
struct Link {
    tx: crossbeam_channel::Sender<ShardMsg>,
    rx: crossbeam_channel::Receiver<ShardMsg>,
    /// Messages in the queue: raised by the producer before a send, lowered
    /// by the consumer after a receive, so it never reads below the truth.
    queued: AtomicUsize,
    capacity: usize,
    /// Rung by the receiver after it takes from this queue.
    room: Doorbell,
}

impl Link {
    fn is_full(&self) -> bool {
        self.queued.load(Ordering::SeqCst) >= self.capacity
    }
}

/// A send that did not go in.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The peer's queue is full; the message is handed back.
    Full(ShardMsg),
    /// The peer has stopped.
    Gone,
}

impl Mesh {
    /// Queues for `nr` shards, at most `capacity` messages each way between
    /// two. A queue allocates as messages arrive, in blocks of 31 (112
    /// bytes a message), and frees each block once read: an idle queue
    /// holds at most one block (~3.5 KB).
    pub(crate) fn new(nr: usize, capacity: usize) -> Arc<Mesh> {
        let links = (0..nr * nr)
            .map(|_| {
                let (tx, rx) = crossbeam_channel::unbounded();
                Link {
                    tx,
                    rx,
                    queued: AtomicUsize::new(0),
                    capacity,
                    room: Doorbell::new(),
                }
            })
            .collect();
        Arc::new(Mesh {
            nr,
            links,
            inbox: (0..nr).map(|_| Doorbell::new()).collect(),
            gone: (0..nr).map(|_| AtomicBool::new(false)).collect(),
            joined: AtomicUsize::new(0),
        })
    }

    /// The next shard's end of the mesh (its id is the join order), or
    /// `None` once every shard has joined.
    pub(crate) fn join(self: &Arc<Mesh>) -> Option<MeshEnd> {
        let id = self.joined.fetch_add(1, Ordering::AcqRel);
        (id < self.nr).then(|| MeshEnd {
            id,
            mesh: self.clone(),
        })
    }

    fn link(&self, from: usize, to: usize) -> &Link {
        &self.links[from * self.nr + to]
    }
}

/// One shard's end of the mesh. Dropping it stops the shard's side
/// ([`MeshEnd::close`]).
pub(crate) struct MeshEnd {
    id: usize,
    mesh: Arc<Mesh>,
}

impl MeshEnd {
    /// This shard's id.
    pub(crate) fn id(&self) -> usize {
        self.id
    }

    /// Shards in the mesh.
    pub(crate) fn nr(&self) -> usize {
        self.mesh.nr
    }

    /// Queues `msg` for shard `to` if there is room, and rings its bell.
    pub(crate) fn try_send_to(&self, to: usize, msg: ShardMsg) -> Result<(), SendError> {
        if to == self.id || self.mesh.gone[to].load(Ordering::Acquire) {
            return Err(SendError::Gone);
        }
        let link = self.mesh.link(self.id, to);
        if link.is_full() {
            return Err(SendError::Full(msg));
        }
        // Only this shard sends on this link, so nothing fills it between
        // the check and the send.
        link.queued.fetch_add(1, Ordering::SeqCst);
        if link.tx.send(msg).is_err() {
            // Unreachable: the mesh holds both ends of every queue.
            link.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(SendError::Gone);
        }
        self.mesh.inbox[to].ring();
        Ok(())
    }

    /// Queues `msg` for shard `to`, waiting for room; `Err` if the peer
    /// has stopped (the message is dropped with it).
    pub(crate) async fn send_to(&self, to: usize, msg: ShardMsg) -> Result<(), ()> {
        let mut msg = msg;
        loop {
            match self.try_send_to(to, msg) {
                Ok(()) => return Ok(()),
                Err(SendError::Gone) => return Err(()),
                Err(SendError::Full(m)) => {
                    msg = m;
                    let link = self.mesh.link(self.id, to);
                    let gone = &self.mesh.gone[to];
                    link.room
                        .wait(|| !link.is_full() || gone.load(Ordering::Acquire))
                        .await;
                }
            }
        }
    }

    /// Whether any peer's queue to this shard holds a message.
    pub(crate) fn has_input(&self) -> bool {
        (0..self.mesh.nr).any(|p| p != self.id && !self.mesh.link(p, self.id).rx.is_empty())
    }

    /// Waits until a peer's queue to this shard holds a message.
    async fn readable(&self) {
        self.mesh.inbox[self.id].wait(|| self.has_input()).await;
    }

    /// One round over the peers: up to [`RECV_BURST`] messages from each,
    /// in each peer's order, handed to `handle`; a producer waiting for
    /// room in a queue it took from is told. Returns how many it took.
    fn drain_round(&self, mut handle: impl FnMut(usize, ShardMsg)) -> usize {
        let mut total = 0;
        for p in (0..self.mesh.nr).filter(|&p| p != self.id) {
            let link = self.mesh.link(p, self.id);
            let mut taken = 0;
            while taken < RECV_BURST {
                let Ok(msg) = link.rx.try_recv() else { break };
                link.queued.fetch_sub(1, Ordering::SeqCst);
                handle(p, msg);
                taken += 1;
            }
            if taken > 0 {
                link.room.ring();
            }
            total += taken;
        }
        total
    }

    /// Marks this shard stopped: later sends to it fail, and producers
    /// waiting for room in its queues stop waiting. Call on the shard's
    /// thread when it is done with the mesh (before its receiver and
    /// forwarders are cancelled; dropping the end does it too): the wakers
    /// they left in the bells are dropped here.
    pub(crate) fn close(&self) {
        self.mesh.gone[self.id].store(true, Ordering::SeqCst);
        self.mesh.inbox[self.id].clear();
        for p in 0..self.mesh.nr {
            if p != self.id {
                self.mesh.link(self.id, p).room.clear();
                self.mesh.link(p, self.id).room.ring();
            }
        }
    }
}

impl Drop for MeshEnd {
    fn drop(&mut self) {
        self.close();
    }
}

/// The shard's one mesh receiver: waits for its bell, then takes rounds of
/// messages from the peers ([`Shard::receive_mesh_round`]) until every
/// queue is empty, letting the other tasks of its queue run between rounds
/// (the socket ring's task, which writes what the messages queued, among
/// them). The ring's task also takes a round itself every 64 sessions it
/// services and after every pass: a long write pass, or a busy ring going
/// from pass to pass without returning to the executor, does not hold a
/// peer's messages back.
pub(crate) async fn receive(shard: Rc<Shard>) {
    loop {
        shard.mesh.readable().await;
        while shard.receive_mesh_round() > 0 {
            crate::rt::yield_now().await;
        }
    }
}

impl Shard {
    /// One round of messages from the peers ([`MeshEnd::drain_round`]),
    /// one handler call each; how many it took.
    pub(crate) fn receive_mesh_round(self: &Rc<Self>) -> usize {
        self.mesh
            .drain_round(|p, msg| self.with(|st| st.on_msg(ShardId(p), msg, now_ms())))
    }

    /// Whether messages between this shard and its peers are still on
    /// their way: queued here, or waiting in this shard's backlogs.
    pub(crate) fn mesh_busy(&self) -> bool {
        self.mesh.has_input() || self.backlog.iter().any(|b| !b.borrow().is_empty())
    }

    /// Sends to a peer without ever waiting.
    pub(crate) fn send_remote(self: &Rc<Self>, to: ShardId, msg: ShardMsg) {
        let mut backlog = self.backlog[to.0].borrow_mut();
        if backlog.is_empty() && !self.backlog_busy[to.0].get() {
            match self.mesh.try_send_to(to.0, msg) {
                Ok(()) => return,
                Err(SendError::Full(msg)) => backlog.push_back(msg),
                Err(SendError::Gone) => return, // the peer is gone (shutdown)
            }
        } else {
            let msg = match msg {
                // Ephemeral: not worth queueing behind a backlog.
                ShardMsg::TypingNotice { .. } => return,
                ShardMsg::Batch(b) if backlog.len() >= self.cfg.mesh_backlog_messages => {
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
        self.backlog_notify[to.0].notify();
    }
}

/// Sends a peer's backlog in order, waiting for queue space (only this task
/// waits; handlers never do).
pub(crate) async fn forward_backlog(shard: Rc<Shard>, peer: usize) {
    loop {
        shard.backlog_notify[peer].notified().await;
        loop {
            let Some(msg) = shard.backlog[peer].borrow_mut().pop_front() else {
                break;
            };
            shard.backlog_busy[peer].set(true);
            let sent = shard.mesh.send_to(peer, msg).await;
            shard.backlog_busy[peer].set(false);
            if sent.is_err() {
                shard.backlog[peer].borrow_mut().clear();
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_model::{Channel, Seq};

    fn numbered(i: u64) -> ShardMsg {
        ShardMsg::Advanced {
            channel: Channel::parse("room:mesh").expect("channel"),
            head: Seq(i),
        }
    }

    /// Runs `f` on a thread of its own and returns its result, failing the
    /// test if it takes longer than `secs` (a lost wake-up hangs, and a
    /// hang must fail rather than stall the suite).
    fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(secs))
            .expect("timed out: a wake-up was lost")
    }

    fn number(msg: &ShardMsg) -> u64 {
        match msg {
            ShardMsg::Advanced { head, .. } => head.0,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_full_queue_holds_the_sender_until_the_receiver_makes_room_and_keeps_order() {
        // Shard 0 sends 2,000 messages through a queue of 16 with `send_to`
        // (the backlog forwarder's call); shard 1 takes them as `receive`
        // does (`readable`, then rounds of `drain_round`), but slowly. The
        // sender must wait for room many times and be woken each time (a
        // lost room bell hangs the test), and shard 1 must see every
        // message once, in order.
        const N: u64 = 2_000;
        let mesh = Mesh::new(2, 16);
        let (a, b) = (mesh.join().expect("0"), mesh.join().expect("1"));
        assert!(mesh.join().is_none(), "only two shards");
        let got = within(30, move || {
            let sender = std::thread::spawn(move || {
                crate::rt::block_on(async move {
                    for i in 0..N {
                        a.send_to(1, numbered(i)).await.expect("peer alive");
                    }
                    a
                })
                .expect("executor a")
            });
            let receiver = std::thread::spawn(move || {
                crate::rt::block_on(async move {
                    let mut got = Vec::new();
                    while (got.len() as u64) < N {
                        b.readable().await;
                        while b.drain_round(|from, msg| {
                            assert_eq!(from, 0);
                            got.push(number(&msg));
                        }) > 0
                        {
                            // Slower than the sender: the queue fills.
                            crate::rt::sleep(std::time::Duration::from_micros(50)).await;
                        }
                    }
                    got
                })
                .expect("executor b")
            });
            let got = receiver.join().expect("receiver");
            let _a = sender.join().expect("sender");
            got
        });
        assert_eq!(got, (0..N).collect::<Vec<_>>());
    }

    #[test]
    fn a_busy_peer_does_not_starve_the_others() {
        // Shard 0 has 1,000 messages queued for shard 2, shard 1 one: the
        // first round takes at most RECV_BURST from shard 0 and then shard
        // 1's, and later rounds finish shard 0's in order.
        let mesh = Mesh::new(3, 4096);
        let ends: Vec<MeshEnd> = (0..3).map(|_| mesh.join().expect("end")).collect();
        for i in 0..1000 {
            ends[0].try_send_to(2, numbered(i)).expect("room");
        }
        ends[1].try_send_to(2, numbered(7)).expect("room");
        let mut first = Vec::new();
        let n = ends[2].drain_round(|from, msg| first.push((from, number(&msg))));
        assert_eq!(n, RECV_BURST + 1);
        assert_eq!(
            first.last(),
            Some(&(1, 7)),
            "shard 1's message in the first round"
        );
        let mut rest: Vec<u64> = first.iter().filter(|m| m.0 == 0).map(|m| m.1).collect();
        while ends[2].drain_round(|from, msg| {
            assert_eq!(from, 0);
            rest.push(number(&msg));
        }) > 0
        {}
        assert_eq!(rest, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn a_queue_slot_is_the_size_the_configuration_docs_quote() {
        // The queues' memory in `docs/configuration.md`, `config.rs` and
        // `Mesh::new`: 112 bytes a queued message (the message and
        // crossbeam's slot state). If `ShardMsg` grows, update them.
        assert_eq!(
            std::mem::size_of::<ShardMsg>() + std::mem::size_of::<usize>(),
            112
        );
    }

    #[test]
    fn a_stopped_shard_refuses_sends_and_releases_a_sender_waiting_for_room() {
        let mesh = Mesh::new(2, 16);
        let (a, b) = (mesh.join().expect("0"), mesh.join().expect("1"));
        for i in 0..16 {
            a.try_send_to(1, numbered(i)).expect("room");
        }
        assert!(matches!(
            a.try_send_to(1, numbered(16)),
            Err(SendError::Full(_))
        ));
        let waiting = within(30, move || {
            std::thread::spawn(move || {
                crate::rt::block_on(async move {
                    let stopper = std::thread::spawn(move || {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        b.close();
                    });
                    let sent = a.send_to(1, numbered(16)).await;
                    stopper.join().expect("stopper");
                    (sent, a)
                })
                .expect("executor")
            })
            .join()
            .expect("join")
        });
        assert!(waiting.0.is_err(), "a send to a stopped shard fails");
        assert!(matches!(
            waiting.1.try_send_to(1, numbered(17)),
            Err(SendError::Gone)
        ));
    }
}
