//! IMA log sources: the kernel's, and a user-space measurer for machines without it.

use std::path::{Path, PathBuf};

use perun_proto::evidence::{ImaSource, USER_SPACE_MARKER};
use perun_proto::ima::Entry;
use sha2::{Digest as _, Sha256};

use crate::TpmError;

/// Where the kernel publishes its binary IMA log.
pub const KERNEL_LOG: &str = "/sys/kernel/security/ima/binary_runtime_measurements";

/// A source of an IMA log.
pub trait ImaLog {
    /// Which kind of source this is (it travels in the evidence).
    fn source(&self) -> ImaSource;
    /// The whole binary log as it stands now.
    fn read(&mut self) -> Result<Vec<u8>, TpmError>;
}

/// The kernel's IMA log from securityfs.
pub struct KernelIma {
    path: PathBuf,
}

impl KernelIma {
    /// The log at [`KERNEL_LOG`], if the kernel has IMA.
    pub fn open() -> Result<Self, TpmError> {
        Self::at(Path::new(KERNEL_LOG))
    }

    /// A log at another path (a copy, or a test fixture).
    pub fn at(path: &Path) -> Result<Self, TpmError> {
        if !path.exists() {
            return Err(TpmError::NoImaLog(path.to_owned()));
        }
        Ok(Self { path: path.to_owned() })
    }
}

impl ImaLog for KernelIma {
    fn source(&self) -> ImaSource {
        ImaSource::Kernel
    }

    fn read(&mut self) -> Result<Vec<u8>, TpmError> {
        std::fs::read(&self.path)
            .map_err(|e| TpmError::Io { what: format!("reading {}", self.path.display()), source: e })
    }
}

/// Extends PCR 10 in both banks (the TPM side of the measurer).
pub trait PcrExtender {
    /// Extends PCR 10 of the SHA-1 bank with `sha1` and of the SHA-256 bank with `sha256`.
    fn extend_pcr10(&mut self, sha1: &[u8; 20], sha256: &[u8; 32]) -> Result<(), TpmError>;
}

/// Measures files the way kernel IMA does (template `ima-ng`, SHA-256 file digests),
/// keeping the binary log in memory and extending PCR 10 through `tpm`. Its log starts
/// with `boot_aggregate` and then [`USER_SPACE_MARKER`], so its evidence says what it
/// is and a policy must opt in to accept it.
pub struct UserSpaceMeasurer<T: PcrExtender> {
    tpm: T,
    log: Vec<u8>,
    entries: usize,
}

impl<T: PcrExtender> UserSpaceMeasurer<T> {
    /// Starts a log: `boot_aggregate` over the SHA-256 values of PCRs 0-9 (as kernels
    /// since 5.8 compute it on TPM 2.0), then the user-space marker.
    pub fn start(tpm: T, boot_pcrs: &[[u8; 32]]) -> Result<Self, TpmError> {
        let mut h = Sha256::new();
        for p in boot_pcrs {
            h.update(p);
        }
        let mut m = Self { tpm, log: Vec::new(), entries: 0 };
        m.record(Entry::ima_ng("boot_aggregate", "sha256", &h.finalize()))?;
        m.record(Entry::ima_ng(USER_SPACE_MARKER, "sha256", &[0u8; 32]))?;
        Ok(m)
    }

    /// Measures a file's content under its path.
    pub fn measure_file(&mut self, path: &Path) -> Result<(), TpmError> {
        let bytes = std::fs::read(path)
            .map_err(|e| TpmError::Io { what: format!("measuring {}", path.display()), source: e })?;
        let shown = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        self.measure(&shown.to_string_lossy(), &bytes)
    }

    /// Measures content under a given path name.
    pub fn measure(&mut self, path: &str, content: &[u8]) -> Result<(), TpmError> {
        self.record(Entry::ima_ng(path, "sha256", &Sha256::digest(content)))
    }

    /// Appends an entry to the log, then extends the PCR (the kernel's order).
    fn record(&mut self, e: Entry) -> Result<(), TpmError> {
        self.log.extend_from_slice(&e.to_binary());
        self.entries += 1;
        self.tpm.extend_pcr10(&e.sha1_extend(), &e.sha256_extend())
    }

    /// Entries recorded.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// The TPM side.
    pub fn tpm(&mut self) -> &mut T {
        &mut self.tpm
    }
}

impl<T: PcrExtender> ImaLog for UserSpaceMeasurer<T> {
    fn source(&self) -> ImaSource {
        ImaSource::UserSpace
    }

    fn read(&mut self) -> Result<Vec<u8>, TpmError> {
        Ok(self.log.clone())
    }
}
