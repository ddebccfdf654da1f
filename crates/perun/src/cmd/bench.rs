//! `perun bench`: measurements printed next to their baselines.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use perun_core::AssetKind;
use perun_seal::{sealed, AssetKey};
use rand::RngCore as _;

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
        compute: super::train::ComputeArgs,
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
        compute: super::train::ComputeArgs,
    },
    /// Time per training sample of one job in `tee` mode (sim TEE) and in `attested` mode.
    TeeTrain {
        /// Epochs of the digits CNN.
        #[arg(long, default_value_t = 3)]
        epochs: usize,
        /// Where the `attested` job trains (`gpu`: against the `tee` job on the host's
        /// CPU cores, the fastest a TEE-only run could be); the `tee` job is on the CPU.
        #[command(flatten)]
        compute: super::train::ComputeArgs,
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
        compute: super::train::ComputeArgs,
        /// Python interpreter with torch (default: $PERUN_PYTHON, else python3).
        #[arg(long)]
        python: Option<String>,
    },
}

/// Runs a benchmark.
pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Seal { size_mib, dir, runs } => bench_seal(size_mib, dir.as_deref(), runs.max(1)),
        BenchCmd::Attest { entries, incremental, quotes } => {
            bench_attest(entries.max(1), incremental.max(1), quotes.max(1))
        }
        BenchCmd::Train { steps, batch, rounds, compute, python } => {
            bench_train(steps.max(1), batch, rounds.max(1), compute, python)
        }
        BenchCmd::Overhead { samples, epochs, compute } => {
            super::bench_overhead::run(samples.max(10), epochs.max(1), compute.compute()?)
        }
        BenchCmd::Predict { requests, batch } => super::bench_tee::predict(requests.max(1), batch),
        BenchCmd::Dp { repeats, epochs, batch, lr, compute } => {
            super::bench_dp::run(repeats.max(1), epochs, batch, lr, compute.compute()?)
        }
        BenchCmd::TeeTrain { epochs, compute } => super::bench_tee::tee_train(epochs.max(1), compute.compute()?),
        BenchCmd::Trust { workers, rounds, clients, threads, postgres, sqlite_only } => super::bench_trust::run(
            workers.max(1),
            rounds.max(1),
            clients.max(1),
            threads.max(1),
            postgres,
            sqlite_only,
        ),
    }
}

fn best_of(runs: u32, mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

fn run_tool(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

fn bench_seal(size_mib: u64, dir: Option<&Path>, runs: u32) -> Result<()> {
    let tmp = match dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("creating a temporary folder")?;
    let plain = tmp.path().join("asset.bin");
    let size = size_mib * 1024 * 1024;
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&plain)?);
        let mut rng = rand::thread_rng();
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..size_mib {
            rng.fill_bytes(&mut buf);
            f.write_all(&buf)?;
        }
        f.flush()?;
    }
    let key = AssetKey::generate();
    let key_file = tmp.path().join("asset.key");
    key.save(&key_file)?;
    let sealed_path = tmp.path().join("asset.sealed");
    let mb = size as f64 / 1e6;
    let rate = |d: Duration| mb / d.as_secs_f64();

    println!("asset: {size_mib} MiB of random bytes in {}; best of {runs} runs; perun open decrypts on one thread and hashes on another", tmp.path().display());
    println!("{:<34} {:>10} {:>10}", "operation", "seconds", "MB/s");
    let perun_seal = best_of(runs, || {
        let _ = std::fs::remove_file(&sealed_path);
        sealed::seal_file(&plain, AssetKind::Dataset, &[key.recipient()], &sealed_path, &mut |_| {})?;
        Ok(())
    })?;
    println!("{:<34} {:>10.3} {:>10.0}", "perun seal (digest + encrypt)", perun_seal.as_secs_f64(), rate(perun_seal));
    let perun_open = best_of(runs, || {
        let f = std::fs::File::open(&sealed_path)?;
        let len = f.metadata()?.len();
        sealed::open(f, Some(len), key.identity(), None, &mut std::io::sink())?;
        Ok(())
    })?;
    println!("{:<34} {:>10.3} {:>10.0}", "perun open (decrypt + verify)", perun_open.as_secs_f64(), rate(perun_open));
    // What the job runner does: the sealed file in memory, opened on every core.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let in_memory = std::fs::read(&sealed_path)?;
    let perun_to_memory = best_of(runs, || {
        sealed::open_in_parallel(&in_memory, key.identity(), None, 1)?;
        Ok(())
    })?;
    println!(
        "{:<34} {:>10.3} {:>10.0}",
        "perun open, 1 thread (memory)",
        perun_to_memory.as_secs_f64(),
        rate(perun_to_memory)
    );
    let perun_parallel = best_of(runs, || {
        sealed::open_in_parallel(&in_memory, key.identity(), None, threads)?;
        Ok(())
    })?;
    println!(
        "{:<34} {:>10.3} {:>10.0}",
        format!("perun open, {threads} threads (memory)"),
        perun_parallel.as_secs_f64(),
        rate(perun_parallel)
    );
    println!(
        "parallel ratio: {:.2}x the one-thread open into memory (the job runner's path, plaintext wiped after)",
        perun_to_memory.as_secs_f64() / perun_parallel.as_secs_f64()
    );

    if !have("age") {
        println!("the `age` tool is not installed (apt-get install age): no baseline to compare with");
        return Ok(());
    }
    let age_sealed = tmp.path().join("asset.age");
    let age_seal = best_of(runs, || {
        let _ = std::fs::remove_file(&age_sealed);
        run_tool(
            Command::new("age")
                .arg("-e")
                .arg("-r")
                .arg(key.recipient().to_string())
                .arg("-o")
                .arg(&age_sealed)
                .arg(&plain),
        )
    })?;
    println!("{:<34} {:>10.3} {:>10.0}", "age -e (encrypt)", age_seal.as_secs_f64(), rate(age_seal));
    let age_open = best_of(runs, || {
        run_tool(Command::new("age").arg("-d").arg("-i").arg(&key_file).arg("-o").arg("/dev/null").arg(&sealed_path))
    })?;
    println!("{:<34} {:>10.3} {:>10.0}", "age -d (decrypt, same file)", age_open.as_secs_f64(), rate(age_open));
    println!();
    println!(
        "open ratio  perun/age: {:.2}x (above 1 means Perun is faster)",
        age_open.as_secs_f64() / perun_open.as_secs_f64()
    );
    println!(
        "seal ratio  perun/age: {:.2}x (Perun also hashes the input first)",
        age_seal.as_secs_f64() / perun_seal.as_secs_f64()
    );
    Ok(())
}

