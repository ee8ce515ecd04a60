//! The composed strategies run by the simulator: every preset, picker,
//! trigger and granularity keeps the tree valid (the simulator checks
//! non-overlap and input levels after every compaction), concurrent plans
//! never share or overlap work, and the presets show the design space's
//! expected trade-offs.

use o3_storage::compaction::{
    BusyFiles, CompactionOptions, FilePicker, FlushStream, Granularity, Layout, LeveledOptions,
    Preset, SimReport, Simulator, SimulatorOptions, Trigger,
};

/// A small tree: 4 KiB files, L1 16 KiB, ×4 per level.
fn options(preset: Preset) -> CompactionOptions {
    CompactionOptions {
        preset,
        levels: LeveledOptions {
            num_levels: 5,
            l0_compaction_trigger: 4,
            max_bytes_for_level_base: 16 * 1024,
            max_bytes_for_level_multiplier: 4.0,
            target_file_size_base: 4 * 1024,
            target_file_size_multiplier: 1,
            max_compaction_bytes: 64 * 1024,
        },
        runs_per_tier: 4,
        max_file_age_ms: 40_000,
        tombstone_ttl_ms: 20_000,
        ..CompactionOptions::default()
    }
}

fn sim_options() -> SimulatorOptions {
    SimulatorOptions {
        shard_splits: vec![u64::MAX / 3, u64::MAX / 3 * 2],
        ..SimulatorOptions::default()
    }
}

fn run(o: &CompactionOptions, flushes: usize, overwrite: f64, delete: f64) -> SimReport {
    let mut sim = Simulator::new(o, sim_options()).unwrap();
    for batch in FlushStream::new(64, overwrite, delete, 42).take(flushes) {
        sim.flush(&batch).unwrap_or_else(|e| panic!("{o:?}: {e}"));
    }
    sim.report()
}

#[test]
fn every_preset_keeps_the_tree_valid() {
    for &preset in Preset::ALL {
        let r = run(&options(preset), 300, 0.5, 0.1);
        assert!(r.compactions > 0, "{preset}: {r:?}");
        assert!(r.write_amplification() >= 1.0, "{preset}: {r:?}");
    }
}

#[test]
fn every_picker_trigger_and_granularity_keeps_the_tree_valid() {
    for &picker in FilePicker::ALL {
        for &granularity in Granularity::ALL {
            let o = CompactionOptions {
                picker: Some(picker),
                granularity: Some(granularity),
                ..options(Preset::OneLeveling)
            };
            let r = run(&o, 150, 0.5, 0.2);
            assert!(r.compactions > 0, "{picker}/{granularity}: {r:?}");
        }
    }
    for &trigger in Trigger::ALL {
        for layout in [Layout::Leveling, Layout::Tiering] {
            let o = CompactionOptions {
                layouts: Some(vec![layout; 4]),
                triggers: Some(vec![
                    Trigger::SortedRunCount,
                    Trigger::LevelSaturation,
                    trigger,
                ]),
                ..options(Preset::OneLeveling)
            };
            let r = run(&o, 150, 0.5, 0.2);
            assert!(r.compactions > 0, "{trigger}/{layout}: {r:?}");
        }
    }
}

/// Write amplification at the end and space amplification averaged over
/// every flush (it swings between merges), on a tree of four levels that
/// the data fills.
fn run_sampled(preset: Preset) -> (f64, f64) {
    let o = CompactionOptions {
        levels: LeveledOptions {
            num_levels: 4,
            ..options(preset).levels
        },
        ..options(preset)
    };
    let mut sim = Simulator::new(&o, sim_options()).unwrap();
    let mut space = 0.0;
    let flushes = 400;
    for batch in FlushStream::new(64, 0.7, 0.1, 42).take(flushes) {
        sim.flush(&batch).unwrap();
        space += sim.report().space_amplification();
    }
    (sim.report().write_amplification(), space / flushes as f64)
}

#[test]
fn tiering_writes_less_and_keeps_more_than_leveling() {
    let (wa_leveling, _) = run_sampled(Preset::Leveling);
    let (wa_one, space_one) = run_sampled(Preset::OneLeveling);
    let (wa_lazy, _) = run_sampled(Preset::LazyLeveling);
    let (wa_tiering, space_tiering) = run_sampled(Preset::Tiering);
    assert!(wa_tiering < wa_one, "{wa_tiering} {wa_one}");
    assert!(wa_lazy < wa_one, "{wa_lazy} {wa_one}");
    assert!(wa_one <= wa_leveling, "{wa_one} {wa_leveling}");
    assert!(space_tiering > space_one, "{space_tiering} {space_one}");
}

