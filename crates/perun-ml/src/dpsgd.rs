//! DP-SGD: differentially private training steps (Abadi et al., "Deep Learning with
//! Differential Privacy", CCS 2016, Algorithm 1).
//!
//! Each step samples its batch by Poisson sampling (every training sample joins with
//! probability `q = batch_size / n`), computes each sample's gradient on its own, clips it
//! to L2 norm `C` (the manifest's `max_grad_norm`), sums, adds Gaussian noise of standard
//! deviation `sigma * C` to every coordinate and divides by the expected batch size
//! `q * n` (as Opacus does). The noise multiplier `sigma` is derived from the target
//! (epsilon, delta) for the job's `q` and steps by the Rényi-DP accountant
//! ([`crate::privacy`]).
//!
//! Sampling and noise come from the operating system's generator (a ChaCha stream seeded
//! from it), never from the spec's seed: whoever knows the noise can subtract it.
//! BatchNorm mixes the samples of a batch, so a DP job refuses it.

use burn::module::{Module as _, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use perun_core::receipt::PrivacySpent;
use perun_core::DpTarget;
use rand::{Rng as _, SeedableRng as _};

use crate::network::Network;
use crate::{privacy, MlError};

/// A job's DP-SGD schedule, fixed before the first step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpPlan {
    /// The manifest's target.
    pub target: DpTarget,
    /// Poisson sampling rate per step.
    pub sample_rate: f64,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// Steps of the whole job.
    pub steps: u64,
    /// The derived noise multiplier.
    pub noise_multiplier: f64,
}

impl DpPlan {
    /// The plan for `n` training samples, batches of `batch_size` and `epochs` epochs.
    ///
    /// Errors: [`MlError::Privacy`] when the target cannot be met (for example an
    /// epsilon so small that even a noise multiplier of 1000 exceeds it).
    pub fn new(target: DpTarget, n: usize, batch_size: usize, epochs: usize) -> Result<Self, MlError> {
        if n == 0 || batch_size == 0 {
            return Err(MlError::Data("DP-SGD needs training samples and a batch size".into()));
        }
        let sample_rate = (batch_size as f64 / n as f64).min(1.0);
        let steps_per_epoch = n.div_ceil(batch_size).max(1);
        let steps = (steps_per_epoch as u64).saturating_mul(epochs as u64);
        let noise_multiplier = privacy::noise_multiplier(target.epsilon, target.delta, sample_rate, steps)
            .map_err(|e| MlError::Privacy(e.to_string()))?;
        Ok(Self { target, sample_rate, steps_per_epoch, steps, noise_multiplier })
    }

    /// What the plan spends after `steps` steps: the accountant's epsilon at the target's delta.
    pub fn spent(&self, steps: u64) -> Result<PrivacySpent, MlError> {
        let epsilon = if steps == 0 {
            0.0
        } else {
            privacy::epsilon(self.sample_rate, self.noise_multiplier, steps, self.target.delta)
                .map_err(|e| MlError::Privacy(e.to_string()))?
                .epsilon
        };
        Ok(PrivacySpent {
            target: self.target,
            noise_multiplier: self.noise_multiplier,
            sample_rate: self.sample_rate,
            steps,
            epsilon,
        })
    }
}

/// The operating system's randomness for sampling and noise.
pub(crate) fn secret_rng() -> rand::rngs::StdRng {
    rand::rngs::StdRng::from_entropy()
}

/// One Poisson-sampled batch of `0..n`.
pub(crate) fn poisson_batch(rng: &mut rand::rngs::StdRng, n: usize, q: f64) -> Vec<usize> {
    (0..n).filter(|_| rng.gen_bool(q.clamp(0.0, 1.0))).collect()
}

/// The sum of squares of every gradient `grads` holds for `net`'s parameters.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    parts: Vec<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.parts.push(g.square().sum());
        }
    }
}

/// `sum += scale * grads`, parameter by parameter.
struct Accumulate<'a> {
    sum: &'a mut GradientsParams,
    grads: GradientsParams,
    scale: f32,
}

