//! `perun serve`: run the trust service, configured by defaults < a TOML file
//! (`--config`) < environment < flags, validated before anything starts (the layering of
//! rust-keylime's agent configuration).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Args;
use perun_trust::store::postgres::StoreTls;
use perun_trust::{AnyStore, Clock, ServiceKeys, Trust, TrustConfig};
use serde::{Deserialize, Serialize};

/// Arguments of `perun serve`. Each setting comes from, in rising order: its default,
/// the `--config` file, its environment variable (where it has one), the flag.
#[derive(Args)]
pub struct ServeArgs {
    /// A TOML file of settings (the keys are the flags' names with `_` for `-`, `hosts`
    /// for `--host`, and `[limits]`; see `deploy/perun.toml`). Unknown keys are refused.
    /// `/metrics` is turned on by the environment only (PERUN_METRICS_TOKEN).
    #[arg(long, env = "PERUN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Folder of the service's state: `perun.db` (SQLite) and `keys/` (mode 0600), unless
    /// `--store` and `--keys` put them elsewhere. Default: `perun-trust`.
    #[arg(long)]
    pub data: Option<PathBuf>,
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
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub store_plaintext: Option<bool>,
    /// PostgreSQL connections this process keeps, at most (default 8).
    #[arg(long)]
    pub store_connections: Option<u32>,
    /// Folder of the service's keys (TLS, audit signing, key wrapping), shared by every
    /// replica of one service. Default: `DATA/keys`, made on first start; a folder given
    /// here must hold keys already (see `--make-keys`).
    #[arg(long, env = "PERUN_KEYS")]
    pub keys: Option<PathBuf>,
    /// Make the service's keys in `--keys` (or `DATA/keys`), print their fingerprints,
    /// and exit: do it once, then give every replica a copy.
    #[arg(long)]
    pub make_keys: bool,
    /// Address to listen on (TLS). Default: `127.0.0.1:7443`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Extra host names or addresses for the service's certificate.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Runtime threads (default 2).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the settings in force (defaults, file, environment and flags merged; no
    /// secret shown) and exit without starting.
    #[arg(long)]
    pub print_config: bool,
    /// Development only: registrations take effect at once, without admission (off by
    /// default: the operator admits each one with `--admit`, or a quorum of members).
    #[arg(long, env = "PERUN_OPEN_REGISTRATION", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub open_registration: Option<bool>,
    /// Members' votes (`perun id admit`) that admit a pending registration; 0 (the
    /// default): only the operator admits.
    #[arg(long)]
    pub admission_quorum: Option<u32>,
    /// As the operator, admit the pending registration NAME (on this service's store and
    /// keys: the same --data, or --store and --keys) and exit; needs --fingerprint.
    #[arg(long, value_name = "NAME", requires = "fingerprint")]
    pub admit: Option<perun_core::Name>,
    /// With --admit: the key fingerprint the applicant gave you (its `perun id show NAME`
    /// prints it); a registration under that name with another key is not admitted.
    #[arg(long, value_name = "KEY")]
    pub fingerprint: Option<String>,
    /// As the operator, reject (remove) the pending registration NAME and exit.
    #[arg(long, value_name = "NAME")]
    pub reject: Option<perun_core::Name>,
    /// List the registrations awaiting admission (name, key fingerprint, roles) and exit.
    #[arg(long)]
    pub applications: bool,
}

/// The settings of `perun serve` as a file holds them: every key optional, none unknown.
#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// See `--data`.
    pub data: Option<PathBuf>,
    /// See `--store`. A URL with a password belongs in `PERUN_STORE`, not in a file.
    pub store: Option<String>,
    /// See `--store-ca`.
    pub store_ca: Option<PathBuf>,
    /// See `--store-plaintext`.
    pub store_plaintext: Option<bool>,
    /// See `--store-connections`.
    pub store_connections: Option<u32>,
    /// See `--keys`.
    pub keys: Option<PathBuf>,
    /// See `--listen`.
    pub listen: Option<SocketAddr>,
    /// See `--host`.
    pub hosts: Option<Vec<String>>,
    /// See `--threads`.
    pub threads: Option<usize>,
    /// See `--open-registration`.
    pub open_registration: Option<bool>,
    /// See `--admission-quorum`.
    pub admission_quorum: Option<u32>,
    /// The release rule's clocks and the service's rate limits.
    pub limits: Option<Limits>,
}

