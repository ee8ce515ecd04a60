//! db_bench's `mixgraph`: gets, puts and seeks mixed by ratio, with the
//! distributions of RocksDB's workload-modelling paper (Cao et al., FAST
//! '20):
//!
//! - keys: uniform over `[0, num)`, or ranked by the power model
//!   `f(x) = a * x^b` (`--key_dist_a/b`): the inverse CDF of a uniform draw
//!   gives a rank, and the rank is hashed onto the key space so hot keys
//!   are scattered, not adjacent;
//! - key ranges (`--keyrange_num`, `--keyrange_dist_a..d`): the key space
//!   cut into equal ranges, range `x` (from 1) chosen with weight
//!   `a*exp(b*x) + c*exp(d*x)`, the ranges shuffled by a permutation fixed
//!   by the parameters (so every thread agrees), and the key inside the
//!   range drawn as above;
//! - put value sizes and seek scan lengths: the generalized Pareto inverse
//!   CDF `theta + sigma * (u^-k - 1) / k` (`theta - sigma * ln u` when
//!   `k = 0`), values at least 10 bytes and folded below
//!   `--mix_max_value_size`, scans folded below `--mix_max_scan_len`.
//!
//! - `--sine_mix_rate`: all threads together run `sine_a * sin(sine_b * t
//!   + sine_c) + sine_d` operations per second (`t` in seconds since the
//!   benchmark began), evaluated at the start of every
//!   `--sine_mix_rate_interval_milliseconds` ([`SineRate`]).
//!
//! Unlike db_bench, the operation, key, value size and scan length each
//! take their own uniform draw (db_bench derives several from one number,
//! which ties put value sizes to the key drawn), and the sine's rate is one
//! budget of operations (db_bench splits it into a read and a write
//! limiter by the get/seek and put ratios, which comes to the same mix).

use rand::Rng;
use serde::Serialize;

use super::options::DbBenchArgs;
use crate::error::{BenchError, Result};

/// mixgraph's parameters, resolved with db_bench's defaults.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MixGraphConfig {
    /// Get, put and seek shares, summing to 1.
    pub get_ratio: f64,
    pub put_ratio: f64,
    pub seek_ratio: f64,
    pub max_scan_len: u64,
    pub max_value_size: u64,
    pub key_dist_a: f64,
    pub key_dist_b: f64,
    /// `a, b, c, d` of the key-range hotness; all zero = one range.
    pub keyrange_dist: [f64; 4],
    pub keyrange_num: u64,
    /// `theta, k, sigma` of the value-size and scan-length distributions.
    pub value_pareto: [f64; 3],
    pub iter_pareto: [f64; 3],
    /// The sine-wave operation rate (`--sine_mix_rate`), if asked for.
    pub sine: Option<SineRate>,
}

/// db_bench's sine-wave rate: `a * sin(b * t + c) + d` operations per
/// second over all threads, `t` in seconds since the benchmark began,
/// re-evaluated at the start of every interval, with optional noise.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct SineRate {
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub d: f64,
    pub interval_ms: u64,
    /// Each evaluation moves by up to +/- `noise * a / 2`, uniformly.
    pub noise: f64,
}

impl SineRate {
    /// The rate for interval `k` (from `k * interval` on). A rate that
    /// comes out at or below zero is `None`: as db_bench, the previous
    /// rate stays.
    pub fn rate_for_interval(&self, k: u64) -> Option<f64> {
        let t = (k * self.interval_ms) as f64 / 1000.0;
        let base = self.a * (self.b * t + self.c).sin() + self.d;
        // Deterministic noise per interval: a hash of k as a uniform draw.
        let u = (mix64(k ^ 0x5151_e0e0) >> 11) as f64 / (1u64 << 53) as f64;
        let rate = base + (u - 0.5) * self.noise * self.a;
        (rate > 0.0 && rate.is_finite()).then_some(rate)
    }
}

