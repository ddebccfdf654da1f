//! libFuzzer harness for [`perun_fuzz::manifest`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perun_fuzz::manifest(data);
});
