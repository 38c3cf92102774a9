//! One client connection's state, owned by its shard: identity, outbox and
//! one cursor per joined channel. No I/O here: the runtime's driver moves
//! the outbox to the socket and feeds received frames back in, and learns
//! which outboxes to flush from the shard's woken list ([`Signal`]).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use chat_model::Seq;
use chat_proto::JoinMode;

use crate::batch::Shared;
use crate::subs::SubMap;
use crate::vocab::{Answer, ConnId};

/// What every outbox of one shard shares: the shard's clock (set by every
/// entry point of [`crate::ShardState`] from the `now` it is given) and the
/// list of connections whose outbox changed since the runtime last looked
/// ([`crate::ShardState::take_woken`]).
#[derive(Debug, Default)]
pub struct Signal {
    now: Cell<u64>,
    pub(crate) woken: RefCell<Vec<ConnId>>,
    /// Emptied run queues of drained outboxes, for the next outbox that
    /// queues shared frames (at most [`SPARE_RUNS`]): a member of a busy
    /// room queues and drains one per batch, and this spares the two
    /// allocations and frees each time, without every member keeping its
    /// queue while idle.
    #[allow(clippy::vec_box)]
    // handed back boxed: unboxed, each reuse would allocate the box again
    spare_runs: RefCell<Vec<Box<Runs>>>,
}

/// Run queues a shard keeps for reuse (each ~0.2 KB with its buffer).
const SPARE_RUNS: usize = 256;

impl Signal {
    /// The shard's current time, ms.
    pub(crate) fn now(&self) -> u64 {
        self.now.get()
    }

    pub(crate) fn set_now(&self, now_ms: u64) {
        self.now.set(now_ms);
    }

    /// An empty run queue: a spare one when there is one.
    fn runs(&self) -> Box<Runs> {
        self.spare_runs.borrow_mut().pop().unwrap_or_default()
    }

    /// Keeps an outbox's drained run queue for the next one (or frees it).
    fn recycle(&self, mut runs: Box<Runs>) {
        let mut spare = self.spare_runs.borrow_mut();
        if spare.len() < SPARE_RUNS && runs.queue.spare_capacity() <= 16 {
            runs.queue.clear();
            runs.front_done = 0;
            runs.bytes = 0;
            spare.push(runs);
        }
    }

    /// Takes the connections woken since the last call.
    pub(crate) fn take_woken(&self) -> Vec<ConnId> {
        std::mem::take(&mut *self.woken.borrow_mut())
    }
}

/// Where a join stands for one (connection, channel).
#[derive(Debug)]
pub(crate) enum Phase {
    /// `Subscribe` went to the owner; the head has not come back yet. Batches
    /// seen now are at or below that head and are skipped. Further `join`
    /// requests for the channel wait here for their `joined` reply.
    Joining {
        /// Request ids of the joins waiting for `joined`.
        ids: Vec<Option<Box<str>>>,
    },
    /// Not catching up. A `live` member has every seq up to the replica's
    /// head queued, and new batches are queued directly; a `digest` member
    /// may be behind by what accumulated since its last delivery (its next
    /// one is due, `tiers.rs`); a `counts` member's cursor stays where it
    /// was (it gets no messages).
    Live,
    /// Behind the replica: pages forward from the ring or the store as the
    /// socket drains, then goes live.
    CatchUp {
        /// A store read for this cursor is in flight.
        fetching: bool,
    },
}

/// One (connection, channel) cursor.
#[derive(Debug)]
pub(crate) struct Sub {
    /// Which join this is (answers for an earlier join are ignored).
    pub(crate) gen: u64,
    /// Last seq queued to the connection.
    pub(crate) cursor: Seq,
    /// Where the join stands.
    pub(crate) phase: Phase,
    /// The member's audience tier (`join`'s `mode`).
    pub(crate) mode: JoinMode,
    /// `digest` and `counts`: when the member was last served (a delivery,
    /// a `head` event), ms; 0 before the first.
    pub(crate) served_ms: u64,
    /// `digest` and `counts`: a serving is scheduled in the shard's tier
    /// timers.
    pub(crate) due: bool,
    /// `counts`: the head the member was last told (by `joined` or `head`).
    pub(crate) head_told: Seq,
}

