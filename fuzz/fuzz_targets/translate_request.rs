#![no_main]
//! Fuzz target `translate_request`: see `ferrolite::fuzz_targets::translate_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolite::fuzz_targets::translate_request(data));
