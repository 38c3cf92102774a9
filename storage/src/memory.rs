//! [`MemStore`]: the whole contract in memory, for unit tests.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use crate::{
    AppendOutcome, ChannelAppend, ChannelOutcome, DeliveredUpdate, Health, MessageKind, NewMessage,
    Page, ReadLimit, ReadRange, ReadUpdate, Seq, Store, StoreError, StoredMessage,
};

/// An in-memory [`Store`]: every channel a `BTreeMap<seq, message>`, groups
/// and cursors in maps, all under one mutex.
///
/// **For unit tests only.** It implements the full contract (sequencing,
/// atomicity, idempotency, edits and deletes, groups, cursors, reads) and
/// passes the [`crate::conformance`] suite, but nothing survives the process:
/// "durable" here means "in this process's memory". It is always
/// [`Health::Healthy`]; wrap it in a [`crate::FaultyStore`] to test failures.
///
/// Edits and deletes rewrite the target's entry in place (its current view);
/// the dedup map keeps each message as sent, so a retry of an edited
/// message is still a `Duplicate`.
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

/// (from, device, client_msg_id): the dedup key within a channel.
type DedupKey = (String, String, String);

#[derive(Debug, Default)]
struct Channel {
    /// Current views, by seq.
    messages: BTreeMap<u64, StoredMessage>,
    /// Dedup key -> (seq, the message as sent).
    dedup: HashMap<DedupKey, (u64, NewMessage)>,
}

impl Channel {
    fn head(&self) -> u64 {
        self.messages.last_key_value().map_or(0, |(&s, _)| s)
    }
}

#[derive(Debug, Default)]
struct Inner {
    channels: HashMap<String, Channel>,
    /// Group channel -> members.
    groups: HashMap<String, BTreeSet<String>>,
    /// User -> the groups they are in (the index behind `channels_of`).
    member_of: HashMap<String, BTreeSet<String>>,
    /// User -> channel -> read cursor (only cursors past 0).
    reads: HashMap<String, BTreeMap<String, u64>>,
    /// (user, device, channel) -> delivered cursor.
    delivered: HashMap<(String, String, String), u64>,
}

impl Inner {
    fn head(&self, channel: &str) -> u64 {
        self.channels.get(channel).map_or(0, Channel::head)
    }

    fn read_cursor(&self, user: &str, channel: &str) -> u64 {
        self.reads
            .get(user)
            .and_then(|m| m.get(channel))
            .copied()
            .unwrap_or(0)
    }

    /// Moves a read cursor forward (callers clamp).
    fn raise_read(&mut self, user: &str, channel: &str, seq: u64) {
        let cur = self
            .reads
            .entry(user.to_owned())
            .or_default()
            .entry(channel.to_owned())
            .or_insert(0);
        *cur = (*cur).max(seq);
    }
}

impl MemStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every write validates before it mutates, and reads do not mutate:
        // a panic under the lock cannot leave a half-applied write.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `NotFound` for a group that was never created.
fn no_group(channel: &str) -> StoreError {
    StoreError::NotFound(format!("no group {channel:?}"))
}