/// `[limits]`: the intervals and rates of [`TrustConfig`], each optional.
#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Seconds an attestation nonce stays valid (10 to 600; default 60).
    pub nonce_valid_s: Option<u64>,
    /// Seconds a credential challenge stays valid (10 to 3600; default 300).
    pub challenge_valid_s: Option<u64>,
    /// Extra seconds past twice a job's attestation interval before a missed attestation
    /// revokes it (0 to 600; default 5).
    pub attestation_grace_s: Option<u64>,
    /// Refusals of anonymous requests audited per minute (1 to 10000; default 60).
    pub anonymous_audits_per_minute: Option<u32>,
}

/// The settings in force, merged and validated.
#[derive(Serialize)]
pub struct Settings {
    data: PathBuf,
    #[serde(serialize_with = "redacted")]
    store: Option<String>,
    store_ca: Option<PathBuf>,
    store_plaintext: bool,
    store_connections: u32,
    keys: Option<PathBuf>,
    listen: SocketAddr,
    hosts: Vec<String>,
    threads: usize,
    open_registration: bool,
    admission_quorum: u32,
    #[serde(rename = "limits", serialize_with = "limits_of")]
    trust: TrustConfig,
}

/// `[limits]` as `--print-config` shows it: the intervals and rates in force (the
/// metrics token is never printed).
fn limits_of<S: serde::Serializer>(t: &TrustConfig, s: S) -> Result<S::Ok, S::Error> {
    Limits {
        nonce_valid_s: Some(t.nonce_valid_s),
        challenge_valid_s: Some(t.challenge_valid_s),
        attestation_grace_s: Some(t.attestation_grace_s),
        anonymous_audits_per_minute: Some(t.anonymous_audits_per_minute),
    }
    .serialize(s)
}

/// A store as `--print-config` shows it: a SQLite path as it is; a PostgreSQL URL (any
/// form, `key=value` too) as user, hosts, ports and database only, never its password.
fn redacted<S: serde::Serializer>(store: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    use perun_trust::store::postgres::{describe, parse_url};
    match store {
        Some(spec) if perun_trust::AnyStore::is_postgres(spec) => match parse_url(spec) {
            Ok(config) => s.serialize_some(&format!("{} (password not shown)", describe(&config))),
            Err(_) => s.serialize_some("a PostgreSQL URL that does not parse (not shown: it may hold a password)"),
        },
        Some(path) => s.serialize_some(path),
        None => s.serialize_none(),
    }
}

fn within<T: PartialOrd + std::fmt::Display + Copy>(name: &str, v: T, lo: T, hi: T) -> Result<T> {
    anyhow::ensure!(v >= lo && v <= hi, "{name} = {v} is out of range: give {lo} to {hi}");
    Ok(v)
}

