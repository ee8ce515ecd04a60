//! What the compaction service did, as reported with a phase: the engine's
//! counters ([`PlacementStats`]: printed with the engine's statistics, in
//! the JSON under `db_stats.placement`) and the figures derived from them
//! ([`ServiceSummary`], under `service`), which `csa-compare` reads back
//! from its runs' JSON reports.

use o3_compute::{PlacementReason, PlacementStats};
use serde::{Deserialize, Serialize};

/// The service's share of a phase's compactions and how its jobs went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceSummary {
    /// Compactions placed on the service, and here (flushes apart).
    pub remote_compactions: u64,
    pub local_compactions: u64,
    /// Flushes (always here: their memtables are here).
    pub flushes: u64,
    /// Decisions by reason ([`PlacementReason::name`]), in the engine's
    /// order, zeros left out.
    pub decisions: Vec<(String, u64)>,
    /// Remote jobs finished, given back (run here again) and epochs beyond
    /// the first (an agent died or failed the job).
    pub remote_done: u64,
    pub remote_given_back: u64,
    pub remote_retried_epochs: u64,
    /// Means over finished remote jobs, in milliseconds; `None` before any.
    pub mean_queue_wait_ms: Option<f64>,
    pub mean_exec_ms: Option<f64>,
    pub mean_round_trip_ms: Option<f64>,
    /// Bytes the agents read and wrote for this database.
    pub agent_bytes_read: u64,
    pub agent_bytes_written: u64,
    /// Whether the service was connected at the phase's end, and its last
    /// connection error.
    pub service_connected: bool,
    pub service_error: Option<String>,
}

impl ServiceSummary {
    /// The summary of `s`, or `None` when no service (nor other executor)
    /// was configured.
    pub fn of(s: &PlacementStats) -> Option<ServiceSummary> {
        if s.decisions.is_empty() {
            return None;
        }
        let count = |reason: PlacementReason| {
            s.decisions
                .iter()
                .filter(|(r, _)| *r == reason)
                .map(|(_, n)| n)
                .sum::<u64>()
        };
        let (remote, local) = s.remote_and_local();
        let flushes = count(PlacementReason::LocalFlush);
        let mean_ms =
            |micros: u64| (s.remote_done > 0).then(|| micros as f64 / s.remote_done as f64 / 1e3);
        Some(ServiceSummary {
            remote_compactions: remote,
            local_compactions: local,
            flushes,
            decisions: s
                .decisions
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| (r.name().to_string(), *n))
                .collect(),
            remote_done: s.remote_done,
            remote_given_back: s.remote_failed,
            remote_retried_epochs: s.remote_retries,
            mean_queue_wait_ms: mean_ms(s.remote_queue_wait_micros),
            mean_exec_ms: mean_ms(s.remote_exec_micros),
            mean_round_trip_ms: mean_ms(s.remote_round_trip_micros),
            agent_bytes_read: s.remote_bytes_read,
            agent_bytes_written: s.remote_bytes_written,
            service_connected: s.service_connected,
            service_error: s.service_error.clone(),
        })
    }

    /// The section for stdout, each line starting with `indent`.
    pub fn describe(&self, indent: &str) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
        let reasons: Vec<String> = self
            .decisions
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let mut s = format!(
            "{indent}compactions: {} remote, {} local ({}); {} flush(es) here\n",
            self.remote_compactions,
            self.local_compactions,
            reasons.join(", "),
            self.flushes
        );
        s.push_str(&format!(
            "{indent}remote jobs: {} done, {} given back, {} retried epoch(s); mean queue wait {}, execution {}, round trip {}\n",
            self.remote_done,
            self.remote_given_back,
            self.remote_retried_epochs,
            ms(self.mean_queue_wait_ms),
            ms(self.mean_exec_ms),
            ms(self.mean_round_trip_ms)
        ));
        s.push_str(&format!(
            "{indent}agents read {}, wrote {}\n",
            crate::offload::bytes(self.agent_bytes_read),
            crate::offload::bytes(self.agent_bytes_written)
        ));
        if let Some(e) = &self.service_error {
            s.push_str(&format!("{indent}last service error: {e}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_service_has_no_summary() {
        assert_eq!(ServiceSummary::of(&PlacementStats::default()), None);
    }

    #[test]
    fn counts_split_compactions_from_flushes_and_means_are_per_finished_job() {
        let s = PlacementStats {
            decisions: PlacementReason::ALL
                .iter()
                .map(|r| {
                    let n = match r {
                        PlacementReason::RemoteBusyAndFaster => 3,
                        PlacementReason::RemotePreferred => 1,
                        PlacementReason::LocalEstimate => 2,
                        PlacementReason::LocalFlush => 5,
                        _ => 0,
                    };
                    (*r, n)
                })
                .collect(),
            remote_done: 4,
            remote_failed: 1,
            remote_retries: 2,
            remote_queue_wait_micros: 4_000,
            remote_exec_micros: 40_000,
            remote_round_trip_micros: 48_000,
            remote_bytes_read: 1 << 20,
            remote_bytes_written: 2 << 20,
            ..PlacementStats::default()
        };
        let summary = ServiceSummary::of(&s).unwrap();
        assert_eq!(
            (
                summary.remote_compactions,
                summary.local_compactions,
                summary.flushes
            ),
            (4, 2, 5)
        );
        assert_eq!(summary.decisions.len(), 4);
        assert_eq!(summary.decisions[0], ("remote_preferred".to_string(), 1));
        assert_eq!(summary.mean_queue_wait_ms, Some(1.0));
        assert_eq!(summary.mean_exec_ms, Some(10.0));
        assert_eq!(summary.mean_round_trip_ms, Some(12.0));
        let text = summary.describe("  ");
        assert!(text.contains("4 remote, 2 local"), "{text}");
        assert!(text.contains("1 given back, 2 retried"), "{text}");
        let back: ServiceSummary =
            serde_json::from_value(serde_json::to_value(&summary).unwrap()).unwrap();
        assert_eq!(back, summary);
    }
}
