//! The training loop.

use std::ops::ControlFlow;
use std::time::Instant;

use burn::module::Module as _;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use perun_seal::Dataset;
use rand::seq::SliceRandom as _;
use rand::SeedableRng as _;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::backend::{self, Compute};
use crate::data::{check_fit, Prepared, Standardizer};
use crate::dpsgd::{self, DpPlan};
use crate::network::Network;
pub use crate::score::ClassScore;
use crate::score::{count_correct, loss_of, scalar};
use crate::spec::{ModelSpec, OptimizerKind};
use crate::{weights, MlError};

/// Metrics of one epoch; one JSON line each in `--metrics` output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochMetrics {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy (with dropout active).
    pub train_accuracy: f64,
    /// Mean validation loss, if there is a validation split.
    pub val_loss: Option<f64>,
    /// Validation accuracy.
    pub val_accuracy: Option<f64>,
    /// Validation counts per class.
    pub val_per_class: Vec<ClassScore>,
    /// Seconds the epoch took (training and validation).
    pub seconds: f64,
    /// Training samples per second.
    pub samples_per_second: f64,
}

/// Progress reported to the caller, who may stop training by returning `Break`.
#[derive(Debug)]
pub enum TrainEvent<'a> {
    /// A training step finished.
    Step {
        /// Epoch, from 1.
        epoch: usize,
        /// Step within the epoch, from 1.
        step: usize,
        /// Steps per epoch.
        steps: usize,
    },
    /// An epoch finished.
    Epoch(&'a EpochMetrics),
}

/// What training produced.
pub struct TrainOutcome {
    /// The trained weights as `safetensors` bytes (wiped when dropped).
    pub weights: Zeroizing<Vec<u8>>,
    /// Metrics per epoch.
    pub metrics: Vec<EpochMetrics>,
    /// Samples trained on.
    pub train_samples: usize,
    /// Samples validated on.
    pub val_samples: usize,
    /// Total seconds.
    pub seconds: f64,
    /// What DP-SGD spent, when the spec asked for it.
    pub privacy: Option<perun_core::receipt::PrivacySpent>,
    /// The device and engine that trained, as [`backend::Placement::describe`] says it.
    pub engine: String,
}

