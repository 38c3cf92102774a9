//! Decoding client requests: one text frame holds one JSON object.
//!
//! [`decode_request`] parses the object once with serde into borrowed fields
//! (strings without escapes, which is every channel and most ids and texts,
//! are not copied), then checks the fields the request's `type` needs.
//! Channel names are validated with [`parse_channel`] here, so the rest of
//! the gateway can trust them.
//!
//! When serde refuses the object, a second, slower pass finds out why (which
//! field has the wrong type) so the `bad_request` message can name it, and
//! reads the `id` so the error reply can echo it. Errors are rare; the common
//! path pays for nothing of this.
//!
//! Unknown fields are ignored (forward compatibility). A `null` field counts
//! as absent, except `id`, which must be a number or a string.

use std::borrow::Cow;
use std::fmt;

use chat_model::{Media, MessageKind};
use serde::de::{Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::names::parse_channel;

/// Request limits, from the gateway configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest message text, in characters (Unicode scalar values). Default
    /// 100,000.
    pub max_text_chars: usize,
    /// Largest `limit` of a `history` request. Default 200.
    pub history_max_limit: usize,
    /// `limit` of a `history` request that gives none. Default 50.
    pub history_default_limit: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_text_chars: 100_000,
            history_max_limit: 200,
            history_default_limit: 50,
        }
    }
}

/// The `code` of an `error` reply (protocol.md, "Server → client").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is malformed: not JSON, not an object, a missing or
    /// wrong-typed field, a value out of range.
    BadRequest,
    /// The request's `type` is not one the server knows.
    UnknownType,
    /// The channel name is not valid.
    InvalidChannel,
    /// The user is not a member of the channel.
    NotMember,
    /// The user may not do this (for example edit another user's message).
    Forbidden,
    /// The thing referred to does not exist.
    NotFound,
    /// The text is longer than the limit.
    MessageTooLarge,
    /// A retried send carries different content than the original.
    Conflict,
    /// The user sends too fast.
    RateLimited,
    /// The server cannot serve this now; retry later.
    Unavailable,
}

impl ErrorCode {
    /// Every code, in protocol order.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownType,
        ErrorCode::InvalidChannel,
        ErrorCode::NotMember,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MessageTooLarge,
        ErrorCode::Conflict,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
    ];

    /// The wire name, e.g. `"bad_request"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::NotMember => "not_member",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// The HTTP status of this error in the HTTP API (protocol.md, "HTTP
    /// API"). `unknown_type` has no HTTP use; it maps to 400.
    #[must_use]
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::UnknownType | ErrorCode::InvalidChannel => 400,
            ErrorCode::NotMember | ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::MessageTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
        }
    }

    /// Whether the same request may succeed if retried later unchanged.
    #[must_use]
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::RateLimited | ErrorCode::Unavailable)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recoverable request error: becomes an `error` reply; the connection
/// stays open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    /// The error code.
    pub code: ErrorCode,
    /// A plain-language explanation for the client's developer.
    pub message: String,
}

impl ProtocolError {
    /// An error with `code` and `message`.
    #[must_use]
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ProtocolError {
        ProtocolError {
            code,
            message: message.into(),
        }
    }

