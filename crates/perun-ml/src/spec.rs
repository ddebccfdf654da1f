//! The model spec: layers, loss, optimizer and hyper-parameters, as data.
//!
//! ```json
//! { "schema": 1, "name": "bc-mlp", "input_shape": [30],
//!   "layers": [ {"type": "linear", "out": 32}, {"type": "relu"}, {"type": "linear", "out": 2} ],
//!   "loss": "cross_entropy",
//!   "optimizer": {"kind": "adam", "lr": 0.001},
//!   "training": {"epochs": 30, "batch_size": 32, "seed": 7} }
//! ```
//!
//! Tensor names of the trained weights follow the layer list: layer `i` holds
//! `layers.{i}.weight` and `layers.{i}.bias` (linear: weight `[in, out]`; conv2d: weight
//! `[out, in, k, k]`), batch norm `layers.{i}.gamma`, `.beta`, `.running_mean`,
//! `.running_var`, and a residual block's inner layer `j` is `layers.{i}.layers.{j}.*`.

use serde::{Deserialize, Serialize};

use crate::MlError;

/// The spec schema this build reads.
pub const SPEC_SCHEMA: u32 = 1;

/// A model spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Spec schema version ([`SPEC_SCHEMA`]).
    pub schema: u32,
    /// A human-readable name.
    pub name: String,
    /// Shape of one input sample: `[features]` or `[channels, height, width]`. Data of
    /// another shape with the same number of values is reshaped to it.
    pub input_shape: Vec<usize>,
    /// The layers, in order.
    pub layers: Vec<LayerSpec>,
    /// The loss.
    pub loss: Loss,
    /// The optimizer.
    pub optimizer: OptimizerSpec,
    /// Training hyper-parameters.
    pub training: TrainingSpec,
}

/// One layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// Fully connected layer on `[features]` input.
    Linear {
        /// Output features.
        out: usize,
        /// Whether to add a bias.
        #[serde(default = "yes")]
        bias: bool,
    },
    /// 2-D convolution on `[channels, height, width]` input.
    Conv2d {
        /// Output channels.
        out_channels: usize,
        /// Square kernel size.
        kernel_size: usize,
        /// Stride.
        #[serde(default = "one")]
        stride: usize,
        /// Zero padding on each side.
        #[serde(default)]
        padding: usize,
    },
    /// Batch normalisation over features or channels.
    BatchNorm,
    /// Dropout with probability `p` while training.
    Dropout {
        /// Probability of dropping a value, in `[0, 1)`.
        p: f64,
    },
    /// ReLU.
    Relu,
    /// GELU.
    Gelu,
    /// Logistic sigmoid.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// Max pooling on `[channels, height, width]` input.
    MaxPool2d {
        /// Square window size.
        kernel_size: usize,
        /// Stride (default: the window size).
        stride: Option<usize>,
    },
    /// Average pooling on `[channels, height, width]` input.
    AvgPool2d {
        /// Square window size.
        kernel_size: usize,
        /// Stride (default: the window size).
        stride: Option<usize>,
    },
    /// Flattens `[channels, height, width]` to `[features]`.
    Flatten,
    /// `x + f(x)`, where `f` is the inner layers; they must keep the shape.
    Residual {
        /// The inner layers.
        layers: Vec<LayerSpec>,
    },
}

fn yes() -> bool {
    true
}

fn one() -> usize {
    1
}

impl LayerSpec {
    /// The layer's type name as written in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Linear { .. } => "linear",
            Self::Conv2d { .. } => "conv2d",
            Self::BatchNorm => "batch_norm",
            Self::Dropout { .. } => "dropout",
            Self::Relu => "relu",
            Self::Gelu => "gelu",
            Self::Sigmoid => "sigmoid",
            Self::Tanh => "tanh",
            Self::MaxPool2d { .. } => "max_pool2d",
            Self::AvgPool2d { .. } => "avg_pool2d",
            Self::Flatten => "flatten",
            Self::Residual { .. } => "residual",
        }
    }
}

/// The loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Softmax cross-entropy over `K` logits (`K >= 2`).
    CrossEntropy,
    /// Binary cross-entropy on one logit (two classes).
    BinaryCrossEntropy,
    /// Mean squared error against one-hot targets.
    Mse,
}

