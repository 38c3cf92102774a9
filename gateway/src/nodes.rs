//! Many gateway nodes on one FoundationDB store (`store = "fdb"`): this
//! node's id, its lease and the two tasks that make it a cluster member.
//! The design is in `docs/architecture.md` ("Many nodes"); the storage side
//! (records, subscriptions, inboxes) in `storage::cluster`.
//!
//! - Every gateway has a node id ([`resolve_node_id`]): configured, or kept
//!   in `<data_dir>/node-id`. `hello.node` and `GET /v1/nodes` show it.
//! - With a store that has a cluster, the node registers at start (its
//!   advertised URL and a lease), and shard 0 runs:
//!   - [`heartbeat_loop`]: renews the lease every `node_heartbeat_ms`,
//!     reaps nodes whose lease expired (their users go offline), finishes
//!     removed nodes' presence sweeps that a failure interrupted, and keeps
//!     the list `GET /v1/nodes` serves. A node that finds itself reaped,
//!     or its id registered by another process, exits (code 75): it missed
//!     notices and its sessions cannot be trusted; its clients reconnect and
//!     resume from history.
//!   - [`inbox_loop`]: waits on the node's inbox, reads each notified range
//!     of messages once from the store and hands it to the channel's owner
//!     shard (`ShardMsg::RemoteCommit`), which fans it out as it does its
//!     own commits; a group's membership change made on another node goes
//!     to its owner as `ShardMsg::MembersChanged` (it reloads the members
//!     and kicks the removed); another node's presence change goes to the
//!     user's owner shard (`ShardMsg::RemotePresence`: it tells this node's
//!     contacts), typing to the channel's (`ShardMsg::RemoteTyping`) and
//!     a read push to each member's (`ShardMsg::ToUser`, the `read` frame);
//!     then acknowledges the entries.
//! - A clean stop deregisters the node (`Gateway::shutdown`).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use chat_core::hash::owner_of;
use chat_core::ShardMsg;
use chat_model::{Channel, ReadLimit, ReadRange, Seq, StoredMessage};
use storage::{Event, NodeInfo, Store, StoreError};

use crate::shard_task::Shard;
use crate::util::now_ms;

/// Entries read from the inbox per round.
const INBOX_ENTRIES: usize = 256;
/// How long one wait on the inbox lasts before it is renewed, in ms.
const INBOX_WAIT_MS: u64 = 1_000;
/// Messages read per notified channel per round; past it, members page the
/// rest from the store (the owner announces the head).
const NOTICE_READ_MESSAGES: usize = 1_000;
/// Exit code of a node that found its lease reaped.
pub(crate) const EXIT_LEASE_LOST: i32 = 75;

/// The node id: `cfg_id`, else the one kept in `<data_dir>/node-id` (a
/// random one is written there on the first start).
pub(crate) fn resolve_node_id(
    cfg_id: Option<&str>,
    data_dir: &std::path::Path,
) -> std::io::Result<String> {
    if let Some(id) = cfg_id {
        return Ok(id.to_owned());
    }
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if chat_core::config::valid_node_id(s.trim()) => return Ok(s.trim().to_owned()),
        Ok(_) | Err(_) => {}
    }
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let id = format!("n-{:016x}", u64::from_le_bytes(bytes));
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(&path, format!("{id}\n"))?;
    Ok(id)
}

/// What `GET /v1/nodes` lists: this node alone (no cluster), or the live
/// nodes of the last heartbeat.
pub(crate) fn nodes_body(shard: &Shard) -> serde_json::Value {
    let me = shard.cfg.node_id.clone().unwrap_or_default();
    let now = now_ms();
    let known = shard
        .global
        .nodes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let url = shard
        .global
        .node_url
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
        .unwrap_or_default();
    let mut nodes: Vec<serde_json::Value> = known
        .iter()
        .filter(|n| n.expires_ms > now)
        .map(|n| {
            serde_json::json!({
                "id": n.id, "url": n.url, "lease_expires_ms": n.expires_ms, "self": n.id == me,
            })
        })
        .collect();
    if !known.iter().any(|n| n.id == me) {
        nodes.insert(
            0,
            serde_json::json!({"id": me, "url": url, "lease_expires_ms": null, "self": true}),
        );
    }
    serde_json::json!({ "node": me, "nodes": nodes })
}