/// `n` random images of CIFAR-10's shape (3x32x32) with random labels of 10 classes.
pub fn cifar_shaped(n: usize, seed: u64) -> Result<perun_seal::Dataset> {
    use rand::{Rng as _, SeedableRng as _};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Ok(perun_seal::Dataset::new(
        (0..n * 3 * 32 * 32).map(|_| rng.gen::<f32>()).collect(),
        vec![3, 32, 32],
        (0..n).map(|_| rng.gen_range(0..10)).collect(),
        (0..10).map(|i| i.to_string()).collect(),
        Vec::new(),
        None,
    )?)
}

/// The PyTorch peer of `perun bench train` (`bench/train_cifar_cnn.py`), carried in the
/// binary so that it runs wherever the binary does (and no build path is compiled in).
const TORCH_PEER: &str = include_str!("../../../../bench/train_cifar_cnn.py");

/// One measured row of `perun bench train`: its label and images per second per round.
struct Row {
    label: String,
    rates: Vec<f64>,
}

impl Row {
    /// Median, min and max over the rounds.
    fn summary(&self) -> (f64, f64, f64) {
        let mut r = self.rates.clone();
        r.sort_by(f64::total_cmp);
        let mid = r.get(r.len() / 2).copied().unwrap_or(0.0);
        (mid, r.first().copied().unwrap_or(0.0), r.last().copied().unwrap_or(0.0))
    }
}

