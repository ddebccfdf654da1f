//! Who may query a serving enclave: the serving job's receivers, each request signed.
//!
//! A prediction request carries the headers of a signed request
//! ([`perun_proto::auth::SignedHeaders`]): the receiver's name, the time, a random nonce
//! and an Ed25519 signature by the receiver's stakeholder key over
//! [`perun_proto::auth::request_digest`] with the serving job's id as the audience, so a
//! request signed for one job (or for the trust service) is no request here. The
//! enclave checks that the signer is one of the job's receivers (their keys came with
//! the claim, from the trust service), that the signature verifies, that the time is
//! within [`MAX_SKEW_S`] of its clock, and that the nonce is new. Nonces are kept in
//! memory until the request they came with could no longer pass the time check, at most
//! [`MAX_NONCES`] of them: when that many are live, requests are refused (429) rather
//! than the set grown without bound.
//!
//! The host's operator (the job's provider) is never a receiver: a serving job that
//! names it is refused at [`Receivers::for_job`].

use std::collections::{BTreeSet, HashMap, HashSet};

use ed25519_dalek::VerifyingKey;
use perun_core::{verify_digest, Digest, Name, PublicIdentity};
use perun_proto::auth::{request_digest, SignedHeaders};
use perun_proto::auth::{MAX_SKEW_S, REQUEST_CONTEXT};

/// Most request nonces remembered at once (each for at most `2 * MAX_SKEW_S` seconds).
pub const MAX_NONCES: usize = 1 << 18;

/// Why a request was not let in.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessError {
    /// The request is not signed, or its signature headers are malformed.
    #[error(
        "prediction requests must be signed by a receiver of job {job} ({why}): run `perun predict --job {job} --as NAME` with the identity the job names as a receiver"
    )]
    Unsigned {
        /// The serving job.
        job: Digest,
        /// What is missing or malformed.
        why: String,
    },
    /// The signer is not one of the job's receivers.
    #[error("`{who}` is not a receiver of job {job}: only the stakeholders the job names as receivers may query its model (see `perun job show {job}`)")]
    NotAReceiver {
        /// The claimed signer.
        who: String,
        /// The serving job.
        job: Digest,
    },
    /// The request time is too far from the enclave's clock.
    #[error("request time {time} is more than {MAX_SKEW_S} s from the enclave's clock ({now}): check the clock")]
    Skew {
        /// The request time.
        time: u64,
        /// The enclave's time.
        now: u64,
    },
    /// The nonce is not 16 to 64 hex digits.
    #[error("the request nonce must be 16 to 64 hex digits")]
    BadNonce,
    /// The signature does not verify with the receiver's key.
    #[error(
        "the request signature of `{0}` does not verify for this job (signed for another job or service, or altered)"
    )]
    BadSignature(Name),
    /// The nonce was seen before.
    #[error("replayed request: this nonce was already used; sign each request anew")]
    Replayed,
    /// Too many requests are live in the replay window.
    #[error("too many requests in the last {window} s ({MAX_NONCES}): retry later", window = 2 * MAX_SKEW_S)]
    Busy,
}

impl AccessError {
    /// The HTTP status it is answered with: 401 (not authenticated), 403 (authenticated
    /// as someone who may not query) or 429 (the replay window is full).
    pub fn status(&self) -> u16 {
        match self {
            Self::NotAReceiver { .. } => 403,
            Self::Busy => 429,
            _ => 401,
        }
    }
}

/// The receivers of a serving job, by name, with their verifying keys.
#[derive(Clone, Debug)]
pub struct Receivers {
    job: Digest,
    keys: HashMap<Name, VerifyingKey>,
}

