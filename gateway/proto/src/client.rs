//! The client side of the protocol, for the load generator and tests:
//! request encoders that append masked text frames, and a decoder for server
//! events.
//!
//! The decoder reads every field any event has in one serde pass into owned
//! values, then checks the fields the event's `type` needs. Event types it
//! does not model (`presence`, `presence_update`, `read`, and any added
//! later) come back as [`ServerEvent::Other`] with their type.

use std::borrow::Cow;

use chat_model::{Media, MessageKind};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::request::{HistoryRange, JoinMode, JsonStr, Request};
use super::response::{write_json, HelloLimits, MediaJson};
use super::ws::{encode_frame_with, WsOpcode};

/// A message as a client receives it (`msg` events and history pages).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ClientMsg {
    /// The channel (empty if a server omitted it in a history page).
    #[serde(default)]
    pub channel: String,
    /// Position in the channel.
    pub seq: u64,
    /// Sending user.
    pub from: String,
    /// Sending device.
    pub device: String,
    /// The sender's id for the send.
    pub client_msg_id: String,
    /// Kind: `text`, `media`, `edit`, `delete` (or a later addition).
    pub kind: String,
    /// Text; `None` for a message later deleted.
    #[serde(default)]
    pub text: Option<String>,
    /// Commit time, ms since the Unix epoch.
    pub ts: u64,
    /// Edited or deleted seq.
    #[serde(default)]
    pub target: Option<u64>,
    /// Media metadata.
    #[serde(default, deserialize_with = "media_opt")]
    pub media: Option<Media>,
    /// The message was edited later.
    #[serde(default)]
    pub edited: bool,
    /// The message was deleted later.
    #[serde(default)]
    pub deleted: bool,
}

/// An event from the server, with owned fields. `id` is the echoed request
/// id, as JSON.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerEvent {
    /// `hello`, first after the upgrade.
    Hello {
        /// The authenticated user.
        user: String,
        /// The device.
        device: String,
        /// The session id.
        session: String,
        /// The shard serving the connection.
        shard: usize,
        /// Send something at least this often (ms).
        heartbeat_ms: u64,
        /// The server's limits.
        limits: HelloLimits,
    },
    /// `joined`.
    Joined {
        /// Echoed request id.
        id: Option<Value>,
        /// The channel.
        channel: String,
        /// The channel's head at the join.
        head: u64,
    },
    /// `left`.
    Left {
        /// Echoed request id.
        id: Option<Value>,
        /// The channel.
        channel: String,
    },
    /// `ack` of a send, edit or delete.
    Ack {
        /// Echoed request id.
        id: Option<Value>,
        /// The channel.
        channel: String,
        /// The client's id for the send.
        client_msg_id: String,
        /// The assigned seq.
        seq: u64,
        /// The commit time (ms).
        ts: u64,
        /// A retry of an earlier send.
        duplicate: bool,
    },
    /// `msg`.
    Msg(Box<ClientMsg>),
    /// `history`.
    History {
        /// Echoed request id.
        id: Option<Value>,
        /// The channel.
        channel: String,
        /// Messages, ascending.
        messages: Vec<ClientMsg>,
        /// More messages exist in the direction read.
        has_more: bool,
    },
    /// `pong`.
    Pong {
        /// Echoed request id.
        id: Option<Value>,
    },
    /// `error`.
    Error {
        /// Echoed request id.
        id: Option<Value>,
        /// The error code, e.g. `bad_request`.
        code: String,
        /// The explanation.
        message: String,
    },
    /// `typing`.
    Typing {
        /// The channel.
        channel: String,
        /// Who is typing.
        user: String,
    },
    /// `head`: the channel's head moved (members joined with `counts`).
    Head {
        /// The channel.
        channel: String,
        /// The highest committed seq.
        head: u64,
    },
    /// Any other event; holds its `type`.
    Other(String),
}

/// Every field of every modelled event.
#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    ty: String,
    id: Option<Value>,
    user: Option<String>,
    device: Option<String>,
    session: Option<String>,
    shard: Option<usize>,
    heartbeat_ms: Option<u64>,
    limits: Option<HelloLimits>,
    channel: Option<String>,
    head: Option<u64>,
    client_msg_id: Option<String>,
    seq: Option<u64>,
    ts: Option<u64>,
    duplicate: Option<bool>,
    from: Option<String>,
    kind: Option<String>,
    text: Option<String>,
    target: Option<u64>,
    #[serde(default, deserialize_with = "media_opt")]
    media: Option<Media>,
    edited: Option<bool>,
    deleted: Option<bool>,
    messages: Option<Vec<ClientMsg>>,
    has_more: Option<bool>,
    code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct WireMedia {
    url: String,
    mime: String,
    size: u64,
}

fn media_opt<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Media>, D::Error> {
    Ok(
        Option::<WireMedia>::deserialize(deserializer)?.map(|m| Media {
            url: m.url,
            mime: m.mime,
            size: m.size,
        }),
    )
}

fn need<T>(field: Option<T>, name: &'static str) -> Result<T, serde_json::Error> {
    field.ok_or_else(|| serde_json::Error::missing_field(name))
}

