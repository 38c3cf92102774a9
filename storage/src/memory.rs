//! [`MemStore`]: the whole contract in memory, for unit tests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use crate::{
    AppendOutcome, ChannelAppend, ChannelOutcome, Health, NewMessage, Page, ReadLimit, ReadRange,
    Seq, Store, StoreError, StoredMessage,
};

/// An in-memory [`Store`]: every channel a `BTreeMap<seq, message>`, all
/// under one mutex.
///
/// **For unit tests only.** It implements the full contract (sequencing,
/// atomicity, idempotency, reads) and passes the [`crate::conformance`]
/// suite, but nothing survives the process: "durable" here means "in this
/// process's memory". It is always [`Health::Healthy`]; wrap it in a
/// [`crate::FaultyStore`] to test failures.
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

/// (from, device, client_msg_id): the dedup key within a channel.
type DedupKey = (String, String, String);

#[derive(Debug, Default)]
struct Channel {
    messages: BTreeMap<u64, StoredMessage>,
    dedup: HashMap<DedupKey, u64>,
}

impl Channel {
    fn head(&self) -> u64 {
        self.messages.last_key_value().map_or(0, |(&s, _)| s)
    }
}

#[derive(Debug, Default)]
struct Inner {
    channels: HashMap<String, Channel>,
}

impl MemStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Appends validate before they mutate, and reads do not mutate: a
        // panic under the lock cannot leave a half-applied append.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether `m` repeats `orig`'s content (kind, text, target, media).
fn same_content(orig: &StoredMessage, m: &NewMessage) -> bool {
    orig.kind == m.kind && orig.text == m.text && orig.target == m.target && orig.media == m.media
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
            for m in &ca.messages {
                let key = (m.from.clone(), m.device.clone(), m.client_msg_id.clone());
                if let Some(&seq) = ch.dedup.get(&key) {
                    let orig = ch.messages.get(&seq);
                    outcomes.push(match orig {
                        Some(orig) if same_content(orig, m) => AppendOutcome::Duplicate {
                            seq: Seq(seq),
                            ts: orig.ts,
                        },
                        _ => AppendOutcome::Conflict { seq: Seq(seq) },
                    });
                    continue;
                }
                let seq = ch.head() + 1;
                ch.messages
                    .insert(seq, StoredMessage::from_new(Seq(seq), m));
                ch.dedup.insert(key, seq);
                outcomes.push(AppendOutcome::Stored {
                    seq: Seq(seq),
                    ts: m.ts,
                });
            }
            results.push(ChannelOutcome {
                outcomes,
                head: Seq(ch.head()),
            });
        }
        Ok(results)
    }

    fn head(&self, channel: &str) -> Result<Seq, StoreError> {
        Ok(Seq(self
            .inner()
            .channels
            .get(channel)
            .map_or(0, Channel::head)))
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

    fn health(&self) -> Health {
        Health::Healthy
    }
}
