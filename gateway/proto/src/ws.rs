//! RFC 6455 frame codec, sans-IO, for both roles.
//!
//! [`WsDecoder`] turns bytes read from a socket into [`WsEvent`]s; the
//! `encode_*` functions append complete frames to a caller-owned `Vec<u8>`.
//! Nothing here touches a socket or a clock.
//!
//! # Decoding
//!
//! The decoder is fed whatever the socket returned, split anywhere. Complete
//! frames are parsed straight out of the caller's slice; only the bytes of an
//! incomplete trailing frame are copied into the decoder (`frame_buf`), and
//! only the payload of a fragmented message is reassembled (`fragments`).
//! Headers are parsed with `tungstenite`'s [`FrameHeader::parse`] and then
//! checked against the role and the message state, so a frame announcing a
//! payload over the limit fails with [`WsError::TooBig`] before any of its
//! payload is buffered.
//!
//! Masked payloads (client → server) have to be unmasked somewhere:
//!
//! * [`WsDecoder::feed_mut`] unmasks in place in the caller's buffer — the
//!   zero-copy path the server driver should use;
//! * [`WsDecoder::feed`] takes `&[u8]`, so it copies each masked payload into
//!   `frame_buf` and unmasks it there.
//!
//! # Memory
//!
//! A decoder holds two `Vec`s that start empty ([`WsDecoder::new`] allocates
//! nothing). Each grows only with bytes actually received (never with the
//! length a header announces), is bounded by the message limit plus a 14-byte
//! header, and is released when it is empty and its capacity exceeds
//! [`RETAINED_CAPACITY`] (4 KiB), so an idle connection keeps at most
//! 2 × 4 KiB. [`WsDecoder::buffered_bytes`] reports what is held right now.
//!
//! # Encoding
//!
//! Server frames are unmasked: encode once and write the same bytes to every
//! subscriber. [`encode_text_with`] lets a JSON serializer write the payload
//! directly after a reserved header, which is fixed up afterwards.

use std::fmt;
use std::io::Cursor;

use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Longest possible frame header: 2 bytes, an 8-byte extended length and a
/// 4-byte mask key.
pub const MAX_HEADER_BYTES: usize = 14;

/// Longest payload of a control frame (close, ping, pong).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A decoder buffer that is empty is released when its capacity exceeds this
/// many bytes (4 KiB), so idle connections do not keep the memory of the
/// largest message they ever received.
pub const RETAINED_CAPACITY: usize = 4096;

/// Which end of the connection this codec is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The gateway: incoming frames must be masked, outgoing ones are not.
    Server,
    /// A client (load generator, tests): incoming frames must be unmasked,
    /// outgoing ones are masked.
    Client,
}

/// One decoded WebSocket event. Borrowed from the fed bytes or from the
/// decoder's buffers; valid only for the duration of the callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsEvent<'a> {
    /// A complete text message (reassembled if fragmented), valid UTF-8.
    Text(&'a str),
    /// A complete binary message (reassembled if fragmented).
    Binary(&'a [u8]),
    /// A ping; the payload must be echoed in a pong.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// A close frame: `None` when it carried no status code, else the code
    /// and the (valid UTF-8) reason.
    Close(Option<(u16, &'a str)>),
}

/// Why a byte stream is not acceptable. Every variant ends the connection:
/// send a close frame with [`WsError::close_code`] and stop reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsError {
    /// A frame, or a fragmented message reassembled so far, is larger than the
    /// configured maximum (close code 1009). Detected from the header, before
    /// the payload is buffered.
    TooBig,
    /// The peer broke RFC 6455 (close code 1002); the text says how.
    Protocol(&'static str),
    /// A text message or a close reason is not valid UTF-8 (close code 1007).
    InvalidUtf8,
}

impl WsError {
    /// The WebSocket close code to send for this error: 1009, 1002 or 1007.
    #[must_use]
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::TooBig => 1009,
            WsError::Protocol(_) => 1002,
            WsError::InvalidUtf8 => 1007,
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::TooBig => f.write_str("message too big"),
            WsError::Protocol(why) => write!(f, "websocket protocol error: {why}"),
            WsError::InvalidUtf8 => f.write_str("text is not valid UTF-8"),
        }
    }
}

impl std::error::Error for WsError {}

/// The opcodes an encoder can write. Continuation frames are never written:
/// every message is sent in one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsOpcode {
    /// A text message (UTF-8 payload).
    Text,
    /// A binary message.
    Binary,
    /// A ping (payload ≤ 125 bytes).
    Ping,
    /// A pong (payload ≤ 125 bytes).
    Pong,
    /// A close frame (payload ≤ 125 bytes; see [`encode_close`]).
    Close,
}

impl WsOpcode {
    fn to_tungstenite(self) -> OpCode {
        match self {
            WsOpcode::Text => OpCode::Data(Data::Text),
            WsOpcode::Binary => OpCode::Data(Data::Binary),
            WsOpcode::Ping => OpCode::Control(Control::Ping),
            WsOpcode::Pong => OpCode::Control(Control::Pong),
            WsOpcode::Close => OpCode::Control(Control::Close),
        }
    }

    fn is_control(self) -> bool {
        matches!(self, WsOpcode::Ping | WsOpcode::Pong | WsOpcode::Close)
    }
}

/// What a frame is, as far as the decoder cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameKind {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl FrameKind {
    fn is_control(self) -> bool {
        matches!(self, FrameKind::Close | FrameKind::Ping | FrameKind::Pong)
    }
}

/// A parsed and validated frame header.
#[derive(Clone, Copy, Debug)]
struct Header {
    fin: bool,
    kind: FrameKind,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: usize,
}

impl Header {
    fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// The kind of the fragmented message being reassembled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MessageKind {
    Text,
    Binary,
}

