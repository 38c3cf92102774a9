//! [`Cluster`] on FoundationDB: node records, subscriptions and inboxes
//! under the namespace (`layout.rs`: `n`, `ns`, `nx`, `ni`, `nw`). The
//! notices themselves are written by `append` (`mod.rs`), in the commit's
//! own transaction. Presence (`pd`, `pn`) and typing write events into the
//! same inboxes, and so do read pushes (targeted through `pd`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use foundationdb::options::MutationType;
use foundationdb::tuple::Versionstamp;
use foundationdb::{RangeOption, Transaction};
use futures_lite::StreamExt as _;

use super::layout::{read_u64, u64_value};
use super::{check_name, corrupt, fdb_error, Abort, FdbStore};
use crate::cluster::{
    decode_entry, encode_events, encode_notices, Cluster, Event, InboxEntry, NodeInfo, Notice,
    ReadPush,
};
use crate::{Seq, StoreError};

/// Users of a removed node swept per transaction (each a range read, two
/// clears and maybe an event per other node: well inside FDB's 5 s and
/// 10 MB per transaction).
const SWEEP_USERS: usize = 500;

/// Members looked up per read-push transaction (one snapshot range read
/// each).
const READ_PUSH_USERS: usize = 500;

/// Members named per read event at most (a big group's event is split).
const READ_EVENT_MEMBERS: usize = 500;

/// The largest events value one inbox entry holds, in bytes.
const EVENT_ENTRY_BYTES: usize = 60_000;

/// A random, non-zero id for one life of a node (one `register`).
fn new_life() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() | 1
}

fn node_value(expires_ms: u64, url: &str) -> Vec<u8> {
    let mut v = u64_value(expires_ms).to_vec();
    v.extend_from_slice(url.as_bytes());
    v
}

fn decode_node(id: String, v: &[u8]) -> Result<NodeInfo, StoreError> {
    let expires_ms = v
        .get(..8)
        .and_then(read_u64)
        .ok_or_else(|| corrupt("node value"))?;
    let url = String::from_utf8(v[8..].to_vec()).map_err(|_| corrupt("node url"))?;
    Ok(NodeInfo {
        id,
        url,
        expires_ms,
    })
}

impl FdbStore {
    /// Clears node `id`: its record, subscriptions (both indexes), inbox and
    /// bell.
    async fn clear_node(&self, trx: &Transaction, id: &str) -> Result<(), Abort> {
        let subs = self.layout.subscriptions_of(id);
        for (channel, _) in Self::names_in(trx, &subs).await? {
            trx.clear(&self.layout.subscribed(&channel).pack(&(id,)));
        }
        let (lo, hi) = subs.range();
        trx.clear_range(&lo, &hi);
        // Its presence goes in pages (`sweep_page`): a node with many users
        // is more than one transaction's worth.
        trx.set(&self.layout.presence_sweep(id), b"");
        let (lo, hi) = self.layout.inbox(id).range();
        trx.clear_range(&lo, &hi);
        trx.clear(&self.layout.node(id));
        trx.clear(&self.layout.node_life(id));
        // Bumped, not cleared: a watch on it (a wait of this node) wakes.
        trx.atomic_op(
            &self.layout.inbox_bell(id),
            &u64_value(1),
            MutationType::Add,
        );
        Ok(())
    }

    /// Inside an append: the nodes other than this handle's own subscribed
    /// to `channel` get `notice` (collected per node in `to`).
    pub(super) async fn collect_notices(
        &self,
        trx: &Transaction,
        notice: Notice,
        to: &mut BTreeMap<String, Vec<Notice>>,
    ) -> Result<(), Abort> {
        let space = self.layout.subscribed(&notice.channel);
        let own = self.local_node();
        // A conflicting read: a subscription committed between this
        // transaction's read version and its commit makes it rerun.
        for (node, _) in Self::names_in(trx, &space).await? {
            if own.as_deref() != Some(node.as_str()) {
                to.entry(node).or_default().push(notice.clone());
            }
        }
        Ok(())
    }

