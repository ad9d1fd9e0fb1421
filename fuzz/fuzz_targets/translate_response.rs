#![no_main]
//! Fuzz target `translate_response`: see `ferrolite::fuzz_targets::translate_response`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolite::fuzz_targets::translate_response(data));
