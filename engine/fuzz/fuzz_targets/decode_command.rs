//! Decodes arbitrary bytes as a command; what decodes must round-trip through encode.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bourse_engine_fuzz::decode_command(data));
