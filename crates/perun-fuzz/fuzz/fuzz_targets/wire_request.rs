//! libFuzzer harness for [`perun_fuzz::wire_request`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perun_fuzz::wire_request(data);
});
