//! The embedded backend: a [`Store`] in a local directory, on fjall.
//!
//! # Layout
//!
//! ```text
//! <dir>/LOCK    exclusive advisory lock (flock), held for the store's life
//! <dir>/fjall/  the fjall database
//! ```
//!
//! The database has ten keyspaces. All integers are big-endian so that
//! byte order is numeric order; every length prefix counts bytes. `‖` is
//! concatenation; a field without a length prefix is always the key's last.
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `meta` | `"format"` | u32 store-format version ([`FORMAT_VERSION`]) |
//! | `msgs` | u16 len(channel) ‖ channel ‖ u64 seq | u8 [`VALUE_VERSION`] ‖ rkyv archive of [`StoredMessage`] (its current view) |
//! | `heads` | channel | u8 [`VALUE_VERSION`] ‖ u64 head |
//! | `dedup` | u16 len(channel) ‖ channel ‖ u8 len(from) ‖ from ‖ u8 len(device) ‖ device ‖ client_msg_id | u8 [`VALUE_VERSION`] ‖ u64 seq ‖ u64 ts ‖ u64 content hash |
//! | `groups` | channel (`group:<id>`) | u8 [`VALUE_VERSION`] |
//! | `members` | u16 len(channel) ‖ channel ‖ user | u8 [`VALUE_VERSION`] |
//! | `member_of` | u8 len(user) ‖ user ‖ channel | u8 [`VALUE_VERSION`] |
//! | `reads` | u8 len(user) ‖ user ‖ channel | u8 [`VALUE_VERSION`] ‖ u64 read cursor |
//! | `delivered` | u8 len(user) ‖ user ‖ u8 len(device) ‖ device ‖ channel | u8 [`VALUE_VERSION`] ‖ u64 delivered cursor |
//! | `events` | u16 len(channel) ‖ channel ‖ u64 seq (as in `msgs`) | u8 [`VALUE_VERSION`] |
//!
//! - `msgs`: the length prefix makes each channel's messages one contiguous
//!   key range, ordered by seq, that no other channel's keys fall into (a
//!   channel `room:a` has prefix `00 06 room:a`, `room:ab` has `00 07
//!   room:ab`). The rkyv archive uses the format features pinned in the
//!   workspace `Cargo.toml` (little endian, 32-bit relative pointers).
//!   Edits and deletes are applied **in place**: the append that stores an
//!   accepted `edit`/`delete` event also rewrites its target's record with
//!   the new view (`text`, `edited`, `deleted`, `media`), in the same batch.
//!   Reads therefore need no merging, and a deleted message's text is gone
//!   from the live data (the LSM tree drops the old version at compaction).
//! - `heads`: the highest stored seq of each non-empty channel, written in
//!   the same batch as the messages. A missing key means head 0.
//! - `dedup`: one key per stored message. The content hash is FNV-1a 64 over
//!   the message's kind, text, target and media *as sent* ([`content_hash`]):
//!   a retry with an equal hash is a `Duplicate`, any other a `Conflict`.
//!   Because the hash is kept here, editing a message does not change how
//!   its retry is judged.
//! - `groups`: one key per created group; `members` is the member set of
//!   each group (one contiguous, sorted range per group, as in `msgs`), and
//!   `member_of` the same pairs indexed by user (one contiguous, sorted range
//!   per user). Both are written in one batch, so they always agree.
//! - `reads`, `delivered`: cursors, one contiguous range per user (so
//!   `read_cursors` is one prefix scan). A missing key means cursor 0; a
//!   cursor is written only when it moves forward.
//! - `events`: one key per stored `edit`/`delete` event, written in the
//!   same batch as the event. `count_messages` (unread counts) is the width
//!   of a seq range minus the events keys in it, so its cost grows with the
//!   events in the range, not with the messages.
//! - `meta/format` is written when the directory is created, and checked
//!   before any other keyspace is opened: a directory with another version
//!   is refused with [`StoreError::UnsupportedFormat`] and left untouched. A
//!   value whose first byte is not [`VALUE_VERSION`] is
//!   [`StoreError::Corrupt`].
//!
//! Format history: 1 had `msgs`, `heads` and `dedup`, and messages without
//! `edited`/`deleted`; 2 adds those fields to the archive and the five
//! membership and cursor keyspaces; 3 (this build) adds `events`. Version 1
//! directories are refused, not migrated (there was no deployed data to
//! carry over). A version 2 directory is migrated when opened: one scan of
//! `msgs` writes the `events` keys of the events it holds and moves
//! `meta/format` to 3, in one batch (an interrupted migration leaves
//! version 2 and runs again).
//!
//! Keys are limited to 65,535 bytes (fjall's limit): a channel name, sender,
//! device and `client_msg_id` whose key would be longer, or a user or device
//! id over 255 bytes, are refused with [`StoreError::Invalid`].
//!
//! # Writes
//!
//! Every write (appends, membership changes, cursor moves) serializes on one
//! mutex (the write lock), so check-then-write sequences (a group exists, a
//! cursor only moves forward, an edit's target is by its sender) are atomic,
//! and commits come in one order. Under it, an append reads each channel's
//! head (from an in-memory cache, filled from `heads` on first use), the
//! dedup keys and edit targets it needs, builds **one** fjall write batch for
//! all channels (messages, rewritten targets, dedup keys, new heads, the
//! senders' read cursors), and commits it with the configured persist mode.
//! The cache is updated only after the commit succeeded, so a failed commit
//! leaves no trace in memory either. The cache holds one entry (name +
//! `u64`) per channel appended to since open. A write that changes nothing
//! (a cursor that would not move, an existing member) commits nothing.
//!
//! A failed commit poisons the store: every later write returns
//! [`StoreError::Poisoned`] and [`Store::health`] reports it. (fjall poisons
//! its own database on a failed journal write or sync as well.) Reads keep
//! working.
//!
//! # Reads
//!
//! Reads do not take the write lock: each is one fjall point read or range
//! iterator, which reads a consistent snapshot. `After` scans forward,
//! `Before`/`Latest` scan backward and reverse the page; one more key is
//! peeked to set `has_more`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};