/// Which optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Stochastic gradient descent (with optional momentum).
    Sgd,
    /// Adam (L2 weight decay).
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
}

/// The optimizer and its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSpec {
    /// Which optimizer.
    pub kind: OptimizerKind,
    /// Learning rate.
    pub lr: f64,
    /// SGD momentum (0 for none).
    #[serde(default)]
    pub momentum: f64,
    /// Weight decay (0 for none).
    #[serde(default)]
    pub weight_decay: f64,
}

/// Training hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    /// Passes over the training data.
    pub epochs: usize,
    /// Samples per step.
    pub batch_size: usize,
    /// Seed of initialisation, shuffling and dropout.
    #[serde(default)]
    pub seed: u64,
    /// Fraction of the data held out for validation, stratified by class.
    #[serde(default = "default_validation")]
    pub validation_fraction: f64,
    /// Standardise every input value with the training split's mean and deviation.
    #[serde(default)]
    pub standardize: bool,
    /// Train with DP-SGD to this target ([`crate::dpsgd`]); in a job the manifest's
    /// `privacy` replaces whatever the spec says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<perun_core::DpTarget>,
}

fn default_validation() -> f64 {
    0.2
}

/// The shape of the activations between layers (per sample).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `[features]`.
    Flat(usize),
    /// `[channels, height, width]`.
    Image(usize, usize, usize),
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Flat(n) => write!(f, "[{n}]"),
            Self::Image(c, h, w) => write!(f, "[{c}, {h}, {w}]"),
        }
    }
}

/// Whether any layer (inside residual blocks too) is a batch norm.
fn has_batch_norm(layers: &[LayerSpec]) -> bool {
    layers.iter().any(|l| match l {
        LayerSpec::BatchNorm => true,
        LayerSpec::Residual { layers } => has_batch_norm(layers),
        _ => false,
    })
}

/// Largest sizes accepted, to keep a hostile spec from exhausting memory.
const MAX_UNITS: usize = 1 << 16;
const MAX_LAYERS: usize = 256;
/// Most values one sample's activations may hold after any layer.
const MAX_VALUES: usize = 1 << 24;
/// Most weights one layer may hold.
const MAX_WEIGHTS: usize = 1 << 28;

impl Shape {
    /// Values per sample.
    pub fn values(&self) -> usize {
        match *self {
            Self::Flat(n) => n,
            Self::Image(c, h, w) => c.saturating_mul(h).saturating_mul(w),
        }
    }
}

