//! `perun serve`: run the trust service, configured by defaults < a TOML file
//! (`--config`) < environment < flags, validated before anything starts (the layering of
//! rust-keylime's agent configuration).

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Args;
use perun_trust::settings::{Settings, SettingsLayer};
use perun_trust::store::postgres::StoreTls;
use perun_trust::{AnyStore, Clock, ServiceKeys, Trust};

/// Arguments of `perun serve`. Each setting comes from, in rising order: its default,
/// the `--config` file, its environment variable (where it has one), the flag; the
/// trust service owns their shape, defaults and checks (`perun_trust::settings`).
#[derive(Args)]
pub struct ServeArgs {
    /// A TOML file of settings (the keys are the flags' names with `_` for `-`, `hosts`
    /// for `--host`, and `[limits]`; see `deploy/perun.toml`). Unknown keys are refused.
    /// `/metrics` is turned on by the environment only (PERUN_METRICS_TOKEN).
    #[arg(long, env = "PERUN_CONFIG")]
    pub config: Option<PathBuf>,
    /// The settings as flags and environment variables.
    #[command(flatten)]
    pub settings: SettingsLayer,
    /// Make the service's keys in `--keys` (or `DATA/keys`), print their fingerprints,
    /// and exit: do it once, then give every replica a copy.
    #[arg(long)]
    pub make_keys: bool,
    /// Print the settings in force (defaults, file, environment and flags merged; no
    /// secret shown) and exit without starting.
    #[arg(long)]
    pub print_config: bool,
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

/// The settings in force: the flags and environment over the `--config` file over the
/// defaults, checked.
fn settings(args: &ServeArgs) -> Result<Settings> {
    let file = match args.config.as_deref() {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the configuration {}", path.display()))?;
            SettingsLayer::from_toml(&text).with_context(|| format!("{}", path.display()))?
        }
        None => SettingsLayer::default(),
    };
    let token = std::env::var("PERUN_METRICS_TOKEN").ok();
    Ok(Settings::resolve(args.settings.clone().over(file), token.as_deref())?)
}

/// Runs the service until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> Result<()> {
    let a = settings(&args)?;
    if args.print_config {
        print!("{}", toml::to_string(&a).context("printing the settings")?);
        let metrics = if a.trust.metrics_token.is_some() { "on (PERUN_METRICS_TOKEN set)" } else { "off" };
        println!("# /metrics: {metrics}");
        return Ok(());
    }
    for w in a.weaker_than_default() {
        eprintln!("warning: weaker than the default: {w}");
    }
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

    #[test]
    fn flags_override_the_file_and_a_flag_turns_plaintext_off() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("perun.toml");
        std::fs::write(&p, "listen = \"127.0.0.1:9000\"\nthreads = 4\nstore_plaintext = true\nhosts = [\"a\"]\n")
            .unwrap();
        let config = p.to_str().unwrap();
        let s = settings(&args(&["--config", config])).unwrap();
        assert_eq!((s.listen.port(), s.threads, s.store_plaintext, s.hosts.clone()), (9000, 4, true, vec!["a".into()]));
        let s =
            settings(&args(&["--config", config, "--threads", "3", "--store-plaintext=false", "--host", "b"])).unwrap();
        assert_eq!((s.listen.port(), s.threads, s.store_plaintext, s.hosts), (9000, 3, false, vec!["b".into()]));
        assert!(settings(&args(&["--store-plaintext"])).unwrap().store_plaintext);
        let e = settings(&args(&["--threads", "0"])).unwrap_err();
        assert!(e.to_string().contains("threads = 0"), "{e}");
        std::fs::write(&p, "listen_port = 1\n").unwrap();
        let e = settings(&args(&["--config", config])).unwrap_err();
        assert!(format!("{e:#}").contains("listen_port"), "{e:#}");
    }
}
