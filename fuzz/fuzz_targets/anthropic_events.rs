#![no_main]
//! Fuzz target `anthropic_events`: see `ferrolite::fuzz_targets::anthropic_events`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolite::fuzz_targets::anthropic_events(data));
