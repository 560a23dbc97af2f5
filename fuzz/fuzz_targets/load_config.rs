//! The configuration loader on the input as the text of a gateway.toml.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookgate::fuzzing::load_config(data));
