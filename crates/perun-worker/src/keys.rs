//! The asset keys released to a worker or an enclave: sealed by the trust service to the
//! ephemeral key bound into the accepted Evidence (docs/architecture.md, section 2), opened in memory.

use perun_core::{Digest, Name};
use perun_proto::wire::Attested;
use perun_seal::release::{release_info, EphemeralKey};
use perun_seal::AssetKey;

use crate::WorkerError;

/// The keys a job's attestation released, opened in memory.
pub struct ReleasedKeys {
    /// Asset name and its key.
    pub keys: Vec<(Name, AssetKey)>,
}

/// Opens the keys in an accepted attestation's answer with the ephemeral key whose public
/// half the Evidence bound. Each key is bound to `job` and its asset's name (HPKE info).
///
/// Errors: [`WorkerError::Seal`] for a key sealed to another key, job or asset;
/// [`WorkerError::NotAnIdentity`] for a released secret that is not an `age` identity.
pub fn open_released(job: &Digest, eph: &EphemeralKey, answer: &Attested) -> Result<ReleasedKeys, WorkerError> {
    let mut keys = Vec::new();
    for k in &answer.keys {
        let secret = eph.open(&k.sealed, &release_info(job, k.asset.as_str()))?;
        let text = std::str::from_utf8(&secret).map_err(|_| WorkerError::NotAnIdentity { asset: k.asset.clone() })?;
        keys.push((k.asset.clone(), AssetKey::parse(text)?));
    }
    Ok(ReleasedKeys { keys })
}
