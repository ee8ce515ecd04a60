//! `--repeat N`: run the same benchmarks N times and report each phase's
//! lowest, median and highest throughput and 99th percentile latency, since
//! one run on a shared machine says little about the next.

use super::{OpKind, PhaseReport, RepeatSummary, RunOutcome, Spread};
use crate::error::{BenchError, Result};

/// Run `once` `times` times. The phases of every run are kept, named
/// `<phase> #k` when there is more than one run; a run cut short by failed
/// background work ends the repetition. Returns all phases and, for more
/// than one run, each phase's spread.
pub fn repeat(
    times: usize,
    mut once: impl FnMut() -> Result<RunOutcome>,
) -> Result<(RunOutcome, Vec<RepeatSummary>)> {
    if times == 0 {
        return Err(BenchError::InvalidArgument(
            "--repeat 0: a benchmark runs at least once".into(),
        ));
    }
    let mut runs: Vec<Vec<PhaseReport>> = Vec::new();
    let mut last = None;
    for _ in 0..times {
        let mut outcome = once()?;
        runs.push(std::mem::take(&mut outcome.phases));
        let stop = outcome.cut_short.is_some() || outcome.check().is_err();
        last = Some(outcome);
        if stop {
            break;
        }
    }
    let Some(last) = last else {
        return Err(BenchError::InvalidArgument("--repeat: nothing ran".into()));
    };
    let summaries = if times > 1 {
        summarize(&runs)
    } else {
        Vec::new()
    };
    let mut all = Vec::new();
    for (k, phases) in runs.into_iter().enumerate() {
        for mut p in phases {
            if times > 1 {
                p.result.name = format!("{} #{}", p.result.name, k + 1);
            }
            all.push(p);
        }
    }
    Ok((
        RunOutcome {
            phases: all,
            ..last
        },
        summaries,
    ))
}

/// Each phase's spread over the `runs` (each run's phases, by name), in the
/// order phases first appear.
fn summarize(runs: &[Vec<PhaseReport>]) -> Vec<RepeatSummary> {
    let mut names: Vec<&str> = Vec::new();
    for p in runs.iter().flatten() {
        if !names.contains(&p.result.name.as_str()) {
            names.push(&p.result.name);
        }
    }
    names
        .into_iter()
        .filter_map(|name| {
            let same: Vec<&PhaseReport> = runs
                .iter()
                .flatten()
                .filter(|p| p.result.name == name)
                .collect();
            let rates: Vec<f64> = same.iter().map(|p| p.result.ops_per_sec).collect();
            let mut ops: Vec<OpKind> = Vec::new();
            for l in same.iter().flat_map(|p| &p.result.latency) {
                if !ops.contains(&l.op) {
                    ops.push(l.op);
                }
            }
            let p99_us = ops
                .into_iter()
                .filter_map(|op| {
                    let v: Vec<f64> = same
                        .iter()
                        .flat_map(|p| &p.result.latency)
                        .filter(|l| l.op == op)
                        .map(|l| l.p99_us)
                        .collect();
                    Spread::of(&v).map(|s| (op, s))
                })
                .collect();
            Some(RepeatSummary {
                phase: name.to_string(),
                runs: same.len(),
                ops_per_sec: Spread::of(&rates)?,
                p99_us,
            })
        })
        .collect()
}

/// The spread table for stdout.
pub fn describe(summaries: &[RepeatSummary]) -> String {
    let mut s = format!(
        "{:<20} {:>4} {:>12} {:>12} {:>12}   p99 latency (us) min / median / max\n",
        "phase", "runs", "ops/s min", "median", "max"
    );
    for r in summaries {
        let p99: Vec<String> = r
            .p99_us
            .iter()
            .map(|(op, l)| {
                format!(
                    "{} {:.1} / {:.1} / {:.1}",
                    op.name(),
                    l.min,
                    l.median,
                    l.max
                )
            })
            .collect();
        s.push_str(&format!(
            "{:<20} {:>4} {:>12.0} {:>12.0} {:>12.0}   {}\n",
            r.phase,
            r.runs,
            r.ops_per_sec.min,
            r.ops_per_sec.median,
            r.ops_per_sec.max,
            p99.join(", ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{BackgroundErrors, OpLatency, PhaseResult};

    fn phase(name: &str, ops_per_sec: f64, p99_us: f64) -> PhaseReport {
        PhaseReport {
            result: PhaseResult {
                name: name.into(),
                threads: 1,
                seconds: 1.0,
                ops: ops_per_sec as u64,
                ops_per_sec,
                mb_per_sec: 0.0,
                latency: vec![OpLatency {
                    op: OpKind::Read,
                    count: 1,
                    mean_us: p99_us,
                    p50_us: p99_us,
                    p99_us,
                    p999_us: p99_us,
                    max_us: p99_us,
                    cdf: vec![],
                }],
                timeline: vec![],
                timeline_ops_per_sec: vec![],
            },
            message: None,
            work: Default::default(),
            db_stats: crate::test_support::empty_stats(),
            offload_rates: Default::default(),
            service: None,
            background_errors: BackgroundErrors::default(),
        }
    }

    fn outcome(phases: Vec<PhaseReport>) -> RunOutcome {
        RunOutcome {
            phases,
            background_errors: BackgroundErrors::default(),
            cut_short: None,
        }
    }

    #[test]
    fn three_runs_give_each_phase_its_min_median_max() {
        let rates = [[100.0, 10.0], [300.0, 30.0], [200.0, 20.0]];
        let mut run = 0;
        let (all, summaries) = repeat(3, || {
            let [fill, read] = rates[run];
            run += 1;
            Ok(outcome(vec![
                phase("fillrandom", fill, fill / 10.0),
                phase("readrandom", read, read / 10.0),
            ]))
        })
        .unwrap();
        assert_eq!(run, 3);
        let names: Vec<&str> = all.phases.iter().map(|p| p.result.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "fillrandom #1",
                "readrandom #1",
                "fillrandom #2",
                "readrandom #2",
                "fillrandom #3",
                "readrandom #3"
            ]
        );
        assert_eq!(summaries.len(), 2);
        assert_eq!(summaries[0].phase, "fillrandom");
        assert_eq!(summaries[0].runs, 3);
        let f = summaries[0].ops_per_sec;
        assert_eq!((f.min, f.median, f.max), (100.0, 200.0, 300.0));
        let (op, p99) = summaries[1].p99_us[0];
        assert_eq!(op, OpKind::Read);
        assert_eq!((p99.min, p99.median, p99.max), (1.0, 2.0, 3.0));
        assert!(describe(&summaries).contains("readrandom"));
    }

    #[test]
    fn one_run_keeps_its_names_and_zero_runs_are_refused() {
        let (all, summaries) = repeat(1, || Ok(outcome(vec![phase("fillseq", 1.0, 1.0)]))).unwrap();
        assert_eq!(all.phases[0].result.name, "fillseq");
        assert!(summaries.is_empty());
        let e = repeat(0, || Ok(outcome(vec![]))).unwrap_err().to_string();
        assert!(e.contains("--repeat 0"), "{e}");
    }

    #[test]
    fn a_run_cut_short_ends_the_repetition() {
        let mut runs = 0;
        let (all, _) = repeat(5, || {
            runs += 1;
            Ok(RunOutcome {
                cut_short: Some("readrandom".into()),
                ..outcome(vec![phase("fillrandom", 1.0, 1.0)])
            })
        })
        .unwrap();
        assert_eq!(runs, 1);
        assert_eq!(all.cut_short.as_deref(), Some("readrandom"));
    }
}
