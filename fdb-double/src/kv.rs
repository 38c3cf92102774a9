//! The engine of the double: an ordered, multi-version key-value store and
//! its transactions, in plain safe Rust (no FFI here; `ffi.rs` wraps it).
//!
//! - **Versions.** Every commit that writes gets the next version (a
//!   counter, not FDB's ~1M/s clock). Each key keeps its values by version;
//!   a transaction reads the newest value at or below its read version, plus
//!   its own writes (read-your-writes).
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
//!   exceeded); all others are accepted and ignored.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// FDB error codes the double produces.
pub mod code {
    pub const TRANSACTION_TOO_OLD: i32 = 1007;
    pub const NOT_COMMITTED: i32 = 1020;
    pub const COMMIT_UNKNOWN_RESULT: i32 = 1021;
    pub const TRANSACTION_CANCELLED: i32 = 1025;
    pub const TRANSACTION_TIMED_OUT: i32 = 1031;
    pub const NO_CLUSTER_FILE_FOUND: i32 = 1515;
    pub const KEY_OUTSIDE_LEGAL_RANGE: i32 = 2004;
    pub const INVERTED_RANGE: i32 = 2005;
    pub const INVALID_OPTION_VALUE: i32 = 2006;
    pub const NETWORK_NOT_SETUP: i32 = 2008;
    pub const NETWORK_ALREADY_SETUP: i32 = 2009;
    pub const TRANSACTION_TOO_LARGE: i32 = 2101;
    pub const KEY_TOO_LARGE: i32 = 2102;
    pub const VALUE_TOO_LARGE: i32 = 2103;
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
    pub const BYTE_MIN: i32 = 16;
    pub const BYTE_MAX: i32 = 17;
}

type Key = Vec<u8>;
type Range = (Key, Key);
/// A key's values by version, ascending (`None`: cleared at that version).
type Versions = Vec<(i64, Option<Vec<u8>>)>;

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
    /// Failures to inject into the next commits: (error, apply the commit
    /// anyway). Only through [`Database::inject_commit_errors`].
    faults: VecDeque<(i32, bool)>,
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
    }

    fn write(&mut self, key: &[u8], value: Option<Vec<u8>>, version: i64) {
        let oldest_needed = self.pruned_through;
        let versions = self.data.entry(key.to_vec()).or_default();
        // Keep the newest value at or below the oldest read version still
        // allowed, and everything newer.
        if let Some(keep_from) = versions.iter().rposition(|(v, _)| *v <= oldest_needed) {
            versions.drain(..keep_from);
        }
        versions.push((version, value));
    }
}

/// One in-memory database (one per cluster-file path in a process).
#[derive(Default)]
pub struct Database {
    state: Mutex<State>,
}

impl Database {
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
}

#[derive(Clone, Debug)]
enum Write {
    Set(Vec<u8>),
    Clear,
    /// Atomic ops over the committed value (applied at commit).
    Atomic(Vec<(i32, Vec<u8>)>),
}

/// A transaction's options that survive `on_error`.
#[derive(Clone, Copy, Debug, Default)]
struct Options {
    timeout: Option<Duration>,
    retry_limit: Option<i64>,
    size_limit: Option<usize>,
}

