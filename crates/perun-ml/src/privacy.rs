//! The privacy accountant of DP-SGD: Rényi differential privacy (RDP) of the
//! Poisson-subsampled Gaussian mechanism, composed over the job's steps and converted to
//! (epsilon, delta).
//!
//! - RDP of the sampled Gaussian mechanism at integer orders: Mironov, Talwar and Zhang,
//!   "Rényi Differential Privacy of the Sampled Gaussian Mechanism" (2019), section 3.3.
//! - RDP to (epsilon, delta): Balle et al., "Hypothesis Testing Interpretations and Rényi
//!   Differential Privacy" (AISTATS 2020), Proposition 12.
//!
//! With the same orders ([`ORDERS`]) it computes what Google's `dp-accounting`
//! (`dp_accounting.rdp.RdpAccountant`, add-or-remove-one neighbours) computes; the test
//! `tests/dp_accounting.rs` compares the two on a grid. Integer orders only: the
//! accountant's fractional orders would lower epsilon by a few percent, never raise it.

use std::fmt;

/// The RDP orders (alpha) the accountant minimises over.
pub const ORDERS: &[u32] = &[
    2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
    33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61,
    62, 63, 64, 80, 96, 128, 160, 192, 256, 384, 512,
];

/// The most steps the accountant composes.
pub const MAX_STEPS: u64 = 1_000_000_000;

/// Why the accountant cannot answer.
#[derive(Clone, Debug, PartialEq)]
pub enum PrivacyError {
    /// A parameter is out of its range (the message says which).
    InvalidParameter(String),
    /// No noise multiplier up to 1000 reaches the target.
    Unreachable {
        /// The epsilon asked for.
        target_epsilon: f64,
        /// At this delta.
        delta: f64,
    },
}

impl fmt::Display for PrivacyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidParameter(m) => write!(f, "invalid privacy parameter: {m}"),
            Self::Unreachable { target_epsilon, delta } => write!(
                f,
                "epsilon {target_epsilon} at delta {delta} cannot be reached with a noise multiplier up to 1000: \
                 train fewer epochs, use larger data or a smaller batch, or ask a larger epsilon"
            ),
        }
    }
}

impl std::error::Error for PrivacyError {}

/// The privacy a mechanism spends: epsilon at delta, and the RDP order that gave it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spent {
    /// The privacy loss bound.
    pub epsilon: f64,
    /// The probability the bound fails.
    pub delta: f64,
    /// The RDP order at which the bound was tightest.
    pub order: u32,
}

fn check(q: f64, sigma: f64, steps: u64) -> Result<(), PrivacyError> {
    let bad = |m: &str| Err(PrivacyError::InvalidParameter(m.into()));
    if !(q.is_finite() && (0.0..=1.0).contains(&q)) {
        return bad("the sampling rate must be in [0, 1]");
    }
    if !(sigma.is_finite() && sigma > 0.0) {
        return bad("the noise multiplier must be positive");
    }
    if steps == 0 || steps > MAX_STEPS {
        return bad("steps must be 1 to 10^9");
    }
    Ok(())
}

/// `log(exp(a) + exp(b))`, stable.
fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// `log A_alpha` of the sampled Gaussian mechanism at integer `alpha`:
/// `log sum_{i=0}^{alpha} C(alpha, i) q^i (1-q)^(alpha-i) exp((i^2 - i) / (2 sigma^2))`.
fn log_a_int(q: f64, sigma: f64, alpha: u32) -> f64 {
    let a = f64::from(alpha);
    let (lq, l1q) = (q.ln(), (-q).ln_1p());
    let mut log_binom = 0.0f64;
    let mut log_a = f64::NEG_INFINITY;
    for i in 0..=alpha {
        let k = f64::from(i);
        if i > 0 {
            log_binom += (a - k + 1.0).ln() - k.ln();
        }
        let s = log_binom + k * lq + (a - k) * l1q + (k * k - k) / (2.0 * sigma * sigma);
        log_a = log_add(log_a, s);
    }
    log_a
}

/// The RDP of `steps` compositions of the Poisson-sampled Gaussian mechanism (sampling
/// rate `q`, noise multiplier `sigma`) at integer order `alpha` >= 2.
pub fn rdp(q: f64, sigma: f64, steps: u64, alpha: u32) -> f64 {
    let per_step = if q == 0.0 {
        0.0
    } else if q == 1.0 {
        f64::from(alpha) / (2.0 * sigma * sigma)
    } else {
        log_a_int(q, sigma, alpha) / (f64::from(alpha) - 1.0)
    };
    per_step * steps as f64
}