    /// Inside an append: one versionstamped inbox entry per node, and its
    /// bell rung.
    pub(super) fn write_notices(&self, trx: &Transaction, to: &BTreeMap<String, Vec<Notice>>) {
        for (node, notices) in to {
            let key = self
                .layout
                .inbox(node)
                .pack_with_versionstamp(&(Versionstamp::incomplete(0),));
            trx.atomic_op(
                &key,
                &encode_notices(notices),
                MutationType::SetVersionstampedKey,
            );
            trx.atomic_op(
                &self.layout.inbox_bell(node),
                &u64_value(1),
                MutationType::Add,
            );
        }
    }

    /// Removes up to `max` users of removed node `id`'s presence (while
    /// its sweep marker is there): every user it leaves on no node gets an
    /// `offline` event in every other node's inbox. Clears the marker with
    /// the last page; returns whether users remain.
    async fn sweep_page(&self, trx: &Transaction, id: &str, max: usize) -> Result<bool, Abort> {
        let marker = self.layout.presence_sweep(id);
        // Conflicting: a new life of the node clearing the marker stops a
        // sweep that would otherwise remove its fresh presence.
        if trx.get(&marker, false).await?.is_none() {
            return Ok(false);
        }
        let present = self.layout.present_on(id);
        let mut users: Vec<String> =
            Self::names_limited(trx, &present, Some(max.max(1) + 1), false)
                .await?
                .into_iter()
                .map(|(user, _)| user)
                .collect();
        let more = users.len() > max.max(1);
        users.truncate(max.max(1));
        let mut gone = Vec::new();
        for user in users {
            let space = self.layout.presence_of(&user);
            // Conflicting: a node coming online for the user meanwhile
            // makes this rerun (and then it is not offline).
            let nodes = Self::names_in(trx, &space).await?;
            trx.clear(&space.pack(&(id,)));
            trx.clear(&present.pack(&(user.as_str(),)));
            if nodes.iter().all(|(n, _)| n == id) {
                gone.push(Event::Presence {
                    user,
                    online: false,
                });
            }
        }
        if !more {
            trx.clear(&marker);
        }
        if !gone.is_empty() {
            let to = self.other_nodes(trx, Some(id)).await?;
            self.write_events(trx, to.into_iter().map(|n| (n, gone.clone())));
        }
        Ok(more)
    }

    /// Sweeps removed node `id`'s presence to the end, page by page.
    fn sweep_node(&self, id: &str) -> Result<(), StoreError> {
        while self.run("sweep presence", |trx| {
            Box::pin(async move { self.sweep_page(&trx, id, SWEEP_USERS).await })
        })? {}
        Ok(())
    }

    /// Every registered node except `except` (a snapshot read: a node that
    /// registers meanwhile has no sessions yet that could miss the event).
    async fn other_nodes(
        &self,
        trx: &Transaction,
        except: Option<&str>,
    ) -> Result<Vec<String>, Abort> {
        let nodes = Self::names_limited(trx, &self.layout.nodes(), None, true).await?;
        Ok(nodes
            .into_iter()
            .map(|(node, _)| node)
            .filter(|node| except != Some(node.as_str()))
            .collect())
    }

