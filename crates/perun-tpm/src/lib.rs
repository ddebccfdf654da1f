//! Perun's worker side of the TPM.
//!
//! - [`swtpm`]: starts a software TPM (`swtpm socket --tpm2`) on free loopback ports
//!   with a fresh state folder, and stops it when dropped; every test gets its own.
//! - [`ima`]: IMA log sources behind one trait: the kernel's securityfs log, and a
//!   user-space measurer for machines without kernel IMA that writes the same binary
//!   format and marks its evidence as such.
//! - [`tools`]: a TPM client over `tpm2-tools` (EK, AK, quote, PCR read and extend).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod device;
pub mod ima;
pub mod swtpm;
pub mod tools;

/// Errors of the worker-side TPM pieces.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// A required program is missing.
    #[error("`{tool}` is not installed: {hint}")]
    Missing {
        /// The program.
        tool: &'static str,
        /// How to install it.
        hint: &'static str,
    },
    /// The TPM or a tool failed.
    #[error("{0}")]
    Failed(String),
    /// A certificate or policy from the verifier side could not be used.
    #[error("{0}")]
    Attest(#[from] perun_attest::AttestError),
    /// An I/O error.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}
