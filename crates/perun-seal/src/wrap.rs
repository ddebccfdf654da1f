//! Small secrets wrapped to an `age` recipient: how an asset owner hands its asset key to
//! the trust service (wrapped to the service's public key), and how the service keeps it
//! (still wrapped: the store never holds a plaintext key).

use std::io::{Read as _, Write as _};

use zeroize::Zeroizing;

use crate::SealError;

/// Largest secret [`wrap`] accepts: keys, not files.
pub const MAX_WRAPPED_SECRET: usize = 4096;

/// Encrypts `secret` (at most [`MAX_WRAPPED_SECRET`] bytes) to `recipient` in the `age`
/// format.
pub fn wrap(secret: &[u8], recipient: &age::x25519::Recipient) -> Result<Vec<u8>, SealError> {
    if secret.len() > MAX_WRAPPED_SECRET {
        return Err(SealError::Encrypt(format!("a wrapped secret is at most {MAX_WRAPPED_SECRET} bytes")));
    }
    let encryptor = age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
    let mut out = Vec::with_capacity(secret.len() + 256);
    let mut w = encryptor.wrap_output(&mut out).map_err(SealError::Stream)?;
    w.write_all(secret).map_err(SealError::Stream)?;
    w.finish().map_err(SealError::Stream)?;
    Ok(out)
}

/// Decrypts a secret made by [`wrap`] with `identity`, into wiping memory.
pub fn unwrap(wrapped: &[u8], identity: &age::x25519::Identity) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let decryptor = age::Decryptor::new(wrapped).map_err(|e| SealError::NotSealed(e.to_string()))?;
    let mut r = decryptor.decrypt(std::iter::once(identity as &dyn age::Identity)).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => SealError::WrongKey,
        other => SealError::NotSealed(other.to_string()),
    })?;
    let mut out = Zeroizing::new(Vec::new());
    r.by_ref().take(MAX_WRAPPED_SECRET as u64 + 1).read_to_end(&mut out).map_err(|_| SealError::HeaderTampered)?;
    if out.len() > MAX_WRAPPED_SECRET {
        return Err(SealError::BadHeader(format!("a wrapped secret is at most {MAX_WRAPPED_SECRET} bytes")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let id = age::x25519::Identity::generate();
        let w = wrap(b"AGE-SECRET-KEY-1XYZ", &id.to_public()).unwrap();
        assert_eq!(&unwrap(&w, &id).unwrap()[..], b"AGE-SECRET-KEY-1XYZ");
        let other = age::x25519::Identity::generate();
        assert!(matches!(unwrap(&w, &other), Err(SealError::WrongKey)));
        let mut bad = w.clone();
        let n = bad.len() - 5;
        bad[n] ^= 1;
        assert!(unwrap(&bad, &id).is_err());
        assert!(unwrap(b"garbage", &id).is_err());
    }
}
