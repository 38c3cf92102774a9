//! The WebSocket frame decoder: consistency with itself, and with
//! tungstenite.
//!
//! The first input byte chooses the role (bit 0) and the message limit
//! (bits 1–3, from [`LIMITS`]); bits 4–7 choose how the rest is chunked.
//!
//! ## Differences from tungstenite that are not bugs
//!
//! [`against_tungstenite`] compares event by event and normalises these:
//!
//! * **Earlier refusals.** Ours checks a frame's header (reserved bits,
//!   opcode, masking, control-frame rules, fragmentation state, size) as
//!   soon as the header is in; tungstenite checks most of it once the whole
//!   payload is in. So when input ends inside such a frame, ours has
//!   refused and tungstenite still waits: accepted when the events before
//!   are the same.
//! * **Fragmented text with invalid UTF-8.** tungstenite validates each
//!   fragment as it arrives; ours validates the reassembled message. So
//!   tungstenite may refuse while ours waits for the final fragment (or
//!   refuses later, for another reason): accepted when the events before
//!   are the same and tungstenite's reason is UTF-8 — ours may meanwhile
//!   have passed on control frames (pings, pongs, a close) interleaved with
//!   the fragments.
//! * **Close codes.** Ours refuses (1002) a close frame whose code is not
//!   one RFC 6455 or IANA assigned (1000–1003, 1007–1014, 3000–4999);
//!   tungstenite reports such a close with code 1002 instead, and accepts
//!   1016–2999 (or refuses the frame first because its reason is not
//!   UTF-8). Both end the connection; accepted. The other way round,
//!   1014 (assigned by IANA: "Bad Gateway") is a close for ours and a
//!   close with 1002 for tungstenite, which does not know it; accepted.
//! * **After a close.** The driver stops at the first close; events and
//!   errors after it are not compared.

use std::io::{self, Read, Write};

use chat_proto::ws::{encode_close, encode_frame, WsOpcode, MAX_CONTROL_PAYLOAD, MAX_HEADER_BYTES};
use chat_proto::{Role, WsDecoder, WsError, WsEvent};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Message, WebSocket, WebSocketConfig};

/// The message limits a run may pick (all above a control frame's 125
/// bytes, so tungstenite's frame limit never refuses a valid control frame).
pub const LIMITS: [usize; 8] = [126, 127, 200, 1000, 4096, 65_535, 65_536, 1 << 20];

/// Chunk sizes the input is cut into (cycled from a start the first byte
/// picks).
pub(crate) const CHUNKS: [usize; 8] = [1, 2, 3, 5, 14, 64, 127, 1024];

/// A decoded event, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping.
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// A close frame.
    Close(Option<(u16, String)>),
}

impl Event {
    pub(crate) fn of(e: WsEvent<'_>) -> Event {
        match e {
            WsEvent::Text(t) => Event::Text(t.to_owned()),
            WsEvent::Binary(b) => Event::Binary(b.to_vec()),
            WsEvent::Ping(b) => Event::Ping(b.to_vec()),
            WsEvent::Pong(b) => Event::Pong(b.to_vec()),
            WsEvent::Close(c) => Event::Close(c.map(|(code, r)| (code, r.to_owned()))),
        }
    }

    /// Appends the event as one frame (masked with `mask` when given).
    fn encode(&self, out: &mut Vec<u8>, mask: Option<[u8; 4]>) {
        match self {
            Event::Text(t) => encode_frame(out, WsOpcode::Text, t.as_bytes(), mask),
            Event::Binary(b) => encode_frame(out, WsOpcode::Binary, b, mask),
            Event::Ping(b) => encode_frame(out, WsOpcode::Ping, b, mask),
            Event::Pong(b) => encode_frame(out, WsOpcode::Pong, b, mask),
            Event::Close(None) => encode_frame(out, WsOpcode::Close, &[], mask),
            Event::Close(Some((code, reason))) => encode_close(out, *code, reason, mask),
        }
    }
}

/// Role, limit and chunking from the first byte; `None` for empty input.
pub(crate) fn setup(data: &[u8]) -> Option<(Role, usize, usize, &[u8])> {
    let (&ctl, rest) = data.split_first()?;
    let role = if ctl & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let limit = LIMITS[usize::from(ctl >> 1) & 7];
    Some((role, limit, usize::from(ctl >> 4), rest))
}

