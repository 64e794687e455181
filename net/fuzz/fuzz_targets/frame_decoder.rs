//! Arbitrary bytes through the frame decoder, the FlatBuffers verifier, both typed
//! decoders and a whole gateway (before and after logon). Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bourse_net::fuzzing::frame_decoder(data);
});
