//! Running the store jobs a shard asks for: plain, blocking functions over
//! a `&dyn Store` (the runtime runs them on its store threads; the
//! simulator runs them in line). The domain rules that need the store live
//! here or next to their role (`receipts.rs`, `discovery.rs`), not in the
//! runtime: the runtime only decides *where* a job runs.
//!
//! Three kinds of job are not store calls and are the runtime's own:
//! [`IoJob::Append`] (the committer merges every shard's commit into one
//! store call), [`IoJob::CatchUpLater`] (a timer) and [`IoJob::Push`] (an
//! HTTP delivery). [`run_store_job`] refuses them.

use std::sync::Arc;

use chat_model::{names, Channel};
use chat_proto::ErrorCode;
use storage::{Store, StoreError};

use crate::error::JobError;
use crate::receipts::stored_channel;
use crate::vocab::{GroupOp, IoJob, JobDone, PresenceScope};

thread_local! {
    /// How many [`guarded`] calls this thread is inside.
    static GUARDED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether a panic on this thread now is a store call's, which [`guarded`]
/// contains. Any other panic is a broken invariant of the gateway's own:
/// the binary's panic hook ends the process then (a dead shard thread would
/// leave its listener accepting into a queue nobody reads).
#[must_use]
pub fn panic_is_contained() -> bool {
    GUARDED.with(|g| g.get() > 0)
}

/// Runs a store call, turning a panic into [`JobError::Panicked`] (a
/// panicking backend must not take the shard down with it).
pub fn guarded<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, JobError> {
    struct Inside;
    impl Drop for Inside {
        fn drop(&mut self) {
            GUARDED.with(|g| g.set(g.get() - 1));
        }
    }
    GUARDED.with(|g| g.set(g.get() + 1));
    let _inside = Inside;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(JobError::from(e)),
        Err(_) => Err(JobError::Panicked),
    }
}

/// A store call whose answer may also be a refusal on the caller's terms.
fn refusable<T>(
    f: impl FnOnce() -> Result<Result<T, (ErrorCode, &'static str)>, StoreError>,
) -> Result<T, JobError> {
    guarded(f).and_then(|r| r.map_err(|(code, message)| JobError::Refused { code, message }))
}

/// Whether `job` is a store call for [`run_store_job`].
#[must_use]
pub fn is_store_job(job: &IoJob) -> bool {
    !matches!(
        job,
        IoJob::Append(_) | IoJob::CatchUpLater { .. } | IoJob::TierTimer { .. } | IoJob::Push(_)
    )
}

/// Runs one store job and returns its result. Blocking.
///
/// # Panics
///
/// Never for the jobs [`is_store_job`] accepts; the others are a caller's
/// bug and are answered as store failures.
#[must_use]
pub fn run_store_job(store: &dyn Store, job: IoJob) -> JobDone {
    match job {
        IoJob::LoadHead(channel) => {
            let result = guarded(|| store.head(&channel));
            JobDone::HeadLoaded { channel, result }
        }
        IoJob::NodeSubscribe {
            node,
            channel,
            token,
        } => {
            let result = guarded(|| match store.cluster() {
                Some(c) => c.subscribe(&node, &channel, token),
                None => store.head(&channel),
            });
            JobDone::NodeSubscribed {
                channel,
                token,
                result,
            }
        }
        IoJob::NodeUnsubscribe {
            node,
            channel,
            token,
        } => {
            let result = guarded(|| match store.cluster() {
                Some(c) => c.unsubscribe(&node, &channel, token),
                None => Ok(()),
            });
            JobDone::NodeUnsubscribed { channel, result }
        }
        IoJob::CatchUp {
            conn,
            channel,
            gen,
            after,
            limit,
        } => {
            let result =
                guarded(|| store.read(&channel, chat_model::ReadRange::After(after), limit));
            JobDone::CatchUpPage {
                conn,
                channel,
                gen,
                result,
            }
        }
        IoJob::History {
            conn,
            channel,
            range,
            limit,
            id,
            member_check,
        } => {
            let result = refusable(|| {
                if let Some(user) = &member_check {
                    if let Err(refused) = member_of(store, &channel, user)? {
                        return Ok(Err(refused));
                    }
                }
                store.read(&channel, range, limit).map(Ok)
            });
            JobDone::History {
                conn,
                channel,
                id,
                keep_newest: !matches!(range, chat_model::ReadRange::After(_)),
                result,
            }
        }
        IoJob::ReadCheck {
            conn,
            user,
            channel,
            seq,
            id,
        } => {
            let result = refusable(|| member_of(store, &channel, &user));
            JobDone::ReadChecked {
                conn,
                user,
                channel,
                seq,
                id,
                result,
            }
        }
        IoJob::PresenceFanout {
            user,
            online,
            scope,
        } => {
            let result = guarded(|| {
                if scope == PresenceScope::Node {
                    // Only a change of the cluster-wide state is announced
                    // (the store told the other nodes in the same
                    // transaction).
                    if let Some(c) = store.cluster() {
                        if !c.set_presence(&user, online)? {
                            return Ok(Vec::new());
                        }
                    }
                }
                presence_targets(store, &user)
            });
            JobDone::PresenceTargets {
                user,
                online,
                scope,
                result,
            }
        }
        IoJob::Typing { channel, user } => {
            if let Some(c) = store.cluster() {
                if let Err(e) = guarded(|| c.typing(&channel, &user)) {
                    tracing::debug!(channel = %channel, error = %e, "typing to other nodes failed (ephemeral: dropped)");
                }
            }
            JobDone::TypingSent
        }
        IoJob::ReadsToNodes { reads } => {
            if let Some(c) = store.cluster() {
                if let Err(e) = guarded(|| c.reads(&reads)) {
                    tracing::debug!(reads = reads.len(), error = %e, "read pushes to other nodes failed (ephemeral: dropped)");
                }
            }
            JobDone::ReadsSent
        }
        IoJob::PresenceOnline { reply, users } => {
            let users = match store.cluster().map(|c| guarded(|| c.online(&users))) {
                Some(Ok(online)) => online.into_iter().map(Arc::from).collect(),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "cluster presence query failed: answering with this node's users");
                    Vec::new()
                }
                None => Vec::new(),
            };
            JobDone::PresenceOnline { reply, users }
        }
        IoJob::Unread {
            conn,
            user,
            pending,
            channels,
        } => {
            if channels {
                let result = guarded(|| crate::discovery::my_channels(store, &user, &pending));
                JobDone::Channels { conn, result }
            } else {
                let result = guarded(|| crate::receipts::unread(store, &user, &pending));
                JobDone::Unread { conn, result }
            }
        }
        IoJob::FlushCursors { reads, delivered } => {
            let retry = (reads.clone(), delivered.clone());
            let result = guarded(|| crate::receipts::write_cursors(store, reads, &delivered));
            JobDone::CursorsFlushed { result, retry }
        }
        IoJob::LoadMembers(channel) => {
            let result = guarded(|| store.members(&channel));
            JobDone::MembersLoaded { channel, result }
        }
        IoJob::GroupWrite { channel, op, reply } => {
            let result = guarded(|| match &op {
                GroupOp::Create(members) => {
                    let id = channel
                        .strip_prefix(chat_model::GROUP_PREFIX)
                        .unwrap_or(&channel);
                    store.create_group(id, members).map(|()| true)
                }
                GroupOp::Add(user) => store.add_member(&channel, user),
                GroupOp::Remove(user) => store.remove_member(&channel, user),
            });
            JobDone::GroupWritten {
                channel,
                op,
                reply,
                result,
            }
        }
        IoJob::Append(appends) => JobDone::Appended {
            appends,
            result: Err(JobError::Stopped),
        },
        IoJob::CatchUpLater {
            conn, channel, gen, ..
        } => JobDone::CatchUpRetry { conn, channel, gen },
        IoJob::TierTimer { slot, .. } => JobDone::TiersDue { slot },
        IoJob::Push(_) => JobDone::Pushed,
    }
}

