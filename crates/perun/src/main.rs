//! `perun`: confidential multi-party training and inference.
//!
//! One binary with a subcommand per stakeholder task, over the Perun library crates.

#![forbid(unsafe_code)]

mod cmd;
mod embedded;
mod home;
mod ui;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Perun: train and serve one model together without showing each other your data.
#[derive(Parser)]
#[command(name = "perun", version, about, long_about = None)]
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
    Demo(cmd::demo::DemoArgs),
    /// Run the trust service.
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
    #[command(subcommand)]
    Enclave(cmd::enclave::EnclaveCmd),
    /// Private predictions from a serving enclave whose evidence you verify.
    Predict(cmd::enclave::PredictArgs),
    /// Benchmarks, each printed next to its baseline.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo tells its own story; the in-process service's warnings would repeat it.
    let default = match cli.command {
        Command::Demo(_) | Command::Bench(_) => "error",
        Command::Serve(_) | Command::Enclave(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PERUN_LOG").unwrap_or_else(|_| default.into()))
        .with_writer(std::io::stderr)
        .init();
    // A command whose output is piped into `head` ends quietly when the pipe closes, as
    // Unix tools do (Rust ignores SIGPIPE, and println! would panic on the closed pipe).
    // Services keep going instead: they write with errors ignored.
    if !matches!(cli.command, Command::Serve(_) | Command::Worker(_) | Command::Enclave(_)) {
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
        Command::Demo(a) => cmd::demo::run(a),
        Command::Bench(c) => cmd::bench::run(c),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Remote(c) => cmd::remote::remote(c, &home),
        Command::Asset(c) => cmd::remote::asset(c, &home),
        Command::Job(c) => cmd::remote::job(c, &home),
        Command::Receipt(c) => cmd::outputs::receipt_cmd(c, &home),
        Command::Worker(c) => cmd::remote::worker(c, &home),
        Command::Audit(c) => cmd::remote::audit(c, &home),
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