fn no_cluster() -> StoreError {
    StoreError::Invalid("the store has no cluster".into())
}

/// Renews the lease, reaps expired nodes, refreshes the node list.
pub(crate) async fn heartbeat_loop(shard: Rc<Shard>) {
    let every = Duration::from_millis(shard.cfg.node_heartbeat_ms);
    let lease = shard.cfg.node_lease_ms;
    let Some(id) = shard.cfg.node_id.clone() else {
        return;
    };
    loop {
        crate::rt::sleep(every).await;
        let store = shard.store.store();
        let me = id.clone();
        let result = crate::rt::spawn_blocking(move || -> Result<Vec<NodeInfo>, StoreError> {
                let c = store.cluster().ok_or_else(no_cluster)?;
                let now = now_ms();
                c.heartbeat(&me, now + lease)?;
                let mut nodes = c.nodes()?;
                for n in &nodes {
                    if n.id != me && n.expires_ms < now && c.reap(&n.id, n.expires_ms)? {
                        tracing::warn!(node = %n.id, url = %n.url, "node lease expired: removed from the cluster");
                    }
                }
                // A removal whose presence sweep stopped midway (its node
                // failed) is finished here: its users go offline.
                match c.sweep_removed() {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(nodes = n, "finished removed nodes' presence sweeps"),
                    Err(e) => tracing::warn!(error = %e, "sweeping removed nodes' presence failed; retrying at the next heartbeat"),
                }
                nodes.retain(|n| n.expires_ms >= now || n.id == me);
                Ok(nodes)
            })
            .await;
        match result {
            Ok(nodes) => {
                *shard
                    .global
                    .nodes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = nodes;
            }
            Err(StoreError::NotFound(why)) => {
                tracing::error!(node = %id, %why, "this node no longer holds its id in the cluster (its lease was reaped after it could not renew in time, or another process registered the same id): exiting; clients reconnect and resume from history");
                std::process::exit(EXIT_LEASE_LOST);
            }
            Err(e) => tracing::warn!(node = %id, error = %e, "node heartbeat failed; retrying"),
        }
    }
}

/// One round of the inbox: the notified messages per channel (read once)
/// with the last notified seq, the groups whose members changed, and the
/// last entry's key.
struct InboxRound {
    commits: Vec<(String, Vec<StoredMessage>, Seq)>,
    members_changed: Vec<String>,
    /// Presence changes, typing and read pushes, in inbox order.
    events: Vec<Event>,
    last_key: Option<Vec<u8>>,
}

fn inbox_round(store: &dyn Store, id: &str) -> Result<InboxRound, StoreError> {
    let c = store.cluster().ok_or_else(no_cluster)?;
    let mut entries = c.inbox(id, INBOX_ENTRIES)?;
    if entries.is_empty() {
        c.wait_inbox(id, INBOX_WAIT_MS)?;
        entries = c.inbox(id, INBOX_ENTRIES)?;
    }
    // Several entries of one channel become one read.
    let mut ranges: BTreeMap<String, (Seq, Seq)> = BTreeMap::new();
    let mut members_changed = std::collections::BTreeSet::new();
    for n in entries.iter().flat_map(|e| &e.notices) {
        if n.is_members_changed() {
            members_changed.insert(n.channel.clone());
            continue;
        }
        let r = ranges.entry(n.channel.clone()).or_insert((n.first, n.last));
        r.0 = r.0.min(n.first);
        r.1 = r.1.max(n.last);
    }
    let mut out = Vec::with_capacity(ranges.len());
    for (channel, (first, last)) in ranges {
        let wanted = usize::try_from(last.0 - first.0 + 1).unwrap_or(usize::MAX);
        let page = store.read(
            &channel,
            ReadRange::After(Seq(first.0.saturating_sub(1))),
            ReadLimit {
                messages: wanted.min(NOTICE_READ_MESSAGES),
                bytes: 4 << 20,
            },
        )?;
        out.push((channel, page.messages, last));
    }
    Ok(InboxRound {
        commits: out,
        members_changed: members_changed.into_iter().collect(),
        events: entries.iter().flat_map(|e| e.events.clone()).collect(),
        last_key: entries.last().map(|e| e.key.clone()),
    })
}

