//! The worker's platform: a TPM (the host's at `/dev/tpmrm0`, or an swtpm) and an IMA log
//! source (kernel securityfs, or the user-space measurer where the kernel has no IMA).

use std::path::Path;

use perun_attest::evidence::TpmEvidence;
use perun_attest::ima::IMA_PCR;
use perun_tpm::device::Tpm;
use perun_tpm::ima::{ImaLog as _, KernelIma, UserSpaceMeasurer};

use crate::WorkerError;

/// Where the kernel publishes the firmware's TCG2 measured-boot event log.
pub const BOOT_EVENT_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";

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

    /// What the infrastructure provider sends to enrol this platform's TPM as worker
    /// `name`: the EK public area and the EK certificate read from the TPM's NV index.
    pub fn enrolment(&mut self, name: perun_core::Name) -> Result<perun_proto::wire::EnrolWorker, WorkerError> {
        let ek_certificate = self.tpm().ek_certificate()?;
        Ok(perun_proto::wire::EnrolWorker {
            name,
            ek_public: self.tpm().ek_public().to_vec(),
            ek_certificate,
            ek_chain: Vec::new(),
        })
    }

    /// A development policy that accepts exactly this platform as it stands: the files
    /// its log measured so far, the running executable as the worker binary, the
    /// user-space measurer, EK certificates of the local CA `ca` (a software TPM's), and
    /// PCRs 0-9 as they are now (no firmware ran, so no event log exists). Every line of
    /// it is flagged as development to approvers ([`PlatformPolicy::development`]).
    pub fn development_policy(
        &mut self,
        name: &str,
        ca: &perun_tpm::swtpm::LocalCa,
    ) -> Result<perun_attest::policy::PlatformPolicy, WorkerError> {
        let log = self.log()?;
        let entries: Vec<_> = perun_attest::ima::parse_binary(&log, 0)
            .map_err(perun_attest::AttestError::from)?
            .into_iter()
            .map(|(e, _)| e)
            .collect();
        let mut policy = perun_attest::policy::PlatformPolicy::from_log(name, &entries);
        let exe = std::env::current_exe()
            .and_then(std::fs::read)
            .map_err(|source| WorkerError::Io { what: "reading the running executable".into(), source })?;
        policy.worker_binary = Some(perun_core::Digest::of(&exe).to_string());
        policy.accept_user_space_ima = true;
        policy.ek.trust_development_ca(&ca.root_pem()?, &ca.issuer_pem()?)?;
        let bank = self.tpm().pcr_read(&BOOT_PCRS)?;
        policy.pin_boot_pcrs(&bank)?;
        Ok(policy)
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
        let (ima_log, ima_source, event_log) = match &mut self.source {
            // The firmware's measured-boot log, where the kernel publishes one.
            Source::Kernel { ima, .. } => {
                (ima.read()?, ima.source(), std::fs::read(BOOT_EVENT_LOG).unwrap_or_default())
            }
            Source::UserSpace(m) => (m.read()?, m.source(), Vec::new()),
        };
        Ok(TpmEvidence { quote, signature, pcrs: bank, ima_log, ima_source, event_log })
    }
}
