//! The owner of a channel: the only writer of its sequence.
//!
//! Every channel has one owner shard (`hash::owner_of`). The owner
//! deduplicates sends that are still in flight, groups everything that
//! arrived for its channels into one store commit (group commit; at most one
//! commit per shard — hence per channel — in flight), and only once the store
//! says the commit is durable does it ack the senders and hand each shard
//! with subscribers one shared batch (store before deliver). The store is the
//! authority on the head and assigns seqs, so a failed commit leaves no hole:
//! its senders get `unavailable`, the head is reloaded, and nothing was built
//! on the failed seqs.
//!
//! This module does no I/O: it consumes requests and store results and
//! pushes messages and I/O jobs into [`Effects`].

//! | file | what |
//! |---|---|
//! | `state.rs` | [`Owner`], one `OwnedChannel` per owned channel, helpers |
//! | `commits.rs` | sends, dedup in flight, the group commit and its outcome |
//! | `joins.rs` | joins and heads, typing, room presence |
//! | `groups.rs` | a group's members: the gate, membership changes, group presence |

mod commits;
mod groups;
mod joins;
mod state;

pub(crate) use state::{JoinWaiter, Owner, ROOM_PREFIX};
