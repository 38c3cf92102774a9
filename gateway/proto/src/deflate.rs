//! permessage-deflate (RFC 7692), sans-IO: the negotiation in the upgrade,
//! compressing server frames, inflating client messages.
//!
//! # What is negotiated
//!
//! The gateway accepts the first `permessage-deflate` offer of a client's
//! `Sec-WebSocket-Extensions` that it can honour ([`negotiate`]) and always
//! answers with
//!
//! ```text
//! permessage-deflate; server_no_context_takeover; client_no_context_takeover
//! ```
//!
//! (plus `server_max_window_bits=N` echoed when the offer asked for it):
//!
//! * **`server_no_context_takeover`**: every server message is compressed
//!   on its own, from an empty window. So a message compresses to the same
//!   bytes for every member, and a shard compresses each committed batch
//!   once for all its members that negotiated the extension ([`Deflater`];
//!   no compressor state per connection).
//! * **`client_no_context_takeover`**, even when the offer did not carry it
//!   (RFC 7692 §7.1.1.2: a server MAY include it in a response; a client
//!   that gets it MUST NOT use context takeover; browsers and Python
//!   `websockets` both accept it). Each client message can then be inflated
//!   on its own by one [`Inflater`] per shard: the server keeps no LZ77
//!   window per connection (which would cost 32 KiB each, for as long as the
//!   connection lives). The inflater's window is zeroed before every
//!   message, so a client that ignores the parameter and refers back into
//!   an earlier message reads zeros there (garbage text, usually refused as
//!   bad JSON) — never bytes of another connection's message.
//! * **`server_max_window_bits=N`**: the compressor (miniz_oxide) always
//!   uses a 32 KiB window, so a smaller window is honoured by compressing
//!   only payloads of at most [`MAX_COMPRESSED_PAYLOAD`] (4 KiB) bytes: no
//!   back-reference within one such message can reach further than 2^12.
//!   Offers of `N` from 12 to 15 are accepted (and echoed); `N` below 12
//!   cannot be honoured and declines the offer.
//! * **`client_max_window_bits`** (with or without a value) is accepted and
//!   not echoed: the inflater takes any window up to 2^15.
//! * An offer with an unknown or repeated parameter, or a value out of
//!   range, is declined; when no offer is acceptable the connection gets no
//!   extension and plain frames, exactly as without the header.
//!
//! # Which messages are compressed
//!
//! Per message (RSV1 on its first frame), as RFC 7692 allows: text payloads
//! of [`MIN_COMPRESSED_PAYLOAD`] to [`MAX_COMPRESSED_PAYLOAD`] bytes whose
//! compressed form is smaller. Everything else — replies, control frames,
//! small or large frames — goes plain.
//!
//! # Memory
//!
//! A [`Deflater`] allocates its compressor (about 300 KiB: miniz_oxide's
//! window, hash chains and output buffer) on first use; an [`Inflater`] its
//! decompressor (about 43 KiB) and an output buffer bounded by the message
//! limit, released after a message above 4 KiB. Both are meant to exist
//! once per shard, never per connection.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::ws::{WsError, RETAINED_CAPACITY};

/// The extension's token in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "permessage-deflate";

/// Payloads shorter than this many bytes are sent plain: a deflate block
/// header and Huffman tables cost more than they save on a few dozen bytes.
pub const MIN_COMPRESSED_PAYLOAD: usize = 64;

/// Payloads longer than this many bytes (4 KiB) are sent plain, so that a
/// client asking for a window of 2^12 (Python `websockets`' default) or more
/// gets the same compressed bytes as everybody else (see the module docs).
pub const MAX_COMPRESSED_PAYLOAD: usize = 1 << MIN_SERVER_WINDOW_BITS;

/// The smallest `server_max_window_bits` accepted.
pub const MIN_SERVER_WINDOW_BITS: u8 = 12;

/// The trailer every compressed message ends with, which the sender strips
/// and the receiver appends (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A negotiated permessage-deflate, as answered to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The `server_max_window_bits` the offer asked for (echoed), if any.
    pub server_max_window_bits: Option<u8>,
}

impl Negotiated {
    /// The value of the response's `Sec-WebSocket-Extensions` header.
    #[must_use]
    pub fn response_header(&self) -> String {
        let mut value =
            format!("{EXTENSION}; server_no_context_takeover; client_no_context_takeover");
        if let Some(bits) = self.server_max_window_bits {
            value.push_str(&format!("; server_max_window_bits={bits}"));
        }
        value
    }
}

