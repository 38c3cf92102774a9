//! The `Cluster` trait: what gateway nodes sharing one store know of each
//! other — who is alive, which node has subscribers of which channel, and
//! each node's inbox of commits made elsewhere.
//!
//! Only a store that several gateway processes can share implements it
//! (FoundationDB: `FdbStore`); [`Store::cluster`](crate::Store::cluster)
//! returns it, `None` for the single-node backends. The store is the only
//! thing nodes share: no broker, no consensus of their own.
//!
//! # Contract (checked by [`conformance`])
//!
//! **Nodes and leases.** A node registers with [`Cluster::register`]
//! (its id, its advertised WebSocket URL, `expires_ms`) and renews the lease
//! with [`Cluster::heartbeat`] before it expires. Leases are **wall-clock
//! timestamps** (ms since the Unix epoch) written by the node and compared by
//! each reader with its own clock: the cluster assumes the nodes' clocks
//! agree within a skew much smaller than the lease (NTP: milliseconds), and a
//! lease is late by at most that skew. [`Cluster::nodes`] lists every
//! registered node with its lease, expired or not: callers filter by their
//! `now`. A node whose lease expired is removed, with its subscriptions and
//! inbox, by [`Cluster::reap`] — which any node may call; it does nothing when
//! the lease was renewed meanwhile (the check and the removal are one
//! transaction), so a slow but live node is never reaped by a stale view.
//! A node that finds its record gone at its next heartbeat
//! ([`StoreError::NotFound`]) was reaped: it missed notices and must not
//! keep serving live subscribers as if it had not.
//!
//! **Subscriptions.** [`Cluster::subscribe`] records that a node has local
//! subscribers of a channel and returns the channel's head *in the same
//! transaction*: every commit after that head leaves a notice in the node's
//! inbox, every commit up to it is in the head (a commit racing the
//! subscription conflicts with it and reruns). Each subscription carries the
//! caller's token; [`Cluster::unsubscribe`] removes it only when the token is
//! still the one stored, so a late unsubscribe never removes a newer
//! subscription of the same node.
//!
//! **Notices.** Every `Store::append` that stores messages writes, in its
//! own transaction, one [`InboxEntry`] into the inbox of every node
//! subscribed to any of its channels *except the node this store handle
//! registered as* (that node fans its own commits out itself): which
//! channels moved and their first and last new seq. Entries of one inbox
//! are in commit order (versionstamped keys). They stay until the node
//! acknowledges them ([`Cluster::ack_inbox`]), so a node that fails between
//! reading and handing them on reads them again.
//!
//! **Membership notices.** Every `add_member` / `remove_member` that
//! changes a group writes, in its own transaction, one entry holding a
//! [`Notice::members_changed`] of the group into the inbox of every node
//! subscribed to it except this handle's own — so a node with members of
//! the group connected learns of a removal made elsewhere and reloads. Its
//! cost is one small key per other subscribed node per change; nodes with
//! no subscribers of the group get nothing (they load the members afresh
//! when the group is next used).
//!
//! **Presence.** A user's devices are counted per node by the node itself;
//! only node-level transitions reach the store: [`Cluster::set_presence`]
//! records that the user now has (or no longer has) devices on the node
//! this handle registered as (refused with `NotFound` once that node was
//! removed), and answers whether that changed the user's
//! **cluster-wide** state (first node online, last node offline). Two nodes
//! racing conflict, so exactly one of them sees each cluster-wide change.
//! A change writes, in the same transaction, an [`Event::Presence`] into the
//! inbox of every *other* registered node. Removing a node (deregister,
//! reap, a new life's registration) removes its presence too, and writes
//! `offline` events for every user it leaves on no node — in pages of
//! users after the removal's own transaction (a node may have more users
//! than one transaction holds), so a caller that fails midway leaves the
//! rest to [`Cluster::sweep_removed`].
//! [`Cluster::online`] answers which of some users are online on any node.
//!
//! **Typing.** [`Cluster::typing`] writes an [`Event::Typing`] into the
//! inbox of every other node subscribed to the channel: ephemeral (it goes
//! when acknowledged, never into history), one transaction per event.
//!
//! **Read pushes.** [`Cluster::reads`] writes, for read cursors that moved
//! in DMs and groups, an [`Event::Read`] into the inbox of every other node
//! where some of the members to tell have devices (their presence records,
//! snapshot reads), each event naming only the members on that node:
//! ephemeral like typing, one transaction per page of members.
//!
//! **Waiting.** [`Cluster::wait_inbox`] blocks until the inbox may have
//! changed or the timeout passed (a watch: it may return early; callers read
//! the inbox either way).

use crate::{Seq, StoreError};