impl Settings {
    /// Defaults < `file` < environment and flags (clap has already put the environment
    /// under the flags in `a`), validated.
    pub fn merge(a: &ServeArgs, file: ServeConfig) -> Result<Self> {
        let l = file.limits.unwrap_or_default();
        let d = TrustConfig::default();
        let mut trust = TrustConfig {
            nonce_valid_s: within("limits.nonce_valid_s", l.nonce_valid_s.unwrap_or(d.nonce_valid_s), 10, 600)?,
            challenge_valid_s: within(
                "limits.challenge_valid_s",
                l.challenge_valid_s.unwrap_or(d.challenge_valid_s),
                10,
                3600,
            )?,
            attestation_grace_s: within(
                "limits.attestation_grace_s",
                l.attestation_grace_s.unwrap_or(d.attestation_grace_s),
                0,
                600,
            )?,
            anonymous_audits_per_minute: within(
                "limits.anonymous_audits_per_minute",
                l.anonymous_audits_per_minute.unwrap_or(d.anonymous_audits_per_minute),
                1,
                10_000,
            )?,
            metrics_token: None,
            open_registration: a.open_registration.or(file.open_registration).unwrap_or(false),
            admission_quorum: within(
                "admission_quorum",
                a.admission_quorum.or(file.admission_quorum).unwrap_or(0),
                0,
                64,
            )?,
        };
        if let Ok(token) = std::env::var("PERUN_METRICS_TOKEN") {
            anyhow::ensure!(
                token.len() >= 16,
                "PERUN_METRICS_TOKEN must be at least 16 characters (e.g. `openssl rand -hex 16`), or unset to turn /metrics off"
            );
            trust.metrics_token = Some(perun_core::Digest::of(token.as_bytes()));
        }
        let threads = a.threads.or(file.threads).unwrap_or(2);
        let store_connections =
            a.store_connections.or(file.store_connections).unwrap_or(perun_trust::store::postgres::DEFAULT_CONNECTIONS);
        Ok(Self {
            data: a.data.clone().or(file.data).unwrap_or_else(|| PathBuf::from("perun-trust")),
            store: a.store.clone().or(file.store),
            store_ca: a.store_ca.clone().or(file.store_ca),
            store_plaintext: a.store_plaintext.or(file.store_plaintext).unwrap_or(false),
            store_connections: within("store_connections", store_connections, 1, 1024)?,
            keys: a.keys.clone().or(file.keys),
            listen: a.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7443))),
            hosts: if a.hosts.is_empty() { file.hosts.unwrap_or_default() } else { a.hosts.clone() },
            threads: within("threads", threads, 1, 256)?,
            open_registration: trust.open_registration,
            admission_quorum: trust.admission_quorum,
            trust,
        })
    }
}

impl Settings {
    /// Says, on stderr, where the settings are weaker than the defaults: an operator
    /// may mean it, but nobody should find out from an incident.
    fn warn_where_weaker(&self) {
        let d = TrustConfig::default();
        let mut weaker = Vec::new();
        if self.store_plaintext {
            weaker.push("store_plaintext: the store is reached without TLS".to_owned());
        }
        if self.trust.open_registration {
            weaker.push(
                "open_registration: anyone who reaches the service becomes a member with the roles it asks for \
                 (development only)"
                    .to_owned(),
            );
        }
        if self.trust.nonce_valid_s > d.nonce_valid_s {
            weaker.push(format!("limits.nonce_valid_s = {} (default {})", self.trust.nonce_valid_s, d.nonce_valid_s));
        }
        if self.trust.challenge_valid_s > d.challenge_valid_s {
            weaker.push(format!(
                "limits.challenge_valid_s = {} (default {})",
                self.trust.challenge_valid_s, d.challenge_valid_s
            ));
        }
        if self.trust.attestation_grace_s > d.attestation_grace_s {
            weaker.push(format!(
                "limits.attestation_grace_s = {} (default {})",
                self.trust.attestation_grace_s, d.attestation_grace_s
            ));
        }
        for w in weaker {
            eprintln!("warning: weaker than the default: {w}");
        }
    }
}

/// Reads the `--config` file, if one was given.
fn load_config(path: Option<&Path>) -> Result<ServeConfig> {
    let Some(path) = path else { return Ok(ServeConfig::default()) };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading the configuration {}", path.display()))?;
    let config: ServeConfig =
        toml::from_str(&text).with_context(|| format!("{} is not a perun serve configuration", path.display()))?;
    if let Some(store) = config.store.as_deref().filter(|s| perun_trust::AnyStore::is_postgres(s)) {
        let has_password = perun_trust::store::postgres::parse_url(store).is_ok_and(|c| c.get_password().is_some());
        anyhow::ensure!(
            !has_password,
            "{}: `store` holds a password; give the URL in PERUN_STORE instead (a file is read by more than this \
             service, and copied)",
            path.display()
        );
    }
    Ok(config)
}