    /// A `bad_request` error.
    #[must_use]
    pub fn bad_request(message: impl Into<String>) -> ProtocolError {
        ProtocolError::new(ErrorCode::BadRequest, message)
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ProtocolError {}

/// A decoded request and the `id` to echo in its reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The raw JSON text of `"id"` (a number, or a string literal including
    /// its quotes), to be echoed verbatim; `None` when absent.
    pub id: Option<&'a str>,
    /// The request.
    pub request: Request<'a>,
}

/// A client request. Every `channel` has been validated with
/// [`parse_channel`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `join`: receive the channel's messages, from `since` (exclusive) if
    /// given, else live only, in the audience tier `mode`.
    Join {
        /// The channel.
        channel: &'a str,
        /// The last seq the client has.
        since: Option<u64>,
        /// How the channel's messages reach the member (`live` when absent).
        mode: JoinMode,
    },
    /// `leave`: stop receiving the channel's messages.
    Leave {
        /// The channel.
        channel: &'a str,
    },
    /// `send`, `edit` or `delete` (`kind` `Text`/`Media`, `Edit`, `Delete`).
    Send(SendRequest<'a>),
    /// `history`: a page of messages.
    History {
        /// The channel.
        channel: &'a str,
        /// Which page.
        range: HistoryRange,
        /// At most this many messages (1..=`history_max_limit`).
        limit: usize,
    },
    /// `read`: the user has read up to `seq`.
    Read {
        /// The channel.
        channel: &'a str,
        /// The highest seq read.
        seq: u64,
    },
    /// `delivered`: this device has received up to `seq`.
    Delivered {
        /// The channel.
        channel: &'a str,
        /// The highest seq delivered.
        seq: u64,
    },
    /// `typing`: the user is typing in the channel.
    Typing {
        /// The channel.
        channel: &'a str,
    },
    /// `presence`: who is online in the channel.
    Presence {
        /// The channel.
        channel: &'a str,
    },
    /// `ping`: answered with `pong`.
    Ping,
}

impl Request<'_> {
    /// The wire `type` of the request (`send` for all [`Request::Send`]s
    /// of kind text or media).
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            Request::Join { .. } => "join",
            Request::Leave { .. } => "leave",
            Request::Send(s) => match s.kind {
                MessageKind::Edit => "edit",
                MessageKind::Delete => "delete",
                MessageKind::Text | MessageKind::Media => "send",
            },
            Request::History { .. } => "history",
            Request::Read { .. } => "read",
            Request::Delivered { .. } => "delivered",
            Request::Typing { .. } => "typing",
            Request::Presence { .. } => "presence",
            Request::Ping => "ping",
        }
    }

    /// The channel the request is about (`None` for `ping`).
    #[must_use]
    pub fn channel(&self) -> Option<&str> {
        match self {
            Request::Join { channel, .. }
            | Request::Leave { channel }
            | Request::History { channel, .. }
            | Request::Read { channel, .. }
            | Request::Delivered { channel, .. }
            | Request::Typing { channel }
            | Request::Presence { channel } => Some(channel),
            Request::Send(s) => Some(s.channel),
            Request::Ping => None,
        }
    }
}

/// A member's audience tier in a channel (`join`'s `mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum JoinMode {
    /// Every message as soon as it is committed (the default).
    #[default]
    Live,
    /// Every message, written at most once per `digest_interval_ms`: what
    /// accumulated goes in one write, as consecutive `msg` frames.
    Digest,
    /// No messages: a `head` event at most once per `counts_interval_ms`
    /// while the channel's head moves.
    Counts,
}

impl JoinMode {
    /// The mode named `name` on the wire.
    #[must_use]
    pub fn from_wire(name: &str) -> Option<JoinMode> {
        match name {
            "live" => Some(JoinMode::Live),
            "digest" => Some(JoinMode::Digest),
            "counts" => Some(JoinMode::Counts),
            _ => None,
        }
    }

    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            JoinMode::Live => "live",
            JoinMode::Digest => "digest",
            JoinMode::Counts => "counts",
        }
    }
}

/// Which page of history (bounds exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryRange {
    /// Neither `before` nor `after`: the latest page.
    Latest,
    /// `before`: messages with a smaller seq.
    Before(u64),
    /// `after`: messages with a larger seq.
    After(u64),
}

impl HistoryRange {
    /// The same range for [`chat_model::Store`] reads.
    #[must_use]
    pub fn to_read_range(self) -> chat_model::ReadRange {
        match self {
            HistoryRange::Latest => chat_model::ReadRange::Latest,
            HistoryRange::Before(s) => chat_model::ReadRange::Before(chat_model::Seq(s)),
            HistoryRange::After(s) => chat_model::ReadRange::After(chat_model::Seq(s)),
        }
    }
}

