//! `perun serve`: run the trust service.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Args;
use perun_trust::store::postgres::StoreTls;
use perun_trust::{AnyStore, Clock, ServiceKeys, Trust, TrustConfig};

/// Arguments of `perun serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Folder of the service's state: `perun.db` (SQLite) and `keys/` (mode 0600), unless
    /// `--store` and `--keys` put them elsewhere.
    #[arg(long, default_value = "perun-trust")]
    pub data: PathBuf,
    /// The store: a PostgreSQL URL (`postgres://user:password@host/db`: replicas share it)
    /// or a SQLite file. Default: `DATA/perun.db`. Prefer the environment variable for a
    /// URL with a password: command lines are visible to every user of the host.
    #[arg(long, env = "PERUN_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// The CA certificate(s) (PEM) that signed the PostgreSQL server's certificate: the
    /// store is then reached over TLS, the server verified. Required for a server that is
    /// not on this machine, unless --store-plaintext.
    #[arg(long, env = "PERUN_STORE_CA")]
    pub store_ca: Option<PathBuf>,
    /// Reach a PostgreSQL server on another machine without TLS (only on a network that
    /// no one but this service reaches: the store decides who may approve what).
    #[arg(long)]
    pub store_plaintext: bool,
    /// PostgreSQL connections this process keeps, at most.
    #[arg(long, default_value_t = perun_trust::store::postgres::DEFAULT_CONNECTIONS)]
    pub store_connections: u32,
    /// Folder of the service's keys (TLS, audit signing, key wrapping), shared by every
    /// replica of one service. Default: `DATA/keys`, made on first start; a folder given
    /// here must hold keys already (see `--make-keys`).
    #[arg(long, env = "PERUN_KEYS")]
    pub keys: Option<PathBuf>,
    /// Make the service's keys in `--keys` (or `DATA/keys`), print their fingerprints,
    /// and exit: do it once, then give every replica a copy.
    #[arg(long)]
    pub make_keys: bool,
    /// Address to listen on (TLS).
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub listen: SocketAddr,
    /// Extra host names or addresses for the service's certificate.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Runtime threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// Runs the service until SIGINT or SIGTERM.
pub fn run(a: ServeArgs) -> Result<()> {
    let keys_dir = a.keys.clone().unwrap_or_else(|| a.data.join("keys"));
    if a.make_keys {
        let keys = ServiceKeys::create(&keys_dir, &a.hosts)?;
        println!("service keys made in {}", keys_dir.display());
        println!("TLS fingerprint: {}", keys.tls_fingerprint());
        println!("audit key:       {}", keys.audit_key());
        return Ok(());
    }
    // Shared keys mean replicas, and replicas share a store: one started without it
    // would answer from a SQLite file of its own.
    anyhow::ensure!(
        a.keys.is_none() || a.store.is_some(),
        "--keys names the shared keys of replicas: name their store too, with --store or PERUN_STORE (for one \
         service on SQLite, use --data alone)"
    );
    // `--data` holds whatever `--keys` and `--store` do not put elsewhere.
    if a.keys.is_none() || a.store.is_none() {
        std::fs::create_dir_all(&a.data).with_context(|| format!("creating {}", a.data.display()))?;
    }
    let keys = match &a.keys {
        Some(dir) => ServiceKeys::load(dir)?,
        None => ServiceKeys::load_or_create(&keys_dir, &a.hosts)?,
    };
    let spec = match &a.store {
        Some(s) => s.clone(),
        None => a.data.join("perun.db").to_string_lossy().into_owned(),
    };
    let tls = match &a.store_ca {
        Some(ca) => StoreTls::ca_file(ca)?,
        None => StoreTls::Plaintext { allow_network: a.store_plaintext },
    };
    let store = AnyStore::open(&spec, a.store_connections, &tls)?;
    let engine = store.engine();
    let fingerprint = keys.tls_fingerprint();
    let mut config = TrustConfig::default();
    if let Ok(token) = std::env::var("PERUN_METRICS_TOKEN") {
        anyhow::ensure!(
            token.len() >= 16,
            "PERUN_METRICS_TOKEN must be at least 16 characters (e.g. `openssl rand -hex 16`), or unset to turn /metrics off"
        );
        config.metrics_token = Some(perun_core::Digest::of(token.as_bytes()));
    }
    let trust = Arc::new(Trust::new(store, keys, Clock::System, config));
    // Replicas on one database must be one service: refuse keys other than the store's.
    trust.bind_identity()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("cannot listen on {}: is another service there?", a.listen))?;
        let addr = listener.local_addr()?;
        // A service outlives whoever read its first lines: a closed stdout is no reason to
        // stop (println! would panic on it).
        let mut out = std::io::stdout();
        let _ = writeln!(out, "perun trust service listening on https://{addr}");
        let _ = writeln!(out, "TLS fingerprint: {fingerprint}");
        let others = if engine == "postgres" { " [the other replicas' URLs]" } else { "" };
        let _ = writeln!(out, "clients pin it:  perun remote add https://{addr}{others} --fingerprint {fingerprint}");
        let _ = writeln!(out, "store: {engine}");
        let _ = out.flush();
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        };
        perun_trust::server::serve(trust, listener, shutdown).await?;
        let _ = writeln!(std::io::stderr(), "perun trust service stopped");
        anyhow::Ok(())
    })
}
