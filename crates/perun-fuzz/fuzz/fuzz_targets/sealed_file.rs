//! libFuzzer harness for [`perun_fuzz::sealed_file`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perun_fuzz::sealed_file(data);
});