/// A `send`, `edit` or `delete`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendRequest<'a> {
    /// The channel.
    pub channel: &'a str,
    /// The client's id for this send (1–64 characters), the dedup key.
    pub client_msg_id: Cow<'a, str>,
    /// `Text` or `Media` for `send`, `Edit` for `edit`, `Delete` for
    /// `delete`.
    pub kind: MessageKind,
    /// The text (at most `max_text_chars` characters; the caption of a media
    /// message, empty if none; empty for deletes).
    pub text: Cow<'a, str>,
    /// The seq edited or deleted (≥ 1); `None` for `send`.
    pub target: Option<u64>,
    /// The media metadata, for kind `Media` only.
    pub media: Option<Media>,
}

/// Longest media URL, in bytes.
pub const MAX_MEDIA_URL_BYTES: usize = 2048;
/// Longest media MIME type, in bytes.
pub const MAX_MEDIA_MIME_BYTES: usize = 255;
/// Longest `client_msg_id`, in characters.
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 64;

/// Decodes one request. On failure returns the id (if it could be read) with
/// the error, so the reply can echo it.
pub fn decode_request<'a>(
    text: &'a str,
    limits: &Limits,
) -> Result<Envelope<'a>, (Option<&'a str>, ProtocolError)> {
    if !is_object(text) {
        let message = match serde_json::from_str::<&RawValue>(text) {
            Ok(_) => "a request must be a JSON object".to_owned(),
            Err(e) => format!("invalid JSON: {e}"),
        };
        return Err((None, ProtocolError::bad_request(message)));
    }
    let wire: Wire<'a> = match serde_json::from_str(text) {
        Ok(wire) => wire,
        Err(err) => return Err(diagnose(text, &err)),
    };
    let id = match wire.id {
        None => None,
        Some(raw) => Some(checked_id(raw).map_err(|e| (None, e))?),
    };
    let request = build(wire, limits).map_err(|e| (id, e))?;
    Ok(Envelope { id, request })
}

/// A JSON string, borrowed from the input when it has no escapes (serde
/// borrows a `Cow` only as a field of its own, not inside an `Option`).
#[derive(Debug)]
pub(crate) struct JsonStr<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        deserializer.deserialize_str(StrVisitor).map(JsonStr)
    }
}

/// Deserializes a present field (even `null`) as `Some`; with
/// `#[serde(default)]` an absent one is `None`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(deserializer).map(Some)
}

/// Every field any request uses, typed. Unknown fields are ignored.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(rename = "type", borrow)]
    ty: Option<JsonStr<'a>>,
    #[serde(borrow)]
    channel: Option<JsonStr<'a>>,
    since: Option<u64>,
    #[serde(borrow)]
    mode: Option<JsonStr<'a>>,
    #[serde(borrow)]
    client_msg_id: Option<JsonStr<'a>>,
    #[serde(borrow)]
    text: Option<JsonStr<'a>>,
    #[serde(borrow)]
    kind: Option<JsonStr<'a>>,
    target: Option<u64>,
    #[serde(default, borrow, deserialize_with = "present")]
    media: Option<&'a RawValue>,
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<u64>,
    seq: Option<u64>,
}

/// The `media` object of a send.
#[derive(Deserialize)]
struct WireMedia<'a> {
    #[serde(borrow)]
    url: JsonStr<'a>,
    #[serde(borrow)]
    mime: JsonStr<'a>,
    size: u64,
}

/// The same fields, untyped: used only to explain why [`Wire`] failed.
#[derive(Deserialize)]
struct WireRaw<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(rename = "type", default, borrow, deserialize_with = "present")]
    ty: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    channel: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    since: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    mode: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    client_msg_id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    text: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    kind: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    target: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    media: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    before: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    after: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    limit: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    seq: Option<&'a RawValue>,
}

/// The JSON type a field must have.
#[derive(Clone, Copy)]
enum Expect {
    Str,
    U64,
    Media,
}

impl Expect {
    fn accepts(self, raw: &RawValue) -> bool {
        let json = raw.get();
        json == "null"
            || match self {
                Expect::Str => serde_json::from_str::<JsonStr<'_>>(json).is_ok(),
                Expect::U64 => serde_json::from_str::<u64>(json).is_ok(),
                Expect::Media => parse_media(raw).is_some(),
            }
    }

    fn describe(self) -> &'static str {
        match self {
            Expect::Str => "a string",
            Expect::U64 => "a non-negative integer",
            Expect::Media => "an object {url: string, mime: string, size: non-negative integer}",
        }
    }
}

