//! What memtable offloading did, as reported with a phase: the engine's
//! counters ([`OffloadStats`]: printed with the engine's statistics, in the
//! JSON under `db_stats.offload`) and the rates derived from them
//! ([`OffloadRates`], under `offload_rates`).

use o3_compute::OffloadStats;
use serde::Serialize;

/// Rates derived from [`OffloadStats`]; `None` where nothing was counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OffloadRates {
    /// Bytes shipped per second of shipping. Shipping time is summed over
    /// the shipping threads, so this is the rate of one thread; several
    /// threads together ship faster.
    pub shipping_bytes_per_sec: Option<f64>,
    /// Mean latency of a delegated `get` (one call per memory node per
    /// lookup), in microseconds.
    pub delegated_get_mean_us: Option<f64>,
    /// Mean latency of a delegated `scan` batch, in microseconds.
    pub delegated_scan_mean_us: Option<f64>,
    /// Share of lookups that consulted the key→offset cache and were
    /// answered by it.
    pub cache_hit_rate: Option<f64>,
    /// Mean latency of a one-sided read of a cached entry, in microseconds.
    pub one_sided_read_mean_us: Option<f64>,
    /// Mean time to pull an image back, in microseconds.
    pub pull_back_mean_us: Option<f64>,
}

impl OffloadRates {
    pub fn of(s: &OffloadStats) -> OffloadRates {
        let mean = |micros: u64, n: u64| (n > 0).then(|| micros as f64 / n as f64);
        OffloadRates {
            shipping_bytes_per_sec: (s.shipping_micros > 0)
                .then(|| s.bytes_shipped as f64 * 1e6 / s.shipping_micros as f64),
            delegated_get_mean_us: mean(s.delegated_get_micros, s.delegated_gets),
            delegated_scan_mean_us: mean(s.delegated_scan_micros, s.delegated_scans),
            cache_hit_rate: mean(s.cache_hits, s.cache_hits + s.cache_misses),
            one_sided_read_mean_us: mean(s.one_sided_read_micros, s.one_sided_reads),
            pull_back_mean_us: mean(s.pull_back_micros, s.images_pulled_back),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_offloaded_has_no_rates() {
        assert_eq!(
            OffloadRates::of(&OffloadStats::default()),
            OffloadRates::default()
        );
    }

    #[test]
    fn rates_are_bytes_over_shipping_time_and_mean_latencies() {
        let s = OffloadStats {
            images_shipped: 4,
            bytes_shipped: 8 << 20,
            shipping_micros: 500_000,
            delegated_gets: 10,
            delegated_get_micros: 125,
            cache_hits: 3,
            cache_misses: 1,
            one_sided_reads: 3,
            one_sided_read_micros: 6,
            ..OffloadStats::default()
        };
        let r = OffloadRates::of(&s);
        assert_eq!(r.cache_hit_rate, Some(0.75));
        assert_eq!(r.one_sided_read_mean_us, Some(2.0));
        assert_eq!(r.pull_back_mean_us, None);
        assert_eq!(r.shipping_bytes_per_sec, Some(16.0 * 1_048_576.0));
        assert_eq!(r.delegated_get_mean_us, Some(12.5));
        assert_eq!(r.delegated_scan_mean_us, None);
    }
}
