//! libFuzzer harness for [`perun_fuzz::tee_sim_report`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perun_fuzz::tee_sim_report(data);
});
