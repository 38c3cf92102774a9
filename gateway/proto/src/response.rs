//! Server → client encoders.
//!
//! Each function appends ONE complete unmasked WebSocket text frame to `out`
//! (through [`encode_text_with`], so the JSON is written in place after the
//! frame header). The bytes are the same for every recipient: encode a `msg`
//! once and share it.
//!
//! JSON is produced by serde from small borrowed structs whose field names
//! are the protocol's, so strings are always escaped correctly. An `id`
//! argument is the raw JSON text of the request's id ([`Envelope::id`]),
//! echoed verbatim as `"id":<raw>`; `None` omits the field.
//!
//! `history` messages have exactly the shape of a live `msg` event,
//! `"type":"msg"` and `"channel"` included, so a client can hand both to the
//! same code.
//!
//! The `*_json` functions write bare JSON bodies (no frame) for the HTTP API.
//!
//! Client-side counterparts (request encoders, [`decode_server_event`]) live
//! in [`super::client`] and are re-exported here.
//!
//! [`Envelope::id`]: super::request::Envelope::id

use chat_model::{Media, MessageKind, StoredMessage};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::request::ErrorCode;
use super::ws::encode_text_with;

pub use super::client::{
    decode_server_event, encode_join, encode_ping, encode_request, encode_send, ClientMsg,
    ServerEvent,
};

/// The limits announced in `hello`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloLimits {
    /// Longest message text, in characters.
    pub max_text_chars: usize,
    /// Largest frame the server accepts, in bytes.
    pub max_frame_bytes: usize,
    /// Largest `limit` of a `history` request.
    pub history_max_limit: usize,
}

/// A message as sent to clients (`msg` events and history pages), borrowed
/// from wherever the message lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgView<'a> {
    /// Position in the channel.
    pub seq: u64,
    /// Sending user.
    pub from: &'a str,
    /// Sending device.
    pub device: &'a str,
    /// The sender's id for the send.
    pub client_msg_id: &'a str,
    /// Kind of message.
    pub kind: MessageKind,
    /// Text; `None` omits the field (a message later deleted).
    pub text: Option<&'a str>,
    /// Commit time, ms since the Unix epoch.
    pub ts: u64,
    /// Edited or deleted seq, for kinds `edit` and `delete`.
    pub target: Option<u64>,
    /// Media metadata, for kind `media`.
    pub media: Option<&'a Media>,
    /// The message was edited later (`text` is the latest); sent only when
    /// true.
    pub edited: bool,
    /// The message was deleted later (`text` is then `None`); sent only
    /// when true.
    pub deleted: bool,
}

impl<'a> MsgView<'a> {
    /// The message as stored: text present, not marked edited or deleted.
    /// History and replay set `text`, `edited` and `deleted` from later edits
    /// and deletes.
    #[must_use]
    pub fn from_stored(m: &'a StoredMessage) -> Self {
        MsgView {
            seq: m.seq,
            from: &m.from,
            device: &m.device,
            client_msg_id: &m.client_msg_id,
            kind: m.kind,
            text: (!m.deleted).then_some(m.text.as_str()),
            ts: m.ts,
            target: m.target,
            media: m.media.as_ref(),
            edited: m.edited,
            deleted: m.deleted,
        }
    }
}

/// `hello`, sent once after the upgrade.
// One field per argument: the frame is the argument list.
#[allow(clippy::too_many_arguments)]
pub fn hello(
    out: &mut Vec<u8>,
    user: &str,
    device: &str,
    session: &str,
    shard: usize,
    heartbeat_ms: u64,
    limits: &HelloLimits,
    node: Option<&str>,
) {
    #[derive(Serialize)]
    struct Hello<'a> {
        r#type: &'static str,
        user: &'a str,
        device: &'a str,
        session: &'a str,
        shard: usize,
        heartbeat_ms: u64,
        limits: &'a HelloLimits,
        #[serde(skip_serializing_if = "Option::is_none")]
        node: Option<&'a str>,
    }
    frame(
        out,
        &Hello {
            r#type: "hello",
            user,
            device,
            session,
            shard,
            heartbeat_ms,
            limits,
            node,
        },
    );
}

