#![allow(clippy::unwrap_used)]

use super::*;
use crate::ws::{encode_frame, encode_text_with, Role, WsDecoder, WsEvent};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// Realistic chat text: a `msg` event's JSON.
fn chat_json(i: usize) -> String {
    format!(
        r#"{{"type":"msg","channel":"room:lobby","seq":{i},"id":"m-{i}","from":"alice","device":"phone","ts":1733100000{i:03},"text":"hey everyone, did you see the release notes for version {i}? the new search is great"}}"#
    )
}

/// What a peer writes: `payload` compressed on its own (no context
/// takeover), the trailer stripped.
fn deflate_raw(payload: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 1024);
    c.compress_vec(payload, &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - TAIL.len());
    out
}

/// One frame as a client writes it: masked, RSV1 as given.
fn client_frame(opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        is_final: fin,
        rsv1,
        opcode,
        mask: Some(MASK),
        ..FrameHeader::default()
    };
    let mut out = Vec::new();
    header.format(payload.len() as u64, &mut out).unwrap();
    let start = out.len();
    out.extend_from_slice(payload);
    crate::ws::apply_mask(&mut out[start..], MASK);
    out
}

fn server_decode(
    deflate: bool,
    max: usize,
    bytes: &[u8],
    inflater: &mut Inflater,
) -> Result<Vec<String>, WsError> {
    let mut dec = WsDecoder::new(Role::Server, max);
    if deflate {
        dec = dec.with_permessage_deflate();
    }
    let mut texts = Vec::new();
    let mut input = bytes.to_vec();
    dec.feed_mut_with(&mut input, inflater, &mut |e| {
        if let WsEvent::Text(t) = e {
            texts.push(t.to_owned());
        }
    })?;
    Ok(texts)
}