impl Sub {
    /// A join's cursor, waiting for the owner's head.
    pub(crate) fn joining(gen: u64, mode: JoinMode) -> Sub {
        Sub {
            gen,
            cursor: Seq::ZERO,
            phase: Phase::Joining { ids: Vec::new() },
            mode,
            served_ms: 0,
            due: false,
            head_told: Seq::ZERO,
        }
    }
}

/// Why and how a connection is being closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseRequest {
    /// WebSocket close code.
    pub code: u16,
    /// Reason sent in the close frame.
    pub reason: &'static str,
}

/// Bytes waiting for one connection's socket, and how it is to be closed.
///
/// What waits is one ordered stream made of two kinds of pieces: the
/// connection's own bytes (replies, events, pages read from the store), in
/// one buffer, and runs of a shared batch's frames, queued **by reference**
/// (`runs`: each says where in the own bytes it goes). A member of a big
/// room thus holds a few pointers into the batches its shard already has,
/// not a copy of every frame: the frames are written straight from the
/// batch (one `sendmsg` of all pieces), which stays in the cache while
/// 10,000 members are written, where a copy per member was a cold buffer
/// per connection that grew, was written, and was freed again (measured in
/// the 10,000-member room: `memmove`, `realloc` and the page faults of
/// fresh outbox pages were ~20 % of the shard's CPU; `docs/benchmarks.md`,
/// "Frames by reference"). Budgets count the bytes either way.
pub struct Outbox {
    /// This connection (for the woken list).
    id: ConnId,
    signal: Rc<Signal>,
    /// On the woken list and not taken off it yet by the runtime.
    woken: bool,
    /// The connection's own bytes waiting to be written, starting at `pos`.
    /// Allocated only while something is pending (released when drained if
    /// it grew large).
    buf: Vec<u8>,
    /// How much of `buf` is already written.
    pos: usize,
    /// Frames queued by reference, in order; `None` while there are none
    /// (an idle connection pays one pointer for them).
    runs: Option<Box<Runs>>,
    /// Close after flushing what is queued.
    pub(crate) close: Option<CloseRequest>,
    /// The close frame has been queued: nothing more is accepted.
    pub(crate) close_queued: bool,
    /// When the close was requested (ms); a peer that does not take the
    /// queued bytes within `close_flush_ms` is cut off.
    pub(crate) close_requested_ms: u64,
    /// Drop the socket now (the peer stopped reading).
    pub(crate) kill: bool,
    /// Last time bytes were written or the outbox was empty (ms).
    pub(crate) progress_ms: u64,
}

/// The runs of shared frames an outbox holds.
#[derive(Debug, Default)]
struct Runs {
    queue: RunQueue,
    /// Bytes of the front run already written.
    front_done: usize,
    /// Bytes of all runs not written yet.
    bytes: usize,
}

/// Whole frames of one shared batch, queued by reference.
#[derive(Debug)]
struct Run {
    /// Goes after `buf[..at]` (and after earlier runs at the same place).
    at: usize,
    batch: Shared,
    /// The batch's compressed copy (permessage-deflate), not its plain
    /// frames.
    deflated: bool,
    range: std::ops::Range<usize>,
}

impl Run {
    fn bytes(&self) -> &[u8] {
        self.batch.view(self.deflated).bytes(self.range.clone())
    }
}

/// The runs in order, the first one inline: a member of a busy room holds
/// one run at a time, which then lives in the (pooled, prefetched) `Runs`
/// itself — no second allocation, and no pointer to chase when it is
/// written. Invariant: `rest` is empty while `head` is.
#[derive(Debug, Default)]
struct RunQueue {
    head: Option<Run>,
    rest: VecDeque<Run>,
}

