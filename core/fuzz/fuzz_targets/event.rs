#![no_main]
//! Fuzzes eventkv's event decoder: see `eventkv::fuzzing::event`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| eventkv::fuzzing::event(data));
