//! The engine of the double: an ordered, multi-version key-value store and
//! its transactions, in plain safe Rust (no FFI and no sockets here: `ffi.rs`
//! runs it in the calling process, `server.rs` runs it for many processes).
//!
//! - **Versions.** Every commit that writes gets the next version (a
//!   counter, not FDB's ~1M/s clock; a server starts it at the wall clock in
//!   microseconds so versions also grow across server restarts). Each key
//!   keeps its values by version; a transaction reads the newest value at or
//!   below its read version, plus its own writes (read-your-writes).
//! - **Conflicts.** Non-snapshot reads record read-conflict ranges; writes
//!   record write-conflict ranges. A commit fails with 1020 `not_committed`
//!   when a commit newer than its read version wrote into one of its read
//!   ranges. Range reads record the whole requested range (FDB records only
//!   what was read: the double can report a conflict FDB would not, never
//!   the other way round).
//! - **Age.** A transaction whose read version is older than 5 s fails with
//!   1007 `transaction_too_old` (FDB's MVCC window); commit records older
//!   than that are dropped.
//! - **Limits** (checked at commit, like FDB): key ≤ 10,000 bytes (2102),
//!   value ≤ 100,000 bytes (2103), transaction ≤ 10,000,000 bytes or the
//!   `size_limit` option (2101).
//! - **Options.** `timeout` (1031 once passed, counted from creation and
//!   across retries), `retry_limit` (`on_error` gives the error back once
//!   exceeded); all others are accepted and ignored. They live in
//!   [`Retry`], which a client keeps on its side in server mode.
//! - **Versionstamps.** `SET_VERSIONSTAMPED_KEY` / `_VALUE` (API ≥ 520
//!   encoding: the param's last 4 bytes are the little-endian offset of a
//!   10-byte placeholder) are applied at commit with the commit's
//!   [`Stamp`]: 8 bytes big-endian commit version, 2 bytes big-endian batch
//!   order (always 0: the double commits one transaction per version). A
//!   key holding a versionstamped value this transaction wrote cannot be
//!   read back in it (1036 `accessed_unreadable`, as FDB).
//! - **Watches.** A watch is armed when its transaction commits, with the
//!   value the key has then (at the commit version, or at the read version
//!   of a read-only transaction); any later commit that changes the key
//!   fires it. A failed commit fails its watches with the commit's error; a
//!   transaction reset, cancelled or dropped before commit fails them with
//!   1025 `transaction_cancelled`. Firing calls a [`WatchFire`] closure the
//!   caller gave, always outside the database lock.
//! - **Stats.** [`Database::stats`] counts transactions, commits, reads and
//!   bytes (what a later issue measures per message).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// FDB error codes the double produces.
pub mod code {
    pub const TRANSACTION_TOO_OLD: i32 = 1007;
    pub const NOT_COMMITTED: i32 = 1020;
    pub const COMMIT_UNKNOWN_RESULT: i32 = 1021;
    pub const TRANSACTION_CANCELLED: i32 = 1025;
    pub const TRANSACTION_TIMED_OUT: i32 = 1031;
    pub const TOO_MANY_WATCHES: i32 = 1032;
    pub const ACCESSED_UNREADABLE: i32 = 1036;
    pub const OPERATION_CANCELLED: i32 = 1101;
    pub const NO_CLUSTER_FILE_FOUND: i32 = 1515;
    pub const CLIENT_INVALID_OPERATION: i32 = 2000;
    pub const KEY_OUTSIDE_LEGAL_RANGE: i32 = 2004;
    pub const INVERTED_RANGE: i32 = 2005;
    pub const INVALID_OPTION_VALUE: i32 = 2006;
    pub const NETWORK_NOT_SETUP: i32 = 2008;
    pub const NETWORK_ALREADY_SETUP: i32 = 2009;
    pub const NO_COMMIT_VERSION: i32 = 2021;
    pub const TRANSACTION_TOO_LARGE: i32 = 2101;
    pub const KEY_TOO_LARGE: i32 = 2102;
    pub const VALUE_TOO_LARGE: i32 = 2103;
    pub const CONNECTION_STRING_INVALID: i32 = 2104;
    pub const API_VERSION_NOT_SUPPORTED: i32 = 2203;
    /// Used for every call the double does not implement.
    pub const INTERNAL_ERROR: i32 = 4100;
}

/// FDB's documented limits.
pub const MAX_KEY: usize = 10_000;
pub const MAX_VALUE: usize = 100_000;
pub const MAX_TXN_BYTES: usize = 10_000_000;
/// FDB's MVCC window.
pub const MAX_TXN_AGE: Duration = Duration::from_secs(5);

/// Whether `on_error` retries `code` (FDB's `retryable` predicate).
pub fn is_retryable(code: i32) -> bool {
    matches!(code, 1007 | 1009 | 1020 | 1021 | 1037 | 1213)
}

/// Whether a transaction that failed with `code` may have committed.
pub fn maybe_committed(code: i32) -> bool {
    code == code::COMMIT_UNKNOWN_RESULT
}

/// FDB mutation types the double applies (`FDBMutationType`).
pub mod mutation {
    pub const ADD: i32 = 2;
    pub const BIT_AND: i32 = 6;
    pub const BIT_OR: i32 = 7;
    pub const BIT_XOR: i32 = 8;
    pub const MAX: i32 = 12;
    pub const MIN: i32 = 13;
    pub const SET_VERSIONSTAMPED_KEY: i32 = 14;
    pub const SET_VERSIONSTAMPED_VALUE: i32 = 15;
    pub const BYTE_MIN: i32 = 16;
    pub const BYTE_MAX: i32 = 17;
}

/// FDB's 10-byte versionstamp: commit version (8 bytes, big-endian), then
/// the transaction's order within its commit batch (2 bytes, big-endian).
pub type Stamp = [u8; 10];

/// The stamp of the transaction at `batch` in the commit at `version`.
pub fn stamp(version: i64, batch: u16) -> Stamp {
    let mut s = [0u8; 10];
    s[..8].copy_from_slice(&version.to_be_bytes());
    s[8..].copy_from_slice(&batch.to_be_bytes());
    s
}

/// Splits a versionstamped param (API ≥ 520) into its body and the offset
/// of the 10-byte placeholder: the last 4 bytes are that offset,
/// little-endian. An offset that does not leave 10 bytes is FDB's 2000
/// `client_invalid_operation`.
pub fn stamped_parts(param: &[u8]) -> Result<(&[u8], usize), i32> {
    let n = param
        .len()
        .checked_sub(4)
        .ok_or(code::CLIENT_INVALID_OPERATION)?;
    let mut off = [0u8; 4];
    off.copy_from_slice(&param[n..]);
    let off = u32::from_le_bytes(off) as usize;
    if off.checked_add(10).is_none_or(|end| end > n) {
        return Err(code::CLIENT_INVALID_OPERATION);
    }
    Ok((&param[..n], off))
}

/// `body` with `stamp` written at `off` (checked by [`stamped_parts`]).
fn with_stamp(body: &[u8], off: usize, stamp: &Stamp) -> Vec<u8> {
    let mut v = body.to_vec();
    v[off..off + 10].copy_from_slice(stamp);
    v
}

type Key = Vec<u8>;
type Range = (Key, Key);
/// A key's values by version, ascending (`None`: cleared at that version).
type Versions = Vec<(i64, Option<Vec<u8>>)>;

/// What a watch's owner is told once: `Ok` when the key changed, or the
/// error that ended the watch. Called outside the database lock.
pub type WatchFire = Box<dyn FnOnce(Result<(), i32>) + Send>;

/// A watch, to cancel it ([`Database::cancel_watch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WatchId(pub u64);

