//! The decoder's fast path for a client's common frame (a whole, final,
//! uncompressed text frame with a 2- or 4-byte header) against tungstenite
//! and against the decoder's own chunked decoding: random streams built
//! mostly of such frames — lengths around the encodings' edges, the
//! non-minimal 126 form, invalid UTF-8, a text frame while a fragmented
//! message is open, pings between fragments — through the fuzz targets'
//! own checks, in the client role.

use chat_fuzz_checks::{check, Target};

#[test]
fn short_text_frames_decode_as_tungstenite_decodes_them() {
    let mut state: u64 = 0x243F_6A88_85A3_08D3;
    let mut rand = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for _ in 0..100_000 {
        // Bit 0 set: the client role; bits 1-3: the message limit; 4-7: chunking.
        let mut data = vec![(rand(256) as u8) | 1];
        for _ in 0..1 + rand(6) {
            let len = [0, 1, 5, 124, 125, 126, 127, 200, 300][rand(9)];
            let first = [0x81, 0x81, 0x81, 0x81, 0x01, 0x80, 0x89, 0xC1, 0x82][rand(9)];
            data.push(first);
            match rand(5) {
                // Minimal encodings.
                0..=2 if len < 126 => data.push(len as u8),
                0..=2 => {
                    data.push(126);
                    data.extend_from_slice(&(len as u16).to_be_bytes());
                }
                // The 126 form for any length (non-minimal below 126).
                3 => {
                    data.push(126);
                    data.extend_from_slice(&(len as u16).to_be_bytes());
                }
                // A masked frame (refused in the client role).
                _ => {
                    data.push(0x80 | (len.min(125) as u8));
                    data.extend_from_slice(&[1, 2, 3, 4]);
                }
            }
            for _ in 0..len {
                data.push(match rand(40) {
                    0 => 0xff,
                    1 => 0xe2,
                    _ => b'a' + rand(26) as u8,
                });
            }
            if rand(8) == 0 {
                data.truncate(data.len() - rand(4));
            }
        }
        check(Target::WsTungstenite, &data);
        check(Target::WsFrames, &data);
    }
}
