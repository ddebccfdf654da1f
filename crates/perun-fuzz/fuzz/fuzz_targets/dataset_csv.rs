//! libFuzzer harness for [`perun_fuzz::dataset_csv`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perun_fuzz::dataset_csv(data);
});
