//! What a worker or an enclave does with a claimed job before it trusts anything in it
//! (docs/architecture.md, section 2): check the claim against the manifest the owners
//! signed, open the keys released to its attested ephemeral key, and fetch and open each
//! sealed asset, checking its content digest against the manifest. The TPM worker's job
//! runner (`perun-worker`) and the enclave (`perun-enclave`) share it.

use std::io::Read;
use std::time::Duration;

use perun_core::{Digest, Name};
use perun_proto::wire::{AssetLocation, Attested, Claimed};
use perun_seal::release::{release_info, EphemeralKey};
use perun_seal::AssetKey;
use zeroize::Zeroizing;

/// Why a claim, a released key or an asset was refused: nothing was opened or trained.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The claim does not match the signed manifest (job id, assets, receivers), or the
    /// job cannot run as claimed.
    #[error("{what}: refusing to run it")]
    Mismatch {
        /// What differs.
        what: String,
    },
    /// No key was released for an asset of the claim.
    #[error("no key was released for {asset}")]
    NoKey {
        /// The asset.
        asset: Name,
    },
    /// An opened asset's content is not what the manifest pins.
    #[error("asset {asset} has content {got}, but the manifest pins {pinned}: refusing it")]
    ContentMismatch {
        /// The asset.
        asset: Name,
        /// SHA-256 of what opened.
        got: Digest,
        /// What the manifest pins.
        pinned: Digest,
    },
    /// A released secret is not an `age` identity.
    #[error("the key of {asset} is not an age identity")]
    NotAnIdentity {
        /// The asset.
        asset: Name,
    },
    /// A released key or a sealed asset did not open.
    #[error("{0}")]
    Seal(#[from] perun_seal::SealError),
    /// A file or a network body could not be read; `what` names it.
    #[error("{what}: {source}")]
    Io {
        /// What was being read, e.g. `reading /srv/asset.sealed`.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A sealed asset could not be fetched over http(s).
    #[error("fetching {location}: {source}")]
    Fetch {
        /// Its URL.
        location: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The TLS configuration of the fetching client could not be built.
    #[error("TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// The fetching HTTP client could not be built.
    #[error("HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// Checks a claim against the manifest it carries, whoever answered it: the job is the
/// manifest's digest (what the owners signed), and each asset to fetch is one the
/// manifest names, of its kind and content digest. The measured worker binary then cannot
/// be driven to train and vouch for inputs the owners did not approve.
///
/// Errors: [`ClaimError::Mismatch`] naming what differs.
pub fn check_claim(claimed: &Claimed) -> Result<(), ClaimError> {
    let manifest = &claimed.job.manifest;
    let digest = manifest.digest();
    if digest != claimed.job.id {
        return Err(ClaimError::Mismatch {
            what: format!("the claim names job {} but carries the manifest of job {digest}", claimed.job.id),
        });
    }
    let named: Vec<&perun_core::AssetRef> = manifest.assets().collect();
    if claimed.assets.len() != named.len() {
        return Err(ClaimError::Mismatch {
            what: format!("the claim lists {} assets, the manifest {}", claimed.assets.len(), named.len()),
        });
    }
    for a in &claimed.assets {
        let in_manifest =
            named.iter().any(|r| r.asset == a.asset && r.kind == a.kind && r.content_digest == a.content_digest);
        if !in_manifest {
            return Err(ClaimError::Mismatch {
                what: format!(
                    "asset {} ({:?}, {}) is not in the job's manifest as claimed",
                    a.asset, a.kind, a.content_digest
                ),
            });
        }
    }
    // The model is sealed to exactly the receivers the owners signed for. (Their keys
    // come from the service, which the evidence binding authenticates.)
    let receivers: Vec<&Name> = claimed.receivers.iter().map(|(n, _)| n).collect();
    if receivers.len() != manifest.receivers.len() || receivers.iter().zip(&manifest.receivers).any(|(a, b)| *a != b) {
        return Err(ClaimError::Mismatch {
            what: format!(
                "the claim names receivers [{}], the manifest [{}]",
                receivers.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", "),
                manifest.receivers.iter().map(Name::as_str).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    Ok(())
}

/// The keys a job's attestation released, opened in memory.
pub struct ReleasedKeys {
    /// Asset name and its key.
    pub keys: Vec<(Name, AssetKey)>,
}

/// Opens the keys in an accepted attestation's answer with the ephemeral key whose public
/// half the Evidence bound. Each key is bound to `job` and its asset's name (HPKE info).
///
/// Errors: [`ClaimError::Seal`] for a key sealed to another key, job or asset;
/// [`ClaimError::NotAnIdentity`] for a released secret that is not an `age` identity.
pub fn open_released(job: &Digest, eph: &EphemeralKey, answer: &Attested) -> Result<ReleasedKeys, ClaimError> {
    let mut keys = Vec::new();
    for k in &answer.keys {
        let secret = eph.open(&k.sealed, &release_info(job, k.asset.as_str()))?;
        let text = std::str::from_utf8(&secret).map_err(|_| ClaimError::NotAnIdentity { asset: k.asset.clone() })?;
        keys.push((k.asset.clone(), AssetKey::parse(text)?));
    }
    Ok(ReleasedKeys { keys })
}

/// Fetches one sealed asset and opens it in memory with its released key, checking its
/// kind and the content digest the manifest pins.
pub fn open_asset(a: &AssetLocation, keys: &[(Name, AssetKey)]) -> Result<Zeroizing<Vec<u8>>, ClaimError> {
    let key = keys
        .iter()
        .find(|(n, _)| n == &a.asset)
        .map(|(_, k)| k)
        .ok_or_else(|| ClaimError::NoKey { asset: a.asset.clone() })?;
    let (opened, plain) = if is_url(&a.location) {
        // Over the network, each chunk is authenticated as it arrives, so a body that
        // is not the sealed file (an endless one from anyone on the path) fails at its
        // first chunk instead of filling memory.
        let (reader, len) = fetch(&a.location)?;
        perun_seal::open_to_vec(reader, len, key.identity(), Some(a.kind))?
    } else {
        // A file on the worker's own disk (staged by the provider): read whole and
        // opened on every core.
        let sealed = std::fs::read(&a.location)
            .map_err(|source| ClaimError::Io { what: format!("reading {}", a.location), source })?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        perun_seal::open_in_parallel(&sealed, key.identity(), Some(a.kind), threads)?
    };
    if opened.content_digest != a.content_digest {
        return Err(ClaimError::ContentMismatch {
            asset: a.asset.clone(),
            got: opened.content_digest,
            pinned: a.content_digest,
        });
    }
    Ok(plain)
}

/// Opens a sealed asset's location: a local path, or an http(s) URL (streamed). The
/// transport needs no trust: the asset is authenticated by its encryption and its digest
/// is checked against the manifest; https uses the Mozilla roots all the same.
fn fetch(location: &str) -> Result<(Box<dyn Read>, Option<u64>), ClaimError> {
    if is_url(location) {
        let resp = http_client()?
            .get(location)
            .send()
            .and_then(|r| r.error_for_status())
            .map_err(|source| ClaimError::Fetch { location: location.to_owned(), source })?;
        let len = resp.content_length();
        return Ok((Box::new(resp), len));
    }
    let f = std::fs::File::open(location)
        .map_err(|source| ClaimError::Io { what: format!("opening {location}"), source })?;
    let len = f.metadata().ok().map(|m| m.len());
    Ok((Box::new(std::io::BufReader::new(f)), len))
}

/// Whether an asset's location is fetched over http(s) rather than read from a path.
fn is_url(location: &str) -> bool {
    location.starts_with("http://") || location.starts_with("https://")
}

/// A blocking HTTP client for public endpoints: https with the Mozilla roots (rustls,
/// ring), plain http, one hour per request.
pub fn http_client() -> Result<reqwest::blocking::Client, ClaimError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(ClaimError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
    reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(3600))
        .build()
        .map_err(ClaimError::HttpClient)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn assets_are_fetched_from_paths_and_http_urls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sealed");
        std::fs::write(&path, b"sealed bytes").unwrap();
        let (mut r, len) = fetch(&path.to_string_lossy()).unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!((got.as_slice(), len), (&b"sealed bytes"[..], Some(12)));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for answer in [
                &b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\nconnection: close\r\n\r\nsealed bytes"[..],
                &b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"[..],
            ] {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).unwrap();
                s.write_all(answer).unwrap();
            }
        });
        let (mut r, len) = fetch(&format!("http://127.0.0.1:{port}/a.sealed")).unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!((got.as_slice(), len), (&b"sealed bytes"[..], Some(12)));
        let missing = fetch(&format!("http://127.0.0.1:{port}/gone.sealed"));
        assert!(
            matches!(&missing, Err(ClaimError::Fetch { source, .. }) if source.status().map(|s| s.as_u16()) == Some(404)),
            "{:?}",
            missing.err()
        );
        server.join().unwrap();
        assert!(fetch("/no/such/file.sealed").is_err());
    }
}
