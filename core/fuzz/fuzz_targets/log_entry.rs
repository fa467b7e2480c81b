#![no_main]
//! Fuzzes eventkv's log_entry decoder: see `eventkv::fuzzing::log_entry`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| eventkv::fuzzing::log_entry(data));
