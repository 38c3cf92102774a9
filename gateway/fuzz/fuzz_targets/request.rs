#![no_main]
//! Fuzz target `request`: see `chat_fuzz_checks::Target::Request`.

use chat_fuzz_checks::{check, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(Target::Request, data));
