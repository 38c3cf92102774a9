//! # chat-model — the words the gateway, its protocol and its store share
//!
//! A chat channel is a dense sequence of messages numbered from 1 ([`Seq`]).
//! This crate holds the values every part of the product talks about and
//! nothing else: no I/O, no runtime, no wire format, no storage engine.
//!
//! - [`names`]: user, device and group ids, and channel names (`dm:<a>:<b>`,
//!   `group:<id>`, `room:<name>`), with [`Channel`], a validated channel
//!   name that is cheap to clone.
//! - [`Channel`] and [`Seq`] implement serde's traits as the bare name and
//!   number, so a struct holding them serializes exactly as one holding a
//!   `String` and a `u64` would (no wire format lives here: `chat-proto`
//!   writes the protocol's frames).
//! - The message values (`types.rs`): a message as sent ([`NewMessage`]),
//!   as stored and read back in its current view ([`StoredMessage`], the
//!   value the embedded store archives with rkyv), its [`MessageKind`] and
//!   [`Media`]; an append ([`ChannelAppend`]) and what became of each
//!   message ([`AppendOutcome`], [`RejectReason`], [`ChannelOutcome`]); a
//!   read ([`ReadRange`], [`ReadLimit`]) and its [`Page`]; cursor updates.
//!
//! Who depends on it: `chat-proto` (the wire protocol encodes and decodes
//! these values), `chat-core` (the shards' state machines), `storage` (the
//! `Store` trait takes and returns them; it re-exports them, so
//! `storage::Seq` and `chat_model::Seq` are one type), and `loadgen`
//! through `chat-proto`. The dependency points one way: the protocol does
//! not depend on the store, nor the store on the protocol.

mod channel;
pub mod names;
mod types;

pub use channel::Channel;
pub use names::{dm_channel, is_valid_id, parse_channel, ChannelName, MAX_CHANNEL_BYTES};
pub use types::*;