/// An armed watch: fires when the key's value differs from `value`.
struct Watch {
    id: u64,
    value: Option<Vec<u8>>,
    fire: WatchFire,
}

/// One commit, kept for conflict checks of transactions that read before it.
struct CommitRecord {
    version: i64,
    at: Instant,
    writes: Vec<Range>,
}

#[derive(Default)]
struct State {
    /// key → (version, value or tombstone), ascending by version.
    data: BTreeMap<Key, Versions>,
    version: i64,
    log: VecDeque<CommitRecord>,
    /// The newest version dropped from `log`: transactions that read below
    /// it cannot be checked for conflicts any more.
    pruned_through: i64,
    /// Tombstones written, oldest first: a key whose newest version is a
    /// tombstone at or below `pruned_through` is dropped from `data` (no
    /// reader can see anything of it any more). Without this every key
    /// ever cleared — a node's inbox entries, versionstamped and cleared
    /// once read — stayed in `data`, and range reads over such a space
    /// grew with everything ever written to it.
    tombstones: VecDeque<(i64, Key)>,
    /// Failures to inject into the next commits: (error, apply the commit
    /// anyway). Only through [`Database::inject_commit_errors`].
    faults: VecDeque<(i32, bool)>,
    /// Armed watches by key, and the key of each armed watch id.
    watches: BTreeMap<Key, Vec<Watch>>,
    watch_keys: HashMap<u64, Key>,
    /// Watches created in a transaction that has not committed yet, and
    /// those of them cancelled meanwhile (dropped when the commit arms them).
    pending_watches: HashSet<u64>,
    cancelled_watches: HashSet<u64>,
}

impl State {
    fn visible(&self, key: &[u8], rv: i64) -> Option<&Vec<u8>> {
        self.data
            .get(key)?
            .iter()
            .rev()
            .find(|(v, _)| *v <= rv)
            .and_then(|(_, val)| val.as_ref())
    }

    fn prune(&mut self, now: Instant) {
        while let Some(r) = self.log.front() {
            if now.duration_since(r.at) > MAX_TXN_AGE + Duration::from_secs(1) {
                self.pruned_through = r.version;
                self.log.pop_front();
            } else {
                break;
            }
        }
        while let Some((v, _)) = self.tombstones.front() {
            if *v > self.pruned_through {
                break;
            }
            let Some((_, key)) = self.tombstones.pop_front() else {
                break;
            };
            let forgotten = self
                .data
                .get(&key)
                .and_then(|versions| versions.last())
                .is_some_and(|(v, value)| value.is_none() && *v <= self.pruned_through);
            if forgotten {
                self.data.remove(&key);
            }
        }
    }

    fn write(&mut self, key: &[u8], value: Option<Vec<u8>>, version: i64) {
        let oldest_needed = self.pruned_through;
        let versions = self.data.entry(key.to_vec()).or_default();
        // Keep the newest value at or below the oldest read version still
        // allowed, and everything newer.
        if let Some(keep_from) = versions.iter().rposition(|(v, _)| *v <= oldest_needed) {
            versions.drain(..keep_from);
        }
        if value.is_none() {
            self.tombstones.push_back((version, key.to_vec()));
        }
        versions.push((version, value));
    }

    /// Takes the armed watches in `ranges` whose key now (at `version`)
    /// holds another value than the one they were armed with.
    fn triggered(&mut self, ranges: &[Range], version: i64) -> Vec<WatchFire> {
        if self.watches.is_empty() {
            return Vec::new();
        }
        let mut keys: Vec<Key> = Vec::new();
        for (lo, hi) in ranges {
            keys.extend(
                self.watches
                    .range(lo.clone()..hi.clone())
                    .map(|(k, _)| k.clone()),
            );
        }
        keys.sort_unstable();
        keys.dedup();
        let mut fired = Vec::new();
        for k in keys {
            let now = self.visible(&k, version).cloned();
            let Some(list) = self.watches.get_mut(&k) else {
                continue;
            };
            let (fire, keep): (Vec<Watch>, Vec<Watch>) = std::mem::take(list)
                .into_iter()
                .partition(|w| w.value != now);
            if keep.is_empty() {
                self.watches.remove(&k);
            } else {
                *list = keep;
            }
            for w in fire {
                self.watch_keys.remove(&w.id);
                fired.push(w.fire);
            }
        }
        fired
    }
}

/// Counters of one database: what the double did for its clients. A later
/// issue divides them by messages sent.
#[derive(Default)]
pub struct Stats {
    /// Transactions created (a retry through `on_error` is not a new one).
    pub transactions: AtomicU64,
    /// Commits that wrote, and read-only commits (which FDB answers at once).
    pub commits: AtomicU64,
    pub read_only_commits: AtomicU64,
    /// Commits refused with 1020 `not_committed`, and with any other error.
    pub conflicts: AtomicU64,
    pub failed_commits: AtomicU64,
    /// Read calls (`get`, `get_key`, `get_range`), rows they returned, and
    /// key + value bytes of those rows.
    pub reads: AtomicU64,
    pub rows_read: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Mutations in committed transactions, and their key + value bytes.
    pub mutations: AtomicU64,
    pub bytes_written: AtomicU64,
    /// Watches armed by a commit, and watches fired by a change.
    pub watches_armed: AtomicU64,
    pub watches_fired: AtomicU64,
}

impl Stats {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Every counter by name, in a fixed order.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("transactions", get(&self.transactions)),
            ("commits", get(&self.commits)),
            ("read_only_commits", get(&self.read_only_commits)),
            ("conflicts", get(&self.conflicts)),
            ("failed_commits", get(&self.failed_commits)),
            ("reads", get(&self.reads)),
            ("rows_read", get(&self.rows_read)),
            ("bytes_read", get(&self.bytes_read)),
            ("mutations", get(&self.mutations)),
            ("bytes_written", get(&self.bytes_written)),
            ("watches_armed", get(&self.watches_armed)),
            ("watches_fired", get(&self.watches_fired)),
        ]
    }
}

/// One in-memory database (one per cluster-file path in a process, or the
/// one a server holds for all its clients).
#[derive(Default)]
pub struct Database {
    state: Mutex<State>,
    next_watch: AtomicU64,
    stats: Stats,
}

impl Database {
    /// A database whose first commit gets version `version + 1`.
    pub fn starting_at(version: i64) -> Database {
        let db = Database::default();
        db.lock().version = version;
        db
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes the next `errors.len()` commits that write fail with the given
    /// codes; with `applied`, the commit is applied before failing (as a
    /// 1021 `commit_unknown_result` that did commit).
    pub fn inject_commit_errors(&self, errors: &[(i32, bool)]) {
        self.lock().faults.extend(errors.iter().copied());
    }

    /// The newest committed version.
    pub fn version(&self) -> i64 {
        self.lock().version
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Forgets a watch without firing it (its owner cancelled it). Unknown
    /// or already fired ids are ignored.
    pub fn cancel_watch(&self, id: WatchId) {
        let mut st = self.lock();
        if let Some(key) = st.watch_keys.remove(&id.0) {
            let mut dropped = Vec::new();
            if let Some(list) = st.watches.get_mut(&key) {
                if let Some(i) = list.iter().position(|w| w.id == id.0) {
                    dropped.push(list.swap_remove(i));
                }
                if list.is_empty() {
                    st.watches.remove(&key);
                }
            }
            drop(st);
            drop(dropped);
        } else if st.pending_watches.contains(&id.0) {
            st.cancelled_watches.insert(id.0);
        }
    }

    /// Armed watches (for tests and stats).
    pub fn armed_watches(&self) -> usize {
        self.lock().watch_keys.len()
    }
}

#[derive(Clone, Debug)]
enum Write {
    Set(Vec<u8>),
    Clear,
    /// Atomic ops over the committed value (applied at commit); a
    /// `SET_VERSIONSTAMPED_VALUE` among them makes the key unreadable.
    Atomic(Vec<(i32, Vec<u8>)>),
}

/// A transaction's options that survive `on_error`, and its retry count:
/// what decides `on_error` and the timeout. In server mode the client keeps
/// it (so a lost connection does not reset the timeout or the retries).
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    created: Instant,
    timeout: Option<Duration>,
    retry_limit: Option<i64>,
    size_limit: Option<usize>,
    retries: i64,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            created: Instant::now(),
            timeout: None,
            retry_limit: None,
            size_limit: None,
            retries: 0,
        }
    }
}