/// Whether `user` is a member of the group `channel` (refused as
/// `not_found` / `not_member`).
pub(crate) fn member_of(
    s: &dyn Store,
    channel: &Channel,
    user: &str,
) -> Result<Result<(), (ErrorCode, &'static str)>, StoreError> {
    Ok(match s.members(channel)? {
        None => Err((ErrorCode::NotFound, "no such group")),
        Some(m) if !m.iter().any(|u| u == user) => {
            Err((ErrorCode::NotMember, "not a member of this group"))
        }
        Some(_) => Ok(()),
    })
}

/// The channels (and their other members) to tell about `user`'s presence:
/// the user's groups and DMs (a DM counts once it holds a message).
pub(crate) fn presence_targets(
    s: &dyn Store,
    user: &str,
) -> Result<Vec<(Channel, Vec<String>)>, StoreError> {
    let mut out = Vec::new();
    for channel in s.channels_of(user)? {
        if let Ok(names::ChannelName::Dm { a, b }) = names::parse_channel(&channel) {
            let other = if a == user { b } else { a }.to_string();
            out.push((stored_channel(channel), vec![other]));
        } else if let Some(members) = s.members(&channel)? {
            let others: Vec<String> = members.into_iter().filter(|m| m != user).collect();
            out.push((stored_channel(channel), others));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_store_call_is_contained_and_one_outside_is_not() {
        assert!(!panic_is_contained());
        let seen = guarded(|| {
            assert!(panic_is_contained());
            Ok(guarded(|| Ok(panic_is_contained())))
        });
        assert!(matches!(seen, Ok(Ok(true))));
        assert!(!panic_is_contained());
        // A store call that panics is answered as a failure and the flag
        // is cleared on the way out.
        let r: Result<(), JobError> = guarded(|| panic!("backend bug"));
        assert!(matches!(r, Err(JobError::Panicked)));
        assert!(!panic_is_contained());
    }
}