use crate::{
    AppendOutcome, ChannelAppend, ChannelOutcome, DeliveredUpdate, Health, Media, MessageKind,
    NewMessage, Page, ReadLimit, ReadRange, ReadUpdate, Seq, Store, StoreError, StoredMessage,
};

/// The store-format version this build reads and writes (`meta/format`).
/// See "Format history" in the module docs.
pub const FORMAT_VERSION: u32 = 3;

/// The oldest format version this build migrates on open.
const MIGRATES_FROM: u32 = 2;

/// The value-format version: the first byte of every value in every
/// keyspace but `meta`.
pub const VALUE_VERSION: u8 = 1;

/// The key in the `meta` keyspace that holds [`FORMAT_VERSION`].
const FORMAT_KEY: &[u8] = b"format";

/// fjall's key length limit (its keys carry a u16 length).
const MAX_KEY_LEN: usize = u16::MAX as usize;

/// How far an acknowledged append is persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// An acked append has been `fdatasync`ed (fjall `PersistMode::SyncData`):
    /// it survives a power cut. The default.
    #[default]
    Fsync,
    /// An acked append has been written to the OS (fjall
    /// `PersistMode::Buffer`): it survives a crash of the process, not of the
    /// machine.
    Buffered,
}

impl Durability {
    fn persist_mode(self) -> PersistMode {
        match self {
            Durability::Fsync => PersistMode::SyncData,
            Durability::Buffered => PersistMode::Buffer,
        }
    }
}

/// Configuration of an [`EmbeddedStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// The data directory; created if missing. Holds `LOCK` and `fjall/`.
    pub dir: PathBuf,
    /// How far an acked append is persisted. Default: [`Durability::Fsync`].
    pub durability: Durability,
    /// Capacity of fjall's block cache, in bytes. Default: 64 MiB. Costs up
    /// to this much memory once history reads have warmed it.
    pub cache_bytes: u64,
    /// Size at which a keyspace's write buffer (memtable) is sealed and
    /// flushed to a table, in bytes. Default: 16 MiB. Memory: each of the
    /// store's keyspaces holds up to this much in its active memtable, plus
    /// sealed ones while they flush; the keyspaces written per message
    /// (messages, heads, dedup keys) fill theirs under load, so plan on
    /// about 3× this once warm. Fixed when a keyspace is created: a
    /// directory keeps the size it was created with (fjall stores it).
    pub memtable_bytes: u64,
}

impl EmbeddedConfig {
    /// The default block-cache size: 64 MiB.
    pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

    /// The default memtable size: 16 MiB (fjall's own default is 64 MiB).
    pub const DEFAULT_MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;

    /// A configuration for `dir` with default durability and cache size.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> EmbeddedConfig {
        EmbeddedConfig {
            dir: dir.into(),
            durability: Durability::default(),
            cache_bytes: Self::DEFAULT_CACHE_BYTES,
            memtable_bytes: Self::DEFAULT_MEMTABLE_BYTES,
        }
    }
}