impl Retry {
    /// Sets an option (`FDBTransactionOption`); unknown ones are accepted.
    pub fn set_option(&mut self, option: i32, value: Option<&[u8]>) -> Result<(), i32> {
        let int = || -> Result<i64, i32> {
            let v = value.ok_or(code::INVALID_OPTION_VALUE)?;
            let arr: [u8; 8] = v.try_into().map_err(|_| code::INVALID_OPTION_VALUE)?;
            Ok(i64::from_le_bytes(arr))
        };
        match option {
            500 => {
                let ms = int()?;
                self.timeout = (ms > 0).then(|| Duration::from_millis(ms as u64));
            }
            501 => {
                let n = int()?;
                self.retry_limit = (n >= 0).then_some(n);
            }
            503 => {
                let n = int()?;
                self.size_limit = (n > 0).then_some(n as usize);
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the `timeout` option has passed.
    pub fn timed_out(&self) -> bool {
        self.timeout.is_some_and(|t| self.created.elapsed() > t)
    }

    /// `fdb_transaction_on_error`'s decision: `Ok(backoff)` when the caller
    /// should retry after that long, the error back when it should not.
    pub fn on_error(&mut self, err: i32) -> Result<Duration, i32> {
        if !is_retryable(err) {
            return Err(err);
        }
        if self.timed_out() {
            return Err(code::TRANSACTION_TIMED_OUT);
        }
        if let Some(limit) = self.retry_limit {
            if self.retries >= limit {
                return Err(err);
            }
        }
        self.retries += 1;
        Ok(Duration::from_micros(500u64 << self.retries.min(5)))
    }
}

/// A versionstamped key write: the key's body, the placeholder's offset,
/// the value.
type StampedKey = (Key, usize, Vec<u8>);

/// A transaction waiting for its commit to arm this watch.
struct PendingWatch {
    id: u64,
    key: Key,
    fire: WatchFire,
}

/// What a successful commit reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The commit version; -1 for a read-only transaction (as FDB).
    pub version: i64,
    /// The transaction's versionstamp; `None` when read-only.
    pub stamp: Option<Stamp>,
}

pub struct Transaction {
    db: Arc<Database>,
    retry: Retry,
    read_version: Option<(i64, Instant)>,
    writes: BTreeMap<Key, Write>,
    stamped_keys: Vec<StampedKey>,
    cleared: Vec<Range>,
    read_conflicts: Vec<Range>,
    extra_write_conflicts: Vec<Range>,
    watches: Vec<PendingWatch>,
    /// First limit broken by a mutation; reported by commit.
    deferred_error: Option<i32>,
    committed_version: i64,
    cancelled: bool,
}

fn key_after(k: &[u8]) -> Key {
    let mut v = k.to_vec();
    v.push(0);
    v
}

fn overlaps(a: &Range, b: &Range) -> bool {
    a.0 < b.1 && b.0 < a.1
}

fn in_range(k: &[u8], r: &Range) -> bool {
    k >= r.0.as_slice() && k < r.1.as_slice()
}

/// Applies one atomic op (FDB semantics: little-endian integers; a missing
/// value counts as zeros / as absent for min and byte ops).
pub fn apply_atomic(op: i32, base: Option<&[u8]>, param: &[u8]) -> Vec<u8> {
    let le = |b: &[u8]| -> Vec<u8> {
        let mut v = b.to_vec();
        v.resize(param.len(), 0);
        v
    };
    match op {
        mutation::ADD => {
            let a = le(base.unwrap_or(&[]));
            let mut out = Vec::with_capacity(param.len());
            let mut carry = 0u16;
            for (x, y) in a.iter().zip(param) {
                let s = u16::from(*x) + u16::from(*y) + carry;
                out.push((s & 0xff) as u8);
                carry = s >> 8;
            }
            out
        }
        mutation::BIT_AND | mutation::BIT_OR | mutation::BIT_XOR => {
            let Some(b) = base else {
                return param.to_vec();
            };
            let a = le(b);
            a.iter()
                .zip(param)
                .map(|(x, y)| match op {
                    mutation::BIT_AND => x & y,
                    mutation::BIT_OR => x | y,
                    _ => x ^ y,
                })
                .collect()
        }
        mutation::MAX | mutation::MIN => {
            let Some(b) = base else {
                return param.to_vec();
            };
            let a = le(b);
            // Compare as little-endian unsigned integers.
            let cmp = a.iter().rev().cmp(param.iter().rev());
            let take_a = if op == mutation::MAX {
                cmp.is_gt()
            } else {
                cmp.is_lt()
            };
            if take_a {
                a
            } else {
                param.to_vec()
            }
        }
        mutation::BYTE_MAX => match base {
            Some(b) if b > param => b.to_vec(),
            _ => param.to_vec(),
        },
        mutation::BYTE_MIN => match base {
            Some(b) if b < param => b.to_vec(),
            _ => param.to_vec(),
        },
        _ => param.to_vec(),
    }
}

/// Applies a key's atomic ops at commit, versionstamped values included.
fn apply_ops(base: Option<Vec<u8>>, ops: &[(i32, Vec<u8>)], stamp: &Stamp) -> Option<Vec<u8>> {
    let mut cur = base;
    for (op, p) in ops {
        cur = Some(if *op == mutation::SET_VERSIONSTAMPED_VALUE {
            match stamped_parts(p) {
                Ok((body, off)) => with_stamp(body, off, stamp),
                // Refused when the op was added; never applied.
                Err(_) => continue,
            }
        } else {
            apply_atomic(*op, cur.as_deref(), p)
        });
    }
    cur
}

fn unreadable(w: Option<&Write>) -> bool {
    matches!(w, Some(Write::Atomic(ops))
        if ops.iter().any(|(op, _)| *op == mutation::SET_VERSIONSTAMPED_VALUE))
}

/// A resolved key selector: (key, or_equal, offset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub key: Key,
    pub or_equal: bool,
    pub offset: i32,
}

/// What a range read returns.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RangeResult {
    pub rows: Vec<(Key, Vec<u8>)>,
    pub more: bool,
}

/// Range read parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeParams {
    pub limit: i32,
    pub target_bytes: i32,
    pub mode: i32,
    pub snapshot: bool,
    pub reverse: bool,
}

/// Rows per call when the caller gives no limit in a streaming mode: small
/// enough that callers' paging (`more`) is exercised.
const STREAM_ROWS: usize = 256;
/// The end of the normal key space.
const KEYSPACE_END: &[u8] = b"\xff";

impl Transaction {
    pub fn new(db: Arc<Database>) -> Transaction {
        Stats::add(&db.stats.transactions, 1);
        Transaction {
            db,
            retry: Retry::default(),
            read_version: None,
            writes: BTreeMap::new(),
            stamped_keys: Vec::new(),
            cleared: Vec::new(),
            read_conflicts: Vec::new(),
            extra_write_conflicts: Vec::new(),
            watches: Vec::new(),
            deferred_error: None,
            committed_version: -1,
            cancelled: false,
        }
    }

