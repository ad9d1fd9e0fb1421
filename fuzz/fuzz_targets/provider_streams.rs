#![no_main]
//! Fuzz target `provider_streams`: see `ferrolite::fuzz_targets::provider_streams`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolite::fuzz_targets::provider_streams(data));