impl ModelSpec {
    /// Parses and validates a spec.
    pub fn from_json(bytes: &[u8]) -> Result<Self, MlError> {
        let spec: Self = serde_json::from_slice(bytes).map_err(|e| MlError::SpecJson(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// The spec as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The input shape as an activation shape.
    pub fn input(&self) -> Result<Shape, MlError> {
        let shape = match self.input_shape[..] {
            [n] if n > 0 => Shape::Flat(n),
            [c, h, w] if c > 0 && h > 0 && w > 0 => Shape::Image(c, h, w),
            _ => {
                return Err(MlError::Spec(format!(
                    "input_shape {:?} must be [features] or [channels, height, width] with sizes above 0",
                    self.input_shape
                )))
            }
        };
        if shape.values() > MAX_VALUES {
            return Err(MlError::Spec(format!(
                "input_shape {:?} holds more than {MAX_VALUES} values",
                self.input_shape
            )));
        }
        Ok(shape)
    }

    /// Checks every rule and returns the number of output units.
    pub fn validate(&self) -> Result<usize, MlError> {
        self.checked().map(|(outputs, _)| outputs)
    }

    /// [`ModelSpec::validate`], and what the walk through the layers counted.
    fn checked(&self) -> Result<(usize, Walk), MlError> {
        if self.schema != SPEC_SCHEMA {
            return Err(MlError::Spec(format!("schema {} is not supported (expected {SPEC_SCHEMA})", self.schema)));
        }
        let t = &self.training;
        if t.epochs == 0 || t.epochs > 10_000 {
            return Err(MlError::Spec(format!("training.epochs must be 1..=10000, not {}", t.epochs)));
        }
        if t.batch_size == 0 || t.batch_size > 65_536 {
            return Err(MlError::Spec(format!("training.batch_size must be 1..=65536, not {}", t.batch_size)));
        }
        if !(0.0..0.9).contains(&t.validation_fraction) {
            return Err(MlError::Spec(format!(
                "training.validation_fraction must be in [0, 0.9), not {}",
                t.validation_fraction
            )));
        }
        if let Some(p) = &t.privacy {
            p.check().map_err(|e| MlError::Spec(format!("training.{e}")))?;
            if t.standardize {
                return Err(MlError::Spec(
                    "training.privacy: standardize fits means and deviations to the training data, which DP-SGD \
                     does not protect: set standardize to false (the manifest may: --hyper standardize=false)"
                        .into(),
                ));
            }
            if has_batch_norm(&self.layers) {
                return Err(MlError::Spec(
                    "training.privacy: DP-SGD needs per-sample gradients, and batch_norm mixes the samples of a \
                     batch: use no batch_norm layer"
                        .into(),
                ));
            }
        }
        let o = &self.optimizer;
        if !(o.lr.is_finite() && o.lr > 0.0 && o.lr <= 10.0) {
            return Err(MlError::Spec(format!("optimizer.lr must be in (0, 10], not {}", o.lr)));
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return Err(MlError::Spec(format!("optimizer.momentum must be in [0, 1), not {}", o.momentum)));
        }
        if !(0.0..1.0).contains(&o.weight_decay) {
            return Err(MlError::Spec(format!("optimizer.weight_decay must be in [0, 1), not {}", o.weight_decay)));
        }
        if o.momentum > 0.0 && o.kind != OptimizerKind::Sgd {
            return Err(MlError::Spec("optimizer.momentum applies to sgd only".into()));
        }
        if self.layers.is_empty() {
            return Err(MlError::Spec("the model has no layers".into()));
        }
        let mut walk = Walk::default();
        let out = infer(&self.layers, self.input()?, "", &mut walk)?;
        let Shape::Flat(k) = out else {
            return Err(MlError::Spec(format!("the last layer outputs {out}: end with flatten and linear")));
        };
        match self.loss {
            Loss::CrossEntropy | Loss::Mse if k < 2 => {
                Err(MlError::Spec(format!("{:?} needs at least 2 outputs, the model has {k}", self.loss)))
            }
            Loss::BinaryCrossEntropy if k != 1 => {
                Err(MlError::Spec(format!("binary_cross_entropy needs exactly 1 output, the model has {k}")))
            }
            _ => Ok((k, walk)),
        }
    }

    /// Multiply-accumulates of one sample's forward pass through the linear and
    /// convolution layers (`in x out` per linear layer, `out_channels x out_height x
    /// out_width x in_channels x kernel^2` per convolution); the rest is elementwise and
    /// left out. The engine rule ([`crate::backend::Engine::for_workload`]) uses it.
    ///
    /// # Errors
    /// As [`ModelSpec::validate`], for a spec whose layers do not fit.
    pub fn macs_per_sample(&self) -> Result<u64, MlError> {
        self.checked().map(|(_, walk)| walk.macs)
    }

    /// Number of classes the model predicts.
    pub fn classes(&self) -> Result<usize, MlError> {
        let k = self.validate()?;
        Ok(if self.loss == Loss::BinaryCrossEntropy { 2 } else { k })
    }
}

/// What [`infer`] counts on its way through the layers.
#[derive(Default)]
pub(crate) struct Walk {
    /// Layers seen, residual blocks' inner layers included.
    layers: usize,
    /// Multiply-accumulates of one sample's forward pass (saturating).
    macs: u64,
}

/// Infers each layer's output shape, refusing the first layer that does not fit.
pub(crate) fn infer(layers: &[LayerSpec], mut shape: Shape, prefix: &str, walk: &mut Walk) -> Result<Shape, MlError> {
    for (i, layer) in layers.iter().enumerate() {
        walk.layers += 1;
        let index = format!("{prefix}{i}");
        let err = |why: String| MlError::Layer { index: index.clone(), kind: layer.kind(), why };
        if walk.layers > MAX_LAYERS {
            return Err(err(format!("a model may have at most {MAX_LAYERS} layers")));
        }
        let units = |n: usize, what: &str| {
            if n == 0 || n > MAX_UNITS {
                Err(err(format!("{what} must be 1..={MAX_UNITS}, not {n}")))
            } else {
                Ok(n)
            }
        };
        shape = match (layer, &shape) {
            (LayerSpec::Linear { out, .. }, Shape::Flat(n)) => {
                let out = units(*out, "out")?;
                if n.saturating_mul(out) > MAX_WEIGHTS {
                    return Err(err(format!("{n} x {out} weights exceed {MAX_WEIGHTS}")));
                }
                walk.macs = walk.macs.saturating_add(n.saturating_mul(out) as u64);
                Shape::Flat(out)
            }
            (LayerSpec::Linear { .. }, Shape::Image(..)) => {
                return Err(err(format!("expects [features] input but gets {shape}: add a flatten layer before it")))
            }
            (LayerSpec::Conv2d { out_channels, kernel_size, stride, padding }, Shape::Image(c, h, w)) => {
                units(*out_channels, "out_channels")?;
                units(*kernel_size, "kernel_size")?;
                let weights = out_channels.saturating_mul(*c).saturating_mul(kernel_size.saturating_mul(*kernel_size));
                if weights > MAX_WEIGHTS {
                    return Err(err(format!("{weights} weights exceed {MAX_WEIGHTS}")));
                }
                units(*stride, "stride")?;
                if *padding > 64 {
                    return Err(err(format!("padding {padding} is above 64")));
                }
                let size = |x: usize| (x + 2 * padding).checked_sub(*kernel_size).map(|v| v / stride + 1);
                match (size(*h), size(*w)) {
                    (Some(oh), Some(ow)) if oh > 0 && ow > 0 => {
                        let per_output = c.saturating_mul(kernel_size.saturating_mul(*kernel_size));
                        let outputs = out_channels.saturating_mul(oh).saturating_mul(ow);
                        walk.macs = walk.macs.saturating_add(outputs.saturating_mul(per_output) as u64);
                        Shape::Image(*out_channels, oh, ow)
                    }
                    _ => {
                        return Err(err(format!(
                            "kernel {kernel_size} does not fit input {shape} with padding {padding}"
                        )))
                    }
                }
            }
            (
                LayerSpec::MaxPool2d { kernel_size, stride } | LayerSpec::AvgPool2d { kernel_size, stride },
                Shape::Image(c, h, w),
            ) => {
                units(*kernel_size, "kernel_size")?;
                let s = units(stride.unwrap_or(*kernel_size), "stride")?;
                if *kernel_size > *h || *kernel_size > *w {
                    return Err(err(format!("window {kernel_size} is larger than the input {shape}")));
                }
                Shape::Image(*c, (h - kernel_size) / s + 1, (w - kernel_size) / s + 1)
            }
            (LayerSpec::Conv2d { .. } | LayerSpec::MaxPool2d { .. } | LayerSpec::AvgPool2d { .. }, Shape::Flat(_)) => {
                return Err(err(format!("expects [channels, height, width] input but gets {shape}")))
            }
            (LayerSpec::Flatten, Shape::Image(c, h, w)) => Shape::Flat(c * h * w),
            (LayerSpec::Flatten, Shape::Flat(_)) => return Err(err("input is already flat".into())),
            (LayerSpec::Dropout { p }, _) => {
                if !(0.0..1.0).contains(p) {
                    return Err(err(format!("p must be in [0, 1), not {p}")));
                }
                shape
            }
            (LayerSpec::BatchNorm | LayerSpec::Relu | LayerSpec::Gelu | LayerSpec::Sigmoid | LayerSpec::Tanh, _) => {
                shape
            }
            (LayerSpec::Residual { layers }, _) => {
                if layers.is_empty() {
                    return Err(err("a residual block needs at least one layer".into()));
                }
                let inner = infer(layers, shape.clone(), &format!("{index}."), walk)?;
                if inner != shape {
                    return Err(err(format!(
                        "its layers turn {shape} into {inner}; a residual block must keep the shape"
                    )));
                }
                shape
            }
        };
        if shape.values() > MAX_VALUES {
            return Err(MlError::Layer {
                index,
                kind: layer.kind(),
                why: format!("its output {shape} holds more than {MAX_VALUES} values per sample"),
            });
        }
    }
    Ok(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(input: &[usize], layers: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "schema": 1, "name": "t", "input_shape": input, "layers": layers,
            "loss": "cross_entropy", "optimizer": {"kind": "adam", "lr": 0.001},
            "training": {"epochs": 1, "batch_size": 8}
        })
    }

    fn check(v: serde_json::Value) -> Result<usize, MlError> {
        ModelSpec::from_json(v.to_string().as_bytes()).map(|s| s.validate().unwrap())
    }

    #[test]
    fn shapes_flow_through_a_cnn() {
        let v = spec(
            &[3, 32, 32],
            serde_json::json!([
                {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1}, {"type": "relu"},
                {"type": "max_pool2d", "kernel_size": 2},
                {"type": "residual", "layers": [{"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1}, {"type": "batch_norm"}]},
                {"type": "flatten"}, {"type": "linear", "out": 10}
            ]),
        );
        assert_eq!(check(v).unwrap(), 10);
    }

    #[test]
    fn bad_specs_name_the_layer_and_reason() {
        let cases = [
            (
                spec(&[30], serde_json::json!([{"type": "conv2d", "out_channels": 4, "kernel_size": 3}])),
                "layer 0 (conv2d)",
            ),
            (spec(&[1, 8, 8], serde_json::json!([{"type": "linear", "out": 4}])), "add a flatten"),
            (
                spec(
                    &[1, 8, 8],
                    serde_json::json!([{"type": "conv2d", "out_channels": 4, "kernel_size": 9}, {"type": "flatten"}, {"type": "linear", "out": 2}]),
                ),
                "does not fit",
            ),
            (
                spec(
                    &[30],
                    serde_json::json!([{"type": "linear", "out": 4}, {"type": "residual", "layers": [{"type": "linear", "out": 3}]}, {"type": "linear", "out": 2}]),
                ),
                "layer 1 (residual)",
            ),
            (
                spec(&[30], serde_json::json!([{"type": "dropout", "p": 1.5}, {"type": "linear", "out": 2}])),
                "p must be",
            ),
            (spec(&[30], serde_json::json!([{"type": "linear", "out": 0}])), "out must be"),
            (spec(&[30], serde_json::json!([{"type": "linear", "out": 1}])), "at least 2 outputs"),
            (spec(&[30], serde_json::json!([{"type": "softmax2"}])), "unknown variant"),
            (spec(&[0], serde_json::json!([{"type": "linear", "out": 2}])), "input_shape"),
            (
                spec(&[65536, 65536, 65536], serde_json::json!([{"type": "flatten"}, {"type": "linear", "out": 2}])),
                "more than",
            ),
            (
                spec(&[4096], serde_json::json!([{"type": "linear", "out": 65536}, {"type": "linear", "out": 65536}])),
                "weights exceed",
            ),
            (
                spec(
                    &[3, 64, 64],
                    serde_json::json!([{"type": "conv2d", "out_channels": 65536, "kernel_size": 1}, {"type": "flatten"}, {"type": "linear", "out": 2}]),
                ),
                "more than",
            ),
        ];
        for (v, want) in cases {
            let e = check(v).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should mention {want:?}");
        }
        let mut v = spec(&[30], serde_json::json!([{"type": "linear", "out": 2}]));
        v["optimizer"]["lr"] = serde_json::json!(-1.0);
        assert!(check(v).unwrap_err().to_string().contains("lr"));
        let mut v = spec(&[30], serde_json::json!([{"type": "linear", "out": 2}]));
        v["training"]["epochs"] = serde_json::json!(0);
        assert!(check(v).unwrap_err().to_string().contains("epochs"));
        let mut v = spec(&[30], serde_json::json!([{"type": "linear", "out": 2}]));
        v["smuggled_code"] = serde_json::json!("import os");
        assert!(check(v).unwrap_err().to_string().contains("unknown field"));
    }
}
