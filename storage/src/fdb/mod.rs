//! The FoundationDB backend (cargo feature `fdb`): many gateway nodes share
//! one history with transactional per-channel sequences.
//!
//! # How it maps the contract
//!
//! - **Append** of a batch is one transaction per part (see *Limits*): for
//!   each channel it reads the head (a conflicting read, so two writers of
//!   one channel conflict and one retries), looks up every dedup key, checks
//!   edits and deletes against their targets, writes the messages at
//!   head+1…, their dedup keys, the new target views, the senders' read
//!   cursors (atomic `MAX`, no read) and the new head. Seqs stay dense and
//!   unique however many writers race: the loser of a race gets FDB's 1020
//!   `not_committed` and reruns on the new head.
//! - **Retries** are bounded: each transaction has FDB's `timeout` and
//!   `retry_limit` options ([`FdbConfig`]); retryable errors go through
//!   `on_error` (FDB's backoff). When they run out the caller gets
//!   [`StoreError::Unavailable`] (retryable); FDB errors that are not
//!   retryable become [`StoreError::Backend`] with the FDB code, retryable
//!   or not as data.
//! - **Unknown results.** A commit that fails with 1021
//!   `commit_unknown_result` may have committed. Appends stay exact anyway:
//!   dedup records carry the transaction's token, so the retry recognises
//!   its own earlier commit and reports `Stored` with the original seqs.
//!   `create_group` and `add_member` use tokens the same way;
//!   `remove_member` retried after an unknown result that did commit
//!   reports `false` (already gone), which is the one inexact answer.
//! - **Reads** (`read`, `message`, `members`, …) are single transactions;
//!   range reads page through the `foundationdb` crate's streaming reads, so
//!   a page never needs one huge FDB reply.
//! - **Durability** is FDB's: an `Ok` commit is durable on the cluster's
//!   configured replication; there is no local fsync and no poisoning
//!   ([`Health`] is always `Healthy`).
//!
//! # Limits
//!
//! FDB refuses values over 100,000 bytes, keys over 10,000 bytes and
//! transactions over 10 MB or 5 s. Message records are split into chunks
//! ([`layout::CHUNK_BYTES`]). An append larger than
//! [`FdbConfig::max_txn_bytes`] or [`FdbConfig::max_txn_messages`] is cut
//! into several transactions, in order, each continuing from the head the
//! previous one wrote, so seqs stay dense and in order. **Such an append is
//! not atomic across its parts**: when a later part fails, the earlier parts
//! stay stored (a retry of the whole append then finds them as duplicates,
//! with their original seqs). The gateway's commits are far below the
//! default limits (`commit_max_bytes` is 1 MiB). Names longer than
//! [`MAX_NAME_BYTES`] are refused with [`StoreError::Invalid`] so keys stay
//! under FDB's key limit.
//!
//! The key layout is in [`layout`]; the network thread in [`sys`].

mod cluster;
pub mod layout;
pub mod sys;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use foundationdb::options::{MutationType, StreamingMode, TransactionOption};
use foundationdb::{Database, FdbError, KeySelector, RangeOption, Transaction};
use futures_lite::StreamExt as _;

use crate::embedded::{content_hash, decode_message, encode_message};
use crate::{
    AppendOutcome, ChannelAppend, ChannelOutcome, DeliveredUpdate, Health, NewMessage, Page,
    ReadLimit, ReadRange, ReadUpdate, Seq, Store, StoreError, StoredMessage,
};
use layout::{read_u64, u64_value, Dedup, Layout, CHUNK_BYTES, FORMAT_VERSION};

pub use sys::{boot_network, stop_network};

/// Longest channel, user, device or client_msg_id accepted, in bytes (keys
/// hold up to four of them; FDB's key limit is 10,000 bytes).
pub const MAX_NAME_BYTES: usize = 1024;

/// FDB's `commit_unknown_result`.
const COMMIT_UNKNOWN_RESULT: i32 = 1021;
/// FDB's `transaction_timed_out`.
const TRANSACTION_TIMED_OUT: i32 = 1031;

/// Settings of the FoundationDB backend.
#[derive(Clone, Debug)]
pub struct FdbConfig {
    /// The cluster file; `None` uses FDB's default
    /// (`/etc/foundationdb/fdb.cluster`, or `FDB_CLUSTER_FILE`).
    pub cluster_file: Option<PathBuf>,
    /// The root subspace is `("chatgw", namespace)`. Default `"default"`.
    pub namespace: String,
    /// FDB `timeout` option per operation, retries included, in ms.
    /// Default 5,000.
    pub timeout_ms: u32,
    /// FDB `retry_limit` option per operation. Default 50.
    pub retry_limit: u32,
    /// An append is cut into several transactions past this many bytes of
    /// mutations (estimated). Default 4,000,000 (FDB's hard limit is 10 MB).
    pub max_txn_bytes: usize,
    /// … or past this many messages. Default 5,000.
    pub max_txn_messages: usize,
}

