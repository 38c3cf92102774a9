//! The user owner: the shard `owner_of(user)` keeps, for every user that
//! hashes to it, which connection is the live one of each device (a newer
//! connection of a device replaces the older with 4009; past
//! `max_connections_per_user` the newest is closed with 4029 — both by the
//! order connections were opened, not the order their news arrives), the presence
//! transitions with their offline debounce, and the push notices waiting
//! for a user with no device online. Every connection of a user is reached
//! through here (`ToUser`: `read`, `presence_update`, `channel_added`).

use std::sync::Arc;

use chat_model::Channel;
use chat_proto::response;

use crate::maps::Map;
use crate::presence::Debounce;
use crate::push::{Notice, Pending};
use crate::vocab::{ConnRef, Effects, IoJob, PresenceScope, ShardMsg};

/// One user's devices: device → (connection, open stamp). A short list, not
/// a map: a user has a few devices (at most `max_connections_per_user`), and
/// a map's smallest table holds four entries plus control bytes — measured
/// at 10,000 idle connections of distinct users, that was ~160 bytes per
/// online user against ~48 for a one-entry list.
#[derive(Debug, Default)]
struct Devices(Vec<(Arc<str>, (ConnRef, u64))>);

impl Devices {
    fn get(&self, device: &str) -> Option<&(ConnRef, u64)> {
        self.0.iter().find(|(d, _)| &**d == device).map(|(_, v)| v)
    }

    fn insert(&mut self, device: Arc<str>, value: (ConnRef, u64)) {
        if let Some(entry) = self.0.iter_mut().find(|(d, _)| *d == device) {
            entry.1 = value;
            return;
        }
        // Most users have one device: grow one entry at a time.
        self.0.reserve_exact(1);
        self.0.push((device, value));
    }

    fn remove(&mut self, device: &str) {
        if let Some(i) = self.0.iter().position(|(d, _)| &**d == device) {
            self.0.swap_remove(i);
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn values(&self) -> impl Iterator<Item = &(ConnRef, u64)> {
        self.0.iter().map(|(_, v)| v)
    }
}

/// The settings the role needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UserSettings {
    /// `max_connections_per_user` (0 = unlimited).
    pub(crate) max_connections: usize,
    /// `presence_debounce_ms`.
    pub(crate) debounce_ms: u64,
    /// `push_coalesce_ms`.
    pub(crate) push_coalesce_ms: u64,
    /// Cluster mode: transitions are node-level, recorded in the store.
    pub(crate) cluster: bool,
}

/// Presence jobs in flight, one per user and scope at a time: a user's
/// transitions are recorded and fanned out in the order they happened
/// (jobs run in parallel on the store threads, and a late `online` written
/// after an `offline` would leave the user online in the cluster). A
/// transition that comes while one is in flight waits; a later one
/// replaces it (the store sees the final state; an idempotent repeat
/// changes nothing).
#[derive(Default)]
struct Flights {
    /// user → the transition waiting for the one in flight.
    waiting: Map<Arc<str>, Option<bool>>,
}

impl Flights {
    /// Whether the transition may go now (else it waits).
    fn start(&mut self, user: &Arc<str>, online: bool) -> bool {
        if let Some(next) = self.waiting.get_mut(user) {
            *next = Some(online);
            return false;
        }
        self.waiting.insert(user.clone(), None);
        true
    }

    /// The job in flight finished: the waiting transition, if any (it is
    /// then in flight).
    fn done(&mut self, user: &str) -> Option<bool> {
        match self.waiting.get_mut(user) {
            Some(next @ Some(_)) => next.take(),
            Some(None) => {
                self.waiting.remove(user);
                None
            }
            None => None,
        }
    }
}

/// The user-owner role of one shard.
pub(crate) struct UserOwner {
    settings: UserSettings,
    /// Devices of the users this shard owns.
    users: Map<Arc<str>, Devices>,
    /// Offline announcements waiting for the debounce.
    debounce: Debounce,
    /// Push notices per offline user, waiting for their window.
    push_pending: Pending,
    /// This node's transitions in flight.
    own: Flights,
    /// Other nodes' transitions in flight (cluster mode).
    remote: Flights,
    /// Users whose node-level state the store may not have (a write
    /// failed): written again at the next tick.
    unrecorded: std::collections::BTreeSet<Arc<str>>,
}

const REPLACED: &str = "replaced by a newer connection of the same device";

fn close(to: ConnRef, code: u16, reason: &'static str) -> (crate::vocab::ShardId, ShardMsg) {
    (
        to.shard,
        ShardMsg::Close {
            conn: to.conn,
            code,
            reason,
        },
    )
}

impl UserOwner {
    pub(crate) fn new(settings: UserSettings) -> UserOwner {
        UserOwner {
            settings,
            users: Map::default(),
            debounce: Debounce::default(),
            push_pending: Pending::default(),
            own: Flights::default(),
            remote: Flights::default(),
            unrecorded: std::collections::BTreeSet::new(),
        }
    }

