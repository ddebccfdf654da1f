//! SHA-256 content digests, written `sha256:<64 hex digits>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::CoreError;

/// A SHA-256 digest of some content (a data set, a model, a manifest).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The prefix of the text form.
    pub const PREFIX: &'static str = "sha256:";

    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Digest of a byte slice.
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// Digest of the concatenation of several parts, each prefixed by its length
    /// (u64, big-endian), so that different splits never collide.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        Self(h.finalize().into())
    }

    /// What key-release evidence binds: the trust service the Attester spoke to
    /// (`service`, the SHA-256 of the TLS certificate it pinned and verified on every
    /// connection), the service's nonce, the job digest and the ephemeral public key
    /// that released keys are sealed to. It goes into a TPM quote's qualifying data or a
    /// TEE report's report data, so evidence made for one nonce, job or key is worthless
    /// for any other; and the service, which binds its own certificate, refuses
    /// evidence made through a relay that terminated the Attester's TLS under another
    /// certificate (a channel binding in the sense of RFC 5056: whoever sits between
    /// cannot alter what the attested code was told, such as the receivers' keys).
    pub fn evidence_binding(service: &Digest, nonce: &[u8], job: &Digest, ephemeral_key: &[u8]) -> Self {
        Self::of_parts(&[b"perun-evidence-binding/v2", service.as_bytes(), nonce, job.as_bytes(), ephemeral_key])
    }

    /// What a serving enclave's evidence for a client binds: the client's nonce, the
    /// serving job and the enclave's serving key (the client verifies the report itself,
    /// so no service is named). Its own context: a report made for a client is no
    /// key-release evidence ([`Self::evidence_binding`]), nor the reverse.
    pub fn serving_binding(nonce: &[u8], job: &Digest, serving_key: &[u8]) -> Self {
        Self::of_parts(&[b"perun-serving-binding/v1", nonce, job.as_bytes(), serving_key])
    }

    /// The 64 lower-case hex digits, without the prefix.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CoreError::InvalidDigest(s.chars().take(80).collect());
        let hex_part = s.strip_prefix(Self::PREFIX).ok_or_else(bad)?;
        if hex_part.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental SHA-256 hasher that also counts the bytes it saw.
///
/// It implements [`std::io::Write`] only as a sink for `io::copy`; it never touches a
/// file or socket itself.
#[derive(Default, Clone)]
pub struct DigestWriter {
    hasher: Sha256,
    len: u64,
}

impl DigestWriter {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        Digest(self.hasher.finalize().into())
    }
}

impl std::io::Write for DigestWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let d = Digest::of(b"abc");
        assert_eq!(d.to_string(), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
    }

    #[test]
    fn malformed_digests_are_refused() {
        for bad in ["", "sha256:", "sha1:00", "sha256:zz", &format!("sha256:{}", "0".repeat(63))] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parts_are_length_framed() {
        assert_ne!(Digest::of_parts(&[b"ab", b"c"]), Digest::of_parts(&[b"a", b"bc"]));
    }

    #[test]
    fn writer_matches_one_shot() {
        let mut w = DigestWriter::new();
        w.update(b"a");
        w.update(b"bc");
        assert_eq!(w.len(), 3);
        assert_eq!(w.finish(), Digest::of(b"abc"));
    }
}