/// Decodes `input` fed in chunks (`None`: in one piece through `feed`;
/// `Some(start)`: cycling [`CHUNKS`] from `start`, through `feed_mut`),
/// checking the decoder's bounds after every call. Returns the events and
/// the error, if any.
fn decode(
    role: Role,
    limit: usize,
    input: &[u8],
    chunking: Option<usize>,
) -> (Vec<Event>, Option<WsError>) {
    let mut decoder = WsDecoder::new(role, limit);
    let mut events = Vec::new();
    let mut on_event = |e: WsEvent<'_>| events.push(Event::of(e));
    let mut result = Ok(());
    match chunking {
        None => result = decoder.feed(input, &mut on_event),
        Some(start) => {
            let mut buf = input.to_vec();
            let mut rest = &mut buf[..];
            let mut i = start;
            while !rest.is_empty() && result.is_ok() {
                let n = CHUNKS[i % CHUNKS.len()].min(rest.len());
                i += 1;
                let (chunk, tail) = std::mem::take(&mut rest).split_at_mut(n);
                rest = tail;
                result = decoder.feed_mut(chunk, &mut on_event);
                // A partial frame (≤ limit + header) and the fragments of the
                // open message (≤ limit) — a control frame may be partial
                // while fragments are held.
                assert!(
                    decoder.buffered_bytes() <= limit + MAX_CONTROL_PAYLOAD + MAX_HEADER_BYTES,
                    "decoder holds {} bytes with a {limit}-byte limit",
                    decoder.buffered_bytes()
                );
            }
        }
    }
    let error = result.err();
    if let Some(err) = error {
        assert_eq!(decoder.buffered_bytes(), 0, "buffers kept after {err}");
        assert_eq!(decoder.allocated_bytes(), 0, "memory kept after {err}");
        let mut after = 0;
        let again = decoder.feed(&[0x81, 0x00], &mut |_| after += 1);
        assert_eq!(again, Err(err), "an error is sticky");
        assert_eq!(after, 0, "no events after an error");
        assert!(matches!(err.close_code(), 1002 | 1007 | 1009));
    }
    (events, error)
}

/// Properties every event has, whatever the input.
fn check_event(e: &Event, limit: usize) {
    match e {
        Event::Text(t) => assert!(t.len() <= limit),
        Event::Binary(b) => assert!(b.len() <= limit),
        Event::Ping(b) | Event::Pong(b) => assert!(b.len() <= MAX_CONTROL_PAYLOAD),
        Event::Close(None) => {}
        Event::Close(Some((code, reason))) => {
            assert!(
                matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999),
                "{code}"
            );
            assert!(reason.len() <= MAX_CONTROL_PAYLOAD - 2);
        }
    }
}

/// The decoder agrees with itself: in one piece or in chunks, shared or
/// unmasked in place, the same events and the same verdict; its bounds
/// hold; every event re-encodes to a frame that decodes to it.
pub fn frames(data: &[u8]) {
    let Some((role, limit, chunk_start, input)) = setup(data) else {
        return;
    };
    let whole = decode(role, limit, input, None);
    let chunked = decode(role, limit, input, Some(chunk_start));
    assert_eq!(whole, chunked, "one piece vs chunks");
    for e in &whole.0 {
        check_event(e, limit);
    }
    // Round trip: the events, encoded by our encoder in the peer's role.
    let mask = (role == Role::Server).then_some([0x37, 0xfa, 0x21, 0x3d]);
    let mut encoded = Vec::new();
    for e in &whole.0 {
        e.encode(&mut encoded, mask);
    }
    let again = decode(role, limit, &encoded, None);
    assert_eq!(again, (whole.0, None), "re-encoded events");
}

/// A socket for tungstenite: reads the input, then "would block"; writes
/// (pongs, close replies) go nowhere.
struct Script<'a> {
    input: &'a [u8],
}

impl Read for Script<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Script<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How tungstenite's reading ended.
#[derive(Debug, PartialEq, Eq)]
enum TungEnd {
    /// Waiting for more bytes (or stopped at a close).
    Pending,
    /// Refused because of UTF-8.
    Utf8,
    /// Refused for another reason.
    Refused(String),
}

