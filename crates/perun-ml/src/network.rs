//! The Burn network built from a [`ModelSpec`].

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Gelu, Linear, LinearConfig, PaddingConfig2d, Relu, Sigmoid,
    Tanh,
};
use burn::tensor::{Device, Tensor};

use crate::spec::{LayerSpec, ModelSpec, Shape};
use crate::MlError;

/// Reshapes `[channels, height, width]` activations to `[features]`.
#[derive(Module, Debug, Default)]
pub struct Flatten;

/// `x + f(x)`.
#[derive(Module, Debug)]
pub struct Residual {
    /// The inner layers `f`.
    pub layers: Vec<Layer>,
}

/// One layer of a network.
#[derive(Module, Debug)]
#[allow(missing_docs)]
pub enum Layer {
    Linear(Linear),
    Conv2d(Conv2d),
    BatchNorm(BatchNorm),
    Dropout(Dropout),
    Relu(Relu),
    Gelu(Gelu),
    Sigmoid(Sigmoid),
    Tanh(Tanh),
    MaxPool2d(MaxPool2d),
    AvgPool2d(AvgPool2d),
    Flatten(Flatten),
    Residual(Residual),
}

/// The activations flowing between layers, with the batch as first dimension.
#[derive(Clone, Debug)]
pub enum Activation {
    /// `[batch, features]`.
    Flat(Tensor<2>),
    /// `[batch, channels, height, width]`.
    Image(Tensor<4>),
}

impl Activation {
    fn add(self, other: Self) -> Self {
        match (self, other) {
            (Self::Flat(a), Self::Flat(b)) => Self::Flat(a + b),
            (Self::Image(a), Self::Image(b)) => Self::Image(a + b),
            // Validation keeps residual blocks shape-preserving.
            (a, _) => a,
        }
    }

    /// The output logits `[batch, outputs]`.
    pub fn into_flat(self) -> Tensor<2> {
        match self {
            Self::Flat(t) => t,
            Self::Image(t) => t.flatten(1, 3),
        }
    }
}

/// A network: the layers built from a spec.
#[derive(Module, Debug)]
pub struct Network {
    /// The layers, in order.
    pub layers: Vec<Layer>,
}

impl Network {
    /// Builds the layers of a validated spec on `device`, initialised randomly.
    pub fn init(spec: &ModelSpec, device: &Device) -> Result<Self, MlError> {
        spec.validate()?;
        Ok(Self { layers: build(&spec.layers, spec.input()?, device) })
    }

    /// Runs the layers.
    pub fn forward(&self, x: Activation) -> Activation {
        forward(&self.layers, x)
    }
}

fn build(specs: &[LayerSpec], mut shape: Shape, device: &Device) -> Vec<Layer> {
    let mut layers = Vec::with_capacity(specs.len());
    for spec in specs {
        let (layer, next) = match (spec, &shape) {
            (LayerSpec::Linear { out, bias }, Shape::Flat(n)) => {
                (Layer::Linear(LinearConfig::new(*n, *out).with_bias(*bias).init(device)), Shape::Flat(*out))
            }
            (LayerSpec::Conv2d { out_channels, kernel_size, stride, padding }, Shape::Image(c, h, w)) => {
                let conv = Conv2dConfig::new([*c, *out_channels], [*kernel_size, *kernel_size])
                    .with_stride([*stride, *stride])
                    .with_padding(PaddingConfig2d::Explicit(*padding, *padding, *padding, *padding))
                    .init(device);
                let size = |x: usize| (x + 2 * padding - kernel_size) / stride + 1;
                (Layer::Conv2d(conv), Shape::Image(*out_channels, size(*h), size(*w)))
            }
            (LayerSpec::MaxPool2d { kernel_size, stride }, Shape::Image(c, h, w)) => {
                let s = stride.unwrap_or(*kernel_size);
                let pool = MaxPool2dConfig::new([*kernel_size, *kernel_size]).with_strides([s, s]).init();
                (Layer::MaxPool2d(pool), Shape::Image(*c, (h - kernel_size) / s + 1, (w - kernel_size) / s + 1))
            }
            (LayerSpec::AvgPool2d { kernel_size, stride }, Shape::Image(c, h, w)) => {
                let s = stride.unwrap_or(*kernel_size);
                let pool = AvgPool2dConfig::new([*kernel_size, *kernel_size]).with_strides([s, s]).init();
                (Layer::AvgPool2d(pool), Shape::Image(*c, (h - kernel_size) / s + 1, (w - kernel_size) / s + 1))
            }
            (LayerSpec::Flatten, Shape::Image(c, h, w)) => (Layer::Flatten(Flatten), Shape::Flat(c * h * w)),
            (LayerSpec::BatchNorm, Shape::Flat(n) | Shape::Image(n, ..)) => {
                (Layer::BatchNorm(BatchNormConfig::new(*n).init(device)), shape.clone())
            }
            (LayerSpec::Dropout { p }, _) => (Layer::Dropout(DropoutConfig::new(*p).init()), shape.clone()),
            (LayerSpec::Relu, _) => (Layer::Relu(Relu), shape.clone()),
            (LayerSpec::Gelu, _) => (Layer::Gelu(Gelu::default()), shape.clone()),
            (LayerSpec::Sigmoid, _) => (Layer::Sigmoid(Sigmoid), shape.clone()),
            (LayerSpec::Tanh, _) => (Layer::Tanh(Tanh), shape.clone()),
            (LayerSpec::Residual { layers }, _) => {
                (Layer::Residual(Residual { layers: build(layers, shape.clone(), device) }), shape.clone())
            }
            // `ModelSpec::validate` refuses every other pairing before we get here.
            (_, _) => continue,
        };
        layers.push(layer);
        shape = next;
    }
    layers
}

fn forward(layers: &[Layer], mut x: Activation) -> Activation {
    use Activation::{Flat, Image};
    for layer in layers {
        x = match (layer, x) {
            (Layer::Linear(l), Flat(t)) => Flat(l.forward(t)),
            (Layer::Conv2d(l), Image(t)) => Image(l.forward(t)),
            (Layer::MaxPool2d(l), Image(t)) => Image(l.forward(t)),
            (Layer::AvgPool2d(l), Image(t)) => Image(l.forward(t)),
            (Layer::Flatten(_), Image(t)) => Flat(t.flatten(1, 3)),
            (Layer::BatchNorm(l), Flat(t)) => Flat(l.forward(t)),
            (Layer::BatchNorm(l), Image(t)) => Image(l.forward(t)),
            (Layer::Dropout(l), Flat(t)) => Flat(l.forward(t)),
            (Layer::Dropout(l), Image(t)) => Image(l.forward(t)),
            (Layer::Relu(l), Flat(t)) => Flat(l.forward(t)),
            (Layer::Relu(l), Image(t)) => Image(l.forward(t)),
            (Layer::Gelu(l), Flat(t)) => Flat(l.forward(t)),
            (Layer::Gelu(l), Image(t)) => Image(l.forward(t)),
            (Layer::Sigmoid(l), Flat(t)) => Flat(l.forward(t)),
            (Layer::Sigmoid(l), Image(t)) => Image(l.forward(t)),
            (Layer::Tanh(l), Flat(t)) => Flat(l.forward(t)),
            (Layer::Tanh(l), Image(t)) => Image(l.forward(t)),
            (Layer::Residual(r), x) => forward(&r.layers, x.clone()).add(x),
            // Validated specs never pair a layer with the wrong input kind.
            (_, x) => x,
        };
    }
    x
}