/// Decodes the text of one server frame.
pub fn decode_server_event(text: &str) -> Result<ServerEvent, serde_json::Error> {
    let w: WireEvent = serde_json::from_str(text)?;
    let event = match w.ty.as_str() {
        "hello" => ServerEvent::Hello {
            user: need(w.user, "user")?,
            device: need(w.device, "device")?,
            session: need(w.session, "session")?,
            shard: need(w.shard, "shard")?,
            heartbeat_ms: need(w.heartbeat_ms, "heartbeat_ms")?,
            limits: need(w.limits, "limits")?,
        },
        "joined" => ServerEvent::Joined {
            id: w.id,
            channel: need(w.channel, "channel")?,
            head: need(w.head, "head")?,
        },
        "left" => ServerEvent::Left {
            id: w.id,
            channel: need(w.channel, "channel")?,
        },
        "ack" => ServerEvent::Ack {
            id: w.id,
            channel: need(w.channel, "channel")?,
            client_msg_id: need(w.client_msg_id, "client_msg_id")?,
            seq: need(w.seq, "seq")?,
            ts: need(w.ts, "ts")?,
            duplicate: need(w.duplicate, "duplicate")?,
        },
        "msg" => ServerEvent::Msg(Box::new(ClientMsg {
            channel: need(w.channel, "channel")?,
            seq: need(w.seq, "seq")?,
            from: need(w.from, "from")?,
            device: need(w.device, "device")?,
            client_msg_id: need(w.client_msg_id, "client_msg_id")?,
            kind: need(w.kind, "kind")?,
            text: w.text,
            ts: need(w.ts, "ts")?,
            target: w.target,
            media: w.media,
            edited: w.edited.unwrap_or(false),
            deleted: w.deleted.unwrap_or(false),
        })),
        "history" => ServerEvent::History {
            id: w.id,
            channel: need(w.channel, "channel")?,
            messages: need(w.messages, "messages")?,
            has_more: need(w.has_more, "has_more")?,
        },
        "pong" => ServerEvent::Pong { id: w.id },
        "error" => ServerEvent::Error {
            id: w.id,
            code: need(w.code, "code")?,
            message: need(w.message, "message")?,
        },
        "typing" => ServerEvent::Typing {
            channel: need(w.channel, "channel")?,
            user: need(w.user, "user")?,
        },
        "head" => ServerEvent::Head {
            channel: need(w.channel, "channel")?,
            head: need(w.head, "head")?,
        },
        _ => ServerEvent::Other(w.ty),
    };
    Ok(event)
}

/// A `msg` event borrowed from the frame's text: what a client that tracks
/// delivery needs (where, which seq, whose, the text), decoded without
/// allocating unless a string holds escapes. The load generator's hot path:
/// it reads every frame a big room delivers (see [`decode_msg_ref`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsgRef<'a> {
    /// The channel.
    pub channel: std::borrow::Cow<'a, str>,
    /// Position in the channel.
    pub seq: u64,
    /// Sending user.
    pub from: std::borrow::Cow<'a, str>,
    /// Sending device.
    pub device: std::borrow::Cow<'a, str>,
    /// Text; `None` when the event has none (a deleted message).
    pub text: Option<std::borrow::Cow<'a, str>>,
}

/// The fields of a `msg` event [`MsgRef`] keeps; others are skipped.
#[derive(Deserialize)]
struct WireMsgRef<'a> {
    #[serde(rename = "type", borrow)]
    ty: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    channel: Option<JsonStr<'a>>,
    seq: Option<u64>,
    #[serde(borrow)]
    from: Option<JsonStr<'a>>,
    #[serde(borrow)]
    device: Option<JsonStr<'a>>,
    #[serde(borrow)]
    text: Option<JsonStr<'a>>,
}

/// Decodes the text of one server frame as a `msg` event, borrowing from
/// it. `None` when the frame is valid JSON but not a `msg` event (decode
/// it with [`decode_server_event`]); an error when it is not a valid event
/// or a `msg` lacks a field [`MsgRef`] needs.
pub fn decode_msg_ref(text: &str) -> Option<Result<MsgRef<'_>, serde_json::Error>> {
    match scan_msg(text) {
        Some(m) => Some(Ok(m)),
        None => decode_msg_ref_serde(text),
    }
}

/// [`decode_msg_ref`] by serde alone, as it decodes every frame the
/// scanner leaves (public for the benchmark that compares the two).
pub fn decode_msg_ref_serde(text: &str) -> Option<Result<MsgRef<'_>, serde_json::Error>> {
    let w: WireMsgRef<'_> = match serde_json::from_str(text) {
        Ok(w) => w,
        Err(e) => return Some(Err(e)),
    };
    if w.ty != "msg" {
        return None;
    }
    Some((|| {
        Ok(MsgRef {
            channel: need(w.channel, "channel")?.0,
            seq: need(w.seq, "seq")?,
            from: need(w.from, "from")?.0,
            device: need(w.device, "device")?.0,
            text: w.text.map(|t| t.0),
        })
    })())
}