/// Whether the JSON text `json` (if valid) is an object. Serde's derived
/// structs also accept arrays (`[id, type, …]`), which the protocol does not.
fn is_object(json: &str) -> bool {
    json.trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
}

/// Explains why the object `text` did not decode as a [`Wire`].
fn diagnose<'a>(text: &'a str, err: &serde_json::Error) -> (Option<&'a str>, ProtocolError) {
    let raw: WireRaw<'a> = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            return (
                None,
                ProtocolError::bad_request(format!("invalid JSON: {e}")),
            )
        }
    };
    let id = match raw.id.map(checked_id).transpose() {
        Ok(id) => id,
        Err(e) => return (None, e),
    };
    let fields = [
        ("type", raw.ty, Expect::Str),
        ("channel", raw.channel, Expect::Str),
        ("since", raw.since, Expect::U64),
        ("mode", raw.mode, Expect::Str),
        ("client_msg_id", raw.client_msg_id, Expect::Str),
        ("text", raw.text, Expect::Str),
        ("kind", raw.kind, Expect::Str),
        ("target", raw.target, Expect::U64),
        ("media", raw.media, Expect::Media),
        ("before", raw.before, Expect::U64),
        ("after", raw.after, Expect::U64),
        ("limit", raw.limit, Expect::U64),
        ("seq", raw.seq, Expect::U64),
    ];
    for (name, value, expect) in fields {
        if let Some(value) = value {
            if !expect.accepts(value) {
                let message = format!("`{name}` must be {}", expect.describe());
                return (id, ProtocolError::bad_request(message));
            }
        }
    }
    (
        id,
        ProtocolError::bad_request(format!("invalid request: {err}")),
    )
}

/// The raw text of a valid `id`: a JSON number or string.
fn checked_id(raw: &RawValue) -> Result<&str, ProtocolError> {
    let json = raw.get();
    // A raw value is checked against JSON's grammar only, which allows an
    // escaped lone surrogate (`"\ud800"`) and numbers no double holds
    // (`1e400`); echoed, either makes the reply unreadable to most JSON
    // parsers (found by the `request` fuzz target). Only strings with `\u`
    // pay the check.
    let unreadable = || {
        ProtocolError::bad_request(
            "`id` must be a JSON number (within a double's range) or string (of Unicode characters)",
        )
    };
    match json.as_bytes().first() {
        Some(b'"') if json.contains("\\u") && serde_json::from_str::<String>(json).is_err() => {
            Err(unreadable())
        }
        Some(b'-' | b'0'..=b'9') if serde_json::from_str::<serde_json::Number>(json).is_err() => {
            Err(unreadable())
        }
        Some(b'"' | b'-' | b'0'..=b'9') => Ok(json),
        _ => Err(ProtocolError::bad_request(
            "`id` must be a JSON number or string",
        )),
    }
}

fn build<'a>(mut wire: Wire<'a>, limits: &Limits) -> Result<Request<'a>, ProtocolError> {
    let Some(ty) = wire.ty.take() else {
        return Err(ProtocolError::bad_request("missing field `type`"));
    };
    let request = match &*ty.0 {
        "join" => Request::Join {
            channel: channel(wire.channel)?,
            since: wire.since,
            mode: join_mode(wire.mode)?,
        },
        "leave" => Request::Leave {
            channel: channel(wire.channel)?,
        },
        "send" => Request::Send(send(wire, limits)?),
        "edit" => Request::Send(edit_or_delete(wire, MessageKind::Edit, limits)?),
        "delete" => Request::Send(edit_or_delete(wire, MessageKind::Delete, limits)?),
        "history" => history(wire, limits)?,
        "read" => Request::Read {
            channel: channel(wire.channel)?,
            seq: required(wire.seq, "seq")?,
        },
        "delivered" => Request::Delivered {
            channel: channel(wire.channel)?,
            seq: required(wire.seq, "seq")?,
        },
        "typing" => Request::Typing {
            channel: channel(wire.channel)?,
        },
        "presence" => Request::Presence {
            channel: channel(wire.channel)?,
        },
        "ping" => Request::Ping,
        other => {
            return Err(ProtocolError::new(
                ErrorCode::UnknownType,
                format!("unknown request type `{}`", truncate_chars(other, 64)),
            ))
        }
    };
    Ok(request)
}