/// `joined` {channel, head}: the reply to `join`.
pub fn joined(out: &mut Vec<u8>, id: Option<&str>, channel: &str, head: u64) {
    #[derive(Serialize)]
    struct Joined<'a> {
        r#type: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
        channel: &'a str,
        head: u64,
    }
    frame(
        out,
        &Joined {
            r#type: "joined",
            id: raw_id(id),
            channel,
            head,
        },
    );
}

/// `head` {channel, head}: the channel's head moved (unsolicited, for
/// members that joined with `mode` `counts`).
pub fn head(out: &mut Vec<u8>, channel: &str, head: u64) {
    #[derive(Serialize)]
    struct Head<'a> {
        r#type: &'static str,
        channel: &'a str,
        head: u64,
    }
    frame(
        out,
        &Head {
            r#type: "head",
            channel,
            head,
        },
    );
}

/// `left` {channel}: the reply to `leave`.
pub fn left(out: &mut Vec<u8>, id: Option<&str>, channel: &str) {
    #[derive(Serialize)]
    struct Left<'a> {
        r#type: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
        channel: &'a str,
    }
    frame(
        out,
        &Left {
            r#type: "left",
            id: raw_id(id),
            channel,
        },
    );
}

#[derive(Serialize)]
struct Ack<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    r#type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RawValue>,
    channel: &'a str,
    client_msg_id: &'a str,
    seq: u64,
    ts: u64,
    duplicate: bool,
}

/// `ack` {channel, client_msg_id, seq, ts, duplicate}: the reply to `send`,
/// `edit` and `delete`.
pub fn ack(
    out: &mut Vec<u8>,
    id: Option<&str>,
    channel: &str,
    client_msg_id: &str,
    seq: u64,
    ts: u64,
    duplicate: bool,
) {
    frame(
        out,
        &Ack {
            r#type: Some("ack"),
            id: raw_id(id),
            channel,
            client_msg_id,
            seq,
            ts,
            duplicate,
        },
    );
}

/// The HTTP body of a send: `{channel, client_msg_id, seq, ts, duplicate}`.
pub fn ack_json(
    out: &mut Vec<u8>,
    channel: &str,
    client_msg_id: &str,
    seq: u64,
    ts: u64,
    duplicate: bool,
) {
    write_json(
        out,
        &Ack {
            r#type: None,
            id: None,
            channel,
            client_msg_id,
            seq,
            ts,
            duplicate,
        },
    );
}

/// Media metadata as JSON `{url, mime, size}`.
#[derive(Serialize)]
pub(crate) struct MediaJson<'a> {
    url: &'a str,
    mime: &'a str,
    size: u64,
}

impl<'a> From<&'a Media> for MediaJson<'a> {
    fn from(media: &'a Media) -> Self {
        MediaJson {
            url: &media.url,
            mime: &media.mime,
            size: media.size,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A `msg` event, also an element of a history page.
#[derive(Serialize)]
struct MsgJson<'a> {
    r#type: &'static str,
    channel: &'a str,
    seq: u64,
    from: &'a str,
    device: &'a str,
    client_msg_id: &'a str,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    media: Option<MediaJson<'a>>,
    #[serde(skip_serializing_if = "is_false")]
    edited: bool,
    #[serde(skip_serializing_if = "is_false")]
    deleted: bool,
}

impl<'a> MsgJson<'a> {
    fn new(channel: &'a str, m: &MsgView<'a>) -> Self {
        MsgJson {
            r#type: "msg",
            channel,
            seq: m.seq,
            from: m.from,
            device: m.device,
            client_msg_id: m.client_msg_id,
            kind: m.kind.as_str(),
            text: m.text,
            ts: m.ts,
            target: m.target,
            media: m.media.map(MediaJson::from),
            edited: m.edited,
            deleted: m.deleted,
        }
    }
}

/// `msg` {channel, seq, from, device, client_msg_id, kind, text?, ts,
/// target?, media?, edited?, deleted?}; `edited` and `deleted` only when
/// true.
pub fn msg(out: &mut Vec<u8>, channel: &str, m: &MsgView<'_>) {
    frame(out, &MsgJson::new(channel, m));
}

/// The messages of a page, serialized without collecting them first.
struct MsgList<'c, 'm> {
    channel: &'c str,
    messages: &'m [MsgView<'m>],
}

