//! The attestation nonce as it travels: bytes the trust service issued, hex in JSON and
//! decoded once, where a body is read. What a nonce holds (its issue time and the
//! service's tag) is the service's to check.

use serde::{Deserialize, Serialize};

/// The most bytes a nonce may have (the service issues 56); a longer one is refused when
/// read.
pub const MAX_NONCE_LEN: usize = 64;

/// An attestation nonce: 1 to [`MAX_NONCE_LEN`] bytes, hex in JSON.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Nonce(#[serde(with = "hex::serde")] Vec<u8>);

/// A nonce of 0 or more than [`MAX_NONCE_LEN`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a nonce is 1 to {MAX_NONCE_LEN} bytes, this one {0}")]
pub struct NonceLengthError(pub usize);

impl Nonce {
    /// A nonce of `bytes`.
    ///
    /// Errors: [`NonceLengthError`] for 0 or more than [`MAX_NONCE_LEN`] bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Self, NonceLengthError> {
        if bytes.is_empty() || bytes.len() > MAX_NONCE_LEN {
            return Err(NonceLengthError(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A nonce of a fixed length, checked when the program is compiled.
impl<const N: usize> From<[u8; N]> for Nonce {
    fn from(bytes: [u8; N]) -> Self {
        const { assert!(N >= 1 && N <= MAX_NONCE_LEN, "a nonce is 1 to MAX_NONCE_LEN bytes") };
        Self(bytes.to_vec())
    }
}

impl<'de> Deserialize<'de> for Nonce {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if text.len() > 2 * MAX_NONCE_LEN {
            return Err(serde::de::Error::custom(NonceLengthError(text.len() / 2)));
        }
        let bytes = hex::decode(text.as_ref()).map_err(|_| serde::de::Error::custom("the nonce is not hex"))?;
        Self::new(bytes).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Debug for Nonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nonce({})", hex::encode(&self.0))
    }
}

impl std::fmt::Display for Nonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_read_once_from_hex_and_bounded() {
        let n: Nonce = serde_json::from_str("\"00ff\"").unwrap();
        assert_eq!(n.as_bytes(), &[0, 255]);
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"00ff\"");
        for bad in ["\"\"", "\"0g\"", "\"abc\"", "12"] {
            assert!(serde_json::from_str::<Nonce>(bad).is_err(), "{bad}");
        }
        let long = format!("\"{}\"", "ab".repeat(MAX_NONCE_LEN + 1));
        assert!(serde_json::from_str::<Nonce>(&long).is_err());
        assert!(Nonce::new(vec![1; MAX_NONCE_LEN]).is_ok());
    }
}
