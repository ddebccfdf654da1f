//! libFuzzer harness for [`perun_fuzz::tee_dcap_quote`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perun_fuzz::tee_dcap_quote(data);
});