impl Default for FdbConfig {
    fn default() -> FdbConfig {
        FdbConfig {
            cluster_file: None,
            namespace: "default".into(),
            timeout_ms: 5_000,
            retry_limit: 50,
            max_txn_bytes: 4_000_000,
            max_txn_messages: 5_000,
        }
    }
}

/// The FoundationDB [`Store`].
pub struct FdbStore {
    db: Database,
    layout: Layout,
    cfg: FdbConfig,
    /// The node this handle registered as (`Cluster::register`): its own
    /// commits leave it no inbox notices.
    local_node: std::sync::Mutex<Option<String>>,
    /// The life id this handle registered with (0: none yet).
    local_life: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for FdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdbStore").field("cfg", &self.cfg).finish()
    }
}

/// Why a transaction body stopped.
enum Abort {
    /// An FDB error: `on_error` decides whether to retry.
    Fdb(FdbError),
    /// A contract-level answer (conflict, not found, invalid, corrupt): no
    /// retry.
    Store(StoreError),
}

impl From<FdbError> for Abort {
    fn from(e: FdbError) -> Abort {
        Abort::Fdb(e)
    }
}

impl From<StoreError> for Abort {
    fn from(e: StoreError) -> Abort {
        Abort::Store(e)
    }
}

/// A transaction body: gets the transaction (shared with the retry loop,
/// which takes it back to commit) and may borrow anything living `'a`.
type Body<'a, T> = Pin<Box<dyn Future<Output = Result<T, Abort>> + 'a>>;

/// An FDB error as a storage error, retryable or not as data.
fn fdb_error(what: &str, e: FdbError) -> StoreError {
    let message = format!("{what}: FoundationDB error {}: {}", e.code(), e.message());
    if e.is_retryable() || e.code() == TRANSACTION_TIMED_OUT {
        StoreError::Unavailable(message)
    } else {
        StoreError::Backend {
            code: e.code(),
            message,
            retryable: false,
        }
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("foundationdb {what}"))
}

fn check_name(what: &str, s: &str) -> Result<(), StoreError> {
    if s.len() > MAX_NAME_BYTES {
        return Err(StoreError::Invalid(format!(
            "{what} is {} bytes; the FoundationDB backend takes at most {MAX_NAME_BYTES}",
            s.len()
        )));
    }
    Ok(())
}

/// A token unique to one transaction of this process (and, with the random
/// seed, across processes).
fn new_token() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A message record split into chunk values.
fn chunks(record: &[u8]) -> impl Iterator<Item = &[u8]> {
    record.chunks(CHUNK_BYTES)
}

/// What an append writes for one message, estimated (for cutting parts).
fn estimate(m: &NewMessage) -> usize {
    let media = m
        .media
        .as_ref()
        .map_or(0, |x| x.url.len() + x.mime.len() + 8);
    let body = m.text.len() + media + m.from.len() + m.device.len() + m.client_msg_id.len();
    // The record, its dedup key, and for edits the target's new view.
    let edit = if crate::is_change(m) { body + 128 } else { 0 };
    2 * body + 256 + edit
}

/// A message being assembled from its chunks: (seq, [(chunk index, bytes)]).
type Pending = (u64, Vec<(u64, Vec<u8>)>);

/// One transaction's share of an append: (channel index, message range).
type Part = Vec<(usize, std::ops::Range<usize>)>;

/// Cuts an append into parts under the byte and message budgets, keeping
/// order; a part holds each channel at most once.
fn plan_parts(batch: &[ChannelAppend], max_bytes: usize, max_messages: usize) -> Vec<Part> {
    let mut parts: Vec<Part> = Vec::new();
    let mut cur: Part = Vec::new();
    let (mut bytes, mut count) = (0usize, 0usize);
    for (ci, ca) in batch.iter().enumerate() {
        let mut start = 0;
        for (i, m) in ca.messages.iter().enumerate() {
            let e = estimate(m);
            if count > 0 && (bytes + e > max_bytes || count + 1 > max_messages) {
                if i > start {
                    cur.push((ci, start..i));
                }
                parts.push(std::mem::take(&mut cur));
                start = i;
                bytes = 0;
                count = 0;
            }
            bytes += e;
            count += 1;
        }
        // Every channel appears in some part, even with no messages, so
        // its outcome carries its head.
        cur.push((ci, start..ca.messages.len()));
    }
    if !cur.is_empty() || parts.is_empty() {
        parts.push(cur);
    }
    parts
}

/// What one part's transaction decided for one channel.
struct PartOutcome {
    channel: usize,
    outcomes: Vec<AppendOutcome>,
    /// Dedup keys stored by this part → (seq, message index).
    stored: Vec<(Vec<u8>, u64, usize)>,
    head: u64,
}

