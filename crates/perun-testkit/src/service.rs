//! The trust service in-process on loopback: the real server (TLS, the `/v1` API) over
//! a store the caller picks, with a clock the test moves.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use perun_client::{Caller, Client};
use perun_core::Digest;
use perun_trust::server::Running;
use perun_trust::store::Store;
use perun_trust::{Clock, ServiceKeys, SqliteStore, Trust, TrustConfig};

use crate::TestkitError;

/// A running in-process trust service.
pub struct InProcess<S: Store> {
    /// Its clock, in Unix seconds, for a [`Clock::Manual`] service (moved by the test);
    /// `None` for one on the system clock.
    pub clock: Option<Arc<AtomicU64>>,
    /// The service itself (a test reads its store through it).
    pub trust: Arc<Trust<S>>,
    /// Its server on `127.0.0.1` (stopped on drop).
    pub server: Running,
    /// An anonymous client pinned to its certificate.
    pub anon: Client,
    /// Its TLS certificate's fingerprint.
    pub fingerprint: Digest,
    /// The folder of its keys, when the kit made one (removed on drop).
    _keys: Option<tempfile::TempDir>,
}

impl InProcess<SqliteStore> {
    /// A service on an in-memory SQLite store with keys in a fresh temporary folder, its
    /// clock at `now` (Unix seconds). Nothing it holds outlives it.
    pub fn in_memory(now: u64) -> Result<Self, TestkitError> {
        let dir = tempfile::tempdir()?;
        let clock = Clock::Manual(Arc::new(AtomicU64::new(now)));
        let mut s = Self::start(SqliteStore::in_memory()?, &dir.path().join("keys"), clock, TrustConfig::default())?;
        s._keys = Some(dir);
        Ok(s)
    }
}

impl<S: Store> InProcess<S> {
    /// A service on `store`, with the keys in `keys_dir` (made there on first start),
    /// on `clock`, bound to the store's identity, served on an ephemeral loopback port.
    pub fn start(store: S, keys_dir: &Path, clock: Clock, config: TrustConfig) -> Result<Self, TestkitError> {
        let keys = ServiceKeys::load_or_create(keys_dir, &[])?;
        let fingerprint = keys.tls_fingerprint();
        let manual = match &clock {
            Clock::Manual(c) => Some(c.clone()),
            _ => None,
        };
        let trust = Arc::new(Trust::new(store, keys, clock, config));
        trust.bind_identity()?;
        let server = Running::start(trust.clone(), SocketAddr::from(([127, 0, 0, 1], 0)), 2)?;
        let anon = Client::new(&server.url(), fingerprint, Caller::Anonymous)?;
        Ok(Self { clock: manual, trust, server, anon, fingerprint, _keys: None })
    }

    /// The service, its server and its anonymous client, for a caller that keeps them
    /// in a world of its own (the kit's temporary key folder, if any, is removed).
    pub fn into_parts(self) -> (Arc<Trust<S>>, Running, Client) {
        (self.trust, self.server, self.anon)
    }

    /// Moves a [`Clock::Manual`] service's clock forward by `s` seconds (no effect on the
    /// system clock).
    pub fn advance(&self, s: u64) {
        if let Some(c) = &self.clock {
            c.fetch_add(s, std::sync::atomic::Ordering::SeqCst);
        }
    }
}
