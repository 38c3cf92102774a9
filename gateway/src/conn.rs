//! One client connection's state, owned by its shard: identity, outbox and
//! one cursor per joined channel. No I/O here: the driver (`runtime.rs`)
//! moves the outbox to the socket and feeds received frames back in.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::task::Waker;

/// A connection's id, unique within its shard for the life of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConnId(pub(crate) u64);

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
    /// Every seq up to `cursor` was queued; new batches are queued directly.
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
    pub(crate) cursor: u64,
    /// Where the join stands.
    pub(crate) phase: Phase,
}

/// Why and how a connection is being closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CloseRequest {
    /// WebSocket close code.
    pub(crate) code: u16,
    /// Reason sent in the close frame.
    pub(crate) reason: &'static str,
}

/// Bytes waiting for one connection's socket, and how it is to be closed.
#[derive(Default)]
pub(crate) struct Outbox {
    /// Bytes waiting to be written, starting at `pos`. Allocated only while
    /// something is pending (released when drained if it grew large).
    pub(crate) buf: Vec<u8>,
    /// How much of `buf` is already written.
    pub(crate) pos: usize,
    /// The driver's waker, taken by whoever queues bytes.
    pub(crate) waker: Option<Waker>,
    /// Close after flushing what is queued.
    pub(crate) close: Option<CloseRequest>,
    /// The close frame has been queued: nothing more is accepted.
    pub(crate) close_queued: bool,
    /// When the close was requested (ms); a peer that does not take the
    /// queued bytes within [`CLOSE_FLUSH_MS`] is cut off.
    pub(crate) close_requested_ms: u64,
    /// Drop the socket now (the peer stopped reading).
    pub(crate) kill: bool,
    /// Last time bytes were written or the outbox was empty (ms).
    pub(crate) progress_ms: u64,
}

/// How long a closing connection may take to flush, in milliseconds.
pub(crate) const CLOSE_FLUSH_MS: u64 = 5_000;

/// Outboxes larger than this are released when drained rather than kept.
const KEEP_OUTBOX_CAPACITY: usize = 16 * 1024;

impl Outbox {
    /// Bytes queued and not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Wakes the driver so it writes what was queued.
    pub(crate) fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
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

    /// Records that `n` bytes were written; returns true when the outbox
    /// became empty.
    pub(crate) fn wrote(&mut self, n: usize) -> bool {
        self.progress_ms = crate::util::now_ms();
        self.pos += n;
        if self.pos < self.buf.len() {
            return false;
        }
        self.pos = 0;
        if self.buf.capacity() > KEEP_OUTBOX_CAPACITY {
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
            self.close_requested_ms = crate::util::now_ms();
        }
        self.wake();
    }

    /// Marks bytes queued into an empty outbox as the start of a wait for
    /// the socket (for the write-stall check).
    fn note_queued(&mut self, was_empty: bool) {
        if was_empty {
            self.progress_ms = crate::util::now_ms();
        }
    }
}

/// A connection as its shard sees it.
pub(crate) struct Conn {
    /// User id.
    pub(crate) user: Arc<str>,
    /// Device id.
    pub(crate) device: Arc<str>,
    /// What waits for the socket.
    pub(crate) outbox: Outbox,
    /// Joined channels.
    pub(crate) subs: HashMap<Arc<str>, Sub>,
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

/// A token bucket (one per user per shard).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RateBucket {
    tokens: f64,
    refilled_ms: u64,
}

impl RateBucket {
    /// Takes one token at `now_ms` (`per_sec` tokens a second, at most
    /// `burst`); false when the bucket is empty.
    pub(crate) fn take(&mut self, now_ms: u64, per_sec: f64, burst: u32) -> bool {
        self.refill(now_ms, per_sec, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full at `now_ms` (then it can be forgotten: a
    /// new bucket starts full).
    pub(crate) fn is_full(&mut self, now_ms: u64, per_sec: f64, burst: u32) -> bool {
        self.refill(now_ms, per_sec, burst);
        self.tokens >= f64::from(burst)
    }

    fn refill(&mut self, now_ms: u64, per_sec: f64, burst: u32) {
        if self.refilled_ms == 0 {
            self.tokens = f64::from(burst);
        } else {
            let elapsed = now_ms.saturating_sub(self.refilled_ms) as f64 / 1000.0;
            self.tokens = (self.tokens + elapsed * per_sec).min(f64::from(burst));
        }
        self.refilled_ms = now_ms;
    }
}

impl Conn {
    pub(crate) fn new(user: Arc<str>, device: Arc<str>, now_ms: u64) -> Conn {
        Conn {
            user,
            device,
            outbox: Outbox::default(),
            subs: HashMap::new(),
            last_rx_ms: now_ms,
            http: false,
            expires_ms: None,
            strikes: 0,
            queued: VecDeque::new(),
            queued_bytes: 0,
            in_flight: InFlight::default(),
            fetching: false,
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
    fn outbox_tracks_partial_writes() {
        let mut c = Outbox::default();
        c.push_bytes(&[0; 80]);
        assert_eq!(c.pending(), 80);
        assert!(!c.wrote(40));
        assert_eq!(c.pending(), 40);
        assert!(c.wrote(40));
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn rate_bucket_allows_a_burst_then_the_rate() {
        let mut b = RateBucket::default();
        let t = 1_000_000;
        for _ in 0..5 {
            assert!(b.take(t, 2.0, 5));
        }
        assert!(!b.take(t, 2.0, 5));
        assert!(!b.is_full(t, 2.0, 5));
        assert!(b.take(t + 500, 2.0, 5), "one token after 0.5 s at 2/s");
        assert!(!b.take(t + 500, 2.0, 5));
        assert!(b.is_full(t + 10_000, 2.0, 5), "full again after a while");
    }

    #[test]
    fn queued_requests_come_back_in_order_and_count_their_bytes() {
        let mut c = Conn::new(Arc::from("u"), Arc::from("d"), 0);
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
        let mut c = Outbox::default();
        c.push_bytes(&vec![1; 100_000]);
        assert!(c.wrote(100_000));
        assert_eq!(c.buf.capacity(), 0);
    }
}
