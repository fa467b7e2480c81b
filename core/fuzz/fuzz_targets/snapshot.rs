#![no_main]
//! Fuzzes eventkv's snapshot decoder: see `eventkv::fuzzing::snapshot`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| eventkv::fuzzing::snapshot(data));
