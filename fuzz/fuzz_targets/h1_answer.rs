#![no_main]
//! Fuzz target `h1_answer`: see `ferrolite::fuzz_targets::h1_answer`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolite::fuzz_targets::h1_answer(data));
