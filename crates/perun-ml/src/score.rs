//! What training and evaluation both compute from a batch's logits: the loss, the
//! predicted classes, the count of correct ones, and the per-class scores.

use burn::nn::loss::{BinaryCrossEntropyLossConfig, CrossEntropyLossConfig, MseLoss, Reduction};
use burn::tensor::{Device, Int, Tensor};
use serde::Serialize;

use crate::spec::Loss;

/// Correct predictions of one class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClassScore {
    /// Class index.
    pub class: usize,
    /// Correct predictions.
    pub correct: usize,
    /// Samples of that class.
    pub total: usize,
}

/// The loss of `logits` against class `labels`.
pub(crate) fn loss_of(
    loss: Loss,
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    classes: usize,
    device: &Device,
) -> Tensor<1> {
    match loss {
        Loss::CrossEntropy => CrossEntropyLossConfig::new().init(device).forward(logits, labels),
        Loss::BinaryCrossEntropy => {
            BinaryCrossEntropyLossConfig::new().with_logits(true).init(device).forward(logits, labels.unsqueeze_dim(1))
        }
        Loss::Mse => MseLoss::new().forward(logits, labels.one_hot(classes).float(), Reduction::Mean),
    }
}

/// Predicted class of each row of `logits`.
pub(crate) fn predictions(loss: Loss, logits: Tensor<2>) -> Tensor<1, Int> {
    match loss {
        Loss::BinaryCrossEntropy => logits.greater_elem(0.0).int().squeeze_dim(1),
        Loss::CrossEntropy | Loss::Mse => logits.argmax(1).squeeze_dim(1),
    }
}

pub(crate) fn count_correct(loss: Loss, logits: Tensor<2>, labels: Tensor<1, Int>) -> usize {
    let hits = predictions(loss, logits).equal(labels).int().sum();
    int_values(hits).first().copied().unwrap_or(0).max(0) as usize
}

/// The values of an integer tensor.
pub(crate) fn int_values<const D: usize>(t: Tensor<D, Int>) -> Vec<i64> {
    t.into_data().try_into_vec_as::<i64>().unwrap_or_default()
}

/// The value of a one-element float tensor.
pub(crate) fn scalar(t: Tensor<1>) -> f64 {
    t.into_data().try_into_vec_as::<f32>().ok().and_then(|v| v.first().copied()).map_or(f64::NAN, f64::from)
}
