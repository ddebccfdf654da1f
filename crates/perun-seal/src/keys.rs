//! Keys: the per-asset key that seals one asset, and a stakeholder's own key pair.
//!
//! An asset key is an `age` X25519 identity (`AGE-SECRET-KEY-1...`), saved in the `age`
//! identity-file format, so `age -d -i <key file>` opens the asset too. A stakeholder
//! holds an Ed25519 signing key (PKCS#8 PEM) and an `age` X25519 identity. Secret halves
//! live in types that wipe their memory on drop and reach disk only through
//! [`crate::fsutil::write_secret_file`] (mode 0600, never overwriting).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use age::secrecy::ExposeSecret as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use ed25519_dalek::SigningKey;
use perun_core::{Name, PublicIdentity};

use crate::fsutil::{read_secret_file, write_secret_file};
use crate::SealError;

/// The key of one sealed asset: an `age` X25519 identity. Its secret scalar is wiped
/// from memory when the value is dropped.
pub struct AssetKey(age::x25519::Identity);

impl fmt::Debug for AssetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AssetKey({})", self.recipient())
    }
}

impl AssetKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(age::x25519::Identity::generate())
    }

    /// The public recipient that seals to this key.
    pub fn recipient(&self) -> age::x25519::Recipient {
        self.0.to_public()
    }

    /// The `age` identity, to open files.
    pub fn identity(&self) -> &age::x25519::Identity {
        &self.0
    }

    /// The secret in text form (`AGE-SECRET-KEY-1...`), in a wiping string.
    pub fn to_secret_string(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(self.0.to_string().expose_secret().to_owned())
    }

    /// Parses the text form, or an `age` identity file's contents (comments allowed).
    pub fn parse(text: &str) -> Result<Self, SealError> {
        parse_age_identity(text).map(Self)
    }

    /// Writes the key as an `age` identity file of mode 0600 (never overwriting).
    pub fn save(&self, path: &Path) -> Result<(), SealError> {
        write_secret_file(path, identity_file_text(&self.0).as_bytes())
    }

    /// Loads a key file written by [`AssetKey::save`] or by `age-keygen`.
    pub fn load(path: &Path) -> Result<Self, SealError> {
        let bytes = read_secret_file(path)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| SealError::InvalidKey(format!("{} is not a text key file", path.display())))?;
        Self::parse(text)
    }
}

impl FromStr for AssetKey {
    type Err = SealError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn identity_file_text(id: &age::x25519::Identity) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(format!(
        "# perun key; open with `perun unseal --key FILE` or `age -d -i FILE`\n# public key: {}\n{}\n",
        id.to_public(),
        id.to_string().expose_secret()
    ))
}

fn parse_age_identity(text: &str) -> Result<age::x25519::Identity, SealError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| SealError::InvalidKey("no key found (expected a line AGE-SECRET-KEY-1...)".into()))?;
    line.parse::<age::x25519::Identity>()
        .map_err(|_| SealError::InvalidKey("not an age X25519 secret key (AGE-SECRET-KEY-1...)".into()))
}

/// Parses an `age` X25519 recipient (`age1...`).
pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient, SealError> {
    s.trim()
        .parse::<age::x25519::Recipient>()
        .map_err(|e| SealError::InvalidKey(format!("not an age X25519 recipient: {e}")))
}

/// A stakeholder's key pair: Ed25519 for signatures, `age` X25519 to receive outputs.
pub struct StakeholderKeys {
    name: Name,
    signing: SigningKey,
    age: age::x25519::Identity,
}

impl fmt::Debug for StakeholderKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StakeholderKeys").field("name", &self.name).finish_non_exhaustive()
    }
}

impl StakeholderKeys {
    /// File name of the Ed25519 key (PKCS#8 PEM).
    pub const SIGNING_FILE: &'static str = "signing.pem";
    /// File name of the `age` identity.
    pub const AGE_FILE: &'static str = "age.key";
    /// File name of the public record.
    pub const PUBLIC_FILE: &'static str = "public.json";

    /// Fresh random keys for a stakeholder.
    pub fn generate(name: Name) -> Self {
        Self { name, signing: SigningKey::generate(&mut rand::rngs::OsRng), age: age::x25519::Identity::generate() }
    }

