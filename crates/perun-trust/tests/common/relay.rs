//! A relay the provider runs between its worker and the trust service (the worker's
//! configuration is the provider's to write): it terminates the worker's TLS under a
//! certificate of its own and opens its own TLS to the service, so it sees, and could
//! rewrite, every request and answer, such as the receivers' keys in a claim. This one
//! passes the bytes on unchanged; what matters is where it sits.

use std::net::SocketAddr;
use std::sync::Arc;

use perun_core::Digest;
use rustls::pki_types::ServerName;

/// A running relay; stopped when dropped.
pub struct Relay {
    /// Where the worker is pointed.
    pub url: String,
    /// The relay's own certificate, which the worker is configured to pin.
    pub fingerprint: Digest,
    _rt: tokio::runtime::Runtime,
}

impl Relay {
    /// Relays to the service at `upstream` (`https://127.0.0.1:PORT`), whose certificate
    /// it pins (`service`): the relay is a genuine client of the service.
    pub fn start(upstream: &str, service: Digest) -> Self {
        let upstream: SocketAddr = upstream.trim_start_matches("https://").parse().unwrap();
        let keys = perun_trust::ServiceKeys::generate(&["127.0.0.1".into()]).unwrap();
        let fingerprint = keys.tls_fingerprint();
        let server = perun_trust::server::tls_config(&keys.tls_cert, &keys.tls_key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let connector = tokio_rustls::TlsConnector::from(Arc::new(perun_client::pinned_tls_config(service).unwrap()));
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