/// A registered gateway node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's id (unique in the cluster; stable across restarts of a
    /// node that keeps its data directory).
    pub id: String,
    /// Its advertised WebSocket URL (`ws://host:port/ws`).
    pub url: String,
    /// Its lease's end: wall-clock ms since the Unix epoch.
    pub expires_ms: u64,
}

/// One channel's new messages, committed by another node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The channel.
    pub channel: String,
    /// The first seq the commit stored.
    pub first: Seq,
    /// The last seq it stored.
    pub last: Seq,
}

impl Notice {
    /// The notice of a membership change of group `channel` (no messages:
    /// `first` and `last` are both [`Seq::ZERO`], which no commit names).
    #[must_use]
    pub fn members_changed(channel: &str) -> Notice {
        Notice {
            channel: channel.to_owned(),
            first: Seq::ZERO,
            last: Seq::ZERO,
        }
    }

    /// Whether this is a [`Notice::members_changed`] rather than new
    /// messages.
    #[must_use]
    pub fn is_members_changed(&self) -> bool {
        self.last == Seq::ZERO
    }
}

/// An ephemeral event from another node: nothing in history names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `user`'s cluster-wide presence changed: online on a first node, or
    /// offline on the last (after that node's debounce, or its removal).
    Presence {
        /// The user.
        user: String,
        /// Online (true) or offline.
        online: bool,
    },
    /// `user` is typing in `channel` (rate-limited by the sending node).
    Typing {
        /// The channel.
        channel: String,
        /// Who types.
        user: String,
    },
    /// A member's read cursor moved in a DM or group: push `read` to the
    /// connections of `to` (members with devices on the receiving node).
    Read(ReadPush),
}

/// A read cursor that moved in a DM or group, and whom to tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadPush {
    /// The channel.
    pub channel: String,
    /// Whose cursor moved.
    pub user: String,
    /// The cursor now.
    pub seq: Seq,
    /// The members to tell (given to [`Cluster::reads`]: every other
    /// member; in an inbox: those with devices on that node).
    pub to: Vec<String>,
}

/// One entry in a node's inbox: one commit's notices, or events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxEntry {
    /// Where the entry sits (opaque; pass it to [`Cluster::ack_inbox`]).
    pub key: Vec<u8>,
    /// The channels of the commit this node subscribes to.
    pub notices: Vec<Notice>,
    /// Presence, typing and read events (an entry holds notices or events).
    pub events: Vec<Event>,
}

/// What nodes sharing one store know of each other; see the module docs.
///
/// Every method may block on network I/O (callers run them off the shards'
/// executors, as for [`Store`](crate::Store)).
pub trait Cluster: Send + Sync {
    /// Registers `node` as a fresh life of that node: writes its record,
    /// clears any subscriptions and inbox a previous life left, and makes
    /// `node.id` the node this store handle writes commits as (its own
    /// commits leave it no notices). Returns the previous life's record, if
    /// one was there: with its lease still running it is either a process
    /// that died moments ago or **another process with the same id** — the
    /// newer life wins: the older one's heartbeat fails from now on
    /// (`NotFound`) and its `deregister` leaves the new record alone.
    fn register(&self, node: &NodeInfo) -> Result<Option<NodeInfo>, StoreError>;

    /// Renews the lease of the registered node `id` to `expires_ms`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the record is gone (the node was
    /// reaped or deregistered) or belongs to a newer life of the id (another
    /// handle registered it since).
    fn heartbeat(&self, id: &str, expires_ms: u64) -> Result<(), StoreError>;

    /// Removes node `id`, its subscriptions and its inbox (a clean stop);
    /// nothing when `id` is this handle's node and a newer life holds it.
    fn deregister(&self, id: &str) -> Result<(), StoreError>;

    /// Every registered node, sorted by id, with its lease (expired or not).
    fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError>;

    /// Removes node `id` as [`Cluster::deregister`] does, but only while its
    /// lease is still `expires_ms` (what the caller saw expire). Returns
    /// whether it removed it.
    fn reap(&self, id: &str, expires_ms: u64) -> Result<bool, StoreError>;

    /// Records that node `id` has subscribers of `channel` (with `token`);
    /// returns the channel's head read in the same transaction.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when `id` is this handle's node and a newer
    /// life holds it: nothing is written.
    fn subscribe(&self, id: &str, channel: &str, token: u64) -> Result<Seq, StoreError>;

    /// Removes node `id`'s subscription to `channel` if its token is still
    /// `token`.
    fn unsubscribe(&self, id: &str, channel: &str, token: u64) -> Result<(), StoreError>;

    /// The nodes subscribed to `channel`, sorted.
    fn subscribers(&self, channel: &str) -> Result<Vec<String>, StoreError>;

    /// Up to `max` of node `id`'s oldest inbox entries, in commit order.
    fn inbox(&self, id: &str, max: usize) -> Result<Vec<InboxEntry>, StoreError>;