    /// The stakeholder's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The Ed25519 signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The `age` identity, to open outputs sealed to this stakeholder.
    pub fn age_identity(&self) -> &age::x25519::Identity {
        &self.age
    }

    /// The public halves.
    pub fn public(&self) -> PublicIdentity {
        PublicIdentity::new(self.name.clone(), &self.signing.verifying_key(), self.age.to_public().to_string())
    }

    /// Saves into a new folder `dir` (created with mode 0700): the two secret files
    /// (0600) and `public.json`. Refuses if the folder exists.
    pub fn save(&self, dir: &Path) -> Result<(), SealError> {
        if dir.exists() {
            return Err(SealError::Exists(dir.to_owned()));
        }
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| SealError::io(dir, e))?;
        let pem = self
            .signing
            .to_pkcs8_pem(Default::default())
            .map_err(|e| SealError::InvalidKey(format!("cannot encode signing key: {e}")))?;
        write_secret_file(&dir.join(Self::SIGNING_FILE), pem.as_bytes())?;
        write_secret_file(&dir.join(Self::AGE_FILE), identity_file_text(&self.age).as_bytes())?;
        let public = serde_json::to_vec_pretty(&self.public())
            .map_err(|e| SealError::InvalidKey(format!("cannot encode public identity: {e}")))?;
        std::fs::write(dir.join(Self::PUBLIC_FILE), public).map_err(|e| SealError::io(dir, e))
    }

    /// Loads keys saved by [`StakeholderKeys::save`].
    pub fn load(dir: &Path) -> Result<Self, SealError> {
        let public_path = dir.join(Self::PUBLIC_FILE);
        let public: PublicIdentity =
            serde_json::from_slice(&std::fs::read(&public_path).map_err(|e| SealError::io(&public_path, e))?)
                .map_err(|e| SealError::InvalidKey(format!("{}: {e}", public_path.display())))?;
        let pem_path = dir.join(Self::SIGNING_FILE);
        let pem = read_secret_file(&pem_path)?;
        let pem = std::str::from_utf8(&pem)
            .map_err(|_| SealError::InvalidKey(format!("{} is not PEM text", pem_path.display())))?;
        let signing = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| SealError::InvalidKey(format!("{}: {e}", pem_path.display())))?;
        let age_path = dir.join(Self::AGE_FILE);
        let age_text = read_secret_file(&age_path)?;
        let age = parse_age_identity(std::str::from_utf8(&age_text).unwrap_or_default())?;
        let keys = Self { name: public.name.clone(), signing, age };
        if keys.public() != public {
            return Err(SealError::InvalidKey(format!(
                "{}: the public record does not match the secret keys beside it",
                public_path.display()
            )));
        }
        Ok(keys)
    }
}

use std::os::unix::fs::DirBuilderExt as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_key_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let k = AssetKey::generate();
        let p = dir.path().join("a.key");
        k.save(&p).unwrap();
        let back = AssetKey::load(&p).unwrap();
        assert_eq!(back.recipient().to_string(), k.recipient().to_string());
        assert!(AssetKey::parse("AGE-SECRET-KEY-1NOPE").is_err());
        assert!(AssetKey::parse("# only a comment\n").is_err());
        assert!(!format!("{k:?}").contains("AGE-SECRET-KEY"));
    }

    #[test]
    fn stakeholder_keys_round_trip_and_refuse_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let keys = StakeholderKeys::generate(Name::new("hospital-a").unwrap());
        let d = dir.path().join("hospital-a");
        keys.save(&d).unwrap();
        let back = StakeholderKeys::load(&d).unwrap();
        assert_eq!(back.public(), keys.public());
        assert!(keys.save(&d).is_err(), "overwrote an identity");

        // A public record swapped for another's is refused.
        let other = StakeholderKeys::generate(Name::new("hospital-a").unwrap());
        std::fs::write(d.join("public.json"), serde_json::to_vec(&other.public()).unwrap()).unwrap();
        assert!(StakeholderKeys::load(&d).is_err());
    }
}
