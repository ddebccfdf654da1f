//! The blocking client of the trust service, for the CLI, the worker and the enclave. It speaks TLS
//! only, and trusts exactly one certificate: the one whose SHA-256 fingerprint the user
//! pinned (`perun remote add URL --fingerprint sha256:...`).

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use perun_core::{Digest, Name};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::de::DeserializeOwned;
use serde::Serialize;

use perun_proto::auth::{SignedHeaders, H_WORKER};
use perun_proto::{unix_now, ApiError};

use crate::ClientError;

/// Accepts exactly the certificate with the pinned fingerprint, and checks the handshake
/// signatures with its key.
#[derive(Debug)]
struct Pinned {
    fingerprint: Option<Digest>,
    provider: Arc<CryptoProvider>,
    seen: std::sync::Mutex<Option<Digest>>,
}

/// A rustls client configuration that accepts exactly the certificate whose SHA-256
/// fingerprint is `fingerprint` (the one [`Client`] uses), for callers that speak TLS to
/// the service without HTTP, such as a test's raw connection or a relay.
///
/// # Errors
/// [`ClientError::Tls`] if the crypto provider offers no safe protocol version.
pub fn pinned_tls_config(fingerprint: Digest) -> Result<rustls::ClientConfig, ClientError> {
    tls_config(Some(fingerprint)).map(|(tls, _)| tls)
}