    /// Events into each node's inbox: versionstamped entries of at most
    /// [`EVENT_ENTRY_BYTES`] each (FDB refuses values over 100,000 bytes),
    /// and its bell rung.
    fn write_events(&self, trx: &Transaction, to: impl IntoIterator<Item = (String, Vec<Event>)>) {
        for (node, events) in to {
            let mut chunks: Vec<Vec<Event>> = vec![Vec::new()];
            let mut bytes = 0;
            for e in events {
                let size = match &e {
                    Event::Presence { user, .. } => user.len() + 3,
                    Event::Typing { channel, user } => channel.len() + user.len() + 5,
                    Event::Read(r) => {
                        r.channel.len()
                            + r.user.len()
                            + 15
                            + r.to.iter().map(|u| u.len() + 2).sum::<usize>()
                    }
                };
                if bytes + size > EVENT_ENTRY_BYTES && !chunks.last().is_some_and(Vec::is_empty) {
                    chunks.push(Vec::new());
                    bytes = 0;
                }
                bytes += size;
                if let Some(c) = chunks.last_mut() {
                    c.push(e);
                }
            }
            for (i, chunk) in chunks.iter().enumerate() {
                // User versions from 1: an append's notice uses 0.
                let version = u16::try_from(i + 1).unwrap_or(u16::MAX);
                let key = self
                    .layout
                    .inbox(&node)
                    .pack_with_versionstamp(&(Versionstamp::incomplete(version),));
                trx.atomic_op(
                    &key,
                    &encode_events(chunk),
                    MutationType::SetVersionstampedKey,
                );
            }
            trx.atomic_op(
                &self.layout.inbox_bell(&node),
                &u64_value(1),
                MutationType::Add,
            );
        }
    }

    /// Whether node `id`'s record belongs to this handle's life: always
    /// when `id` is not the node this handle registered as (an operator
    /// removing another node), else when the stored life id is this
    /// handle's (a conflicting read: a racing register reruns this).
    async fn holds_life(&self, trx: &Transaction, id: &str) -> Result<bool, Abort> {
        if self.local_node().as_deref() != Some(id) {
            return Ok(true);
        }
        let mine = self.local_life.load(Ordering::Acquire);
        let stored = trx.get(&self.layout.node_life(id), false).await?;
        Ok(stored.as_deref().and_then(read_u64) == Some(mine))
    }