    /// Recording `user`'s node-level transition failed (cluster mode): the
    /// next tick writes the current state again.
    pub(crate) fn presence_unrecorded(&mut self, user: Arc<str>) {
        if self.settings.cluster {
            self.unrecorded.insert(user);
        }
    }

    /// This node's transition of `user`: fanned out (cluster mode: recorded
    /// first), one at a time per user.
    fn transition(&mut self, user: Arc<str>, online: bool, fx: &mut Effects) {
        if self.own.start(&user, online) {
            let scope = if self.settings.cluster {
                PresenceScope::Node
            } else {
                PresenceScope::Alone
            };
            fx.io.push(IoJob::PresenceFanout {
                user,
                online,
                scope,
            });
        }
    }

    /// Another node changed `user`'s cluster-wide presence: fanned out to
    /// this node's connections, one at a time per user.
    pub(crate) fn remote_presence(&mut self, user: Arc<str>, online: bool, fx: &mut Effects) {
        if self.remote.start(&user, online) {
            fx.io.push(IoJob::PresenceFanout {
                user,
                online,
                scope: PresenceScope::Remote,
            });
        }
    }

    /// A presence job finished: the user's next transition may go.
    pub(crate) fn presence_done(
        &mut self,
        user: &Arc<str>,
        scope: PresenceScope,
        fx: &mut Effects,
    ) {
        let flights = match scope {
            PresenceScope::Remote => &mut self.remote,
            PresenceScope::Alone | PresenceScope::Node => &mut self.own,
        };
        if let Some(online) = flights.done(user) {
            fx.io.push(IoJob::PresenceFanout {
                user: user.clone(),
                online,
                scope,
            });
        }
    }

    /// A device connected. A newer connection of the same device replaces
    /// the older (4009); past the per-user maximum the new connection is
    /// closed (4029). The first device (not back within the debounce) makes
    /// the user online.
    pub(crate) fn device_up(
        &mut self,
        user: Arc<str>,
        device: Arc<str>,
        conn: ConnRef,
        stamp: u64,
        fx: &mut Effects,
    ) {
        let max = self.settings.max_connections;
        if !self.users.contains_key(&user) && !self.debounce.cancel(&user) {
            self.transition(user.clone(), true, fx);
        }
        let devices = self.users.entry(user).or_default();
        if let Some((old, old_stamp)) = devices.get(&device).copied() {
            if old == conn {
                return;
            }
            let (to, msg) = if stamp > old_stamp {
                devices.insert(device, (conn, stamp));
                close(old, 4009, REPLACED)
            } else {
                // The incoming connection is the older one (its DeviceUp
                // came late): it is the one replaced.
                close(conn, 4009, REPLACED)
            };
            fx.send(to, msg);
            return;
        }
        if max > 0 && devices.len() >= max {
            // The connection past the maximum is the newest by open order
            // (`stamp`), whichever `DeviceUp` reached this shard first: one
            // from another shard can arrive after a newer one.
            let newest = devices
                .0
                .iter()
                .max_by_key(|(_, (_, s))| *s)
                .map(|(d, (c, s))| (d.clone(), *c, *s));
            let to_close = match newest {
                Some((newest_device, newest_conn, newest_stamp)) if newest_stamp > stamp => {
                    devices.remove(&newest_device);
                    devices.insert(device, (conn, stamp));
                    newest_conn
                }
                _ => conn,
            };
            let (to, msg) = close(to_close, 4029, TOO_MANY);
            fx.send(to, msg);
            return;
        }
        devices.insert(device, (conn, stamp));
    }

    /// A device's connection ended; the last one starts the offline
    /// debounce.
    pub(crate) fn device_down(&mut self, user: Arc<str>, device: &str, conn: ConnRef, now: u64) {
        if let Some(devices) = self.users.get_mut(&user) {
            if devices.get(device).map(|d| d.0) == Some(conn) {
                devices.remove(device);
            }
            if devices.is_empty() {
                self.users.remove(&user);
                self.debounce.start(user, now + self.settings.debounce_ms);
            }
        }
    }