impl FdbStore {
    /// Boots the network (once per process), opens the database and checks
    /// (or writes) the namespace's format version.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the client library cannot start or
    /// the cluster does not answer within the timeout;
    /// [`StoreError::UnsupportedFormat`] when the namespace was written by
    /// another format.
    pub fn open(cfg: FdbConfig) -> Result<FdbStore, StoreError> {
        sys::boot_network()?;
        let path = cfg
            .cluster_file
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        let db =
            Database::new(path.as_deref()).map_err(|e| fdb_error("opening the database", e))?;
        let store = FdbStore {
            db,
            layout: Layout::new(&cfg.namespace),
            cfg,
            local_node: std::sync::Mutex::new(None),
            local_life: std::sync::atomic::AtomicU64::new(0),
        };
        store.check_format()?;
        Ok(store)
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &FdbConfig {
        &self.cfg
    }

    fn check_format(&self) -> Result<(), StoreError> {
        let key = self.layout.format();
        let found = self.run("format check", |trx| {
            let key = key.clone();
            Box::pin(async move {
                match trx.get(&key, false).await? {
                    Some(v) => {
                        let b = <[u8; 4]>::try_from(&v[..]).map_err(|_| corrupt("format value"))?;
                        Ok(u32::from_le_bytes(b))
                    }
                    None => {
                        trx.set(&key, &FORMAT_VERSION.to_le_bytes());
                        Ok(FORMAT_VERSION)
                    }
                }
            })
        })?;
        if found != FORMAT_VERSION {
            return Err(StoreError::UnsupportedFormat {
                found,
                supported: FORMAT_VERSION,
            });
        }
        Ok(())
    }

    /// Clears every key of this store's namespace (tests; tools).
    ///
    /// # Errors
    ///
    /// FDB errors, as for every write.
    pub fn clear_namespace(&self) -> Result<(), StoreError> {
        let (lo, hi) = self.layout.all();
        let format = self.layout.format();
        self.run("clear namespace", |trx| {
            let (lo, hi, format) = (lo.clone(), hi.clone(), format.clone());
            Box::pin(async move {
                trx.clear_range(&lo, &hi);
                trx.set(&format, &FORMAT_VERSION.to_le_bytes());
                Ok(())
            })
        })
    }

    /// Runs `body` in a transaction and commits, retrying through FDB's
    /// `on_error` within the configured timeout and retry limit. The body
    /// runs again on every retry, so it must not change anything outside
    /// the transaction; it learns whether an earlier attempt may have
    /// committed from nothing but the data (tokens).
    fn run<'a, T, F>(&'a self, what: &str, body: F) -> Result<T, StoreError>
    where
        F: Fn(Arc<Transaction>) -> Body<'a, T>,
    {
        futures_lite::future::block_on(async {
            let mut trx = self.db.create_trx().map_err(|e| fdb_error(what, e))?;
            // Set once: since API 610 `on_error` keeps `timeout` and
            // `retry_limit`, so the timeout bounds the whole call, retries
            // included (setting it again per attempt would restart it).
            trx.set_option(TransactionOption::Timeout(
                i32::try_from(self.cfg.timeout_ms).unwrap_or(i32::MAX),
            ))
            .and_then(|()| {
                trx.set_option(TransactionOption::RetryLimit(
                    i32::try_from(self.cfg.retry_limit).unwrap_or(i32::MAX),
                ))
            })
            .map_err(|e| fdb_error(what, e))?;
            loop {
                let shared = Arc::new(trx);
                let result = body(shared.clone()).await;
                // The body's future is gone: the loop owns the transaction again.
                trx = Arc::try_unwrap(shared).map_err(|_| {
                    StoreError::Invalid(format!("{what}: a transaction body kept its transaction"))
                })?;
                let err = match result {
                    Ok(v) => match trx.commit().await {
                        Ok(_) => return Ok(v),
                        Err(e) => {
                            let code = e.code();
                            match e.on_error().await {
                                Ok(t) => {
                                    trx = t;
                                    if code == COMMIT_UNKNOWN_RESULT {
                                        tracing::debug!(
                                            what,
                                            "retrying after commit_unknown_result"
                                        );
                                    }
                                    continue;
                                }
                                Err(e) => e,
                            }
                        }
                    },
                    Err(Abort::Store(e)) => return Err(e),
                    Err(Abort::Fdb(e)) => match trx.on_error(e).await {
                        Ok(t) => {
                            trx = t;
                            continue;
                        }
                        Err(e) => e,
                    },
                };
                return Err(fdb_error(what, err));
            }
        })
    }

    /// The head of `channel` in `trx` (a conflicting read unless `snapshot`).
    async fn head_in(
        &self,
        trx: &Transaction,
        channel: &str,
        snapshot: bool,
    ) -> Result<u64, Abort> {
        match trx.get(&self.layout.head(channel), snapshot).await? {
            None => Ok(0),
            Some(v) => Ok(read_u64(&v).ok_or_else(|| corrupt("head value"))?),
        }
    }