impl MixGraphConfig {
    /// db_bench's defaults (those of its mixgraph paper for the Pareto
    /// parameters), checked.
    pub fn resolve(a: &DbBenchArgs, num: u64) -> Result<MixGraphConfig> {
        let bad = |m: String| Err(BenchError::InvalidArgument(m));
        let ratios = [
            a.mix_get_ratio.unwrap_or(1.0),
            a.mix_put_ratio.unwrap_or(0.0),
            a.mix_seek_ratio.unwrap_or(0.0),
        ];
        let sum: f64 = ratios.iter().sum();
        if ratios.iter().any(|r| !r.is_finite() || *r < 0.0) || sum <= 0.0 {
            return bad(format!(
                "--mix_get_ratio/--mix_put_ratio/--mix_seek_ratio {ratios:?} must be non-negative with a positive sum"
            ));
        }
        let keyrange_num = a.keyrange_num.unwrap_or(1);
        if keyrange_num == 0 || keyrange_num > num {
            return bad(format!(
                "--keyrange_num {keyrange_num} must lie in [1, --num {num}]"
            ));
        }
        let c = MixGraphConfig {
            get_ratio: ratios[0] / sum,
            put_ratio: ratios[1] / sum,
            seek_ratio: ratios[2] / sum,
            max_scan_len: a.mix_max_scan_len.unwrap_or(10_000),
            max_value_size: a.mix_max_value_size.unwrap_or(1024),
            key_dist_a: a.key_dist_a.unwrap_or(0.0),
            key_dist_b: a.key_dist_b.unwrap_or(0.0),
            keyrange_dist: [
                a.keyrange_dist_a.unwrap_or(0.0),
                a.keyrange_dist_b.unwrap_or(0.0),
                a.keyrange_dist_c.unwrap_or(0.0),
                a.keyrange_dist_d.unwrap_or(0.0),
            ],
            keyrange_num,
            value_pareto: [
                a.value_theta.unwrap_or(0.0),
                a.value_k.unwrap_or(0.2615),
                a.value_sigma.unwrap_or(25.45),
            ],
            iter_pareto: [
                a.iter_theta.unwrap_or(0.0),
                a.iter_k.unwrap_or(2.517),
                a.iter_sigma.unwrap_or(14.236),
            ],
            sine: sine_rate(a)?,
        };
        if c.max_scan_len == 0 || c.max_value_size == 0 || c.max_value_size > 64 << 20 {
            return bad(
                "--mix_max_scan_len must be at least 1 and --mix_max_value_size in [1, 64 MiB]"
                    .into(),
            );
        }
        let all = c
            .keyrange_dist
            .iter()
            .chain(&c.value_pareto)
            .chain(&c.iter_pareto)
            .chain([&c.key_dist_a, &c.key_dist_b]);
        if all.into_iter().any(|x| !x.is_finite()) {
            return bad("mixgraph distribution parameters must be finite numbers".into());
        }
        let ranges = c.keyrange_dist.iter().any(|x| *x != 0.0);
        if ranges && range_weights(&c.keyrange_dist, keyrange_num).last() <= Some(&0.0) {
            return bad(format!(
                "--keyrange_dist_a..d {:?} give every one of the {keyrange_num} key ranges weight 0",
                c.keyrange_dist
            ));
        }
        Ok(c)
    }

    fn power_keys(&self) -> bool {
        self.key_dist_a != 0.0 && self.key_dist_b != 0.0
    }
}

/// One mixgraph operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixOp {
    Get,
    Put,
    Seek,
}

/// Draws mixgraph's operations, keys, value sizes and scan lengths.
#[derive(Debug, Clone)]
pub struct MixGraph {
    cfg: MixGraphConfig,
    num: u64,
    /// Keys per range and, per range in key order, the cumulative weight up
    /// to and including it (empty: one range, uniform over ranges).
    range_keys: u64,
    cumulative: Vec<f64>,
}

