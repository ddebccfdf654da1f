//! `perun bench dp`: what differential privacy costs on the breast-cancer data: accuracy
//! on a held-out split at epsilon 0.5, 1, 3 and 8 next to plain training, and the DP-SGD
//! time per epoch as a ratio to plain training of the same model.

use anyhow::{Context as _, Result};
use perun_core::DpTarget;
use perun_ml::backend::Compute;

use crate::embedded;

/// Runs the benchmark: `repeats` trainings per row (accuracy mean and range), with the
/// spec's epochs, batch size and learning rate unless given.
pub fn run(
    repeats: usize,
    epochs: Option<usize>,
    batch: Option<usize>,
    lr: Option<f64>,
    compute: Compute,
) -> Result<()> {
    let full = perun_seal::dataset::import_csv(embedded::BREAST_CANCER_CSV, "diagnosis")?;
    let mut parts = full.split(&[0.8, 0.2], 11)?;
    let test = parts.pop().context("split")?;
    let train = parts.pop().context("split")?;
    let mut spec = perun_ml::ModelSpec::from_json(embedded::BREAST_CANCER_MLP)?;
    // Under DP the standardiser would leak statistics: every row trains without it.
    spec.training.standardize = false;
    spec.training.validation_fraction = 0.0;
    spec.training.epochs = epochs.unwrap_or(spec.training.epochs);
    spec.training.batch_size = batch.unwrap_or(spec.training.batch_size);
    spec.optimizer.lr = lr.unwrap_or(spec.optimizer.lr);
    spec.validate()?;
    println!(
        "breast-cancer MLP ({} training rows, {} held out), {} epochs, batch {}, Adam lr {}, delta 1e-5, clip 1.0, on {}",
        train.len(),
        test.len(),
        spec.training.epochs,
        spec.training.batch_size,
        spec.optimizer.lr,
        perun_ml::backend::place(compute, &spec)?.describe()
    );
    println!(
        "{:<10} {:>9} {:>11} {:>9} {:>10} {:>12}",
        "epsilon", "sigma", "accuracy", "min-max", "s/epoch", "vs plain"
    );
    let mut plain_epoch = None;
    for eps in [None, Some(8.0), Some(3.0), Some(1.0), Some(0.5)] {
        let mut accs = Vec::new();
        let (mut secs, mut sigma) = (0.0, None);
        for r in 0..repeats {
            let mut s = spec.clone();
            s.training.seed = 7 + r as u64;
            s.training.privacy = eps.map(|epsilon| DpTarget { epsilon, delta: 1e-5, max_grad_norm: 1.0 });
            let out = perun_ml::train(&s, None, &train, compute, &mut |_| std::ops::ControlFlow::Continue(()))?;
            let e = perun_ml::evaluate(&s, &out.weights, &test, compute)?;
            accs.push(e.accuracy * 100.0);
            secs += out.metrics.iter().map(|m| m.seconds).sum::<f64>() / out.metrics.len().max(1) as f64;
            sigma = out.privacy.map(|p| p.noise_multiplier);
        }
        let n = repeats.max(1) as f64;
        let per_epoch = secs / n;
        let mean = accs.iter().sum::<f64>() / n;
        let (lo, hi) = accs.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        let base = *plain_epoch.get_or_insert(per_epoch);
        println!(
            "{:<10} {:>9} {:>10.2}% {:>4.0}-{:<4.0} {:>10.4} {:>11.1}x",
            eps.map_or("no DP".into(), |e| e.to_string()),
            sigma.map_or("-".into(), |s| format!("{s:.3}")),
            mean,
            lo,
            hi,
            per_epoch,
            per_epoch / base.max(1e-9)
        );
    }
    println!(
        "(DP-SGD computes each sample's gradient on its own: the ratio is that cost; Opacus is not installed here)"
    );
    Ok(())
}