    /// A committed message for `user`: queued for push when no device of
    /// theirs is online.
    pub(crate) fn notify(&mut self, user: Arc<str>, notice: Notice, now: u64) {
        if !self.users.contains_key(&user) {
            self.push_pending
                .add(user, notice, now + self.settings.push_coalesce_ms);
        }
    }

    /// One frame for every connection of `user`.
    pub(crate) fn to_user(&self, user: &str, frame: &Arc<[u8]>, fx: &mut Effects) {
        if let Some(devices) = self.users.get(user) {
            for (conn, _) in devices.values() {
                fx.send(
                    conn.shard,
                    ShardMsg::ToConn {
                        conn: conn.conn,
                        frame: frame.clone(),
                    },
                );
            }
        }
    }

    /// Once a second: node-level states whose write failed are written
    /// again; users whose offline debounce ran out are announced offline;
    /// push jobs whose coalescing window ended go out.
    pub(crate) fn tick(&mut self, now: u64, fx: &mut Effects) {
        for user in std::mem::take(&mut self.unrecorded) {
            let online = self.users.contains_key(&user) || self.debounce.is_pending(&user);
            self.transition(user, online, fx);
        }
        for user in self.debounce.take_due(now) {
            if !self.users.contains_key(&user) {
                self.transition(user, false, fx);
            }
        }
        for job in self.push_pending.due(now) {
            fx.io.push(IoJob::Push(job));
        }
    }

    /// The members to tell about a presence change were found.
    pub(crate) fn on_presence_targets(
        user: &str,
        online: bool,
        targets: Vec<(Channel, Vec<String>)>,
        fx: &mut Effects,
    ) {
        for (channel, others) in targets {
            let mut frame = Vec::new();
            response::presence_update(&mut frame, &channel, user, online);
            let frame: Arc<[u8]> = Arc::from(frame);
            fx.send_to_users(others, &frame);
        }
    }
}

/// Why a connection past `max_connections_per_user` is closed.
const TOO_MANY: &str = "too many connections for this user";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{ConnId, ShardId};

    fn owner() -> UserOwner {
        UserOwner::new(UserSettings {
            max_connections: 2,
            debounce_ms: 1_000,
            push_coalesce_ms: 100,
            cluster: true,
        })
    }

    fn at(shard: usize, conn: u64) -> ConnRef {
        ConnRef {
            shard: ShardId(shard),
            conn: ConnId(conn),
        }
    }

