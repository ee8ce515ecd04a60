//! Adaptive shard boundaries: which split keys the key-range shards should
//! have, learned from the keys actually written.
//!
//! The write leader shows every written key to a [`ShardBalancer`] (under
//! the state lock it already holds). The balancer keeps a uniform sample of
//! the keys of the current *window* (reservoir sampling: one random number
//! per write, a key copied only when it enters the sample) and, once the
//! window has seen [`ShardBalanceOptions::window_writes`] writes, judges the
//! current split keys by the sample:
//!
//! - fewer (or more) shards than [`crate::DbOptions::shard_count`]: split
//!   into that many at the sample's quantiles — a new adaptive database
//!   starts with one shard and splits once it has seen enough keys;
//! - else, when the busiest shard took more than
//!   [`ShardBalanceOptions::skew_threshold`] times its fair share (`1 /
//!   shards`) of the window's writes, re-split at the quantiles — but only
//!   when the new keys would close at least half of the gap between that
//!   share and the fair one (one hot key cannot be split; moving boundaries
//!   for a small gain costs a flush of every shard), and not within
//!   [`ShardBalanceOptions::cooldown_windows`] windows of the last change
//!   (so the boundaries do not flap).
//!
//! Changing the boundaries is `reshard`'s job; this module only decides.

use o3_storage::job::shard_of;
use o3_storage::{Error, Result};

/// How an adaptive database ([`crate::DbOptions::adaptive_shards`]) moves
/// its shard boundaries.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardBalanceOptions {
    /// Writes in one observation window: the layout is judged at the end of
    /// each. The first split of a new database happens at the end of its
    /// first window.
    pub window_writes: u64,
    /// Keys sampled per window (quantiles are read from them).
    pub sample_size: usize,
    /// A re-split when the busiest shard took more than this times its fair
    /// share of a window's writes (above 1; with `n` shards no shard can
    /// take more than `n` times its share, so with two shards the default
    /// 1.5 means 75% of the writes).
    pub skew_threshold: f64,
    /// Windows after a change in which the layout is not changed again.
    pub cooldown_windows: u32,
}

impl Default for ShardBalanceOptions {
    fn default() -> Self {
        ShardBalanceOptions {
            window_writes: 100_000,
            sample_size: 1024,
            skew_threshold: 1.5,
            cooldown_windows: 2,
        }
    }
}

impl ShardBalanceOptions {
    /// Check the options, naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.window_writes == 0 {
            return bad("shard_balance.window_writes must be at least 1".into());
        }
        if self.sample_size < 2 {
            return bad(format!(
                "shard_balance.sample_size {} is below 2 (quantiles need keys)",
                self.sample_size
            ));
        }
        if !(self.skew_threshold > 1.0 && self.skew_threshold.is_finite()) {
            return bad(format!(
                "shard_balance.skew_threshold {} must be a finite number above 1 \
                 (a multiple of the fair share 1/shards)",
                self.skew_threshold
            ));
        }
        Ok(())
    }
}

/// Split keys cutting `sample` into `shards` parts of (about) equal size:
/// the keys at the `i/shards` quantiles, `i = 1..shards`. Duplicates
/// collapse (a key heavier than one part yields fewer shards), and a split
/// at the smallest key sampled would leave an empty first shard, so it is
/// left out; the result is strictly increasing and has no empty key. Fewer
/// than `shards` distinct keys give fewer splits; an empty sample none.
pub fn choose_splits(sample: &[Vec<u8>], shards: usize) -> Vec<Vec<u8>> {
    let mut keys: Vec<&[u8]> = sample.iter().map(|k| k.as_slice()).collect();
    keys.sort_unstable();
    let Some(&first) = keys.first() else {
        return Vec::new();
    };
    let mut splits: Vec<Vec<u8>> = Vec::new();
    for i in 1..shards {
        let key = keys[i * keys.len() / shards];
        if key == first || key.is_empty() || splits.last().is_some_and(|s| s.as_slice() >= key) {
            continue;
        }
        splits.push(key.to_vec());
    }
    splits
}