/// The embedded [`Store`]: fjall in a local directory. See the module docs
/// for the layout and the write path.
pub struct EmbeddedStore {
    // Field order is drop order: the database closes before the lock file
    // is released.
    db: Database,
    msgs: Keyspace,
    heads: Keyspace,
    dedup: Keyspace,
    groups: Keyspace,
    members: Keyspace,
    member_of: Keyspace,
    reads: Keyspace,
    delivered: Keyspace,
    events: Keyspace,
    /// Cached heads of channels appended to (or looked up by an append)
    /// since open. Only written under `write_lock`, after a commit.
    head_cache: Mutex<HashMap<String, u64>>,
    /// The one write lock: every write serializes on it.
    write_lock: Mutex<()>,
    /// Set (once, for good) when a commit failed.
    poison: OnceLock<String>,
    durability: Durability,
    dir: PathBuf,
    /// Holds the advisory lock on `<dir>/LOCK`; released when dropped.
    _lock: File,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.dir)
            .field("durability", &self.durability)
            .field("poisoned", &self.poison.get())
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `cfg.dir`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] when another process (or another open store in
    /// this process) holds the directory; [`StoreError::UnsupportedFormat`]
    /// when it was written by another format version; [`StoreError::Io`] or
    /// [`StoreError::Corrupt`] when it cannot be opened.
    pub fn open(cfg: &EmbeddedConfig) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(&cfg.dir)?;
        let lock = lock_dir(&cfg.dir)?;

        let fjall_dir = cfg.dir.join("fjall");
        let db = Database::builder(&fjall_dir)
            .cache_size(cfg.cache_bytes)
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => StoreError::Locked {
                    path: cfg.dir.display().to_string(),
                },
                e => engine_error(e),
            })?;
        let keyspace = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(cfg.memtable_bytes)
            })
            .map_err(engine_error)
        };
        // The version is checked before any other keyspace is opened, so a
        // directory of another version is refused without being touched.
        let meta = keyspace("meta")?;
        let stored_format = match meta.get(FORMAT_KEY).map_err(engine_error)? {
            Some(v) => {
                let found = <[u8; 4]>::try_from(&*v)
                    .map(u32::from_be_bytes)
                    .map_err(|_| {
                        StoreError::Corrupt(format!("meta/format holds {} bytes, not 4", v.len()))
                    })?;
                if found != FORMAT_VERSION && found != MIGRATES_FROM {
                    return Err(StoreError::UnsupportedFormat {
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                Some(found)
            }
            None => None,
        };
        let msgs = keyspace("msgs")?;
        let heads = keyspace("heads")?;
        let dedup = keyspace("dedup")?;
        let groups = keyspace("groups")?;
        let members = keyspace("members")?;
        let member_of = keyspace("member_of")?;
        let reads = keyspace("reads")?;
        let delivered = keyspace("delivered")?;
        let events = keyspace("events")?;
        match stored_format {
            None => {
                let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
                batch.insert(&meta, FORMAT_KEY, FORMAT_VERSION.to_be_bytes().to_vec());
                batch.commit().map_err(engine_error)?;
            }
            Some(MIGRATES_FROM) => {
                // 2 → 3: index the events already stored.
                let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
                let mut indexed = 0u64;
                for guard in msgs.iter() {
                    let (key, value) = guard.into_inner().map_err(engine_error)?;
                    if decode_message(&value)?.is_event() {
                        batch.insert(&events, key.to_vec(), marker());
                        indexed += 1;
                    }
                }
                batch.insert(&meta, FORMAT_KEY, FORMAT_VERSION.to_be_bytes().to_vec());
                batch.commit().map_err(engine_error)?;
                tracing::info!(dir = %cfg.dir.display(), events = indexed, "embedded store migrated from format 2 to 3");
            }
            Some(_) => {}
        }

        tracing::info!(dir = %cfg.dir.display(), durability = ?cfg.durability, "embedded store open");
        Ok(EmbeddedStore {
            db,
            msgs,
            heads,
            dedup,
            groups,
            members,
            member_of,
            reads,
            delivered,
            events,
            head_cache: Mutex::new(HashMap::new()),
            write_lock: Mutex::new(()),
            poison: OnceLock::new(),
            durability: cfg.durability,
            dir: cfg.dir.clone(),
            _lock: lock,
        })
    }

    /// The data directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configured durability.
    #[must_use]
    pub fn durability(&self) -> Durability {
        self.durability
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        // The map is only ever updated by whole inserts: a panic elsewhere
        // cannot leave it half-written.
        self.head_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The head as stored in `heads` (0 when absent).
    fn stored_head(&self, channel: &str) -> Result<u64, StoreError> {
        match self.heads.get(channel.as_bytes()).map_err(engine_error)? {
            None => Ok(0),
            Some(v) => decode_head(&v),
        }
    }

    /// The head for an append; fills the cache. Call only under the write
    /// lock (so no commit can land between the disk read and the insert).
    fn head_for_append(&self, channel: &str) -> Result<u64, StoreError> {
        if let Some(&h) = self.cache().get(channel) {
            return Ok(h);
        }
        let h = self.stored_head(channel)?;
        self.cache().insert(channel.to_owned(), h);
        Ok(h)
    }

    fn poisoned_error(&self) -> Option<StoreError> {
        self.poison.get().map(|m| StoreError::Poisoned(m.clone()))
    }

    /// Takes the write lock, refusing when the store is poisoned (checked
    /// again under the lock: a write that failed while we waited may have
    /// poisoned it).
    fn lock_writes(&self) -> Result<MutexGuard<'_, ()>, StoreError> {
        if let Some(e) = self.poisoned_error() {
            return Err(e);
        }
        // The guarded value is `()`: a panic elsewhere cannot corrupt it.
        let guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match self.poisoned_error() {
            Some(e) => Err(e),
            None => Ok(guard),
        }
    }

    /// A write batch with the configured persist mode.
    fn new_batch(&self) -> OwnedWriteBatch {
        self.db
            .batch()
            .durability(Some(self.durability.persist_mode()))
    }

    /// Commits `wb` (a no-op when empty); a failure poisons the store.
    fn commit(&self, wb: OwnedWriteBatch, what: &str) -> Result<(), StoreError> {
        if let Err(e) = wb.commit() {
            let msg = format!("{what} commit failed: {e}");
            tracing::error!(dir = %self.dir.display(), error = %e, what, "embedded store poisoned");
            let msg = self.poison.get_or_init(|| msg).clone();
            return Err(StoreError::Poisoned(msg));
        }
        Ok(())
    }

    /// The stored record (current view) at `seq` of the channel whose `msgs`
    /// prefix is `prefix`.
    fn stored_message(&self, prefix: &[u8], seq: u64) -> Result<Option<StoredMessage>, StoreError> {
        match self.msgs.get(msg_key(prefix, seq)).map_err(engine_error)? {
            None => Ok(None),
            Some(v) => decode_message(&v).map(Some),
        }
    }

    /// The cursor stored under `key` in `ks` (0 when absent).
    fn cursor(ks: &Keyspace, key: &[u8], what: &str) -> Result<u64, StoreError> {
        match ks.get(key).map_err(engine_error)? {
            None => Ok(0),
            Some(v) => decode_seq(what, &v),
        }
    }

    /// Whether the group `channel` exists.
    fn group_exists(&self, channel: &str) -> Result<bool, StoreError> {
        self.groups
            .contains_key(group_key(channel)?)
            .map_err(engine_error)
    }

    /// Adds (`add`) or removes a member; under the write lock. Returns whether
    /// anything changed.
    fn change_member(&self, channel: &str, user: &str, add: bool) -> Result<bool, StoreError> {
        let mkey = member_key(channel, user)?;
        let okey = member_of_key(user, channel)?;
        let _write = self.lock_writes()?;
        if !self.group_exists(channel)? {
            return Err(StoreError::NotFound(format!("no group {channel:?}")));
        }
        let present = self.members.contains_key(&mkey).map_err(engine_error)?;
        if present == add {
            return Ok(false);
        }
        let mut wb = self.new_batch();
        if add {
            wb.insert(&self.members, mkey, marker());
            wb.insert(&self.member_of, okey, marker());
        } else {
            wb.remove(&self.members, mkey);
            wb.remove(&self.member_of, okey);
        }
        self.commit(wb, "membership")?;
        Ok(true)
    }
}

/// Takes the exclusive advisory lock on `<dir>/LOCK`.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: dir.display().to_string(),
        }),
        Err(TryLockError::Error(e)) => Err(StoreError::Io(e)),
    }
}

