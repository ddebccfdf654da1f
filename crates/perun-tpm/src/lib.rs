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
    /// A TPM command through tpm2-tss failed.
    #[error("TPM {what}: {source}")]
    Esapi {
        /// What was being done (`quote`, `create AK`...).
        what: &'static str,
        /// tpm2-tss's error (its TSS2 response code).
        #[source]
        source: tss_esapi::Error,
    },
    /// The EK certificate could not be read from its NV index.
    #[error(
        "reading the EK certificate from NV index 0x{nv_index:08x}: {source} (a TPM without an EK certificate \
         cannot be enrolled; a software TPM gets one with `swtpm_setup --create-ek-cert`)"
    )]
    EkCertificate {
        /// The NV index read (TCG EK Credential Profile 2.5: 0x01c00002 RSA, 0x01c0000a ECC).
        nv_index: u32,
        /// tpm2-tss's error.
        #[source]
        source: tss_esapi::Error,
    },
    /// A quote or a credential was asked for before an AK was created or loaded.
    #[error("no AK loaded: create or load one first")]
    NoAk,
    /// The TPM started no authorization session.
    #[error("the TPM returned no session")]
    NoSession,
    /// A program (swtpm, swtpm_setup, tpm2-tools) exited with an error.
    #[error("{command}: {stderr}")]
    Tool {
        /// The command line, or the program's name.
        command: String,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// The software TPM did not come up.
    #[error("swtpm {0}")]
    SwtpmStart(String),
    /// A tool's output could not be read.
    #[error("{tool}: unreadable output: {detail}")]
    Output {
        /// The tool.
        tool: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The kernel's IMA log is not there.
    #[error(
        "{0} does not exist: this kernel has no IMA (boot with ima_policy=tcb) or securityfs is not mounted; \
         use the user-space measurer for development"
    )]
    NoImaLog(std::path::PathBuf),
    /// An I/O error.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}