impl MixGraph {
    pub fn new(cfg: &MixGraphConfig, num: u64) -> MixGraph {
        let cumulative = if cfg.keyrange_dist.iter().all(|x| *x == 0.0) {
            Vec::new()
        } else {
            range_weights(&cfg.keyrange_dist, cfg.keyrange_num)
        };
        MixGraph {
            cfg: cfg.clone(),
            num,
            range_keys: (num / cfg.keyrange_num).max(1),
            cumulative,
        }
    }

    pub fn op(&self, rng: &mut impl Rng) -> MixOp {
        let u: f64 = rng.random();
        if u < self.cfg.get_ratio {
            MixOp::Get
        } else if u < self.cfg.get_ratio + self.cfg.put_ratio {
            MixOp::Put
        } else {
            MixOp::Seek
        }
    }

    /// A key number in `[0, num)`.
    pub fn key(&self, rng: &mut impl Rng) -> u64 {
        if self.cumulative.is_empty() {
            return self.key_within(self.num, rng);
        }
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let pick = rng.random::<f64>() * total;
        let range = self
            .cumulative
            .partition_point(|&c| c <= pick)
            .min(self.cumulative.len() - 1) as u64;
        (range * self.range_keys + self.key_within(self.range_keys, rng)).min(self.num - 1)
    }

    /// A key offset in `[0, n)`: uniform, or the power model's rank hashed
    /// onto the range.
    fn key_within(&self, n: u64, rng: &mut impl Rng) -> u64 {
        if !self.cfg.power_keys() {
            return rng.random_range(0..n);
        }
        let u: f64 = rng.random();
        let rank = (u / self.cfg.key_dist_a)
            .powf(1.0 / self.cfg.key_dist_b)
            .ceil();
        let rank = if rank.is_finite() && rank >= 0.0 {
            rank as u64
        } else {
            u64::MAX
        };
        mix64(rank) % n
    }

    /// A put's value size: at least 10 bytes (as db_bench since 2022), at
    /// most `--mix_max_value_size`.
    pub fn value_size(&self, rng: &mut impl Rng) -> usize {
        let max = self.cfg.max_value_size;
        let mut v = pareto(rng.random(), self.cfg.value_pareto);
        if v > max {
            v %= max;
        }
        v.max(10.min(max)) as usize
    }

    /// Entries a seek reads after it, below `--mix_max_scan_len`.
    pub fn scan_len(&self, rng: &mut impl Rng) -> u64 {
        pareto(rng.random(), self.cfg.iter_pareto) % self.cfg.max_scan_len
    }
}

/// The generalized Pareto inverse CDF at `u`, rounded up (0 below zero,
/// saturating above).
/// `--sine_mix_rate` and its parameters, with db_bench's defaults, checked.
fn sine_rate(a: &DbBenchArgs) -> Result<Option<SineRate>> {
    if !a.sine_mix_rate.unwrap_or(false) {
        return Ok(None);
    }
    let s = SineRate {
        a: a.sine_a.unwrap_or(1.0),
        b: a.sine_b.unwrap_or(1.0),
        c: a.sine_c.unwrap_or(0.0),
        d: a.sine_d.unwrap_or(1.0),
        interval_ms: a.sine_mix_rate_interval_milliseconds.unwrap_or(10_000),
        noise: a.sine_mix_rate_noise.unwrap_or(0.0),
    };
    if [s.a, s.b, s.c, s.d].iter().any(|x| !x.is_finite()) {
        return Err(BenchError::InvalidArgument(
            "--sine_a/b/c/d must be finite numbers".into(),
        ));
    }
    if s.interval_ms == 0 || !(0.0..=1.0).contains(&s.noise) {
        return Err(BenchError::InvalidArgument(format!(
            "--sine_mix_rate_interval_milliseconds {} must be at least 1 and --sine_mix_rate_noise {} in [0, 1]",
            s.interval_ms, s.noise
        )));
    }
    if (0..1000).all(|k| s.rate_for_interval(k).is_none()) {
        return Err(BenchError::InvalidArgument(format!(
            "--sine_a {} --sine_b {} --sine_c {} --sine_d {} give no positive rate",
            s.a, s.b, s.c, s.d
        )));
    }
    Ok(Some(s))
}