/// Picks the first acceptable `permessage-deflate` offer from the
/// `Sec-WebSocket-Extensions` header value(s) of a request (several header
/// lines joined with `,`). `None`: no offer, or none that can be honoured —
/// the connection then has no extension. See the module docs for the rules.
#[must_use]
pub fn negotiate(offers: &str) -> Option<Negotiated> {
    offers.split(',').find_map(accept_offer)
}

/// One offer: `permessage-deflate; param[=value]; ...`.
fn accept_offer(offer: &str) -> Option<Negotiated> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut seen = [false; 4];
    let mut negotiated = Negotiated {
        server_max_window_bits: None,
    };
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
            None => (param, None),
        };
        let slot = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => 1,
            "server_max_window_bits" => {
                let bits = window_bits(value?)?;
                if bits < MIN_SERVER_WINDOW_BITS {
                    return None;
                }
                negotiated.server_max_window_bits = Some(bits);
                2
            }
            "client_max_window_bits" => {
                if let Some(v) = value {
                    window_bits(v)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None; // a repeated parameter declines the offer
        }
    }
    Some(negotiated)
}

/// A parameter value: a token or a quoted string holding one.
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => Some(value),
    }
}

/// A window size: 8 to 15, digits only, no leading zero.
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|b| (8..=15).contains(b))
}

/// A shard's compressor for server frames (no context takeover: reset
/// before every message). Allocates its state on first use.
#[derive(Default)]
pub struct Deflater {
    state: Option<Box<DeflateState>>,
}

/// What a [`Deflater`] allocates on first use.
struct DeflateState {
    compress: Compress,
    /// Where a payload is compressed: its length is the most a compressed
    /// payload may take.
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("allocated", &self.state.is_some())
            .finish()
    }
}

impl Deflater {
    /// A compressor that allocates nothing until it first compresses.
    #[must_use]
    pub fn new() -> Deflater {
        Deflater::default()
    }

    /// Appends `frame` — one complete unmasked server frame, final and
    /// unfragmented, as the `encode_*` functions write them — to `out`,
    /// compressed (RSV1 set) when it is a text or binary frame whose payload
    /// is in the compressible range and shrinks; otherwise as it is.
    /// Returns whether it was compressed.
    pub fn append_frame(&mut self, frame: &[u8], out: &mut Vec<u8>) -> bool {
        let Some((opcode, header_len)) = crate::ws::server_frame_header(frame) else {
            out.extend_from_slice(frame);
            return false;
        };
        let payload = &frame[header_len..];
        let data = matches!(
            opcode,
            crate::ws::WsOpcode::Text | crate::ws::WsOpcode::Binary
        );
        if !data || !(MIN_COMPRESSED_PAYLOAD..=MAX_COMPRESSED_PAYLOAD).contains(&payload.len()) {
            out.extend_from_slice(frame);
            return false;
        }
        let start = out.len();
        // Room for the longest header; the payload is written after it and
        // moved down once its length (and so the header's) is known.
        let payload_start = start + crate::ws::MAX_HEADER_BYTES;
        out.resize(payload_start, 0);
        if !self.compress_into(payload, out) {
            out.truncate(start);
            out.extend_from_slice(frame);
            return false;
        }
        let compressed_len = out.len() - payload_start;
        let mut header = [0u8; crate::ws::MAX_HEADER_BYTES];
        let header_len = crate::ws::compressed_header(&mut header, opcode, compressed_len);
        out.copy_within(payload_start.., start + header_len);
        out.truncate(start + header_len + compressed_len);
        out[start..start + header_len].copy_from_slice(&header[..header_len]);
        true
    }

