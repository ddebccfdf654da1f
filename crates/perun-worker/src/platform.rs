//! The worker's platform: a TPM (the host's at `/dev/tpmrm0`, or an swtpm) and an IMA log
//! source (kernel securityfs, or the user-space measurer where the kernel has no IMA).

use std::path::Path;

use perun_attest::evidence::TpmEvidence;
use perun_attest::ima::IMA_PCR;
use perun_tpm::device::Tpm;
use perun_tpm::ima::{ImaLog as _, KernelIma, UserSpaceMeasurer};

use crate::WorkerError;

/// PCRs the kernel extends at boot, quoted with PCR 10.
pub const BOOT_PCRS: [u32; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

enum Source {
    Kernel { tpm: Tpm, ima: KernelIma },
    UserSpace(UserSpaceMeasurer<Tpm>),
}

/// A TPM with its IMA log.
pub struct Platform {
    source: Source,
}

impl Platform {
    /// The kernel's IMA log with `tpm`.
    pub fn kernel(tpm: Tpm) -> Result<Self, WorkerError> {
        Ok(Self { source: Source::Kernel { tpm, ima: KernelIma::open()? } })
    }

    /// The user-space measurer over `tpm` (development, or hosts without kernel IMA). It
    /// measures the running executable first, as kernel IMA would when it started.
    pub fn user_space(mut tpm: Tpm) -> Result<Self, WorkerError> {
        let bank = tpm.pcr_read(&BOOT_PCRS)?;
        let boot: Vec<[u8; 32]> = bank.values.values().filter_map(|v| v.clone().try_into().ok()).collect();
        let mut m = UserSpaceMeasurer::start(tpm, &boot)?;
        if let Ok(exe) = std::env::current_exe() {
            m.measure_file(&exe)?;
        }
        Ok(Self { source: Source::UserSpace(m) })
    }

    /// The TPM.
    pub fn tpm(&mut self) -> &mut Tpm {
        match &mut self.source {
            Source::Kernel { tpm, .. } => tpm,
            Source::UserSpace(m) => m.tpm(),
        }
    }

    /// Measures a file (the user-space measurer only: the kernel measures by itself).
    pub fn measure_file(&mut self, path: &Path) -> Result<(), WorkerError> {
        match &mut self.source {
            Source::Kernel { .. } => Ok(()),
            Source::UserSpace(m) => Ok(m.measure_file(path)?),
        }
    }

    /// Measures content under a path name (user-space measurer only).
    pub fn measure(&mut self, path: &str, content: &[u8]) -> Result<(), WorkerError> {
        match &mut self.source {
            Source::Kernel { .. } => Ok(()),
            Source::UserSpace(m) => Ok(m.measure(path, content)?),
        }
    }

    /// The IMA log as it stands (binary).
    pub fn log(&mut self) -> Result<Vec<u8>, WorkerError> {
        Ok(match &mut self.source {
            Source::Kernel { ima, .. } => ima.read()?,
            Source::UserSpace(m) => m.read()?,
        })
    }

    /// Evidence over the boot PCRs and PCR 10, with `qualifying_data`. The log is read
    /// after the quote, so it holds every entry the quote covers (the verifier replays
    /// to the quoted value and leaves later entries for the next round).
    pub fn evidence(&mut self, qualifying_data: &[u8]) -> Result<TpmEvidence, WorkerError> {
        let mut pcrs = BOOT_PCRS.to_vec();
        pcrs.push(IMA_PCR);
        let (quote, signature) = self.tpm().quote(&pcrs, qualifying_data)?;
        let bank = self.tpm().pcr_read(&pcrs)?;
        let (ima_log, ima_source) = match &mut self.source {
            Source::Kernel { ima, .. } => (ima.read()?, ima.source()),
            Source::UserSpace(m) => (m.read()?, m.source()),
        };
        Ok(TpmEvidence { quote, signature, pcrs: bank, ima_log, ima_source })
    }
}
