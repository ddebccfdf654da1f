//! Perun's verifier side of attestation, in pure Rust (no tpm2-tss, no OpenSSL), so
//! that the trust service can run where there is no TPM.
//!
//! - [`tpm`]: TPM 2.0 wire structures: public keys and their names, `TPMS_ATTEST`
//!   quotes and `TPMT_SIGNATURE`s with their verification, and a software
//!   MakeCredential that binds an AK to an EK.
//! - [`ek`]: EK certificates and their chains to the TPM manufacturers' CAs a policy
//!   names (the shipped bundle in `ek-roots/`);
//! - [`bootlog`]: TCG2 measured-boot event logs, replayed to PCRs 0-9;
//! - [`ima`]: Linux IMA measurement logs (binary and ASCII; templates `ima-ng`,
//!   `ima-sig`, `ima`), PCR 10 replay for the sha1 and sha256 banks, incremental.
//! - [`policy`]: platform policies and the verdicts that name every failing entry;
//!   [`job_policy`]: either kind of policy, as a job names it.
//! - [`verifier`]: the one Verifier trait (TPM and TEE) and the RATS Attestation Result;
//! - [`tee`]: TEE evidence (sim; SGX and TDX DCAP quotes; SEV-SNP reports), its
//!   verifiers and the `tee`-mode policy.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bootlog;
pub mod ek;
pub mod error;
pub mod evidence;
pub mod ima;
pub mod job_policy;
pub mod policy;
pub mod tee;
pub mod tpm;
pub mod verifier;

pub use error::AttestError;
pub use job_policy::JobPolicy;