impl Store for EmbeddedStore {
    fn append(&self, batch: &[ChannelAppend]) -> Result<Vec<ChannelOutcome>, StoreError> {
        if let Some(e) = self.poisoned_error() {
            return Err(e);
        }
        let mut seen_channels = HashSet::with_capacity(batch.len());
        for ca in batch {
            if !seen_channels.insert(ca.channel.as_str()) {
                return Err(StoreError::Invalid(format!(
                    "channel {:?} appears twice in one append",
                    ca.channel
                )));
            }
        }
        // Any error from here to the commit (an overlong key, a failed read)
        // drops the uncommitted batch: nothing is written, and the head
        // cache only ever receives heads read from disk.
        let _write = self.lock_writes()?;

        let mut wb = self.new_batch();
        let mut new_heads: Vec<(&str, u64)> = Vec::new();
        let mut results = Vec::with_capacity(batch.len());

        for ca in batch {
            let head = self.head_for_append(&ca.channel)?;
            let prefix = msg_prefix(&ca.channel)?;
            let mut next = head;
            let mut outcomes = Vec::with_capacity(ca.messages.len());
            // Dedup keys stored earlier in this call: key -> (seq, message).
            let mut in_call: HashMap<Vec<u8>, (u64, &NewMessage)> = HashMap::new();
            // Records this call writes, by seq: its new messages and the new
            // views of the targets it edits or deletes. Each is written once
            // (a batch must not hold one key twice).
            let mut records: BTreeMap<u64, StoredMessage> = BTreeMap::new();
            // Sender -> the highest seq this call stores for them (their new
            // read cursor: it is above the head, so above any cursor).
            let mut senders: HashMap<&str, u64> = HashMap::new();

            for m in &ca.messages {
                let dkey = dedup_key(&ca.channel, m)?;
                if let Some(&(seq, orig)) = in_call.get(&dkey) {
                    outcomes.push(crate::repeat_outcome(
                        seq,
                        orig.ts,
                        crate::same_content(orig, m),
                    ));
                    continue;
                }
                if let Some(v) = self.dedup.get(&dkey).map_err(engine_error)? {
                    let d = decode_dedup(&v)?;
                    outcomes.push(crate::repeat_outcome(
                        d.seq,
                        d.ts,
                        d.hash == content_hash(m),
                    ));
                    continue;
                }

                if crate::is_change(m) {
                    let from_disk;
                    let target = match crate::target_in_range(m, next) {
                        None => None,
                        Some(t) => match records.get(&t) {
                            Some(view) => Some(view),
                            None => {
                                from_disk = self.stored_message(&prefix, t)?;
                                from_disk.as_ref()
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
                wb.insert(
                    &self.dedup,
                    dkey.clone(),
                    encode_dedup(next, m.ts, content_hash(m)),
                );
                in_call.insert(dkey, (next, m));
                senders.insert(m.from.as_str(), next);
                outcomes.push(AppendOutcome::Stored {
                    seq: Seq(next),
                    ts: m.ts,
                });
            }

            for (seq, record) in &records {
                wb.insert(&self.msgs, msg_key(&prefix, *seq), encode_message(record)?);
                if *seq > head && record.is_event() {
                    wb.insert(&self.events, msg_key(&prefix, *seq), marker());
                }
            }
            for (user, seq) in senders {
                wb.insert(&self.reads, read_key(user, &ca.channel)?, encode_seq(seq));
            }
            if head == 0 && next != head {
                if let Some((a, b)) = crate::dm_pair(&ca.channel) {
                    // Both users' DM index, written with the DM's first
                    // message (a DM's messages are never removed, so the
                    // index of a DM with a head is already there; writing
                    // it again cost two memtable inserts per message).
                    for u in [a, b] {
                        wb.insert(&self.member_of, member_of_key(u, &ca.channel)?, marker());
                    }
                }
            }
            if next != head {
                wb.insert(&self.heads, ca.channel.as_bytes(), encode_seq(next));
                new_heads.push((ca.channel.as_str(), next));
            }
            results.push(ChannelOutcome {
                outcomes,
                head: Seq(next),
            });
        }

        self.commit(wb, "append")?;

        let mut cache = self.cache();
        for (channel, head) in new_heads {
            cache.insert(channel.to_owned(), head);
        }
        Ok(results)
    }

    fn append_waits_for_io(&self) -> bool {
        // `buffered` commits with `PersistMode::Buffer`: written to the OS,
        // never synced by the append.
        self.durability == Durability::Fsync
    }

    fn head(&self, channel: &str) -> Result<Seq, StoreError> {
        if let Some(&h) = self.cache().get(channel) {
            return Ok(Seq(h));
        }
        // Not cached: read `heads` without filling the cache (only appends
        // fill it, under the write lock, so it can never go stale).
        self.stored_head(channel).map(Seq)
    }

    fn read(&self, channel: &str, range: ReadRange, limit: ReadLimit) -> Result<Page, StoreError> {
        let prefix = msg_prefix(channel)?;
        let max = crate::max_messages(limit);
        let lo = msg_key(&prefix, 0);
        let hi = msg_key(&prefix, u64::MAX);

        let mut iter: Box<dyn Iterator<Item = fjall::Guard>> = match range {
            ReadRange::After(Seq(s)) => match s.checked_add(1) {
                Some(first) => Box::new(self.msgs.range(msg_key(&prefix, first)..=hi)),
                None => return Ok(Page::default()),
            },
            ReadRange::Before(Seq(s)) => {
                if s <= 1 {
                    return Ok(Page::default());
                }
                Box::new(self.msgs.range(lo..msg_key(&prefix, s)).rev())
            }
            ReadRange::Latest => Box::new(self.msgs.range(lo..=hi).rev()),
        };

        let mut page = Page::default();
        let mut bytes = 0usize;
        for guard in iter.by_ref() {
            let (_key, value) = guard.into_inner().map_err(engine_error)?;
            let m = decode_message(&value)?;
            bytes = bytes.saturating_add(m.text.len());
            page.messages.push(m);
            if page.messages.len() >= max || bytes >= limit.bytes {
                break;
            }
        }
        page.has_more = !page.messages.is_empty() && iter.next().is_some();
        if !matches!(range, ReadRange::After(_)) {
            page.messages.reverse();
        }
        Ok(page)
    }

    fn message(&self, channel: &str, seq: Seq) -> Result<Option<StoredMessage>, StoreError> {
        self.stored_message(&msg_prefix(channel)?, seq.0)
    }

    fn count_messages(&self, channel: &str, after: Seq, through: Seq) -> Result<u64, StoreError> {
        let through = through.0.min(self.head(channel)?.0);
        if through <= after.0 {
            return Ok(0);
        }
        let prefix = msg_prefix(channel)?;
        let mut events = 0u64;
        for guard in self
            .events
            .range(msg_key(&prefix, after.0 + 1)..=msg_key(&prefix, through))
        {
            guard.into_inner().map_err(engine_error)?;
            events += 1;
        }
        Ok(through - after.0 - events)
    }

    fn health(&self) -> Health {
        match self.poison.get() {
            Some(m) => Health::Poisoned(m.clone()),
            None => Health::Healthy,
        }
    }

    fn create_group(&self, group_id: &str, members: &[String]) -> Result<(), StoreError> {
        let channel = crate::group_channel(group_id);
        let gkey = group_key(&channel)?;
        let users: BTreeSet<&str> = members.iter().map(String::as_str).collect();
        let mut keys = Vec::with_capacity(users.len());
        for user in users {
            keys.push((member_key(&channel, user)?, member_of_key(user, &channel)?));
        }
        let _write = self.lock_writes()?;
        if self.group_exists(&channel)? {
            return Err(StoreError::Conflict(format!(
                "group {channel:?} already exists"
            )));
        }
        let mut wb = self.new_batch();
        wb.insert(&self.groups, gkey, marker());
        for (mkey, okey) in keys {
            wb.insert(&self.members, mkey, marker());
            wb.insert(&self.member_of, okey, marker());
        }
        self.commit(wb, "create group")
    }

    fn add_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        self.change_member(channel, user, true)
    }

    fn remove_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        self.change_member(channel, user, false)
    }

    fn members(&self, channel: &str) -> Result<Option<Vec<String>>, StoreError> {
        if !self.group_exists(channel)? {
            return Ok(None);
        }
        let prefix = msg_prefix(channel)?;
        let mut users = Vec::new();
        for guard in self.members.prefix(&prefix) {
            let (key, value) = guard.into_inner().map_err(engine_error)?;
            strip_version("member", &value)?;
            users.push(key_suffix("member", &key, prefix.len())?);
        }
        Ok(Some(users))
    }

    fn is_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        self.members
            .contains_key(member_key(channel, user)?)
            .map_err(engine_error)
    }

    fn channels_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let prefix = user_prefix(user)?;
        let mut channels = Vec::new();
        for guard in self.member_of.prefix(&prefix) {
            let (key, value) = guard.into_inner().map_err(engine_error)?;
            strip_version("member_of", &value)?;
            channels.push(key_suffix("member_of", &key, prefix.len())?);
        }
        Ok(channels)
    }

