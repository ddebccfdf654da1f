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
/// Connections one remote IP address may hold at once, so that no single peer holds all
/// [`MAX_CONNECTIONS`]; loopback peers (this host's own tools, a local proxy) are not
/// counted. Past it, the new connection is closed at once.
pub const MAX_CONNECTIONS_PER_PEER: usize = 256;
/// Seconds a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Seconds a client has to send a request's headers, also while a kept-alive connection
/// waits for its next request (clients close idle connections sooner).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `trust` on `listener` until `shutdown` completes.
///
/// No anonymous peer can hold the service: at most [`MAX_CONNECTIONS`] connections at
/// once and [`MAX_CONNECTIONS_PER_PEER`] from one remote address, a handshake within 10 s, headers within 30 s, a body within the route's time
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
    let per_peer = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
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
        let Some(peer_slot) = PeerSlot::take(&per_peer, peer.ip()) else {
            tracing::debug!(%peer, "closed: the peer holds {MAX_CONNECTIONS_PER_PEER} connections already");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(crate::api::PeerAddr(peer))));
        tokio::spawn(async move {
            let _slot = (slot, peer_slot);
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

/// Connections held per remote IP address.
type PeerCounts = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// One connection counted against its peer's [`MAX_CONNECTIONS_PER_PEER`]; handed back
/// when dropped.
struct PeerSlot {
    counts: PeerCounts,
    ip: std::net::IpAddr,
}

impl PeerSlot {
    /// Counts a connection from `ip`; `None` when the peer already holds its share.
    /// Loopback peers are not counted (and always get `Some`).
    fn take(counts: &PeerCounts, ip: std::net::IpAddr) -> Option<Option<Self>> {
        if ip.is_loopback() {
            return Some(None);
        }
        let mut map = counts.lock().ok()?;
        let held = map.entry(ip).or_insert(0);
        if *held >= MAX_CONNECTIONS_PER_PEER {
            return None;
        }
        *held += 1;
        Some(Some(Self { counts: counts.clone(), ip }))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.counts.lock() {
            if let Some(held) = map.get_mut(&self.ip) {
                *held = held.saturating_sub(1);
                if *held == 0 {
                    map.remove(&self.ip);
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_peer_holds_at_most_its_share_of_connections() {
        let counts: PeerCounts = Default::default();
        let attacker: std::net::IpAddr = "203.0.113.7".parse().unwrap();
        let other: std::net::IpAddr = "198.51.100.1".parse().unwrap();
        let held: Vec<_> = (0..MAX_CONNECTIONS_PER_PEER).map(|_| PeerSlot::take(&counts, attacker).unwrap()).collect();
        assert!(PeerSlot::take(&counts, attacker).is_none(), "past the share");
        // Another peer and this host's own loopback callers are not affected.
        assert!(PeerSlot::take(&counts, other).unwrap().is_some());
        assert!(PeerSlot::take(&counts, "127.0.0.1".parse().unwrap()).unwrap().is_none());
        // A closed connection hands its count back; all closed, the peer is forgotten.
        drop(held);
        assert!(PeerSlot::take(&counts, attacker).unwrap().is_some());
        assert!(counts.lock().unwrap().is_empty());
    }
}