impl Store for MemStore {
    fn append(&self, batch: &[ChannelAppend]) -> Result<Vec<ChannelOutcome>, StoreError> {
        let mut seen = HashSet::with_capacity(batch.len());
        for ca in batch {
            if !seen.insert(ca.channel.as_str()) {
                return Err(StoreError::Invalid(format!(
                    "channel {:?} appears twice in one append",
                    ca.channel
                )));
            }
        }

        // Nothing below can fail, so applying as we go is all-or-nothing.
        let mut inner = self.inner();
        let mut results = Vec::with_capacity(batch.len());
        for ca in batch {
            let ch = inner.channels.entry(ca.channel.clone()).or_default();
            let mut outcomes = Vec::with_capacity(ca.messages.len());
            // Sender -> highest seq stored for them by this call.
            let mut senders: HashMap<&str, u64> = HashMap::new();
            for m in &ca.messages {
                let key = (m.from.clone(), m.device.clone(), m.client_msg_id.clone());
                if let Some((seq, orig)) = ch.dedup.get(&key) {
                    outcomes.push(crate::repeat_outcome(
                        *seq,
                        orig.ts,
                        crate::same_content(orig, m),
                    ));
                    continue;
                }
                let seq = ch.head() + 1;
                if crate::is_change(m) {
                    let target =
                        crate::target_in_range(m, seq - 1).and_then(|t| ch.messages.get(&t));
                    match crate::apply_change(m, target) {
                        Ok(view) => {
                            ch.messages.insert(view.seq, view);
                        }
                        Err(reason) => {
                            outcomes.push(AppendOutcome::Rejected { reason });
                            continue;
                        }
                    }
                }
                ch.messages
                    .insert(seq, StoredMessage::from_new(Seq(seq), m));
                ch.dedup.insert(key, (seq, m.clone()));
                senders.insert(&m.from, seq);
                outcomes.push(AppendOutcome::Stored {
                    seq: Seq(seq),
                    ts: m.ts,
                });
            }
            let head = Seq(ch.head());
            let stored_any = !senders.is_empty();
            for (user, seq) in senders {
                inner.raise_read(user, &ca.channel, seq);
            }
            if stored_any {
                if let Some((a, b)) = crate::dm_pair(&ca.channel) {
                    for u in [a, b] {
                        inner
                            .member_of
                            .entry(u.to_string())
                            .or_default()
                            .insert(ca.channel.clone());
                    }
                }
            }
            results.push(ChannelOutcome { outcomes, head });
        }
        Ok(results)
    }

    fn head(&self, channel: &str) -> Result<Seq, StoreError> {
        Ok(Seq(self.inner().head(channel)))
    }

    fn count_messages(&self, channel: &str, after: Seq, through: Seq) -> Result<u64, StoreError> {
        let inner = self.inner();
        let Some(ch) = inner.channels.get(channel) else {
            return Ok(0);
        };
        if through.0 <= after.0 {
            return Ok(0);
        }
        Ok(ch
            .messages
            .range(after.0 + 1..=through.0)
            .filter(|(_, m)| matches!(m.kind, MessageKind::Text | MessageKind::Media))
            .count() as u64)
    }

    fn read(&self, channel: &str, range: ReadRange, limit: ReadLimit) -> Result<Page, StoreError> {
        let inner = self.inner();
        let Some(ch) = inner.channels.get(channel) else {
            return Ok(Page::default());
        };
        let mut iter: Box<dyn Iterator<Item = &StoredMessage>> = match range {
            ReadRange::After(Seq(s)) => match s.checked_add(1) {
                Some(first) => Box::new(ch.messages.range(first..).map(|(_, m)| m)),
                None => return Ok(Page::default()),
            },
            ReadRange::Before(Seq(s)) => Box::new(ch.messages.range(..s).rev().map(|(_, m)| m)),
            ReadRange::Latest => Box::new(ch.messages.values().rev()),
        };
        let max = crate::max_messages(limit);
        let mut page = Page::default();
        let mut bytes = 0usize;
        for m in iter.by_ref() {
            bytes = bytes.saturating_add(m.text.len());
            page.messages.push(m.clone());
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
        Ok(self
            .inner()
            .channels
            .get(channel)
            .and_then(|ch| ch.messages.get(&seq.0))
            .cloned())
    }

    fn health(&self) -> Health {
        Health::Healthy
    }

    fn create_group(&self, group_id: &str, members: &[String]) -> Result<(), StoreError> {
        let channel = crate::group_channel(group_id);
        let mut inner = self.inner();
        if inner.groups.contains_key(&channel) {
            return Err(StoreError::Conflict(format!(
                "group {channel:?} already exists"
            )));
        }
        let set: BTreeSet<String> = members.iter().cloned().collect();
        for user in &set {
            inner
                .member_of
                .entry(user.clone())
                .or_default()
                .insert(channel.clone());
        }
        inner.groups.insert(channel, set);
        Ok(())
    }

    fn add_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        let mut inner = self.inner();
        let members = inner
            .groups
            .get_mut(channel)
            .ok_or_else(|| no_group(channel))?;
        if !members.insert(user.to_owned()) {
            return Ok(false);
        }
        inner
            .member_of
            .entry(user.to_owned())
            .or_default()
            .insert(channel.to_owned());
        Ok(true)
    }