fn pareto(u: f64, [theta, k, sigma]: [f64; 3]) -> u64 {
    let u = u.max(f64::MIN_POSITIVE);
    let x = if k == 0.0 {
        theta - sigma * u.ln()
    } else {
        theta + sigma * (u.powf(-k) - 1.0) / k
    };
    let x = x.ceil();
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= u64::MAX as f64 {
        u64::MAX
    } else {
        x as u64
    }
}

/// Cumulative weights of `n` equal key ranges in key order: range `x`
/// (from 1) weighs `a*exp(b*x) + c*exp(d*x)` (negative or negligible
/// weights count as 0), and the weights are dealt to the ranges by a
/// shuffle seeded from the parameters, so the hot ranges are not all at
/// one end of the key space.
fn range_weights(&[a, b, c, d]: &[f64; 4], n: u64) -> Vec<f64> {
    let mut weights: Vec<f64> = (1..=n)
        .map(|x| {
            let x = x as f64;
            let w = a * (b * x).exp() + c * (d * x).exp();
            if w.is_finite() && w > 1e-16 { w } else { 0.0 }
        })
        .collect();
    let mut state = [a, b, c, d].iter().fold(n, |h, p| mix64(h ^ p.to_bits()));
    for i in (1..weights.len()).rev() {
        state = mix64(state);
        weights.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let mut sum = 0.0;
    weights
        .into_iter()
        .map(|w| {
            sum += w;
            sum
        })
        .collect()
}

/// splitmix64's finalizer: a bijective scramble of 64 bits.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn config(args: DbBenchArgs, num: u64) -> MixGraphConfig {
        MixGraphConfig::resolve(&args, num).unwrap()
    }

    #[test]
    fn sine_flags_take_db_bench_s_defaults_and_bad_ones_are_named() {
        assert_eq!(config(DbBenchArgs::default(), 10).sine, None);
        let on = config(
            DbBenchArgs {
                sine_mix_rate: Some(true),
                ..Default::default()
            },
            10,
        );
        let s = on.sine.unwrap();
        assert_eq!(
            (s.a, s.b, s.c, s.d, s.interval_ms, s.noise),
            (1.0, 1.0, 0.0, 1.0, 10_000, 0.0)
        );
        for (args, needle) in [
            (
                DbBenchArgs {
                    sine_d: Some(-10.0),
                    ..Default::default()
                },
                "no positive rate",
            ),
            (
                DbBenchArgs {
                    sine_mix_rate_noise: Some(2.0),
                    ..Default::default()
                },
                "--sine_mix_rate_noise",
            ),
            (
                DbBenchArgs {
                    sine_mix_rate_interval_milliseconds: Some(0),
                    ..Default::default()
                },
                "--sine_mix_rate_interval_milliseconds",
            ),
        ] {
            let args = DbBenchArgs {
                sine_mix_rate: Some(true),
                ..args
            };
            let e = MixGraphConfig::resolve(&args, 10).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn ratios_are_normalized_and_drive_the_mix() {
        let c = config(
            DbBenchArgs {
                mix_get_ratio: Some(2.0),
                mix_put_ratio: Some(1.0),
                mix_seek_ratio: Some(1.0),
                ..Default::default()
            },
            1000,
        );
        assert_eq!((c.get_ratio, c.put_ratio, c.seek_ratio), (0.5, 0.25, 0.25));
        let g = MixGraph::new(&c, 1000);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            counts[g.op(&mut rng) as usize] += 1;
        }
        assert!((4700..5300).contains(&counts[0]), "{counts:?}");
        assert!((2200..2800).contains(&counts[1]), "{counts:?}");
        assert!((2200..2800).contains(&counts[2]), "{counts:?}");
        for bad in [Some(-1.0), Some(f64::NAN)] {
            let e = MixGraphConfig::resolve(
                &DbBenchArgs {
                    mix_put_ratio: bad,
                    ..Default::default()
                },
                10,
            )
            .unwrap_err();
            assert!(e.to_string().contains("mix_put_ratio"), "{e}");
        }
    }

    /// The power model concentrates accesses on few keys; uniform keys do
    /// not; both stay inside the key space.
    #[test]
    fn power_keys_are_skewed_and_uniform_keys_are_not() {
        // The share of the accesses that went to the 100 most used keys.
        let top_share = |a: f64, b: f64| {
            let c = config(
                DbBenchArgs {
                    key_dist_a: Some(a),
                    key_dist_b: Some(b),
                    ..Default::default()
                },
                100_000,
            );
            let g = MixGraph::new(&c, 100_000);
            let mut rng = SmallRng::seed_from_u64(7);
            let mut counts = std::collections::HashMap::new();
            for _ in 0..20_000 {
                let k = g.key(&mut rng);
                assert!(k < 100_000);
                *counts.entry(k).or_insert(0u32) += 1;
            }
            let mut counts: Vec<u32> = counts.into_values().collect();
            counts.sort_unstable_by(|x, y| y.cmp(x));
            counts.iter().take(100).sum::<u32>() as f64 / 20_000.0
        };
        let uniform = top_share(0.0, 0.0);
        // F(x) = 0.1 x^0.2: a quarter of the accesses on the first 100 ranks.
        let skewed = top_share(0.1, 0.2);
        assert!(uniform < 0.05, "{uniform}");
        assert!(skewed > 0.2, "{skewed}");
    }

    /// With key ranges, a range weighing far more than the others takes
    /// most accesses, wherever the shuffle put it.
    #[test]
    fn key_ranges_follow_their_weights() {
        let c = config(
            DbBenchArgs {
                keyrange_num: Some(10),
                keyrange_dist_a: Some(100.0),
                keyrange_dist_b: Some(-5.0),
                ..Default::default()
            },
            10_000,
        );
        let g = MixGraph::new(&c, 10_000);
        let mut rng = SmallRng::seed_from_u64(3);
        let mut per_range = [0u32; 10];
        for _ in 0..10_000 {
            per_range[(g.key(&mut rng) / 1000) as usize] += 1;
        }
        let hottest = per_range.iter().max().copied().unwrap_or(0);
        // exp(-5) against exp(-10) and less: the first range weighs ~99%.
        assert!(hottest > 9_500, "{per_range:?}");
        let e = MixGraphConfig::resolve(
            &DbBenchArgs {
                keyrange_num: Some(10),
                keyrange_dist_a: Some(-1.0),
                ..Default::default()
            },
            10_000,
        )
        .unwrap_err();
        assert!(e.to_string().contains("weight 0"), "{e}");
    }

    #[test]
    fn value_sizes_and_scan_lengths_stay_in_bounds() {
        let c = config(
            DbBenchArgs {
                mix_max_value_size: Some(300),
                mix_max_scan_len: Some(50),
                ..Default::default()
            },
            100,
        );
        let g = MixGraph::new(&c, 100);
        let mut rng = SmallRng::seed_from_u64(9);
        let sizes: Vec<usize> = (0..5000).map(|_| g.value_size(&mut rng)).collect();
        assert!(sizes.iter().all(|&s| (10..=300).contains(&s)));
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        // The paper's Pareto (k 0.2615, sigma 25.45) has mean ~34.5.
        assert!((25.0..50.0).contains(&mean), "{mean}");
        assert!((0..5000).all(|_| g.scan_len(&mut rng) < 50));
        assert_eq!(pareto(0.5, [0.0, 0.0, 10.0]), 7, "ceil(10 ln 2)");
        assert_eq!(pareto(1.0, [5.0, 0.5, 1.0]), 5);
    }
}