    fn closes(fx: &Effects) -> Vec<(ConnRef, u16)> {
        fx.out
            .iter()
            .filter_map(|(to, m)| match m {
                ShardMsg::Close { conn, code, .. } => Some((
                    ConnRef {
                        shard: *to,
                        conn: *conn,
                    },
                    *code,
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_newer_device_connection_replaces_the_older_whatever_the_arrival_order() {
        let mut u = owner();
        let mut fx = Effects::default();
        let (a, d): (Arc<str>, Arc<str>) = (Arc::from("alice"), Arc::from("phone"));
        u.device_up(a.clone(), d.clone(), at(0, 1), 5, &mut fx);
        u.device_up(a.clone(), d.clone(), at(1, 7), 9, &mut fx);
        assert_eq!(closes(&fx), vec![(at(0, 1), 4009)]);
        let mut fx = Effects::default();
        u.device_up(a.clone(), d.clone(), at(0, 3), 6, &mut fx);
        assert_eq!(
            closes(&fx),
            vec![(at(0, 3), 4009)],
            "the late, older one goes"
        );
        u.device_up(a.clone(), Arc::from("laptop"), at(0, 4), 10, &mut fx);
        let mut fx = Effects::default();
        u.device_up(a, Arc::from("tablet"), at(0, 5), 11, &mut fx);
        assert_eq!(closes(&fx), vec![(at(0, 5), 4029)]);
    }

    #[test]
    fn past_the_maximum_the_newest_connection_goes_whatever_the_arrival_order() {
        // Two devices are the maximum. The tablet (opened last, stamp 30)
        // reports before the laptop (stamp 20), whose `DeviceUp` crossed
        // the mesh from another shard.
        let mut u = owner();
        let mut fx = Effects::default();
        let a: Arc<str> = Arc::from("alice");
        u.device_up(a.clone(), Arc::from("phone"), at(0, 1), 10, &mut fx);
        u.device_up(a.clone(), Arc::from("tablet"), at(0, 3), 30, &mut fx);
        assert!(closes(&fx).is_empty());
        u.device_up(a.clone(), Arc::from("laptop"), at(1, 2), 20, &mut fx);
        assert_eq!(closes(&fx), vec![(at(0, 3), 4029)], "the tablet goes");
        // The tablet's end does not disturb the devices that stay.
        u.device_down(a.clone(), "tablet", at(0, 3), 100);
        let mut fx = Effects::default();
        u.device_up(a, Arc::from("watch"), at(0, 4), 40, &mut fx);
        assert_eq!(closes(&fx), vec![(at(0, 4), 4029)], "phone and laptop stay");
    }

    #[test]
    fn offline_is_announced_after_the_debounce_unless_a_device_returns() {
        let mut u = owner();
        let mut fx = Effects::default();
        let a: Arc<str> = Arc::from("alice");
        u.device_up(a.clone(), Arc::from("d"), at(0, 1), 1, &mut fx);
        assert_eq!(fx.io.len(), 1, "online");
        u.presence_done(&a, PresenceScope::Node, &mut fx);
        u.device_down(a.clone(), "d", at(0, 1), 10_000);
        let mut fx = Effects::default();
        u.tick(10_500, &mut fx);
        assert!(fx.io.is_empty(), "within the debounce");
        u.device_up(a.clone(), Arc::from("d"), at(0, 2), 2, &mut fx);
        assert!(
            fx.io.is_empty(),
            "back within the debounce: nothing announced"
        );
        u.device_down(a, "d", at(0, 2), 20_000);
        u.tick(21_001, &mut fx);
        assert!(matches!(
            fx.io.as_slice(),
            [IoJob::PresenceFanout { online: false, .. }]
        ));
    }

    fn fanouts(fx: &Effects) -> Vec<(bool, PresenceScope)> {
        fx.io
            .iter()
            .filter_map(|j| match j {
                IoJob::PresenceFanout { online, scope, .. } => Some((*online, *scope)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_users_transitions_are_recorded_one_at_a_time_in_order() {
        let mut u = owner();
        let a: Arc<str> = Arc::from("alice");
        let mut fx = Effects::default();
        u.device_up(a.clone(), Arc::from("d"), at(0, 1), 1, &mut fx);
        assert_eq!(fanouts(&fx), vec![(true, PresenceScope::Node)]);
        // Offline and online again while the first job is still running:
        // nothing goes until it is done, then only the latest.
        u.device_down(a.clone(), "d", at(0, 1), 1_000);
        let mut fx = Effects::default();
        u.tick(2_000, &mut fx);
        u.device_up(a.clone(), Arc::from("d"), at(0, 2), 2, &mut fx);
        u.device_down(a.clone(), "d", at(0, 2), 2_000);
        u.tick(3_000, &mut fx);
        assert!(fanouts(&fx).is_empty(), "waits for the one in flight");
        u.presence_done(&a, PresenceScope::Node, &mut fx);
        assert_eq!(fanouts(&fx), vec![(false, PresenceScope::Node)]);
        let mut fx = Effects::default();
        u.presence_done(&a, PresenceScope::Node, &mut fx);
        assert!(fx.io.is_empty(), "nothing waits");
        // Another node's changes are ordered apart from this node's.
        u.remote_presence(a.clone(), true, &mut fx);
        u.remote_presence(a.clone(), false, &mut fx);
        assert_eq!(fanouts(&fx), vec![(true, PresenceScope::Remote)]);
        let mut fx = Effects::default();
        u.presence_done(&a, PresenceScope::Remote, &mut fx);
        assert_eq!(fanouts(&fx), vec![(false, PresenceScope::Remote)]);
    }

    #[test]
    fn a_transition_the_store_did_not_take_is_written_again_as_it_now_stands() {
        let mut u = owner();
        let a: Arc<str> = Arc::from("alice");
        let mut fx = Effects::default();
        u.device_up(a.clone(), Arc::from("d"), at(0, 1), 1, &mut fx);
        u.presence_unrecorded(a.clone());
        u.presence_done(&a, PresenceScope::Node, &mut fx);
        let mut fx = Effects::default();
        u.tick(100, &mut fx);
        assert_eq!(fanouts(&fx), vec![(true, PresenceScope::Node)]);
        // Gone meanwhile, within the debounce: still online.
        u.presence_unrecorded(a.clone());
        u.presence_done(&a, PresenceScope::Node, &mut fx);
        u.device_down(a.clone(), "d", at(0, 1), 200);
        let mut fx = Effects::default();
        u.tick(300, &mut fx);
        assert_eq!(fanouts(&fx), vec![(true, PresenceScope::Node)]);
        let mut fx = Effects::default();
        u.tick(400, &mut fx);
        assert!(fanouts(&fx).is_empty(), "written once");
    }
}
