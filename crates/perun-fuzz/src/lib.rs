//! Fuzz targets for every parser of outside input in Perun.
//!
//! Each target is a `pub fn(&[u8])` that hands the bytes to the real public entry points
//! of the crates that read them (IMA and measured-boot logs, TPM structures, quotes and
//! evidence, EK certificates, TEE evidence, policies, sealed files, dataset importers,
//! manifests, the trust service's bodies and signed requests), and then to what callers
//! do with what parsed. A target returns whatever the input: errors are the expected
//! answer to bad input, and a panic (or an abort, or a hang) is a bug in the parser. A
//! few targets also check an invariant the parser promises (a log's entries written back
//! are the log), and panic when it does not hold.
//!
//! The same targets run two ways:
//! - under libFuzzer, `scripts/fuzz` (`cargo +nightly fuzz run`, the `fuzz/` folder);
//! - over the seed corpus (`corpus/<target>/`) and deterministic mutations of it, on
//!   stable, by `tests/corpus.rs` in CI.
//!
//! Targets that need a key, a certificate or a service to check their input against
//! take it from [`fixtures`], fixed for every run.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod attest;
mod enclave;
pub mod fixtures;
mod seal;
mod trust;

pub use attest::{
    boot_event_log, ek_cert, ima_ascii, ima_binary, job_policy, tee_dcap_quote, tee_evidence, tee_sim_report,
    tee_snp_report, tpm_evidence, tpm_public, tpm_quote, tpm_signature,
};
pub use enclave::predict_body;
pub use seal::{dataset_cifar, dataset_csv, dataset_images, dataset_safetensors, sealed_file, sealed_header};
pub use trust::{manifest, signed_request, wire_request};

/// A fuzz target: takes any bytes, returns (a panic is a bug).
pub type Target = fn(&[u8]);

/// Every target by name; `corpus/<name>/` holds its seeds and `fuzz/fuzz_targets/<name>.rs`
/// runs it under libFuzzer.
pub const TARGETS: &[(&str, Target)] = &[
    ("ima_binary", ima_binary),
    ("ima_ascii", ima_ascii),
    ("boot_event_log", boot_event_log),
    ("tpm_public", tpm_public),
    ("tpm_quote", tpm_quote),
    ("tpm_signature", tpm_signature),
    ("tpm_evidence", tpm_evidence),
    ("ek_cert", ek_cert),
    ("tee_evidence", tee_evidence),
    ("tee_dcap_quote", tee_dcap_quote),
    ("tee_snp_report", tee_snp_report),
    ("tee_sim_report", tee_sim_report),
    ("job_policy", job_policy),
    ("sealed_header", sealed_header),
    ("sealed_file", sealed_file),
    ("manifest", manifest),
    ("wire_request", wire_request),
    ("signed_request", signed_request),
    ("dataset_csv", dataset_csv),
    ("dataset_images", dataset_images),
    ("dataset_cifar", dataset_cifar),
    ("dataset_safetensors", dataset_safetensors),
    ("predict_body", predict_body),
];

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|&(_, t)| t)
}