impl ModuleVisitor for Accumulate<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            let g = g.mul_scalar(self.scale);
            let next = match self.sum.remove::<D>(param.id) {
                Some(s) => s + g,
                None => g,
            };
            self.sum.register(param.id, next);
        }
    }
}

/// `sum = (sum + N(0, std^2)) / divisor` for every parameter (a parameter no sample
/// reached gets noise alone).
struct NoiseAndAverage<'a> {
    sum: &'a mut GradientsParams,
    std: f64,
    divisor: f32,
    rng: &'a mut rand::rngs::StdRng,
}

impl ModuleVisitor for NoiseAndAverage<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let shape = value.shape();
        let noise: Vec<f32> = (0..shape.num_elements()).map(|_| (gaussian(self.rng) * self.std) as f32).collect();
        let device = self.sum.get::<D>(param.id).map_or_else(|| value.inner().device(), |s| s.device());
        let noise = Tensor::<D>::from_data(TensorData::new(noise, shape), &device);
        let next = match self.sum.remove::<D>(param.id) {
            Some(s) => s + noise,
            None => noise,
        };
        self.sum.register(param.id, next.div_scalar(self.divisor));
    }
}

/// A standard normal draw (Box-Muller on two uniforms in (0, 1]).
fn gaussian(rng: &mut rand::rngs::StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The accumulator of one DP-SGD step.
pub(crate) struct Step {
    sum: GradientsParams,
    max_grad_norm: f64,
}

impl Step {
    pub(crate) fn new(max_grad_norm: f64) -> Self {
        Self { sum: GradientsParams::new(), max_grad_norm }
    }

    /// Adds one sample's gradient, clipped to the plan's norm; returns its norm before
    /// clipping.
    pub(crate) fn add(&mut self, net: &Network, grads: GradientsParams) -> f64 {
        let mut norm = SquaredNorm { grads: &grads, parts: Vec::new() };
        net.visit(&mut norm);
        let total = norm.parts.into_iter().reduce(|a, b| a + b);
        let squared = total.map_or(0.0, |t| f64::from(t.into_scalar::<f32>()));
        let l2 = squared.max(0.0).sqrt();
        let scale = (self.max_grad_norm / (l2 + 1e-6)).min(1.0) as f32;
        net.visit(&mut Accumulate { sum: &mut self.sum, grads, scale });
        l2
    }

    /// The noised, averaged gradient to step with.
    pub(crate) fn finish(
        mut self,
        net: &Network,
        plan: &DpPlan,
        n: usize,
        rng: &mut rand::rngs::StdRng,
    ) -> GradientsParams {
        let expected = (plan.sample_rate * n as f64).max(1.0) as f32;
        let std = plan.noise_multiplier * self.max_grad_norm;
        net.visit(&mut NoiseAndAverage { sum: &mut self.sum, std, divisor: expected, rng });
        self.sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_meets_its_target_and_poisson_batches_average_q_n() {
        let target = DpTarget { epsilon: 3.0, delta: 1e-5, max_grad_norm: 1.0 };
        let plan = DpPlan::new(target, 455, 32, 20).unwrap();
        assert_eq!(plan.steps_per_epoch, 15);
        assert_eq!(plan.steps, 300);
        let spent = plan.spent(plan.steps).unwrap();
        assert!(spent.epsilon <= 3.0 && spent.epsilon > 2.9, "{spent:?}");
        // Fewer steps spend less.
        assert!(plan.spent(100).unwrap().epsilon < spent.epsilon);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let total: usize = (0..200).map(|_| poisson_batch(&mut rng, 455, plan.sample_rate).len()).sum();
        let mean = total as f64 / 200.0;
        assert!((mean - 32.0).abs() < 2.0, "{mean}");
        // Unreachable targets are refused with the reason.
        let tiny = DpTarget { epsilon: 1e-6, ..target };
        assert!(matches!(DpPlan::new(tiny, 455, 455, 1000), Err(MlError::Privacy(_))));
    }

    #[test]
    fn gaussian_draws_have_unit_variance() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let xs: Vec<f64> = (0..20_000).map(|_| gaussian(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{mean} {var}");
    }
}
