#![no_main]
//! Fuzz target `http_api`: see `chat_fuzz_checks::Target::HttpApi`.

use chat_fuzz_checks::{check, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(Target::HttpApi, data));
