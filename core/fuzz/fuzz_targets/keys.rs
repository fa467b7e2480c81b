#![no_main]
//! Fuzzes eventkv's keys decoder: see `eventkv::fuzzing::keys`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| eventkv::fuzzing::keys(data));