fn bench_train(
    steps: usize,
    batch: Option<usize>,
    rounds: usize,
    compute: super::train::ComputeArgs,
    python: Option<String>,
) -> Result<()> {
    use perun_ml::backend::{Compute, Engine};
    let gpu = compute.device == super::train::DeviceArg::Gpu;
    let mut spec = perun_ml::ModelSpec::from_json(crate::embedded::CIFAR10_CNN)?;
    spec.training.batch_size = batch.unwrap_or(spec.training.batch_size);
    let batch = spec.training.batch_size;
    // Epoch 1 warms up (allocations, kernels); epoch 2 is timed.
    spec.training.epochs = 2;
    spec.training.validation_fraction = 0.0;
    spec.validate()?;
    let data = cifar_shaped(steps * batch, 7)?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "CIFAR-10-shaped CNN (conv 3-32, 32-32, pool, 32-64, 64-64, pool, linear 4096-256-10), Adam, batch {batch}"
    );
    println!(
        "random data of CIFAR shape, {steps} timed steps after one warm-up epoch, {threads} threads, {rounds} \
         round(s), each engine and PyTorch in turn"
    );
    let runs: Vec<Compute> = match compute.compute()? {
        // LibTorch first: flex's thread pool and heap, left behind in the process, would
        // otherwise weigh on the run measured against PyTorch.
        Compute::Cpu => Engine::carried().iter().rev().map(|&e| Compute::CpuWith(e)).collect(),
        one => vec![one],
    };
    let asked = python.is_some();
    let python = python.or_else(|| std::env::var("PERUN_PYTHON").ok()).unwrap_or_else(|| "python3".into());
    let has_torch = Command::new(&python).args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success());
    if asked && !has_torch {
        bail!(
            "--python {python} cannot import torch: give an interpreter with PyTorch (scripts/install-deps --pytorch)"
        );
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut torch = Row { label: "pytorch".into(), rates: Vec::new() };
    // Rounds take turns (Perun, then PyTorch, then again), so that the machine's drift
    // weighs on both sides alike.
    for _ in 0..rounds {
        for (i, &compute) in runs.iter().enumerate() {
            let out = perun_ml::train(&spec, None, &data, compute, &mut |_| std::ops::ControlFlow::Continue(()))?;
            let rate = out.metrics.last().map_or(0.0, |m| m.samples_per_second);
            println!("{:<40} {:>10.1} images/s", format!("perun, {}", out.engine), rate);
            match rows.get_mut(i) {
                Some(row) => row.rates.push(rate),
                None => rows.push(Row { label: format!("perun, {}", out.engine), rates: vec![rate] }),
            }
        }
        if has_torch {
            let (label, rate) = torch_peer(&python, steps, batch, threads, gpu)?;
            println!("{label:<40} {rate:>10.1} images/s");
            torch.label = label;
            torch.rates.push(rate);
        }
    }
    if !gpu {
        println!("(the workload rule picks {} for this model)", Engine::for_workload(&spec).name());
    }
    if !has_torch {
        println!(
            "PyTorch is not installed for {python}: no baseline to compare with (scripts/install-deps --pytorch, then \
             --python target/torch-py/bin/python)"
        );
        return Ok(());
    }
    let (base, lo, hi) = torch.summary();
    println!();
    println!("median over {rounds} round(s), min-max:");
    println!("{:<40} {base:>10.1} images/s  ({lo:.0}-{hi:.0})", torch.label);
    for row in &rows {
        let (mid, lo, hi) = row.summary();
        println!("{:<40} {mid:>10.1} images/s  ({lo:.0}-{hi:.0})", row.label);
    }
    println!();
    for row in &rows {
        println!(
            "ratio {} / pytorch: {:.2}x (medians; above 1 means Perun is faster)",
            row.label,
            row.summary().0 / base.max(1e-9)
        );
    }
    Ok(())
}