/// The largest fraction of `sample` that falls into one shard of `splits`.
pub fn max_share(sample: &[Vec<u8>], splits: &[Vec<u8>]) -> f64 {
    if sample.is_empty() {
        return 0.0;
    }
    let mut counts = vec![0usize; splits.len() + 1];
    for k in sample {
        counts[shard_of(splits, k) as usize] += 1;
    }
    counts.into_iter().max().unwrap_or(0) as f64 / sample.len() as f64
}

/// The sampling state of an adaptive database (in `DbState`).
#[derive(Debug)]
pub(crate) struct ShardBalancer {
    options: ShardBalanceOptions,
    /// The target number of shards.
    shards: usize,
    sample: Vec<Vec<u8>>,
    /// Writes seen in the current window.
    seen: u64,
    /// Windows still to pass before the layout may change again.
    cooldown: u32,
    /// xorshift64 state (the sample needs uniform draws, not secrets).
    rng: u64,
}

impl ShardBalancer {
    pub(crate) fn new(options: ShardBalanceOptions, shards: usize) -> ShardBalancer {
        ShardBalancer {
            sample: Vec::with_capacity(options.sample_size),
            options,
            shards,
            seen: 0,
            cooldown: 0,
            rng: 0x2545_f491_4f6c_dd1d,
        }
    }