impl RunQueue {
    fn front(&self) -> Option<&Run> {
        self.head.as_ref()
    }

    fn back(&self) -> Option<&Run> {
        self.rest.back().or(self.head.as_ref())
    }

    fn back_mut(&mut self) -> Option<&mut Run> {
        match self.rest.back_mut() {
            Some(last) => Some(last),
            None => self.head.as_mut(),
        }
    }

    fn push_back(&mut self, run: Run) {
        if self.head.is_none() {
            self.head = Some(run);
        } else {
            self.rest.push_back(run);
        }
    }

    fn pop_front(&mut self) -> Option<Run> {
        let front = self.head.take();
        self.head = self.rest.pop_front();
        front
    }

    fn iter(&self) -> impl Iterator<Item = &Run> {
        self.head.iter().chain(self.rest.iter())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.len()
    }

    /// Room for runs past the first without allocating.
    fn spare_capacity(&self) -> usize {
        self.rest.capacity()
    }

    fn clear(&mut self) {
        self.head = None;
        self.rest.clear();
    }
}

/// A drained outbox keeps its buffer only when its capacity is within
/// these bounds: a busy connection then reuses it, while an idle one — whose
/// only write was its `hello` (~230 bytes) — holds nothing (measured at
/// 10,000 idle connections, the kept hello buffers were ~10% of the heap),
/// and one that once took a large catch-up page does not keep it. A small
/// buffer costs one allocator call to get back; a large one could cost
/// fresh pages, hence the band.
const KEEP_OUTBOX_CAPACITY: std::ops::RangeInclusive<usize> = 1024..=16 * 1024;

/// Frames of a batch are queued by reference when they are at least this
/// share of what the batch holds (as 1/n: its plain frames and, once
/// built, their compressed copy): a reference keeps the whole batch alive,
/// so an outbox never pins more than twice the bytes it counts against its
/// budget (plus a compressed copy built after the reference was taken, no
/// larger than the frames); a small piece of a large batch is copied, and
/// so are a deflate member's frames when the compressed copy is much
/// smaller than the plain one (pinning both for it would cost more than
/// the copy).
const SHARE_AT_LEAST: usize = 2;

impl Outbox {
    pub(crate) fn new(id: ConnId, signal: Rc<Signal>) -> Outbox {
        Outbox {
            id,
            signal,
            woken: false,
            buf: Vec::new(),
            pos: 0,
            runs: None,
            close: None,
            close_queued: false,
            close_requested_ms: 0,
            kill: false,
            progress_ms: 0,
        }
    }

    /// Starts loading the queued runs into the cache.
    pub(crate) fn prefetch(&self) {
        if let Some(runs) = &self.runs {
            crate::maps::prefetch(&**runs);
        }
    }