    /// Reads the message at `seq` (all its chunks).
    async fn message_in(
        &self,
        trx: &Transaction,
        channel: &str,
        seq: u64,
    ) -> Result<Option<StoredMessage>, Abort> {
        let (lo, hi) = self.layout.message(channel, seq).range();
        let mut record = Vec::new();
        let mut stream = trx.get_ranges_keyvalues(RangeOption::from((lo, hi)), false);
        while let Some(kv) = stream.next().await {
            record.extend_from_slice(kv?.value());
        }
        if record.is_empty() {
            return Ok(None);
        }
        Ok(Some(decode_message(&record)?))
    }

    /// Writes `m`'s record at its seq, replacing any earlier chunks.
    fn write_message(
        &self,
        trx: &Transaction,
        channel: &str,
        m: &StoredMessage,
    ) -> Result<(), StoreError> {
        let space = self.layout.message(channel, m.seq);
        let (lo, hi) = space.range();
        trx.clear_range(&lo, &hi);
        let record = encode_message(m)?;
        for (i, chunk) in chunks(&record).enumerate() {
            trx.set(&space.pack(&(i as u64,)), chunk);
        }
        Ok(())
    }

    /// One part of an append, in one transaction.
    async fn append_part(
        &self,
        trx: &Transaction,
        batch: &[ChannelAppend],
        part: &Part,
        earlier: &HashMap<(usize, Vec<u8>), (u64, usize)>,
        token: u64,
    ) -> Result<Vec<PartOutcome>, Abort> {
        let mut out = Vec::with_capacity(part.len());
        let mut notices: BTreeMap<String, Vec<crate::Notice>> = BTreeMap::new();
        for (ci, range) in part {
            let ca = &batch[*ci];
            let channel = ca.channel.as_str();
            let head = self.head_in(trx, channel, false).await?;
            let mut next = head;
            let mut outcomes = Vec::with_capacity(range.len());
            let mut stored: Vec<(Vec<u8>, u64, usize)> = Vec::new();
            let mut in_part: HashMap<Vec<u8>, (u64, usize)> = HashMap::new();
            let mut records: BTreeMap<u64, StoredMessage> = BTreeMap::new();
            let mut senders: HashMap<&str, u64> = HashMap::new();
            for i in range.clone() {
                let m = &ca.messages[i];
                let dkey = self
                    .layout
                    .dedup(channel, &m.from, &m.device, &m.client_msg_id);
                let known = in_part
                    .get(&dkey)
                    .or_else(|| earlier.get(&(*ci, dkey.clone())))
                    .copied();
                if let Some((seq, orig)) = known {
                    let orig = &ca.messages[orig];
                    outcomes.push(crate::repeat_outcome(
                        seq,
                        orig.ts,
                        crate::same_content(orig, m),
                    ));
                    continue;
                }
                if let Some(v) = trx.get(&dkey, false).await? {
                    let d = Dedup::decode(&v).ok_or_else(|| corrupt("dedup value"))?;
                    if d.token == token {
                        // Our own earlier attempt committed (unknown result):
                        // everything it wrote is in place.
                        in_part.insert(dkey.clone(), (d.seq, i));
                        stored.push((dkey, d.seq, i));
                        outcomes.push(AppendOutcome::Stored {
                            seq: Seq(d.seq),
                            ts: d.ts,
                        });
                    } else {
                        outcomes.push(crate::repeat_outcome(
                            d.seq,
                            d.ts,
                            d.hash == content_hash(m),
                        ));
                    }
                    continue;
                }
                if crate::is_change(m) {
                    let from_db;
                    let target = match crate::target_in_range(m, next) {
                        None => None,
                        Some(t) => match records.get(&t) {
                            Some(view) => Some(view),
                            None => {
                                from_db = self.message_in(trx, channel, t).await?;
                                from_db.as_ref()
                            }
                        },
                    };
                    match crate::apply_change(m, target) {
                        Ok(view) => {
                            records.insert(view.seq, view);
                        }
                        Err(reason) => {
                            outcomes.push(AppendOutcome::Rejected { reason });
                            continue;
                        }
                    }
                }
                next += 1;
                records.insert(next, StoredMessage::from_new(Seq(next), m));
                let d = Dedup {
                    seq: next,
                    ts: m.ts,
                    hash: content_hash(m),
                    token,
                };
                trx.set(&dkey, &d.encode());
                in_part.insert(dkey.clone(), (next, i));
                stored.push((dkey, next, i));
                senders.insert(m.from.as_str(), next);
                outcomes.push(AppendOutcome::Stored {
                    seq: Seq(next),
                    ts: m.ts,
                });
            }
            for record in records.values() {
                self.write_message(trx, channel, record)?;
                if record.seq > head && record.is_event() {
                    trx.set(&self.layout.events(channel).pack(&(record.seq,)), b"");
                }
            }
            for (user, seq) in senders {
                let key = self.layout.reads(user).pack(&(channel,));
                trx.atomic_op(&key, &u64_value(seq), MutationType::Max);
            }
            if next != head {
                // Both users' DM index, with the DM's first message (see
                // the embedded store: later messages find it there).
                if head == 0 {
                    if let Some((a, b)) = crate::dm_pair(channel) {
                        for u in [a, b] {
                            trx.set(&self.layout.member_of(u).pack(&(channel,)), b"");
                        }
                    }
                }
                trx.set(&self.layout.head(channel), &u64_value(next));
                let notice = crate::Notice {
                    channel: channel.to_owned(),
                    first: Seq(head + 1),
                    last: Seq(next),
                };
                self.collect_notices(trx, notice, &mut notices).await?;
            }
            // The head after this part: ours, or (when a retry found its own
            // commit) the stored one.
            out.push(PartOutcome {
                channel: *ci,
                outcomes,
                stored,
                head: next,
            });
        }
        self.write_notices(trx, &notices);
        Ok(out)
    }

