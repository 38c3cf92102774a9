//! The message values: as sent, as stored, appended, read.

use rkyv::{Archive, Deserialize, Serialize};

/// A position in one channel's sequence. Dense, starting at 1; `Seq(0)` means
/// "before the first message" (the head of an empty channel).
///
/// In serde it is the bare number (`#[serde(transparent)]`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// The head of an empty channel.
    pub const ZERO: Seq = Seq(0);

    /// The next position.
    #[must_use]
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The prefix of every group channel name: a group `<id>` is the channel
/// `group:<id>`.
pub const GROUP_PREFIX: &str = "group:";

/// The channel name of the group `group_id`: `group:<group_id>`.
#[must_use]
pub fn group_channel(group_id: &str) -> String {
    format!("{GROUP_PREFIX}{group_id}")
}

/// What a message is. Stored as a small integer; new kinds are appended.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum MessageKind {
    /// Plain text.
    Text,
    /// Media metadata (claim-check); `text` is an optional caption.
    Media,
    /// An edit of the message at `target`.
    Edit,
    /// A delete of the message at `target`.
    Delete,
}

impl MessageKind {
    /// The protocol name of the kind.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Media => "media",
            MessageKind::Edit => "edit",
            MessageKind::Delete => "delete",
        }
    }
}

/// Media metadata carried by a `media` message. No bytes are stored.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Media {
    /// Where the client can fetch the object.
    pub url: String,
    /// Its MIME type.
    pub mime: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A message the owner shard wants stored. The store assigns its `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// Sending user id.
    pub from: String,
    /// Sending device id.
    pub device: String,
    /// Client-chosen id, unique per (channel, user, device); the dedup key.
    pub client_msg_id: String,
    /// Kind of message.
    pub kind: MessageKind,
    /// Text (may be empty for deletes).
    pub text: String,
    /// Target seq for edits and deletes.
    pub target: Option<u64>,
    /// Media metadata for media messages.
    pub media: Option<Media>,
    /// Commit timestamp, milliseconds since the Unix epoch, set by the owner.
    pub ts: u64,
}

/// A message as stored: a `NewMessage` plus its position, and — for a
/// message that later edits or deletes targeted — its current view. This is
/// the value the embedded backend archives with rkyv.
///
/// Reads (`Store::read`, `Store::message`) return the
/// *current view* of each message:
///
/// - after an accepted edit of it, `text` is the latest edit's text and
///   `edited` is true;
/// - after an accepted delete of it, `deleted` is true, `text` is empty and
///   `media` is `None` (nothing of a deleted message's content stays
///   readable); `edited` keeps the value it had.
///
/// The `edit` / `delete` events themselves are stored as sent and never
/// change: for them `edited` and `deleted` are always false.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct StoredMessage {
    /// Position in the channel.
    pub seq: u64,
    /// Sending user id.
    pub from: String,
    /// Sending device id.
    pub device: String,
    /// Client-chosen id.
    pub client_msg_id: String,
    /// Kind of message.
    pub kind: MessageKind,
    /// Text.
    pub text: String,
    /// Target seq for edits and deletes.
    pub target: Option<u64>,
    /// Media metadata.
    pub media: Option<Media>,
    /// Commit timestamp (ms since the Unix epoch).
    pub ts: u64,
    /// A later edit changed `text` (which is the latest edit's text).
    pub edited: bool,
    /// A later delete removed the message: `text` is empty and `media` is
    /// `None`.
    pub deleted: bool,
}

impl StoredMessage {
    /// The stored form of `m` at position `seq`, as it is when committed:
    /// neither `edited` nor `deleted`.
    #[must_use]
    pub fn from_new(seq: Seq, m: &NewMessage) -> StoredMessage {
        StoredMessage {
            seq: seq.0,
            from: m.from.clone(),
            device: m.device.clone(),
            client_msg_id: m.client_msg_id.clone(),
            kind: m.kind,
            text: m.text.clone(),
            target: m.target,
            media: m.media.clone(),
            ts: m.ts,
            edited: false,
            deleted: false,
        }
    }

    /// Whether this is an `edit` or `delete` event (which targets another
    /// message) rather than a message with content of its own.
    #[must_use]
    pub fn is_event(&self) -> bool {
        matches!(self.kind, MessageKind::Edit | MessageKind::Delete)
    }
}

/// All messages for one channel in one `append` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelAppend {
    /// Channel name (already validated by the caller).
    pub channel: String,
    /// Messages in the order they are to be sequenced.
    pub messages: Vec<NewMessage>,
}

/// What happened to one message of an `append`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored at `seq` with timestamp `ts`.
    Stored {
        /// Assigned position.
        seq: Seq,
        /// Commit timestamp (ms).
        ts: u64,
    },
    /// The dedup key was already stored (earlier, or earlier in this batch)
    /// with the same content: nothing new was written; this is the original.
    Duplicate {
        /// The original's position.
        seq: Seq,
        /// The original's timestamp.
        ts: u64,
    },
    /// The dedup key was already stored with different content: nothing was
    /// written.
    Conflict {
        /// The original's position.
        seq: Seq,
    },
    /// An `edit` or `delete` the store refused (see [`RejectReason`]):
    /// nothing was written for it, it took no seq and left no dedup key (a
    /// retry is checked again). Later messages of the same call are
    /// sequenced as if it had not been given.
    Rejected {
        /// Why.
        reason: RejectReason,
    },
}

/// Why `append` refused an `edit` or `delete`. The checks run in the order of
/// the variants; the first that fails is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// `target` is missing, or names no message of the channel (0, or beyond
    /// the head, counting messages stored earlier in the same call).
    TargetMissing,
    /// The target is itself an `edit` or `delete` event.
    TargetIsEvent,
    /// The sender (`from`) is not the target's author.
    NotAuthor,
    /// The target was already deleted.
    TargetDeleted,
}

impl RejectReason {
    /// A short, stable, snake_case name (for logs and metrics labels).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::TargetMissing => "target_missing",
            RejectReason::TargetIsEvent => "target_is_event",
            RejectReason::NotAuthor => "not_author",
            RejectReason::TargetDeleted => "target_deleted",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RejectReason::TargetMissing => "the target message does not exist",
            RejectReason::TargetIsEvent => "the target is itself an edit or delete",
            RejectReason::NotAuthor => "only the author may edit or delete a message",
            RejectReason::TargetDeleted => "the target message was already deleted",
        })
    }
}

/// One coalesced delivered-cursor update for
/// `Store::advance_delivered_batch`: (user, device, channel, seq).
pub type DeliveredUpdate = (String, String, String, Seq);

/// One read-cursor update for `Store::advance_read_batch`: (user,
/// channel, seq).
pub type ReadUpdate = (String, String, Seq);

/// The result of `append` for one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelOutcome {
    /// One outcome per message, in the order given.
    pub outcomes: Vec<AppendOutcome>,
    /// The channel's head after the append.
    pub head: Seq,
}

/// Which part of a channel to read. Bounds are exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadRange {
    /// The newest messages (the page ending at the head).
    Latest,
    /// Messages with seq < the bound, newest first up to the limit, returned
    /// ascending.
    Before(Seq),
    /// Messages with seq > the bound, oldest first up to the limit.
    After(Seq),
}

/// Limits of one read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimit {
    /// At most this many messages (at least 1).
    pub messages: usize,
    /// Stop once the text of the page reaches this many bytes; the page
    /// always holds at least one message when any is in range.
    pub bytes: usize,
}

/// A page of history, ascending by seq.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// Messages, ascending.
    pub messages: Vec<StoredMessage>,
    /// More messages exist in the direction read (beyond the page).
    pub has_more: bool,
}

/// Whether the store accepts writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Reads and writes work.
    Healthy,
    /// Writes are refused for good (for example after a failed fsync); the
    /// process must restart on a good disk.
    Poisoned(String),
}