    fn local_node(&self) -> Option<String> {
        self.local_node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Cluster for FdbStore {
    fn register(&self, node: &NodeInfo) -> Result<Option<NodeInfo>, StoreError> {
        check_name("node", &node.id)?;
        let life = new_life();
        // A previous life's record is read (returned: the caller tells a
        // crashed life from a live clash by its lease), then its
        // subscriptions, inbox and presence go (its presence in pages),
        // then the record and this life's id are written.
        let previous = self.run("register node: clear", |trx| {
            Box::pin(async move {
                let previous = match trx.get(&self.layout.node(&node.id), false).await? {
                    Some(v) => Some(decode_node(node.id.clone(), &v)?),
                    None => None,
                };
                self.clear_node(&trx, &node.id).await?;
                Ok(previous)
            })
        })?;
        self.sweep_node(&node.id)?;
        self.run("register node", |trx| {
            Box::pin(async move {
                trx.set(
                    &self.layout.node(&node.id),
                    &node_value(node.expires_ms, &node.url),
                );
                trx.set(&self.layout.node_life(&node.id), &u64_value(life));
                Ok(())
            })
        })?;
        *self
            .local_node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(node.id.clone());
        self.local_life.store(life, Ordering::Release);
        Ok(previous)
    }

    fn heartbeat(&self, id: &str, expires_ms: u64) -> Result<(), StoreError> {
        check_name("node", id)?;
        self.run("node heartbeat", |trx| {
            Box::pin(async move {
                let key = self.layout.node(id);
                let Some(v) = trx.get(&key, false).await? else {
                    return Err(
                        StoreError::NotFound(format!("node {id:?} is not registered")).into(),
                    );
                };
                if !self.holds_life(&trx, id).await? {
                    return Err(StoreError::NotFound(format!(
                        "node {id:?} was registered again by another process"
                    ))
                    .into());
                }
                let old = decode_node(id.to_owned(), &v)?;
                trx.set(&key, &node_value(expires_ms, &old.url));
                Ok(())
            })
        })
    }

    fn deregister(&self, id: &str) -> Result<(), StoreError> {
        check_name("node", id)?;
        let removed = self.run("deregister node", |trx| {
            Box::pin(async move {
                // A life that was fenced by a newer one leaves the newer
                // one's record alone.
                if !self.holds_life(&trx, id).await? {
                    return Ok(false);
                }
                self.clear_node(&trx, id).await?;
                Ok(true)
            })
        })?;
        if removed {
            self.sweep_node(id)?;
        }
        Ok(())
    }

    fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let space = self.layout.nodes();
        self.run("nodes", |trx| {
            let space = space.clone();
            Box::pin(async move {
                Self::names_limited(&trx, &space, None, true)
                    .await?
                    .into_iter()
                    .map(|(id, v)| decode_node(id, &v).map_err(Abort::from))
                    .collect()
            })
        })
    }

    fn reap(&self, id: &str, expires_ms: u64) -> Result<bool, StoreError> {
        check_name("node", id)?;
        let reaped = self.run("reap node", |trx| {
            Box::pin(async move {
                let Some(v) = trx.get(&self.layout.node(id), false).await? else {
                    return Ok(false);
                };
                if decode_node(id.to_owned(), &v)?.expires_ms != expires_ms {
                    return Ok(false);
                }
                self.clear_node(&trx, id).await?;
                Ok(true)
            })
        })?;
        if reaped {
            self.sweep_node(id)?;
        }
        Ok(reaped)
    }

    fn subscribe(&self, id: &str, channel: &str, token: u64) -> Result<Seq, StoreError> {
        check_name("node", id)?;
        check_name("channel", channel)?;
        self.run("subscribe", |trx| {
            Box::pin(async move {
                // A life fenced by a newer one of its id subscribes nothing
                // in the newer one's name (it would never be unsubscribed).
                if !self.holds_life(&trx, id).await? {
                    return Err(StoreError::NotFound(format!(
                        "node {id:?} was registered again by another process"
                    ))
                    .into());
                }
                trx.set(
                    &self.layout.subscribed(channel).pack(&(id,)),
                    &u64_value(token),
                );
                trx.set(&self.layout.subscriptions_of(id).pack(&(channel,)), b"");
                // Conflicting: a commit landing between this read and this
                // write conflicts, so the head and the subscription agree.
                self.head_in(&trx, channel, false).await.map(Seq)
            })
        })
    }

    fn unsubscribe(&self, id: &str, channel: &str, token: u64) -> Result<(), StoreError> {
        check_name("node", id)?;
        check_name("channel", channel)?;
        self.run("unsubscribe", |trx| {
            Box::pin(async move {
                let key = self.layout.subscribed(channel).pack(&(id,));
                if trx.get(&key, false).await?.as_deref().and_then(read_u64) == Some(token) {
                    trx.clear(&key);
                    trx.clear(&self.layout.subscriptions_of(id).pack(&(channel,)));
                }
                Ok(())
            })
        })
    }

    fn subscribers(&self, channel: &str) -> Result<Vec<String>, StoreError> {
        check_name("channel", channel)?;
        let space = self.layout.subscribed(channel);
        self.run("subscribers", |trx| {
            let space = space.clone();
            Box::pin(async move {
                Ok(Self::names_in(&trx, &space)
                    .await?
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect())
            })
        })
    }

    fn inbox(&self, id: &str, max: usize) -> Result<Vec<InboxEntry>, StoreError> {
        check_name("node", id)?;
        let (lo, hi) = self.layout.inbox(id).range();
        self.run("inbox", |trx| {
            let (lo, hi) = (lo.clone(), hi.clone());
            Box::pin(async move {
                let mut opt = RangeOption::from((lo, hi));
                opt.limit = Some(max.max(1));
                let mut out = Vec::new();
                let mut stream = trx.get_ranges_keyvalues(opt, true);
                while let Some(kv) = stream.next().await {
                    let kv = kv?;
                    let (notices, events) =
                        decode_entry(kv.value()).ok_or_else(|| corrupt("inbox entry"))?;
                    out.push(InboxEntry {
                        key: kv.key().to_vec(),
                        notices,
                        events,
                    });
                }
                Ok(out)
            })
        })
    }

    fn ack_inbox(&self, id: &str, through: &[u8]) -> Result<(), StoreError> {
        check_name("node", id)?;
        let (lo, _) = self.layout.inbox(id).range();
        let mut end = through.to_vec();
        end.push(0);
        self.run("ack inbox", |trx| {
            let (lo, end) = (lo.clone(), end.clone());
            Box::pin(async move {
                // A life fenced by a newer one of its id reads the inbox
                // until it exits but clears nothing: the entries are the
                // newer life's to hand out.
                if !self.holds_life(&trx, id).await? {
                    return Err(StoreError::NotFound(format!(
                        "node {id:?} was registered again by another process"
                    ))
                    .into());
                }
                trx.clear_range(&lo, &end);
                Ok(())
            })
        })
    }

    fn wait_inbox(&self, id: &str, timeout_ms: u64) -> Result<(), StoreError> {
        check_name("node", id)?;
        let bell = self.layout.inbox_bell(id);
        let (lo, hi) = self.layout.inbox(id).range();
        // The watch is set by a transaction that must commit first; it only
        // sees changes after that transaction's read version, so an entry
        // already there answers at once.
        let watch = self.run("watch inbox", |trx| {
            let (bell, lo, hi) = (bell.clone(), lo.clone(), hi.clone());
            Box::pin(async move {
                let mut opt = RangeOption::from((lo, hi));
                opt.limit = Some(1);
                if !trx.get_range(&opt, 1, true).await?.is_empty() {
                    return Ok(None);
                }
                Ok(Some(trx.watch(&bell)))
            })
        })?;
        let Some(watch) = watch else {
            return Ok(());
        };
        match block_on_for(watch, Duration::from_millis(timeout_ms)) {
            Some(Err(e)) => Err(fdb_error("watch inbox", e)),
            _ => Ok(()),
        }
    }

    fn set_presence(&self, user: &str, online: bool) -> Result<bool, StoreError> {
        check_name("user", user)?;
        let Some(me) = self.local_node() else {
            return Ok(true);
        };
        let me = me.as_str();
        self.run("set presence", |trx| {
            Box::pin(async move {
                // Conflicting: a node removed meanwhile (reaped) writes no
                // presence its sweep would miss.
                if trx.get(&self.layout.node(me), false).await?.is_none() {
                    return Err(
                        StoreError::NotFound(format!("node {me:?} is not registered")).into(),
                    );
                }
                // Nor does a life fenced by a newer one of its id: the
                // newer life's sweep has run, so what it wrote now would
                // stay online until the newer life leaves.
                if !self.holds_life(&trx, me).await? {
                    return Err(StoreError::NotFound(format!(
                        "node {me:?} was registered again by another process"
                    ))
                    .into());
                }
                let space = self.layout.presence_of(user);
                // Conflicting: another node's transition for this user
                // racing this one makes one of them rerun and see the other.
                let nodes = Self::names_in(&trx, &space).await?;
                let was = !nodes.is_empty();
                let others = nodes.iter().any(|(n, _)| n != me);
                let (pd, pn) = (
                    space.pack(&(me,)),
                    self.layout.present_on(me).pack(&(user,)),
                );
                if online {
                    trx.set(&pd, b"");
                    trx.set(&pn, b"");
                } else {
                    trx.clear(&pd);
                    trx.clear(&pn);
                }
                let now = online || others;
                if was == now {
                    return Ok(false);
                }
                let event = Event::Presence {
                    user: user.to_owned(),
                    online,
                };
                let to = self.other_nodes(&trx, Some(me)).await?;
                self.write_events(&trx, to.into_iter().map(|n| (n, vec![event.clone()])));
                Ok(true)
            })
        })
    }

    fn sweep_removed(&self) -> Result<usize, StoreError> {
        let space = self.layout.presence_sweeps();
        let nodes: Vec<String> = self.run("presence sweeps", |trx| {
            let space = space.clone();
            Box::pin(async move {
                let sweeps = Self::names_limited(&trx, &space, None, true).await?;
                Ok(sweeps.into_iter().map(|(node, _)| node).collect())
            })
        })?;
        for node in &nodes {
            self.sweep_node(node)?;
        }
        Ok(nodes.len())
    }

    fn online(&self, users: &[String]) -> Result<Vec<String>, StoreError> {
        for u in users {
            check_name("user", u)?;
        }
        self.run("online", |trx| {
            Box::pin(async move {
                let mut out = Vec::new();
                for user in users {
                    let mut opt = RangeOption::from(self.layout.presence_of(user).range());
                    opt.limit = Some(1);
                    if !trx.get_range(&opt, 1, true).await?.is_empty() {
                        out.push(user.clone());
                    }
                }
                Ok(out)
            })
        })
    }

    fn typing(&self, channel: &str, user: &str) -> Result<(), StoreError> {
        check_name("channel", channel)?;
        check_name("user", user)?;
        let own = self.local_node();
        self.run("typing", |trx| {
            let own = own.clone();
            Box::pin(async move {
                let space = self.layout.subscribed(channel);
                let mut to = Vec::new();
                for (node, _) in Self::names_limited(&trx, &space, None, true).await? {
                    if own.as_deref() != Some(node.as_str()) {
                        let event = Event::Typing {
                            channel: channel.to_owned(),
                            user: user.to_owned(),
                        };
                        to.push((node, vec![event]));
                    }
                }
                self.write_events(&trx, to);
                Ok(())
            })
        })
    }

    fn reads(&self, reads: &[ReadPush]) -> Result<(), StoreError> {
        for r in reads {
            check_name("channel", &r.channel)?;
            check_name("user", &r.user)?;
            for u in &r.to {
                check_name("user", u)?;
            }
        }
        let own = self.local_node();
        let mut users: Vec<&str> = reads
            .iter()
            .flat_map(|r| r.to.iter().map(String::as_str))
            .collect();
        users.sort_unstable();
        users.dedup();
        for page in users.chunks(READ_PUSH_USERS) {
            let own = own.as_deref();
            self.run("read pushes", |trx| {
                Box::pin(async move { self.reads_page(&trx, reads, page, own).await })
            })?;
        }
        Ok(())
    }
}

impl FdbStore {
    /// One page of [`Cluster::reads`]: where `users` have devices (other
    /// than `own`), then per node one event per read naming those there.
    async fn reads_page(
        &self,
        trx: &Transaction,
        reads: &[ReadPush],
        users: &[&str],
        own: Option<&str>,
    ) -> Result<(), Abort> {
        let mut nodes_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for &user in users {
            let space = self.layout.presence_of(user);
            // A snapshot read: a device whose node records her presence
            // after this read is not told (ephemeral, like typing).
            let nodes: Vec<String> = Self::names_limited(trx, &space, None, true)
                .await?
                .into_iter()
                .map(|(node, _)| node)
                .filter(|node| own != Some(node.as_str()))
                .collect();
            if !nodes.is_empty() {
                nodes_of.insert(user, nodes);
            }
        }
        let mut to: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        for r in reads {
            let mut here: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for u in &r.to {
                for n in nodes_of.get(u.as_str()).into_iter().flatten() {
                    here.entry(n.as_str()).or_default().push(u.clone());
                }
            }
            for (node, members) in here {
                for chunk in members.chunks(READ_EVENT_MEMBERS) {
                    to.entry(node.to_owned())
                        .or_default()
                        .push(Event::Read(ReadPush {
                            channel: r.channel.clone(),
                            user: r.user.clone(),
                            seq: r.seq,
                            to: chunk.to_vec(),
                        }));
                }
            }
        }
        self.write_events(trx, to);
        Ok(())
    }
}

/// Runs `fut` on this thread until it is ready or `timeout` has passed
/// (then `None`, and `fut` is dropped: a watch is cancelled). The thread
/// parks between polls; the future's waker unparks it. The store runs no
/// executor of its own, and this needs no timer thread.
fn block_on_for<F: std::future::Future>(fut: F, timeout: Duration) -> Option<F::Output> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let end = Instant::now() + timeout;
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::park_timeout(left);
    }
}