    /// Reads user names (or channel names) stored as the last tuple element
    /// under `space`, with their values (a conflicting read).
    async fn names_in(
        trx: &Transaction,
        space: &foundationdb::tuple::Subspace,
    ) -> Result<Vec<(String, Vec<u8>)>, Abort> {
        Self::names_limited(trx, space, None, false).await
    }

    /// [`FdbStore::names_in`], at most `limit` of them, a snapshot read when
    /// `snapshot` (no conflict with a writer of the range).
    async fn names_limited(
        trx: &Transaction,
        space: &foundationdb::tuple::Subspace,
        limit: Option<usize>,
        snapshot: bool,
    ) -> Result<Vec<(String, Vec<u8>)>, Abort> {
        let mut out = Vec::new();
        let mut opt = RangeOption::from(space.range());
        opt.limit = limit;
        let mut stream = trx.get_ranges_keyvalues(opt, snapshot);
        while let Some(kv) = stream.next().await {
            let kv = kv?;
            let (name,): (String,) = space
                .unpack(kv.key())
                .map_err(|e| corrupt(&format!("key: {e}")))?;
            out.push((name, kv.value().to_vec()));
        }
        Ok(out)
    }

    fn change_member(&self, channel: &str, user: &str, add: bool) -> Result<bool, StoreError> {
        check_name("channel", channel)?;
        check_name("user", user)?;
        let token = new_token();
        self.run("membership", |trx| {
            Box::pin(async move {
                if trx.get(&self.layout.group(channel), false).await?.is_none() {
                    return Err(StoreError::NotFound(format!("no group {channel:?}")).into());
                }
                let mkey = self.layout.members(channel).pack(&(user,));
                let okey = self.layout.member_of(user).pack(&(channel,));
                let present = trx.get(&mkey, false).await?;
                if add {
                    if let Some(v) = present {
                        // Present: added by us in an attempt that committed
                        // with an unknown result, or by someone earlier.
                        return Ok(read_u64(&v) == Some(token));
                    }
                    trx.set(&mkey, &u64_value(token));
                    trx.set(&okey, b"");
                } else {
                    if present.is_none() {
                        return Ok(false);
                    }
                    trx.clear(&mkey);
                    trx.clear(&okey);
                }
                // Other nodes with subscribers of the group reload its
                // members (`cluster.rs`, "Membership notices").
                let mut notices = BTreeMap::new();
                let notice = crate::Notice::members_changed(channel);
                self.collect_notices(&trx, notice, &mut notices).await?;
                self.write_notices(&trx, &notices);
                Ok(true)
            })
        })
    }
}

impl Store for FdbStore {
    fn append(&self, batch: &[ChannelAppend]) -> Result<Vec<ChannelOutcome>, StoreError> {
        let mut seen = HashSet::with_capacity(batch.len());
        for ca in batch {
            check_name("channel", &ca.channel)?;
            if !seen.insert(ca.channel.as_str()) {
                return Err(StoreError::Invalid(format!(
                    "channel {:?} appears twice in one append",
                    ca.channel
                )));
            }
            for m in &ca.messages {
                check_name("user", &m.from)?;
                check_name("device", &m.device)?;
                check_name("client_msg_id", &m.client_msg_id)?;
            }
        }
        let parts = plan_parts(batch, self.cfg.max_txn_bytes, self.cfg.max_txn_messages);
        let mut results: Vec<ChannelOutcome> = batch
            .iter()
            .map(|_| ChannelOutcome {
                outcomes: Vec::new(),
                head: Seq(0),
            })
            .collect();
        // Dedup keys stored by earlier parts of this call.
        let mut earlier: HashMap<(usize, Vec<u8>), (u64, usize)> = HashMap::new();
        for part in &parts {
            let token = new_token();
            let earlier_ref = &earlier;
            let outs = self.run("append", |trx| {
                Box::pin(async move {
                    self.append_part(&trx, batch, part, earlier_ref, token)
                        .await
                })
            })?;
            for po in outs {
                let r = &mut results[po.channel];
                r.outcomes.extend(po.outcomes);
                r.head = Seq(po.head);
                for (dkey, seq, idx) in po.stored {
                    earlier.insert((po.channel, dkey), (seq, idx));
                }
            }
        }
        Ok(results)
    }

