//! What memtable offloading did, as reported with a phase: the engine's
//! counters ([`OffloadStats`], in the JSON under `db_stats.offload`) and the
//! rates derived from them ([`OffloadRates`], under `offload_rates`).

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
}

impl OffloadRates {
    pub fn of(s: &OffloadStats) -> OffloadRates {
        let mean = |micros: u64, n: u64| (n > 0).then(|| micros as f64 / n as f64);
        OffloadRates {
            shipping_bytes_per_sec: (s.shipping_micros > 0)
                .then(|| s.bytes_shipped as f64 * 1e6 / s.shipping_micros as f64),
            delegated_get_mean_us: mean(s.delegated_get_micros, s.delegated_gets),
            delegated_scan_mean_us: mean(s.delegated_scan_micros, s.delegated_scans),
        }
    }
}

/// The offload section for stdout, indented under a phase; empty when
/// offloading did nothing (it is off, or nothing was sealed yet).
pub fn describe_offload_stats(s: &OffloadStats) -> String {
    if *s == OffloadStats::default() {
        return String::new();
    }
    let r = OffloadRates::of(s);
    let mib = |b: u64| b as f64 / 1_048_576.0;
    let or_dash = |v: Option<f64>, unit: &str| match v {
        Some(v) => format!("{v:.1} {unit}"),
        None => "-".to_string(),
    };
    let mut out = format!(
        "  offload: shipped {} images, {:.1} MiB in {:.3} s of shipping ({} per thread); on the memory node now {} images, {:.1} MiB\n",
        s.images_shipped,
        mib(s.bytes_shipped),
        s.shipping_micros as f64 / 1e6,
        or_dash(r.shipping_bytes_per_sec.map(|b| b / 1_048_576.0), "MiB/s"),
        s.images_offloaded,
        mib(s.bytes_offloaded),
    );
    out.push_str(&format!(
        "  offload: refused (no room) {}, ship failures {}; delegated gets {} (mean {}), filter skips {}, delegated scans {} (mean {}); read back {:.1} MiB; released {}\n",
        s.refused_no_room,
        s.ship_failures,
        s.delegated_gets,
        or_dash(r.delegated_get_mean_us, "µs"),
        s.filter_skips,
        s.delegated_scans,
        or_dash(r.delegated_scan_mean_us, "µs"),
        mib(s.read_back_bytes),
        s.images_released,
    ));
    out.push_str(&format!(
        "  offload: memory node failures {}, images rebuilt {}, last error: {}\n",
        s.memory_node_failures,
        s.images_rebuilt,
        s.last_error.as_deref().unwrap_or("none"),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_offloaded_prints_nothing_and_has_no_rates() {
        assert_eq!(describe_offload_stats(&OffloadStats::default()), "");
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
            images_offloaded: 3,
            bytes_offloaded: 6 << 20,
            delegated_gets: 10,
            delegated_get_micros: 125,
            images_released: 1,
            last_error: Some("memory node 10.0.0.1:7380: timed out".into()),
            ..OffloadStats::default()
        };
        let r = OffloadRates::of(&s);
        assert_eq!(r.shipping_bytes_per_sec, Some(16.0 * 1_048_576.0));
        assert_eq!(r.delegated_get_mean_us, Some(12.5));
        assert_eq!(r.delegated_scan_mean_us, None);
        let text = describe_offload_stats(&s);
        assert_eq!(text.lines().count(), 3, "{text}");
        for needle in [
            "shipped 4 images, 8.0 MiB in 0.500 s of shipping (16.0 MiB/s per thread)",
            "on the memory node now 3 images, 6.0 MiB",
            "delegated gets 10 (mean 12.5 µs)",
            "delegated scans 0 (mean -)",
            "released 1",
            "last error: memory node 10.0.0.1:7380: timed out",
        ] {
            assert!(text.contains(needle), "{text} lacks {needle}");
        }
    }
}
