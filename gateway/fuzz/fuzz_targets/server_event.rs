#![no_main]
//! Fuzz target `server_event`: see `chat_fuzz_checks::Target::ServerEvent`.

use chat_fuzz_checks::{check, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(Target::ServerEvent, data));
