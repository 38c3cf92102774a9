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
//! payload is buffered. In the client role, a whole, final, uncompressed
//! text frame with a minimal 2- or 4-byte header (nearly every frame a
//! server sends) is recognised from those bytes alone and skips that
//! parse; the general path would accept it the same way
//! (`gateway/fuzz-checks/tests/short_text_frames.rs` holds the two to
//! tungstenite's answers).
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
//! # permessage-deflate
//!
//! A decoder made [`WsDecoder::with_permessage_deflate`] (the extension was
//! negotiated, see [`crate::deflate`]) accepts RSV1 on the first frame of a
//! data message: the reassembled payload is inflated by the
//! [`crate::deflate::Inflater`] passed to [`WsDecoder::feed_mut_with`] (one
//! per shard), bounded by the same message limit (`TooBig`, 1009, as soon as
//! the output passes it). Without the extension RSV1 is a protocol error.
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

use crate::deflate::Inflater;

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
    /// RSV1: the message starting with this frame is compressed.
    compressed: bool,
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
    /// The open fragmented message is compressed (RSV1 on its first frame).
    open_compressed: bool,
}

/// How a complete message's payload becomes an event: as it is, or inflated
/// (bounded by the message limit).
struct Inflate<'i> {
    inflater: Option<&'i mut Inflater>,
    max_bytes: usize,
}