impl Receivers {
    /// The receivers of serving job `job`: those of `identities` (as the trust service
    /// handed them with the claim) that `manifest_receivers` names. Fails if a key does
    /// not decode, if none is left (nobody could query), or if the job's `provider` (the
    /// host's operator) is among them.
    pub fn for_job(
        job: Digest,
        manifest_receivers: &[Name],
        identities: &[PublicIdentity],
        provider: &Name,
    ) -> Result<Self, String> {
        if manifest_receivers.contains(provider) {
            return Err(format!(
                "job {job} names its provider `{provider}` as a receiver: the host's operator must not query the model it hosts; propose the serving job without it"
            ));
        }
        let mut keys = HashMap::new();
        for id in identities.iter().filter(|i| manifest_receivers.contains(&i.name)) {
            let key = id.verifying_key().map_err(|e| format!("receiver `{}` of job {job}: {e}", id.name))?;
            keys.insert(id.name.clone(), key);
        }
        if let Some(missing) = manifest_receivers.iter().find(|n| !keys.contains_key(*n)) {
            return Err(format!(
                "the trust service sent no key for receiver `{missing}` of job {job}: its receivers could not be authenticated (is the trust service up to date?)"
            ));
        }
        if keys.is_empty() {
            return Err(format!("job {job} names no receivers: nobody could query it"));
        }
        Ok(Self { job, keys })
    }

    /// The serving job (the audience requests are signed for).
    pub fn job(&self) -> Digest {
        self.job
    }

    /// What can be checked before the body is read: a receiver of the job signs, at a
    /// time near `now`, with a well-formed nonce. Returns the receiver's key.
    ///
    /// Errors: [`AccessError::NotAReceiver`], [`AccessError::Skew`], [`AccessError::BadNonce`].
    pub fn precheck(&self, sh: &SignedHeaders, now: u64) -> Result<&VerifyingKey, AccessError> {
        let key = self
            .keys
            .get(&sh.identity)
            .ok_or_else(|| AccessError::NotAReceiver { who: sh.identity.to_string(), job: self.job })?;
        if sh.time.abs_diff(now) > MAX_SKEW_S {
            return Err(AccessError::Skew { time: sh.time, now });
        }
        if !(16..=64).contains(&sh.nonce.len()) || !sh.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AccessError::BadNonce);
        }
        Ok(key)
    }

    /// Checks a signed request for this job: the signer is a receiver, the time is
    /// within [`MAX_SKEW_S`] of `now`, the nonce is well formed and the signature over
    /// `method`, `path` (with query) and `body` verifies. The nonce is not recorded
    /// here: pass it to [`NonceBook::record`] once this succeeded.
    pub fn check(
        &self,
        sh: &SignedHeaders,
        method: &str,
        path: &str,
        body: &[u8],
        now: u64,
    ) -> Result<Name, AccessError> {
        let key = self.precheck(sh, now)?;
        let d = request_digest(&self.job, method, path, body, sh.time, &sh.nonce);
        verify_digest(key, REQUEST_CONTEXT, &d, &sh.signature)
            .map_err(|_| AccessError::BadSignature(sh.identity.clone()))?;
        Ok(sh.identity.clone())
    }
}

/// Reads the signed-request headers; `get` looks a header up by its (lower-case) name.
pub fn signed_headers<'a>(job: Digest, get: impl Fn(&str) -> Option<&'a str>) -> Result<SignedHeaders, AccessError> {
    SignedHeaders::from_headers(get).map_err(|why| AccessError::Unsigned { job, why })
}

/// The nonces of accepted requests, each kept until its request's time could no longer
/// pass the time check, at most [`MAX_NONCES`] (or the capacity given) at once.
#[derive(Debug)]
pub struct NonceBook {
    capacity: usize,
    seen: HashSet<[u8; 32]>,
    by_expiry: BTreeSet<(u64, [u8; 32])>,
}

impl Default for NonceBook {
    fn default() -> Self {
        Self::with_capacity(MAX_NONCES)
    }
}