    fn head(&self, channel: &str) -> Result<Seq, StoreError> {
        check_name("channel", channel)?;
        self.run("head", |trx| {
            Box::pin(async move { self.head_in(&trx, channel, true).await })
        })
        .map(Seq)
    }

    fn read(&self, channel: &str, range: ReadRange, limit: ReadLimit) -> Result<Page, StoreError> {
        check_name("channel", channel)?;
        let max = crate::max_messages(limit);
        let space = self.layout.messages(channel);
        let (lo, hi, reverse) = match range {
            ReadRange::After(Seq(s)) => match s.checked_add(1) {
                Some(first) => (space.pack(&(first,)), space.range().1, false),
                None => return Ok(Page::default()),
            },
            ReadRange::Before(Seq(s)) => {
                if s <= 1 {
                    return Ok(Page::default());
                }
                (space.range().0, space.pack(&(s,)), true)
            }
            ReadRange::Latest => {
                let (a, b) = space.range();
                (a, b, true)
            }
        };
        self.run("read", |trx| {
            let (lo, hi, space) = (lo.clone(), hi.clone(), space.clone());
            Box::pin(async move {
                let opt = RangeOption {
                    begin: KeySelector::first_greater_or_equal(lo),
                    end: KeySelector::first_greater_or_equal(hi),
                    mode: StreamingMode::Iterator,
                    reverse,
                    ..RangeOption::default()
                };
                let mut stream = trx.get_ranges_keyvalues(opt, true);
                let mut page = Page::default();
                let mut bytes = 0usize;
                // Chunks of the message being assembled: (seq, chunks).
                let mut cur: Option<Pending> = None;
                let finish = |(_, mut cs): Pending| {
                    cs.sort_by_key(|(i, _)| *i);
                    let record: Vec<u8> = cs.into_iter().flat_map(|(_, c)| c).collect();
                    decode_message(&record)
                };
                while let Some(kv) = stream.next().await {
                    let kv = kv?;
                    let (seq, chunk): (u64, u64) = space
                        .unpack(kv.key())
                        .map_err(|e| corrupt(&format!("message key: {e}")))?;
                    if let Some((s, cs)) = &mut cur {
                        if *s == seq {
                            cs.push((chunk, kv.value().to_vec()));
                            continue;
                        }
                    }
                    // A new message begins: the previous one is complete.
                    if let Some(done) = cur.take() {
                        let m = finish(done)?;
                        bytes = bytes.saturating_add(m.text.len());
                        page.messages.push(m);
                        if page.messages.len() >= max || bytes >= limit.bytes {
                            page.has_more = true; // this new message is beyond the page
                            break;
                        }
                    }
                    cur = Some((seq, vec![(chunk, kv.value().to_vec())]));
                }
                if !page.has_more {
                    if let Some(done) = cur.take() {
                        page.messages.push(finish(done)?);
                    }
                }
                if reverse {
                    page.messages.reverse();
                }
                Ok(page)
            })
        })
    }

    fn message(&self, channel: &str, seq: Seq) -> Result<Option<StoredMessage>, StoreError> {
        check_name("channel", channel)?;
        if seq.0 == 0 {
            return Ok(None);
        }
        self.run("message", |trx| {
            Box::pin(async move { self.message_in(&trx, channel, seq.0).await })
        })
    }

    fn count_messages(&self, channel: &str, after: Seq, through: Seq) -> Result<u64, StoreError> {
        check_name("channel", channel)?;
        self.run("count messages", |trx| {
            Box::pin(async move {
                let through = through.0.min(self.head_in(&trx, channel, true).await?);
                if through <= after.0 {
                    return Ok(0);
                }
                let space = self.layout.events(channel);
                let opt = RangeOption {
                    begin: KeySelector::first_greater_or_equal(space.pack(&(after.0 + 1,))),
                    end: KeySelector::first_greater_than(space.pack(&(through,))),
                    mode: StreamingMode::WantAll,
                    ..RangeOption::default()
                };
                let mut stream = trx.get_ranges_keyvalues(opt, true);
                let mut events = 0u64;
                while let Some(kv) = stream.next().await {
                    kv?;
                    events += 1;
                }
                Ok(through - after.0 - events)
            })
        })
    }

    fn health(&self) -> Health {
        Health::Healthy
    }

