//! libFuzzer harness for [`perun_fuzz::ek_cert`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perun_fuzz::ek_cert(data);
});
