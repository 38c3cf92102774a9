#![no_main]
//! Fuzz target `http_head`: see `chat_fuzz_checks::Target::HttpHead`.

use chat_fuzz_checks::{check, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(Target::HttpHead, data));