    /// Removes node `id`'s inbox entries up to and including `through`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when `id` is this handle's node and a newer
    /// life holds it (see [`Cluster::register`]): nothing is removed.
    fn ack_inbox(&self, id: &str, through: &[u8]) -> Result<(), StoreError>;

    /// Blocks until node `id`'s inbox may have changed, or `timeout_ms`.
    fn wait_inbox(&self, id: &str, timeout_ms: u64) -> Result<(), StoreError>;

    /// Records that `user` now has devices (`online`) or no longer has any
    /// on the node this handle registered as; returns whether the user's
    /// cluster-wide state changed (then every other registered node got an
    /// [`Event::Presence`] in the same transaction). Idempotent: repeating a
    /// transition changes nothing and returns false. A handle that
    /// registered no node is alone: every call returns true and writes
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when this handle's node was removed (its
    /// presence was swept; it must not write more) or a newer life of its
    /// id holds it.
    fn set_presence(&self, user: &str, online: bool) -> Result<bool, StoreError>;

    /// Finishes the presence sweeps of removed nodes that a failure left
    /// unfinished (removal sweeps in pages, after the removal's own
    /// transaction); returns how many nodes it swept. Any node may call it
    /// (the heartbeat does).
    fn sweep_removed(&self) -> Result<usize, StoreError>;

    /// Which of `users` have devices on some node (in the order asked).
    fn online(&self, users: &[String]) -> Result<Vec<String>, StoreError>;

    /// Writes an [`Event::Typing`] into the inbox of every node subscribed
    /// to `channel` except this handle's own.
    fn typing(&self, channel: &str, user: &str) -> Result<(), StoreError>;

    /// Writes, for each of `reads` (`to`: every member to tell), an
    /// [`Event::Read`] into the inbox of every node other than this
    /// handle's own where some of `to` have devices (presence records),
    /// naming only those members. Ephemeral: a member whose node recorded
    /// her presence after the read is not told.
    fn reads(&self, reads: &[ReadPush]) -> Result<(), StoreError>;
}

/// First two bytes of an inbox value holding events: a notices value starts
/// with a channel's u16 LE length, and no channel is 65,535 bytes long.
const EVENTS_TAG: [u8; 2] = [0xff, 0xff];

/// Encodes events for one inbox entry: [`EVENTS_TAG`], then per event a
/// kind byte (1 online, 2 offline, 3 typing, 4 read) and u16 LE
/// length-prefixed strings (the user; for typing the channel, then the
/// user; for read the channel, the user, u64 LE seq, u16 LE count and the
/// members to tell).
#[must_use]
pub fn encode_events(events: &[Event]) -> Vec<u8> {
    fn put(v: &mut Vec<u8>, s: &str) {
        let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
    }
    let mut v = EVENTS_TAG.to_vec();
    for e in events {
        match e {
            Event::Presence { user, online } => {
                v.push(if *online { 1 } else { 2 });
                put(&mut v, user);
            }
            Event::Typing { channel, user } => {
                v.push(3);
                put(&mut v, channel);
                put(&mut v, user);
            }
            Event::Read(r) => {
                v.push(4);
                put(&mut v, &r.channel);
                put(&mut v, &r.user);
                v.extend_from_slice(&r.seq.0.to_le_bytes());
                let n = u16::try_from(r.to.len()).unwrap_or(u16::MAX);
                v.extend_from_slice(&n.to_le_bytes());
                for u in r.to.iter().take(usize::from(n)) {
                    put(&mut v, u);
                }
            }
        }
    }
    v
}

/// Decodes an inbox value: notices ([`encode_notices`]) or events
/// ([`encode_events`]); `None` when malformed.
#[must_use]
pub fn decode_entry(v: &[u8]) -> Option<(Vec<Notice>, Vec<Event>)> {
    let Some(mut v) = v.strip_prefix(&EVENTS_TAG[..]) else {
        return decode_notices(v).map(|n| (n, Vec::new()));
    };
    fn take(v: &mut &[u8]) -> Option<String> {
        let len = usize::from(u16::from_le_bytes(v.get(..2)?.try_into().ok()?));
        let s = std::str::from_utf8(v.get(2..2 + len)?).ok()?.to_owned();
        *v = &v[2 + len..];
        Some(s)
    }
    let mut out = Vec::new();
    while let Some((&kind, rest)) = v.split_first() {
        v = rest;
        out.push(match kind {
            1 | 2 => Event::Presence {
                user: take(&mut v)?,
                online: kind == 1,
            },
            3 => {
                let channel = take(&mut v)?;
                Event::Typing {
                    channel,
                    user: take(&mut v)?,
                }
            }
            4 => {
                let channel = take(&mut v)?;
                let user = take(&mut v)?;
                let seq = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
                let n = u16::from_le_bytes(v.get(8..10)?.try_into().ok()?);
                v = &v[10..];
                let mut to = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    to.push(take(&mut v)?);
                }
                Event::Read(ReadPush {
                    channel,
                    user,
                    seq: Seq(seq),
                    to,
                })
            }
            _ => return None,
        });
    }
    Some((Vec::new(), out))
}

