#![no_main]
//! Fuzz target `ws_frames`: see `chat_fuzz_checks::Target::WsFrames`.

use chat_fuzz_checks::{check, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(Target::WsFrames, data));
