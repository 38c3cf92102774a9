#![no_main]
//! Fuzz target `sse_positions`: see `chat_fuzz_checks::Target::SsePositions`.

use chat_fuzz_checks::{check, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(Target::SsePositions, data));