    fn advance_read(&self, user: &str, channel: &str, seq: Seq) -> Result<Seq, StoreError> {
        let key = read_key(user, channel)?;
        let _write = self.lock_writes()?;
        let current = Self::cursor(&self.reads, &key, "read cursor")?;
        let target = seq.0.min(self.head(channel)?.0);
        if target <= current {
            return Ok(Seq(current));
        }
        let mut wb = self.new_batch();
        wb.insert(&self.reads, key, encode_seq(target));
        self.commit(wb, "read cursor")?;
        Ok(Seq(target))
    }

    fn advance_read_batch(&self, updates: &[ReadUpdate]) -> Result<Vec<(Seq, Seq)>, StoreError> {
        // Keys first (before the lock); repeats of one cursor coalesce.
        let keys = updates
            .iter()
            .map(|(u, c, _)| read_key(u, c))
            .collect::<Result<Vec<_>, _>>()?;
        let mut wanted: HashMap<&[u8], (&str, u64)> = HashMap::with_capacity(updates.len());
        for (key, (_, channel, seq)) in keys.iter().zip(updates) {
            let e = wanted.entry(key).or_insert((channel.as_str(), 0));
            e.1 = e.1.max(seq.0);
        }
        let _write = self.lock_writes()?;
        let mut moved: HashMap<&[u8], (u64, u64)> = HashMap::with_capacity(wanted.len());
        let mut wb = self.new_batch();
        for (key, (channel, seq)) in wanted {
            let current = Self::cursor(&self.reads, key, "read cursor")?;
            let target = seq.min(self.head(channel)?.0);
            if target > current {
                wb.insert(&self.reads, key.to_vec(), encode_seq(target));
                moved.insert(key, (current, target));
            } else {
                moved.insert(key, (current, current));
            }
        }
        self.commit(wb, "read cursors")?;
        Ok(keys
            .iter()
            .map(|k| {
                let (b, a) = moved.get(k.as_slice()).copied().unwrap_or((0, 0));
                (Seq(b), Seq(a))
            })
            .collect())
    }

    fn read_cursor(&self, user: &str, channel: &str) -> Result<Seq, StoreError> {
        Self::cursor(&self.reads, &read_key(user, channel)?, "read cursor").map(Seq)
    }

