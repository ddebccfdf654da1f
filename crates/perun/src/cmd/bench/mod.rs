//! `perun bench`: measurements printed next to their baselines.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

mod attest;
mod data;
mod dp;
mod measure;
mod overhead;
mod seal;
mod tee;
mod train;
mod trust;

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCmd {
    /// Sealing and opening throughput against the `age` tool on the same file.
    Seal {
        /// Asset size in MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: u64,
        /// Folder for the temporary files (default: the system temp folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Timed repetitions (the best is reported).
        #[arg(long, default_value_t = 3)]
        runs: u32,
    },
    /// Attestation: IMA replay of a long log, incremental re-attestation, and quote
    /// verification next to `tpm2_checkquote`.
    Attest {
        /// Entries in the synthetic IMA log.
        #[arg(long, default_value_t = 100_000)]
        entries: usize,
        /// Entries appended before the incremental round.
        #[arg(long, default_value_t = 100)]
        incremental: usize,
        /// Quote verifications timed.
        #[arg(long, default_value_t = 1000)]
        quotes: usize,
    },
    /// The trust service under load (loopback): verified attestations per second and
    /// latency, with simulated workers each on its own software TPM and IMA log.
    Trust {
        /// Simulated workers (one job each).
        #[arg(long, default_value_t = 1000)]
        workers: usize,
        /// Re-attestation rounds per worker.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Client threads.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Service runtime threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// PostgreSQL database for the replica rows (default: a local cluster this
        /// benchmark starts, where PostgreSQL is installed).
        #[arg(long)]
        postgres: Option<String>,
        /// Only the SQLite row.
        #[arg(long)]
        sqlite_only: bool,
    },
    /// Security overhead: the same training job run by `perun train`'s engine with no
    /// protection, and through the whole attested flow (trust service, swtpm, worker),
    /// on a generated CIFAR-10-shaped data set; per phase and as a ratio.
    Overhead {
        /// Images (3x32x32) in the generated data set (50,000 for CIFAR-10's size).
        #[arg(long, default_value_t = 2000)]
        samples: usize,
        /// Epochs.
        #[arg(long, default_value_t = 1)]
        epochs: usize,
        #[command(flatten)]
        compute: crate::cmd::train::ComputeArgs,
    },
    /// Private predictions through `perun enclave serve` (sim TEE) next to the same model
    /// in-process with no protection: predictions/s and p50/p99 latency.
    Predict {
        /// Timed requests per configuration.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Rows per request in the batched configuration.
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// Differential privacy's cost on the breast-cancer data: held-out accuracy at
    /// epsilon 0.5, 1, 3, 8 and without DP, and DP-SGD's time per epoch against plain
    /// training.
    Dp {
        /// Trainings per row (accuracy is their mean).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Epochs (default: the model spec's).
        #[arg(long)]
        epochs: Option<usize>,
        /// Batch size, the expected size of a Poisson batch under DP (default: the spec's).
        #[arg(long)]
        batch: Option<usize>,
        /// Learning rate (default: the spec's).
        #[arg(long)]
        lr: Option<f64>,
        #[command(flatten)]
        compute: crate::cmd::train::ComputeArgs,
    },
    /// Time per training sample of one job in `tee` mode (sim TEE) and in `attested` mode.
    TeeTrain {
        /// Epochs of the digits CNN.
        #[arg(long, default_value_t = 3)]
        epochs: usize,
        /// Where the `attested` job trains (`gpu`: against the `tee` job on the host's
        /// CPU cores, the fastest a TEE-only run could be); the `tee` job is on the CPU.
        #[command(flatten)]
        compute: crate::cmd::train::ComputeArgs,
    },
    /// Training images/s of the CIFAR-10-shaped CNN on each engine, next to PyTorch on
    /// the same model, data shape, batch and thread count (when PyTorch is installed).
    Train {
        /// Timed steps.
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Batch size (default: the model's, 64).
        #[arg(long)]
        batch: Option<usize>,
        /// Rounds, each engine and PyTorch in turn; medians are compared.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// `--device cpu` (default): every engine this build carries, or the one
        /// `--engine` names; `--device gpu`: LibTorch on CUDA against PyTorch on CUDA.
        #[command(flatten)]
        compute: crate::cmd::train::ComputeArgs,
        /// Python interpreter with torch (default: $PERUN_PYTHON, else python3).
        #[arg(long)]
        python: Option<String>,
    },
}

/// Runs a benchmark.
pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Seal { size_mib, dir, runs } => seal::run(size_mib, dir.as_deref(), runs.max(1)),
        BenchCmd::Attest { entries, incremental, quotes } => {
            attest::run(entries.max(1), incremental.max(1), quotes.max(1))
        }
        BenchCmd::Train { steps, batch, rounds, compute, python } => {
            train::run(steps.max(1), batch, rounds.max(1), compute, python)
        }
        BenchCmd::Overhead { samples, epochs, compute } => {
            overhead::run(samples.max(10), epochs.max(1), compute.compute()?)
        }
        BenchCmd::Predict { requests, batch } => tee::predict(requests.max(1), batch),
        BenchCmd::Dp { repeats, epochs, batch, lr, compute } => {
            dp::run(repeats.max(1), epochs, batch, lr, compute.compute()?)
        }
        BenchCmd::TeeTrain { epochs, compute } => tee::tee_train(epochs.max(1), compute.compute()?),
        BenchCmd::Trust { workers, rounds, clients, threads, postgres, sqlite_only } => {
            trust::run(workers.max(1), rounds.max(1), clients.max(1), threads.max(1), postgres, sqlite_only)
        }
    }
}