/// Waits on this node's inbox and hands other nodes' commits to the owner
/// shards.
pub(crate) async fn inbox_loop(shard: Rc<Shard>) {
    let Some(id) = shard.cfg.node_id.clone() else {
        return;
    };
    let nr = shard.state.borrow().nr_shards();
    loop {
        let store = shard.store.store();
        let me = id.clone();
        let round = crate::rt::spawn_blocking(move || inbox_round(&*store, &me)).await;
        let InboxRound {
            commits,
            members_changed,
            events,
            last_key,
        } = match round {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(node = %id, error = %e, "reading the node inbox failed; retrying");
                crate::rt::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let commits = commits.into_iter().map(|(name, messages, last)| {
            let channel = Channel::from_validated(Arc::from(name));
            let msg = ShardMsg::RemoteCommit {
                channel: channel.clone(),
                messages,
                last,
            };
            (channel, msg)
        });
        let changes = members_changed.into_iter().map(|name| {
            let channel = Channel::from_validated(Arc::from(name));
            let msg = ShardMsg::MembersChanged {
                channel: channel.clone(),
            };
            (channel, msg)
        });
        // Presence goes to the user's owner shard, typing to the channel's,
        // a read push to each member's (`ToUser`, as on the writing node).
        let events = events.into_iter().flat_map(|e| match e {
            Event::Presence { user, online } => {
                let to = owner_of(&user, nr);
                let msg = ShardMsg::RemotePresence {
                    user: Arc::from(user),
                    online,
                };
                vec![(to, msg)]
            }
            Event::Typing { channel, user } => {
                let channel = Channel::from_validated(Arc::from(channel));
                let to = owner_of(&channel, nr);
                let msg = ShardMsg::RemoteTyping {
                    channel,
                    user: Arc::from(user),
                };
                vec![(to, msg)]
            }
            Event::Read(r) => {
                // The frame once, shared by every member's owner shard.
                let mut frame = Vec::new();
                chat_proto::response::read(&mut frame, &r.channel, &r.user, r.seq.0);
                let frame: Arc<[u8]> = Arc::from(frame);
                r.to.into_iter()
                    .map(|user| {
                        let user: Arc<str> = Arc::from(user);
                        let msg = ShardMsg::ToUser {
                            user: user.clone(),
                            frame: frame.clone(),
                        };
                        (owner_of(&user, nr), msg)
                    })
                    .collect()
            }
        });
        let to_owners = commits
            .chain(changes)
            .map(|(channel, msg)| (owner_of(&channel, nr), msg));
        for (to, msg) in to_owners.chain(events) {
            if to == shard.id {
                shard.with(|st| st.on_msg(to, msg, now_ms()));
            } else {
                shard.send_remote(to, msg);
            }
        }
        if let Some(key) = last_key {
            let store = shard.store.store();
            let me = id.clone();
            let acked = crate::rt::spawn_blocking(move || {
                store
                    .cluster()
                    .ok_or_else(no_cluster)
                    .and_then(|c| c.ack_inbox(&me, &key))
            })
            .await;
            if let Err(e) = acked {
                // Read again next round: the owners skip what they have.
                tracing::warn!(node = %id, error = %e, "acknowledging the node inbox failed");
            }
        }
    }
}
