#![allow(clippy::unwrap_used)]

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
