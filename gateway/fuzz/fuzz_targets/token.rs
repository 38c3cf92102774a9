#![no_main]
//! Fuzz target `token`: see `chat_fuzz_checks::Target::Token`.

use chat_fuzz_checks::{check, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(Target::Token, data));
