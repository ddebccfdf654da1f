//! libFuzzer harness for [`perun_fuzz::ima_binary`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perun_fuzz::ima_binary(data);
});
