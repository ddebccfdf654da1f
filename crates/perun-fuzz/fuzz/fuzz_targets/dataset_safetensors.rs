//! libFuzzer harness for [`perun_fuzz::dataset_safetensors`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perun_fuzz::dataset_safetensors(data);
});
