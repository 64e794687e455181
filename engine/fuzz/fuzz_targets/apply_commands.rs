//! Applies length-prefixed, decoded commands to a seeded exchange and checks invariants
//! after each one. The logic lives in `bourse_engine_fuzz::apply_commands` so a stable
//! test can run it too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bourse_engine_fuzz::apply_commands(data);
});
