//! libFuzzer harness for [`perun_fuzz::signed_request`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perun_fuzz::signed_request(data);
});
