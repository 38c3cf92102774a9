#![no_main]
//! Fuzz target `ws_deflate`: see `chat_fuzz_checks::Target::WsDeflate`.

use chat_fuzz_checks::{check, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(Target::WsDeflate, data));