    fn read_cursors(&self, user: &str) -> Result<Vec<(String, Seq)>, StoreError> {
        let prefix = user_prefix(user)?;
        let mut cursors = Vec::new();
        for guard in self.reads.prefix(&prefix) {
            let (key, value) = guard.into_inner().map_err(engine_error)?;
            let channel = key_suffix("read cursor", &key, prefix.len())?;
            cursors.push((channel, Seq(decode_seq("read cursor", &value)?)));
        }
        Ok(cursors)
    }

    fn advance_delivered_batch(&self, updates: &[DeliveredUpdate]) -> Result<(), StoreError> {
        // Coalesce first (a batch must not hold one key twice), and build
        // every key before taking the lock.
        let mut wanted: HashMap<Vec<u8>, (&str, u64)> = HashMap::with_capacity(updates.len());
        for (user, device, channel, seq) in updates {
            let key = delivered_key(user, device, channel)?;
            let e = wanted.entry(key).or_insert((channel.as_str(), 0));
            e.1 = e.1.max(seq.0);
        }
        let _write = self.lock_writes()?;
        let mut heads: HashMap<&str, u64> = HashMap::new();
        let mut wb = self.new_batch();
        for (key, (channel, seq)) in wanted {
            let head = match heads.get(channel) {
                Some(&h) => h,
                None => {
                    let h = self.head(channel)?.0;
                    heads.insert(channel, h);
                    h
                }
            };
            let target = seq.min(head);
            if target > Self::cursor(&self.delivered, &key, "delivered cursor")? {
                wb.insert(&self.delivered, key, encode_seq(target));
            }
        }
        self.commit(wb, "delivered cursors")
    }

    fn delivered_cursor(&self, user: &str, device: &str, channel: &str) -> Result<Seq, StoreError> {
        let key = delivered_key(user, device, channel)?;
        Self::cursor(&self.delivered, &key, "delivered cursor").map(Seq)
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        if self.poison.get().is_some() {
            return;
        }
        if let Err(e) = self.db.persist(PersistMode::SyncAll) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "persist on close failed");
        }
    }
}

/// Maps an engine error outside a commit to a `StoreError`.
fn engine_error(e: fjall::Error) -> StoreError {
    match e {
        fjall::Error::Io(e) | fjall::Error::Storage(fjall::LsmError::Io(e)) => StoreError::Io(e),
        fjall::Error::Poisoned => StoreError::Poisoned(
            "the storage engine refused a write after an earlier failure".into(),
        ),
        e => StoreError::Corrupt(format!("storage engine: {e}")),
    }
}

// ---------------------------------------------------------------- keys ----

/// `u16 len(channel) ‖ channel`: the prefix of every `msgs` key of a channel.
fn msg_prefix(channel: &str) -> Result<Vec<u8>, StoreError> {
    let len = channel.len();
    if 2 + len + 8 > MAX_KEY_LEN {
        return Err(StoreError::Invalid(format!(
            "channel name of {len} bytes is too long for the embedded store"
        )));
    }
    let len = u16::try_from(len).map_err(|_| StoreError::Invalid("channel too long".into()))?;
    let mut k = Vec::with_capacity(2 + channel.len() + 8);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(channel.as_bytes());
    Ok(k)
}

/// A `msgs` key: the channel prefix ‖ u64 BE seq.
fn msg_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// A `dedup` key: `u16 len ‖ channel ‖ u8 len ‖ from ‖ u8 len ‖ device ‖
/// client_msg_id`.
fn dedup_key(channel: &str, m: &NewMessage) -> Result<Vec<u8>, StoreError> {
    let from = u8::try_from(m.from.len()).map_err(|_| key_too_long("sender id", m.from.len()))?;
    let device =
        u8::try_from(m.device.len()).map_err(|_| key_too_long("device id", m.device.len()))?;
    let mut k = msg_prefix(channel)?;
    let total = k.len() + 1 + m.from.len() + 1 + m.device.len() + m.client_msg_id.len();
    if total > MAX_KEY_LEN {
        return Err(key_too_long(
            "dedup key (channel, from, device, client_msg_id)",
            total,
        ));
    }
    k.reserve(total - k.len());
    k.push(from);
    k.extend_from_slice(m.from.as_bytes());
    k.push(device);
    k.extend_from_slice(m.device.as_bytes());
    k.extend_from_slice(m.client_msg_id.as_bytes());
    Ok(k)
}

/// A key too long for fjall.
fn key_too_long(what: &str, n: usize) -> StoreError {
    StoreError::Invalid(format!(
        "{what} of {n} bytes is too long for the embedded store"
    ))
}

/// `u8 len(user) ‖ user`: the prefix of a user's `member_of`, `reads` and
/// `delivered` keys.
fn user_prefix(user: &str) -> Result<Vec<u8>, StoreError> {
    let len = u8::try_from(user.len()).map_err(|_| key_too_long("user id", user.len()))?;
    let mut k = Vec::with_capacity(1 + user.len());
    k.push(len);
    k.extend_from_slice(user.as_bytes());
    Ok(k)
}

/// `k ‖ tail`, refused when longer than a key may be.
fn with_tail(mut k: Vec<u8>, tail: &str, what: &str) -> Result<Vec<u8>, StoreError> {
    let total = k.len() + tail.len();
    if total > MAX_KEY_LEN {
        return Err(key_too_long(what, total));
    }
    k.extend_from_slice(tail.as_bytes());
    Ok(k)
}

/// A `groups` key: the channel.
fn group_key(channel: &str) -> Result<&[u8], StoreError> {
    if channel.len() > MAX_KEY_LEN {
        return Err(key_too_long("channel name", channel.len()));
    }
    Ok(channel.as_bytes())
}