/// Reassembly state: turns validated frames into events.
#[derive(Debug)]
struct Assembler {
    /// Payload received so far of the open fragmented message.
    fragments: Vec<u8>,
    /// The open fragmented message, if any.
    open: Option<MessageKind>,
}

impl Assembler {
    fn on_frame(
        &mut self,
        header: &Header,
        payload: &[u8],
        on_event: &mut dyn FnMut(WsEvent<'_>),
    ) -> Result<(), WsError> {
        match header.kind {
            FrameKind::Ping => on_event(WsEvent::Ping(payload)),
            FrameKind::Pong => on_event(WsEvent::Pong(payload)),
            FrameKind::Close => on_event(WsEvent::Close(parse_close_payload(payload)?)),
            FrameKind::Text | FrameKind::Binary if header.fin => {
                emit_message(header.kind == FrameKind::Text, payload, on_event)?;
            }
            FrameKind::Text | FrameKind::Binary => {
                self.open = Some(if header.kind == FrameKind::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                });
                self.fragments.clear();
                self.fragments.extend_from_slice(payload);
            }
            FrameKind::Continuation => {
                self.fragments.extend_from_slice(payload);
                if header.fin {
                    let is_text = self.open == Some(MessageKind::Text);
                    self.open = None;
                    let result = emit_message(is_text, &self.fragments, on_event);
                    release_if_large(&mut self.fragments);
                    result?;
                }
            }
        }
        Ok(())
    }
}

