//! Evaluation and prediction with trained weights.

use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use perun_seal::Dataset;
use serde::Serialize;

use crate::backend::{self, Compute};
use crate::data::{check_fit, Prepared, Standardizer};
use crate::network::{Activation, Network};
use crate::score::{int_values, loss_of, predictions, scalar, ClassScore};
use crate::spec::{Loss, ModelSpec, Shape};
use crate::{weights, MlError};

/// Samples per evaluation batch.
const EVAL_BATCH: usize = 512;

/// How well a model does on a data set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    /// Samples evaluated.
    pub samples: usize,
    /// Mean loss.
    pub loss: f64,
    /// Fraction predicted correctly.
    pub accuracy: f64,
    /// Counts per class.
    pub per_class: Vec<ClassScore>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

/// Evaluates trained `weights` of `spec` on `data`.
pub fn evaluate(spec: &ModelSpec, weights: &[u8], data: &Dataset, compute: Compute) -> Result<Evaluation, MlError> {
    check_fit(spec, data)?;
    let device = backend::place(compute, spec)?.device;
    let (net, standardizer) = weights::load(spec, weights, &device)?;
    let prepared = Prepared::new(data, standardizer.as_ref());
    Ok(evaluate_prepared(spec, &net, &prepared, spec.classes()?, &device))
}

pub(crate) fn evaluate_prepared(
    spec: &ModelSpec,
    net: &Network,
    data: &Prepared,
    classes: usize,
    device: &Device,
) -> Evaluation {
    let input = spec.input().unwrap_or(Shape::Flat(data.sample_len));
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut loss_sum = 0.0;
    let order: Vec<usize> = (0..data.len()).collect();
    for idx in order.chunks(EVAL_BATCH) {
        let (x, y) = data.batch(idx, &input, device);
        let logits = net.forward(x).into_flat();
        loss_sum += scalar(loss_of(spec.loss, logits.clone(), y.clone(), classes, device)) * idx.len() as f64;
        let pred = int_values(predictions(spec.loss, logits));
        for (&i, p) in idx.iter().zip(pred) {
            let truth = data.labels[i] as usize;
            if let Some(cell) = confusion.get_mut(truth).and_then(|row| row.get_mut(p.max(0) as usize)) {
                *cell += 1;
            }
        }
    }
    let n = data.len().max(1) as f64;
    let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
    Evaluation {
        samples: data.len(),
        loss: loss_sum / n,
        accuracy: correct as f64 / n,
        per_class: (0..classes)
            .map(|c| ClassScore { class: c, correct: confusion[c][c], total: confusion[c].iter().sum() })
            .collect(),
        confusion,
    }
}

/// Class probabilities for `n` samples of `features` (row-major, `n * input values`).
pub fn predict(spec: &ModelSpec, weights: &[u8], features: &[f32], compute: Compute) -> Result<Vec<Vec<f32>>, MlError> {
    Predictor::load(spec.clone(), weights, compute)?.predict(features)
}

/// A trained model loaded once, for many predictions (the enclave's serving path).
pub struct Predictor {
    spec: ModelSpec,
    net: Network,
    standardizer: Option<Standardizer>,
    device: Device,
}

impl std::fmt::Debug for Predictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Predictor({})", self.spec.name)
    }
}

impl Predictor {
    /// Loads trained `weights` of `spec`.
    pub fn load(spec: ModelSpec, weights: &[u8], compute: Compute) -> Result<Self, MlError> {
        spec.input()?;
        let device = backend::place(compute, &spec)?.device;
        let (net, standardizer) = weights::load(&spec, weights, &device)?;
        Ok(Self { spec, net, standardizer, device })
    }

    /// Loads a self-contained trained model (weights carrying their spec).
    pub fn from_model(weights: &[u8], compute: Compute) -> Result<Self, MlError> {
        let spec = weights::embedded_spec(weights)?
            .ok_or_else(|| MlError::Weights("these weights do not carry their spec (`perun.spec`)".into()))?;
        Self::load(spec, weights, compute)
    }

    /// The model's spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Values per sample.
    pub fn input_len(&self) -> usize {
        self.spec.input_shape.iter().product()
    }

    /// Class probabilities for the samples in `features` (row-major): one row of
    /// `classes` values per sample, each row summing to 1.
    ///
    /// # Errors
    /// [`MlError::Data`] where `features` is not whole samples of finite values.
    pub fn predict(&self, features: &[f32]) -> Result<Vec<Vec<f32>>, MlError> {
        let Some(logits) = self.forward(features)? else { return Ok(Vec::new()) };
        let probs = match self.spec.loss {
            Loss::BinaryCrossEntropy => {
                let p = sigmoid(logits);
                Tensor::cat(vec![p.clone().neg().add_scalar(1.0), p], 1)
            }
            Loss::CrossEntropy | Loss::Mse => softmax(logits, 1),
        };
        rows(probs)
    }

    /// The network's raw outputs (logits) for the samples in `features`: one row of the
    /// last layer's width per sample. Errors as [`Predictor::predict`].
    pub fn logits(&self, features: &[f32]) -> Result<Vec<Vec<f32>>, MlError> {
        self.forward(features)?.map_or_else(|| Ok(Vec::new()), rows)
    }

    /// The forward pass over whole samples, `None` for no sample.
    fn forward(&self, features: &[f32]) -> Result<Option<Tensor<2>>, MlError> {
        let input = self.spec.input()?;
        let len = self.input_len();
        if len == 0 || features.len() % len != 0 {
            return Err(MlError::Data(format!("{} values are not whole samples of {len} values", features.len())));
        }
        if features.iter().any(|v| !v.is_finite()) {
            return Err(MlError::Data("every input value must be a finite number".into()));
        }
        let n = features.len() / len;
        if n == 0 {
            return Ok(None);
        }
        let mut x = features.to_vec();
        if let Some(s) = &self.standardizer {
            s.apply(&mut x);
        }
        let device = &self.device;
        let x = match input {
            Shape::Flat(f) => Activation::Flat(Tensor::from_data(TensorData::new(x, [n, f]), device)),
            Shape::Image(c, h, w) => Activation::Image(Tensor::from_data(TensorData::new(x, [n, c, h, w]), device)),
        };
        Ok(Some(self.net.forward(x).into_flat()))
    }
}

/// The rows of a `[n, k]` tensor.
fn rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>, MlError> {
    let k = t.dims()[1].max(1);
    let flat = t.into_data().try_into_vec_as::<f32>().map_err(|e| MlError::Backend(format!("{e:?}")))?;
    Ok(flat.chunks(k).map(<[f32]>::to_vec).collect())
}
