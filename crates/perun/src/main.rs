//! `perun`: confidential multi-party training and inference.
//!
//! One binary with a subcommand per stakeholder task, over the Perun library crates.

#![forbid(unsafe_code)]

mod cmd;
// The embedded data sets and specs serve the demo and the benchmarks.
#[cfg_attr(not(any(feature = "demo", feature = "bench")), allow(dead_code))]
mod embedded;
mod home;
mod ui;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `perun --version`: the version and the roles this binary was built with (README,
/// "Roles"), so an operator can tell a worker build from a full one.
static LONG_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let roles: Vec<&str> = [
        ("serve", cfg!(feature = "serve")),
        ("worker", cfg!(feature = "worker")),
        ("enclave", cfg!(feature = "enclave")),
        ("demo", cfg!(feature = "demo")),
        ("bench", cfg!(feature = "bench")),
    ]
    .into_iter()
    .filter_map(|(r, on)| on.then_some(r))
    .collect();
    let roles = if roles.is_empty() { "stakeholder commands only".to_owned() } else { roles.join(", ") };
    let mut engines = vec!["flex".to_owned()];
    if let Some(v) = perun_ml::backend::LIBTORCH_VERSION {
        let cuda = if cfg!(feature = "libtorch-cuda") { ", cpu and cuda" } else { ", cpu" };
        engines.push(format!("libtorch {v}{cuda}"));
    }
    format!("{} (roles: {roles}; engines: {})", env!("CARGO_PKG_VERSION"), engines.join(", "))
});

/// Perun: train and serve one model together without showing each other your data.
#[derive(Parser)]
#[command(name = "perun", version, long_version = LONG_VERSION.as_str(), about, long_about = None)]
struct Cli {
    /// Folder of identities and keys (default: $PERUN_HOME, else ~/.perun).
    #[arg(long, global = true, env = "PERUN_HOME")]
    home: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stakeholder identities: Ed25519 signing key and X25519 (age) key.
    #[command(subcommand)]
    Id(cmd::id::IdCmd),
    /// Import, inspect and split data sets.
    #[command(subcommand)]
    Dataset(cmd::dataset::DatasetCmd),
    /// Seal a file into a sealed asset under a fresh per-asset key.
    Seal(cmd::seal::SealArgs),
    /// Open a sealed asset with its key (the owner's own check).
    Unseal(cmd::seal::UnsealArgs),
    /// Policies: reference values for attested workers and for TEEs.
    #[command(subcommand)]
    Policy(cmd::attest::PolicyCmd),
    /// Check saved attestation evidence against a policy.
    #[command(subcommand)]
    Attest(cmd::attest::AttestCmd),
    /// Train a model locally, with no protection (the baseline).
    Train(cmd::train::TrainArgs),
    /// Evaluate trained weights on a data set.
    Eval(cmd::train::EvalArgs),
    /// Run the whole flow on one machine, on embedded data.
    #[cfg(feature = "demo")]
    Demo(cmd::demo::DemoArgs),
    /// Run the trust service.
    #[cfg(feature = "serve")]
    Serve(cmd::serve::ServeArgs),
    /// Pin the trust service to talk to.
    #[command(subcommand)]
    Remote(cmd::remote::RemoteCmd),
    /// Register sealed assets with the trust service.
    #[command(subcommand)]
    Asset(cmd::remote::AssetCmd),
    /// Propose, approve and follow jobs.
    #[command(subcommand)]
    Job(cmd::remote::JobCmd),
    /// Enrol workers (infrastructure provider).
    #[command(subcommand)]
    Worker(cmd::remote::WorkerCmd),
    /// Training receipts: verify a model against its receipt, offline.
    #[command(subcommand)]
    Receipt(cmd::outputs::ReceiptCmd),
    /// The audit log: show and verify.
    #[command(subcommand)]
    Audit(cmd::remote::AuditCmd),
    /// The `tee`-mode worker: serve a model, or train, inside a TEE.
    #[cfg(feature = "enclave")]
    #[command(subcommand)]
    Enclave(cmd::enclave::EnclaveCmd),
    /// Private predictions from a serving enclave whose evidence you verify.
    Predict(cmd::enclave::PredictArgs),
    /// Benchmarks, each printed next to its baseline.
    #[cfg(feature = "bench")]
    #[command(subcommand)]
    Bench(cmd::bench::BenchCmd),
}

impl Command {
    /// Whether it runs a long-lived service (trust service, worker, enclave), which must
    /// not stop because its stdout went away.
    fn is_service(&self) -> bool {
        match self {
            #[cfg(feature = "serve")]
            Command::Serve(_) => true,
            #[cfg(feature = "enclave")]
            Command::Enclave(_) => true,
            Command::Worker(_) => true,
            _ => false,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo tells its own story; the in-process service's warnings would repeat it.
    let default = match cli.command {
        #[cfg(feature = "demo")]
        Command::Demo(_) => "error",
        #[cfg(feature = "bench")]
        Command::Bench(_) => "error",
        #[cfg(feature = "serve")]
        Command::Serve(_) => "info",
        #[cfg(feature = "enclave")]
        Command::Enclave(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PERUN_LOG").unwrap_or_else(|_| default.into()))
        .with_writer(std::io::stderr)
        .init();
    // A command whose output is piped into `head` ends quietly when the pipe closes, as
    // Unix tools do (Rust ignores SIGPIPE, and println! would panic on the closed pipe).
    // Services keep going instead: they write with errors ignored.
    if !cli.command.is_service() {
        sigpipe::reset();
    }
    let home = home::Home::resolve(cli.home);
    let result = match cli.command {
        Command::Id(c) => cmd::id::run(c, &home),
        Command::Dataset(c) => cmd::dataset::run(c),
        Command::Seal(a) => cmd::seal::seal(a, &home),
        Command::Unseal(a) => cmd::seal::unseal(a),
        Command::Policy(c) => cmd::attest::policy(c, &home),
        Command::Attest(c) => cmd::attest::attest(c),
        Command::Train(a) => cmd::train::train(a),
        Command::Eval(a) => cmd::train::eval(a),
        #[cfg(feature = "demo")]
        Command::Demo(a) => cmd::demo::run(a),
        #[cfg(feature = "bench")]
        Command::Bench(c) => cmd::bench::run(c),
        #[cfg(feature = "serve")]
        Command::Serve(a) => cmd::serve::run(a),
        Command::Remote(c) => cmd::remote::remote(c, &home),
        Command::Asset(c) => cmd::remote::asset(c, &home),
        Command::Job(c) => cmd::remote::job(c, &home),
        Command::Receipt(c) => cmd::outputs::receipt_cmd(c, &home),
        Command::Worker(c) => cmd::remote::worker(c, &home),
        Command::Audit(c) => cmd::remote::audit(c, &home),
        #[cfg(feature = "enclave")]
        Command::Enclave(c) => cmd::enclave::run(c, &home),
        Command::Predict(a) => cmd::enclave::predict(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
