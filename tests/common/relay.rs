//! A relay the provider runs between its worker and the trust service (the worker's
//! configuration is the provider's to write): it terminates the worker's TLS under a
//! certificate of its own and opens its own TLS to the service, so it sees, and could
//! rewrite, every request and answer, such as the receivers' keys in a claim. This one
//! passes the bytes on unchanged; what matters is where it sits.

use std::net::SocketAddr;
use std::sync::Arc;

use perun_core::Digest;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A running relay; stopped when dropped.
pub struct Relay {
    /// Where the worker is pointed.
    pub url: String,
    /// The relay's own certificate, which the worker is configured to pin.
    pub fingerprint: Digest,
    _rt: tokio::runtime::Runtime,
}

impl Relay {
    /// Relays to the service at `upstream` (`https://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream.trim_start_matches("https://").parse().unwrap();
        let keys = perun_trust::ServiceKeys::generate(&["127.0.0.1".into()]).unwrap();
        let fingerprint = keys.tls_fingerprint();
        let server = perun_trust::server::tls_config(&keys.tls_cert, &keys.tls_key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let connector = tokio_rustls::TlsConnector::from(Arc::new(any_certificate()));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        rt.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, connector) = (acceptor.clone(), connector.clone());
                tokio::spawn(async move {
                    let Ok(mut worker) = acceptor.accept(stream).await else { return };
                    let Ok(tcp) = tokio::net::TcpStream::connect(upstream).await else { return };
                    let Ok(name) = ServerName::try_from("localhost") else { return };
                    let Ok(mut service) = connector.connect(name, tcp).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut worker, &mut service).await;
                });
            }
        });
        Self { url, fingerprint, _rt: rt }
    }
}

/// A TLS client configuration that takes whatever certificate is presented (the
/// relay's side towards the service, and raw test clients).
pub fn any_certificate() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth()
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