/// Runs the service until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> Result<()> {
    let a = Settings::merge(&args, load_config(args.config.as_deref())?)?;
    if args.print_config {
        print!("{}", toml::to_string(&a).context("printing the settings")?);
        let metrics = if a.trust.metrics_token.is_some() { "on (PERUN_METRICS_TOKEN set)" } else { "off" };
        println!("# /metrics: {metrics}");
        return Ok(());
    }
    a.warn_where_weaker();
    let keys_dir = a.keys.clone().unwrap_or_else(|| a.data.join("keys"));
    if args.make_keys {
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
    let trust = Arc::new(Trust::new(store, keys, Clock::System, a.trust));
    // Replicas on one database must be one service: refuse keys other than the store's.
    trust.bind_identity()?;
    if let Some(name) = &args.admit {
        let fingerprint = args.fingerprint.as_deref().context("--admit needs --fingerprint")?;
        let r = trust.admit(name, fingerprint)?;
        println!("{}", r.message);
        return Ok(());
    }
    if let Some(name) = &args.reject {
        trust.reject(name)?;
        println!("the registration of `{name}` is rejected: removed");
        return Ok(());
    }
    if args.applications {
        let list = trust.applications()?;
        if list.is_empty() {
            println!("no registration awaits admission");
        }
        for a in &list {
            println!("{}", crate::cmd::remote::application_line(a));
        }
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let listen = a.listen;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}: is another service there?"))?;
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn args(a: &[&str]) -> ServeArgs {
        Cli::parse_from(std::iter::once("serve").chain(a.iter().copied())).serve
    }

    fn file(text: &str) -> Result<ServeConfig> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("perun.toml");
        std::fs::write(&p, text)?;
        load_config(Some(&p))
    }

    #[test]
    fn flags_override_the_file_which_overrides_the_defaults() {
        let none = Settings::merge(&args(&[]), ServeConfig::default()).unwrap();
        assert_eq!((none.listen.port(), none.threads, none.trust.nonce_valid_s), (7443, 2, 60));
        assert_eq!(none.data, PathBuf::from("perun-trust"));

        let f = "listen = \"127.0.0.1:9000\"\nthreads = 4\ndata = \"/srv/perun\"\n[limits]\nnonce_valid_s = 30\n";
        let from_file = Settings::merge(&args(&[]), file(f).unwrap()).unwrap();
        assert_eq!((from_file.listen.port(), from_file.threads, from_file.trust.nonce_valid_s), (9000, 4, 30));
        assert_eq!(from_file.data, PathBuf::from("/srv/perun"));

        let flagged =
            Settings::merge(&args(&["--listen", "127.0.0.1:9100", "--threads", "3"]), file(f).unwrap()).unwrap();
        assert_eq!((flagged.listen.port(), flagged.threads, flagged.trust.nonce_valid_s), (9100, 3, 30));
    }

    #[test]
    fn unknown_keys_and_values_out_of_range_are_refused_naming_them() {
        let e = file("listen = \"127.0.0.1:9000\"\nlisten_port = 1\n").err().unwrap();
        assert!(format!("{e:#}").contains("listen_port"), "{e:#}");
        let e = file("[limits]\nnonce_valid = 1\n").err().unwrap();
        assert!(format!("{e:#}").contains("nonce_valid"), "{e:#}");
        let e = Settings::merge(&args(&[]), file("[limits]\nnonce_valid_s = 0\n").unwrap()).err().unwrap();
        assert!(e.to_string().contains("limits.nonce_valid_s = 0 is out of range"), "{e}");
        let e = Settings::merge(&args(&["--threads", "0"]), ServeConfig::default()).err().unwrap();
        assert!(e.to_string().contains("threads = 0"), "{e}");
    }

    #[test]
    fn the_printed_settings_hide_a_store_password() {
        for url in [
            "postgres://perun:s3cret@db/perun",
            "postgres://perun@db/perun?password=s3cret",
            "host=db user=perun password=s3cret dbname=perun",
        ] {
            let s = Settings::merge(&args(&["--store", url]), ServeConfig::default()).unwrap();
            let shown = toml::to_string(&s).unwrap();
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("postgres://perun@db") && shown.contains("/perun (password not shown)"), "{shown}");
        }
    }

    #[test]
    fn a_password_in_the_file_is_refused_and_a_flag_turns_plaintext_off() {
        let e = file("store = \"postgres://perun:s3cret@db/perun\"\n").err().unwrap();
        assert!(format!("{e:#}").contains("PERUN_STORE"), "{e:#}");
        let f = || file("store_plaintext = true\n").unwrap();
        assert!(Settings::merge(&args(&[]), f()).unwrap().store_plaintext);
        assert!(!Settings::merge(&args(&["--store-plaintext=false"]), f()).unwrap().store_plaintext);
        assert!(Settings::merge(&args(&["--store-plaintext"]), ServeConfig::default()).unwrap().store_plaintext);
    }
}
