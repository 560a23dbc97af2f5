//! Every verification scheme's checks on a request decoded from the input.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookgate::fuzzing::verify_request(data));
