#![no_main]
//! Fuzzes eventkv's codecs decoder: see `eventkv::fuzzing::codecs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| eventkv::fuzzing::codecs(data));
