//! Turning a data set into batches of tensors.

use burn::tensor::{Device, Int, Tensor, TensorData};
use perun_seal::Dataset;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::network::Activation;
use crate::spec::{ModelSpec, Shape};
use crate::MlError;

/// Checks that `data` fits `spec`: same number of values per sample, and no more
/// classes than the model predicts.
pub(crate) fn check_fit(spec: &ModelSpec, data: &Dataset) -> Result<(), MlError> {
    let want: usize = spec.input_shape.iter().product();
    if data.sample_len() != want {
        return Err(MlError::Data(format!(
            "samples have shape {:?} ({} values) but the model's input_shape is {:?} ({want} values)",
            data.sample_shape,
            data.sample_len(),
            spec.input_shape
        )));
    }
    let k = spec.classes()?;
    if data.class_names.len() > k {
        return Err(MlError::Data(format!(
            "the data has {} classes but the model predicts {k}",
            data.class_names.len()
        )));
    }
    if data.is_empty() {
        return Err(MlError::Data("the data set is empty".into()));
    }
    Ok(())
}

/// Per-value standardisation fitted on training data, shipped with the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Mean of each input value.
    pub mean: Vec<f32>,
    /// Standard deviation of each input value (1 where it was 0).
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Fits on `features` of `n` samples of `len` values.
    pub fn fit(features: &[f32], len: usize) -> Self {
        let n = (features.len() / len.max(1)).max(1) as f64;
        let mut mean = vec![0f64; len];
        let mut sq = vec![0f64; len];
        for row in features.chunks_exact(len) {
            for (j, &v) in row.iter().enumerate() {
                mean[j] += f64::from(v);
                sq[j] += f64::from(v) * f64::from(v);
            }
        }
        let mean: Vec<f64> = mean.iter().map(|m| m / n).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, m)| {
                let var = (s / n - m * m).max(0.0);
                if var > 1e-12 {
                    var.sqrt() as f32
                } else {
                    1.0
                }
            })
            .collect();
        Self { mean: mean.iter().map(|&m| m as f32).collect(), std }
    }

    /// Standardises `features` in place.
    pub fn apply(&self, features: &mut [f32]) {
        let len = self.mean.len().max(1);
        for row in features.chunks_exact_mut(len) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = (*v - m) / s;
            }
        }
    }
}

/// Samples ready for batching: standardised features (wiped on drop) and labels.
pub(crate) struct Prepared {
    pub features: Zeroizing<Vec<f32>>,
    pub labels: Vec<i64>,
    pub sample_len: usize,
}

impl Prepared {
    pub fn new(data: &Dataset, standardizer: Option<&Standardizer>) -> Self {
        let mut features = Zeroizing::new(data.features.clone());
        if let Some(s) = standardizer {
            s.apply(&mut features);
        }
        Self { features, labels: data.labels.clone(), sample_len: data.sample_len() }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// The samples at `idx` as an input activation and a label tensor.
    pub fn batch(&self, idx: &[usize], input: &Shape, device: &Device) -> (Activation, Tensor<1, Int>) {
        // The batch goes to the backend, which owns (and frees) its memory from here on.
        let mut x = Vec::with_capacity(idx.len() * self.sample_len);
        let mut y = Vec::with_capacity(idx.len());
        for &i in idx {
            x.extend_from_slice(&self.features[i * self.sample_len..(i + 1) * self.sample_len]);
            y.push(self.labels[i]);
        }
        let b = idx.len();
        let x = match *input {
            Shape::Flat(n) => Activation::Flat(Tensor::from_data(TensorData::new(x, [b, n]), device)),
            Shape::Image(c, h, w) => Activation::Image(Tensor::from_data(TensorData::new(x, [b, c, h, w]), device)),
        };
        (x, Tensor::from_data(TensorData::new(y, [b]), device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardizer_centres_and_scales() {
        let f = [1.0, 10.0, 3.0, 10.0];
        let s = Standardizer::fit(&f, 2);
        assert_eq!(s.mean, [2.0, 10.0]);
        assert_eq!(s.std, [1.0, 1.0]);
        let mut g = f;
        s.apply(&mut g);
        assert_eq!(g, [-1.0, 0.0, 1.0, 0.0]);
    }
}