    fn remove_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        let mut inner = self.inner();
        let members = inner
            .groups
            .get_mut(channel)
            .ok_or_else(|| no_group(channel))?;
        if !members.remove(user) {
            return Ok(false);
        }
        if let Some(groups) = inner.member_of.get_mut(user) {
            groups.remove(channel);
            if groups.is_empty() {
                inner.member_of.remove(user);
            }
        }
        Ok(true)
    }

    fn members(&self, channel: &str) -> Result<Option<Vec<String>>, StoreError> {
        Ok(self
            .inner()
            .groups
            .get(channel)
            .map(|m| m.iter().cloned().collect()))
    }

    fn is_member(&self, channel: &str, user: &str) -> Result<bool, StoreError> {
        Ok(self
            .inner()
            .groups
            .get(channel)
            .is_some_and(|m| m.contains(user)))
    }

    fn channels_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .inner()
            .member_of
            .get(user)
            .map(|g| g.iter().cloned().collect())
            .unwrap_or_default())
    }

    fn advance_read(&self, user: &str, channel: &str, seq: Seq) -> Result<Seq, StoreError> {
        let mut inner = self.inner();
        let target = seq.0.min(inner.head(channel));
        if target > inner.read_cursor(user, channel) {
            inner.raise_read(user, channel, target);
        }
        Ok(Seq(inner.read_cursor(user, channel)))
    }

    fn advance_read_batch(&self, updates: &[ReadUpdate]) -> Result<Vec<(Seq, Seq)>, StoreError> {
        let mut inner = self.inner();
        let before: Vec<u64> = updates
            .iter()
            .map(|(u, c, _)| inner.read_cursor(u, c))
            .collect();
        for (user, channel, seq) in updates {
            let target = seq.0.min(inner.head(channel));
            if target > inner.read_cursor(user, channel) {
                inner.raise_read(user, channel, target);
            }
        }
        Ok(updates
            .iter()
            .zip(before)
            .map(|((u, c, _), b)| (Seq(b), Seq(inner.read_cursor(u, c))))
            .collect())
    }

    fn read_cursor(&self, user: &str, channel: &str) -> Result<Seq, StoreError> {
        Ok(Seq(self.inner().read_cursor(user, channel)))
    }

    fn read_cursors(&self, user: &str) -> Result<Vec<(String, Seq)>, StoreError> {
        Ok(self
            .inner()
            .reads
            .get(user)
            .map(|m| {
                m.iter()
                    .filter(|(_, &s)| s > 0)
                    .map(|(c, &s)| (c.clone(), Seq(s)))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn advance_delivered_batch(&self, updates: &[DeliveredUpdate]) -> Result<(), StoreError> {
        let mut inner = self.inner();
        for (user, device, channel, seq) in updates {
            let target = seq.0.min(inner.head(channel));
            if target == 0 {
                continue;
            }
            let cur = inner
                .delivered
                .entry((user.clone(), device.clone(), channel.clone()))
                .or_insert(0);
            *cur = (*cur).max(target);
        }
        Ok(())
    }

    fn delivered_cursor(&self, user: &str, device: &str, channel: &str) -> Result<Seq, StoreError> {
        let key = (user.to_owned(), device.to_owned(), channel.to_owned());
        Ok(Seq(self.inner().delivered.get(&key).copied().unwrap_or(0)))
    }
}
