//! [`ShardState`]: everything one shard owns, in one struct whose fields
//! are the roles' states. Each role's behaviour is in its own file
//! (`shard.rs` the lifecycle and the routing, `dispatch.rs` requests,
//! `fanout.rs` replicas and cursors, `receipts.rs` receipts; the owner and
//! user-owner roles are types of their own, `owner/` and `users.rs`).

use std::rc::Rc;
use std::sync::Arc;

use chat_model::Channel;
use chat_proto as protocol;

use crate::config::Config;
use crate::conn::{Conn, Signal};
use crate::cursors::{PendingCursors, UnreadQueries};
use crate::limits::UserLimitsTable;
use crate::maps::Map;
use crate::moderation::Blocklist;
use crate::owner::Owner;
use crate::presence::Queries;
use crate::replica::{Replica, RingLog};
use crate::stats::Stats;
use crate::users::{UserOwner, UserSettings};
use crate::vocab::{ConnId, ConnRef, Effects, ShardId};

/// Everything one shard owns.
pub struct ShardState {
    pub(crate) id: ShardId,
    pub(crate) nr_shards: usize,
    pub(crate) cfg: Arc<Config>,
    pub(crate) limits: protocol::Limits,
    /// The connections, each at the slot its id names.
    pub(crate) conns: crate::slots::ConnSlab<Conn>,
    pub(crate) next_join_gen: u64,
    pub(crate) replicas: Map<Channel, Replica>,
    /// The shard-wide budget of the replicas' rings.
    pub(crate) ring_log: RingLog,
    /// Members of `digest` and `counts` tiers waiting for their next
    /// serving (`tiers.rs`).
    pub(crate) tiers: crate::tiers::TierTimers,
    /// The shard's one permessage-deflate compressor: a batch's frames are
    /// compressed here once for all members that negotiated it (allocated
    /// on first use, ~300 KiB).
    pub(crate) deflater: chat_proto::deflate::Deflater,
    /// The channel-owner role.
    pub(crate) owner: Owner,
    /// The user-owner role.
    pub(crate) users: UserOwner,
    pub(crate) blocklist: Blocklist,
    pub(crate) fx: Effects,
    /// Read and delivered cursors reported and not written yet.
    pub(crate) cursors: PendingCursors,
    /// Per-user limits of the users this shard serves.
    pub(crate) user_limits: UserLimitsTable,
    /// Unread queries started here.
    pub(crate) unread: UnreadQueries,
    /// WebSocket connections per user on this shard (presence answers).
    pub(crate) local_users: Map<Arc<str>, u32>,
    /// Presence queries started here.
    pub(crate) queries: Queries,
    /// Shutting down: connections stop reading.
    pub(crate) draining: bool,
    /// The drain window's close times, once it started.
    pub(crate) drain_schedule: Option<crate::drain::DrainSchedule>,
    /// Sessions whose drain time came, waiting for their acks to close.
    pub(crate) drain_waiting: Vec<ConnId>,
    pub(crate) stats: Arc<Stats>,
    /// The clock and woken list every outbox of this shard shares.
    pub(crate) signal: Rc<Signal>,
}

impl ShardState {
    /// Shard `id` of `nr_shards`, with the process-wide counters.
    #[must_use]
    pub fn new(id: ShardId, nr_shards: usize, cfg: Arc<Config>, stats: Arc<Stats>) -> Self {
        let limits = protocol::Limits {
            max_text_chars: cfg.max_text_chars,
            ..protocol::Limits::default()
        };
        let blocklist = Blocklist::new(&cfg.blocklist_words, &cfg.blocklist_patterns)
            .unwrap_or_else(|e| {
                // Validated at start; an empty list is the safe fallback.
                tracing::error!(error = %e, "blocklist invalid");
                Blocklist::empty()
            });
        let mut owner = Owner::new(cfg.push_webhook.is_some(), cfg.max_group_members);
        // Cluster mode: nodes share the FoundationDB store and learn of each
        // other's commits through it.
        if cfg.store == crate::config::StoreKind::Fdb {
            owner.node = cfg.node_id.as_deref().map(Arc::from);
        }
        let users = UserOwner::new(UserSettings {
            max_connections: cfg.max_connections_per_user,
            debounce_ms: cfg.presence_debounce_ms,
            push_coalesce_ms: cfg.push_coalesce_ms,
            cluster: owner.node.is_some(),
        });
        ShardState {
            id,
            nr_shards,
            cfg,
            limits,
            conns: crate::slots::ConnSlab::default(),
            next_join_gen: 1,
            replicas: Map::default(),
            ring_log: RingLog::default(),
            tiers: crate::tiers::TierTimers::default(),
            deflater: chat_proto::deflate::Deflater::new(),
            owner,
            users,
            blocklist,
            fx: Effects {
                nr_shards,
                ..Effects::default()
            },
            cursors: PendingCursors::default(),
            user_limits: UserLimitsTable::default(),
            unread: UnreadQueries::default(),
            local_users: Map::default(),
            queries: Queries::default(),
            draining: false,
            drain_schedule: None,
            drain_waiting: Vec::new(),
            stats,
            signal: Rc::new(Signal::default()),
        }
    }

    /// This shard.
    #[must_use]
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// Number of shards.
    #[must_use]
    pub fn nr_shards(&self) -> usize {
        self.nr_shards
    }

    /// The configuration.
    #[must_use]
    pub fn cfg(&self) -> &Config {
        &self.cfg
    }

    pub(crate) fn me(&self, conn: ConnId) -> ConnRef {
        ConnRef {
            shard: self.id,
            conn,
        }
    }

    pub(crate) fn set_now(&self, now: u64) {
        self.signal.set_now(now);
    }

    /// The shard's time as given by the last entry point.
    pub(crate) fn now(&self) -> u64 {
        self.signal.now()
    }
}