/// `join`'s `mode`: `live` when absent; an unknown name is `bad_request`.
fn join_mode(field: Option<JsonStr<'_>>) -> Result<JoinMode, ProtocolError> {
    let Some(name) = field else {
        return Ok(JoinMode::Live);
    };
    JoinMode::from_wire(&name.0).ok_or_else(|| {
        ProtocolError::bad_request(format!(
            "unknown `mode` `{}`: one of `live`, `digest`, `counts`",
            truncate_chars(&name.0, 32)
        ))
    })
}

fn required<T>(field: Option<T>, name: &str) -> Result<T, ProtocolError> {
    field.ok_or_else(|| ProtocolError::bad_request(format!("missing field `{name}`")))
}

fn channel(field: Option<JsonStr<'_>>) -> Result<&str, ProtocolError> {
    match required(field, "channel")?.0 {
        Cow::Borrowed(name) => match parse_channel(name) {
            Ok(_) => Ok(name),
            Err(why) => Err(ProtocolError::new(ErrorCode::InvalidChannel, why)),
        },
        // Every character a channel may hold is sent unescaped by any JSON
        // encoder; an escape means an invalid name or a needless escape.
        Cow::Owned(_) => Err(ProtocolError::new(
            ErrorCode::InvalidChannel,
            "a channel name must be sent without JSON escape sequences",
        )),
    }
}

fn client_msg_id(field: Option<JsonStr<'_>>) -> Result<Cow<'_, str>, ProtocolError> {
    let id = required(field, "client_msg_id")?.0;
    if id.is_empty() || !fits_chars(&id, MAX_CLIENT_MSG_ID_CHARS) {
        return Err(ProtocolError::bad_request(
            "`client_msg_id` must be 1-64 characters",
        ));
    }
    Ok(id)
}

fn target(field: Option<u64>) -> Result<u64, ProtocolError> {
    match required(field, "target")? {
        0 => Err(ProtocolError::bad_request(
            "`target` must be a seq (1 or more)",
        )),
        seq => Ok(seq),
    }
}

fn check_text(text: &str, limits: &Limits) -> Result<(), ProtocolError> {
    if fits_chars(text, limits.max_text_chars) {
        Ok(())
    } else {
        Err(ProtocolError::new(
            ErrorCode::MessageTooLarge,
            format!("`text` is longer than {} characters", limits.max_text_chars),
        ))
    }
}

/// Whether `s` has at most `max` characters (Unicode scalar values).
fn fits_chars(s: &str, max: usize) -> bool {
    // A character is at least one byte: short strings need no counting.
    s.len() <= max || s.chars().count() <= max
}

fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

fn send<'a>(wire: Wire<'a>, limits: &Limits) -> Result<SendRequest<'a>, ProtocolError> {
    let channel = channel(wire.channel)?;
    let client_msg_id = client_msg_id(wire.client_msg_id)?;
    let kind = match wire.kind.as_ref().map(|k| &*k.0) {
        None | Some("text") => MessageKind::Text,
        Some("media") => MessageKind::Media,
        Some(kind @ ("edit" | "delete")) => {
            return Err(ProtocolError::bad_request(format!(
                "an {kind} is a request of type `{kind}`, not a `send`"
            )))
        }
        Some(_) => {
            return Err(ProtocolError::bad_request(
                "`kind` must be \"text\" or \"media\"",
            ))
        }
    };
    let media = match (kind, wire.media.filter(|raw| raw.get() != "null")) {
        (MessageKind::Media, Some(media)) => Some(check_media(media)?),
        (MessageKind::Media, None) => {
            return Err(ProtocolError::bad_request(
                "kind \"media\" needs a `media` object {url, mime, size}",
            ))
        }
        (_, Some(_)) => {
            return Err(ProtocolError::bad_request(
                "`media` is only allowed with kind \"media\"",
            ))
        }
        (_, None) => None,
    };
    let text = match (wire.text, kind) {
        (Some(text), _) => text.0,
        // A media message's text is an optional caption.
        (None, MessageKind::Media) => Cow::Borrowed(""),
        (None, _) => return Err(ProtocolError::bad_request("missing field `text`")),
    };
    check_text(&text, limits)?;
    Ok(SendRequest {
        channel,
        client_msg_id,
        kind,
        text,
        target: None,
        media,
    })
}