    /// Bytes queued and not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len() - self.pos + self.runs.as_ref().map_or(0, |r| r.bytes)
    }

    /// The pieces waiting to be written, in order: own bytes and shared
    /// runs as they alternate (empty pieces skipped).
    fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        let runs = self.runs.as_deref();
        let mut own_from = self.pos;
        // Own bytes after the last run (runs never start before `pos`).
        let tail_from = runs
            .and_then(|r| r.queue.back())
            .map_or(self.pos, |last| last.at);
        runs.into_iter()
            .flat_map(|r| r.queue.iter().enumerate().map(move |(i, run)| (r, i, run)))
            .flat_map(move |(r, i, run)| {
                let own = &self.buf[own_from..run.at];
                own_from = run.at;
                let skip = if i == 0 { r.front_done } else { 0 };
                [own, &run.bytes()[skip..]]
            })
            .chain(std::iter::once(&self.buf[tail_from..]))
            .filter(|piece| !piece.is_empty())
    }

    /// The bytes waiting to be written, in order, as at most `out.len()`
    /// slices (a prefix of the stream when there are more pieces); returns
    /// how many it filled.
    pub(crate) fn output<'a>(&'a self, out: &mut [std::io::IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, piece) in out.iter_mut().zip(self.pieces()) {
            *slot = std::io::IoSlice::new(piece);
            n += 1;
        }
        n
    }

    /// The first contiguous piece of what waits (empty when nothing does):
    /// for a writer that takes one slice at a time.
    pub(crate) fn output_front(&self) -> &[u8] {
        self.pieces().next().unwrap_or(&[])
    }

    /// Everything that waits, copied into one buffer (tests, and writers
    /// that cannot take several slices).
    pub(crate) fn output_to(&self, out: &mut Vec<u8>) {
        for piece in self.pieces() {
            out.extend_from_slice(piece);
        }
    }

    /// Puts the connection on the shard's woken list (once until the
    /// runtime takes the list): its driver has something to do.
    pub(crate) fn wake(&mut self) {
        if !self.woken {
            self.woken = true;
            self.signal.woken.borrow_mut().push(self.id);
        }
    }

    /// The runtime took this connection off the woken list.
    pub(crate) fn unwake(&mut self) {
        self.woken = false;
    }

    /// Queues a reply (never dropped) and wakes the driver.
    pub(crate) fn push_reply(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        if self.close_queued {
            return;
        }
        let was_empty = self.pending() == 0;
        encode(&mut self.buf);
        self.note_queued(was_empty);
        self.wake();
    }

    /// Queues raw frame bytes and wakes the driver.
    pub(crate) fn push_bytes(&mut self, bytes: &[u8]) {
        if self.close_queued || bytes.is_empty() {
            return;
        }
        let was_empty = self.pending() == 0;
        self.buf.extend_from_slice(bytes);
        self.note_queued(was_empty);
        self.wake();
    }

    /// Queues whole frames `range` of `batch` (its compressed copy when
    /// `deflated`) and wakes the driver: by reference when they are a
    /// large enough share of the batch ([`SHARE_AT_LEAST`]), else copied.
    pub(crate) fn push_frames(
        &mut self,
        batch: &Shared,
        deflated: bool,
        range: std::ops::Range<usize>,
    ) {
        if self.close_queued || range.is_empty() {
            return;
        }
        let view = batch.view(deflated);
        if range.len() * SHARE_AT_LEAST < batch.held_bytes() {
            self.push_bytes(view.bytes(range));
            return;
        }
        let was_empty = self.pending() == 0;
        let at = self.buf.len();
        let signal = &self.signal;
        let runs = self.runs.get_or_insert_with(|| signal.runs());
        runs.bytes += range.len();
        match runs.queue.back_mut() {
            // The next frames of the same batch right after the last run.
            Some(last)
                if last.at == at
                    && last.deflated == deflated
                    && last.range.end == range.start
                    && Rc::ptr_eq(&last.batch, batch) =>
            {
                last.range.end = range.end;
            }
            _ => runs.queue.push_back(Run {
                at,
                batch: batch.clone(),
                deflated,
                range,
            }),
        }
        self.note_queued(was_empty);
        self.wake();
    }

    /// Replaces what waits — nothing, by then — with one frame (the close).
    pub(crate) fn set_only(&mut self, frame: Vec<u8>) {
        self.runs = None;
        self.buf = frame;
        self.pos = 0;
    }

    /// Records that `n` bytes were written; returns true when the outbox
    /// became empty.
    pub(crate) fn wrote(&mut self, mut n: usize) -> bool {
        self.progress_ms = self.signal.now();
        while n > 0 {
            let front = self.runs.as_mut().and_then(|r| {
                let at = r.queue.front()?.at;
                Some((at, r))
            });
            let own_end = front.as_ref().map_or(self.buf.len(), |(at, _)| *at);
            if own_end > self.pos {
                let k = n.min(own_end - self.pos);
                self.pos += k;
                n -= k;
                continue;
            }
            let Some((_, runs)) = front else {
                break; // more than was queued: cannot happen
            };
            let Some(run) = runs.queue.front() else {
                break;
            };
            let k = n.min(run.range.len() - runs.front_done);
            runs.front_done += k;
            runs.bytes -= k;
            n -= k;
            if runs.front_done == run.range.len() {
                runs.queue.pop_front();
                runs.front_done = 0;
            }
        }
        if self.pending() > 0 {
            return false;
        }
        self.pos = 0;
        if let Some(runs) = self.runs.take() {
            self.signal.recycle(runs);
        }
        if !KEEP_OUTBOX_CAPACITY.contains(&self.buf.capacity()) {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        true
    }

    /// Asks the driver to close the connection once the outbox is flushed.
    /// The first request wins.
    pub(crate) fn request_close(&mut self, code: u16, reason: &'static str) {
        if self.close.is_none() {
            self.close = Some(CloseRequest { code, reason });
            self.close_requested_ms = self.signal.now();
        }
        self.wake();
    }

    /// Marks bytes queued into an empty outbox as the start of a wait for
    /// the socket (for the write-stall check).
    fn note_queued(&mut self, was_empty: bool) {
        if was_empty {
            self.progress_ms = self.signal.now();
        }
    }
}