/// The configuration and its verifier (which records the certificate seen); `None`
/// accepts any certificate and serves only [`Client::presented_fingerprint`].
fn tls_config(fingerprint: Option<Digest>) -> Result<(rustls::ClientConfig, Arc<Pinned>), ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned { fingerprint, provider: provider.clone(), seen: Default::default() });
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    Ok((tls, verifier))
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Digest::of(end_entity.as_ref());
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(presented);
        }
        match self.fingerprint {
            None => Ok(ServerCertVerified::assertion()),
            Some(pinned) if pinned == presented => Ok(ServerCertVerified::assertion()),
            Some(_) => Err(rustls::Error::General("certificate fingerprint mismatch".into())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Who the client speaks as.
#[derive(Clone)]
pub enum Caller {
    /// Nobody (public endpoints, worker enrolment steps).
    Anonymous,
    /// A stakeholder signing each request.
    Stakeholder {
        /// Its name.
        name: Name,
        /// Its signing key.
        key: SigningKey,
    },
    /// A worker with its access token.
    Worker {
        /// Its name.
        name: Name,
        /// The activated credential.
        token: zeroize::Zeroizing<Vec<u8>>,
    },
}

/// A connection to one trust service, reached at one address or at any of its
/// replicas' (every replica presents the same pinned certificate).
#[derive(Clone)]
pub struct Client {
    bases: Arc<Vec<String>>,
    /// The replica that answered last: requests go there first.
    current: Arc<std::sync::atomic::AtomicUsize>,
    http: reqwest::blocking::Client,
    verifier: Arc<Pinned>,
    caller: Caller,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({})", self.bases.join(" "))
    }
}

impl Client {
    /// A client of the service at `base` (`https://host:port`) that trusts only the
    /// certificate with `fingerprint`.
    pub fn new(base: &str, fingerprint: Digest, caller: Caller) -> Result<Self, ClientError> {
        Self::build(&[base], Some(fingerprint), caller)
    }

    /// A client of the replicas at `bases` (one service: each must present the
    /// certificate with `fingerprint`). A request that cannot connect to one replica goes
    /// to the next (it was never sent, so nothing was done twice); one whose connection
    /// broke after it was sent fails with [`ClientError::Transport`], since it may have
    /// been done, and the caller's retry then goes to a replica that answers. The release
    /// rule's invariants hold whatever reaches which replica: each decision is made once,
    /// in the shared store.
    ///
    /// Errors: [`ClientError::Address`] for no address or one not `https://`.
    pub fn replicated<S: AsRef<str>>(bases: &[S], fingerprint: Digest, caller: Caller) -> Result<Self, ClientError> {
        Self::build(bases, Some(fingerprint), caller)
    }

    /// Connects without a pinned certificate, only to read the fingerprint the service
    /// presents (for `perun remote add` to show the user, who compares it with the one
    /// `perun serve` printed).
    pub fn presented_fingerprint(base: &str) -> Result<Digest, ClientError> {
        let c = Self::build(&[base], None, Caller::Anonymous)?;
        let _ = c.http.get(format!("{}/v1/health", c.base())).send().map_err(|e| c.transport_error(e, 0))?;
        let seen = c.verifier.seen.lock().ok().and_then(|s| *s);
        seen.ok_or_else(|| ClientError::transport("the service presented no certificate"))
    }

    fn build<S: AsRef<str>>(bases: &[S], fingerprint: Option<Digest>, caller: Caller) -> Result<Self, ClientError> {
        let bases: Vec<String> = bases.iter().map(|b| b.as_ref().trim_end_matches('/').to_owned()).collect();
        if bases.is_empty() {
            return Err(ClientError::Address("no trust service address given".into()));
        }
        if let Some(base) = bases.iter().find(|b| !b.starts_with("https://")) {
            return Err(ClientError::Address(format!("`{base}`: the trust service is reached over https:// only")));
        }
        let (tls, verifier) = tls_config(fingerprint)?;
        let http = reqwest::blocking::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(120))
            // Before the service's 30 s wait for the next request on an idle connection
            // ends: the client closes first, never racing a request against the close.
            .pool_idle_timeout(Duration::from_secs(20))
            .build()
            .map_err(ClientError::Http)?;
        Ok(Self { bases: Arc::new(bases), current: Default::default(), http, verifier, caller })
    }

    /// The same connection speaking as another caller.
    pub fn with_caller(&self, caller: Caller) -> Self {
        Self {
            bases: self.bases.clone(),
            current: self.current.clone(),
            http: self.http.clone(),
            verifier: self.verifier.clone(),
            caller,
        }
    }

    /// The base URL of the replica that answered last (the first one before any did).
    pub fn base(&self) -> &str {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len();
        &self.bases[i]
    }

    /// Every address this client tries, in order.
    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    /// Who this client speaks to: the SHA-256 fingerprint of the certificate it pinned,
    /// the only one its TLS accepts (all zeros for the unpinned client of
    /// [`Self::presented_fingerprint`], which no service has). Signed requests name it
    /// as their audience, and attestation evidence binds it
    /// (`Digest::evidence_binding`), so neither counts at another service, nor through
    /// a relay that terminated this client's TLS under a certificate of its own.
    pub fn audience(&self) -> Digest {
        self.verifier.fingerprint.unwrap_or_else(|| Digest::from_bytes([0; 32]))
    }

    /// Sends a request and decodes the JSON answer.
    pub fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(ClientError::Encode)?,
            None => Vec::new(),
        };
        self.call_raw(method, path, bytes)
    }

    /// Sends a request with a raw JSON body and decodes the JSON answer.
    pub fn call_raw<T: DeserializeOwned>(&self, method: &str, path: &str, body: Vec<u8>) -> Result<T, ClientError> {
        let m = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| ClientError::Address(format!("`{method}` is not an HTTP method")))?;
        let body = bytes::Bytes::from(body);
        let first = self.current.load(std::sync::atomic::Ordering::Relaxed);
        let mut unreachable = Vec::new();
        for i in 0..self.bases.len() {
            let at = (first + i) % self.bases.len();
            match self.request(m.clone(), &self.bases[at], method, path, &body).send() {
                Ok(resp) => {
                    self.current.store(at, std::sync::atomic::Ordering::Relaxed);
                    return Self::answer(resp);
                }
                // This replica cannot be reached: the request was never sent, so the
                // next one may decide it, from the same store. An answer lost after the
                // request went out is the caller's to retry: it may have been done.
                Err(e) if e.is_connect() => unreachable.push(self.transport_error(e, at)),
                Err(e) => return Err(self.transport_error(e, at)),
            }
        }
        match unreachable.len() {
            0 => Err(ClientError::transport("no trust service address")),
            1 => Err(unreachable.remove(0)),
            n => Err(ClientError::transport(format!(
                "none of the {n} addresses of the trust service answered: {}",
                unreachable.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            ))),
        }
    }

    /// One try of a request at `base`, signed (or authorised) for this try.
    fn request(
        &self,
        m: reqwest::Method,
        base: &str,
        method: &str,
        path: &str,
        body: &bytes::Bytes,
    ) -> reqwest::blocking::RequestBuilder {
        let mut req = self.http.request(m, format!("{base}{path}"));
        match &self.caller {
            Caller::Anonymous => {}
            Caller::Stakeholder { name, key } => {
                // The audience is the pinned certificate: a request signed for this
                // service verifies at no other.
                let sh = SignedHeaders::sign(key, name, &self.audience(), method, path, body, unix_now());
                for (k, v) in sh.pairs() {
                    req = req.header(k, v);
                }
            }
            Caller::Worker { name, token } => {
                req = req
                    .header(H_WORKER, name.as_str())
                    .header("authorization", format!("Bearer {}", hex::encode(&token[..])));
            }
        }
        if !body.is_empty() {
            // A cheap handle on the one copy of the body, whichever try this is.
            req = req.header("content-type", "application/json").body(body.clone());
        }
        req
    }

    /// Decodes an answer: its JSON, or the error its body states.
    fn answer<T: DeserializeOwned>(resp: reqwest::blocking::Response) -> Result<T, ClientError> {
        let status = resp.status().as_u16();
        let bytes = resp.bytes().map_err(|e| ClientError::Transport {
            detail: "the connection broke while the answer arrived".into(),
            source: Some(e),
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(ClientError::Decode);
        }
        match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(body) => Err(ClientError::from_body(body)),
            // A code this client does not know (a newer service), or no error body.
            Err(_) => Err(ClientError::Unexpected {
                status,
                message: serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                    .unwrap_or_else(|| "no error body".into()),
            }),
        }
    }

    fn transport_error(&self, e: reqwest::Error, at: usize) -> ClientError {
        let seen = self.verifier.seen.lock().ok().and_then(|s| *s);
        match (self.verifier.fingerprint, seen) {
            (Some(pinned), Some(presented)) if pinned != presented => {
                ClientError::CertificateMismatch { presented: presented.to_string(), pinned: pinned.to_string() }
            }
            _ => {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(": ");
                    msg.push_str(&s.to_string());
                    src = s.source();
                }
                let detail = format!("{msg} (is `perun serve` running at {}?)", self.bases[at]);
                ClientError::Transport { detail, source: Some(e) }
            }
        }
    }
}