/// A `members` key: `u16 len ‖ channel ‖ user`.
fn member_key(channel: &str, user: &str) -> Result<Vec<u8>, StoreError> {
    if user.len() > usize::from(u8::MAX) {
        return Err(key_too_long("user id", user.len()));
    }
    with_tail(msg_prefix(channel)?, user, "member key (channel, user)")
}

/// A `member_of` key: `u8 len ‖ user ‖ channel`.
fn member_of_key(user: &str, channel: &str) -> Result<Vec<u8>, StoreError> {
    with_tail(user_prefix(user)?, channel, "member_of key (user, channel)")
}

/// A `reads` key: `u8 len ‖ user ‖ channel`.
fn read_key(user: &str, channel: &str) -> Result<Vec<u8>, StoreError> {
    with_tail(
        user_prefix(user)?,
        channel,
        "read cursor key (user, channel)",
    )
}

/// A `delivered` key: `u8 len ‖ user ‖ u8 len ‖ device ‖ channel`.
fn delivered_key(user: &str, device: &str, channel: &str) -> Result<Vec<u8>, StoreError> {
    let mut k = user_prefix(user)?;
    k.extend_from_slice(&user_prefix(device).map_err(|_| key_too_long("device id", device.len()))?);
    with_tail(k, channel, "delivered cursor key (user, device, channel)")
}

/// The last field of `key` after a prefix of `prefix_len` bytes, as UTF-8.
fn key_suffix(what: &str, key: &[u8], prefix_len: usize) -> Result<String, StoreError> {
    key.get(prefix_len..)
        .and_then(|b| std::str::from_utf8(b).ok())
        .map(str::to_owned)
        .ok_or_else(|| StoreError::Corrupt(format!("{what} key is not prefix ‖ UTF-8")))
}

// -------------------------------------------------------------- values ----

/// Splits off and checks the value-format version byte.
fn strip_version<'a>(what: &str, v: &'a [u8]) -> Result<&'a [u8], StoreError> {
    match v.split_first() {
        Some((&VALUE_VERSION, rest)) => Ok(rest),
        Some((&other, _)) => Err(StoreError::Corrupt(format!(
            "{what} value has format version {other}, this build reads {VALUE_VERSION}"
        ))),
        None => Err(StoreError::Corrupt(format!("{what} value is empty"))),
    }
}

pub(crate) fn encode_message(m: &StoredMessage) -> Result<Vec<u8>, StoreError> {
    let archive = rkyv::to_bytes::<rkyv::rancor::Error>(m)
        .map_err(|e| StoreError::Invalid(format!("message cannot be archived: {e}")))?;
    let mut v = Vec::with_capacity(1 + archive.len());
    v.push(VALUE_VERSION);
    v.extend_from_slice(&archive);
    Ok(v)
}

pub(crate) fn decode_message(v: &[u8]) -> Result<StoredMessage, StoreError> {
    let body = strip_version("message", v)?;
    // rkyv needs the archive aligned; bytes from disk are not.
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
    aligned.extend_from_slice(body);
    rkyv::from_bytes::<StoredMessage, rkyv::rancor::Error>(&aligned)
        .map_err(|e| StoreError::Corrupt(format!("message archive: {e}")))
}

/// A value that only says "present": the version byte.
fn marker() -> Vec<u8> {
    vec![VALUE_VERSION]
}

/// A `heads`, `reads` or `delivered` value: version ‖ u64 BE.
fn encode_seq(seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(9);
    v.push(VALUE_VERSION);
    v.extend_from_slice(&seq.to_be_bytes());
    v
}

fn decode_seq(what: &str, v: &[u8]) -> Result<u64, StoreError> {
    let body = strip_version(what, v)?;
    <[u8; 8]>::try_from(body)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("{what} value holds {} bytes, not 8", body.len())))
}

fn decode_head(v: &[u8]) -> Result<u64, StoreError> {
    decode_seq("head", v)
}

/// A decoded `dedup` value.
struct DedupRecord {
    seq: u64,
    ts: u64,
    hash: u64,
}

fn encode_dedup(seq: u64, ts: u64, hash: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(25);
    v.push(VALUE_VERSION);
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&hash.to_be_bytes());
    v
}

fn decode_dedup(v: &[u8]) -> Result<DedupRecord, StoreError> {
    let body = strip_version("dedup", v)?;
    let body = <&[u8; 24]>::try_from(body).map_err(|_| {
        StoreError::Corrupt(format!("dedup value holds {} bytes, not 24", body.len()))
    })?;
    let field = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&body[i * 8..i * 8 + 8]);
        u64::from_be_bytes(b)
    };
    Ok(DedupRecord {
        seq: field(0),
        ts: field(1),
        hash: field(2),
    })
}

// -------------------------------------------------------- content hash ----

/// FNV-1a 64-bit: a fixed, documented hash (std's hasher is randomized per
/// process and may change between releases; this must not).
#[derive(Clone, Copy)]
struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Fnv1a {
        Fnv1a(Self::OFFSET)
    }

    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn u64(&mut self, n: u64) {
        self.bytes(&n.to_be_bytes());
    }

    /// A length-prefixed string, so field boundaries are unambiguous.
    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.bytes(s.as_bytes());
    }
}

/// The stable byte of a message kind in the content hash. Never renumber.
fn kind_byte(k: MessageKind) -> u8 {
    match k {
        MessageKind::Text => 0,
        MessageKind::Media => 1,
        MessageKind::Edit => 2,
        MessageKind::Delete => 3,
    }
}

