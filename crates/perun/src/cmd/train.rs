//! `perun train` and `perun eval`: the engine with no protection at all, the baseline
//! that attested jobs are measured against.

use std::io::Write as _;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use perun_ml::backend::Compute;
use perun_ml::{EpochMetrics, ModelSpec, TrainEvent};
use perun_seal::Dataset;

use crate::ui::print_json;

/// Where to compute.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// The CPU.
    Cpu,
    /// The first NVIDIA GPU, through LibTorch (builds with `--features libtorch-cuda`).
    Gpu,
}

/// Which engine computes on the CPU.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// The one the workload rule picks (README, "Training engines"); `bench train` runs
    /// every engine the build carries.
    Auto,
    /// Burn's pure-Rust flex backend.
    Flex,
    /// LibTorch (builds with `--features libtorch`).
    Libtorch,
}

/// `--device` and `--engine`, shared by the commands that train or evaluate.
#[derive(Args, Clone, Copy)]
pub struct ComputeArgs {
    /// Compute device: cpu, or gpu (LibTorch on CUDA, a `libtorch-cuda` build).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Engine on the CPU: auto (the workload rule's pick; every engine for `bench train`),
    /// flex or libtorch. The GPU is always LibTorch.
    #[arg(long, value_enum, default_value_t = EngineArg::Auto)]
    pub engine: EngineArg,
}

impl ComputeArgs {
    /// What to compute on.
    pub fn compute(self) -> Result<Compute> {
        use perun_ml::backend::Engine;
        let engine = match self.engine {
            EngineArg::Auto => None,
            EngineArg::Flex => Some(Engine::Flex),
            EngineArg::Libtorch => Some(Engine::LibTorch),
        };
        Ok(Compute::new(self.device == DeviceArg::Gpu, engine)?)
    }
}

/// Arguments of `perun train`.
#[derive(Args)]
pub struct TrainArgs {
    /// The model spec (JSON).
    #[arg(long)]
    pub spec: PathBuf,
    /// The training data (dataset container).
    #[arg(long)]
    pub data: PathBuf,
    /// Initial weights (safetensors), if the model has them.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Where to write the trained weights (safetensors; never overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// Write per-epoch metrics here as JSON lines.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Write the training curve here (SVG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Override the spec's epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Arguments of `perun eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// The model spec (JSON).
    #[arg(long)]
    pub spec: PathBuf,
    /// Trained weights (safetensors).
    #[arg(long)]
    pub weights: PathBuf,
    /// The evaluation data (dataset container).
    #[arg(long)]
    pub data: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Reads and validates a spec file.
pub fn read_spec(path: &Path) -> Result<ModelSpec> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ModelSpec::from_json(&bytes).with_context(|| format!("{} was refused", path.display()))
}

/// One line per epoch, for people.
pub fn epoch_line(m: &EpochMetrics) -> String {
    let val = match (m.val_loss, m.val_accuracy) {
        (Some(l), Some(a)) => format!("  val loss {l:.4} acc {:.2}%", a * 100.0),
        _ => String::new(),
    };
    format!(
        "epoch {:>3}  loss {:.4} acc {:.2}%{val}  {:.0} samples/s",
        m.epoch,
        m.train_loss,
        m.train_accuracy * 100.0,
        m.samples_per_second
    )
}

/// A progress bar over training steps, drawn only on a terminal.
pub fn step_bar(total: u64) -> ProgressBar {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("training [{bar:40}] {pos}/{len} steps {per_sec} eta {eta}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Prints a line above the bar, or plainly when there is no bar (not a terminal).
pub fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

/// Trains locally with no protection.
pub fn train(a: TrainArgs) -> Result<()> {
    let mut spec = read_spec(&a.spec)?;
    if let Some(e) = a.epochs {
        spec.training.epochs = e;
        spec.validate()?;
    }
    let data = Dataset::read_file(&a.data)?;
    let initial = a.weights.as_ref().map(std::fs::read).transpose().context("reading --weights")?;
    let compute = a.compute.compute()?;
    // Refuse a device or engine this build lacks before any output is created.
    perun_ml::backend::place(compute, &spec)?;
    // Refuse early rather than after training.
    let mut out = perun_seal::fsutil::AtomicOutput::create(&a.out)?;
    let mut metrics_file = match &a.metrics {
        Some(p) => Some(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => None,
    };
    let steps = data.len().div_ceil(spec.training.batch_size) as u64 * spec.training.epochs as u64;
    let bar = step_bar(steps);
    let mut io_error = None;
    let outcome = perun_ml::train(&spec, initial.as_deref(), &data, compute, &mut |ev| {
        match ev {
            TrainEvent::Step { .. } => bar.inc(1),
            TrainEvent::Epoch(m) => {
                say(&bar, epoch_line(m));
                if let Some(f) = metrics_file.as_mut() {
                    if let Err(e) = writeln!(f, "{}", serde_json::to_string(m).unwrap_or_default()) {
                        io_error = Some(e);
                    }
                }
            }
        }
        ControlFlow::Continue(())
    })?;
    bar.finish_and_clear();
    if let Some(e) = io_error {
        return Err(e).context("writing --metrics");
    }
    out.file().write_all(&outcome.weights)?;
    out.commit()?;
    if let Some(p) = &a.plot {
        std::fs::write(p, perun_ml::curve::svg(&spec.name, &outcome.metrics))?;
    }
    println!(
        "trained {} on {} samples ({} held out) in {:.1}s on {} -> {}",
        spec.name,
        outcome.train_samples,
        outcome.val_samples,
        outcome.seconds,
        outcome.engine,
        a.out.display()
    );
    Ok(())
}

/// Evaluates trained weights on a data set.
pub fn eval(a: EvalArgs) -> Result<()> {
    let spec = read_spec(&a.spec)?;
    let data = Dataset::read_file(&a.data)?;
    let weights = std::fs::read(&a.weights).with_context(|| format!("reading {}", a.weights.display()))?;
    let compute = a.compute.compute()?;
    let e = perun_ml::evaluate(&spec, &weights, &data, compute)?;
    if a.json {
        return print_json(&e);
    }
    println!(
        "accuracy {:.2}% on {} samples (loss {:.4}) on {}",
        e.accuracy * 100.0,
        e.samples,
        e.loss,
        perun_ml::backend::place(compute, &spec)?.describe()
    );
    for c in &e.per_class {
        let name = data.class_names.get(c.class).map_or("?", String::as_str);
        println!("  {name:<20} {:>5}/{:<5}", c.correct, c.total);
    }
    Ok(())
}

/// What a worker or an enclave says when it delivered the model to `path`.
#[cfg(any(feature = "worker", feature = "enclave"))]
pub fn delivered_line(path: &std::path::Path, review: bool) -> String {
    if review {
        format!("model sealed under a key the trust service holds, awaiting the owners' review: {}", path.display())
    } else {
        format!("model sealed to the receivers: {}", path.display())
    }
}