    /// Fails the watches not armed yet with `err`.
    fn fail_watches(&mut self, err: i32) {
        if self.watches.is_empty() {
            return;
        }
        let watches = std::mem::take(&mut self.watches);
        {
            let mut st = self.db.lock();
            for w in &watches {
                st.pending_watches.remove(&w.id);
                st.cancelled_watches.remove(&w.id);
            }
        }
        for w in watches {
            (w.fire)(Err(err));
        }
    }

    /// Back to the state of a new transaction, keeping the retry state
    /// (`on_error`). Watches not armed yet fail with 1025.
    pub fn restart(&mut self) {
        self.fail_watches(code::TRANSACTION_CANCELLED);
        self.read_version = None;
        self.writes.clear();
        self.stamped_keys.clear();
        self.cleared.clear();
        self.read_conflicts.clear();
        self.extra_write_conflicts.clear();
        self.deferred_error = None;
        self.committed_version = -1;
        self.cancelled = false;
    }

    /// Back to the state of a new transaction, options and retries too.
    pub fn reset(&mut self) {
        self.restart();
        self.retry = Retry::default();
    }

    pub fn cancel(&mut self) {
        self.cancelled = true;
        self.fail_watches(code::TRANSACTION_CANCELLED);
    }

    /// Sets an option (`FDBTransactionOption`); unknown ones are accepted.
    pub fn set_option(&mut self, option: i32, value: Option<&[u8]>) -> Result<(), i32> {
        self.retry.set_option(option, value)
    }

    /// The error every operation reports first, if any.
    fn check_usable(&self) -> Result<(), i32> {
        if self.cancelled {
            return Err(code::TRANSACTION_CANCELLED);
        }
        if self.retry.timed_out() {
            return Err(code::TRANSACTION_TIMED_OUT);
        }
        if let Some((_, at)) = self.read_version {
            if at.elapsed() > MAX_TXN_AGE {
                return Err(code::TRANSACTION_TOO_OLD);
            }
        }
        Ok(())
    }

    fn rv(&mut self) -> i64 {
        match self.read_version {
            Some((v, _)) => v,
            None => {
                let v = self.db.lock().version;
                self.read_version = Some((v, Instant::now()));
                v
            }
        }
    }

    pub fn get_read_version(&mut self) -> Result<i64, i32> {
        self.check_usable()?;
        Ok(self.rv())
    }

    pub fn set_read_version(&mut self, v: i64) {
        self.read_version = Some((v, Instant::now()));
    }

    pub fn committed_version(&self) -> i64 {
        self.committed_version
    }

    fn is_cleared(&self, key: &[u8]) -> bool {
        self.cleared.iter().any(|r| in_range(key, r))
    }

    /// The value of `key` this transaction sees.
    fn read_key(&self, st: &State, key: &[u8], rv: i64) -> Option<Vec<u8>> {
        match self.writes.get(key) {
            Some(Write::Set(v)) => Some(v.clone()),
            Some(Write::Clear) => None,
            Some(Write::Atomic(ops)) => {
                let mut cur = st.visible(key, rv).cloned();
                for (op, p) in ops {
                    cur = Some(apply_atomic(*op, cur.as_deref(), p));
                }
                cur
            }
            None if self.is_cleared(key) => None,
            None => st.visible(key, rv).cloned(),
        }
    }

    fn count_read(&self, rows: usize, bytes: usize) {
        let s = &self.db.stats;
        Stats::add(&s.reads, 1);
        Stats::add(&s.rows_read, rows as u64);
        Stats::add(&s.bytes_read, bytes as u64);
    }