/// The content hash stored in `dedup` values: FNV-1a 64 over
/// `kind byte ‖ u64 len(text) ‖ text ‖ target ‖ media`, where `target` is
/// `0` or `1 ‖ u64`, and `media` is `0` or `1 ‖ u64 len ‖ url ‖ u64 len ‖
/// mime ‖ u64 size` (all integers big-endian). Part of the on-disk format:
/// changing it needs a new [`VALUE_VERSION`].
#[must_use]
pub fn content_hash(m: &NewMessage) -> u64 {
    let mut h = Fnv1a::new();
    h.bytes(&[kind_byte(m.kind)]);
    h.str(&m.text);
    match m.target {
        None => h.bytes(&[0]),
        Some(t) => {
            h.bytes(&[1]);
            h.u64(t);
        }
    }
    match &m.media {
        None => h.bytes(&[0]),
        Some(Media { url, mime, size }) => {
            h.bytes(&[1]);
            h.str(url);
            h.str(mime);
            h.u64(*size);
        }
    }
    h.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn msg(text: &str) -> NewMessage {
        NewMessage {
            from: "u1".into(),
            device: "d1".into(),
            client_msg_id: "c1".into(),
            kind: MessageKind::Text,
            text: text.into(),
            target: None,
            media: None,
            ts: 7,
        }
    }

    #[test]
    fn msg_keys_sort_by_seq_within_a_channel() {
        let p = msg_prefix("room:a").unwrap();
        let seqs = [0u64, 1, 2, 255, 256, 65_536, 1 << 40, u64::MAX];
        for w in seqs.windows(2) {
            assert!(
                msg_key(&p, w[0]) < msg_key(&p, w[1]),
                "{} vs {}",
                w[0],
                w[1]
            );
        }
    }

    #[test]
    fn channel_ranges_do_not_interleave() {
        // "room:a" is a byte prefix of "room:ab"; the length prefix keeps
        // every key of one outside the other's [seq 0, seq MAX] range.
        let names = ["room:a", "room:ab", "room:b", "room:", "", "room:a\u{0}"];
        for a in names {
            for b in names {
                if a == b {
                    continue;
                }
                let (pa, pb) = (msg_prefix(a).unwrap(), msg_prefix(b).unwrap());
                let (lo, hi) = (msg_key(&pa, 0), msg_key(&pa, u64::MAX));
                for seq in [0, 1, 42, u64::MAX] {
                    let k = msg_key(&pb, seq);
                    assert!(k < lo || k > hi, "{b:?}@{seq} falls inside {a:?}'s range");
                }
            }
        }
    }

    #[test]
    fn dedup_keys_separate_their_fields() {
        let mut a = msg("x");
        a.from = "ab".into();
        a.device = "c".into();
        let mut b = msg("x");
        b.from = "a".into();
        b.device = "bc".into();
        assert_ne!(dedup_key("ch", &a).unwrap(), dedup_key("ch", &b).unwrap());
        assert_ne!(dedup_key("ch", &a).unwrap(), dedup_key("ch2", &a).unwrap());
    }

    #[test]
    fn overlong_ids_are_invalid() {
        let mut m = msg("x");
        m.from = "u".repeat(256);
        assert!(matches!(dedup_key("ch", &m), Err(StoreError::Invalid(_))));
        let mut m = msg("x");
        m.client_msg_id = "c".repeat(70_000);
        assert!(matches!(dedup_key("ch", &m), Err(StoreError::Invalid(_))));
        assert!(matches!(
            msg_prefix(&"c".repeat(70_000)),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        let mut h = Fnv1a::new();
        h.bytes(b"");
        assert_eq!(h.0, 0xcbf2_9ce4_8422_2325);
        let mut h = Fnv1a::new();
        h.bytes(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
        let mut h = Fnv1a::new();
        h.bytes(b"foobar");
        assert_eq!(h.0, 0x8594_4171_f739_67e8);
    }

    #[test]
    fn content_hash_is_stable_and_covers_content_only() {
        let m = msg("hello");
        // Pinned: a change here changes the on-disk format.
        assert_eq!(content_hash(&m), PINNED_HELLO_HASH);
        let mut other = m.clone();
        other.ts = 99;
        other.client_msg_id = "c2".into();
        assert_eq!(content_hash(&m), content_hash(&other));
        for changed in [
            NewMessage {
                text: "hellp".into(),
                ..m.clone()
            },
            NewMessage {
                kind: MessageKind::Edit,
                ..m.clone()
            },
            NewMessage {
                target: Some(0),
                ..m.clone()
            },
            NewMessage {
                media: Some(Media {
                    url: String::new(),
                    mime: String::new(),
                    size: 0,
                }),
                ..m.clone()
            },
        ] {
            assert_ne!(content_hash(&m), content_hash(&changed), "{changed:?}");
        }
    }

    /// `content_hash(text "hello")`, computed independently (Python FNV-1a over
    /// `00 ‖ 00..05 ‖ "hello" ‖ 00 ‖ 00`).
    const PINNED_HELLO_HASH: u64 = 0xe7c4_1f56_c16a_1fd8;

    #[test]
    fn values_round_trip_and_reject_unknown_versions() {
        let s = StoredMessage::from_new(Seq(3), &msg("héllo"));
        let v = encode_message(&s).unwrap();
        assert_eq!(decode_message(&v).unwrap(), s);
        let mut bad = v.clone();
        bad[0] = 2;
        assert!(matches!(decode_message(&bad), Err(StoreError::Corrupt(_))));
        assert!(matches!(decode_message(&[]), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            decode_message(&v[..v.len() / 2]),
            Err(StoreError::Corrupt(_))
        ));

        assert_eq!(decode_head(&encode_seq(42)).unwrap(), 42);
        assert!(matches!(
            decode_head(&[VALUE_VERSION, 1]),
            Err(StoreError::Corrupt(_))
        ));

        let d = decode_dedup(&encode_dedup(5, 6, 7)).unwrap();
        assert_eq!((d.seq, d.ts, d.hash), (5, 6, 7));
        assert!(matches!(
            decode_dedup(&[9; 25]),
            Err(StoreError::Corrupt(_))
        ));
    }
}
