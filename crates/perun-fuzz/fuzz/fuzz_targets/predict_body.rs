//! libFuzzer harness for [`perun_fuzz::predict_body`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perun_fuzz::predict_body(data);
});
