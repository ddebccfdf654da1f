//! The Evidence formats (RATS, RFC 9334) as they travel: a worker's TPM 2.0 quote with its
//! PCR values and IMA and boot event logs, and a TEE's report with its collateral, and
//! the claims a verified TEE report makes. Parsed here, appraised by `perun-attest`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// TPM algorithm identifiers used here.
pub mod alg {
    /// RSA.
    pub const RSA: u16 = 0x0001;
    /// SHA-1.
    pub const SHA1: u16 = 0x0004;
    /// AES.
    pub const AES: u16 = 0x0006;
    /// SHA-256.
    pub const SHA256: u16 = 0x000B;
    /// The null algorithm.
    pub const NULL: u16 = 0x0010;
    /// RSASSA-PKCS1-v1_5.
    pub const RSASSA: u16 = 0x0014;
    /// ECDSA.
    pub const ECDSA: u16 = 0x0018;
    /// Elliptic-curve keys.
    pub const ECC: u16 = 0x0023;
    /// CFB mode.
    pub const CFB: u16 = 0x0043;
    /// The NIST P-256 curve.
    pub const NIST_P256: u16 = 0x0003;

    /// A PCR bank's hash algorithm by name (TPM 2.0 Part 2, `TPM_ALG_ID`), or its
    /// number for one not listed.
    pub fn bank_name(id: u16) -> String {
        match id {
            SHA1 => "SHA-1".into(),
            SHA256 => "SHA-256".into(),
            0x000C => "SHA-384".into(),
            0x000D => "SHA-512".into(),
            0x0012 => "SM3-256".into(),
            other => format!("algorithm 0x{other:04x}"),
        }
    }
}

/// The NV index of the RSA 2048 EK certificate (TCG EK Credential Profile 2.5, 2.2.1.4).
pub const NV_RSA_EK_CERT: u32 = 0x01c0_0002;
/// The NV index of the ECC NIST P-256 EK certificate (same profile).
pub const NV_ECC_EK_CERT: u32 = 0x01c0_000a;

/// PCR values of one bank, as the attester reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PcrBank {
    /// Hash algorithm of the bank (`alg::SHA256`).
    pub hash_alg: u16,
    /// PCR index to value.
    pub values: BTreeMap<u32, Vec<u8>>,
}

/// The path of the entry the user-space measurer writes right after `boot_aggregate`,
/// so that its evidence says what it is.
pub const USER_SPACE_MARKER: &str = "perun:user-space-measurer";

/// Where the IMA log came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImaSource {
    /// The kernel (`/sys/kernel/security/ima/binary_runtime_measurements`).
    Kernel,
    /// Perun's user-space measurer, for machines without kernel IMA (development).
    UserSpace,
}

/// What a worker sends to prove its state. Binary fields are hex in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmEvidence {
    /// `TPMS_ATTEST` of the quote.
    #[serde(with = "hex::serde")]
    pub quote: Vec<u8>,
    /// `TPMT_SIGNATURE` over it.
    #[serde(with = "hex::serde")]
    pub signature: Vec<u8>,
    /// The quoted PCR values (SHA-256 bank).
    pub pcrs: PcrBank,
    /// The binary IMA log (the whole log; the verifier reads past its saved offset).
    #[serde(with = "hex::serde")]
    pub ima_log: Vec<u8>,
    /// Where the log came from.
    pub ima_source: ImaSource,
    /// The TCG2 measured-boot event log (`binary_bios_measurements`), where the
    /// platform has one; empty otherwise.
    #[serde(default, with = "hex::serde", skip_serializing_if = "Vec::is_empty")]
    pub event_log: Vec<u8>,
}

/// Which TEE made a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeeKind {
    /// Perun's software TEE for development (no hardware; refused by default).
    Sim,
    /// Intel SGX enclave (DCAP quote).
    Sgx,
    /// Intel TDX trust domain (DCAP quote).
    Tdx,
    /// AMD SEV-SNP guest (attestation report).
    SevSnp,
}

/// A TEE's evidence as it travels: the report or quote, and what verifies it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeeEvidence {
    /// The kind of TEE.
    pub kind: TeeKind,
    /// The quote (SGX, TDX), the attestation report (SNP) or the signed sim report (hex).
    #[serde(with = "hex::serde")]
    pub report: Vec<u8>,
    /// Verification material: DCAP collateral (JSON), the SNP VCEK (DER, hex), or the
    /// sim key and signature.
    #[serde(default)]
    pub collateral: serde_json::Value,
}

/// The ordered TCB levels (Intel's names; SNP reports map to them through the policy's
/// minimum reported TCB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TcbLevel {
    /// Fully up to date.
    UpToDate,
    /// Up to date; software hardening advised.
    SwHardeningNeeded,
    /// Up to date; platform configuration advised.
    ConfigurationNeeded,
    /// Out of date.
    OutOfDate,
    /// Revoked: never acceptable.
    Revoked,
}

impl TcbLevel {
    /// The level of an Intel TCB status string.
    pub fn from_intel(status: &str) -> Self {
        match status {
            "UpToDate" => Self::UpToDate,
            "SWHardeningNeeded" => Self::SwHardeningNeeded,
            "ConfigurationNeeded" | "ConfigurationAndSWHardeningNeeded" => Self::ConfigurationNeeded,
            "Revoked" => Self::Revoked,
            _ => Self::OutOfDate,
        }
    }
}

/// What a verified report says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeeClaims {
    /// The TEE kind.
    pub kind: TeeKind,
    /// Named measurements, hex (`mr_enclave`, `mr_signer`, `mr_td`, `rtmr0`...,
    /// `measurement`, `sim_key`...).
    pub measurements: BTreeMap<String, String>,
    /// The 64-byte report data, hex.
    pub report_data: String,
    /// The TCB level.
    pub tcb: TcbLevel,
    /// The TCB status as the vendor states it.
    pub tcb_status: String,
    /// Security advisories that apply.
    pub advisories: Vec<String>,
    /// Security version numbers of the TCB's components, where the evidence states them
    /// (SEV-SNP: `bootloader`, `tee`, `snp`, `microcode` of the reported TCB; SGX:
    /// `isv_svn`), checked against the TEE policy's `min_svn`.
    #[serde(default)]
    pub svns: BTreeMap<String, u64>,
    /// Whether the TEE lets a debugger in (SGX `ATTRIBUTES.DEBUG`, TDX `TD_ATTRIBUTES.DEBUG`,
    /// SEV-SNP guest policy `DEBUG`): its memory is then the host's to read.
    #[serde(default)]
    pub debug: bool,
}
