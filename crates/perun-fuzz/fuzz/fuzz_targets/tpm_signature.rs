//! libFuzzer harness for [`perun_fuzz::tpm_signature`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perun_fuzz::tpm_signature(data);
});
