//! TPM 2.0 structures, parsed and checked without a TPM.

pub mod credential;
pub mod public;
pub mod quote;
#[cfg(any(test, feature = "soft-tpm"))]
pub mod soft;
mod wire;

pub use credential::{make_credential, Credential};
pub use public::{AkPublic, PublicKey};
pub use quote::{verify_quote, verify_signature, PcrBank, Quote, QuoteCheck};

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
