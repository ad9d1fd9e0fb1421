#![no_main]
//! Fuzz target `manifest`: see `ferrolite::fuzz_targets::manifest`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolite::fuzz_targets::manifest(data));