/// Runs the PyTorch peer once: its framework label and images per second.
fn torch_peer(python: &str, steps: usize, batch: usize, threads: usize, gpu: bool) -> Result<(String, f64)> {
    let out = Command::new(python)
        .arg("-c")
        .arg(TORCH_PEER)
        .arg(steps.to_string())
        .arg(batch.to_string())
        .env("BENCH_THREADS", threads.to_string())
        .env("BENCH_DEVICE", if gpu { "cuda" } else { "cpu" })
        .output()
        .context("running the PyTorch peer")?;
    if !out.status.success() {
        bail!("the PyTorch peer failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).context("reading the PyTorch peer's output")?;
    let rate = line["images_per_second"].as_f64().unwrap_or(0.0);
    Ok((line["framework"].as_str().unwrap_or("pytorch").to_owned(), rate))
}

fn bench_attest(n: usize, more: usize, quotes: usize) -> Result<()> {
    use perun_attest::ima::{extend_all, replay_to_quote, Entry, ReplayState};
    use perun_attest::policy::PlatformPolicy;

    let entry = |i: usize| {
        Entry::ima_ng(
            &format!("/usr/lib/x86_64-linux-gnu/lib{i}.so"),
            "sha256",
            perun_core::Digest::of(&i.to_le_bytes()).as_bytes(),
        )
    };
    let entries: Vec<Entry> = (0..n + more).map(entry).collect();
    let mut policy = PlatformPolicy::from_log("bench", &entries);
    // The first round must find the worker binary: the log's first file stands for it.
    policy.worker_binary = entries.first().map(|e| e.file_digest.to_text());
    let log: Vec<u8> = entries[..n].iter().flat_map(Entry::to_binary).collect();
    let quoted = extend_all([0; 32], &entries[..n]);
    println!(
        "IMA: {n} ima-ng entries ({:.1} MB binary log), then {more} more; policy of {} files",
        log.len() as f64 / 1e6,
        policy.allowed_files.len()
    );
    let t = Instant::now();
    let (state, verified) = replay_to_quote(&ReplayState::default(), &log, &quoted)?;
    let replayed = t.elapsed();
    let failures = policy.check_entries(&verified, true);
    let full = t.elapsed();
    if verified.len() != n || !failures.is_empty() {
        let why: Vec<String> = failures.iter().take(3).map(ToString::to_string).collect();
        bail!("the benchmark log did not verify: {}", why.join("; "));
    }
    let mut log2 = log.clone();
    log2.extend(entries[n..].iter().flat_map(Entry::to_binary));
    let quoted2 = extend_all(quoted, &entries[n..]);
    let t = Instant::now();
    let (_, new) = replay_to_quote(&state, &log2, &quoted2)?;
    let failures = policy.check_entries(&new, false);
    let inc = t.elapsed();
    if new.len() != more || !failures.is_empty() {
        bail!("the incremental round did not verify");
    }
    println!(
        "{:<48} {:>10.2} ms   (goal: under 100 ms; parse and replay {:.1} ms, policy {:.1} ms)",
        format!("full verification ({n} entries, parse + replay + policy)"),
        full.as_secs_f64() * 1e3,
        replayed.as_secs_f64() * 1e3,
        (full - replayed).as_secs_f64() * 1e3
    );
    println!(
        "{:<48} {:>10.3} ms   (goal: under 2 ms)",
        format!("incremental re-attestation ({more} new entries)"),
        inc.as_secs_f64() * 1e3
    );

    let tpm = match perun_tpm::swtpm::Swtpm::start() {
        Ok(t) => t,
        Err(e) => {
            println!("no quote benchmark: {e}");
            return Ok(());
        }
    };
    let dir = tempfile::tempdir()?;
    let tools = perun_tpm::tools::Tpm2Tools::new(&tpm.tcti(), dir.path());
    println!();
    println!("quote verification, per quote (sha256 PCRs 0-7 and 10):");
    for alg in [perun_tpm::tools::KeyAlg::Rsa, perun_tpm::tools::KeyAlg::Ecc] {
        let name = if alg == perun_tpm::tools::KeyAlg::Rsa { "rsa" } else { "ecc" };
        if !dir.path().join("ek.ctx").exists() {
            tools.create_ek(perun_tpm::tools::KeyAlg::Rsa)?;
        }
        let ak_bytes = tools.create_ak(alg, name)?;
        let ak = perun_attest::tpm::AkPublic::parse(&ak_bytes)?;
        let nonce = [0x42u8; 32];
        tools.run(&[
            "tpm2_quote",
            "-c",
            &format!("{name}.ctx"),
            "-l",
            "sha256:0,1,2,3,4,5,6,7,10",
            "-q",
            &hex::encode(nonce),
            "-m",
            "quote.msg",
            "-s",
            "quote.sig",
            "-o",
            "quote.pcrs",
            "-g",
            "sha256",
        ])?;
        let (msg, sig) = (std::fs::read(tools.path("quote.msg"))?, std::fs::read(tools.path("quote.sig"))?);
        let pcrs = tools.pcr_read("0,1,2,3,4,5,6,7,10")?;
        let t = Instant::now();
        for _ in 0..quotes {
            perun_attest::tpm::verify_quote(&ak, &msg, &sig, &nonce, &pcrs)?;
        }
        let ours = t.elapsed().as_secs_f64() / quotes as f64;
        let runs = 20;
        let t = Instant::now();
        for _ in 0..runs {
            run_tool(
                Command::new("tpm2_checkquote")
                    .current_dir(dir.path())
                    .args([
                        "-u",
                        &format!("{name}.pub"),
                        "-m",
                        "quote.msg",
                        "-s",
                        "quote.sig",
                        "-f",
                        "quote.pcrs",
                        "-g",
                        "sha256",
                        "-q",
                    ])
                    .arg(hex::encode(nonce)),
            )?;
        }
        let theirs = t.elapsed().as_secs_f64() / f64::from(runs);
        println!(
            "  {:<6} perun-attest {:>9.1} us   tpm2_checkquote {:>9.1} us (a process each)   ratio {:>6.0}x",
            if name == "rsa" { "RSA" } else { "ECDSA" },
            ours * 1e6,
            theirs * 1e6,
            theirs / ours
        );
    }
    Ok(())
}