    /// Compresses `payload` as one message and appends it without the
    /// trailing `00 00 ff ff`. False (with `out` unchanged) when the result
    /// would not be smaller than the payload.
    fn compress_into(&mut self, payload: &[u8], out: &mut Vec<u8>) -> bool {
        let state = self.state.get_or_insert_with(|| {
            Box::new(DeflateState {
                compress: Compress::new(Compression::default(), false),
                scratch: vec![0; MAX_COMPRESSED_PAYLOAD + TAIL.len()],
            })
        });
        let DeflateState { compress, scratch } = &mut **state;
        compress.reset();
        // Worth sending only when smaller: never write more than the
        // payload (plus the trailer that is stripped).
        let Some(scratch) = scratch.get_mut(..payload.len() + TAIL.len()) else {
            return false;
        };
        let (mut read, mut written) = (0, 0);
        loop {
            let (in_before, out_before) = (compress.total_in(), compress.total_out());
            let status = compress.compress(
                &payload[read..],
                &mut scratch[written..],
                FlushCompress::Sync,
            );
            read += usize::try_from(compress.total_in() - in_before).unwrap_or(usize::MAX);
            written += usize::try_from(compress.total_out() - out_before).unwrap_or(usize::MAX);
            let progressed = compress.total_in() != in_before || compress.total_out() != out_before;
            if !matches!(status, Ok(Status::Ok | Status::BufError))
                || !progressed
                || read > payload.len()
                || written >= scratch.len()
            {
                return false; // failed, stuck, or no room left: not smaller
            }
            // Done when all input is in and the flush left output room
            // (zlib's rule: avail_out != 0 after a flush).
            if read == payload.len() {
                break;
            }
        }
        let Some(body) = scratch[..written].strip_suffix(&TAIL) else {
            return false;
        };
        if body.len() >= payload.len() {
            return false;
        }
        out.extend_from_slice(body);
        true
    }
}

/// A shard's decompressor for client messages (the client was told
/// `client_no_context_takeover`: each message inflates on its own). See the
/// module docs for its memory.
#[derive(Default)]
pub struct Inflater {
    decompress: Option<Box<Decompress>>,
    out: Vec<u8>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("allocated", &self.decompress.is_some())
            .field("out_capacity", &self.out.capacity())
            .finish()
    }
}

impl Inflater {
    /// An inflater that allocates nothing until it first inflates.
    #[must_use]
    pub fn new() -> Inflater {
        Inflater::default()
    }

    /// Inflates one compressed message (its frames' payloads, reassembled)
    /// and passes the result to `use_message`. More than `max_bytes` of
    /// output is [`WsError::TooBig`], detected as soon as the output passes
    /// the limit, so a deflate bomb costs at most `max_bytes` of memory; an
    /// invalid stream is a [`WsError::Protocol`].
    pub fn inflate<R>(
        &mut self,
        compressed: &[u8],
        max_bytes: usize,
        use_message: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, WsError> {
        let result = self.inflate_all(compressed, max_bytes);
        let r = result.map(|()| use_message(&self.out));
        if self.out.capacity() > RETAINED_CAPACITY {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        r
    }

    fn inflate_all(&mut self, compressed: &[u8], max_bytes: usize) -> Result<(), WsError> {
        const INVALID: WsError = WsError::Protocol("invalid compressed data");
        let d = self
            .decompress
            .get_or_insert_with(|| Box::new(Decompress::new(false)));
        d.reset(false);
        self.out.clear();
        // One more than the limit: output past it proves the message too big.
        let cap = max_bytes.saturating_add(1);
        for part in [compressed, &TAIL[..]] {
            let mut input = part;
            loop {
                if self.out.len() == self.out.capacity() {
                    let grow = self.out.capacity().clamp(1024, 64 * 1024);
                    let grow = grow.min(cap - self.out.len());
                    if grow == 0 {
                        return Err(WsError::TooBig);
                    }
                    self.out.reserve_exact(grow);
                }
                let (in_before, out_before) = (d.total_in(), d.total_out());
                let status = d
                    .decompress_vec(input, &mut self.out, FlushDecompress::Sync)
                    .map_err(|_| INVALID)?;
                if self.out.len() > max_bytes {
                    return Err(WsError::TooBig);
                }
                let consumed = usize::try_from(d.total_in() - in_before).unwrap_or(input.len());
                input = &input[consumed.min(input.len())..];
                if status == Status::StreamEnd {
                    // A final block (BFINAL): the message ends there.
                    return Ok(());
                }
                let room = self.out.len() < self.out.capacity();
                let stuck = consumed == 0 && d.total_out() == out_before;
                if input.is_empty() && (room || stuck) {
                    break; // this part is in and its output flushed
                }
                if stuck && room {
                    return Err(INVALID); // input left, room, and no progress
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