impl Serialize for MsgList<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.messages.len()))?;
        for m in self.messages {
            seq.serialize_element(&MsgJson::new(self.channel, m))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct History<'a, 'm> {
    #[serde(skip_serializing_if = "Option::is_none")]
    r#type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RawValue>,
    channel: &'a str,
    messages: MsgList<'a, 'm>,
    has_more: bool,
}

/// `history` {channel, messages: [msg…] ascending, has_more}: the reply to
/// `history`. Each message is a complete `msg` object (`"type":"msg"` and
/// `"channel"` included).
pub fn history(
    out: &mut Vec<u8>,
    id: Option<&str>,
    channel: &str,
    messages: &[MsgView<'_>],
    has_more: bool,
) {
    frame(
        out,
        &History {
            r#type: Some("history"),
            id: raw_id(id),
            channel,
            messages: MsgList { channel, messages },
            has_more,
        },
    );
}

/// The largest server frame, in bytes of payload: what every client must
/// accept (protocol: "Server frames are at most 2 MiB too"). History pages
/// are cut to fit it.
pub const MAX_SERVER_FRAME_BYTES: usize = 2 * 1024 * 1024;

/// Bytes of frame header in front of any payload up to 2^64 (RFC 6455: 2 +
/// 8 for a 64-bit length; server frames are unmasked).
const MAX_FRAME_HEADER_BYTES: usize = 10;

/// A sink that only counts bytes.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Which messages of a page fit one `history` frame of at most `max_bytes`
/// (header included): the newest ones when `keep_newest` (pages read
/// backwards: the latest page, `before`), else the oldest (`after`). Returns
/// the index range into `messages` to send; it holds at least one message
/// when `messages` is not empty, even if that one alone is larger (a single
/// message is bounded by the text limit: see `docs/reliability.md`). When
/// the range is shorter than `messages`, the page has more in the direction
/// read.
#[must_use]
pub fn history_fit(
    id: Option<&str>,
    channel: &str,
    messages: &[MsgView<'_>],
    keep_newest: bool,
    max_bytes: usize,
) -> std::ops::Range<usize> {
    let n = messages.len();
    let mut empty = Counter(0);
    let envelope = History {
        r#type: Some("history"),
        id: raw_id(id),
        channel,
        messages: MsgList {
            channel,
            messages: &[],
        },
        has_more: true,
    };
    let _ = serde_json::to_writer(&mut empty, &envelope);
    let mut used = MAX_FRAME_HEADER_BYTES + empty.0;
    let mut taken = 0;
    for i in 0..n {
        let m = if keep_newest {
            &messages[n - 1 - i]
        } else {
            &messages[i]
        };
        let mut c = Counter(1); // the comma before it
        let _ = serde_json::to_writer(&mut c, &MsgJson::new(channel, m));
        if taken > 0 && used + c.0 > max_bytes {
            break;
        }
        used += c.0;
        taken += 1;
    }
    if keep_newest {
        n - taken..n
    } else {
        0..taken
    }
}

/// The HTTP body of a history page: `{channel, messages, has_more}`, the
/// messages as in [`history`].
pub fn history_json(out: &mut Vec<u8>, channel: &str, messages: &[MsgView<'_>], has_more: bool) {
    write_json(
        out,
        &History {
            r#type: None,
            id: None,
            channel,
            messages: MsgList { channel, messages },
            has_more,
        },
    );
}

/// `pong`: the reply to `ping`.
pub fn pong(out: &mut Vec<u8>, id: Option<&str>) {
    #[derive(Serialize)]
    struct Pong<'a> {
        r#type: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    }
    frame(
        out,
        &Pong {
            r#type: "pong",
            id: raw_id(id),
        },
    );
}

/// `error` {id?, code, message}.
pub fn error(out: &mut Vec<u8>, id: Option<&str>, code: ErrorCode, message: &str) {
    #[derive(Serialize)]
    struct Error<'a> {
        r#type: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
        code: &'static str,
        message: &'a str,
    }
    frame(
        out,
        &Error {
            r#type: "error",
            id: raw_id(id),
            code: code.as_str(),
            message,
        },
    );
}

/// `done` {id?}: a request without a WebSocket reply (a `read` made through
/// the HTTP API) succeeded. Internal to the HTTP API.
pub fn done(out: &mut Vec<u8>, id: Option<&str>) {
    encode_text_with(out, |b| {
        b.extend_from_slice(b"{\"type\":\"done\"");
        if let Some(id) = id {
            b.extend_from_slice(b",\"id\":");
            b.extend_from_slice(id.as_bytes());
        }
        b.push(b'}');
    });
}

/// `group` {id?, channel}: a membership change (HTTP API) succeeded. Internal
/// to the HTTP API; never sent over a WebSocket.
pub fn group_done(out: &mut Vec<u8>, id: Option<&str>, channel: &str) {
    encode_text_with(out, |b| {
        b.extend_from_slice(b"{\"type\":\"group\"");
        if let Some(id) = id {
            b.extend_from_slice(b",\"id\":");
            b.extend_from_slice(id.as_bytes());
        }
        b.extend_from_slice(b",\"channel\":");
        let _ = serde_json::to_writer(&mut *b, channel);
        b.push(b'}');
    });
}

/// `typing` {channel, user}.
pub fn typing(out: &mut Vec<u8>, channel: &str, user: &str) {
    #[derive(Serialize)]
    struct Typing<'a> {
        r#type: &'static str,
        channel: &'a str,
        user: &'a str,
    }
    frame(
        out,
        &Typing {
            r#type: "typing",
            channel,
            user,
        },
    );
}

#[derive(Serialize)]
struct Presence<'a, 'u> {
    #[serde(skip_serializing_if = "Option::is_none")]
    r#type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RawValue>,
    channel: &'a str,
    online: &'a [&'u str],
    count: usize,
}

/// `presence` {channel, online: [user…], count}: the reply to `presence`.
/// The caller passes at most the first 100 users in `online`, and the total
/// in `count`.
pub fn presence(out: &mut Vec<u8>, id: Option<&str>, channel: &str, online: &[&str], count: usize) {
    frame(
        out,
        &Presence {
            r#type: Some("presence"),
            id: raw_id(id),
            channel,
            online,
            count,
        },
    );
}

/// The HTTP body of a presence query: `{channel, online, count}`.
pub fn presence_json(out: &mut Vec<u8>, channel: &str, online: &[&str], count: usize) {
    write_json(
        out,
        &Presence {
            r#type: None,
            id: None,
            channel,
            online,
            count,
        },
    );
}

/// `presence_update` {channel, user, status: "online" | "offline"}.
pub fn presence_update(out: &mut Vec<u8>, channel: &str, user: &str, online: bool) {
    #[derive(Serialize)]
    struct PresenceUpdate<'a> {
        r#type: &'static str,
        channel: &'a str,
        user: &'a str,
        status: &'static str,
    }
    frame(
        out,
        &PresenceUpdate {
            r#type: "presence_update",
            channel,
            user,
            status: if online { "online" } else { "offline" },
        },
    );
}