/// Encodes the notices of one inbox entry: per notice, u16 LE channel
/// length, the channel, u64 LE first, u64 LE last.
#[must_use]
pub fn encode_notices(notices: &[Notice]) -> Vec<u8> {
    let mut v = Vec::with_capacity(notices.iter().map(|n| n.channel.len() + 18).sum());
    for n in notices {
        let len = u16::try_from(n.channel.len()).unwrap_or(u16::MAX);
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(&n.channel.as_bytes()[..usize::from(len)]);
        v.extend_from_slice(&n.first.0.to_le_bytes());
        v.extend_from_slice(&n.last.0.to_le_bytes());
    }
    v
}

/// Decodes [`encode_notices`]; `None` when malformed.
#[must_use]
pub fn decode_notices(mut v: &[u8]) -> Option<Vec<Notice>> {
    let mut out = Vec::new();
    let u64_at = |b: &[u8]| <[u8; 8]>::try_from(b).ok().map(u64::from_le_bytes);
    while !v.is_empty() {
        let len = usize::from(u16::from_le_bytes(v.get(..2)?.try_into().ok()?));
        let channel = std::str::from_utf8(v.get(2..2 + len)?).ok()?.to_owned();
        let first = u64_at(v.get(2 + len..10 + len)?)?;
        let last = u64_at(v.get(10 + len..18 + len)?)?;
        out.push(Notice {
            channel,
            first: Seq(first),
            last: Seq(last),
        });
        v = &v[18 + len..];
    }
    Some(out)
}

/// The [`Cluster`] contract as executable checks. Each takes a factory of
/// handles on **one fresh shared database** (each call a new handle, as a
/// new gateway process would open; handles share the data) and panics with
/// what broke. Run them with [`conformance::run_all`].
pub mod conformance {
    use super::{Cluster, NodeInfo};
    use crate::{ChannelAppend, MessageKind, NewMessage, Seq, Store};

    /// What the checks need of a backend handle.
    pub trait Handle: Store + Cluster {}
    impl<T: Store + Cluster> Handle for T {}

