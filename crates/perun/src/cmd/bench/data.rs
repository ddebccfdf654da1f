//! Data the benchmarks make for themselves.

use anyhow::Result;

/// `n` random images of CIFAR-10's shape (3x32x32) with random labels of 10 classes.
pub fn cifar_shaped(n: usize, seed: u64) -> Result<perun_seal::Dataset> {
    use rand::{Rng as _, SeedableRng as _};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Ok(perun_seal::Dataset::new(
        (0..n * 3 * 32 * 32).map(|_| rng.gen::<f32>()).collect(),
        vec![3, 32, 32],
        (0..n).map(|_| rng.gen_range(0..10)).collect(),
        (0..10).map(|i| i.to_string()).collect(),
        Vec::new(),
        None,
    )?)
}