impl NonceBook {
    /// A book holding at most `capacity` live nonces.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), seen: HashSet::new(), by_expiry: BTreeSet::new() }
    }

    /// Live nonces.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is live.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records the nonce of `sh` (its signer's, case-insensitive) at `now`: refused if it
    /// was seen, or if the book is full of nonces still live. Nonces whose request time
    /// is more than [`MAX_SKEW_S`] behind `now` are forgotten first: their requests
    /// fail the time check anyway.
    pub fn record(&mut self, sh: &SignedHeaders, now: u64) -> Result<(), AccessError> {
        while let Some(&(expiry, id)) = self.by_expiry.first() {
            if expiry >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&id);
        }
        // One nonce in another case is the same nonce.
        let id =
            *Digest::of_parts(&[sh.identity.as_str().as_bytes(), sh.nonce.to_ascii_lowercase().as_bytes()]).as_bytes();
        if self.seen.contains(&id) {
            return Err(AccessError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(AccessError::Busy);
        }
        // A request is let in while `now <= time + MAX_SKEW_S`; within 2 * MAX_SKEW_S
        // of when it was first seen.
        let expiry = sh.time.saturating_add(MAX_SKEW_S).min(now.saturating_add(2 * MAX_SKEW_S));
        self.seen.insert(id);
        self.by_expiry.insert((expiry, id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use perun_proto::auth::{H_SIGNATURE, H_TIME};

    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    struct Fixture {
        job: Digest,
        clinic: SigningKey,
        host: SigningKey,
        receivers: Receivers,
    }

    fn fixture() -> Fixture {
        let job = Digest::of(b"serving job");
        let (clinic, host) = (SigningKey::from_bytes(&[1; 32]), SigningKey::from_bytes(&[2; 32]));
        let age = "age1".to_owned() + &"q".repeat(58);
        let ids = [
            PublicIdentity::new(name("clinic"), &clinic.verifying_key(), age.clone()),
            PublicIdentity::new(name("tee-host"), &host.verifying_key(), age),
        ];
        let receivers = Receivers::for_job(job, &[name("clinic")], &ids, &name("tee-host")).unwrap();
        Fixture { job, clinic, host, receivers }
    }

    const NOW: u64 = 1_764_130_000;

    #[test]
    fn only_a_receivers_fresh_signature_for_this_job_passes() {
        let f = fixture();
        let body = br#"{"rows":[[1.0]]}"#;
        let sh = SignedHeaders::sign(&f.clinic, &name("clinic"), &f.job, "POST", "/v1/predict", body, NOW);
        assert_eq!(f.receivers.check(&sh, "POST", "/v1/predict", body, NOW), Ok(name("clinic")));
        assert_eq!(f.receivers.check(&sh, "POST", "/v1/predict", body, NOW + MAX_SKEW_S), Ok(name("clinic")));

        // Another body, path, or a request signed for another audience.
        let r = f.receivers.check(&sh, "POST", "/v1/predict", br#"{"rows":[[2.0]]}"#, NOW);
        assert_eq!(r, Err(AccessError::BadSignature(name("clinic"))));
        assert!(f.receivers.check(&sh, "POST", "/v1/predict?x", body, NOW).is_err());
        let other = Digest::of(b"the trust service");
        let sh2 = SignedHeaders::sign(&f.clinic, &name("clinic"), &other, "POST", "/v1/predict", body, NOW);
        assert!(matches!(f.receivers.check(&sh2, "POST", "/v1/predict", body, NOW), Err(AccessError::BadSignature(_))));

        // Signed by the host's operator, or by someone claiming the clinic's name.
        let sh3 = SignedHeaders::sign(&f.host, &name("tee-host"), &f.job, "POST", "/v1/predict", body, NOW);
        let e = f.receivers.check(&sh3, "POST", "/v1/predict", body, NOW).unwrap_err();
        assert_eq!(e.status(), 403);
        assert!(e.to_string().contains("not a receiver"), "{e}");
        let sh4 = SignedHeaders::sign(&f.host, &name("clinic"), &f.job, "POST", "/v1/predict", body, NOW);
        assert_eq!(
            f.receivers.check(&sh4, "POST", "/v1/predict", body, NOW),
            Err(AccessError::BadSignature(name("clinic")))
        );

        // Too old, too new; a nonce that is too short.
        let e = f.receivers.check(&sh, "POST", "/v1/predict", body, NOW + MAX_SKEW_S + 1).unwrap_err();
        assert!(matches!(e, AccessError::Skew { .. }) && e.status() == 401, "{e}");
        assert!(f.receivers.check(&sh, "POST", "/v1/predict", body, NOW - MAX_SKEW_S - 1).is_err());
        let mut short = sh.clone();
        short.nonce = "abcd".into();
        assert_eq!(f.receivers.check(&short, "POST", "/v1/predict", body, NOW), Err(AccessError::BadNonce));
    }

    #[test]
    fn a_job_naming_its_host_or_an_unknown_receiver_is_not_served() {
        let f = fixture();
        let age = "age1".to_owned() + &"q".repeat(58);
        let ids = [PublicIdentity::new(name("tee-host"), &f.host.verifying_key(), age)];
        let e = Receivers::for_job(f.job, &[name("tee-host")], &ids, &name("tee-host")).unwrap_err();
        assert!(e.contains("must not query"), "{e}");
        let e = Receivers::for_job(f.job, &[name("clinic")], &ids, &name("infra")).unwrap_err();
        assert!(e.contains("no key for receiver `clinic`"), "{e}");
        let e = Receivers::for_job(f.job, &[], &ids, &name("infra")).unwrap_err();
        assert!(e.contains("no receivers"), "{e}");
    }

    #[test]
    fn headers_are_required_and_parsed() {
        let f = fixture();
        let sh = SignedHeaders::sign(&f.clinic, &name("clinic"), &f.job, "POST", "/v1/predict", b"", NOW);
        let pairs = sh.pairs();
        let got = signed_headers(f.job, |n| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str())).unwrap();
        assert_eq!((got.identity, got.time, got.nonce), (sh.identity, sh.time, sh.nonce));
        let e =
            signed_headers(f.job, |n| pairs.iter().find(|(k, _)| *k == n && n != H_SIGNATURE).map(|(_, v)| v.as_str()))
                .unwrap_err();
        assert_eq!(e.status(), 401);
        assert!(e.to_string().contains("perun predict --job"), "{e}");
        let e = signed_headers(f.job, |n| if n == H_TIME { Some("soon") } else { Some("x") }).unwrap_err();
        assert!(e.to_string().contains("malformed"), "{e}");
    }

    #[test]
    fn a_nonce_is_used_once_in_any_case_and_the_book_stays_bounded() {
        let f = fixture();
        let mut book = NonceBook::with_capacity(2);
        let sign = |t| SignedHeaders::sign(&f.clinic, &name("clinic"), &f.job, "POST", "/v1/predict", b"", t);
        let a = sign(NOW);
        book.record(&a, NOW).unwrap();
        assert_eq!(book.record(&a, NOW + 1), Err(AccessError::Replayed));
        let mut upper = a.clone();
        upper.nonce = a.nonce.to_ascii_uppercase();
        assert_eq!(book.record(&upper, NOW + 1), Err(AccessError::Replayed));
        // The same nonce from another signer is another nonce.
        let mut other = a.clone();
        other.identity = name("hospital");
        book.record(&other, NOW).unwrap();
        // Full of live nonces: refused, not grown.
        let e = book.record(&sign(NOW), NOW).unwrap_err();
        assert_eq!((e.clone(), e.status()), (AccessError::Busy, 429));
        assert_eq!(book.len(), 2);
        // Once their requests are too old to pass the time check, they are forgotten.
        book.record(&sign(NOW + MAX_SKEW_S + 1), NOW + MAX_SKEW_S + 1).unwrap();
        assert_eq!(book.len(), 1);
    }
}