/// `read` {channel, user, seq}: a member's read cursor advanced.
pub fn read(out: &mut Vec<u8>, channel: &str, user: &str, seq: u64) {
    #[derive(Serialize)]
    struct Read<'a> {
        r#type: &'static str,
        channel: &'a str,
        user: &'a str,
        seq: u64,
    }
    frame(
        out,
        &Read {
            r#type: "read",
            channel,
            user,
            seq,
        },
    );
}

/// The raw JSON id as a `RawValue` (borrowed, not copied). An id that is not
/// valid JSON (a caller bug: ids come from [`super::request::Envelope::id`])
/// is dropped rather than corrupting the reply.
fn raw_id(id: Option<&str>) -> Option<&RawValue> {
    let raw = id.and_then(|s| serde_json::from_str::<&RawValue>(s).ok());
    debug_assert_eq!(raw.is_some(), id.is_some(), "id must be raw JSON: {id:?}");
    raw
}

/// Appends `value` as JSON.
pub fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing to a Vec cannot fail, and these values (strings, numbers,
    // bools, structs, sequences) always serialize.
    let result = serde_json::to_writer(&mut *out, value);
    debug_assert!(result.is_ok(), "JSON serialization failed: {result:?}");
}

/// Appends `value` as JSON in one unmasked text frame.
fn frame<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    encode_text_with(out, |buf| write_json(buf, value));
}

#[cfg(test)]
mod tests;
