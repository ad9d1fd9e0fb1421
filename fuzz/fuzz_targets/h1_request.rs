#![no_main]
//! Fuzz target `h1_request`: see `ferrolite::fuzz_targets::h1_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolite::fuzz_targets::h1_request(data));
