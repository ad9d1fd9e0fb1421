#![no_main]
//! Fuzz target `json_scan`: see `ferrolite::fuzz_targets::json_scan`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolite::fuzz_targets::json_scan(data));
