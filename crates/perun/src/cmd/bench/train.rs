//! `perun bench train`: the CIFAR-shaped CNN on each engine next to PyTorch.

use std::process::Command;

use anyhow::{bail, Context as _, Result};

/// The PyTorch peer of `perun bench train` (`bench/train_cifar_cnn.py`), carried in the
/// binary so that it runs wherever the binary does (and no build path is compiled in).
const TORCH_PEER: &str = include_str!("../../../../../bench/train_cifar_cnn.py");

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

/// Runs the benchmark.
pub fn run(
    steps: usize,
    batch: Option<usize>,
    rounds: usize,
    compute: crate::cmd::train::ComputeArgs,
    python: Option<String>,
) -> Result<()> {
    use perun_ml::backend::{Compute, Engine};
    let gpu = compute.device == crate::cmd::train::DeviceArg::Gpu;
    let mut spec = perun_ml::ModelSpec::from_json(crate::embedded::CIFAR10_CNN)?;
    spec.training.batch_size = batch.unwrap_or(spec.training.batch_size);
    let batch = spec.training.batch_size;
    // Epoch 1 warms up (allocations, kernels); epoch 2 is timed.
    spec.training.epochs = 2;
    spec.training.validation_fraction = 0.0;
    spec.validate()?;
    let data = super::data::cifar_shaped(steps * batch, 7)?;
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
