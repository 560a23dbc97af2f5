//! Dedup keys, filters, bound callback values and the strict JSON view on the input as a body.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookgate::fuzzing::examine_body(data));