fn emit_message(
    is_text: bool,
    payload: &[u8],
    on_event: &mut dyn FnMut(WsEvent<'_>),
) -> Result<(), WsError> {
    if is_text {
        let text = std::str::from_utf8(payload).map_err(|_| WsError::InvalidUtf8)?;
        on_event(WsEvent::Text(text));
    } else {
        on_event(WsEvent::Binary(payload));
    }
    Ok(())
}

/// Whether `code` may appear in a close frame (RFC 6455 §7.4, plus the
/// IANA-registered 1012–1014).
fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn parse_close_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::Protocol("close frame payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(WsError::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

/// Empties `buf`, releasing its memory when the capacity is above
/// [`RETAINED_CAPACITY`].
fn release_if_large(buf: &mut Vec<u8>) {
    if buf.capacity() > RETAINED_CAPACITY {
        *buf = Vec::new();
    } else {
        buf.clear();
    }
}

/// The caller's bytes: shared (masked payloads must be copied to be
/// unmasked) or exclusive (unmasked in place).
enum Input<'a> {
    Shared(&'a [u8]),
    Exclusive(&'a mut [u8]),
}

impl<'a> Input<'a> {
    fn bytes(&self) -> &[u8] {
        match self {
            Input::Shared(s) => s,
            Input::Exclusive(s) => s,
        }
    }

    fn len(&self) -> usize {
        self.bytes().len()
    }

    /// Splits off the first `n` bytes (`n ≤ len`), keeping the variant.
    fn split_front(&mut self, n: usize) -> Input<'a> {
        match self {
            Input::Shared(s) => {
                let (front, rest) = s.split_at(n);
                *s = rest;
                Input::Shared(front)
            }
            Input::Exclusive(s) => {
                let (front, rest) = std::mem::take(s).split_at_mut(n);
                *s = rest;
                Input::Exclusive(front)
            }
        }
    }
}

/// Sans-IO WebSocket frame decoder for one connection. See the module docs.
#[derive(Debug)]
pub struct WsDecoder {
    role: Role,
    max_message_bytes: usize,
    /// The bytes of an incomplete frame (header first); when feeding through
    /// [`WsDecoder::feed`], briefly also the unmasked copy of a complete
    /// masked payload.
    frame_buf: Vec<u8>,
    assembler: Assembler,
    /// The error returned earlier, returned again if fed after it.
    failed: Option<WsError>,
}

impl WsDecoder {
    /// A decoder for `role` accepting messages of up to `max_message_bytes`
    /// of payload (after reassembly). Allocates nothing.
    #[must_use]
    pub fn new(role: Role, max_message_bytes: usize) -> WsDecoder {
        WsDecoder {
            role,
            max_message_bytes,
            frame_buf: Vec::new(),
            assembler: Assembler {
                fragments: Vec::new(),
                open: None,
            },
            failed: None,
        }
    }

    /// Feeds newly read bytes. Calls `on_event` once per complete event, in
    /// order. Incomplete trailing bytes are kept internally (the only
    /// allocation: a partial frame or a fragmented message; in the server
    /// role this method also copies each masked payload to unmask it — use
    /// [`WsDecoder::feed_mut`] to avoid that copy). Text messages are
    /// validated UTF-8 (whole message after reassembly). Fragmented messages
    /// (continuation frames) are reassembled; control frames may interleave;
    /// control frames must be final and ≤125 bytes.
    ///
    /// A frame or reassembled message whose payload exceeds
    /// `max_message_bytes` → `Err(TooBig)` as soon as the header is seen
    /// (before buffering the payload). RSV bits set, unknown opcodes, wrong
    /// masking for the role, continuation without start, new data frame while
    /// a fragmented message is open → `Protocol`.
    ///
    /// Frames after a close frame are still decoded: the driver stops
    /// reading once it sees [`WsEvent::Close`]. Events of frames before the
    /// offending one have been delivered when an error is returned. After an `Err` the decoder must not be fed again
    /// (if it is, it returns the same error and emits nothing).
    pub fn feed(
        &mut self,
        input: &[u8],
        on_event: &mut dyn FnMut(WsEvent<'_>),
    ) -> Result<(), WsError> {
        self.feed_input(Input::Shared(input), on_event)
    }

    /// Like [`WsDecoder::feed`], but unmasks payloads in place in `input`
    /// (which is left in an unspecified state), so complete frames are never
    /// copied. The server driver's path: it owns its read buffer anyway.
    pub fn feed_mut(
        &mut self,
        input: &mut [u8],
        on_event: &mut dyn FnMut(WsEvent<'_>),
    ) -> Result<(), WsError> {
        self.feed_input(Input::Exclusive(input), on_event)
    }

    /// Bytes currently buffered (partial frame + fragments), for memory
    /// accounting.
    #[must_use]
    pub fn buffered_bytes(&self) -> usize {
        self.frame_buf.len() + self.assembler.fragments.len()
    }

    /// Bytes of heap memory held by the decoder's buffers (capacity, which is
    /// at least [`WsDecoder::buffered_bytes`]).
    #[must_use]
    pub fn allocated_bytes(&self) -> usize {
        self.frame_buf.capacity() + self.assembler.fragments.capacity()
    }

    fn feed_input(
        &mut self,
        input: Input<'_>,
        on_event: &mut dyn FnMut(WsEvent<'_>),
    ) -> Result<(), WsError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let result = self.decode(input, on_event);
        if let Err(err) = result {
            self.failed = Some(err);
            self.frame_buf = Vec::new();
            self.assembler.fragments = Vec::new();
        } else if self.frame_buf.is_empty() && self.frame_buf.capacity() > RETAINED_CAPACITY {
            self.frame_buf = Vec::new();
        }
        result
    }

    fn decode(
        &mut self,
        mut input: Input<'_>,
        on_event: &mut dyn FnMut(WsEvent<'_>),
    ) -> Result<(), WsError> {
        // 1. Finish the frame started by an earlier call, if any.
        while !self.frame_buf.is_empty() {
            let Some(header) = self.parse_header(&self.frame_buf)? else {
                // Take only header bytes, so a TooBig frame is refused before
                // any of its payload is buffered.
                if input.len() == 0 {
                    return Ok(());
                }
                let want = header_len_hint(&self.frame_buf).saturating_sub(self.frame_buf.len());
                let n = want.clamp(1, input.len());
                self.frame_buf
                    .extend_from_slice(input.split_front(n).bytes());
                continue;
            };
            let missing = header.frame_len() - self.frame_buf.len();
            let n = missing.min(input.len());
            self.frame_buf
                .extend_from_slice(input.split_front(n).bytes());
            if n < missing {
                return Ok(());
            }
            let payload = &mut self.frame_buf[header.header_len..];
            if let Some(mask) = header.mask {
                apply_mask(payload, mask);
            }
            let result = self.assembler.on_frame(&header, payload, on_event);
            self.frame_buf.clear();
            result?;
        }

        // 2. Complete frames straight from the input.
        while let Some(header) = self.parse_header(input.bytes())? {
            if input.len() < header.frame_len() {
                break;
            }
            match input.split_front(header.frame_len()) {
                Input::Exclusive(frame) => {
                    let payload = &mut frame[header.header_len..];
                    if let Some(mask) = header.mask {
                        apply_mask(payload, mask);
                    }
                    self.assembler.on_frame(&header, payload, on_event)?;
                }
                Input::Shared(frame) => {
                    let payload = &frame[header.header_len..];
                    match header.mask {
                        None => self.assembler.on_frame(&header, payload, on_event)?,
                        Some(mask) => {
                            self.frame_buf.extend_from_slice(payload);
                            apply_mask(&mut self.frame_buf, mask);
                            let result =
                                self.assembler.on_frame(&header, &self.frame_buf, on_event);
                            self.frame_buf.clear();
                            result?;
                        }
                    }
                }
            }
        }

        // 3. Keep the start of an incomplete frame. Its header, if complete,
        // has been validated (so its size is within the limit); if not, the
        // tail is shorter than a header.
        self.frame_buf.extend_from_slice(input.bytes());
        Ok(())
    }

    /// Parses and validates the header at the start of `buf`. `Ok(None)`:
    /// the header is not complete yet.
    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, WsError> {
        let mut cursor = Cursor::new(buf);
        let (frame_header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(None),
            // The only error a parse from memory can give.
            Err(_) => return Err(WsError::Protocol("reserved opcode")),
        };
        // At most MAX_HEADER_BYTES.
        let header_len = usize::try_from(cursor.position()).unwrap_or(MAX_HEADER_BYTES);
        if frame_header.rsv1 || frame_header.rsv2 || frame_header.rsv3 {
            return Err(WsError::Protocol("reserved bits set without an extension"));
        }
        let kind = match frame_header.opcode {
            OpCode::Data(Data::Continue) => FrameKind::Continuation,
            OpCode::Data(Data::Text) => FrameKind::Text,
            OpCode::Data(Data::Binary) => FrameKind::Binary,
            OpCode::Control(Control::Close) => FrameKind::Close,
            OpCode::Control(Control::Ping) => FrameKind::Ping,
            OpCode::Control(Control::Pong) => FrameKind::Pong,
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
                return Err(WsError::Protocol("reserved opcode"))
            }
        };
        match (self.role, frame_header.mask.is_some()) {
            (Role::Server, false) => return Err(WsError::Protocol("client frame is not masked")),
            (Role::Client, true) => return Err(WsError::Protocol("server frame is masked")),
            _ => {}
        }
        if kind.is_control() {
            if !frame_header.is_final {
                return Err(WsError::Protocol("fragmented control frame"));
            }
            if len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(WsError::Protocol("control frame longer than 125 bytes"));
            }
        }
        match (kind, self.assembler.open) {
            (FrameKind::Continuation, None) => {
                return Err(WsError::Protocol("continuation frame without a message"))
            }
            (FrameKind::Text | FrameKind::Binary, Some(_)) => {
                return Err(WsError::Protocol(
                    "new data frame while a fragmented message is open",
                ))
            }
            _ => {}
        }
        if len >> 63 != 0 {
            return Err(WsError::Protocol("payload length has its top bit set"));
        }
        let already = if kind == FrameKind::Continuation {
            self.assembler.fragments.len()
        } else {
            0
        };
        let payload_len = usize::try_from(len).map_err(|_| WsError::TooBig)?;
        if !kind.is_control() && payload_len > self.max_message_bytes.saturating_sub(already) {
            return Err(WsError::TooBig);
        }
        Ok(Some(Header {
            fin: frame_header.is_final,
            kind,
            mask: frame_header.mask,
            header_len,
            payload_len,
        }))
    }
}

/// How long the header starting `buf` is: exact once its first two bytes are
/// known, else the two bytes needed to tell.
fn header_len_hint(buf: &[u8]) -> usize {
    match buf {
        [_, second, ..] => {
            let extended = match second & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let mask = if second & 0x80 != 0 { 4 } else { 0 };
            2 + extended + mask
        }
        _ => 2,
    }
}

/// XORs `buf` with the repeating 4-byte `mask`, eight bytes at a time.
pub(crate) fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let mask64 = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let (words, tail) = buf.as_chunks_mut::<8>();
    for word in words {
        *word = (u64::from_ne_bytes(*word) ^ mask64).to_ne_bytes();
    }
    // Eight is a multiple of four: the tail starts at mask phase 0.
    for (byte, m) in tail.iter_mut().zip(mask.iter().cycle()) {
        *byte ^= m;
    }
}

/// Writes the header of a final frame into `buf`; returns its length.
fn format_header(
    buf: &mut [u8; MAX_HEADER_BYTES],
    opcode: WsOpcode,
    payload_len: usize,
    mask: Option<[u8; 4]>,
) -> usize {
    let header = FrameHeader {
        opcode: opcode.to_tungstenite(),
        mask,
        ..FrameHeader::default()
    };
    let mut rest: &mut [u8] = &mut buf[..];
    let written = header.format(payload_len as u64, &mut rest);
    // Writing at most 14 bytes into a 14-byte slice cannot fail.
    debug_assert!(written.is_ok(), "a frame header fits in 14 bytes");
    MAX_HEADER_BYTES - rest.len()
}

/// Appends one complete frame. `mask`: `Some` for the client role (payload
/// masked with it), `None` for the server.
///
/// Control frames (`Ping`, `Pong`, `Close`) must carry at most 125 bytes;
/// longer control payloads are truncated to 125 bytes (a peer would reject
/// them otherwise).
pub fn encode_frame(out: &mut Vec<u8>, opcode: WsOpcode, payload: &[u8], mask: Option<[u8; 4]>) {
    let payload = if opcode.is_control() {
        &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)]
    } else {
        payload
    };
    let mut header = [0u8; MAX_HEADER_BYTES];
    let header_len = format_header(&mut header, opcode, payload.len(), mask);
    out.reserve(header_len + payload.len());
    out.extend_from_slice(&header[..header_len]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask);
    }
}