/// A connection as its shard sees it.
pub struct Conn {
    /// User id.
    pub(crate) user: Arc<str>,
    /// Device id.
    pub(crate) device: Arc<str>,
    /// What waits for the socket.
    pub(crate) outbox: Outbox,
    /// Joined channels (a short vector while few: `subs.rs`).
    pub(crate) subs: SubMap,
    /// Last time a frame arrived (ms since the epoch), for the idle check.
    pub(crate) last_rx_ms: u64,
    /// An HTTP API call, not a device: no hello, no device registration.
    pub(crate) http: bool,
    /// When the token expires (ms since the epoch); closed with 4001 then.
    pub(crate) expires_ms: Option<u64>,
    /// Requests refused for rate in a row (a close with 1008 past
    /// `rate_limit_close_after`). The bucket itself is the user's.
    pub(crate) strikes: u32,
    /// Requests received and not admitted yet, oldest first: a request
    /// waits here while its kind is at its in-flight limit or the outbox is
    /// over budget, and everything after it waits behind it (FIFO).
    pub(crate) queued: VecDeque<Box<str>>,
    /// Bytes of `queued`.
    pub(crate) queued_bytes: usize,
    /// Work in flight for this connection, per kind of request.
    pub(crate) in_flight: InFlight,
    /// A catch-up store read is in flight for one of its channels (one at a
    /// time per connection bounds the memory a reader of many channels costs).
    pub(crate) fetching: bool,
    /// An HTTP call: its answer, typed, for the HTTP API to map (request id,
    /// answer). Boxed: inline, an `Answer` would make every WebSocket
    /// connection's state ~90 bytes larger for a field only HTTP calls use.
    pub(crate) http_answer: Option<Box<Answer>>,
    /// Its drain time came: not read any more, closed with 1001 once its
    /// sends are acked (`ShardState::drain_step`).
    pub(crate) drain_due: bool,
    /// It negotiated permessage-deflate: committed messages go to it as the
    /// batch's shared compressed frames ([`crate::batch::Batch::deflated`]).
    pub(crate) deflate: bool,
}

/// Requests of one connection that were admitted and not answered yet.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct InFlight {
    /// Sends, edits and deletes forwarded to owners.
    pub(crate) sends: u32,
    /// `history` reads.
    pub(crate) histories: u32,
    /// `presence` queries.
    pub(crate) presence: u32,
    /// `join`s sent to owners (each answered by exactly one `Joined` or
    /// `JoinFailed`).
    pub(crate) joins: u32,
}

