//! Poisson sampling of DP-SGD's batches and the noise of each step, both seeded by (seed, step), so that a
//! resumed run draws what an uninterrupted one would.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Separates this stream from the other uses of the run's seed.
const SAMPLING_TAG: u64 = 0x6470_2d73_616d_706c;

/// The records of step `step`: each of `records` independently with probability `rate`, so that the batch
/// size varies around `rate * records` and may be 0 (a step of noise only).
pub fn poisson_batch(records: usize, rate: f64, seed: u64, step: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SAMPLING_TAG);
    rng.set_stream(step);
    (0..records).filter(|_| rng.random::<f64>() < rate).collect()
}

/// The libtorch seed of step `step` (its dropout masks, then its noise).
pub fn step_seed(seed: u64, step: u64) -> i64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SAMPLING_TAG.rotate_left(17));
    rng.set_stream(step);
    (rng.random::<u64>() >> 1) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_follow_seed_and_step_and_have_the_rate() {
        assert_eq!(poisson_batch(1000, 0.05, 7, 3), poisson_batch(1000, 0.05, 7, 3));
        assert_ne!(poisson_batch(1000, 0.05, 7, 3), poisson_batch(1000, 0.05, 7, 4));
        assert_ne!(poisson_batch(1000, 0.05, 7, 3), poisson_batch(1000, 0.05, 8, 3));
        assert_ne!(step_seed(7, 3), step_seed(7, 4));
        let drawn: usize = (0..200).map(|step| poisson_batch(1000, 0.05, 1, step).len()).sum();
        // 200 steps x 1000 records x 0.05 = 10,000 expected, standard deviation about 97.
        assert!((9_600..10_400).contains(&drawn), "{drawn}");
        assert!(poisson_batch(10, 0.0, 1, 1).is_empty());
    }
}