    pub fn get(&mut self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, i32> {
        self.check_usable()?;
        if unreadable(self.writes.get(key)) {
            return Err(code::ACCESSED_UNREADABLE);
        }
        let rv = self.rv();
        if !snapshot {
            self.read_conflicts.push((key.to_vec(), key_after(key)));
        }
        let db = self.db.clone();
        let st = db.lock();
        let v = self.read_key(&st, key, rv);
        drop(st);
        self.count_read(
            usize::from(v.is_some()),
            v.as_ref().map_or(0, |v| key.len() + v.len()),
        );
        Ok(v)
    }
    /// Keys and values this transaction sees in [lo, hi), ascending or
    /// descending, lazily merged from the store and its own writes.
    fn merged<'a>(
        &'a self,
        st: &'a State,
        rv: i64,
        lo: &[u8],
        hi: &[u8],
        reverse: bool,
    ) -> Box<dyn Iterator<Item = (Key, Vec<u8>)> + 'a> {
        if lo >= hi {
            return Box::new(std::iter::empty());
        }
        let bounds = (Bound::Included(lo.to_vec()), Bound::Excluded(hi.to_vec()));
        let stored: Box<dyn Iterator<Item = &Key>> = if reverse {
            Box::new(st.data.range(bounds.clone()).rev().map(|(k, _)| k))
        } else {
            Box::new(st.data.range(bounds.clone()).map(|(k, _)| k))
        };
        let own: Box<dyn Iterator<Item = &Key>> = if reverse {
            Box::new(self.writes.range(bounds).rev().map(|(k, _)| k))
        } else {
            Box::new(self.writes.range(bounds).map(|(k, _)| k))
        };
        let keys = MergeKeys {
            a: stored.peekable(),
            b: own.peekable(),
            reverse,
        };
        Box::new(keys.filter_map(move |k| self.read_key(st, k, rv).map(|v| (k.clone(), v))))
    }

    fn resolve(&self, st: &State, rv: i64, sel: &Selector) -> Key {
        if sel.offset >= 1 {
            // The offset-th key after the anchor.
            let lo = if sel.or_equal {
                key_after(&sel.key)
            } else {
                sel.key.clone()
            };
            self.merged(st, rv, &lo, KEYSPACE_END, false)
                .nth((sel.offset - 1) as usize)
                .map_or_else(|| KEYSPACE_END.to_vec(), |(k, _)| k)
        } else {
            let hi = if sel.or_equal {
                key_after(&sel.key)
            } else {
                sel.key.clone()
            };
            self.merged(st, rv, b"", &hi, true)
                .nth((-sel.offset) as usize)
                .map_or_else(Vec::new, |(k, _)| k)
        }
    }

    pub fn get_key(&mut self, sel: &Selector, snapshot: bool) -> Result<Key, i32> {
        self.check_usable()?;
        let rv = self.rv();
        let db = self.db.clone();
        let st = db.lock();
        let k = self.resolve(&st, rv, sel);
        drop(st);
        self.count_read(1, k.len());
        if !snapshot {
            let (a, b) = if k < sel.key {
                (k.clone(), key_after(&sel.key))
            } else {
                (sel.key.clone(), key_after(&k))
            };
            self.read_conflicts.push((a, b));
        }
        Ok(k)
    }

    pub fn get_range(
        &mut self,
        begin: &Selector,
        end: &Selector,
        p: RangeParams,
    ) -> Result<RangeResult, i32> {
        self.check_usable()?;
        let rv = self.rv();
        let db = self.db.clone();
        let st = db.lock();
        let b = self.resolve(&st, rv, begin);
        let e = self.resolve(&st, rv, end);
        if b < e
            && self
                .writes
                .range(b.clone()..e.clone())
                .any(|(_, w)| unreadable(Some(w)))
        {
            return Err(code::ACCESSED_UNREADABLE);
        }
        let mut out = RangeResult::default();
        if b < e {
            let row_cap = match (p.limit, p.mode) {
                (l, _) if l > 0 => l as usize,
                (_, -2) => usize::MAX, // want_all
                _ => STREAM_ROWS,
            };
            let byte_cap = if p.target_bytes > 0 {
                p.target_bytes as usize
            } else {
                usize::MAX
            };
            let mut bytes = 0usize;
            let mut it = self.merged(&st, rv, &b, &e, p.reverse);
            for (k, v) in it.by_ref() {
                bytes += k.len() + v.len();
                out.rows.push((k, v));
                if out.rows.len() >= row_cap || bytes >= byte_cap {
                    break;
                }
            }
            out.more = it.next().is_some();
        }
        drop(st);
        let bytes: usize = out.rows.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.count_read(out.rows.len(), bytes);
        // The whole requested range, not the keys found: a range with no
        // keys (or none before the first found) must still conflict with a
        // commit that writes into it, as in FDB. A plain range (both
        // selectors first_greater_or_equal) is [begin, end); otherwise from
        // the lower of the begin key and where it resolved, to where the
        // end resolved.
        let plain = |s: &Selector| !s.or_equal && s.offset == 1;
        let (lo, hi) = if plain(begin) && plain(end) {
            (begin.key.clone(), end.key.clone())
        } else {
            (b.min(begin.key.clone()), e)
        };
        if !p.snapshot && lo < hi {
            self.read_conflicts.push((lo, hi));
        }
        Ok(out)
    }

    fn check_key(&mut self, key: &[u8]) {
        if key.len() > MAX_KEY {
            self.deferred_error.get_or_insert(code::KEY_TOO_LARGE);
        }
        if key >= KEYSPACE_END {
            self.deferred_error
                .get_or_insert(code::KEY_OUTSIDE_LEGAL_RANGE);
        }
    }

    pub fn set(&mut self, key: &[u8], value: &[u8]) {
        self.check_key(key);
        if value.len() > MAX_VALUE {
            self.deferred_error.get_or_insert(code::VALUE_TOO_LARGE);
        }
        self.writes.insert(key.to_vec(), Write::Set(value.to_vec()));
    }

    pub fn clear(&mut self, key: &[u8]) {
        self.check_key(key);
        self.writes.insert(key.to_vec(), Write::Clear);
    }

    pub fn clear_range(&mut self, lo: &[u8], hi: &[u8]) {
        if lo >= hi {
            return;
        }
        let doomed: Vec<Key> = self
            .writes
            .range(lo.to_vec()..hi.to_vec())
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.writes.remove(&k);
        }
        self.cleared.push((lo.to_vec(), hi.to_vec()));
    }

    pub fn atomic_op(&mut self, key: &[u8], param: &[u8], op: i32) {
        if op == mutation::SET_VERSIONSTAMPED_KEY {
            // `key` carries the placeholder and its offset; `param` is the
            // value. The key is known only at commit.
            match stamped_parts(key) {
                Ok((body, off)) => {
                    self.check_key(body);
                    if param.len() > MAX_VALUE {
                        self.deferred_error.get_or_insert(code::VALUE_TOO_LARGE);
                    }
                    self.stamped_keys.push((body.to_vec(), off, param.to_vec()));
                }
                Err(e) => {
                    self.deferred_error.get_or_insert(e);
                }
            }
            return;
        }
        self.check_key(key);
        if param.len() > MAX_VALUE {
            self.deferred_error.get_or_insert(code::VALUE_TOO_LARGE);
        }
        if op == mutation::SET_VERSIONSTAMPED_VALUE {
            // Replaces whatever the key held; unreadable until committed.
            if let Err(e) = stamped_parts(param) {
                self.deferred_error.get_or_insert(e);
                return;
            }
            self.writes
                .insert(key.to_vec(), Write::Atomic(vec![(op, param.to_vec())]));
            return;
        }
        let cleared = self.is_cleared(key);
        let w = match self.writes.remove(key) {
            Some(Write::Set(v)) => Write::Set(apply_atomic(op, Some(&v), param)),
            Some(Write::Clear) => Write::Set(apply_atomic(op, None, param)),
            Some(Write::Atomic(mut ops)) => {
                ops.push((op, param.to_vec()));
                Write::Atomic(ops)
            }
            None if cleared => Write::Set(apply_atomic(op, None, param)),
            None => Write::Atomic(vec![(op, param.to_vec())]),
        };
        self.writes.insert(key.to_vec(), w);
    }

    pub fn add_conflict_range(&mut self, lo: &[u8], hi: &[u8], write: bool) -> Result<(), i32> {
        if lo > hi {
            return Err(code::INVERTED_RANGE);
        }
        let r = (lo.to_vec(), hi.to_vec());
        if write {
            self.extra_write_conflicts.push(r);
        } else {
            self.read_conflicts.push(r);
        }
        Ok(())
    }

    /// `fdb_transaction_watch`: arms a watch on `key` when this transaction
    /// commits. Errors (cancelled transaction, illegal key) and the firing
    /// itself come through `fire`, once.
    pub fn watch(&mut self, key: &[u8], fire: WatchFire) -> WatchId {
        let id = self.db.next_watch.fetch_add(1, Ordering::Relaxed);
        let err = match self.check_usable() {
            Err(e) => Some(e),
            Ok(()) if key.len() > MAX_KEY => Some(code::KEY_TOO_LARGE),
            Ok(()) if key >= KEYSPACE_END => Some(code::KEY_OUTSIDE_LEGAL_RANGE),
            Ok(()) => None,
        };
        if let Some(e) = err {
            fire(Err(e));
            return WatchId(id);
        }
        self.db.lock().pending_watches.insert(id);
        self.watches.push(PendingWatch {
            id,
            key: key.to_vec(),
            fire,
        });
        WatchId(id)
    }

    /// Bytes of mutations (what the stats call bytes written).
    fn mutation_bytes(&self) -> usize {
        let writes: usize = self
            .writes
            .iter()
            .map(|(k, w)| {
                k.len()
                    + match w {
                        Write::Set(v) => v.len(),
                        Write::Clear => 0,
                        Write::Atomic(ops) => ops.iter().map(|(_, p)| p.len()).sum(),
                    }
            })
            .sum();
        let stamped: usize = self
            .stamped_keys
            .iter()
            .map(|(k, _, v)| k.len() + v.len())
            .sum();
        let cleared: usize = self.cleared.iter().map(|(a, b)| a.len() + b.len()).sum();
        writes + stamped + cleared
    }

    /// Bytes of mutations and conflict ranges (FDB's transaction size).
    pub fn approximate_size(&self) -> usize {
        let ranges: usize = self
            .read_conflicts
            .iter()
            .chain(&self.extra_write_conflicts)
            .map(|(a, b)| a.len() + b.len())
            .sum();
        self.mutation_bytes() + ranges
    }

    pub fn estimated_range_size(&mut self, lo: &[u8], hi: &[u8]) -> Result<i64, i32> {
        self.check_usable()?;
        let rv = self.rv();
        let db = self.db.clone();
        let st = db.lock();
        let n: usize = self
            .merged(&st, rv, lo, hi, false)
            .map(|(k, v)| k.len() + v.len())
            .sum();
        Ok(n as i64)
    }

    /// Commits: checks conflicts and limits, applies the writes at a new
    /// version, arms this transaction's watches and fires those of others
    /// that the writes changed.
    pub fn commit(&mut self) -> Result<Committed, i32> {
        let mut fired = Vec::new();
        let r = self.commit_locked(&mut fired);
        let s = &self.db.stats;
        match &r {
            Ok(c) if c.version < 0 => Stats::add(&s.read_only_commits, 1),
            Ok(_) => Stats::add(&s.commits, 1),
            Err(code::NOT_COMMITTED) => Stats::add(&s.conflicts, 1),
            Err(_) => Stats::add(&s.failed_commits, 1),
        }
        Stats::add(&s.watches_fired, fired.len() as u64);
        for f in fired {
            f(Ok(()));
        }
        if let Err(e) = r {
            self.fail_watches(e);
        }
        r
    }

    fn commit_locked(&mut self, fired: &mut Vec<WatchFire>) -> Result<Committed, i32> {
        self.check_usable()?;
        if let Some(e) = self.deferred_error {
            return Err(e);
        }
        let limit = self.retry.size_limit.unwrap_or(MAX_TXN_BYTES);
        if self.approximate_size() > limit {
            return Err(code::TRANSACTION_TOO_LARGE);
        }
        let rv = self.rv();
        let db = self.db.clone();
        let mut st = db.lock();
        if self.writes.is_empty()
            && self.stamped_keys.is_empty()
            && self.cleared.is_empty()
            && self.extra_write_conflicts.is_empty()
        {
            // Read-only: nothing to commit (FDB gives committed version -1).
            // Its watches are armed with the values at its read version.
            self.arm_watches(&mut st, rv, fired);
            return Ok(Committed {
                version: -1,
                stamp: None,
            });
        }
        let now = Instant::now();
        st.prune(now);
        if rv < st.pruned_through {
            // Commits this transaction could conflict with were forgotten.
            return Err(code::TRANSACTION_TOO_OLD);
        }
        let conflict = st.log.iter().filter(|r| r.version > rv).any(|r| {
            r.writes
                .iter()
                .any(|w| self.read_conflicts.iter().any(|rc| overlaps(w, rc)))
        });
        if conflict {
            return Err(code::NOT_COMMITTED);
        }
        let fault = st.faults.pop_front();
        if let Some((e, false)) = fault {
            return Err(e);
        }
        let version = st.version + 1;
        let stamp = stamp(version, 0);
        // What the commit changed (watches look here) …
        let mut written: Vec<Range> = Vec::new();
        for (lo, hi) in &self.cleared {
            // Keys already cleared get no second tombstone.
            let keys: Vec<Key> = st
                .data
                .range(lo.clone()..hi.clone())
                .filter(|(_, versions)| versions.last().is_some_and(|(_, v)| v.is_some()))
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                st.write(&k, None, version);
            }
            written.push((lo.clone(), hi.clone()));
        }
        for (k, w) in &self.writes {
            let new = match w {
                Write::Set(v) => Some(v.clone()),
                Write::Clear => None,
                Write::Atomic(ops) => apply_ops(st.visible(k, version).cloned(), ops, &stamp),
            };
            st.write(k, new, version);
            written.push((k.clone(), key_after(k)));
        }
        for (body, off, value) in &self.stamped_keys {
            let k = with_stamp(body, *off, &stamp);
            st.write(&k, Some(value.clone()), version);
            written.push((k.clone(), key_after(&k)));
        }
        // … and what later commits check for conflicts.
        let mut conflict_ranges = written.clone();
        conflict_ranges.extend(self.extra_write_conflicts.iter().cloned());
        st.version = version;
        st.log.push_back(CommitRecord {
            version,
            at: now,
            writes: conflict_ranges,
        });
        self.committed_version = version;
        let s = &self.db.stats;
        let mutations = self.writes.len() + self.stamped_keys.len() + self.cleared.len();
        Stats::add(&s.mutations, mutations as u64);
        Stats::add(&s.bytes_written, self.mutation_bytes() as u64);
        fired.extend(st.triggered(&written, version));
        match fault {
            Some((e, true)) => Err(e),
            _ => {
                self.arm_watches(&mut st, version, fired);
                Ok(Committed {
                    version,
                    stamp: Some(stamp),
                })
            }
        }
    }

    /// Arms the pending watches with their keys' values at `version`; a
    /// watch whose key already changed since fires at once.
    fn arm_watches(&mut self, st: &mut State, version: i64, fired: &mut Vec<WatchFire>) {
        for w in std::mem::take(&mut self.watches) {
            st.pending_watches.remove(&w.id);
            if st.cancelled_watches.remove(&w.id) {
                continue;
            }
            Stats::add(&self.db.stats.watches_armed, 1);
            let value = st.visible(&w.key, version).cloned();
            if st.visible(&w.key, st.version) != value.as_ref() {
                fired.push(w.fire);
                continue;
            }
            st.watch_keys.insert(w.id, w.key.clone());
            st.watches.entry(w.key).or_default().push(Watch {
                id: w.id,
                value,
                fire: w.fire,
            });
        }
    }

    /// `fdb_transaction_on_error`: `Ok` (after a short backoff) when the
    /// caller should retry, the error back when it should not.
    pub fn on_error(&mut self, err: i32) -> Result<(), i32> {
        let backoff = self.retry.on_error(err)?;
        std::thread::sleep(backoff);
        self.restart();
        Ok(())
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.fail_watches(code::TRANSACTION_CANCELLED);
    }
}