/// The fast path of [`decode_msg_ref`]: one pass over a flat JSON object
/// whose strings hold no escapes, the shape of nearly every `msg` frame a
/// server sends. It finds a string's end eight bytes at a time
/// ([`string_end`]) and skips the fields a [`MsgRef`] does not keep without
/// decoding them (in a 10,000-member room loadgen spent over half its CPU
/// in `serde_json` here, and it reads every frame).
///
/// It decides only what it can decide exactly as serde would: `Some` for a
/// well-formed `msg` object with every field [`MsgRef`] needs, each string
/// plain (no `\` escape, no control character) and every value a plain
/// string, an unsigned integer, `true`, `false` or `null`, each known key
/// once. Anything else — an escape, a nested object, a negative or
/// fractional number, a repeated key, a missing field, another `type`,
/// broken JSON — is `None`, and serde decides (decoding, or reporting the
/// error). The test `the_scanner_agrees_with_serde_on_mutated_frames`
/// holds the two to the same answers.
fn scan_msg(text: &str) -> Option<MsgRef<'_>> {
    if let Some(m) = scan_msg_in_order(text) {
        return Some(m);
    }
    let mut s = Scan {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    let (mut ty, mut channel, mut seq, mut from, mut device, mut body) =
        (None, None, None, None, None, None);
    s.ws();
    s.eat(b'{')?;
    loop {
        s.ws();
        let key = s.string()?;
        s.ws();
        s.eat(b':')?;
        s.ws();
        match key {
            "type" => once(&mut ty, s.string()?)?,
            "channel" => once(&mut channel, s.string()?)?,
            "seq" => once(&mut seq, s.uint()?)?,
            "from" => once(&mut from, s.string()?)?,
            "device" => once(&mut device, s.string()?)?,
            "text" => once(&mut body, s.string()?)?,
            _ => s.skip_value()?,
        }
        s.ws();
        match s.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    s.ws();
    if s.i != s.b.len() || ty? != "msg" {
        return None;
    }
    Some(MsgRef {
        channel: Cow::Borrowed(channel?),
        seq: seq?,
        from: Cow::Borrowed(from?),
        device: Cow::Borrowed(device?),
        text: body.map(Cow::Borrowed),
    })
}

/// The first try of [`scan_msg`]: a `msg` frame exactly as the gateway
/// (and the bench's peers) write one — these keys in this order, no
/// whitespace, no optional field. One pass over the whole frame first
/// proves it holds no backslash and no control character ([`plain_bytes`]),
/// so every string ends at its next quote ([`quote_at`]); the keys are
/// compared as fixed words, and the last value, `ts`, is only checked to be
/// a JSON unsigned integer (a `MsgRef` does not keep it; serde ignores it
/// whatever its size). Anything else is `None` and the general scan
/// decides. Every text it accepts is one serde accepts with the same
/// answer (the mutation test holds it to that). `bench micro`
/// `decode-msg-scan`: 71.5 ns a frame against 99.6 for the string-by-string
/// scan it replaced (2026-12-04); loadgen reads every frame of a big room.
fn scan_msg_in_order(text: &str) -> Option<MsgRef<'_>> {
    let b = text.as_bytes();
    if !plain_bytes(b) {
        return None;
    }
    let mut s = Scan { text, b, i: 0 };
    s.word(br#"{"type":"msg","channel":""#)?;
    let channel = s.plain_string()?;
    s.word(br#","seq":"#)?;
    let seq = s.uint()?;
    s.word(br#","from":""#)?;
    let from = s.plain_string()?;
    s.word(br#","device":""#)?;
    let device = s.plain_string()?;
    s.word(br#","client_msg_id":""#)?;
    s.plain_string()?;
    s.word(br#","kind":""#)?;
    s.plain_string()?;
    s.word(br#","text":""#)?;
    let body = s.plain_string()?;
    s.word(br#","ts":"#)?;
    let (&last, rest) = b.split_last()?;
    if last != b'}' || !json_uint_digits(rest.get(s.i..)?) {
        return None;
    }
    Some(MsgRef {
        channel: Cow::Borrowed(channel),
        seq,
        from: Cow::Borrowed(from),
        device: Cow::Borrowed(device),
        text: Some(Cow::Borrowed(body)),
    })
}

/// Eight ones: a byte-wise constant times this fills a word with it.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The top bit of every byte of a word.
const TOPS: u64 = 0x8080_8080_8080_8080;

/// The top bit of each byte of `w` that is zero, and possibly of bytes
/// above one that is (a borrow), never of a byte below the first zero.
fn zero_bytes(w: u64) -> u64 {
    w.wrapping_sub(ONES) & !w & TOPS
}

/// The bytes of `b` as little-endian words of eight, then the rest.
fn words(b: &[u8]) -> (impl Iterator<Item = u64> + '_, &[u8]) {
    let chunks = b.chunks_exact(8);
    let rest = chunks.remainder();
    let words = chunks.map(|c| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        u64::from_le_bytes(w)
    });
    (words, rest)
}

/// Whether `b` holds no backslash and no control character (below 0x20),
/// eight bytes per step and no branch per word: then a JSON string in it
/// ends at its next quote. (Bytes of multi-byte UTF-8 characters are all
/// 0x80 or above: allowed.)
fn plain_bytes(b: &[u8]) -> bool {
    let (words, rest) = words(b);
    let mut hits = 0;
    for w in words {
        // `& !w` keeps bytes of 0x80 and above out of the control test.
        hits |=
            zero_bytes(w ^ (ONES * u64::from(b'\\'))) | (w.wrapping_sub(ONES * 0x20) & !w & TOPS);
    }
    hits == 0 && rest.iter().all(|&c| c != b'\\' && c >= 0x20)
}

/// Where the first quote of `b` is, eight bytes per step.
fn quote_at(b: &[u8]) -> Option<usize> {
    let (words, rest) = words(b);
    for (k, w) in words.enumerate() {
        let hits = zero_bytes(w ^ (ONES * u64::from(b'"')));
        if hits != 0 {
            return Some(8 * k + (hits.trailing_zeros() / 8) as usize);
        }
    }
    let at = b.len() - rest.len();
    rest.iter().position(|&c| c == b'"').map(|p| at + p)
}

/// Whether `b` is an unsigned integer as JSON writes it (digits, no leading
/// zero), of any length, eight bytes per step.
fn json_uint_digits(b: &[u8]) -> bool {
    let (words, rest) = words(b);
    let mut hits = 0;
    for w in words {
        // A byte below '0' borrows into its top bit; above '9' the add
        // carries into it (d of 10..=0x7f plus 0x76 is 0x80 or more).
        let d = w.wrapping_sub(ONES * u64::from(b'0'));
        hits |= d | d.wrapping_add(ONES * 0x76);
    }
    hits & TOPS == 0
        && rest.iter().all(u8::is_ascii_digit)
        && !b.is_empty()
        && (b.len() == 1 || b[0] != b'0')
}

/// Sets a field seen for the first time; a second time is `None` (serde
/// reports a duplicate field).
fn once<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(v);
            Some(())
        }
    }
}

/// Where the first quote, backslash or control character (below 0x20) of
/// `b` is, eight bytes per step (a string's end, or what makes it more than
/// a plain string). For each byte the three tests set its top bit when they
/// hit (`x - 0x01…` borrows into the top bit of a byte that is zero,
/// `w - 0x20…` of one below 0x20, `& !x` drops bytes that had it set
/// already); a borrow can mark a byte above a hit falsely, never one below
/// it, so the lowest marked byte is the first hit.
fn string_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let hits = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w);
        let hits = hits & TOPS;
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| i + p)
}

/// A cursor over the bytes of a frame's text for [`scan_msg`].
struct Scan<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn next(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn eat_word(&mut self, w: &[u8]) -> Option<()> {
        let end = self.i.checked_add(w.len())?;
        (self.b.get(self.i..end)? == w).then(|| self.i = end)
    }

    /// The fixed bytes `w` next, compared as one array.
    fn word<const N: usize>(&mut self, w: &[u8; N]) -> Option<()> {
        let end = self.i.checked_add(N)?;
        (self.b.get(self.i..end)? == w).then(|| self.i = end)
    }

    /// The rest of a string whose opening quote was read, in a text that
    /// [`plain_bytes`] accepted: up to its next quote, borrowed.
    fn plain_string(&mut self) -> Option<&'a str> {
        let start = self.i;
        let end = start + quote_at(self.b.get(start..)?)?;
        self.i = end + 1;
        // `"` is ASCII, so both ends are character boundaries.
        self.text.get(start..end)
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let end = start + string_end(self.b.get(start..)?)?;
        if self.b[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        // `"` is ASCII, so both ends are character boundaries.
        self.text.get(start..end)
    }

    /// An unsigned integer as JSON writes it (no sign, fraction, exponent
    /// or leading zero) that fits a `u64`.
    fn uint(&mut self) -> Option<u64> {
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(&c @ b'0'..=b'9') = self.b.get(self.i) {
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        if digits == 0 || (digits > 1 && self.b[start] == b'0') {
            return None;
        }
        match self.b.get(self.i) {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(v),
        }
    }

    fn skip_value(&mut self) -> Option<()> {
        match *self.b.get(self.i)? {
            b'"' => self.string().map(|_| ()),
            b'0'..=b'9' => self.uint().map(|_| ()),
            b't' => self.eat_word(b"true"),
            b'f' => self.eat_word(b"false"),
            b'n' => self.eat_word(b"null"),
            _ => None,
        }
    }
}

/// A request id: a number, or raw JSON.
#[derive(Serialize)]
#[serde(untagged)]
enum Id<'a> {
    Number(u64),
    Raw(&'a RawValue),
}

/// Every field any request has.
#[derive(Default, Serialize)]
struct RequestJson<'a> {
    r#type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Id<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_msg_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    media: Option<MediaJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

fn masked_frame(out: &mut Vec<u8>, request: &RequestJson<'_>, mask: [u8; 4]) {
    encode_frame_with(out, WsOpcode::Text, Some(mask), |buf| {
        write_json(buf, request);
    });
}

/// Appends a masked `join` frame (`id` as a JSON number).
pub fn encode_join(
    out: &mut Vec<u8>,
    id: Option<u64>,
    channel: &str,
    since: Option<u64>,
    mask: [u8; 4],
) {
    let request = RequestJson {
        r#type: "join",
        id: id.map(Id::Number),
        channel: Some(channel),
        since,
        ..RequestJson::default()
    };
    masked_frame(out, &request, mask);
}

/// Appends a masked `send` frame of kind text (`id` as a JSON number).
pub fn encode_send(
    out: &mut Vec<u8>,
    id: Option<u64>,
    channel: &str,
    client_msg_id: &str,
    text: &str,
    mask: [u8; 4],
) {
    let request = RequestJson {
        r#type: "send",
        id: id.map(Id::Number),
        channel: Some(channel),
        client_msg_id: Some(client_msg_id),
        text: Some(text),
        ..RequestJson::default()
    };
    masked_frame(out, &request, mask);
}

/// Appends a masked `ping` frame (`id` as a JSON number).
pub fn encode_ping(out: &mut Vec<u8>, id: Option<u64>, mask: [u8; 4]) {
    let request = RequestJson {
        r#type: "ping",
        id: id.map(Id::Number),
        ..RequestJson::default()
    };
    masked_frame(out, &request, mask);
}

/// Appends any request as a masked frame. `id` is raw JSON (a number or a
/// string literal with its quotes), as in [`super::request::Envelope::id`];
/// an id that is not valid JSON is left out.
pub fn encode_request(out: &mut Vec<u8>, id: Option<&str>, request: &Request<'_>, mask: [u8; 4]) {
    let id = id
        .and_then(|raw| serde_json::from_str::<&RawValue>(raw).ok())
        .map(Id::Raw);
    let json = match request {
        Request::Join {
            channel,
            since,
            mode,
        } => RequestJson {
            r#type: "join",
            channel: Some(channel),
            since: *since,
            // `live` is the default: left out, as older clients send it.
            mode: (*mode != JoinMode::Live).then(|| mode.as_str()),
            ..RequestJson::default()
        },
        Request::Leave { channel } => RequestJson {
            r#type: "leave",
            channel: Some(channel),
            ..RequestJson::default()
        },
        Request::Send(send) => {
            let (ty, kind) = match send.kind {
                MessageKind::Text => ("send", None),
                MessageKind::Media => ("send", Some("media")),
                MessageKind::Edit => ("edit", None),
                MessageKind::Delete => ("delete", None),
            };
            RequestJson {
                r#type: ty,
                channel: Some(send.channel),
                client_msg_id: Some(&send.client_msg_id),
                kind,
                text: (send.kind != MessageKind::Delete).then_some(&*send.text),
                target: send.target,
                media: send.media.as_ref().map(MediaJson::from),
                ..RequestJson::default()
            }
        }
        Request::History {
            channel,
            range,
            limit,
        } => RequestJson {
            r#type: "history",
            channel: Some(channel),
            before: match range {
                HistoryRange::Before(seq) => Some(*seq),
                _ => None,
            },
            after: match range {
                HistoryRange::After(seq) => Some(*seq),
                _ => None,
            },
            limit: Some(*limit),
            ..RequestJson::default()
        },
        Request::Read { channel, seq } => RequestJson {
            r#type: "read",
            channel: Some(channel),
            seq: Some(*seq),
            ..RequestJson::default()
        },
        Request::Delivered { channel, seq } => RequestJson {
            r#type: "delivered",
            channel: Some(channel),
            seq: Some(*seq),
            ..RequestJson::default()
        },
        Request::Typing { channel } => RequestJson {
            r#type: "typing",
            channel: Some(channel),
            ..RequestJson::default()
        },
        Request::Presence { channel } => RequestJson {
            r#type: "presence",
            channel: Some(channel),
            ..RequestJson::default()
        },
        Request::Ping => RequestJson {
            r#type: "ping",
            ..RequestJson::default()
        },
    };
    masked_frame(out, &RequestJson { id, ..json }, mask);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::request::{decode_request, ErrorCode, Limits, SendRequest};
    use super::super::response::{self, MsgView};
    use super::super::ws::{Role, WsDecoder, WsEvent};
    use super::*;
    use chat_model::StoredMessage;
    use serde_json::json;

    const MASK: [u8; 4] = [1, 2, 3, 4];

    /// Decodes server frames as a client.
    fn events(bytes: &[u8]) -> Vec<ServerEvent> {
        let mut dec = WsDecoder::new(Role::Client, usize::MAX);
        let mut out = Vec::new();
        dec.feed(bytes, &mut |e| match e {
            WsEvent::Text(t) => out.push(decode_server_event(t).unwrap()),
            other => panic!("unexpected {other:?}"),
        })
        .unwrap();
        out
    }

    /// Decodes client frames as the server, returning each frame's text.
    fn server_texts(bytes: &[u8]) -> Vec<String> {
        texts_as(Role::Server, bytes)
    }

    /// Decodes server frames as a client, returning each frame's text.
    fn client_texts(bytes: &[u8]) -> Vec<String> {
        texts_as(Role::Client, bytes)
    }

    fn texts_as(role: Role, bytes: &[u8]) -> Vec<String> {
        let mut dec = WsDecoder::new(role, usize::MAX);
        let mut out = Vec::new();
        dec.feed(bytes, &mut |e| match e {
            WsEvent::Text(t) => out.push(t.to_owned()),
            other => panic!("unexpected {other:?}"),
        })
        .unwrap();
        out
    }

    #[test]
    fn a_msg_decodes_borrowed_like_the_full_decoder_and_others_fall_through() {
        let stored = StoredMessage {
            seq: 9,
            from: "bob".into(),
            device: "d1".into(),
            client_msg_id: "c".into(),
            kind: MessageKind::Text,
            text: "say \"hi\"\nthen ✓".into(),
            target: None,
            media: None,
            ts: 77,
            edited: false,
            deleted: false,
        };
        let mut out = Vec::new();
        response::msg(&mut out, "room:x", &MsgView::from_stored(&stored));
        let texts = client_texts(&out);
        let fast = decode_msg_ref(&texts[0]).unwrap().unwrap();
        let ServerEvent::Msg(full) = decode_server_event(&texts[0]).unwrap() else {
            panic!("not a msg");
        };
        assert_eq!(
            (&*fast.channel, fast.seq, &*fast.from, &*fast.device),
            (&*full.channel, full.seq, &*full.from, &*full.device)
        );
        assert_eq!(fast.text.as_deref(), full.text.as_deref());
        // Plain strings are borrowed from the frame; escaped ones decoded.
        assert!(matches!(fast.from, Cow::Borrowed("bob")));
        assert!(matches!(fast.text, Some(Cow::Owned(_))));
        // Other events are left to the full decoder; broken ones are errors.
        assert!(decode_msg_ref(r#"{"type":"ack","channel":"room:x","seq":1}"#).is_none());
        assert!(
            decode_msg_ref(r#"{"type":"msg","channel":"room:x","from":"a","device":"d"}"#)
                .unwrap()
                .is_err()
        );
        assert!(decode_msg_ref("{not json").unwrap().is_err());
    }

    /// `msg` frames as the gateway writes them: plain, escaped, with media,
    /// edited, deleted (no text), plus hand-written shapes another server
    /// could send.
    fn msg_frames() -> Vec<String> {
        let base = StoredMessage {
            seq: 42,
            from: "alice".into(),
            device: "phone".into(),
            client_msg_id: "m7".into(),
            kind: MessageKind::Text,
            text: "1733212345678901 xxxxxxxxxxxxxxxx".into(),
            target: None,
            media: None,
            ts: 1_733_212_345_678,
            edited: false,
            deleted: false,
        };
        let mut stored = vec![base.clone()];
        let mut m = base.clone();
        m.text = "tab\there \"quoted\" \\ ✓ \u{1}".into();
        stored.push(m);
        let mut m = base.clone();
        m.kind = MessageKind::Media;
        m.media = Some(Media {
            url: "https://x/y.png".into(),
            mime: "image/png".into(),
            size: 10,
        });
        stored.push(m);
        let mut m = base.clone();
        m.edited = true;
        stored.push(m);
        let mut m = base.clone();
        m.deleted = true;
        m.text = String::new();
        stored.push(m);
        let mut out = Vec::new();
        for m in &stored {
            let mut view = MsgView::from_stored(m);
            view.edited = m.edited;
            if m.deleted {
                view.text = None;
                view.deleted = true;
            }
            response::msg(&mut out, "room:lobby", &view);
        }
        let mut frames = client_texts(&out);
        frames.extend(
            [
                r#" { "seq" : 0 , "type":"msg", "device":"d","from":"f","channel":"c" } "#,
                r#"{"type":"msg","channel":"c","seq":18446744073709551615,"from":"f","device":"d","text":null}"#,
                r#"{"type":"msg","channel":"c","seq":1,"from":"f","device":"d","x":true,"y":false,"z":null,"w":"s"}"#,
                r#"{"type":"msg","channel":"c","seq":1,"from":"f","device":"d","ts":-5}"#,
                r#"{"type":"msg","channel":"c","seq":1.0,"from":"f","device":"d"}"#,
                r#"{"type":"msg","channel":"c","seq":1,"from":"f","device":"d","seq":2}"#,
                r#"{"type":"ack","channel":"c","seq":1}"#,
            ]
            .map(String::from),
        );
        frames
    }

    /// Where the scanner answers, serde answers the same.
    fn assert_agrees(text: &str) -> bool {
        let Some(fast) = scan_msg(text) else {
            assert!(scan_msg_in_order(text).is_none(), "{text}");
            return false;
        };
        if let Some(in_order) = scan_msg_in_order(text) {
            assert_eq!(in_order, fast, "{text}");
        }
        match decode_msg_ref_serde(text) {
            Some(Ok(slow)) => assert_eq!(fast, slow, "{text}"),
            other => panic!("scanner decoded {text:?}, serde said {other:?}"),
        }
        true
    }

    #[test]
    fn the_scanner_decodes_plain_msg_frames_and_leaves_the_rest_to_serde() {
        let frames = msg_frames();
        let scanned: Vec<bool> = frames.iter().map(|f| assert_agrees(f)).collect();
        // The gateway's own frames: plain ones scanned, the escaped one and
        // the one with a nested media object left to serde.
        assert_eq!(&scanned[..5], &[true, false, false, true, true]);
        // The plain text message, as the gateway and the peers write it,
        // takes the in-order path; an edited one (an optional field) does not.
        assert!(scan_msg_in_order(&frames[0]).is_some());
        assert!(scan_msg_in_order(&frames[3]).is_none());
        // Odd spacing and key order, the largest seq, `text: null` (serde's
        // `None`: left to it), flat values of every kind; a negative or
        // fractional number, a repeated key and another type are not scanned.
        assert_eq!(
            &scanned[5..],
            &[true, false, true, false, false, false, false]
        );
        // Every frame still decodes through the public entry point as before.
        assert!(decode_msg_ref(&frames[1]).unwrap().is_ok());
        assert!(decode_msg_ref(&frames[10]).unwrap().is_err());
        assert!(decode_msg_ref(&frames[11]).is_none());
    }

    #[test]
    fn a_strings_end_is_its_first_quote_backslash_or_control_byte() {
        let plain = |c: u8| c != b'"' && c != b'\\' && c >= 0x20;
        for len in 0..40 {
            for stop in [b'"', b'\\', 0x00, 0x1f, b' ', 0x7f, 0x80, 0xff] {
                for at in 0..=len {
                    let mut b: Vec<u8> = (0..len).map(|i| b"a~ \xe2"[i % 4]).collect();
                    if at < len {
                        b[at] = stop;
                    }
                    let want = b.iter().position(|&c| !plain(c));
                    assert_eq!(string_end(&b), want, "{b:?}");
                }
            }
        }
    }

    #[test]
    fn the_word_at_a_time_checks_agree_with_byte_at_a_time_ones() {
        // Every length up to three words, one odd byte at every place (and
        // a second one after it), over a background of plain characters
        // including multi-byte UTF-8 and the bytes next to each stop.
        let odd = [
            b'"', b'\\', 0x00, 0x1f, 0x20, b'0', b'9', b'/', b':', 0x7f, 0x80, 0xe2, 0xff,
        ];
        for len in 0..26 {
            for (bg, digits) in [
                (&b"a~ \xe2\x82\xac]"[..], false),
                (&b"0123456789"[..], true),
            ] {
                for first in odd {
                    for at in 0..=len {
                        for second in [None, Some(b'\\'), Some(0x01)] {
                            let mut b: Vec<u8> = (0..len).map(|i| bg[(i * 7) % bg.len()]).collect();
                            if at < len {
                                b[at] = first;
                                if let Some(c) = second {
                                    b[(at + 3) % len] = c;
                                }
                            }
                            let plain = b.iter().all(|&c| c != b'\\' && c >= 0x20);
                            assert_eq!(plain_bytes(&b), plain, "{b:?}");
                            let quote = b.iter().position(|&c| c == b'"');
                            assert_eq!(quote_at(&b), quote, "{b:?}");
                            let uint = !b.is_empty()
                                && b.iter().all(u8::is_ascii_digit)
                                && (b.len() == 1 || b[0] != b'0');
                            assert_eq!(json_uint_digits(&b), uint, "{b:?} {digits}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_scanner_agrees_with_serde_on_mutated_frames() {
        // Random edits of real frames (bytes replaced by JSON's punctuation
        // and friends, removed, inserted, the end cut): wherever the scanner
        // answers, serde must give the same message.
        const BYTES: &[u8] = b"\"\\{}[],: \t\n01239-+.eEtrufnlsqcyp\x01\x1fx";
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rand = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let (mut scanned, mut total) = (0, 0);
        for frame in msg_frames() {
            for _ in 0..4000 {
                let mut b = frame.clone().into_bytes();
                for _ in 0..1 + rand(3) {
                    let at = rand(b.len().max(1));
                    match rand(4) {
                        0 if !b.is_empty() => b[at] = BYTES[rand(BYTES.len())],
                        1 if !b.is_empty() => {
                            b.remove(at);
                        }
                        2 => b.insert(at.min(b.len()), BYTES[rand(BYTES.len())]),
                        _ => b.truncate(at),
                    }
                }
                let Ok(text) = String::from_utf8(b) else {
                    continue;
                };
                total += 1;
                if assert_agrees(&text) {
                    scanned += 1;
                }
            }
        }
        // The mutations leave some frames decodable: the check saw both kinds.
        assert!(scanned > 100 && scanned < total, "{scanned} of {total}");
    }

    #[test]
    fn server_encoders_decode_to_the_matching_events() {
        let limits = HelloLimits {
            max_text_chars: 10,
            max_frame_bytes: 20,
            history_max_limit: 30,
        };
        let stored = StoredMessage {
            seq: 2,
            from: "bob".into(),
            device: "d".into(),
            client_msg_id: "c".into(),
            kind: MessageKind::Media,
            text: "cap".into(),
            target: None,
            media: Some(Media {
                url: "https://x/y".into(),
                mime: "a/b".into(),
                size: 3,
            }),
            ts: 77,
            edited: false,
            deleted: false,
        };
        let view = MsgView::from_stored(&stored);
        let mut out = Vec::new();
        response::hello(&mut out, "u", "d", "s", 1, 500, &limits, None);
        response::joined(&mut out, Some("1"), "room:x", 4);
        response::left(&mut out, Some("\"two\""), "room:x");
        response::ack(&mut out, None, "room:x", "c", 5, 6, true);
        response::msg(&mut out, "room:x", &view);
        response::history(&mut out, Some("3"), "room:x", &[view], false);
        response::pong(&mut out, Some("4"));
        response::error(&mut out, None, ErrorCode::RateLimited, "slow down");
        response::typing(&mut out, "room:x", "u");
        response::presence_update(&mut out, "dm:a:b", "a", true);
        let client_msg = ClientMsg {
            channel: "room:x".into(),
            seq: 2,
            from: "bob".into(),
            device: "d".into(),
            client_msg_id: "c".into(),
            kind: "media".into(),
            text: Some("cap".into()),
            ts: 77,
            target: None,
            media: stored.media.clone(),
            edited: false,
            deleted: false,
        };
        assert_eq!(
            events(&out),
            vec![
                ServerEvent::Hello {
                    user: "u".into(),
                    device: "d".into(),
                    session: "s".into(),
                    shard: 1,
                    heartbeat_ms: 500,
                    limits
                },
                ServerEvent::Joined {
                    id: Some(json!(1)),
                    channel: "room:x".into(),
                    head: 4
                },
                ServerEvent::Left {
                    id: Some(json!("two")),
                    channel: "room:x".into()
                },
                ServerEvent::Ack {
                    id: None,
                    channel: "room:x".into(),
                    client_msg_id: "c".into(),
                    seq: 5,
                    ts: 6,
                    duplicate: true
                },
                ServerEvent::Msg(Box::new(client_msg.clone())),
                ServerEvent::History {
                    id: Some(json!(3)),
                    channel: "room:x".into(),
                    messages: vec![client_msg],
                    has_more: false
                },
                ServerEvent::Pong { id: Some(json!(4)) },
                ServerEvent::Error {
                    id: None,
                    code: "rate_limited".into(),
                    message: "slow down".into()
                },
                ServerEvent::Typing {
                    channel: "room:x".into(),
                    user: "u".into()
                },
                ServerEvent::Other("presence_update".into()),
            ]
        );
    }

    #[test]
    fn server_events_missing_a_field_fail_to_decode() {
        assert!(decode_server_event(r#"{"type":"ack","channel":"room:x"}"#).is_err());
        assert!(decode_server_event(r#"{"channel":"room:x"}"#).is_err());
        assert!(decode_server_event("not json").is_err());
    }

    #[test]
    fn join_send_and_ping_encoders_decode_on_the_server() {
        let mut out = Vec::new();
        encode_join(&mut out, Some(1), "room:x", Some(9), MASK);
        encode_join(&mut out, None, "room:x", None, MASK);
        encode_send(&mut out, Some(2), "dm:a:b", "c-1", "hi \"there\"\n", MASK);
        encode_ping(&mut out, Some(3), MASK);
        let texts = server_texts(&out);
        let limits = Limits::default();
        let decoded: Vec<_> = texts
            .iter()
            .map(|t| decode_request(t, &limits).unwrap())
            .collect();
        assert_eq!(decoded[0].id, Some("1"));
        assert_eq!(
            decoded[0].request,
            Request::Join {
                channel: "room:x",
                since: Some(9),
                mode: JoinMode::Live,
            }
        );
        assert_eq!(decoded[1].id, None);
        assert_eq!(
            decoded[1].request,
            Request::Join {
                channel: "room:x",
                since: None,
                mode: JoinMode::Live,
            }
        );
        assert_eq!(decoded[2].id, Some("2"));
        let Request::Send(send) = &decoded[2].request else {
            panic!("not a send")
        };
        assert_eq!(send.text, "hi \"there\"\n");
        assert_eq!(send.client_msg_id, "c-1");
        assert_eq!(decoded[3].request, Request::Ping);
        assert_eq!(decoded[3].id, Some("3"));
    }

    #[test]
    fn every_request_round_trips_through_encode_request() {
        let media = Media {
            url: "https://x/y".into(),
            mime: "image/png".into(),
            size: 5,
        };
        let send = |kind, text: &'static str, target, media| {
            Request::Send(SendRequest {
                channel: "group:g",
                client_msg_id: Cow::Borrowed("c1"),
                kind,
                text: Cow::Borrowed(text),
                target,
                media,
            })
        };
        let requests = vec![
            Request::Join {
                channel: "room:x",
                since: Some(3),
                mode: JoinMode::Live,
            },
            Request::Join {
                channel: "room:x",
                since: None,
                mode: JoinMode::Digest,
            },
            Request::Join {
                channel: "room:x",
                since: Some(1),
                mode: JoinMode::Counts,
            },
            Request::Leave { channel: "room:x" },
            send(MessageKind::Text, "hello", None, None),
            send(MessageKind::Media, "caption", None, Some(media)),
            send(MessageKind::Edit, "fixed", Some(4), None),
            send(MessageKind::Delete, "", Some(4), None),
            Request::History {
                channel: "room:x",
                range: HistoryRange::Latest,
                limit: 50,
            },
            Request::History {
                channel: "room:x",
                range: HistoryRange::Before(9),
                limit: 10,
            },
            Request::History {
                channel: "room:x",
                range: HistoryRange::After(2),
                limit: 200,
            },
            Request::Read {
                channel: "dm:a:b",
                seq: 8,
            },
            Request::Delivered {
                channel: "dm:a:b",
                seq: 9,
            },
            Request::Typing { channel: "dm:a:b" },
            Request::Presence { channel: "dm:a:b" },
            Request::Ping,
        ];
        for (i, request) in requests.iter().enumerate() {
            let id = if i % 2 == 0 {
                i.to_string()
            } else {
                format!("\"r{i}\"")
            };
            let mut out = Vec::new();
            encode_request(&mut out, Some(&id), request, MASK);
            let texts = server_texts(&out);
            let envelope = decode_request(&texts[0], &Limits::default()).unwrap();
            assert_eq!(envelope.id, Some(id.as_str()));
            assert_eq!(&envelope.request, request);
        }
    }
}