impl Assembler {
    fn on_frame(
        &mut self,
        header: &Header,
        payload: &[u8],
        inflate: &mut Inflate<'_>,
        on_event: &mut dyn FnMut(WsEvent<'_>),
    ) -> Result<(), WsError> {
        match header.kind {
            FrameKind::Ping => on_event(WsEvent::Ping(payload)),
            FrameKind::Pong => on_event(WsEvent::Pong(payload)),
            FrameKind::Close => on_event(WsEvent::Close(parse_close_payload(payload)?)),
            FrameKind::Text | FrameKind::Binary if header.fin => {
                let is_text = header.kind == FrameKind::Text;
                emit_message(is_text, header.compressed, payload, inflate, on_event)?;
            }
            FrameKind::Text | FrameKind::Binary => {
                self.open = Some(if header.kind == FrameKind::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                });
                self.open_compressed = header.compressed;
                self.fragments.clear();
                self.fragments.extend_from_slice(payload);
            }
            FrameKind::Continuation => {
                self.fragments.extend_from_slice(payload);
                if header.fin {
                    let is_text = self.open == Some(MessageKind::Text);
                    self.open = None;
                    let compressed = std::mem::take(&mut self.open_compressed);
                    let result =
                        emit_message(is_text, compressed, &self.fragments, inflate, on_event);
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
    compressed: bool,
    payload: &[u8],
    inflate: &mut Inflate<'_>,
    on_event: &mut dyn FnMut(WsEvent<'_>),
) -> Result<(), WsError> {
    if !compressed {
        return emit_plain(is_text, payload, on_event);
    }
    let Some(inflater) = inflate.inflater.as_deref_mut() else {
        return Err(WsError::Protocol("compressed message but no inflater"));
    };
    inflater.inflate(payload, inflate.max_bytes, |plain| {
        emit_plain(is_text, plain, on_event)
    })?
}

fn emit_plain(
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
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    deflate: bool,
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
            deflate: false,
            frame_buf: Vec::new(),
            assembler: Assembler {
                fragments: Vec::new(),
                open: None,
                open_compressed: false,
            },
            failed: None,
        }
    }

    /// The same decoder for a connection that negotiated permessage-deflate:
    /// RSV1 on the first frame of a data message marks it compressed. Such
    /// a message is inflated by the inflater given to
    /// [`WsDecoder::feed_mut_with`] / [`WsDecoder::feed_with`] (fed without
    /// one, it is a protocol error), its output bounded by the message
    /// limit (`TooBig`).
    #[must_use]
    pub fn with_permessage_deflate(mut self) -> WsDecoder {
        self.deflate = true;
        self
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
        self.feed_input(Input::Shared(input), None, on_event)
    }

    /// [`WsDecoder::feed`] with an inflater for compressed messages (see
    /// [`WsDecoder::with_permessage_deflate`]).
    pub fn feed_with(
        &mut self,
        input: &[u8],
        inflater: &mut Inflater,
        on_event: &mut dyn FnMut(WsEvent<'_>),
    ) -> Result<(), WsError> {
        self.feed_input(Input::Shared(input), Some(inflater), on_event)
    }

    /// Like [`WsDecoder::feed`], but unmasks payloads in place in `input`
    /// (which is left in an unspecified state), so complete frames are never
    /// copied. The server driver's path: it owns its read buffer anyway.
    pub fn feed_mut(
        &mut self,
        input: &mut [u8],
        on_event: &mut dyn FnMut(WsEvent<'_>),
    ) -> Result<(), WsError> {
        self.feed_input(Input::Exclusive(input), None, on_event)
    }

    /// [`WsDecoder::feed_mut`] with an inflater for compressed messages (see
    /// [`WsDecoder::with_permessage_deflate`]): the server driver's path.
    pub fn feed_mut_with(
        &mut self,
        input: &mut [u8],
        inflater: &mut Inflater,
        on_event: &mut dyn FnMut(WsEvent<'_>),
    ) -> Result<(), WsError> {
        self.feed_input(Input::Exclusive(input), Some(inflater), on_event)
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
        inflater: Option<&mut Inflater>,
        on_event: &mut dyn FnMut(WsEvent<'_>),
    ) -> Result<(), WsError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let mut inflate = Inflate {
            inflater,
            max_bytes: self.max_message_bytes,
        };
        let result = self.decode(input, &mut inflate, on_event);
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
        inflate: &mut Inflate<'_>,
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
            let result = self.assembler.on_frame(&header, payload, inflate, on_event);
            self.frame_buf.clear();
            result?;
        }

        // 2. Complete frames straight from the input.
        loop {
            if let Some((header_len, len)) = self.whole_short_text_frame(input.bytes()) {
                let frame = input.split_front(header_len + len);
                emit_plain(true, &frame.bytes()[header_len..], on_event)?;
                continue;
            }
            let Some(header) = self.parse_header(input.bytes())? else {
                break;
            };
            if input.len() < header.frame_len() {
                break;
            }
            match input.split_front(header.frame_len()) {
                Input::Exclusive(frame) => {
                    let payload = &mut frame[header.header_len..];
                    if let Some(mask) = header.mask {
                        apply_mask(payload, mask);
                    }
                    self.assembler
                        .on_frame(&header, payload, inflate, on_event)?;
                }
                Input::Shared(frame) => {
                    let payload = &frame[header.header_len..];
                    match header.mask {
                        None => self
                            .assembler
                            .on_frame(&header, payload, inflate, on_event)?,
                        Some(mask) => {
                            self.frame_buf.extend_from_slice(payload);
                            apply_mask(&mut self.frame_buf, mask);
                            let result = self.assembler.on_frame(
                                &header,
                                &self.frame_buf,
                                inflate,
                                on_event,
                            );
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

    /// The frame nearly every frame a client reads is — a whole, final,
    /// uncompressed, unmasked text frame under 64 KiB with the minimal
    /// length encoding, no fragmented message open, within the size limit —
    /// recognised from its first two or four bytes: (header length,
    /// payload length). Everything else is `None` and goes through
    /// [`WsDecoder::parse_header`], which accepts each such frame the same
    /// way (loadgen reading a big room spent ~10 % of its CPU in the general
    /// header parse and the assembler).
    fn whole_short_text_frame(&self, buf: &[u8]) -> Option<(usize, usize)> {
        if self.role != Role::Client || self.assembler.open.is_some() {
            return None;
        }
        // FIN, no RSV bit, opcode text; then no mask bit.
        if *buf.first()? != 0x81 {
            return None;
        }
        let (header_len, len) = match *buf.get(1)? {
            len @ 0..=125 => (2, usize::from(len)),
            126 => {
                let len = usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]));
                if len < 126 {
                    return None;
                }
                (4, len)
            }
            _ => return None,
        };
        if len > self.max_message_bytes || buf.len() < header_len + len {
            return None;
        }
        Some((header_len, len))
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
        if frame_header.rsv2 || frame_header.rsv3 || (frame_header.rsv1 && !self.deflate) {
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
        if frame_header.rsv1 && !matches!(kind, FrameKind::Text | FrameKind::Binary) {
            return Err(WsError::Protocol(
                "RSV1 set on a control or continuation frame",
            ));
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
            compressed: frame_header.rsv1,
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

/// Writes the header of a final, compressed (RSV1) server frame into `buf`;
/// returns its length.
pub(crate) fn compressed_header(
    buf: &mut [u8; MAX_HEADER_BYTES],
    opcode: WsOpcode,
    payload_len: usize,
) -> usize {
    let header = FrameHeader {
        opcode: opcode.to_tungstenite(),
        rsv1: true,
        ..FrameHeader::default()
    };
    let mut rest: &mut [u8] = &mut buf[..];
    let written = header.format(payload_len as u64, &mut rest);
    debug_assert!(written.is_ok(), "a frame header fits in 14 bytes");
    MAX_HEADER_BYTES - rest.len()
}

/// The opcode and header length of `frame` when it is one complete,
/// final, unmasked frame without reserved bits whose length matches its
/// header (what the `encode_*` functions write); else `None`.
pub(crate) fn server_frame_header(frame: &[u8]) -> Option<(WsOpcode, usize)> {
    let mut cursor = Cursor::new(frame);
    let (header, len) = FrameHeader::parse(&mut cursor).ok()??;
    let header_len = usize::try_from(cursor.position()).ok()?;
    if !header.is_final || header.rsv1 || header.rsv2 || header.rsv3 || header.mask.is_some() {
        return None;
    }
    if u64::try_from(frame.len() - header_len).ok()? != len {
        return None;
    }
    let opcode = match header.opcode {
        OpCode::Data(Data::Text) => WsOpcode::Text,
        OpCode::Data(Data::Binary) => WsOpcode::Binary,
        OpCode::Control(Control::Ping) => WsOpcode::Ping,
        OpCode::Control(Control::Pong) => WsOpcode::Pong,
        OpCode::Control(Control::Close) => WsOpcode::Close,
        _ => return None,
    };
    Some((opcode, header_len))
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
mod tests;
