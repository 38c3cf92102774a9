#![no_main]
//! Fuzz target `ws_tungstenite`: see `chat_fuzz_checks::Target::WsTungstenite`.

use chat_fuzz_checks::{check, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(Target::WsTungstenite, data));
