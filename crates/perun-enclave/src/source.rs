//! Evidence sources: how code inside a TEE gets a report binding 64 bytes of its choice.
//!
//! Every source takes the report data (`Digest::evidence_binding(service, nonce, job,
//! key)` for the trust service, `Digest::serving_binding(nonce, job, key)` for a client,
//! zero-padded to 64 bytes) and returns one [`TeeEvidence`] that the verifiers in
//! `perun_attest::tee` check. DCAP collateral and the SNP VCEK are not fetched here (no
//! network call at verification): the operator supplies them with `--collateral`.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use perun_attest::tee::{sim, TeeEvidence, TeeKind};
use perun_core::Digest;

use crate::EnclaveError;

/// A TEE's evidence interface.
pub trait EvidenceSource: Send {
    /// The kind of TEE it reports from.
    fn kind(&self) -> TeeKind;
    /// A report binding `report_data` (at most 64 bytes).
    fn evidence(&mut self, report_data: &[u8]) -> Result<TeeEvidence, EnclaveError>;
}

fn padded(report_data: &[u8], source: &str) -> Result<[u8; 64], EnclaveError> {
    if report_data.len() > 64 {
        return Err(EnclaveError::Source { source_name: source.into(), why: "report data is at most 64 bytes".into() });
    }
    let mut rd = [0u8; 64];
    rd[..report_data.len()].copy_from_slice(report_data);
    Ok(rd)
}

/// The sim TEE: a software "enclave" for development where no TEE hardware exists. Its
/// reports say `sim`, carry the SHA-256 of the running binary as measurement, and are
/// signed by the sim's own Ed25519 key; a policy accepts them only if it names that key.
pub struct SimTee {
    key: SigningKey,
    measurement: Digest,
}

impl SimTee {
    /// A sim TEE signing with `key` and measuring `measurement`.
    pub fn new(key: SigningKey, measurement: Digest) -> Self {
        Self { key, measurement }
    }

    /// A sim TEE that measures the running executable.
    pub fn for_this_binary(key: SigningKey) -> Result<Self, EnclaveError> {
        Ok(Self::new(key, this_binary()?))
    }

    /// Loads the sim key from `path` (32 bytes, hex), or makes one there (mode 0600).
    pub fn load_or_create_key(path: &Path) -> Result<SigningKey, EnclaveError> {
        let fail = |why: String| EnclaveError::Source { source_name: "sim".into(), why };
        if path.exists() {
            let text = perun_seal::fsutil::read_secret_file(path)?;
            let bytes: [u8; 32] = hex::decode(String::from_utf8_lossy(&text).trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| fail(format!("{} is not a 32-byte hex sim key", path.display())))?;
            return Ok(SigningKey::from_bytes(&bytes));
        }
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let hex = zeroize::Zeroizing::new(hex::encode(key.to_bytes()));
        perun_seal::fsutil::write_secret_file(path, hex.as_bytes())?;
        Ok(key)
    }

    /// The public key a policy names to accept this sim TEE (hex).
    pub fn public_key(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// The measurement it reports.
    pub fn measurement(&self) -> Digest {
        self.measurement
    }
}

/// The SHA-256 of the running executable (what the sim TEE reports as measurement).
pub fn this_binary() -> Result<Digest, EnclaveError> {
    let fail = |why: String| EnclaveError::Source { source_name: "sim".into(), why };
    let exe = std::env::current_exe().map_err(|e| fail(format!("locating this program: {e}")))?;
    let bytes = std::fs::read(&exe).map_err(|e| fail(format!("reading {}: {e}", exe.display())))?;
    Ok(Digest::of(&bytes))
}

impl EvidenceSource for SimTee {
    fn kind(&self) -> TeeKind {
        TeeKind::Sim
    }

    fn evidence(&mut self, report_data: &[u8]) -> Result<TeeEvidence, EnclaveError> {
        let rd = padded(report_data, "sim")?;
        Ok(sim::make_evidence(&self.key, self.measurement.as_bytes(), &rd)?)
    }
}

/// Gramine's SGX attestation files (`/dev/attestation` inside a Gramine enclave with
/// `sgx.remote_attestation = "dcap"`): write `user_report_data`, read `quote`.
pub struct Gramine {
    dir: PathBuf,
    collateral: serde_json::Value,
}

impl Gramine {
    /// The interface at `dir` (normally `/dev/attestation`), with the DCAP collateral
    /// (JSON, as `dcap-qvl` takes it) that will travel with each quote.
    pub fn new(dir: impl Into<PathBuf>, collateral: serde_json::Value) -> Self {
        Self { dir: dir.into(), collateral }
    }
}

fn io_fail(source: &str, what: &Path, e: std::io::Error) -> EnclaveError {
    EnclaveError::Source { source_name: source.into(), why: format!("{}: {e}", what.display()) }
}

impl EvidenceSource for Gramine {
    fn kind(&self) -> TeeKind {
        TeeKind::Sgx
    }

