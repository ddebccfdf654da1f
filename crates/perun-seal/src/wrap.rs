//! Small secrets wrapped to an `age` recipient, bound to what they were made for.
//!
//! This is how an asset owner hands its asset key to the trust service (wrapped to the
//! service's public key), how a worker hands it an output key under review, how the
//! service keeps them (still wrapped: the store never holds a plaintext key) and how it
//! hands an output key to a receiver.
//!
//! Every wrapped secret carries its [`WrapContext`] (job, asset, output, receiver) inside
//! the authenticated `age` payload, and [`unwrap`] refuses one whose context is not the
//! one the caller expects (docs/architecture.md, section 2: "a key made for one job is useless in any
//! other"). The `age` payload is ChaCha20-Poly1305 under a file key that only the
//! recipient can recover, so whoever does not hold that file key cannot make a wrapped
//! secret whose context differs from the one it was made with: copying another job's
//! wrapped key into one's own job yields a secret that names the other job, and is
//! refused before it is used.
//!
//! Plaintext layout: [`MAGIC`], the context's length (u32, big-endian), the context's
//! canonical bytes (length-prefixed fields under a label), then the secret.

use std::io::{Read as _, Write as _};

use perun_core::{AssetKind, Digest, Name};
use zeroize::Zeroizing;

use crate::SealError;

/// Largest secret [`wrap`] accepts: keys, not files.
pub const MAX_WRAPPED_SECRET: usize = 4096;

/// Largest context: a few names and digests.
const MAX_CONTEXT: usize = 1024;

/// The first bytes of every wrapped plaintext: the format's version.
pub const MAGIC: &[u8; 16] = b"perun-wrapped/2\n";

/// What a wrapped secret was made for. Two contexts are equal exactly when every field is:
/// the canonical bytes are length-prefixed, so no field can spill into the next.
#[derive(Clone, PartialEq, Eq)]
pub struct WrapContext {
    bytes: Vec<u8>,
    description: String,
}

impl WrapContext {
    fn new(label: &str, fields: &[&[u8]], description: String) -> Self {
        let mut bytes = Vec::with_capacity(64);
        for f in std::iter::once(label.as_bytes()).chain(fields.iter().copied()) {
            // Names are at most 64 bytes, digests 32, output names bounded by the wire
            // checks: a field never comes near u32::MAX.
            bytes.extend_from_slice(&u32::try_from(f.len()).unwrap_or(u32::MAX).to_be_bytes());
            bytes.extend_from_slice(f);
        }
        Self { bytes, description }
    }

    /// An asset key as its owner hands it to the service at registration: bound to the
    /// owner, the asset's name and kind and the digest of its content.
    pub fn asset_key(owner: &Name, asset: &Name, kind: AssetKind, content_digest: &Digest) -> Self {
        Self::new(
            "asset-key",
            &[
                owner.as_str().as_bytes(),
                asset.as_str().as_bytes(),
                kind.as_str().as_bytes(),
                content_digest.as_bytes(),
            ],
            format!("the key of {kind} `{asset}` of {owner} ({content_digest})"),
        )
    }

    /// An output key as the job's worker hands it to the service for the owners' review:
    /// bound to the job and the output's name.
    pub fn output_key(job: &Digest, output: &str) -> Self {
        Self::new(
            "output-key",
            &[job.as_bytes(), output.as_bytes()],
            format!("the key of output `{output}` of job {job}"),
        )
    }

    /// An output key as the service hands it to one receiver once the review released it:
    /// bound to the job, the output and the receiver.
    pub fn output_for_receiver(job: &Digest, output: &str, receiver: &Name) -> Self {
        Self::new(
            "output-key-for-receiver",
            &[job.as_bytes(), output.as_bytes(), receiver.as_str().as_bytes()],
            format!("the key of output `{output}` of job {job} for receiver {receiver}"),
        )
    }

    /// A context for a test or another protocol: `label` and fields, length-prefixed.
    pub fn other(label: &str, fields: &[&[u8]]) -> Self {
        Self::new(label, fields, format!("a `{label}` secret"))
    }

    /// The context in words, for errors (names and digests only: never a secret).
    pub fn describe(&self) -> &str {
        &self.description
    }
}

impl std::fmt::Debug for WrapContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// Encrypts `secret` (at most [`MAX_WRAPPED_SECRET`] bytes), bound to `context`, to
/// `recipient` in the `age` format.
///
/// # Errors
/// [`SealError::Encrypt`] for an oversized secret; [`SealError::Stream`] if `age` fails.
pub fn wrap(secret: &[u8], recipient: &age::x25519::Recipient, context: &WrapContext) -> Result<Vec<u8>, SealError> {
    if secret.len() > MAX_WRAPPED_SECRET {
        return Err(SealError::Encrypt(format!("a wrapped secret is at most {MAX_WRAPPED_SECRET} bytes")));
    }
    if context.bytes.len() > MAX_CONTEXT {
        return Err(SealError::Encrypt(format!("a wrap context is at most {MAX_CONTEXT} bytes")));
    }
    let encryptor = age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
    let mut plain = Zeroizing::new(Vec::with_capacity(MAGIC.len() + 4 + context.bytes.len() + secret.len()));
    plain.extend_from_slice(MAGIC);
    // At most MAX_CONTEXT (checked above).
    plain.extend_from_slice(&(context.bytes.len() as u32).to_be_bytes());
    plain.extend_from_slice(&context.bytes);
    plain.extend_from_slice(secret);
    let mut out = Vec::with_capacity(plain.len() + 256);
    let mut w = encryptor.wrap_output(&mut out).map_err(SealError::Stream)?;
    w.write_all(&plain).map_err(SealError::Stream)?;
    w.finish().map_err(SealError::Stream)?;
    Ok(out)
}

