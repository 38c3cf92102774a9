#![no_main]
//! Fuzz target `config`: see `chat_fuzz_checks::Target::Config`.

use chat_fuzz_checks::{check, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(Target::Config, data));