    fn evidence(&mut self, report_data: &[u8]) -> Result<TeeEvidence, EnclaveError> {
        let rd = padded(report_data, "gramine")?;
        let kind_file = self.dir.join("attestation_type");
        if let Ok(t) = std::fs::read_to_string(&kind_file) {
            if t.trim() != "dcap" {
                return Err(EnclaveError::Source {
                    source_name: "gramine".into(),
                    why: format!(
                        "attestation type is `{}`: the manifest must set sgx.remote_attestation = \"dcap\"",
                        t.trim()
                    ),
                });
            }
        }
        let rd_file = self.dir.join("user_report_data");
        std::fs::write(&rd_file, rd).map_err(|e| io_fail("gramine", &rd_file, e))?;
        let quote_file = self.dir.join("quote");
        let quote = std::fs::read(&quote_file).map_err(|e| io_fail("gramine", &quote_file, e))?;
        Ok(TeeEvidence { kind: TeeKind::Sgx, report: quote, collateral: self.collateral.clone() })
    }
}

/// The Linux configfs-tsm report interface (`/sys/kernel/config/tsm/report`, kernel
/// 6.7+), which serves TDX guests (a TD quote) and SEV-SNP guests (an attestation
/// report): make an entry, write `inblob`, read `provider` and `outblob`, remove it.
pub struct ConfigfsTsm {
    dir: PathBuf,
    entry: String,
    collateral: serde_json::Value,
}

impl ConfigfsTsm {
    /// The interface at `dir` (normally `/sys/kernel/config/tsm/report`); `collateral`:
    /// DCAP collateral JSON for TDX, `{"vcek": "<DER hex>"}` for SEV-SNP.
    pub fn new(dir: impl Into<PathBuf>, collateral: serde_json::Value) -> Self {
        Self { dir: dir.into(), entry: format!("perun-{}", std::process::id()), collateral }
    }

    /// Uses the entry `name` (one per process by default).
    pub fn with_entry(mut self, name: &str) -> Self {
        self.entry = name.to_owned();
        self
    }
}

impl EvidenceSource for ConfigfsTsm {
    fn kind(&self) -> TeeKind {
        let provider = std::fs::read_to_string(self.dir.join(&self.entry).join("provider")).unwrap_or_default();
        if provider.trim() == "sev_guest" {
            TeeKind::SevSnp
        } else {
            TeeKind::Tdx
        }
    }

    fn evidence(&mut self, report_data: &[u8]) -> Result<TeeEvidence, EnclaveError> {
        let rd = padded(report_data, "configfs-tsm")?;
        let entry = self.dir.join(&self.entry);
        match std::fs::create_dir(&entry) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_fail("configfs-tsm", &entry, e)),
        }
        let read = |name: &str| -> Result<Vec<u8>, EnclaveError> {
            let p = entry.join(name);
            std::fs::read(&p).map_err(|e| io_fail("configfs-tsm", &p, e))
        };
        let generation = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).trim().to_owned();
        let inblob = entry.join("inblob");
        std::fs::write(&inblob, rd).map_err(|e| io_fail("configfs-tsm", &inblob, e))?;
        let before = generation(read("generation")?);
        let provider = String::from_utf8_lossy(&read("provider")?).trim().to_owned();
        let kind = match provider.as_str() {
            "tdx_guest" => TeeKind::Tdx,
            "sev_guest" => TeeKind::SevSnp,
            other => {
                return Err(EnclaveError::Source {
                    source_name: "configfs-tsm".into(),
                    why: format!("provider `{other}` is not supported (expected tdx_guest or sev_guest)"),
                })
            }
        };
        let report = read("outblob")?;
        // Another writer between our inblob and outblob would change the generation.
        if generation(read("generation")?) != before {
            return Err(EnclaveError::Source {
                source_name: "configfs-tsm".into(),
                why: "the report entry was written concurrently: try again".into(),
            });
        }
        if let Err(e) = std::fs::remove_dir(&entry) {
            tracing::debug!(error = %e, "could not remove the configfs-tsm entry");
        }
        Ok(TeeEvidence { kind, report, collateral: self.collateral.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_data_is_zero_padded_to_64_bytes_and_longer_is_refused() {
        let rd = padded(b"abc", "t").unwrap();
        assert_eq!(&rd[..3], b"abc");
        assert!(rd[3..].iter().all(|&b| b == 0));
        assert!(padded(&[1u8; 64], "t").is_ok());
        assert!(padded(&[1u8; 65], "t").is_err());
    }

    #[test]
    fn a_sim_key_file_that_others_can_read_or_that_is_not_a_key_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sim.key");
        std::fs::write(&p, "not a key").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(SimTee::load_or_create_key(&p).is_err());
        std::fs::write(&p, hex::encode([7u8; 32])).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(SimTee::load_or_create_key(&p).is_err());
    }
}