fn tungstenite_events(role: Role, limit: usize, input: &[u8]) -> (Vec<Event>, TungEnd) {
    let role = match role {
        Role::Server => tungstenite::protocol::Role::Server,
        Role::Client => tungstenite::protocol::Role::Client,
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let mut ws = WebSocket::from_raw_socket(Script { input }, role, Some(config));
    let mut events = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => events.push(Event::Text(t.as_str().to_owned())),
            Ok(Message::Binary(b)) => events.push(Event::Binary(b.to_vec())),
            Ok(Message::Ping(b)) => events.push(Event::Ping(b.to_vec())),
            Ok(Message::Pong(b)) => events.push(Event::Pong(b.to_vec())),
            Ok(Message::Close(c)) => {
                events.push(Event::Close(
                    c.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())),
                ));
                return (events, TungEnd::Pending);
            }
            Ok(Message::Frame(_)) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                return (events, TungEnd::Pending)
            }
            Err(tungstenite::Error::Utf8(_)) => return (events, TungEnd::Utf8),
            Err(e) => return (events, TungEnd::Refused(e.to_string())),
        }
    }
}

/// Differential: our decoder and tungstenite see the same stream (see the
/// module docs for the normalised differences).
pub fn against_tungstenite(data: &[u8]) {
    let Some((role, limit, _, input)) = setup(data) else {
        return;
    };
    let (mut ours, mut error) = decode(role, limit, input, None);
    // The driver stops at the first close.
    if let Some(i) = ours.iter().position(|e| matches!(e, Event::Close(_))) {
        ours.truncate(i + 1);
        error = None;
    }
    let (theirs, end) = tungstenite_events(role, limit, input);
    let same_prefix = |n: usize| ours[..n] == theirs[..n];
    match (error, &end) {
        (None, TungEnd::Pending) => {
            // A close code ours accepts and tungstenite does not know
            // (1014, IANA's "Bad Gateway") tungstenite reports as 1002.
            let mut theirs = theirs;
            if let (Some(Event::Close(Some((ours_code, _)))), Some(last)) =
                (ours.last(), theirs.last_mut())
            {
                if !CloseCode::from(*ours_code).is_allowed()
                    && matches!(last, Event::Close(Some((1002, _))))
                {
                    *last = ours[ours.len() - 1].clone();
                }
            }
            assert_eq!(ours, theirs, "both accept");
        }
        (Some(WsError::Protocol("invalid close code")), TungEnd::Pending) => {
            // tungstenite: a close (with its replacement code, or with a
            // 1016–2999 code it accepts) at the same place.
            assert_eq!(theirs.len(), ours.len() + 1, "{ours:?} vs {theirs:?}");
            assert!(matches!(theirs.last(), Some(Event::Close(Some(_)))));
            assert!(same_prefix(ours.len()));
        }
        (Some(_), TungEnd::Pending) => {
            // Refused from a header tungstenite has not finished reading.
            assert_eq!(
                ours, theirs,
                "ours refuses early ({error:?}), the events before agree"
            );
        }
        (_, TungEnd::Utf8) if ours.len() >= theirs.len() => {
            // tungstenite refuses a fragment (or a close reason); ours
            // waits for the end of the message, passing on the control
            // frames that come meanwhile, and then accepts nothing more or
            // refuses (the message's UTF-8, or a close frame for its code).
            assert!(
                same_prefix(theirs.len()),
                "tungstenite refuses UTF-8, the events before differ: {ours:?} vs {theirs:?}"
            );
            assert!(
                ours[theirs.len()..]
                    .iter()
                    .all(|e| matches!(e, Event::Ping(_) | Event::Pong(_) | Event::Close(_))),
                "only control frames while the message is open: {ours:?} vs {theirs:?}"
            );
        }
        (None, TungEnd::Utf8) => {
            panic!("tungstenite passed on more before refusing UTF-8: {ours:?} vs {theirs:?}");
        }
        (None, TungEnd::Refused(why)) => {
            panic!("tungstenite refuses ({why}) what ours accepts: {ours:?} vs {theirs:?}");
        }
        (Some(err), TungEnd::Utf8 | TungEnd::Refused(_)) => {
            // Both refuse (ours maybe earlier, from a header): the events
            // before agree.
            let n = ours.len().min(theirs.len());
            assert!(
                same_prefix(n),
                "both refuse ({err} / {end:?}) but the events before differ: {ours:?} vs {theirs:?}"
            );
        }
    }
}