impl Conn {
    pub(crate) fn new(
        id: ConnId,
        user: Arc<str>,
        device: Arc<str>,
        signal: Rc<Signal>,
        now_ms: u64,
    ) -> Conn {
        Conn {
            user,
            device,
            outbox: Outbox::new(id, signal),
            subs: SubMap::default(),
            last_rx_ms: now_ms,
            http: false,
            expires_ms: None,
            strikes: 0,
            queued: VecDeque::new(),
            queued_bytes: 0,
            in_flight: InFlight::default(),
            drain_due: false,
            deflate: false,
            fetching: false,
            http_answer: None,
        }
    }

    /// Whether the driver should stop reading the socket: the requests
    /// waiting for admission reached `max_queued` bytes (the client sent
    /// far more than it is served; its replies and in-flight limits decide
    /// when they move). Below that the socket is read, so pings and
    /// heartbeats are seen even while requests wait.
    pub(crate) fn reads_paused(&self, max_queued: usize) -> bool {
        self.queued_bytes >= max_queued
    }

    /// Queues a request that cannot be admitted yet.
    pub(crate) fn enqueue(&mut self, text: &str) {
        self.queued_bytes += text.len();
        self.queued.push_back(Box::from(text));
    }

    /// Takes the oldest waiting request.
    pub(crate) fn dequeue(&mut self) -> Option<Box<str>> {
        let t = self.queued.pop_front()?;
        self.queued_bytes -= t.len();
        if self.queued.is_empty() && self.queued.capacity() > 64 {
            self.queued = VecDeque::new();
        }
        Some(t)
    }

