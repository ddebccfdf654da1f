//! libFuzzer harness for [`perun_fuzz::job_policy`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perun_fuzz::job_policy(data);
});
