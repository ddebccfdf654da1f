//! Serving the API over TLS (rustls with the *ring* provider, HTTP/1.1 with keep-alive), and the
//! once-a-second sweep that expires jobs and revokes those whose worker missed an
//! attestation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::service::Trust;
use crate::store::Store;
use crate::TrustError;

/// The TLS configuration of the service from its keys.
pub fn tls_config(cert_der: &[u8], key_der: &[u8]) -> Result<rustls::ServerConfig, TrustError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TrustError::Crypto(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert_der.to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec())),
        )
        .map_err(|e| TrustError::Crypto(format!("TLS certificate: {e}")))
}

/// Connections served at once; past it, new ones wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 2048;
/// Seconds a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Seconds a client has to send a request's headers, also while a kept-alive connection
/// waits for its next request (clients close idle connections sooner).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `trust` on `listener` until `shutdown` completes.
///
/// No anonymous peer can hold the service: at most [`MAX_CONNECTIONS`] connections at
/// once, a handshake within 10 s, headers within 30 s, a body within the route's time
/// (`crate::api`), and a failing `accept` (out of file descriptors) backs off instead of
/// spinning.
pub async fn serve<S: Store>(
    trust: Arc<Trust<S>>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), TrustError> {
    let tls = tls_config(&trust.keys().tls_cert, &trust.keys().tls_key)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let app = crate::api::router(trust.clone());
    let sweeper = {
        let trust = trust.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let t = trust.clone();
                match tokio::task::spawn_blocking(move || t.sweep()).await {
                    Ok(Err(e)) => tracing::error!(error = %e, "sweep failed"),
                    Err(e) => tracing::error!(error = %e, "sweep task failed"),
                    Ok(Ok(_)) => {}
                }
            }
        })
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Typically out of file descriptors: wait for some to close rather
                    // than spin (and log) at full speed.
                    tracing::warn!(error = %e, "accept failed; pausing 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    sweeper.abort();
    Ok(())
}

/// A service running on its own threads (for the demo, tests and benchmarks); stopped
/// when dropped.
pub struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Starts `trust` on `addr` (port 0 picks a free port) with `threads` worker threads.
    pub fn start<S: Store>(trust: Arc<Trust<S>>, addr: SocketAddr, threads: usize) -> Result<Self, TrustError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build()
            .map_err(|e| TrustError::Io(format!("starting the runtime: {e}")))?;
        let listener = rt
            .block_on(TcpListener::bind(addr))
            .map_err(|e| TrustError::Io(format!("cannot listen on {addr}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| TrustError::Io(e.to_string()))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("perun-trust".into())
            .spawn(move || {
                let r = rt.block_on(serve(trust, listener, async {
                    let _ = stopped.await;
                }));
                if let Err(e) = r {
                    tracing::error!(error = %e, "trust service stopped");
                }
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| TrustError::Io(e.to_string()))?;
        Ok(Self { addr, stop: Some(stop), thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