    fn create_group(&self, group_id: &str, members: &[String]) -> Result<(), StoreError> {
        let channel = crate::group_channel(group_id);
        check_name("channel", &channel)?;
        for u in members {
            check_name("user", u)?;
        }
        let users: std::collections::BTreeSet<&str> = members.iter().map(String::as_str).collect();
        let token = new_token();
        self.run("create group", |trx| {
            let (channel, users) = (&channel, &users);
            Box::pin(async move {
                let gkey = self.layout.group(channel);
                if let Some(v) = trx.get(&gkey, false).await? {
                    if read_u64(&v) == Some(token) {
                        return Ok(()); // our own commit, unknown result
                    }
                    return Err(
                        StoreError::Conflict(format!("group {channel:?} already exists")).into(),
                    );
                }
                trx.set(&gkey, &u64_value(token));
                for u in users {
                    trx.set(&self.layout.members(channel).pack(u), &u64_value(token));
                    trx.set(&self.layout.member_of(u).pack(&(channel.as_str(),)), b"");
                }
                Ok(())
            })
        })
    }

    fn add_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        self.change_member(channel, user, true)
    }

    fn remove_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        self.change_member(channel, user, false)
    }

    fn members(&self, channel: &str) -> Result<Option<Vec<String>>, StoreError> {
        check_name("channel", channel)?;
        self.run("members", |trx| {
            Box::pin(async move {
                if trx.get(&self.layout.group(channel), true).await?.is_none() {
                    return Ok(None);
                }
                let names = Self::names_in(&trx, &self.layout.members(channel)).await?;
                Ok(Some(names.into_iter().map(|(n, _)| n).collect()))
            })
        })
    }

    fn is_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        check_name("channel", channel)?;
        check_name("user", user)?;
        self.run("is member", |trx| {
            Box::pin(async move {
                let key = self.layout.members(channel).pack(&(user,));
                Ok(trx.get(&key, true).await?.is_some())
            })
        })
    }

    fn channels_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        check_name("user", user)?;
        self.run("channels of", |trx| {
            Box::pin(async move {
                let names = Self::names_in(&trx, &self.layout.member_of(user)).await?;
                Ok(names.into_iter().map(|(n, _)| n).collect())
            })
        })
    }

    fn advance_read(&self, user: &str, channel: &str, seq: Seq) -> Result<Seq, StoreError> {
        check_name("user", user)?;
        check_name("channel", channel)?;
        self.run("read cursor", |trx| {
            Box::pin(async move {
                let key = self.layout.reads(user).pack(&(channel,));
                let current = match trx.get(&key, false).await? {
                    None => 0,
                    Some(v) => read_u64(&v).ok_or_else(|| corrupt("read cursor"))?,
                };
                let target = seq.0.min(self.head_in(&trx, channel, true).await?);
                if target <= current {
                    return Ok(Seq(current));
                }
                trx.set(&key, &u64_value(target));
                Ok(Seq(target))
            })
        })
    }

    fn advance_read_batch(&self, updates: &[ReadUpdate]) -> Result<Vec<(Seq, Seq)>, StoreError> {
        let mut wanted: HashMap<(&str, &str), u64> = HashMap::with_capacity(updates.len());
        for (user, channel, seq) in updates {
            check_name("user", user)?;
            check_name("channel", channel)?;
            let e = wanted.entry((user, channel)).or_insert(0);
            *e = (*e).max(seq.0);
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let moved = self.run("read cursors", |trx| {
            let wanted = &wanted;
            Box::pin(async move {
                let mut heads: HashMap<&str, u64> = HashMap::new();
                let mut moved: HashMap<(&str, &str), (u64, u64)> = HashMap::new();
                for (&(user, channel), &seq) in wanted {
                    let key = self.layout.reads(user).pack(&(channel,));
                    let current = match trx.get(&key, false).await? {
                        None => 0,
                        Some(v) => read_u64(&v).ok_or_else(|| corrupt("read cursor"))?,
                    };
                    let head = match heads.get(channel) {
                        Some(&h) => h,
                        None => {
                            let h = self.head_in(&trx, channel, true).await?;
                            heads.insert(channel, h);
                            h
                        }
                    };
                    let target = seq.min(head);
                    if target > current {
                        trx.set(&key, &u64_value(target));
                        moved.insert((user, channel), (current, target));
                    } else {
                        moved.insert((user, channel), (current, current));
                    }
                }
                Ok(moved)
            })
        })?;
        Ok(updates
            .iter()
            .map(|(u, c, _)| {
                let (b, a) = moved
                    .get(&(u.as_str(), c.as_str()))
                    .copied()
                    .unwrap_or((0, 0));
                (Seq(b), Seq(a))
            })
            .collect())
    }

    fn read_cursor(&self, user: &str, channel: &str) -> Result<Seq, StoreError> {
        check_name("user", user)?;
        check_name("channel", channel)?;
        self.run("read cursor", |trx| {
            Box::pin(async move {
                let key = self.layout.reads(user).pack(&(channel,));
                match trx.get(&key, true).await? {
                    None => Ok(Seq(0)),
                    Some(v) => Ok(Seq(read_u64(&v).ok_or_else(|| corrupt("read cursor"))?)),
                }
            })
        })
    }

    fn read_cursors(&self, user: &str) -> Result<Vec<(String, Seq)>, StoreError> {
        check_name("user", user)?;
        self.run("read cursors", |trx| {
            Box::pin(async move {
                let mut out = Vec::new();
                for (channel, v) in Self::names_in(&trx, &self.layout.reads(user)).await? {
                    let seq = read_u64(&v).ok_or_else(|| corrupt("read cursor"))?;
                    if seq > 0 {
                        out.push((channel, Seq(seq)));
                    }
                }
                Ok(out)
            })
        })
    }

    fn advance_delivered_batch(&self, updates: &[DeliveredUpdate]) -> Result<(), StoreError> {
        let mut wanted: HashMap<(&str, &str, &str), u64> = HashMap::with_capacity(updates.len());
        for (user, device, channel, seq) in updates {
            check_name("user", user)?;
            check_name("device", device)?;
            check_name("channel", channel)?;
            let e = wanted.entry((user, device, channel)).or_insert(0);
            *e = (*e).max(seq.0);
        }
        if wanted.is_empty() {
            return Ok(());
        }
        self.run("delivered cursors", |trx| {
            let wanted = &wanted;
            Box::pin(async move {
                let mut heads: HashMap<&str, u64> = HashMap::new();
                for (&(user, device, channel), &seq) in wanted {
                    let head = match heads.get(channel) {
                        Some(&h) => h,
                        None => {
                            // A snapshot read: heads only grow, so clamping
                            // to a slightly old head never passes the real one.
                            let h = self.head_in(&trx, channel, true).await?;
                            heads.insert(channel, h);
                            h
                        }
                    };
                    let target = seq.min(head);
                    if target > 0 {
                        let key = self.layout.delivered(user, device, channel);
                        trx.atomic_op(&key, &u64_value(target), MutationType::Max);
                    }
                }
                Ok(())
            })
        })
    }

    fn delivered_cursor(&self, user: &str, device: &str, channel: &str) -> Result<Seq, StoreError> {
        check_name("user", user)?;
        check_name("device", device)?;
        check_name("channel", channel)?;
        self.run("delivered cursor", |trx| {
            Box::pin(async move {
                match trx
                    .get(&self.layout.delivered(user, device, channel), true)
                    .await?
                {
                    None => Ok(Seq(0)),
                    Some(v) => Ok(Seq(read_u64(&v).ok_or_else(|| corrupt("delivered cursor"))?)),
                }
            })
        })
    }

    fn cluster(&self) -> Option<&dyn crate::Cluster> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MessageKind;

    fn msg(id: usize, text_len: usize) -> NewMessage {
        NewMessage {
            from: "u".into(),
            device: "d".into(),
            client_msg_id: format!("c{id}"),
            kind: MessageKind::Text,
            text: "x".repeat(text_len),
            target: None,
            media: None,
            ts: 1,
        }
    }

    fn ca(name: &str, n: usize, len: usize) -> ChannelAppend {
        ChannelAppend {
            channel: name.into(),
            messages: (0..n).map(|i| msg(i, len)).collect(),
        }
    }

    #[test]
    fn a_small_append_is_one_part_with_every_channel() {
        let batch = vec![ca("a", 3, 10), ca("b", 0, 0), ca("c", 2, 10)];
        let parts = plan_parts(&batch, 4_000_000, 5_000);
        assert_eq!(parts, vec![vec![(0, 0..3), (1, 0..0), (2, 0..2)]]);
    }

    #[test]
    fn a_large_append_is_cut_in_order_and_covers_every_message_once() {
        let batch = vec![ca("a", 30, 100_000), ca("b", 5, 10)];
        let parts = plan_parts(&batch, 1_000_000, 5_000);
        let batch = &batch;
        assert!(parts.len() > 1);
        let mut seen: Vec<(usize, usize)> = Vec::new();
        for p in &parts {
            let mut chans = HashSet::new();
            for (ci, r) in p {
                assert!(chans.insert(*ci), "a channel twice in one part");
                seen.extend(r.clone().map(|i| (*ci, i)));
            }
            let bytes: usize = p
                .iter()
                .flat_map(|(ci, r)| r.clone().map(move |i| estimate(&batch[*ci].messages[i])))
                .sum();
            assert!(bytes <= 1_000_000 || p.iter().map(|(_, r)| r.len()).sum::<usize>() == 1);
        }
        let want: Vec<(usize, usize)> = (0..30)
            .map(|i| (0, i))
            .chain((0..5).map(|i| (1, i)))
            .collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn the_message_budget_cuts_parts_too() {
        let parts = plan_parts(&[ca("a", 10, 1)], 4_000_000, 4);
        let sizes: Vec<usize> = parts
            .iter()
            .map(|p| p.iter().map(|(_, r)| r.len()).sum())
            .collect();
        assert_eq!(sizes, vec![4, 4, 2]);
    }
}