/// Appends a close frame with `code` and `reason` (truncated at a char
/// boundary to fit the 123 bytes a close frame leaves for it). `mask`: `Some`
/// for the client role.
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str, mask: Option<[u8; 4]>) {
    const MAX_REASON: usize = MAX_CONTROL_PAYLOAD - 2;
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encode_frame(out, WsOpcode::Close, &payload[..2 + end], mask);
}

/// Appends an unmasked (server) text frame whose payload is produced by
/// `write` (e.g. JSON), which must only append to the buffer. The payload is
/// written in place after a reserved header, which is fixed up afterwards
/// (shifting the payload by a few bytes only when the guess was wrong).
/// Returns the payload length. The payload must be UTF-8.
pub fn encode_text_with(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) -> usize {
    encode_frame_with(out, WsOpcode::Text, None, write)
}

/// [`encode_text_with`] for any data opcode and either role.
pub(crate) fn encode_frame_with(
    out: &mut Vec<u8>,
    opcode: WsOpcode,
    mask: Option<[u8; 4]>,
    write: impl FnOnce(&mut Vec<u8>),
) -> usize {
    let mask_len = if mask.is_some() { 4 } else { 0 };
    // The 16-bit length form: most JSON events are 126..=65535 bytes long.
    let guess = 4 + mask_len;
    let start = out.len();
    out.resize(start + guess, 0);
    write(out);
    assert!(
        out.len() >= start + guess,
        "encode_text_with: `write` must only append"
    );
    let payload_start = start + guess;
    let payload_len = out.len() - payload_start;
    let mut header = [0u8; MAX_HEADER_BYTES];
    let header_len = format_header(&mut header, opcode, payload_len, mask);
    if header_len < guess {
        out.copy_within(payload_start.., start + header_len);
        out.truncate(start + header_len + payload_len);
    } else if header_len > guess {
        let grow = header_len - guess;
        out.resize(out.len() + grow, 0);
        out.copy_within(
            payload_start..payload_start + payload_len,
            payload_start + grow,
        );
    }
    out[start..start + header_len].copy_from_slice(&header[..header_len]);
    if let Some(mask) = mask {
        apply_mask(&mut out[start + header_len..], mask);
    }
    payload_len
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const MAX: usize = 1 << 20;

    /// An owned copy of a [`WsEvent`], to compare event sequences.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Ev {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<(u16, String)>),
    }

    impl From<WsEvent<'_>> for Ev {
        fn from(e: WsEvent<'_>) -> Ev {
            match e {
                WsEvent::Text(t) => Ev::Text(t.to_owned()),
                WsEvent::Binary(b) => Ev::Binary(b.to_vec()),
                WsEvent::Ping(b) => Ev::Ping(b.to_vec()),
                WsEvent::Pong(b) => Ev::Pong(b.to_vec()),
                WsEvent::Close(c) => Ev::Close(c.map(|(code, r)| (code, r.to_owned()))),
            }
        }
    }

    fn decode_all(role: Role, max: usize, bytes: &[u8]) -> Result<Vec<Ev>, WsError> {
        let mut events = Vec::new();
        let mut dec = WsDecoder::new(role, max);
        dec.feed(bytes, &mut |e| events.push(Ev::from(e)))?;
        assert_eq!(
            dec.buffered_bytes(),
            0,
            "complete input leaves nothing buffered"
        );
        Ok(events)
    }

    fn decode_in_chunks(role: Role, bytes: &[u8], sizes: &mut dyn FnMut() -> usize) -> Vec<Ev> {
        let mut events = Vec::new();
        let mut dec = WsDecoder::new(role, MAX);
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = sizes().clamp(1, rest.len());
            let (chunk, tail) = rest.split_at(n);
            dec.feed(chunk, &mut |e| events.push(Ev::from(e))).unwrap();
            rest = tail;
        }
        assert_eq!(dec.buffered_bytes(), 0);
        events
    }

    /// A raw frame with explicit flags, for malformed and fragmented input.
    fn raw_frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![first];
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n < 65536 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if let Some(m) = mask {
            out.extend_from_slice(&m);
        }
        let body = out.len();
        out.extend_from_slice(payload);
        if let Some(m) = mask {
            apply_mask(&mut out[body..], m);
        }
        out
    }

    /// A tiny deterministic PRNG (xorshift64*), so tests need no extra crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A stream of several frames of every kind, as a client would send it.
    fn client_stream() -> (Vec<u8>, Vec<Ev>) {
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        encode_frame(&mut bytes, WsOpcode::Text, "héllo".as_bytes(), Some(MASK));
        expected.push(Ev::Text("héllo".into()));
        let big = "x".repeat(70_000);
        encode_frame(&mut bytes, WsOpcode::Text, big.as_bytes(), Some(MASK));
        expected.push(Ev::Text(big));
        encode_frame(&mut bytes, WsOpcode::Ping, b"p1", Some(MASK));
        expected.push(Ev::Ping(b"p1".to_vec()));
        // Fragmented binary with an interleaved pong.
        bytes.extend(raw_frame(0x02, &[1, 2, 3], Some(MASK)));
        bytes.extend(raw_frame(0x8a, b"pong", Some([9, 8, 7, 6])));
        bytes.extend(raw_frame(0x00, &[4; 300], Some([1, 2, 3, 4])));
        bytes.extend(raw_frame(0x80, &[5], Some(MASK)));
        let mut bin = vec![1, 2, 3];
        bin.extend([4; 300]);
        bin.push(5);
        expected.push(Ev::Pong(b"pong".to_vec()));
        expected.push(Ev::Binary(bin));
        encode_frame(&mut bytes, WsOpcode::Text, b"", Some(MASK));
        expected.push(Ev::Text(String::new()));
        encode_close(&mut bytes, 1000, "bye", Some(MASK));
        expected.push(Ev::Close(Some((1000, "bye".into()))));
        (bytes, expected)
    }

    #[test]
    fn every_opcode_round_trips_in_all_three_length_encodings() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 100_000] {
            for opcode in [
                WsOpcode::Text,
                WsOpcode::Binary,
                WsOpcode::Ping,
                WsOpcode::Pong,
            ] {
                if opcode.is_control() && len > MAX_CONTROL_PAYLOAD {
                    continue;
                }
                let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                let expected = match opcode {
                    WsOpcode::Text => Ev::Text(String::from_utf8(payload.clone()).unwrap()),
                    WsOpcode::Binary => Ev::Binary(payload.clone()),
                    WsOpcode::Ping => Ev::Ping(payload.clone()),
                    WsOpcode::Pong => Ev::Pong(payload.clone()),
                    WsOpcode::Close => unreachable!(),
                };
                // Server → client (unmasked) and client → server (masked).
                for (mask, role) in [(None, Role::Client), (Some(MASK), Role::Server)] {
                    let mut bytes = Vec::new();
                    encode_frame(&mut bytes, opcode, &payload, mask);
                    let events = decode_all(role, MAX, &bytes).unwrap();
                    assert_eq!(events, vec![expected.clone()], "{opcode:?} len {len}");
                }
            }
        }
        for (mask, role) in [(None, Role::Client), (Some(MASK), Role::Server)] {
            let mut bytes = Vec::new();
            encode_close(&mut bytes, 4009, "replaced", mask);
            encode_frame(&mut bytes, WsOpcode::Close, &[], mask);
            let events = decode_all(role, MAX, &bytes).unwrap();
            assert_eq!(
                events,
                vec![Ev::Close(Some((4009, "replaced".into()))), Ev::Close(None)]
            );
        }
    }

    #[test]
    fn header_uses_the_shortest_length_encoding() {
        for (len, header_len) in [(125usize, 2usize), (126, 4), (65535, 4), (65536, 10)] {
            let mut bytes = Vec::new();
            encode_frame(&mut bytes, WsOpcode::Binary, &vec![0; len], None);
            assert_eq!(bytes.len(), header_len + len);
            let mut masked = Vec::new();
            encode_frame(&mut masked, WsOpcode::Binary, &vec![0; len], Some(MASK));
            assert_eq!(masked.len(), header_len + 4 + len);
        }
    }

    #[test]
    fn byte_at_a_time_and_random_splits_give_identical_events() {
        let (bytes, expected) = client_stream();
        assert_eq!(decode_all(Role::Server, MAX, &bytes).unwrap(), expected);
        assert_eq!(decode_in_chunks(Role::Server, &bytes, &mut || 1), expected);
        for seed in 1..20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let max_chunk = [2usize, 7, 64, 1000, 100_000][seed as usize % 5];
            let events = decode_in_chunks(Role::Server, &bytes, &mut || rng.below(max_chunk) + 1);
            assert_eq!(events, expected, "seed {seed}");
        }
    }

    #[test]
    fn every_split_point_gives_identical_events() {
        // Small frames only, so every two-way split is cheap.
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, WsOpcode::Text, b"one", Some(MASK));
        bytes.extend(raw_frame(
            0x01,
            "h\u{e9}".as_bytes()[..2].as_ref(),
            Some(MASK),
        ));
        encode_frame(&mut bytes, WsOpcode::Ping, b"", Some(MASK));
        bytes.extend(raw_frame(0x80, &"h\u{e9}".as_bytes()[2..], Some(MASK)));
        encode_frame(&mut bytes, WsOpcode::Binary, &[7; 200], Some(MASK));
        let expected = decode_all(Role::Server, MAX, &bytes).unwrap();
        assert_eq!(expected.len(), 4);
        for split in 0..=bytes.len() {
            let mut events = Vec::new();
            let mut dec = WsDecoder::new(Role::Server, MAX);
            dec.feed(&bytes[..split], &mut |e| events.push(Ev::from(e)))
                .unwrap();
            dec.feed(&bytes[split..], &mut |e| events.push(Ev::from(e)))
                .unwrap();
            assert_eq!(events, expected, "split at {split}");
        }
    }

    #[test]
    fn feed_mut_unmasks_in_place_with_the_same_events_as_feed() {
        let (bytes, expected) = client_stream();
        for chunk in [1usize, 3, 100, 5000, bytes.len()] {
            let mut copy = bytes.clone();
            let mut events = Vec::new();
            let mut dec = WsDecoder::new(Role::Server, MAX);
            for piece in copy.chunks_mut(chunk) {
                dec.feed_mut(piece, &mut |e| events.push(Ev::from(e)))
                    .unwrap();
            }
            assert_eq!(events, expected, "chunk {chunk}");
            assert_eq!(dec.buffered_bytes(), 0);
        }
    }

    #[test]
    fn fragmented_text_is_reassembled_around_an_interleaved_ping() {
        // "añb" split inside the two-byte "ñ".
        let text = "añb".as_bytes();
        let mut bytes = raw_frame(0x01, &text[..2], Some(MASK));
        bytes.extend(raw_frame(0x89, b"are you there", Some(MASK)));
        bytes.extend(raw_frame(0x00, &text[2..3], Some(MASK)));
        bytes.extend(raw_frame(0x80, &text[3..], Some(MASK)));
        let events = decode_all(Role::Server, MAX, &bytes).unwrap();
        assert_eq!(
            events,
            vec![Ev::Ping(b"are you there".to_vec()), Ev::Text("añb".into())]
        );
    }

    #[test]
    fn buffered_bytes_counts_partial_frame_and_fragments() {
        let mut dec = WsDecoder::new(Role::Server, MAX);
        let first = raw_frame(0x01, b"abcd", Some(MASK));
        dec.feed(&first, &mut |_| panic!("no event yet")).unwrap();
        assert_eq!(dec.buffered_bytes(), 4, "fragment payload");
        let last = raw_frame(0x80, b"efgh", Some(MASK));
        dec.feed(&last[..5], &mut |_| panic!("no event yet"))
            .unwrap();
        assert_eq!(dec.buffered_bytes(), 4 + 5, "fragment plus partial frame");
        let mut got = None;
        dec.feed(&last[5..], &mut |e| got = Some(Ev::from(e)))
            .unwrap();
        assert_eq!(got, Some(Ev::Text("abcdefgh".into())));
        assert_eq!(dec.buffered_bytes(), 0);
    }

    #[test]
    fn large_buffers_are_released_once_drained() {
        let mut dec = WsDecoder::new(Role::Server, MAX);
        assert_eq!(dec.allocated_bytes(), 0, "new allocates nothing");
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, WsOpcode::Binary, &[1; 50_000], Some(MASK));
        // Via a partial frame, and via the unmasking copy of `feed`.
        dec.feed(&bytes[..10], &mut |_| {}).unwrap();
        dec.feed(&bytes[10..], &mut |_| {}).unwrap();
        assert_eq!(dec.allocated_bytes(), 0);
        dec.feed(&bytes, &mut |_| {}).unwrap();
        assert_eq!(dec.allocated_bytes(), 0);
        // Small frames keep their (small) buffer for reuse.
        let mut small = Vec::new();
        encode_frame(&mut small, WsOpcode::Text, b"hi", Some(MASK));
        dec.feed(&small, &mut |_| {}).unwrap();
        assert!(dec.allocated_bytes() <= RETAINED_CAPACITY);
    }

    #[test]
    fn oversize_frame_is_refused_from_its_header_without_buffering() {
        let mut dec = WsDecoder::new(Role::Server, 1024);
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, WsOpcode::Text, &vec![b'a'; 1 << 20], Some(MASK));
        // Only the 14-byte header is available: enough to refuse.
        assert_eq!(dec.feed(&bytes[..14], &mut |_| {}), Err(WsError::TooBig));
        assert_eq!(dec.buffered_bytes(), 0);
        assert_eq!(dec.allocated_bytes(), 0);
        // Also when the header arrives a byte at a time after other frames.
        let mut dec = WsDecoder::new(Role::Server, 1024);
        let mut stream = Vec::new();
        encode_frame(&mut stream, WsOpcode::Text, b"ok", Some(MASK));
        stream.extend_from_slice(&bytes[..14]);
        let mut result = Ok(());
        let mut events = 0;
        for b in &stream {
            result = dec.feed(std::slice::from_ref(b), &mut |_| events += 1);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(WsError::TooBig));
        assert_eq!(events, 1);
        assert!(dec.buffered_bytes() <= MAX_HEADER_BYTES);
        // A frame of exactly the limit is fine.
        let mut exact = Vec::new();
        encode_frame(&mut exact, WsOpcode::Binary, &[0; 1024], Some(MASK));
        assert!(decode_all(Role::Server, 1024, &exact).is_ok());
    }

    #[test]
    fn oversize_reassembled_message_is_refused_at_the_fragment_header() {
        let mut dec = WsDecoder::new(Role::Server, 1000);
        let first = raw_frame(0x01, &[b'a'; 600], Some(MASK));
        dec.feed(&first, &mut |_| {}).unwrap();
        let second = raw_frame(0x80, &[b'a'; 600], Some(MASK));
        assert_eq!(dec.feed(&second[..8], &mut |_| {}), Err(WsError::TooBig));
        assert_eq!(WsError::TooBig.close_code(), 1009);
    }

    #[test]
    fn unmasked_client_frame_is_refused_in_the_server_role() {
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, WsOpcode::Text, b"hi", None);
        let err = decode_all(Role::Server, MAX, &bytes).unwrap_err();
        assert!(matches!(err, WsError::Protocol(_)));
        assert_eq!(err.close_code(), 1002);
    }

    #[test]
    fn masked_server_frame_is_refused_in_the_client_role() {
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, WsOpcode::Text, b"hi", Some(MASK));
        assert!(matches!(
            decode_all(Role::Client, MAX, &bytes),
            Err(WsError::Protocol(_))
        ));
    }

    #[test]
    fn invalid_utf8_text_is_refused_with_1007() {
        let bad = [b'a', 0xff, b'b'];
        let single = raw_frame(0x81, &bad, Some(MASK));
        assert_eq!(
            decode_all(Role::Server, MAX, &single),
            Err(WsError::InvalidUtf8)
        );
        let mut fragmented = raw_frame(0x01, &bad[..1], Some(MASK));
        fragmented.extend(raw_frame(0x80, &bad[1..], Some(MASK)));
        assert_eq!(
            decode_all(Role::Server, MAX, &fragmented),
            Err(WsError::InvalidUtf8)
        );
        // A truncated multi-byte character at the end of the message.
        let truncated = raw_frame(0x81, &"é".as_bytes()[..1], Some(MASK));
        assert_eq!(
            decode_all(Role::Server, MAX, &truncated),
            Err(WsError::InvalidUtf8)
        );
        let mut close_payload = 1000u16.to_be_bytes().to_vec();
        close_payload.push(0xc3);
        let close = raw_frame(0x88, &close_payload, Some(MASK));
        assert_eq!(
            decode_all(Role::Server, MAX, &close),
            Err(WsError::InvalidUtf8)
        );
        assert_eq!(WsError::InvalidUtf8.close_code(), 1007);
    }

    #[test]
    fn protocol_violations_are_refused_with_1002() {
        let long_ping = raw_frame(0x89, &[0; 126], Some(MASK));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("rsv1", raw_frame(0xc1, b"x", Some(MASK))),
            ("rsv2", raw_frame(0xa1, b"x", Some(MASK))),
            ("rsv3", raw_frame(0x91, b"x", Some(MASK))),
            ("reserved data opcode", raw_frame(0x83, b"x", Some(MASK))),
            ("reserved control opcode", raw_frame(0x8b, b"x", Some(MASK))),
            (
                "continuation without start",
                raw_frame(0x80, b"x", Some(MASK)),
            ),
            ("fragmented ping", raw_frame(0x09, b"x", Some(MASK))),
            ("ping over 125 bytes", long_ping),
            ("one-byte close", raw_frame(0x88, &[3], Some(MASK))),
            (
                "close code 1005",
                raw_frame(0x88, &1005u16.to_be_bytes(), Some(MASK)),
            ),
            (
                "close code 999",
                raw_frame(0x88, &999u16.to_be_bytes(), Some(MASK)),
            ),
            (
                "close code 5000",
                raw_frame(0x88, &5000u16.to_be_bytes(), Some(MASK)),
            ),
            ("new data while fragmented", {
                let mut b = raw_frame(0x01, b"x", Some(MASK));
                b.extend(raw_frame(0x81, b"y", Some(MASK)));
                b
            }),
            ("top length bit", {
                let mut b = vec![0x82, 0xff];
                b.extend_from_slice(&(1u64 << 63).to_be_bytes());
                b.extend_from_slice(&MASK);
                b
            }),
        ];
        for (name, bytes) in cases {
            let err = decode_all(Role::Server, MAX, &bytes).unwrap_err();
            assert!(matches!(err, WsError::Protocol(_)), "{name}: {err:?}");
            assert_eq!(err.close_code(), 1002, "{name}");
        }
    }

    #[test]
    fn decoder_fed_after_an_error_repeats_it_and_emits_nothing() {
        let mut dec = WsDecoder::new(Role::Server, MAX);
        let bad = raw_frame(0xc1, b"x", Some(MASK));
        let err = dec.feed(&bad, &mut |_| {}).unwrap_err();
        let mut good = Vec::new();
        encode_frame(&mut good, WsOpcode::Text, b"hi", Some(MASK));
        assert_eq!(
            dec.feed(&good, &mut |_| panic!("no events after an error")),
            Err(err)
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for round in 0..2000 {
            let len = rng.below(64);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Bias towards plausible headers.
            if round % 2 == 0 && len >= 2 {
                bytes[0] = [0x81, 0x82, 0x01, 0x00, 0x80, 0x89, 0x88][rng.below(7)];
                bytes[1] = 0x80 | (rng.below(130) as u8);
            }
            for role in [Role::Server, Role::Client] {
                let mut dec = WsDecoder::new(role, 100);
                for chunk in bytes.chunks(rng.below(8) + 1) {
                    if dec.feed(chunk, &mut |_| {}).is_err() {
                        break;
                    }
                }
                assert!(dec.buffered_bytes() <= 100 + MAX_HEADER_BYTES);
            }
        }
    }

    #[test]
    fn apply_mask_matches_the_bytewise_definition() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, MASK);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ MASK[i % 4])
                .collect();
            assert_eq!(fast, slow, "len {len}");
        }
    }

    #[test]
    fn close_reason_is_truncated_at_a_char_boundary() {
        // 61 two-byte chars = 122 bytes, then a 2-byte char that does not fit.
        let reason = "é".repeat(62);
        let mut bytes = Vec::new();
        encode_close(&mut bytes, 1001, &reason, None);
        let events = decode_all(Role::Client, MAX, &bytes).unwrap();
        assert_eq!(events, vec![Ev::Close(Some((1001, "é".repeat(61))))]);
        let short = "going away";
        let mut bytes = Vec::new();
        encode_close(&mut bytes, 1001, short, None);
        assert_eq!(
            decode_all(Role::Client, MAX, &bytes).unwrap(),
            vec![Ev::Close(Some((1001, short.into())))]
        );
    }

    #[test]
    fn encode_text_with_fixes_up_the_header_for_every_length_encoding() {
        for len in [0usize, 5, 125, 126, 300, 65535, 65536, 200_000] {
            let mut out = b"prefix".to_vec();
            let n = encode_text_with(&mut out, |buf| buf.extend(std::iter::repeat_n(b'z', len)));
            assert_eq!(n, len);
            let mut reference = b"prefix".to_vec();
            encode_frame(&mut reference, WsOpcode::Text, &vec![b'z'; len], None);
            assert_eq!(out, reference, "len {len}");
            // Masked variant decodes in the server role.
            let mut masked = Vec::new();
            encode_frame_with(&mut masked, WsOpcode::Text, Some(MASK), |buf| {
                buf.extend(std::iter::repeat_n(b'z', len));
            });
            let events = decode_all(Role::Server, MAX, &masked).unwrap();
            assert_eq!(events, vec![Ev::Text("z".repeat(len))]);
        }
    }

    /// An in-memory stream for tungstenite: reads from `input`, writes to
    /// `output`.
    struct Pipe {
        input: std::io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn tungstenite_client_frames_decode_with_our_server_decoder() {
        use tungstenite::protocol::{frame::Frame, Message, Role as TRole, WebSocket};
        let pipe = Pipe {
            input: std::io::Cursor::new(Vec::new()),
            output: Vec::new(),
        };
        let mut ws = WebSocket::from_raw_socket(pipe, TRole::Client, None);
        let big = "ü".repeat(40_000); // 80,000 bytes: the 64-bit length form
        ws.send(Message::text("hello")).unwrap();
        ws.send(Message::text(big.clone())).unwrap();
        ws.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
        ws.send(Message::Ping(b"ping".to_vec().into())).unwrap();
        ws.send(Message::Pong(b"pong".to_vec().into())).unwrap();
        ws.send(Message::text("a".repeat(300))).unwrap();
        ws.close(Some(tungstenite::protocol::CloseFrame {
            code: 1000u16.into(),
            reason: "done".into(),
        }))
        .unwrap();
        ws.flush().unwrap();
        let mut bytes = std::mem::take(&mut ws.get_mut().output);
        // A fragmented masked message built from tungstenite frames.
        for (data, opcode, fin) in [
            (&b"frag"[..], OpCode::Data(Data::Text), false),
            (&b"mented"[..], OpCode::Data(Data::Continue), true),
        ] {
            let mut frame = Frame::message(data.to_vec(), opcode, fin);
            frame.header_mut().mask = Some(MASK);
            frame.format(&mut bytes).unwrap();
        }
        let expected = vec![
            Ev::Text("hello".into()),
            Ev::Text(big),
            Ev::Binary(vec![0, 1, 2, 255]),
            Ev::Ping(b"ping".to_vec()),
            Ev::Pong(b"pong".to_vec()),
            Ev::Text("a".repeat(300)),
            Ev::Close(Some((1000, "done".into()))),
            Ev::Text("fragmented".into()),
        ];
        assert_eq!(decode_all(Role::Server, MAX, &bytes).unwrap(), expected);
        assert_eq!(decode_in_chunks(Role::Server, &bytes, &mut || 1), expected);
    }

    #[test]
    fn our_server_frames_decode_with_tungstenite() {
        use tungstenite::protocol::{Message, Role as TRole, WebSocket};
        let big = "b".repeat(70_000);
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, WsOpcode::Text, b"hello", None);
        encode_text_with(&mut bytes, |b| b.extend_from_slice(big.as_bytes()));
        encode_frame(&mut bytes, WsOpcode::Binary, &[9; 200], None);
        encode_frame(&mut bytes, WsOpcode::Ping, b"p", None);
        encode_frame(&mut bytes, WsOpcode::Pong, b"q", None);
        encode_close(&mut bytes, 4009, "replaced", None);
        let pipe = Pipe {
            input: std::io::Cursor::new(bytes),
            output: Vec::new(),
        };
        let mut ws = WebSocket::from_raw_socket(pipe, TRole::Client, None);
        assert_eq!(ws.read().unwrap(), Message::text("hello"));
        assert_eq!(ws.read().unwrap(), Message::text(big));
        assert_eq!(ws.read().unwrap(), Message::binary(vec![9; 200]));
        assert_eq!(ws.read().unwrap(), Message::Ping(b"p".to_vec().into()));
        assert_eq!(ws.read().unwrap(), Message::Pong(b"q".to_vec().into()));
        match ws.read().unwrap() {
            Message::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 4009);
                assert_eq!(frame.reason.as_str(), "replaced");
            }
            other => panic!("expected close, got {other:?}"),
        }
    }

    #[test]
    fn our_client_frames_decode_with_tungstenite_server() {
        use tungstenite::protocol::{Message, Role as TRole, WebSocket};
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, WsOpcode::Text, "zoë".as_bytes(), Some(MASK));
        encode_frame(
            &mut bytes,
            WsOpcode::Binary,
            &[1; 70_000],
            Some([0, 0xff, 0x10, 1]),
        );
        let pipe = Pipe {
            input: std::io::Cursor::new(bytes),
            output: Vec::new(),
        };
        let mut ws = WebSocket::from_raw_socket(pipe, TRole::Server, None);
        assert_eq!(ws.read().unwrap(), Message::text("zoë"));
        assert_eq!(ws.read().unwrap(), Message::binary(vec![1; 70_000]));
    }
}