/// The epsilon at `delta` that `steps` DP-SGD steps spend with sampling rate `q` and
/// noise multiplier `sigma`: the minimum over [`ORDERS`] of Balle et al.'s conversion
/// `rdp + ln(1 - 1/alpha) - ln(delta * alpha) / (alpha - 1)`, 0 where the KL bound
/// already gives delta.
pub fn epsilon(q: f64, sigma: f64, steps: u64, delta: f64) -> Result<Spent, PrivacyError> {
    check(q, sigma, steps)?;
    if !(delta.is_finite() && delta > 0.0 && delta < 1.0) {
        return Err(PrivacyError::InvalidParameter("delta must be in (0, 1)".into()));
    }
    let mut best = Spent { epsilon: f64::INFINITY, delta, order: ORDERS[0] };
    for &alpha in ORDERS {
        let a = f64::from(alpha);
        let r = rdp(q, sigma, steps, alpha);
        let eps = if delta * delta + (-r).exp_m1() > 0.0 {
            0.0
        } else {
            r + (-1.0 / a).ln_1p() - (delta * a).ln() / (a - 1.0)
        };
        if eps < best.epsilon {
            best = Spent { epsilon: eps, delta, order: alpha };
        }
    }
    best.epsilon = best.epsilon.max(0.0);
    Ok(best)
}

/// The smallest noise multiplier (to a relative 1e-4, by bisection in log space between
/// 0.3 and 1000) with which `steps` steps at sampling rate `q` spend at most
/// `target_epsilon` at `delta`.
pub fn noise_multiplier(target_epsilon: f64, delta: f64, q: f64, steps: u64) -> Result<f64, PrivacyError> {
    if !(target_epsilon.is_finite() && target_epsilon > 0.0) {
        return Err(PrivacyError::InvalidParameter("epsilon must be positive".into()));
    }
    let spends = |sigma: f64| epsilon(q, sigma, steps, delta).map(|s| s.epsilon);
    let (mut lo, mut hi) = (0.3f64, 1000.0f64);
    if spends(hi)? > target_epsilon {
        return Err(PrivacyError::Unreachable { target_epsilon, delta });
    }
    if spends(lo)? <= target_epsilon {
        return Ok(lo);
    }
    while hi / lo > 1.0 + 1e-4 {
        let mid = (lo * hi).sqrt();
        if spends(mid)? <= target_epsilon {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_batches_are_the_gaussian_mechanism() {
        for (sigma, steps, alpha) in [(1.0, 1, 2), (2.0, 10, 8), (0.7, 100, 32)] {
            let want = steps as f64 * f64::from(alpha) / (2.0 * sigma * sigma);
            assert!((rdp(1.0, sigma, steps, alpha) - want).abs() < 1e-12);
        }
        // A sampling rate of 1 through the general sum gives the same.
        let general = log_a_int(1.0 - 1e-15, 1.5, 10) / 9.0;
        assert!((general - 10.0 / (2.0 * 2.25)).abs() < 1e-6, "{general}");
    }

    #[test]
    fn epsilon_falls_with_noise_and_grows_with_steps() {
        let e = |sigma, steps| epsilon(0.01, sigma, steps, 1e-5).unwrap().epsilon;
        assert!(e(0.8, 1000) > e(1.0, 1000) && e(1.0, 1000) > e(2.0, 1000));
        assert!(e(1.0, 100) < e(1.0, 1000) && e(1.0, 1000) < e(1.0, 10_000));
        assert_eq!(epsilon(0.0, 1.0, 10, 1e-5).unwrap().epsilon, 0.0);
    }

    #[test]
    fn the_noise_multiplier_meets_its_target_tightly() {
        for (eps, q, steps) in [(0.5, 0.07, 600), (1.0, 0.01, 10_000), (3.0, 0.07, 600), (8.0, 0.2, 100)] {
            let sigma = noise_multiplier(eps, 1e-5, q, steps).unwrap();
            let got = epsilon(q, sigma, steps, 1e-5).unwrap().epsilon;
            assert!(got <= eps && got > eps * 0.99, "{eps} {q} {steps}: sigma {sigma} spends {got}");
        }
        assert!(matches!(noise_multiplier(1e-6, 1e-5, 1.0, 1_000_000), Err(PrivacyError::Unreachable { .. })));
    }

    #[test]
    fn invalid_parameters_are_refused() {
        assert!(epsilon(1.5, 1.0, 10, 1e-5).is_err());
        assert!(epsilon(0.1, 0.0, 10, 1e-5).is_err());
        assert!(epsilon(0.1, f64::NAN, 10, 1e-5).is_err());
        assert!(epsilon(0.1, 1.0, 0, 1e-5).is_err());
        assert!(epsilon(0.1, 1.0, 10, 0.0).is_err());
        assert!(noise_multiplier(f64::INFINITY, 1e-5, 0.1, 10).is_err());
    }
}