/// Decrypts a secret made by [`wrap`] with `identity`, into wiping memory, and checks that
/// it was made for `expected`.
///
/// # Errors
/// [`SealError::WrongKey`] when `identity` does not open it, [`SealError::NotSealed`] or
/// [`SealError::HeaderTampered`] for what is no intact `age` file, and
/// [`SealError::WrongContext`] when it was made for another job, asset, output or
/// receiver, or without a context (an older format). Nothing of the secret is returned
/// then.
pub fn unwrap(
    wrapped: &[u8],
    identity: &age::x25519::Identity,
    expected: &WrapContext,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let decryptor = age::Decryptor::new(wrapped).map_err(|e| SealError::NotSealed(e.to_string()))?;
    let mut r = decryptor.decrypt(std::iter::once(identity as &dyn age::Identity)).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => SealError::WrongKey,
        other => SealError::NotSealed(other.to_string()),
    })?;
    let limit = MAGIC.len() + 4 + MAX_CONTEXT + MAX_WRAPPED_SECRET;
    let mut out = Zeroizing::new(Vec::new());
    r.by_ref().take(limit as u64 + 1).read_to_end(&mut out).map_err(|_| SealError::HeaderTampered)?;
    if out.len() > limit {
        return Err(SealError::BadHeader(format!("a wrapped secret is at most {MAX_WRAPPED_SECRET} bytes")));
    }
    let wrong = || SealError::WrongContext { expected: expected.description.clone() };
    let rest = out.strip_prefix(MAGIC.as_slice()).ok_or_else(wrong)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(wrong)?;
    let len = u32::from_be_bytes(*len) as usize;
    if len != expected.bytes.len() || rest.get(..len) != Some(expected.bytes.as_slice()) {
        return Err(wrong());
    }
    Ok(Zeroizing::new(rest[len..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    #[test]
    fn round_trip_and_wrong_key() {
        let ctx = WrapContext::output_key(&Digest::of(b"job"), "model");
        let id = age::x25519::Identity::generate();
        let w = wrap(b"AGE-SECRET-KEY-1XYZ", &id.to_public(), &ctx).unwrap();
        assert_eq!(&unwrap(&w, &id, &ctx).unwrap()[..], b"AGE-SECRET-KEY-1XYZ");
        let other = age::x25519::Identity::generate();
        assert!(matches!(unwrap(&w, &other, &ctx), Err(SealError::WrongKey)));
        let mut bad = w.clone();
        let n = bad.len() - 5;
        bad[n] ^= 1;
        assert!(unwrap(&bad, &id, &ctx).is_err());
        assert!(unwrap(b"garbage", &id, &ctx).is_err());
    }

    #[test]
    fn a_secret_made_for_one_context_is_refused_in_every_other() {
        let id = age::x25519::Identity::generate();
        let (job, other_job) = (Digest::of(b"victim job"), Digest::of(b"thief job"));
        let (alice, mallory) = (name("alice"), name("mallory"));
        let made = WrapContext::output_key(&job, "model");
        let w = wrap(b"AGE-SECRET-KEY-1XYZ", &id.to_public(), &made).unwrap();
        let others = [
            WrapContext::output_key(&other_job, "model"),
            WrapContext::output_key(&job, "model2"),
            WrapContext::output_for_receiver(&job, "model", &alice),
            WrapContext::asset_key(&alice, &name("model"), AssetKind::Output, &job),
            WrapContext::other("output-key", &[job.as_bytes(), b"mod", b"el"]),
        ];
        for ctx in &others {
            assert!(matches!(unwrap(&w, &id, ctx), Err(SealError::WrongContext { .. })), "{ctx:?}");
        }
        let to_alice = WrapContext::output_for_receiver(&job, "model", &alice);
        let w = wrap(b"k", &id.to_public(), &to_alice).unwrap();
        let as_mallory = WrapContext::output_for_receiver(&job, "model", &mallory);
        assert!(matches!(unwrap(&w, &id, &as_mallory), Err(SealError::WrongContext { .. })));
        let asset = WrapContext::asset_key(&alice, &name("scans"), AssetKind::Dataset, &job);
        let w = wrap(b"k", &id.to_public(), &asset).unwrap();
        for ctx in [
            WrapContext::asset_key(&mallory, &name("scans"), AssetKind::Dataset, &job),
            WrapContext::asset_key(&alice, &name("scans2"), AssetKind::Dataset, &job),
            WrapContext::asset_key(&alice, &name("scans"), AssetKind::Model, &job),
            WrapContext::asset_key(&alice, &name("scans"), AssetKind::Dataset, &other_job),
        ] {
            assert!(matches!(unwrap(&w, &id, &ctx), Err(SealError::WrongContext { .. })), "{ctx:?}");
        }
    }

    #[test]
    fn a_secret_wrapped_without_a_context_is_refused() {
        // What Perun wrote before contexts: the bare secret in an age file.
        let id = age::x25519::Identity::generate();
        let enc = age::Encryptor::with_recipients(std::iter::once(&id.to_public() as &dyn age::Recipient)).unwrap();
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out).unwrap();
        w.write_all(b"AGE-SECRET-KEY-1XYZ").unwrap();
        w.finish().unwrap();
        let ctx = WrapContext::output_key(&Digest::of(b"job"), "model");
        assert!(matches!(unwrap(&out, &id, &ctx), Err(SealError::WrongContext { .. })));
    }
}