    fn node(id: &str, expires_ms: u64) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            url: format!("ws://{id}.test/ws"),
            expires_ms,
        }
    }

    fn send<S: Store + ?Sized>(s: &S, channel: &str, id: &str) -> Seq {
        let out = s
            .append(&[ChannelAppend {
                channel: channel.into(),
                messages: vec![NewMessage {
                    from: "u1".into(),
                    device: "d1".into(),
                    client_msg_id: id.into(),
                    kind: MessageKind::Text,
                    text: "hi".into(),
                    target: None,
                    media: None,
                    ts: 1,
                }],
            }])
            .expect("append");
        out[0].head
    }

    /// Registered nodes are listed with their leases; a heartbeat moves the
    /// lease; a deregistered node is gone and its heartbeat is `NotFound`.
    pub fn nodes_register_renew_and_deregister<H: Handle>(make: &dyn Fn() -> H) {
        let (a, b) = (make(), make());
        a.register(&node("a", 100)).expect("register a");
        b.register(&node("b", 200)).expect("register b");
        assert_eq!(
            a.nodes().expect("nodes"),
            vec![node("a", 100), node("b", 200)]
        );
        b.heartbeat("b", 300).expect("heartbeat");
        assert_eq!(a.nodes().expect("nodes")[1].expires_ms, 300);
        b.deregister("b").expect("deregister");
        assert_eq!(a.nodes().expect("nodes"), vec![node("a", 100)]);
        assert!(matches!(
            b.heartbeat("b", 400),
            Err(crate::StoreError::NotFound(_))
        ));
    }

    /// A second handle registering the same id is a newer life: `register`
    /// returns the older record, the older life's heartbeat is `NotFound`
    /// and its `deregister` leaves the newer record and subscriptions.
    pub fn a_newer_life_of_a_node_id_fences_the_older<H: Handle>(make: &dyn Fn() -> H) {
        let (old, new) = (make(), make());
        assert_eq!(old.register(&node("n", 100)).expect("register"), None);
        old.heartbeat("n", 150).expect("heartbeat");
        let mut again = node("n", 200);
        again.url = "ws://elsewhere.test/ws".into();
        assert_eq!(
            new.register(&again).expect("register again"),
            Some(node("n", 150)),
            "the newer life learns what it replaced"
        );
        new.subscribe("n", "room:r", 1).expect("subscribe");
        assert!(matches!(
            old.heartbeat("n", 300),
            Err(crate::StoreError::NotFound(_))
        ));
        // The older life cannot take the newer one's inbox entries away.
        let other = make();
        other.register(&node("o", u64::MAX)).expect("register o");
        send(&other, "room:r", "m1");
        let entries = old.inbox("n", 10).expect("inbox");
        assert_eq!(entries.len(), 1);
        assert!(matches!(
            old.ack_inbox("n", &entries[0].key),
            Err(crate::StoreError::NotFound(_))
        ));
        assert_eq!(new.inbox("n", 10).expect("inbox").len(), 1);
        // Nor write subscriptions or presence in the newer one's name.
        assert!(matches!(
            old.subscribe("n", "room:old", 2),
            Err(crate::StoreError::NotFound(_))
        ));
        assert!(old.set_presence("u-old", true).is_err());
        assert!(new
            .online(&["u-old".to_owned()])
            .expect("online")
            .is_empty());
        old.deregister("n").expect("deregister");
        assert_eq!(
            new.nodes().expect("nodes"),
            vec![again.clone(), node("o", u64::MAX)]
        );
        assert_eq!(
            new.subscribers("room:r").expect("subs").len(),
            1,
            "the newer life keeps its subscriptions"
        );
        new.heartbeat("n", 400).expect("the newer life renews");
        new.deregister("n").expect("deregister");
        assert_eq!(new.nodes().expect("nodes"), vec![node("o", u64::MAX)]);
    }

    /// `reap` removes a node only while its lease is the one seen expiring.
    pub fn reap_removes_only_an_unrenewed_lease<H: Handle>(make: &dyn Fn() -> H) {
        let (a, b) = (make(), make());
        a.register(&node("a", 100)).expect("register a");
        b.register(&node("b", 100)).expect("register b");
        b.subscribe("b", "room:r", 1).expect("subscribe");
        b.heartbeat("b", 200).expect("heartbeat");
        assert!(!a.reap("b", 100).expect("reap"), "renewed meanwhile: kept");
        assert!(a.reap("b", 200).expect("reap"), "expired: removed");
        assert_eq!(a.nodes().expect("nodes"), vec![node("a", 100)]);
        assert!(a.subscribers("room:r").expect("subs").is_empty());
    }

    /// A commit leaves one notice in each subscribed node's inbox but not in
    /// the committing node's own; entries come in commit order and go when
    /// acknowledged.
    pub fn commits_leave_notices_in_other_subscribed_inboxes<H: Handle>(make: &dyn Fn() -> H) {
        let (a, b, c) = (make(), make(), make());
        for (h, id) in [(&a, "a"), (&b, "b"), (&c, "c")] {
            h.register(&node(id, u64::MAX)).expect("register");
        }
        assert_eq!(b.subscribe("b", "room:r", 1).expect("sub"), Seq(0));
        assert_eq!(a.subscribe("a", "room:r", 1).expect("sub"), Seq(0));
        send(&a, "room:r", "m1");
        send(&a, "room:r", "m2");
        send(&c, "room:other", "m3");
        assert!(a.inbox("a", 10).expect("inbox").is_empty(), "own commits");
        assert!(
            c.inbox("c", 10).expect("inbox").is_empty(),
            "not subscribed"
        );
        let got = b.inbox("b", 10).expect("inbox");
        let seqs: Vec<(u64, u64)> = got
            .iter()
            .flat_map(|e| e.notices.iter().map(|n| (n.first.0, n.last.0)))
            .collect();
        assert_eq!(seqs, vec![(1, 1), (2, 2)]);
        assert!(got[0].notices.iter().all(|n| n.channel == "room:r"));
        b.ack_inbox("b", &got[0].key).expect("ack");
        let rest = b.inbox("b", 10).expect("inbox");
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].notices[0].first, Seq(2));
        // Another node's commit reaches a too.
        send(&b, "room:r", "m4");
        let for_a = a.inbox("a", 10).expect("inbox");
        assert_eq!(for_a.len(), 1);
        assert_eq!(for_a[0].notices[0].last, Seq(3));
    }

    /// A membership change leaves a `members_changed` notice in every
    /// other subscribed node's inbox, not in the changing node's own; a
    /// change that changes nothing leaves none.
    pub fn membership_changes_leave_notices_in_other_subscribed_inboxes<H: Handle>(
        make: &dyn Fn() -> H,
    ) {
        let (a, b, c) = (make(), make(), make());
        for (h, id) in [(&a, "a"), (&b, "b"), (&c, "c")] {
            h.register(&node(id, u64::MAX)).expect("register");
        }
        a.create_group("g1", &["u1".to_owned(), "u2".to_owned()])
            .expect("create");
        let g = "group:g1";
        a.subscribe("a", g, 1).expect("sub");
        b.subscribe("b", g, 1).expect("sub");
        assert!(a.remove_member(g, "u2").expect("remove"));
        assert!(!a.remove_member(g, "u2").expect("remove again"));
        assert!(a.add_member(g, "u3").expect("add"));
        assert!(a.inbox("a", 10).expect("inbox").is_empty(), "own change");
        assert!(
            c.inbox("c", 10).expect("inbox").is_empty(),
            "not subscribed"
        );
        let got = b.inbox("b", 10).expect("inbox");
        assert_eq!(got.len(), 2, "one per change: {got:?}");
        for e in &got {
            assert_eq!(e.notices, vec![super::Notice::members_changed(g)]);
            assert!(e.notices[0].is_members_changed());
        }
    }

    /// `subscribe` answers the head; an unsubscribe with a stale token keeps
    /// the newer subscription; a fresh registration clears the old life's
    /// subscriptions and inbox.
    pub fn subscriptions_follow_tokens_and_lives<H: Handle>(make: &dyn Fn() -> H) {
        let (a, b) = (make(), make());
        a.register(&node("a", u64::MAX)).expect("register");
        b.register(&node("b", u64::MAX)).expect("register");
        send(&a, "room:r", "m1");
        assert_eq!(b.subscribe("b", "room:r", 1).expect("sub"), Seq(1));
        assert_eq!(b.subscribe("b", "room:r", 2).expect("sub"), Seq(1));
        b.unsubscribe("b", "room:r", 1).expect("stale unsub");
        assert_eq!(a.subscribers("room:r").expect("subs"), vec!["b".to_owned()]);
        send(&a, "room:r", "m2");
        assert_eq!(b.inbox("b", 10).expect("inbox").len(), 1);
        b.unsubscribe("b", "room:r", 2).expect("unsub");
        assert!(a.subscribers("room:r").expect("subs").is_empty());
        b.subscribe("b", "room:r", 3).expect("sub");
        let b2 = make();
        b2.register(&node("b", u64::MAX)).expect("a new life of b");
        assert!(a.subscribers("room:r").expect("subs").is_empty());
        assert!(b2.inbox("b", 10).expect("inbox").is_empty());
    }

    /// `wait_inbox` returns soon after a commit leaves a notice (and by its
    /// timeout when none comes).
    pub fn wait_inbox_wakes_on_a_notice<H: Handle + 'static>(make: &dyn Fn() -> H) {
        let (a, b) = (make(), make());
        a.register(&node("a", u64::MAX)).expect("register");
        b.register(&node("b", u64::MAX)).expect("register");
        b.subscribe("b", "room:w", 1).expect("sub");
        let t0 = std::time::Instant::now();
        b.wait_inbox("b", 50).expect("wait");
        assert!(t0.elapsed() < std::time::Duration::from_secs(3));
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(100));
                send(&a, "room:w", "m1");
            });
            let t0 = std::time::Instant::now();
            while b.inbox("b", 1).expect("inbox").is_empty() {
                b.wait_inbox("b", 5_000).expect("wait");
                assert!(
                    t0.elapsed() < std::time::Duration::from_secs(4),
                    "no wake-up"
                );
            }
        });
    }

    fn events<H: Handle>(h: &H, id: &str) -> Vec<super::Event> {
        h.inbox(id, 100)
            .expect("inbox")
            .into_iter()
            .flat_map(|e| e.events)
            .collect()
    }

    fn drain<H: Handle>(h: &H, id: &str) {
        while let Some(last) = h.inbox(id, 100).expect("inbox").last() {
            h.ack_inbox(id, &last.key).expect("ack");
        }
    }

    fn presence(user: &str, online: bool) -> super::Event {
        super::Event::Presence {
            user: user.into(),
            online,
        }
    }

    /// Presence aggregates nodes: the first node online and the last one
    /// offline change the cluster-wide state and leave an event in every
    /// other node's inbox; repeats and a second node leave nothing;
    /// `online` sees a user on any node.
    pub fn presence_aggregates_nodes_and_tells_the_others<H: Handle>(make: &dyn Fn() -> H) {
        let (a, b, c) = (make(), make(), make());
        for (h, id) in [(&a, "a"), (&b, "b"), (&c, "c")] {
            h.register(&node(id, u64::MAX)).expect("register");
        }
        let who = ["alice".to_owned(), "bob".to_owned()];
        assert!(a.set_presence("alice", true).expect("set"), "first node");
        assert!(!a.set_presence("alice", true).expect("set"), "a repeat");
        assert!(
            !b.set_presence("alice", true).expect("set"),
            "a second node"
        );
        assert_eq!(c.online(&who).expect("online"), vec!["alice".to_owned()]);
        assert!(
            !a.set_presence("alice", false).expect("set"),
            "b still has her"
        );
        assert_eq!(c.online(&who).expect("online"), vec!["alice".to_owned()]);
        assert!(
            b.set_presence("alice", false).expect("set"),
            "the last node"
        );
        assert!(!b.set_presence("alice", false).expect("set"), "a repeat");
        assert!(c.online(&who).expect("online").is_empty());
        assert_eq!(
            events(&c, "c"),
            vec![presence("alice", true), presence("alice", false)]
        );
        assert_eq!(events(&b, "b"), vec![presence("alice", true)]);
        assert_eq!(events(&a, "a"), vec![presence("alice", false)]);
    }

    /// Two nodes flipping one user's presence at the same time: their
    /// transactions conflict instead of both announcing, so the events
    /// every other node gets alternate online, offline, … and the last one
    /// is the final state.
    pub fn racing_transitions_announce_alternately<H: Handle + 'static>(make: &dyn Fn() -> H) {
        let (a, b, c) = (make(), make(), make());
        for (h, id) in [(&a, "a"), (&b, "b"), (&c, "c")] {
            h.register(&node(id, u64::MAX)).expect("register");
        }
        std::thread::scope(|s| {
            for h in [&a, &b] {
                s.spawn(move || {
                    for _ in 0..20 {
                        h.set_presence("alice", true).expect("online");
                        h.set_presence("alice", false).expect("offline");
                    }
                });
            }
        });
        let got = events(&c, "c");
        assert!(!got.is_empty());
        for (i, e) in got.iter().enumerate() {
            assert_eq!(e, &presence("alice", i % 2 == 0), "event {i} of {got:?}");
        }
        assert_eq!(got.len() % 2, 0, "ends offline: {got:?}");
        assert!(c.online(&["alice".to_owned()]).expect("online").is_empty());
    }

    /// Removing a node removes its presence: the users it leaves on no node
    /// get an `offline` event in every other node's inbox.
    pub fn a_reaped_node_takes_its_users_offline<H: Handle>(make: &dyn Fn() -> H) {
        let (a, b, c) = (make(), make(), make());
        a.register(&node("a", 100)).expect("register");
        b.register(&node("b", u64::MAX)).expect("register");
        c.register(&node("c", u64::MAX)).expect("register");
        assert!(a.set_presence("alice", true).expect("set"));
        assert!(a.set_presence("carol", true).expect("set"));
        assert!(!b.set_presence("carol", true).expect("set"));
        drain(&b, "b");
        drain(&c, "c");
        assert!(b.reap("a", 100).expect("reap"));
        assert_eq!(events(&c, "c"), vec![presence("alice", false)]);
        assert_eq!(events(&b, "b"), vec![presence("alice", false)]);
        let who = ["alice".to_owned(), "carol".to_owned()];
        assert_eq!(c.online(&who).expect("online"), vec!["carol".to_owned()]);
        assert!(
            matches!(
                a.set_presence("dave", true),
                Err(crate::StoreError::NotFound(_))
            ),
            "a removed node writes no more presence"
        );
        assert_eq!(b.sweep_removed().expect("sweep"), 0, "nothing left over");
    }

    /// A removed node with more users than one transaction sweeps takes
    /// every one of them offline.
    pub fn a_removed_node_with_many_users_takes_them_all_offline<H: Handle>(make: &dyn Fn() -> H) {
        const USERS: usize = 1_100;
        let (a, b) = (make(), make());
        a.register(&node("a", u64::MAX)).expect("register");
        b.register(&node("b", u64::MAX)).expect("register");
        for i in 0..USERS {
            assert!(a.set_presence(&format!("u{i:04}"), true).expect("set"));
        }
        drain(&b, "b");
        a.deregister("a").expect("deregister");
        let mut offline: Vec<String> = events(&b, "b")
            .into_iter()
            .map(|e| match e {
                super::Event::Presence {
                    user,
                    online: false,
                } => user,
                other => panic!("{other:?}"),
            })
            .collect();
        offline.sort();
        let all: Vec<String> = (0..USERS).map(|i| format!("u{i:04}")).collect();
        assert_eq!(offline, all);
        assert!(b.online(&all).expect("online").is_empty());
    }

    /// `typing` leaves an event in every other node subscribed to the
    /// channel, none in the sender's own or an unsubscribed node's.
    pub fn typing_reaches_other_subscribed_nodes<H: Handle>(make: &dyn Fn() -> H) {
        let (a, b, c) = (make(), make(), make());
        for (h, id) in [(&a, "a"), (&b, "b"), (&c, "c")] {
            h.register(&node(id, u64::MAX)).expect("register");
        }
        a.subscribe("a", "dm:alice:bob", 1).expect("sub");
        b.subscribe("b", "dm:alice:bob", 1).expect("sub");
        a.typing("dm:alice:bob", "alice").expect("typing");
        let typing = super::Event::Typing {
            channel: "dm:alice:bob".into(),
            user: "alice".into(),
        };
        assert_eq!(events(&b, "b"), vec![typing]);
        assert!(events(&a, "a").is_empty(), "own typing");
        assert!(events(&c, "c").is_empty(), "not subscribed");
    }

    /// `reads` leaves a read event in every other node where some of the
    /// members to tell have devices, naming only those; none in the
    /// writer's own node or a node with none of them.
    pub fn reads_reach_the_nodes_of_the_members_to_tell<H: Handle>(make: &dyn Fn() -> H) {
        let (a, b, c, d) = (make(), make(), make(), make());
        for (h, id) in [(&a, "a"), (&b, "b"), (&c, "c"), (&d, "d")] {
            h.register(&node(id, u64::MAX)).expect("register");
        }
        a.set_presence("bob", true).expect("set");
        b.set_presence("bob", true).expect("set");
        b.set_presence("carol", true).expect("set");
        c.set_presence("carol", true).expect("set");
        d.set_presence("alice", true).expect("set");
        for (h, id) in [(&a, "a"), (&b, "b"), (&c, "c"), (&d, "d")] {
            drain(h, id);
        }
        let push = |to: &[&str]| super::ReadPush {
            channel: "group:g".into(),
            user: "alice".into(),
            seq: crate::Seq(7),
            to: to.iter().map(|&u| u.to_owned()).collect(),
        };
        a.reads(&[push(&["bob", "carol", "dave"])]).expect("reads");
        assert_eq!(
            events(&b, "b"),
            vec![super::Event::Read(push(&["bob", "carol"]))]
        );
        assert_eq!(events(&c, "c"), vec![super::Event::Read(push(&["carol"]))]);
        assert!(events(&a, "a").is_empty(), "own node");
        assert!(events(&d, "d").is_empty(), "none of them there");
        a.reads(&[]).expect("nothing to push");
    }

    /// Every check, each on fresh handles from `make_fresh` (called once per
    /// check; it returns a factory of handles on one new database).
    pub fn run_all<H: Handle + 'static, F: Fn() -> H>(make_fresh: &dyn Fn() -> F) {
        nodes_register_renew_and_deregister(&make_fresh());
        reap_removes_only_an_unrenewed_lease(&make_fresh());
        a_newer_life_of_a_node_id_fences_the_older(&make_fresh());
        commits_leave_notices_in_other_subscribed_inboxes(&make_fresh());
        membership_changes_leave_notices_in_other_subscribed_inboxes(&make_fresh());
        subscriptions_follow_tokens_and_lives(&make_fresh());
        wait_inbox_wakes_on_a_notice(&make_fresh());
        presence_aggregates_nodes_and_tells_the_others(&make_fresh());
        racing_transitions_announce_alternately(&make_fresh());
        a_reaped_node_takes_its_users_offline(&make_fresh());
        a_removed_node_with_many_users_takes_them_all_offline(&make_fresh());
        typing_reaches_other_subscribed_nodes(&make_fresh());
        reads_reach_the_nodes_of_the_members_to_tell(&make_fresh());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_garbage_is_refused() {
        let n = vec![
            Notice {
                channel: "room:a".into(),
                first: Seq(1),
                last: Seq(3),
            },
            Notice {
                channel: "dm:x:y".into(),
                first: Seq(9),
                last: Seq(9),
            },
        ];
        assert_eq!(decode_notices(&encode_notices(&n)), Some(n));
        assert_eq!(decode_notices(&[3, 0, b'a']), None);
        assert_eq!(decode_notices(&[]), Some(Vec::new()));
    }

    #[test]
    fn events_round_trip_apart_from_notices_and_garbage_is_refused() {
        let e = vec![
            Event::Presence {
                user: "alice".into(),
                online: true,
            },
            Event::Presence {
                user: "bob".into(),
                online: false,
            },
            Event::Typing {
                channel: "dm:alice:bob".into(),
                user: "alice".into(),
            },
            Event::Read(ReadPush {
                channel: "group:g".into(),
                user: "alice".into(),
                seq: Seq(42),
                to: vec!["bob".into(), "carol".into()],
            }),
        ];
        assert_eq!(decode_entry(&encode_events(&e)), Some((Vec::new(), e)));
        assert_eq!(
            decode_entry(&[0xff, 0xff, 4, 1, 0, b'g', 1, 0, b'a', 7]),
            None
        );
        let n = vec![Notice::members_changed("group:g")];
        assert_eq!(decode_entry(&encode_notices(&n)), Some((n, Vec::new())));
        assert_eq!(decode_entry(&[0xff, 0xff, 9]), None);
        assert_eq!(decode_entry(&[0xff, 0xff, 1, 5, 0, b'a']), None);
    }
}
