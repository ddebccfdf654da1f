//! The authenticated header at the start of a sealed asset's plaintext.
//!
//! Layout inside the `age` encryption: the 12-byte magic `PERUN-ASSET\n`, a big-endian
//! `u32` length, that many bytes of JSON ([`AssetHeader`]), then the payload.

use perun_core::{AssetKind, Digest};
use serde::{Deserialize, Serialize};

use crate::SealError;

/// Marks a Perun sealed asset's plaintext.
pub const MAGIC: &[u8; 12] = b"PERUN-ASSET\n";

/// The largest header accepted, to bound memory on hostile input.
pub const MAX_HEADER_LEN: u32 = 64 * 1024;

/// The header schema this build writes and reads.
pub const HEADER_SCHEMA: u32 = 1;

/// What a sealed asset declares about its payload, authenticated with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetHeader {
    /// Header schema version ([`HEADER_SCHEMA`]).
    pub schema: u32,
    /// What the payload holds.
    pub kind: AssetKind,
    /// SHA-256 of the payload.
    pub content_digest: Digest,
    /// Length of the payload in bytes.
    pub content_len: u64,
}

impl AssetHeader {
    /// A header for a payload of the given kind, digest and length.
    pub fn new(kind: AssetKind, content_digest: Digest, content_len: u64) -> Self {
        Self { schema: HEADER_SCHEMA, kind, content_digest, content_len }
    }

    /// The bytes that precede the payload: magic, length, JSON.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of plain fields always serialises.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + json.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(&json);
        out
    }

    /// Parses the JSON part and checks the schema.
    pub fn decode_json(json: &[u8]) -> Result<Self, SealError> {
        let h: Self = serde_json::from_slice(json).map_err(|e| SealError::BadHeader(e.to_string()))?;
        if h.schema != HEADER_SCHEMA {
            return Err(SealError::BadHeader(format!(
                "schema {} is not supported by this build (expected {HEADER_SCHEMA})",
                h.schema
            )));
        }
        Ok(h)
    }

    /// Length of [`AssetHeader::encode`]'s output.
    pub fn encoded_len(&self) -> u64 {
        self.encode().len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode() {
        let h = AssetHeader::new(AssetKind::Dataset, Digest::of(b"x"), 1);
        let bytes = h.encode();
        assert_eq!(&bytes[..12], MAGIC);
        let n = u32::from_be_bytes(bytes[12..16].try_into().unwrap()) as usize;
        assert_eq!(AssetHeader::decode_json(&bytes[16..16 + n]).unwrap(), h);
        let mut v = serde_json::to_value(&h).unwrap();
        v["schema"] = 9.into();
        assert!(AssetHeader::decode_json(v.to_string().as_bytes()).is_err());
    }
}
