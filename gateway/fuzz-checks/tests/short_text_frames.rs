//! The decoder's fast path for a client's common frame (a whole, final,
//! uncompressed text frame with a 2- or 4-byte header) against tungstenite
//! and against the decoder's own chunked decoding: every frame of a grid
//! built around that shape — first bytes of every kind, lengths at the
//! encodings' edges, the minimal and non-minimal 126 form and a masked
//! frame, valid and invalid UTF-8, cut short — alone and followed by each
//! of a few next frames (so a text frame also arrives while a fragmented
//! message is open), through the fuzz targets' own checks in the client
//! role with three message limits and chunkings.

use chat_fuzz_checks::{check, Target};

const FIRSTS: [u8; 7] = [0x81, 0x01, 0x80, 0x89, 0xC1, 0x82, 0x91];
const LENS: [usize; 9] = [0, 1, 5, 124, 125, 126, 127, 200, 300];

/// One frame: `first`, then the length in `encoding` (0: minimal, 1: the
/// 126 form whatever the length, 2: masked), then the payload (`payload`
/// 0: ASCII, 1: an invalid UTF-8 byte, 2: a multi-byte character cut at
/// the end), then `cut` bytes fewer.
fn frame(first: u8, len: usize, encoding: usize, payload: usize, cut: usize) -> Vec<u8> {
    let mut f = vec![first];
    match encoding {
        0 if len < 126 => f.push(len as u8),
        0 | 1 => {
            f.push(126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            f.push(0x80 | len.min(125) as u8);
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
    }
    let body_len = if encoding == 2 { len.min(125) } else { len };
    let mut body: Vec<u8> = (0..body_len).map(|i| b'a' + (i % 26) as u8).collect();
    match payload {
        1 if body_len > 0 => body[body_len / 2] = 0xff,
        2 if body_len > 0 => body[body_len - 1] = 0xe2,
        _ => {}
    }
    f.extend_from_slice(&body);
    f.truncate(f.len() - cut.min(f.len() - 1));
    f
}

#[test]
fn short_text_frames_decode_as_tungstenite_decodes_them() {
    let next: Vec<Vec<u8>> = vec![
        Vec::new(),
        frame(0x81, 5, 0, 0, 0),
        frame(0x81, 200, 0, 0, 0),
        frame(0x80, 3, 0, 0, 0),
        frame(0x89, 2, 0, 0, 0),
        frame(0x81, 300, 0, 0, 7),
    ];
    // Bit 0: the client role; bits 1-3: the message limit (126, 1000,
    // 1 MiB); bits 4-7: where the chunking starts.
    for ctl in [0x01u8, 0x37, 0xAF] {
        for first in FIRSTS {
            for len in LENS {
                for encoding in 0..3 {
                    for payload in 0..3 {
                        for cut in [0, 1] {
                            let f = frame(first, len, encoding, payload, cut);
                            for g in &next {
                                let mut data = vec![ctl];
                                data.extend_from_slice(&f);
                                data.extend_from_slice(g);
                                check(Target::WsTungstenite, &data);
                                check(Target::WsFrames, &data);
                            }
                        }
                    }
                }
            }
        }
    }
}
