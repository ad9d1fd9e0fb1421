#![no_main]
//! Fuzz target `sse`: see `ferrolite::fuzz_targets::sse_decoder`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolite::fuzz_targets::sse_decoder(data));