fn edit_or_delete<'a>(
    wire: Wire<'a>,
    kind: MessageKind,
    limits: &Limits,
) -> Result<SendRequest<'a>, ProtocolError> {
    let channel = channel(wire.channel)?;
    let target = target(wire.target)?;
    let client_msg_id = client_msg_id(wire.client_msg_id)?;
    let text = if kind == MessageKind::Edit {
        let text = required(wire.text, "text")?.0;
        check_text(&text, limits)?;
        text
    } else {
        Cow::Borrowed("")
    };
    Ok(SendRequest {
        channel,
        client_msg_id,
        kind,
        text,
        target: Some(target),
        media: None,
    })
}

/// The `media` object, if `raw` is one with the right field types.
fn parse_media(raw: &RawValue) -> Option<WireMedia<'_>> {
    let json = raw.get();
    if is_object(json) {
        serde_json::from_str(json).ok()
    } else {
        None
    }
}

fn check_media(raw: &RawValue) -> Result<Media, ProtocolError> {
    let media = parse_media(raw).ok_or_else(|| {
        ProtocolError::bad_request(format!("`media` must be {}", Expect::Media.describe()))
    })?;
    let url = media.url.0;
    if url.len() > MAX_MEDIA_URL_BYTES || !is_http_url(&url) {
        return Err(ProtocolError::bad_request(
            "`media.url` must be an http or https URL of at most 2048 bytes",
        ));
    }
    let mime = media.mime.0;
    if mime.len() > MAX_MEDIA_MIME_BYTES || !is_mime_type(&mime) {
        return Err(ProtocolError::bad_request(
            "`media.mime` must be a MIME type `type/subtype` of at most 255 bytes",
        ));
    }
    Ok(Media {
        url: url.into_owned(),
        mime: mime.into_owned(),
        size: media.size,
    })
}

/// `http://` or `https://` (scheme case-insensitive), a host after it, and
/// no whitespace or control characters.
fn is_http_url(url: &str) -> bool {
    let Some(rest) = strip_prefix_ignore_ascii_case(url, "http://")
        .or_else(|| strip_prefix_ignore_ascii_case(url, "https://"))
    else {
        return false;
    };
    !rest.is_empty()
        && !rest.starts_with('/')
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn strip_prefix_ignore_ascii_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `type/subtype`, both RFC 6838 restricted names (parameters not allowed).
fn is_mime_type(mime: &str) -> bool {
    fn is_name(s: &str) -> bool {
        s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.len() <= 127
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'!' | b'#' | b'$' | b'&' | b'-' | b'^' | b'_' | b'.' | b'+'
                    )
            })
    }
    mime.split_once('/')
        .is_some_and(|(ty, sub)| is_name(ty) && is_name(sub))
}

fn history<'a>(wire: Wire<'a>, limits: &Limits) -> Result<Request<'a>, ProtocolError> {
    let channel = channel(wire.channel)?;
    let range = match (wire.before, wire.after) {
        (Some(_), Some(_)) => {
            return Err(ProtocolError::bad_request(
                "give at most one of `before` and `after`",
            ))
        }
        (Some(before), None) => HistoryRange::Before(before),
        (None, Some(after)) => HistoryRange::After(after),
        (None, None) => HistoryRange::Latest,
    };
    let limit = match wire.limit {
        None => limits.history_default_limit,
        Some(limit) => usize::try_from(limit)
            .ok()
            .filter(|l| (1..=limits.history_max_limit).contains(l))
            .ok_or_else(|| {
                ProtocolError::bad_request(format!(
                    "`limit` must be between 1 and {}",
                    limits.history_max_limit
                ))
            })?,
    };
    Ok(Request::History {
        channel,
        range,
        limit,
    })
}

#[cfg(test)]
mod tests;