pub struct Transaction {
    db: Arc<Database>,
    created: Instant,
    options: Options,
    retries: i64,
    read_version: Option<(i64, Instant)>,
    writes: BTreeMap<Key, Write>,
    cleared: Vec<Range>,
    read_conflicts: Vec<Range>,
    extra_write_conflicts: Vec<Range>,
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

/// A resolved key selector: (key, or_equal, offset).
#[derive(Clone, Debug)]
pub struct Selector {
    pub key: Key,
    pub or_equal: bool,
    pub offset: i32,
}

/// What a range read returns.
#[derive(Debug, Default)]
pub struct RangeResult {
    pub rows: Vec<(Key, Vec<u8>)>,
    pub more: bool,
}

/// Range read parameters.
#[derive(Clone, Copy, Debug)]
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
        Transaction {
            db,
            created: Instant::now(),
            options: Options::default(),
            retries: 0,
            read_version: None,
            writes: BTreeMap::new(),
            cleared: Vec::new(),
            read_conflicts: Vec::new(),
            extra_write_conflicts: Vec::new(),
            deferred_error: None,
            committed_version: -1,
            cancelled: false,
        }
    }

    /// Back to the state of a new transaction, keeping the retry state
    /// (`on_error`) or not (`reset`).
    fn clear_state(&mut self) {
        self.read_version = None;
        self.writes.clear();
        self.cleared.clear();
        self.read_conflicts.clear();
        self.extra_write_conflicts.clear();
        self.deferred_error = None;
        self.committed_version = -1;
        self.cancelled = false;
    }

    pub fn reset(&mut self) {
        self.clear_state();
        self.options = Options::default();
        self.retries = 0;
        self.created = Instant::now();
    }

    pub fn cancel(&mut self) {
        self.cancelled = true;
    }

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
                self.options.timeout = (ms > 0).then(|| Duration::from_millis(ms as u64));
            }
            501 => {
                let n = int()?;
                self.options.retry_limit = (n >= 0).then_some(n);
            }
            503 => {
                let n = int()?;
                self.options.size_limit = (n > 0).then_some(n as usize);
            }
            _ => {}
        }
        Ok(())
    }

    /// The error every operation reports first, if any.
    fn check_usable(&self) -> Result<(), i32> {
        if self.cancelled {
            return Err(code::TRANSACTION_CANCELLED);
        }
        if let Some(t) = self.options.timeout {
            if self.created.elapsed() > t {
                return Err(code::TRANSACTION_TIMED_OUT);
            }
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

    pub fn get(&mut self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, i32> {
        self.check_usable()?;
        let rv = self.rv();
        if !snapshot {
            self.read_conflicts.push((key.to_vec(), key_after(key)));
        }
        let db = self.db.clone();
        let st = db.lock();
        Ok(self.read_key(&st, key, rv))
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
        if !p.snapshot && b < e {
            self.read_conflicts.push((b, e));
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
        self.check_key(key);
        if param.len() > MAX_VALUE {
            self.deferred_error.get_or_insert(code::VALUE_TOO_LARGE);
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

    /// Bytes of mutations and conflict ranges (FDB's transaction size).
    pub fn approximate_size(&self) -> usize {
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
        let ranges: usize = self
            .cleared
            .iter()
            .chain(&self.read_conflicts)
            .chain(&self.extra_write_conflicts)
            .map(|(a, b)| a.len() + b.len())
            .sum();
        writes + ranges
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

    pub fn commit(&mut self) -> Result<(), i32> {
        self.check_usable()?;
        if let Some(e) = self.deferred_error {
            return Err(e);
        }
        let limit = self.options.size_limit.unwrap_or(MAX_TXN_BYTES);
        if self.approximate_size() > limit {
            return Err(code::TRANSACTION_TOO_LARGE);
        }
        if self.writes.is_empty()
            && self.cleared.is_empty()
            && self.extra_write_conflicts.is_empty()
        {
            // Read-only: nothing to commit (FDB gives committed version -1).
            return Ok(());
        }
        let rv = self.rv();
        let db = self.db.clone();
        let mut st = db.lock();
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
        let mut write_ranges: Vec<Range> = self.extra_write_conflicts.clone();
        for (lo, hi) in &self.cleared {
            let keys: Vec<Key> = st
                .data
                .range(lo.clone()..hi.clone())
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                st.write(&k, None, version);
            }
            write_ranges.push((lo.clone(), hi.clone()));
        }
        for (k, w) in &self.writes {
            let new = match w {
                Write::Set(v) => Some(v.clone()),
                Write::Clear => None,
                Write::Atomic(ops) => {
                    let mut cur = st.visible(k, version).cloned();
                    for (op, p) in ops {
                        cur = Some(apply_atomic(*op, cur.as_deref(), p));
                    }
                    cur
                }
            };
            st.write(k, new, version);
            write_ranges.push((k.clone(), key_after(k)));
        }
        st.version = version;
        st.log.push_back(CommitRecord {
            version,
            at: now,
            writes: write_ranges,
        });
        self.committed_version = version;
        match fault {
            Some((e, true)) => Err(e),
            _ => Ok(()),
        }
    }

    /// `fdb_transaction_on_error`: `Ok` (after a short backoff) when the
    /// caller should retry, the error back when it should not.
    pub fn on_error(&mut self, err: i32) -> Result<(), i32> {
        if !is_retryable(err) {
            return Err(err);
        }
        if let Some(t) = self.options.timeout {
            if self.created.elapsed() > t {
                return Err(code::TRANSACTION_TIMED_OUT);
            }
        }
        if let Some(limit) = self.options.retry_limit {
            if self.retries >= limit {
                return Err(err);
            }
        }
        self.retries += 1;
        let backoff = Duration::from_micros(500u64 << self.retries.min(5));
        std::thread::sleep(backoff);
        self.clear_state();
        Ok(())
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
}