    /// Count one write of `key` (reservoir sampling, algorithm R).
    #[inline]
    pub(crate) fn observe(&mut self, key: &[u8]) {
        self.seen += 1;
        if self.sample.len() < self.options.sample_size {
            self.sample.push(key.to_vec());
            return;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let j = self.rng % self.seen;
        if let Some(slot) = self.sample.get_mut(j as usize) {
            slot.clear();
            slot.extend_from_slice(key);
        }
    }

    /// At the end of a window (else `None` at once): the split keys the
    /// shards should move to, or `None` to keep `current`. Starts the next
    /// window either way.
    pub(crate) fn end_of_window(&mut self, current: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
        if self.seen < self.options.window_writes {
            return None;
        }
        let decision = self.judge(current);
        self.sample.clear();
        self.seen = 0;
        self.cooldown = self.cooldown.saturating_sub(1);
        decision
    }

    fn judge(&self, current: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
        if self.cooldown > 0 {
            return None;
        }
        let proposed = choose_splits(&self.sample, self.shards);
        if proposed == current {
            return None;
        }
        if current.len() + 1 != self.shards {
            // The first split (or a changed target): only if it does
            // produce another layout.
            return (proposed.len() != current.len()).then_some(proposed);
        }
        let fair = 1.0 / self.shards as f64;
        let now = max_share(&self.sample, current);
        if now <= self.options.skew_threshold * fair {
            return None;
        }
        let then = max_share(&self.sample, &proposed);
        (then <= (now + fair) / 2.0).then_some(proposed)
    }

    /// The layout changed: start a fresh window and the cool-down.
    pub(crate) fn changed(&mut self) {
        self.sample.clear();
        self.seen = 0;
        self.cooldown = self.options.cooldown_windows;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ks: &[&str]) -> Vec<Vec<u8>> {
        ks.iter().map(|k| k.as_bytes().to_vec()).collect()
    }

    #[test]
    fn splits_are_the_quantiles_of_the_sample() {
        let sample: Vec<Vec<u8>> = (0..100u32)
            .rev()
            .map(|i| format!("k{i:03}").into_bytes())
            .collect();
        assert_eq!(choose_splits(&sample, 4), keys(&["k025", "k050", "k075"]));
        assert_eq!(choose_splits(&sample, 2), keys(&["k050"]));
        assert_eq!(choose_splits(&sample, 1), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn duplicate_keys_collapse_into_fewer_shards() {
        // "h" is 80% of the writes: it cannot be cut, so at most one split
        // lands on it.
        let mut sample = keys(&["a", "b"]);
        sample.extend(std::iter::repeat_n(b"h".to_vec(), 8));
        let splits = choose_splits(&sample, 4);
        assert_eq!(splits, keys(&["h"]));
        // Every key the same: nothing to split at.
        assert!(choose_splits(&keys(&["x", "x", "x", "x"]), 4).is_empty());
    }

    #[test]
    fn tiny_and_empty_samples_give_what_they_can() {
        assert!(choose_splits(&[], 8).is_empty());
        assert!(choose_splits(&keys(&["m"]), 8).is_empty());
        assert_eq!(choose_splits(&keys(&["b", "a"]), 8), keys(&["b"]));
        assert_eq!(choose_splits(&keys(&["c", "a", "b"]), 8), keys(&["b", "c"]));
    }

    #[test]
    fn splits_are_strictly_increasing_and_never_empty() {
        let sample = keys(&["", "", "", "a", "a", "b", "c", "c", "c", "d"]);
        for n in 1..12 {
            let s = choose_splits(&sample, n);
            assert!(s.windows(2).all(|w| w[0] < w[1]), "{n}: {s:?}");
            assert!(s.iter().all(|k| !k.is_empty()), "{n}: {s:?}");
        }
    }

    #[test]
    fn max_share_counts_the_busiest_shard() {
        let sample = keys(&["a", "b", "c", "x"]);
        assert_eq!(max_share(&sample, &keys(&["m"])), 0.75);
        assert_eq!(max_share(&sample, &[]), 1.0);
        assert_eq!(max_share(&[], &[]), 0.0);
    }

    fn options(window: u64) -> ShardBalanceOptions {
        ShardBalanceOptions {
            window_writes: window,
            sample_size: 64,
            skew_threshold: 1.5,
            cooldown_windows: 1,
        }
    }

    #[test]
    fn a_new_database_splits_after_its_first_window() {
        let mut b = ShardBalancer::new(options(100), 4);
        for i in 0..99u32 {
            b.observe(format!("{:04}", i * 97 % 1000).as_bytes());
            assert_eq!(b.end_of_window(&[]), None);
        }
        b.observe(b"0500");
        let splits = b.end_of_window(&[]).expect("first split");
        assert_eq!(splits.len(), 3);
    }

    #[test]
    fn skew_moves_the_boundaries_and_cooldown_holds_them() {
        let mut b = ShardBalancer::new(options(200), 2);
        let current = keys(&["5"]);
        // Balanced: every write in "0".."9", half on each side.
        for i in 0..200u32 {
            b.observe(format!("{}", i % 10).as_bytes());
        }
        assert_eq!(b.end_of_window(&current), None);
        // Skewed: everything in "1x" keys, all in the lower shard.
        let hot = |b: &mut ShardBalancer| {
            for i in 0..200u32 {
                b.observe(format!("1{:03}", i).as_bytes());
            }
        };
        hot(&mut b);
        let moved = b.end_of_window(&current).expect("re-split");
        assert!(moved[0].starts_with(b"1"), "{moved:?}");
        b.changed();
        hot(&mut b);
        assert_eq!(b.end_of_window(&current), None, "cool-down");
        hot(&mut b);
        assert!(b.end_of_window(&current).is_some());
    }

    #[test]
    fn one_hot_key_does_not_cause_a_resplit() {
        let mut b = ShardBalancer::new(options(100), 2);
        let current = keys(&["m"]);
        for _ in 0..100 {
            b.observe(b"a");
        }
        assert_eq!(b.end_of_window(&current), None);
    }

    #[test]
    fn bad_options_are_named() {
        let mut o = ShardBalanceOptions::default();
        assert!(o.validate().is_ok());
        o.skew_threshold = 1.0;
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("skew_threshold"), "{e}");
        let o = ShardBalanceOptions {
            window_writes: 0,
            ..ShardBalanceOptions::default()
        };
        assert!(
            o.validate()
                .unwrap_err()
                .to_string()
                .contains("window_writes")
        );
    }
}