    /// Puts back a request taken by [`Conn::dequeue`] that still waits.
    pub(crate) fn requeue_front(&mut self, text: Box<str>) {
        self.queued_bytes += text.len();
        self.queued.push_front(text);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_connection_is_woken_once_until_the_runtime_looks() {
        let signal = Rc::new(Signal::default());
        let mut a = Outbox::new(ConnId(1), signal.clone());
        let mut b = Outbox::new(ConnId(2), signal.clone());
        a.push_bytes(b"x");
        a.push_bytes(b"y");
        b.request_close(1000, "");
        assert_eq!(signal.take_woken(), vec![ConnId(1), ConnId(2)]);
        a.push_bytes(b"z");
        assert!(
            signal.take_woken().is_empty(),
            "still woken: not listed twice"
        );
        a.unwake();
        a.push_bytes(b"w");
        assert_eq!(signal.take_woken(), vec![ConnId(1)]);
    }

    fn outbox() -> Outbox {
        Outbox::new(ConnId(1), Rc::new(Signal::default()))
    }

    #[test]
    fn outbox_tracks_partial_writes() {
        let mut c = outbox();
        c.push_bytes(&[0; 80]);
        assert_eq!(c.pending(), 80);
        assert!(!c.wrote(40));
        assert_eq!(c.pending(), 40);
        assert!(c.wrote(40));
        assert_eq!(c.pending(), 0);
    }

    /// A shared batch of `n` frames `[first]`, `[first+1]`, … (bytes only:
    /// the outbox does not read them).
    fn shared(first: u64, n: u64) -> Shared {
        let mut b = crate::batch::Batch::new(
            chat_model::Channel::from_validated(Arc::from("room:t")),
            Seq(first),
        );
        for s in first..first + n {
            b.push_frame(|out| out.extend_from_slice(format!("[{s}]").as_bytes()));
        }
        Rc::new(Arc::new(b))
    }

    fn written(c: &Outbox) -> Vec<u8> {
        let mut v = Vec::new();
        c.output_to(&mut v);
        v
    }

    #[test]
    fn shared_frames_go_out_in_order_with_the_replies_around_them() {
        let mut c = outbox();
        let b = shared(1, 3);
        c.push_bytes(b"<ack>");
        c.push_frames(&b, false, 0..b.byte_len());
        c.push_bytes(b"<pong>");
        assert_eq!(c.pending(), 5 + 9 + 6);
        assert_eq!(written(&c), b"<ack>[1][2][3]<pong>");
        let mut iov = [std::io::IoSlice::new(&[]); 8];
        let n = c.output(&mut iov);
        let pieces: Vec<&[u8]> = iov[..n].iter().map(|s| &**s).collect();
        assert_eq!(pieces, [&b"<ack>"[..], b"[1][2][3]", b"<pong>"]);
        // Shared by reference: the batch's own bytes, not a copy.
        assert!(std::ptr::eq(pieces[1].as_ptr(), b.bytes(0..1).as_ptr()));
        // A partial write across the pieces.
        assert!(!c.wrote(7));
        assert_eq!(c.output_front(), b"][2][3]");
        assert_eq!(written(&c), b"][2][3]<pong>");
        assert!(c.wrote(13));
        assert_eq!(c.pending(), 0);
        assert!(c.runs.is_none(), "nothing kept once drained");
    }

    #[test]
    fn runs_of_several_batches_go_out_in_order_past_the_first() {
        let mut c = outbox();
        let (a, b, d) = (shared(1, 2), shared(3, 2), shared(5, 2));
        c.push_frames(&a, false, 0..a.byte_len());
        c.push_bytes(b"<x>");
        c.push_frames(&b, false, 0..b.byte_len());
        c.push_frames(&d, false, 0..d.byte_len());
        assert_eq!(c.runs.as_ref().map(|r| r.queue.len()), Some(3));
        assert_eq!(written(&c), b"[1][2]<x>[3][4][5][6]");
        assert!(!c.wrote(8));
        assert_eq!(written(&c), b">[3][4][5][6]");
        assert!(!c.wrote(4));
        assert_eq!(written(&c), b"[4][5][6]");
        // Queued after the first runs went: still behind the rest.
        c.push_frames(&a, false, 0..a.byte_len());
        assert_eq!(written(&c), b"[4][5][6][1][2]");
        assert!(c.wrote(15));
        assert!(c.runs.is_none());
    }

    #[test]
    fn a_small_piece_of_a_large_batch_is_copied_not_pinned() {
        let mut c = outbox();
        let b = shared(1, 10); // 31 bytes
        let len = b.byte_len();
        c.push_frames(&b, false, 27..30);
        assert!(
            c.runs.is_none(),
            "copied: a reference would pin 10x its bytes"
        );
        assert_eq!(written(&c), b.bytes(27..30));
        c.push_frames(&b, false, 0..len / 2 + 1);
        assert!(c.runs.is_some(), "half the batch: by reference");
        // Consecutive frames of the same batch extend the last run.
        c.push_frames(&b, false, len / 2 + 1..len);
        assert_eq!(c.runs.as_ref().map(|r| r.queue.len()), Some(1));
    }

    #[test]
    fn compressed_frames_are_copied_when_their_batch_holds_far_more() {
        // A batch of compressible frames: its compressed copy is a fraction
        // of the plain frames, so a deflate member's whole copy is still a
        // small share of what a reference would keep alive.
        let mut b = crate::batch::Batch::new(
            chat_model::Channel::from_validated(Arc::from("room:t")),
            Seq(1),
        );
        for _ in 0..4 {
            b.push_frame(|out| {
                chat_proto::ws::encode_text_with(out, |out| out.extend_from_slice(&[b'a'; 2000]));
            });
        }
        let b: Shared = Rc::new(Arc::new(b));
        let z = b.deflated(&mut chat_proto::deflate::Deflater::new());
        let (plain, small) = (b.byte_len(), z.byte_len());
        assert!(small * 4 < plain, "{small} of {plain}");
        let mut c = outbox();
        c.push_frames(&b, true, 0..small);
        assert!(c.runs.is_none(), "copied");
        assert_eq!(written(&c), b.view(true).bytes(0..small));
        // The plain frames of the same batch are most of what it holds.
        c.push_frames(&b, false, 0..plain);
        assert!(c.runs.is_some(), "by reference");
    }

    #[test]
    fn an_outbox_writes_exactly_what_was_queued_whatever_the_write_sizes() {
        // Random queues of own bytes and shared runs against a plain vector,
        // drained by random partial writes through a few iovecs at a time.
        let batches: Vec<Shared> = (0..4).map(|i| shared(i * 10 + 1, 6)).collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..2_000 {
            let mut c = outbox();
            let mut model: Vec<u8> = Vec::new();
            for _ in 0..rnd(40) {
                match rnd(4) {
                    0 => {
                        let bytes = vec![b'a' + rnd(26) as u8; 1 + rnd(5) as usize];
                        c.push_bytes(&bytes);
                        model.extend_from_slice(&bytes);
                    }
                    1 | 2 => {
                        let b = &batches[rnd(4) as usize];
                        let len = b.byte_len();
                        let start = rnd(len as u64) as usize;
                        let end = start + 1 + rnd((len - start) as u64) as usize;
                        c.push_frames(b, false, start..end);
                        model.extend_from_slice(b.bytes(start..end));
                    }
                    _ => {
                        let n = rnd(model.len() as u64 + 1) as usize;
                        let mut iov = [std::io::IoSlice::new(&[]); 3];
                        let k = c.output(&mut iov);
                        let prefix: Vec<u8> =
                            iov[..k].iter().flat_map(|s| s.iter().copied()).collect();
                        assert_eq!(prefix[..], model[..prefix.len()], "iovecs are a prefix");
                        let n = n.min(prefix.len());
                        let emptied = c.wrote(n);
                        model.drain(..n);
                        assert_eq!(emptied, model.is_empty());
                    }
                }
                assert_eq!(c.pending(), model.len());
                assert_eq!(written(&c), model);
                let front = c.output_front();
                assert_eq!(front.is_empty(), model.is_empty());
                assert_eq!(front[..], model[..front.len()]);
            }
        }
    }

    #[test]
    fn queued_requests_come_back_in_order_and_count_their_bytes() {
        let signal = Rc::new(Signal::default());
        let mut c = Conn::new(ConnId(1), Arc::from("u"), Arc::from("d"), signal, 0);
        c.enqueue("one");
        c.enqueue("three");
        assert_eq!(c.queued_bytes, 8);
        assert!(c.reads_paused(8));
        assert!(!c.reads_paused(9));
        let first = c.dequeue().unwrap();
        assert_eq!(&*first, "one");
        c.requeue_front(first);
        assert_eq!(&*c.dequeue().unwrap(), "one");
        assert_eq!(&*c.dequeue().unwrap(), "three");
        assert_eq!(c.queued_bytes, 0);
        assert!(c.dequeue().is_none());
    }

    #[test]
    fn large_outbox_memory_is_released_when_drained() {
        let mut c = outbox();
        c.push_bytes(&vec![1; 100_000]);
        assert!(c.wrote(100_000));
        assert_eq!(c.buf.capacity(), 0);
    }

    #[test]
    fn an_idle_connection_keeps_no_outbox_buffer_after_its_hello() {
        let mut c = outbox();
        c.push_bytes(&[7; 230]);
        assert!(c.wrote(230));
        assert_eq!(c.buf.capacity(), 0);
        // A busy connection's mid-sized buffer is kept for reuse.
        c.push_bytes(&[7; 4000]);
        assert!(c.wrote(4000));
        assert!(c.buf.capacity() >= 4000);
    }

    #[test]
    fn a_connections_state_stays_small() {
        // Every idle connection holds one `Conn` in its shard's table; the
        // bound keeps a field that only some connections use from growing
        // all of them (box it instead). Measured 2026-12-02.
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 272, "Conn is {size} bytes");
    }
}
