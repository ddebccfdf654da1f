//! Attestation nonces without server state: a nonce is its issue time, 16 random bytes
//! and an HMAC over them, the job and the worker, under a key derived from the service's
//! signing key. The service checks a nonce by recomputing the HMAC and the age; it records
//! a nonce only when evidence arrives with it (so each is used once), in the same
//! transaction as the verdict. Issuing one therefore costs no disk write, and nonces stay
//! valid across a restart.

use hmac::{Hmac, Mac as _};
use perun_core::{Digest, Name};
use perun_proto::Nonce;
use sha2::Sha256;

const TIME: usize = 8;
const RANDOM: usize = 16;
const TAG: usize = 32;

/// Issues and checks nonces, and derives credential-activation secrets.
pub struct NonceIssuer {
    key: [u8; 32],
    credential_key: [u8; 32],
}

impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceIssuer")
    }
}

impl NonceIssuer {
    /// An issuer keyed by `secret` (the service derives it from its signing key).
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: *Digest::of_parts(&[b"perun/nonce-key/v1", secret]).as_bytes(),
            credential_key: *Digest::of_parts(&[b"perun/credential-key/v1", secret]).as_bytes(),
        }
    }

    /// The secret a credential challenge (TPM 2.0 Part 1, section 24: MakeCredential /
    /// ActivateCredential) for AK `ak_public` of `worker`, whose enrolled EK is
    /// `ek_public`, issued at `issued_at` (Unix seconds), protects: an HMAC over all four
    /// under a key only this service holds. The service keeps no state for a challenge:
    /// it recomputes the secret when the worker answers, so an anonymous request can
    /// neither store nor replace anything a real worker's activation depends on.
    pub fn credential_secret(&self, worker: &Name, ek_public: &[u8], ak_public: &[u8], issued_at: u64) -> [u8; 32] {
        // allow-panic: HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.credential_key).unwrap_or_else(|_| unreachable!());
        for part in [worker.as_str().as_bytes(), ek_public, ak_public, &issued_at.to_be_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    fn tag(&self, body: &[u8], job: &Digest, worker: &Name) -> [u8; 32] {
        // allow-panic: HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(body);
        mac.update(job.as_bytes());
        mac.update(worker.as_str().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A fresh nonce for `worker` attesting for `job`, issued at `now`.
    pub fn issue(&self, job: &Digest, worker: &Name, now: u64) -> Nonce {
        let mut nonce = [0u8; TIME + RANDOM + TAG];
        nonce[..TIME].copy_from_slice(&now.to_be_bytes());
        nonce[TIME..TIME + RANDOM].copy_from_slice(&rand::random::<[u8; RANDOM]>());
        let tag = self.tag(&nonce[..TIME + RANDOM], job, worker);
        nonce[TIME + RANDOM..].copy_from_slice(&tag);
        Nonce::from(nonce)
    }

    /// Checks that `nonce` was issued by this service for `job` and `worker` at most
    /// `valid_s` seconds before `now`; returns its issue time, or why not.
    pub fn check(&self, nonce: &Nonce, job: &Digest, worker: &Name, now: u64, valid_s: u64) -> Result<u64, String> {
        let raw = nonce.as_bytes();
        if raw.len() != TIME + RANDOM + TAG {
            return Err("the nonce is unknown: not one this service issued".into());
        }
        let (body, tag) = raw.split_at(TIME + RANDOM);
        let expected = self.tag(body, job, worker);
        if !constant_time_eq(&expected, tag) {
            return Err("the nonce is unknown, or was issued for another job or worker".into());
        }
        let mut t = [0u8; TIME];
        t.copy_from_slice(&body[..TIME]);
        let issued = u64::from_be_bytes(t);
        if now > issued.saturating_add(valid_s) || issued > now.saturating_add(5) {
            return Err(format!("the nonce is stale: issued at {issued}, valid for {valid_s} s"));
        }
        Ok(issued)
    }
}

/// Whether `a` and `b` are equal, in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_checks_only_for_its_job_worker_and_window() {
        let n = NonceIssuer::new(b"k");
        let (job, w) = (Digest::of(b"job"), Name::new("gpu-1").unwrap());
        let nonce = n.issue(&job, &w, 1000);
        assert_eq!(n.check(&nonce, &job, &w, 1030, 60), Ok(1000));
        assert!(n.check(&nonce, &job, &w, 1061, 60).unwrap_err().contains("stale"));
        assert!(n.check(&nonce, &Digest::of(b"other"), &w, 1030, 60).is_err());
        assert!(n.check(&nonce, &job, &Name::new("gpu-2").unwrap(), 1030, 60).is_err());
        assert!(NonceIssuer::new(b"other key").check(&nonce, &job, &w, 1030, 60).is_err());
        let mut forged = nonce.as_bytes().to_vec();
        forged[0..8].copy_from_slice(&2000u64.to_be_bytes());
        assert!(n.check(&Nonce::new(forged).unwrap(), &job, &w, 2010, 60).is_err());
        assert!(n.check(&Nonce::from([1u8; 4]), &job, &w, 1030, 60).is_err());
    }
}