#[test]
fn browser_and_python_offers_are_accepted_with_no_context_takeover_both_ways() {
    // Chromium's offer.
    let n = negotiate("permessage-deflate; client_max_window_bits").unwrap();
    assert_eq!(n.server_max_window_bits, None);
    assert_eq!(
        n.response_header(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    // Python `websockets` asking for small windows.
    let n = negotiate("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12")
        .unwrap();
    assert_eq!(n.server_max_window_bits, Some(12));
    assert!(n.response_header().ends_with("; server_max_window_bits=12"));
    // Both context-takeover parameters offered, a quoted value, odd case.
    let n = negotiate(
        "PerMessage-Deflate; server_no_context_takeover; CLIENT_NO_CONTEXT_TAKEOVER; \
         server_max_window_bits=\"15\"",
    )
    .unwrap();
    assert_eq!(n.server_max_window_bits, Some(15));
}

#[test]
fn offers_that_cannot_be_honoured_are_declined() {
    for offer in [
        "",
        "x-webkit-deflate-frame",
        "permessage-deflate; server_max_window_bits=11",
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=012",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; unknown_param",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=\"13",
    ] {
        assert_eq!(negotiate(offer), None, "{offer:?}");
    }
}

#[test]
fn the_first_acceptable_offer_wins() {
    let n = negotiate("permessage-deflate; server_max_window_bits=9, permessage-deflate").unwrap();
    assert_eq!(n.server_max_window_bits, None);
    let n = negotiate("foo, permessage-deflate; server_max_window_bits=13").unwrap();
    assert_eq!(n.server_max_window_bits, Some(13));
}

#[test]
fn a_compressed_server_frame_inflates_to_the_same_text_and_is_smaller() {
    let text = chat_json(7);
    let mut plain = Vec::new();
    encode_text_with(&mut plain, |out| out.extend_from_slice(text.as_bytes()));
    let mut deflater = Deflater::new();
    let mut compressed = Vec::new();
    assert!(deflater.append_frame(&plain, &mut compressed));
    assert!(
        compressed.len() < plain.len(),
        "{} vs {}",
        compressed.len(),
        plain.len()
    );
    assert_eq!(compressed[0], 0x80 | 0x40 | 0x1, "FIN, RSV1, text");
    // The same bytes every time: no context is carried between messages.
    let mut again = Vec::new();
    assert!(deflater.append_frame(&plain, &mut again));
    assert_eq!(again, compressed);
    // A client with the extension reads the original text back.
    let mut dec = WsDecoder::new(Role::Client, 1 << 20).with_permessage_deflate();
    let mut inflater = Inflater::new();
    let mut got = Vec::new();
    dec.feed_with(&compressed, &mut inflater, &mut |e| {
        if let WsEvent::Text(t) = e {
            got.push(t.to_owned());
        }
    })
    .unwrap();
    assert_eq!(got, vec![text]);
}

#[test]
fn small_large_and_control_frames_stay_plain() {
    let mut deflater = Deflater::new();
    let mut small = Vec::new();
    encode_text_with(&mut small, |out| {
        out.extend_from_slice(br#"{"type":"ack"}"#)
    });
    let mut large = Vec::new();
    encode_text_with(&mut large, |out| {
        out.extend(std::iter::repeat_n(b'a', MAX_COMPRESSED_PAYLOAD + 1));
    });
    let mut ping = Vec::new();
    encode_frame(&mut ping, crate::ws::WsOpcode::Ping, &[b'p'; 100], None);
    // Incompressible: random-looking bytes do not shrink.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..1000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let mut binary = Vec::new();
    encode_frame(&mut binary, crate::ws::WsOpcode::Binary, &noise, None);
    for frame in [small, large, ping, binary] {
        let mut out = vec![9];
        assert!(!deflater.append_frame(&frame, &mut out));
        assert_eq!(&out[1..], &frame[..]);
    }
}

#[test]
fn a_compressed_client_message_is_inflated_also_when_fragmented() {
    let text = chat_json(1);
    let compressed = deflate_raw(text.as_bytes());
    let mut inflater = Inflater::new();
    let one = client_frame(OpCode::Data(Data::Text), true, true, &compressed);
    assert_eq!(
        server_decode(true, 1 << 20, &one, &mut inflater).unwrap(),
        vec![text.clone()]
    );
    let (a, b) = compressed.split_at(compressed.len() / 2);
    let mut two = client_frame(OpCode::Data(Data::Text), false, true, a);
    two.extend(client_frame(OpCode::Data(Data::Continue), true, false, b));
    // A plain message after it on the same connection.
    two.extend(client_frame(
        OpCode::Data(Data::Text),
        true,
        false,
        b"plain",
    ));
    assert_eq!(
        server_decode(true, 1 << 20, &two, &mut inflater).unwrap(),
        vec![text, "plain".to_owned()]
    );
}

#[test]
fn a_deflate_bomb_is_too_big_once_its_output_passes_the_limit() {
    let max = 64 * 1024;
    // 8 MiB of zeros compress to a few KiB: far under the frame limit.
    let bomb = deflate_raw(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < max);
    let frame = client_frame(OpCode::Data(Data::Text), true, true, &bomb);
    let mut inflater = Inflater::new();
    let err = server_decode(true, max, &frame, &mut inflater).unwrap_err();
    assert_eq!(err, WsError::TooBig);
    assert_eq!(err.close_code(), 1009);
    assert!(
        inflater.out.capacity() <= RETAINED_CAPACITY,
        "the output buffer is released after a large message"
    );
    // Exactly at the limit is fine.
    let full = deflate_raw(&vec![b'a'; max]);
    let frame = client_frame(OpCode::Data(Data::Text), true, true, &full);
    let texts = server_decode(true, max, &frame, &mut inflater).unwrap();
    assert_eq!(texts[0].len(), max);
    let over = deflate_raw(&vec![b'a'; max + 1]);
    let frame = client_frame(OpCode::Data(Data::Text), true, true, &over);
    assert_eq!(
        server_decode(true, max, &frame, &mut inflater),
        Err(WsError::TooBig)
    );
}

#[test]
fn the_inflate_bound_holds_for_any_split_of_a_bomb() {
    let max = 16 * 1024;
    let bomb = deflate_raw(&vec![b'z'; 1 << 20]);
    let frame = client_frame(OpCode::Data(Data::Text), true, true, &bomb);
    for split in [1, 2, 7, frame.len() / 2, frame.len() - 1] {
        let mut dec = WsDecoder::new(Role::Server, max).with_permessage_deflate();
        let mut inflater = Inflater::new();
        let (a, b) = frame.split_at(split);
        let mut a = a.to_vec();
        let mut b = b.to_vec();
        dec.feed_mut_with(&mut a, &mut inflater, &mut |_| {})
            .unwrap();
        let err = dec.feed_mut_with(&mut b, &mut inflater, &mut |_| {});
        assert_eq!(err, Err(WsError::TooBig), "split at {split}");
    }
}

#[test]
fn rsv1_without_the_extension_or_on_the_wrong_frame_is_a_protocol_error() {
    let compressed = deflate_raw(b"hello hello hello hello");
    let mut inflater = Inflater::new();
    let frame = client_frame(OpCode::Data(Data::Text), true, true, &compressed);
    let err = server_decode(false, 1 << 20, &frame, &mut inflater).unwrap_err();
    assert_eq!(err.close_code(), 1002);
    let mut cont = client_frame(OpCode::Data(Data::Text), false, false, b"ab");
    cont.extend(client_frame(
        OpCode::Data(Data::Continue),
        true,
        true,
        b"cd",
    ));
    let err = server_decode(true, 1 << 20, &cont, &mut inflater).unwrap_err();
    assert_eq!(err.close_code(), 1002);
    let ping = client_frame(
        OpCode::Control(tungstenite::protocol::frame::coding::Control::Ping),
        true,
        true,
        b"x",
    );
    let err = server_decode(true, 1 << 20, &ping, &mut inflater).unwrap_err();
    assert_eq!(err.close_code(), 1002);
    // Fed without an inflater, a compressed message cannot be read.
    let mut dec = WsDecoder::new(Role::Server, 1 << 20).with_permessage_deflate();
    let err = dec.feed(&frame, &mut |_| {}).unwrap_err();
    assert_eq!(err.close_code(), 1002);
}

#[test]
fn garbage_is_invalid_and_client_context_takeover_reads_only_zeros() {
    let mut inflater = Inflater::new();
    let frame = client_frame(
        OpCode::Data(Data::Text),
        true,
        true,
        &[0xff, 0xff, 0xff, 0xff],
    );
    let err = server_decode(true, 1 << 20, &frame, &mut inflater).unwrap_err();
    assert_eq!(err, WsError::Protocol("invalid compressed data"));
    // The second message refers back into the first (context takeover),
    // which the server, having sent `client_no_context_takeover`, does not
    // keep: the inflater's window is zeroed before every message, so the
    // reference reads zeros — garbage for that client, never another
    // connection's bytes.
    let text = chat_json(3);
    let mut c = Compress::new(Compression::default(), false);
    let mut first = Vec::with_capacity(4096);
    c.compress_vec(text.as_bytes(), &mut first, FlushCompress::Sync)
        .unwrap();
    let mut second = Vec::with_capacity(4096);
    c.compress_vec(text.as_bytes(), &mut second, FlushCompress::Sync)
        .unwrap();
    first.truncate(first.len() - TAIL.len());
    second.truncate(second.len() - TAIL.len());
    assert!(second.len() < first.len() / 2, "the second one back-refers");
    let mut both = client_frame(OpCode::Data(Data::Text), true, true, &first);
    both.extend(client_frame(OpCode::Data(Data::Text), true, true, &second));
    let texts = server_decode(true, 1 << 20, &both, &mut inflater).unwrap();
    assert_eq!(texts[0], text);
    assert_eq!(texts[1].len(), text.len());
    assert!(
        texts[1].contains('\0') && !texts[1].contains("alice"),
        "{:?}",
        texts[1]
    );
}

#[test]
fn invalid_utf8_inside_a_compressed_text_is_1007() {
    let compressed = deflate_raw(&[0xc3, 0x28, b'a', b'b', b'c']);
    let frame = client_frame(OpCode::Data(Data::Text), true, true, &compressed);
    let mut inflater = Inflater::new();
    let err = server_decode(true, 1 << 20, &frame, &mut inflater).unwrap_err();
    assert_eq!(err.close_code(), 1007);
}

#[test]
fn messages_that_exactly_fill_the_output_buffer_inflate() {
    let mut inflater = Inflater::new();
    for len in [1023, 1024, 1025, 2048, 4096, 65_536, 65_537, 200_000] {
        let text: String = (0..len).map(|i| char::from(b'a' + (i % 7) as u8)).collect();
        let frame = client_frame(
            OpCode::Data(Data::Text),
            true,
            true,
            &deflate_raw(text.as_bytes()),
        );
        let got = server_decode(true, 1 << 20, &frame, &mut inflater).unwrap();
        assert_eq!(got, vec![text], "{len} bytes");
    }
}