#[test]
fn tombstone_triggers_clear_deletes_sooner() {
    // Delete-heavy; a tree deep enough that tombstones wait in upper levels.
    let base = CompactionOptions {
        picker: Some(FilePicker::LeastOverlapParent),
        ..options(Preset::OneLeveling)
    };
    let ttl = CompactionOptions {
        triggers: Some(vec![Trigger::LevelSaturation, Trigger::TombstoneTtl]),
        ..base.clone()
    };
    let density = CompactionOptions {
        picker: Some(FilePicker::TombstoneDensity),
        ..base.clone()
    };
    let plain = run(&base, 300, 0.2, 0.4);
    let by_ttl = run(&ttl, 300, 0.2, 0.4);
    let by_density = run(&density, 300, 0.2, 0.4);
    assert!(
        by_ttl.tombstones < plain.tombstones,
        "{by_ttl:?}\n{plain:?}"
    );
    assert!(
        by_density.tombstones <= plain.tombstones,
        "{by_density:?}\n{plain:?}"
    );
    assert!(
        by_ttl
            .by_reason
            .iter()
            .any(|(r, n)| *n > 0 && *r == o3_storage::compaction::CompactionReason::TombstoneTtl)
    );
}

#[test]
fn space_amplification_trigger_bounds_space() {
    let o = options(Preset::Tiering);
    let r = run(&o, 400, 0.8, 0.0);
    let without = CompactionOptions {
        triggers: Some(vec![Trigger::SortedRunCount]),
        ..o.clone()
    };
    let w = run(&without, 400, 0.8, 0.0);
    assert!(
        r.space_amplification() <= w.space_amplification(),
        "{r:?}\n{w:?}"
    );
}

#[test]
fn presets_and_primitives_parse_from_names() {
    let o: CompactionOptions = serde_json_like("lazy-leveling");
    assert_eq!(o.preset, Preset::LazyLeveling);
    let e = "size-tiered".parse::<Preset>().unwrap_err().to_string();
    assert!(
        e.contains("valid: leveling, tiering, one-leveling, lazy-leveling, hybrid"),
        "{e}"
    );
}

/// A configuration whose preset is given by name, as a config file has it.
fn serde_json_like(preset: &str) -> CompactionOptions {
    CompactionOptions {
        preset: preset.parse().unwrap(),
        ..CompactionOptions::default()
    }
}

mod concurrent {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// With compactions lagging behind flushes, a plan picked while
        /// another runs never reads its files, and running both, in either
        /// order, keeps the tree valid (no overlap in any deeper level,
        /// every input read from its level).
        #[test]
        fn concurrent_plans_are_disjoint_and_valid(
            preset in 0usize..Preset::ALL.len(),
            picker in 0usize..FilePicker::ALL.len(),
            seed in 0u64..1000,
            rounds in 5usize..40,
            first_then_second in any::<bool>(),
        ) {
            let o = CompactionOptions {
                picker: Some(FilePicker::ALL[picker]),
                ..options(Preset::ALL[preset])
            };
            let strategy = o.build().unwrap();
            let mut sim = Simulator::new(&o, sim_options()).unwrap();
            let mut stream = FlushStream::new(64, 0.4, 0.2, seed);
            for _ in 0..rounds {
                for _ in 0..6 {
                    sim.flush_only(&stream.next().unwrap());
                }
                let version = sim.version().clone();
                let Some(first) = strategy.pick(&version, &BusyFiles::new()) else {
                    continue;
                };
                let busy: BusyFiles = first.file_numbers().collect();
                let second = strategy.pick(&version, &busy);
                let mut order = vec![first];
                if let Some(second) = second {
                    prop_assert!(second.file_numbers().all(|n| !busy.contains(&n)));
                    order.push(second);
                }
                if !first_then_second {
                    order.reverse();
                }
                for plan in &order {
                    sim.compact(plan).map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
            }
            sim.compact_until_settled().map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
    }
}
