#![no_main]
//! Fuzz target `eventstream`: see `ferrolite::fuzz_targets::event_stream`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolite::fuzz_targets::event_stream(data));
