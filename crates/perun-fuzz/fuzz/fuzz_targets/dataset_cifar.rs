//! libFuzzer harness for [`perun_fuzz::dataset_cifar`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perun_fuzz::dataset_cifar(data);
});
