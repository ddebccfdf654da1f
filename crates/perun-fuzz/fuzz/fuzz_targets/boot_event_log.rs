//! libFuzzer harness for [`perun_fuzz::boot_event_log`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    perun_fuzz::boot_event_log(data);
});