/// Merges two sorted key streams (ascending, or descending when `reverse`)
/// without repeats.
struct MergeKeys<'a, A: Iterator<Item = &'a Key>, B: Iterator<Item = &'a Key>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
    reverse: bool,
}

impl<'a, A: Iterator<Item = &'a Key>, B: Iterator<Item = &'a Key>> Iterator
    for MergeKeys<'a, A, B>
{
    type Item = &'a Key;
    fn next(&mut self) -> Option<&'a Key> {
        match (self.a.peek(), self.b.peek()) {
            (None, None) => None,
            (Some(_), None) => self.a.next(),
            (None, Some(_)) => self.b.next(),
            (Some(x), Some(y)) => {
                let ord = if self.reverse { y.cmp(x) } else { x.cmp(y) };
                match ord {
                    std::cmp::Ordering::Less => self.a.next(),
                    std::cmp::Ordering::Greater => self.b.next(),
                    std::cmp::Ordering::Equal => {
                        self.a.next();
                        self.b.next()
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cleared_keys_are_forgotten_once_no_reader_can_see_them() {
        let mut st = super::State::default();
        let t0 = Instant::now();
        let record = |version, at| super::CommitRecord {
            version,
            at,
            writes: Vec::new(),
        };
        st.write(b"a", Some(b"1".to_vec()), 1);
        st.write(b"a", None, 2);
        st.write(b"b", Some(b"2".to_vec()), 2);
        st.log.push_back(record(2, t0));
        st.write(b"c", Some(b"3".to_vec()), 3);
        st.write(b"c", None, 3);
        st.log.push_back(record(3, t0 + Duration::from_secs(5)));
        st.prune(t0 + Duration::from_secs(7));
        assert_eq!(st.pruned_through, 2);
        assert!(!st.data.contains_key(&b"a"[..]), "cleared at 2: gone");
        assert!(st.data.contains_key(&b"b"[..]), "a live value stays");
        assert!(
            st.data.contains_key(&b"c"[..]),
            "cleared after the pruned version: a reader may still see its value"
        );
        st.prune(t0 + Duration::from_secs(12));
        assert!(!st.data.contains_key(&b"c"[..]));
        assert!(st.tombstones.is_empty());
    }

    #[test]
    fn clearing_a_cleared_range_writes_no_new_tombstones() {
        let db = std::sync::Arc::new(Database::starting_at(1));
        let mut t = Transaction::new(db.clone());
        t.set(b"k", b"v");
        t.commit().expect("commit");
        for _ in 0..3 {
            let mut t = Transaction::new(db.clone());
            t.clear_range(b"a", b"z");
            t.commit().expect("commit");
        }
        let st = db.lock();
        assert_eq!(st.data[&b"k"[..]].len(), 2, "one value, one tombstone");
        assert_eq!(st.tombstones.len(), 1);
    }

    use super::*;

    fn db() -> Arc<Database> {
        Arc::new(Database::default())
    }

    fn sel_ge(k: &[u8]) -> Selector {
        Selector {
            key: k.to_vec(),
            or_equal: false,
            offset: 1,
        }
    }

    const ALL: RangeParams = RangeParams {
        limit: 0,
        target_bytes: 0,
        mode: -2,
        snapshot: false,
        reverse: false,
    };

    #[test]
    fn a_commit_is_seen_by_later_transactions_and_not_by_earlier_read_versions() {
        let db = db();
        let mut old = Transaction::new(db.clone());
        old.get_read_version().expect("rv");
        let mut t = Transaction::new(db.clone());
        t.set(b"k", b"v");
        t.commit().expect("commit");
        assert_eq!(old.get(b"k", true).expect("get"), None);
        let mut new = Transaction::new(db);
        assert_eq!(new.get(b"k", false).expect("get"), Some(b"v".to_vec()));
    }

    #[test]
    fn a_read_key_written_by_a_newer_commit_fails_with_not_committed_and_on_error_retries() {
        let db = db();
        let mut a = Transaction::new(db.clone());
        let mut b = Transaction::new(db);
        assert_eq!(a.get(b"head", false).expect("get"), None);
        assert_eq!(b.get(b"head", false).expect("get"), None);
        a.set(b"head", b"1");
        b.set(b"head", b"1");
        a.commit().expect("first writer commits");
        assert_eq!(b.commit(), Err(code::NOT_COMMITTED));
        b.on_error(code::NOT_COMMITTED).expect("retryable");
        assert_eq!(b.get(b"head", false).expect("get"), Some(b"1".to_vec()));
        b.set(b"head", b"2");
        b.commit().expect("retry commits");
    }

    #[test]
    fn snapshot_reads_and_blind_writes_do_not_conflict() {
        let db = db();
        let mut a = Transaction::new(db.clone());
        let mut b = Transaction::new(db);
        a.get(b"x", true).expect("get");
        b.get(b"y", false).expect("get");
        a.set(b"x", b"1");
        b.set(b"x", b"2");
        b.commit().expect("b");
        a.commit().expect("a read x only as a snapshot");
    }

    #[test]
    fn a_key_written_into_a_range_read_conflicts_even_where_the_read_found_nothing() {
        let db = db();
        let mut t = Transaction::new(db.clone());
        t.set(b"p/b", b"");
        t.set(b"z", b"");
        t.commit().expect("setup");
        let read = |db: &Arc<Database>, lo: &[u8], hi: &[u8]| {
            let mut r = Transaction::new(db.clone());
            let rows = r
                .get_range(&sel_ge(lo), &sel_ge(hi), ALL)
                .expect("range")
                .rows;
            r.set(b"out", b"");
            (r, rows.len())
        };
        let write = |db: &Arc<Database>, k: &[u8]| {
            let mut w = Transaction::new(db.clone());
            w.set(k, b"");
            w.commit().expect("writer");
        };
        // A key before the first one the read found.
        let (mut a, found) = read(&db, b"p/", b"p0");
        assert_eq!(found, 1);
        write(&db, b"p/a");
        assert_eq!(a.commit(), Err(code::NOT_COMMITTED));
        // A key in a range where the read found nothing.
        let (mut b, found) = read(&db, b"q/", b"q0");
        assert_eq!(found, 0);
        write(&db, b"q/a");
        assert_eq!(b.commit(), Err(code::NOT_COMMITTED));
        // Outside the range: no conflict.
        let (mut c, _) = read(&db, b"r/", b"r0");
        write(&db, b"s/a");
        c.commit().expect("no conflict");
    }

    #[test]
    fn range_reads_see_own_writes_clears_and_page_with_more() {
        let db = db();
        let mut t = Transaction::new(db.clone());
        for i in 0..600u32 {
            t.set(format!("r/{i:04}").as_bytes(), b"x");
        }
        t.commit().expect("commit");
        let mut r = Transaction::new(db);
        r.clear_range(b"r/0000", b"r/0010");
        r.set(b"r/0005", b"own");
        let stream = RangeParams { mode: -1, ..ALL };
        let page = r
            .get_range(&sel_ge(b"r/"), &sel_ge(b"r0"), stream)
            .expect("range");
        assert_eq!(page.rows.len(), STREAM_ROWS);
        assert!(page.more);
        assert_eq!(page.rows[0], (b"r/0005".to_vec(), b"own".to_vec()));
        assert_eq!(page.rows[1].0, b"r/0010".to_vec());
        let rev = RangeParams {
            limit: 2,
            reverse: true,
            ..ALL
        };
        let last = r
            .get_range(&sel_ge(b"r/"), &sel_ge(b"r0"), rev)
            .expect("range");
        assert_eq!(last.rows[0].0, b"r/0599".to_vec());
        assert_eq!(last.rows[1].0, b"r/0598".to_vec());
        assert!(last.more);
    }

    #[test]
    fn key_selectors_resolve_like_fdb() {
        let db = db();
        let mut t = Transaction::new(db.clone());
        for k in [b"a", b"c", b"e"] {
            t.set(k, b"");
        }
        t.commit().expect("commit");
        let mut r = Transaction::new(db);
        let get = |r: &mut Transaction, k: &[u8], or_equal, offset| {
            r.get_key(
                &Selector {
                    key: k.to_vec(),
                    or_equal,
                    offset,
                },
                true,
            )
            .expect("key")
        };
        assert_eq!(get(&mut r, b"c", false, 1), b"c"); // first >= c
        assert_eq!(get(&mut r, b"c", true, 1), b"e"); // first > c
        assert_eq!(get(&mut r, b"d", true, 0), b"c"); // last <= d
        assert_eq!(get(&mut r, b"c", false, 0), b"a"); // last < c
        assert_eq!(get(&mut r, b"f", false, 1), b"\xff"); // past the end
        assert_eq!(get(&mut r, b"a", false, 0), b""); // before the start
    }

    #[test]
    fn atomic_max_and_add_apply_to_the_committed_value() {
        let db = db();
        let mut t = Transaction::new(db.clone());
        t.set(b"n", &5u64.to_le_bytes());
        t.commit().expect("commit");
        let mut a = Transaction::new(db.clone());
        let mut b = Transaction::new(db.clone());
        a.atomic_op(b"n", &3u64.to_le_bytes(), mutation::MAX);
        b.atomic_op(b"n", &9u64.to_le_bytes(), mutation::MAX);
        b.atomic_op(b"c", &1u64.to_le_bytes(), mutation::ADD);
        b.atomic_op(b"c", &1u64.to_le_bytes(), mutation::ADD);
        a.commit().expect("blind atomic ops never conflict");
        b.commit().expect("commit");
        let mut r = Transaction::new(db);
        assert_eq!(
            r.get(b"n", true).expect("get"),
            Some(9u64.to_le_bytes().to_vec())
        );
        assert_eq!(
            r.get(b"c", true).expect("get"),
            Some(2u64.to_le_bytes().to_vec())
        );
    }

    #[test]
    fn limits_are_refused_at_commit_with_fdb_codes() {
        let db = db();
        let mut t = Transaction::new(db.clone());
        t.set(b"v", &vec![0u8; MAX_VALUE + 1]);
        assert_eq!(t.commit(), Err(code::VALUE_TOO_LARGE));
        let mut t = Transaction::new(db.clone());
        t.set(&vec![1u8; MAX_KEY + 1], b"");
        assert_eq!(t.commit(), Err(code::KEY_TOO_LARGE));
        let mut t = Transaction::new(db);
        for i in 0..101u32 {
            t.set(&i.to_be_bytes(), &vec![0u8; MAX_VALUE]);
        }
        assert_eq!(t.commit(), Err(code::TRANSACTION_TOO_LARGE));
    }

    #[test]
    fn retry_limit_and_timeout_end_the_retries() {
        let db = db();
        let mut t = Transaction::new(db.clone());
        t.set_option(501, Some(&1i64.to_le_bytes()))
            .expect("option");
        t.on_error(code::NOT_COMMITTED).expect("first retry");
        assert_eq!(t.on_error(code::NOT_COMMITTED), Err(code::NOT_COMMITTED));
        let mut t = Transaction::new(db);
        t.set_option(500, Some(&1i64.to_le_bytes()))
            .expect("option");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(t.get(b"k", false), Err(code::TRANSACTION_TIMED_OUT));
        assert_eq!(
            t.on_error(code::NOT_COMMITTED),
            Err(code::TRANSACTION_TIMED_OUT)
        );
    }

    #[test]
    fn injected_unknown_result_can_still_have_committed() {
        let db = db();
        db.inject_commit_errors(&[(code::COMMIT_UNKNOWN_RESULT, true)]);
        let mut t = Transaction::new(db.clone());
        t.set(b"k", b"v");
        assert_eq!(t.commit(), Err(code::COMMIT_UNKNOWN_RESULT));
        let mut r = Transaction::new(db);
        assert_eq!(r.get(b"k", false).expect("get"), Some(b"v".to_vec()));
    }

    /// A watch that reports what happened to it through a channel.
    fn watch(t: &mut Transaction, key: &[u8]) -> std::sync::mpsc::Receiver<Result<(), i32>> {
        let (tx, rx) = std::sync::mpsc::channel();
        t.watch(
            key,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx
    }

    fn stamped_key(prefix: &[u8]) -> Vec<u8> {
        let mut k = prefix.to_vec();
        k.extend_from_slice(&[0; 10]);
        k.extend_from_slice(&(prefix.len() as u32).to_le_bytes());
        k
    }

    #[test]
    fn versionstamped_keys_and_values_carry_the_commit_version_and_sort_in_commit_order() {
        let db = Arc::new(Database::starting_at(1_000));
        let mut stamps = Vec::new();
        for i in 0..3u8 {
            let mut t = Transaction::new(db.clone());
            t.atomic_op(
                &stamped_key(b"log/"),
                &[i],
                mutation::SET_VERSIONSTAMPED_KEY,
            );
            let mut param = b"at:".to_vec();
            param.extend_from_slice(&[0xee; 10]);
            param.extend_from_slice(&3u32.to_le_bytes());
            t.atomic_op(b"last", &param, mutation::SET_VERSIONSTAMPED_VALUE);
            assert_eq!(t.get(b"last", true), Err(code::ACCESSED_UNREADABLE));
            let c = t.commit().expect("commit");
            assert_eq!(c.stamp, Some(stamp(c.version, 0)));
            assert_eq!(c.version, 1_001 + i64::from(i));
            stamps.push(c.stamp.expect("stamp"));
        }
        let mut r = Transaction::new(db);
        let rows = r
            .get_range(&sel_ge(b"log/"), &sel_ge(b"log0"), ALL)
            .expect("range")
            .rows;
        let keys: Vec<Vec<u8>> = stamps
            .iter()
            .map(|s| [b"log/".as_slice(), s].concat())
            .collect();
        assert_eq!(
            rows.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            keys
        );
        assert_eq!(
            rows.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
            vec![vec![0], vec![1], vec![2]]
        );
        let last = r.get(b"last", false).expect("get").expect("set");
        assert_eq!(last, [b"at:".as_slice(), &stamps[2]].concat());
    }

    #[test]
    fn a_versionstamp_offset_past_the_end_fails_the_commit_with_2000() {
        let db = db();
        let mut t = Transaction::new(db);
        let mut k = b"short".to_vec();
        k.extend_from_slice(&1u32.to_le_bytes());
        t.atomic_op(&k, b"v", mutation::SET_VERSIONSTAMPED_KEY);
        assert_eq!(t.commit(), Err(code::CLIENT_INVALID_OPERATION));
    }

    #[test]
    fn a_watch_fires_when_another_commit_changes_the_key_and_not_before() {
        let db = db();
        let mut w = Transaction::new(db.clone());
        assert_eq!(w.get(b"k", false).expect("get"), None);
        let fired = watch(&mut w, b"k");
        w.commit().expect("read-only commit arms the watch");
        assert_eq!(db.armed_watches(), 1);
        let mut other = Transaction::new(db.clone());
        other.set(b"unrelated", b"x");
        other.commit().expect("commit");
        assert!(
            fired.try_recv().is_err(),
            "an unrelated write fires nothing"
        );
        let mut same = Transaction::new(db.clone());
        same.clear(b"k");
        same.commit().expect("commit");
        assert!(
            fired.try_recv().is_err(),
            "clearing an absent key changes nothing"
        );
        let mut t = Transaction::new(db.clone());
        t.set(b"k", b"v");
        t.commit().expect("commit");
        assert_eq!(fired.try_recv(), Ok(Ok(())));
        assert_eq!(db.armed_watches(), 0);
    }

    #[test]
    fn a_watch_armed_after_the_key_changed_fires_at_once() {
        let db = db();
        let mut w = Transaction::new(db.clone());
        w.get_read_version().expect("rv");
        let fired = watch(&mut w, b"k");
        let mut t = Transaction::new(db);
        t.set(b"k", b"v");
        t.commit().expect("commit");
        w.commit().expect("commit");
        assert_eq!(fired.try_recv(), Ok(Ok(())));
    }

    #[test]
    fn watches_fail_with_the_commit_error_or_1025_when_their_transaction_ends_first() {
        let db = db();
        let mut a = Transaction::new(db.clone());
        a.get(b"k", false).expect("get");
        a.set(b"k", b"a");
        let conflicted = watch(&mut a, b"k");
        let mut b = Transaction::new(db.clone());
        b.set(b"k", b"b");
        b.commit().expect("commit");
        assert_eq!(a.commit(), Err(code::NOT_COMMITTED));
        assert_eq!(conflicted.try_recv(), Ok(Err(code::NOT_COMMITTED)));

        let mut c = Transaction::new(db.clone());
        let dropped = watch(&mut c, b"k");
        drop(c);
        assert_eq!(dropped.try_recv(), Ok(Err(code::TRANSACTION_CANCELLED)));

        let mut d = Transaction::new(db.clone());
        d.cancel();
        let on_cancelled = watch(&mut d, b"k");
        assert_eq!(
            on_cancelled.try_recv(),
            Ok(Err(code::TRANSACTION_CANCELLED))
        );

        let mut e = Transaction::new(db.clone());
        let cancelled_id = {
            let (tx, rx) = std::sync::mpsc::channel::<Result<(), i32>>();
            let id = e.watch(
                b"k",
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            );
            (id, rx)
        };
        db.cancel_watch(cancelled_id.0);
        e.commit().expect("commit");
        assert_eq!(
            db.armed_watches(),
            0,
            "a watch cancelled before commit is never armed"
        );
        assert!(cancelled_id.1.try_recv().is_err());
    }

    #[test]
    fn stats_count_commits_reads_and_bytes() {
        let db = db();
        let mut t = Transaction::new(db.clone());
        t.set(b"ab", b"cde");
        t.commit().expect("commit");
        let mut r = Transaction::new(db.clone());
        r.get(b"ab", false).expect("get");
        r.commit().expect("read-only");
        let s: HashMap<&str, u64> = db.stats().snapshot().into_iter().collect();
        assert_eq!(s["transactions"], 2);
        assert_eq!(s["commits"], 1);
        assert_eq!(s["read_only_commits"], 1);
        assert_eq!(s["reads"], 1);
        assert_eq!(s["bytes_read"], 5);
        assert_eq!(s["mutations"], 1);
        assert_eq!(s["bytes_written"], 5);
    }
}
