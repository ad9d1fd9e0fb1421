#![no_main]
//! Fuzz target `openai_chunks`: see `ferrolite::fuzz_targets::openai_chunks`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolite::fuzz_targets::openai_chunks(data));