/// Burn seeds its random generator per backend, not per call: two trainings running at
/// once in one process would draw from one stream and neither would be reproducible. So
/// trainings in one process run one at a time (each one uses every core anyway).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Trains `spec` on `data`, starting from `initial` weights if given, reporting to
/// `observer`. Everything stays in memory; the trained weights come back as bytes.
/// With the same spec, data and seed on the CPU, the weights are the same every time.
pub fn train(
    spec: &ModelSpec,
    initial: Option<&[u8]>,
    data: &Dataset,
    compute: Compute,
    observer: &mut dyn FnMut(TrainEvent<'_>) -> ControlFlow<String>,
) -> Result<TrainOutcome, MlError> {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let start = Instant::now();
    spec.validate()?;
    check_fit(spec, data)?;
    let t = &spec.training;
    let (train_set, val_set) = if t.validation_fraction > 0.0 {
        let mut parts = data
            .split(&[1.0 - t.validation_fraction, t.validation_fraction], t.seed)
            .map_err(|e| MlError::Data(e.to_string()))?;
        let val = parts.pop();
        (parts.pop().unwrap_or_else(|| data.clone()), val)
    } else {
        (data.clone(), None)
    };
    let standardizer = t.standardize.then(|| Standardizer::fit(&train_set.features, train_set.sample_len()));
    let train_data = Prepared::new(&train_set, standardizer.as_ref());
    let val_data = val_set.as_ref().filter(|v| !v.is_empty()).map(|v| Prepared::new(v, standardizer.as_ref()));
    drop(train_set);

    let placement = backend::place(compute, spec)?;
    let device = placement.device.clone();
    device.seed(t.seed);
    let ad = device.clone().autodiff();
    let mut net = match initial {
        Some(bytes) => weights::load(spec, bytes, &ad)?.0,
        None => Network::init(spec, &ad)?,
    };
    let mut optim = optimizer(spec);
    let input = spec.input()?;
    let classes = spec.classes()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(t.seed ^ 0x5eed);
    let mut order: Vec<usize> = (0..train_data.len()).collect();
    let steps = train_data.len().div_ceil(t.batch_size);
    let mut metrics = Vec::with_capacity(t.epochs);
    let dp = t.privacy.map(|p| DpPlan::new(p, train_data.len(), t.batch_size, t.epochs)).transpose()?;
    let mut secret = dpsgd::secret_rng();
    let mut dp_steps = 0u64;

    for epoch in 1..=t.epochs {
        let epoch_start = Instant::now();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        if let Some(plan) = &dp {
            let n = train_data.len();
            let mut seen = 0usize;
            for step in 0..plan.steps_per_epoch {
                let idx = dpsgd::poisson_batch(&mut secret, n, plan.sample_rate);
                let mut acc = dpsgd::Step::new(plan.target.max_grad_norm);
                for &i in &idx {
                    let (x, y) = train_data.batch(&[i], &input, &ad);
                    let logits = net.forward(x).into_flat();
                    let loss = loss_of(spec.loss, logits.clone(), y.clone(), classes, &ad);
                    correct += count_correct(spec.loss, logits, y);
                    loss_sum += scalar(loss.clone());
                    acc.add(&net, GradientsParams::from_grads(loss.backward(), &net));
                }
                seen += idx.len();
                let grads = acc.finish(&net, plan, n, &mut secret);
                net = optim.step(spec.optimizer.lr, net, grads);
                dp_steps += 1;
                if let ControlFlow::Break(why) =
                    observer(TrainEvent::Step { epoch, step: step + 1, steps: plan.steps_per_epoch })
                {
                    return Err(MlError::Aborted(why));
                }
            }
            // Loss and accuracy over the samples the epoch drew (Poisson batches).
            let drawn = seen.max(1) as f64;
            let n = train_data.len() as f64;
            loss_sum *= n / drawn;
            correct = (correct as f64 * n / drawn).round() as usize;
        }
        for (step, idx) in order.chunks(t.batch_size).enumerate().filter(|_| dp.is_none()) {
            let (x, y) = train_data.batch(idx, &input, &ad);
            let logits = net.forward(x).into_flat();
            let loss = loss_of(spec.loss, logits.clone(), y.clone(), classes, &ad);
            correct += count_correct(spec.loss, logits, y);
            loss_sum += scalar(loss.clone()) * idx.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(spec.optimizer.lr, net, grads);
            if let ControlFlow::Break(why) = observer(TrainEvent::Step { epoch, step: step + 1, steps }) {
                return Err(MlError::Aborted(why));
            }
        }
        let n = train_data.len() as f64;
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let (val_loss, val_accuracy, val_per_class) = match &val_data {
            Some(v) => {
                let e = crate::eval::evaluate_prepared(spec, &net.valid(), v, classes, &device);
                (Some(e.loss), Some(e.accuracy), e.per_class)
            }
            None => (None, None, Vec::new()),
        };
        let m = EpochMetrics {
            epoch,
            train_loss: loss_sum / n,
            train_accuracy: correct as f64 / n,
            val_loss,
            val_accuracy,
            val_per_class,
            seconds: epoch_start.elapsed().as_secs_f64(),
            samples_per_second: n / train_seconds.max(1e-9),
        };
        let flow = observer(TrainEvent::Epoch(&m));
        metrics.push(m);
        if let ControlFlow::Break(why) = flow {
            return Err(MlError::Aborted(why));
        }
    }
    let weights = weights::to_bytes(&net.valid(), spec, standardizer.as_ref())?;
    Ok(TrainOutcome {
        weights,
        metrics,
        train_samples: train_data.len(),
        val_samples: val_data.as_ref().map_or(0, Prepared::len),
        seconds: start.elapsed().as_secs_f64(),
        privacy: dp.map(|plan| plan.spent(dp_steps)).transpose()?,
        engine: placement.describe(),
    })
}

fn optimizer(spec: &ModelSpec) -> ModuleOptimizer {
    let o = &spec.optimizer;
    let decay = (o.weight_decay > 0.0).then(|| WeightDecayConfig::new(o.weight_decay as f32));
    match o.kind {
        OptimizerKind::Sgd => SgdConfig::new()
            .with_weight_decay(decay)
            .with_momentum((o.momentum > 0.0).then(|| MomentumConfig::new().with_momentum(o.momentum)))
            .init(),
        OptimizerKind::Adam => AdamConfig::new().with_weight_decay(decay).init(),
        OptimizerKind::Adamw => AdamWConfig::new().with_weight_decay(o.weight_decay as f32).init(),
    }
}
