//! The service's own keys, kept in its data folder as files of mode 0600:
//!
//! - `service-signing.pem`: Ed25519, signs audit records;
//! - `service-wrap.key`: an `age` X25519 identity; asset owners wrap their asset keys to
//!   its public half, and the store keeps them wrapped;
//! - `tls.key` and `tls.crt`: the service's own TLS certificate (made with `rcgen`),
//!   whose SHA-256 fingerprint clients pin.

use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use ed25519_dalek::SigningKey;
use perun_core::Digest;
use perun_seal::fsutil::{read_secret_file, write_secret_file};
use perun_seal::AssetKey;
use zeroize::Zeroizing;

use crate::TrustError;

/// The service's keys.
pub struct ServiceKeys {
    /// Signs audit records.
    pub signing: SigningKey,
    /// Unwraps asset keys.
    pub wrap: AssetKey,
    /// The TLS certificate (DER).
    pub tls_cert: Vec<u8>,
    /// The TLS private key (PKCS#8 DER).
    pub tls_key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for ServiceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceKeys(tls {})", self.tls_fingerprint())
    }
}

impl ServiceKeys {
    /// Fresh keys; `hosts` are the names and addresses the certificate is for.
    pub fn generate(hosts: &[String]) -> Result<Self, TrustError> {
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        names.extend(hosts.iter().cloned());
        names.sort();
        names.dedup();
        let ck = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TrustError::Crypto(format!("making the TLS certificate: {e}")))?;
        Ok(Self {
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
            wrap: AssetKey::generate(),
            tls_cert: ck.cert.der().to_vec(),
            tls_key: Zeroizing::new(ck.signing_key.serialize_der()),
        })
    }

    /// Loads the keys from `dir`, making and saving them on first start.
    pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<Self, TrustError> {
        if !dir.join("service-signing.pem").exists() {
            return Self::create(dir, hosts);
        }
        Self::load(dir)
    }

    /// Makes fresh keys and saves them in `dir` (created with mode 0700), refusing to
    /// replace keys already there: replicas of one service share one set, made once
    /// (`perun serve --keys DIR --make-keys`) and provisioned to each.
    pub fn create(dir: &Path, hosts: &[String]) -> Result<Self, TrustError> {
        if dir.join("service-signing.pem").exists() {
            return Err(TrustError::Conflict(format!(
                "{} holds service keys already: replacing them would orphan every wrapped asset key",
                dir.display()
            )));
        }
        let k = Self::generate(hosts)?;
        k.save(dir)?;
        Ok(k)
    }

    /// Loads the keys saved in `dir` (files of mode 0600 or stricter; a Kubernetes Secret
    /// mounted with `defaultMode: 0400` qualifies).
    ///
    /// Errors: [`TrustError::Io`] naming the file that is missing, unreadable, too open
    /// or not a key.
    pub fn load(dir: &Path) -> Result<Self, TrustError> {
        let signing = dir.join("service-signing.pem");
        if !signing.exists() {
            return Err(TrustError::Io(format!(
                "no service keys in {}: make them once with `perun serve --keys {} --make-keys` and give every \
                 replica a copy",
                dir.display(),
                dir.display()
            )));
        }
        let pem = read_secret_file(&signing)?;
        let pem = std::str::from_utf8(&pem).map_err(|_| TrustError::Io(format!("{} is not PEM", signing.display())))?;
        let signing_key = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| TrustError::Io(format!("{}: not an Ed25519 PKCS#8 key: {e}", signing.display())))?;
        let wrap = AssetKey::load(&dir.join("service-wrap.key"))?;
        let tls_key = read_secret_file(&dir.join("tls.key"))?;
        let crt = dir.join("tls.crt");
        let tls_cert = std::fs::read(&crt).map_err(|e| TrustError::Io(format!("{}: {e}", crt.display())))?;
        Ok(Self { signing: signing_key, wrap, tls_cert, tls_key })
    }

    fn save(&self, dir: &Path) -> Result<(), TrustError> {
        std::fs::create_dir_all(dir).map_err(|e| TrustError::Io(format!("{}: {e}", dir.display())))?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| TrustError::Io(format!("{}: {e}", dir.display())))?;
        }
        let pem = self
            .signing
            .to_pkcs8_pem(Default::default())
            .map_err(|e| TrustError::Crypto(format!("encoding the signing key: {e}")))?;
        write_secret_file(&dir.join("service-signing.pem"), pem.as_bytes())?;
        self.wrap.save(&dir.join("service-wrap.key"))?;
        write_secret_file(&dir.join("tls.key"), &self.tls_key)?;
        let crt = dir.join("tls.crt");
        std::fs::write(&crt, &self.tls_cert).map_err(|e| TrustError::Io(format!("{}: {e}", crt.display())))?;
        Ok(())
    }

    /// The audit signing key as clients pin it: standard base64 of the Ed25519 public key.
    pub fn audit_key(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.signing.verifying_key().as_bytes())
    }

    /// The fingerprint clients pin: SHA-256 of the certificate.
    pub fn tls_fingerprint(&self) -> Digest {
        Digest::of(&self.tls_cert)
    }

    /// The recipient asset owners wrap their keys to.
    pub fn wrap_recipient(&self) -> String {
        self.wrap.recipient().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kept_across_restarts_in_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = ServiceKeys::load_or_create(dir.path(), &[]).unwrap();
        let b = ServiceKeys::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(a.tls_fingerprint(), b.tls_fingerprint());
        assert_eq!(a.signing.verifying_key(), b.signing.verifying_key());
        assert_eq!(a.wrap_recipient(), b.wrap_recipient());
        use std::os::unix::fs::PermissionsExt as _;
        for f in ["service-signing.pem", "service-wrap.key", "tls.key"] {
            let mode = std::fs::metadata(dir.path().join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{f} must be private");
        }
    }
}
