//! permessage-deflate: the decoder of a connection that negotiated it (RSV1
//! frames inflated by a shard's one inflater), and the negotiation of the
//! `Sec-WebSocket-Extensions` offers.
//!
//! The first input byte chooses the role, the limit and the chunking as in
//! [`crate::ws`]; the rest are frames. The whole input is also tried as an
//! offers header.

use chat_proto::deflate::{negotiate, Inflater};
use chat_proto::ws::{MAX_CONTROL_PAYLOAD, MAX_HEADER_BYTES};
use chat_proto::{Role, WsDecoder, WsError, WsEvent};

use crate::ws::{setup, Event, CHUNKS};

/// Decodes with permessage-deflate on: in one piece (`feed_with`) or in
/// chunks (`feed_mut_with`), one inflater shared by both runs (as by a
/// shard's connections), checking the bounds after every call.
fn decode(
    role: Role,
    limit: usize,
    input: &[u8],
    chunking: Option<usize>,
    inflater: &mut Inflater,
) -> (Vec<Event>, Option<WsError>) {
    let mut decoder = WsDecoder::new(role, limit).with_permessage_deflate();
    let mut events = Vec::new();
    let mut on_event = |e: WsEvent<'_>| events.push(Event::of(e));
    let mut result = Ok(());
    match chunking {
        None => result = decoder.feed_with(input, inflater, &mut on_event),
        Some(start) => {
            let mut buf = input.to_vec();
            let mut rest = &mut buf[..];
            let mut i = start;
            while !rest.is_empty() && result.is_ok() {
                let n = CHUNKS[i % CHUNKS.len()].min(rest.len());
                i += 1;
                let (chunk, tail) = std::mem::take(&mut rest).split_at_mut(n);
                rest = tail;
                result = decoder.feed_mut_with(chunk, inflater, &mut on_event);
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
        assert_eq!(decoder.allocated_bytes(), 0, "memory kept after {err}");
        assert!(matches!(err.close_code(), 1002 | 1007 | 1009));
    }
    (events, error)
}

/// The properties: one piece and chunks agree (an inflater reused across
/// messages and runs carries nothing over); every inflated message is
/// within the limit; an accepted offer's answer is itself acceptable and
/// means the same.
pub fn frames(data: &[u8]) {
    if let Some(n) = negotiate(&String::from_utf8_lossy(data)) {
        assert_eq!(negotiate(&n.response_header()), Some(n), "answer re-read");
    }
    let Some((role, limit, chunk_start, input)) = setup(data) else {
        return;
    };
    let mut inflater = Inflater::new();
    let whole = decode(role, limit, input, None, &mut inflater);
    let chunked = decode(role, limit, input, Some(chunk_start), &mut inflater);
    assert_eq!(whole, chunked, "one piece vs chunks");
    for e in &whole.0 {
        match e {
            Event::Text(t) => assert!(t.len() <= limit),
            Event::Binary(b) => assert!(b.len() <= limit),
            _ => {}
        }
    }
}
