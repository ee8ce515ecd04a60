//! `o3-bench offload-lookup`: point lookups that hit offloaded memtable
//! images, next to the same lookups in local memtables.
//!
//! Each variant loads `--num` keys (each once, in a seeded random order)
//! into a fresh database with small memtables while flushes are held back
//! ([`crate::sst_gate`]: no table can be created), so every sealed memtable
//! stays unflushed: with offloading on, all but the local budget's newest
//! ones are on the memory node; with it off, all are in local memory. Then
//! `--reads` random `get`s of keys written before the local budget's share
//! (so that with offloading they live in offloaded images) are timed one by
//! one. The same keys and the same lookups run in both variants. The
//! offloaded variant must really read through the memory node: the report
//! shows the images offloaded when the lookups start and the delegated
//! `get`s they caused (`OffloadStats::delegated_gets` before and after).

use std::time::{Duration, Instant};

use clap::Args;
use o3_compute::{Db, OffloadStats};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::dbbench::{ValueSource, make_key};
use crate::engine::{EngineArgs, EngineConfig};
use crate::error::{BenchError, Result};
use crate::offload::{OffloadConfig, bytes};
use crate::report::{
    BackgroundErrors, OpKind, PhaseReport, PhaseResult, RunOutcome, ThreadRecorder, progress_bar,
};
use crate::sst_gate::{GatedStorage, SstGate};

/// Memtable size unless `--write_buffer_size` says otherwise: small, so
/// the data spans many sealed memtables.
pub const DEFAULT_WRITE_BUFFER_SIZE: usize = 1 << 20;
/// How long offloading may take to settle after the load.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Offloading has settled when the count of offloaded images stayed the
/// same this long.
const SETTLED_AFTER: Duration = Duration::from_millis(300);

/// `o3-bench offload-lookup` flags (all optional so a config file can
/// supply them).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(rename_all = "snake_case")]
pub struct OffloadLookupArgs {
    /// Keys loaded (default 200000).
    #[arg(long)]
    pub num: Option<u64>,
    /// Lookups timed per variant (default 100000).
    #[arg(long)]
    pub reads: Option<u64>,
    /// Key bytes (default 16).
    #[arg(long)]
    pub key_size: Option<usize>,
    /// Value bytes (default 100).
    #[arg(long)]
    pub value_size: Option<usize>,
    /// Seed of the load order, the values and the lookups.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl OffloadLookupArgs {
    /// Flags given on the command line win over the config file.
    pub fn over(self, base: OffloadLookupArgs) -> OffloadLookupArgs {
        OffloadLookupArgs {
            num: self.num.or(base.num),
            reads: self.reads.or(base.reads),
            key_size: self.key_size.or(base.key_size),
            value_size: self.value_size.or(base.value_size),
            seed: self.seed.or(base.seed),
        }
    }

    pub fn resolve(self) -> Result<OffloadLookupConfig> {
        let c = OffloadLookupConfig {
            num: self.num.unwrap_or(200_000),
            reads: self.reads.unwrap_or(100_000),
            key_size: self.key_size.unwrap_or(16),
            value_size: self.value_size.unwrap_or(100),
            seed: self.seed.unwrap_or(0x5eed),
        };
        let bad = |m: &str| Err(BenchError::InvalidArgument(m.to_string()));
        if c.num == 0 || c.num > 1 << 32 {
            return bad("--num must lie in [1, 4294967296]");
        }
        if c.reads == 0 {
            return bad("--reads must be at least 1");
        }
        if c.key_size < 8 || c.key_size > 1 << 16 {
            return bad("--key_size must lie in [8, 65536] for offload-lookup");
        }
        if c.value_size > 64 << 20 {
            return bad("--value_size must be at most 64 MiB");
        }
        Ok(c)
    }
}

/// The engine flags' defaults for this experiment where the command line
/// and config file leave them unset: small memtables.
pub fn engine_defaults(args: EngineArgs) -> EngineArgs {
    EngineArgs {
        write_buffer_size: args.write_buffer_size.or(Some(DEFAULT_WRITE_BUFFER_SIZE)),
        ..args
    }
}

/// Resolved settings (reported verbatim).
#[derive(Debug, Clone, Serialize)]
pub struct OffloadLookupConfig {
    pub num: u64,
    pub reads: u64,
    pub key_size: usize,
    pub value_size: usize,
    pub seed: u64,
}

/// One variant's row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct LookupRow {
    /// `local memtables` or `offloaded images`.
    pub variant: String,
    pub lookups: u64,
    pub found: u64,
    /// Delegated `get` calls the lookups caused.
    pub delegated_gets: u64,
    /// Images and their bytes on the memory node when the lookups started.
    pub images_offloaded: u64,
    pub bytes_offloaded: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// What the experiment concluded (the JSON report's `summary`).
#[derive(Debug, Clone, Serialize)]
pub struct LookupSummary {
    /// Keys looked up are drawn from the first `lookup_span` keys loaded.
    pub lookup_span: u64,
    pub memory_node: String,
    pub link: String,
    pub local: LookupRow,
    pub offloaded: LookupRow,
    /// Offloaded / local latency.
    pub p50_ratio: f64,
    pub p99_ratio: f64,
}

/// Both variants and their conclusion.
#[derive(Debug)]
pub struct LookupComparison {
    pub outcome: RunOutcome,
    pub summary: LookupSummary,
}

impl LookupComparison {
    /// Fails when the offloaded variant did not read through the memory
    /// node (no image was offloaded, or no lookup was delegated): its
    /// numbers would describe local memtables.
    pub fn check(&self) -> Result<()> {
        let o = &self.summary.offloaded;
        if o.images_offloaded == 0 || o.delegated_gets == 0 {
            return Err(BenchError::NotMeasured {
                experiment: "offload-lookup",
                message: format!(
                    "the offloaded variant did not read through the memory node ({} images offloaded, {} delegated gets)",
                    o.images_offloaded, o.delegated_gets
                ),
            });
        }
        Ok(())
    }
}

/// Load, look up and print, local memtables first, then offloaded images.
pub fn run(
    cfg: &OffloadLookupConfig,
    engine: &EngineConfig,
    offload: &OffloadConfig,
    show_progress: bool,
) -> Result<LookupComparison> {
    let entry = (cfg.key_size + cfg.value_size) as u64;
    // Keys a shard may keep in local memory with offloading on: an upper
    // bound, since a memtable holds less than its size in entries.
    let local_keys = offload.local_memtable_bytes(engine.write_buffer_size) / entry;
    let lookup_span = cfg.num.saturating_sub(local_keys);
    if lookup_span == 0 {
        return Err(BenchError::InvalidArgument(format!(
            "offload-lookup: the memtables kept local ({}) hold all {} keys; raise --num or lower --write_buffer_size",
            bytes(offload.local_memtable_bytes(engine.write_buffer_size)),
            cfg.num
        )));
    }
    let mut order: Vec<u64> = (0..cfg.num).collect();
    order.shuffle(&mut SmallRng::seed_from_u64(cfg.seed));
    println!(
        "offload-lookup: {} keys of {}+{} bytes ({}) in memtables of {} bytes, flushes held back; {} random gets of the first {lookup_span} keys written",
        cfg.num,
        cfg.key_size,
        cfg.value_size,
        bytes(cfg.num * entry),
        engine.write_buffer_size,
        cfg.reads
    );
    println!(
        "  offloaded variant: {}, {}, {} sealed memtable(s) kept local",
        offload.describe_memory_node(),
        offload.describe_link(),
        offload.max_local_sealed_memtables
    );

    let without = EngineConfig {
        offload: None,
        ..engine.clone()
    };
    let mut phases = Vec::new();
    let mut rows = Vec::new();
    let mut background_errors = BackgroundErrors::default();
    for (name, variant, config) in [
        ("lookup-local-memtables", "local memtables", &without),
        ("lookup-offloaded-images", "offloaded images", engine),
    ] {
        let (report, row, closing) = run_variant(
            name,
            variant,
            cfg,
            config,
            &order,
            lookup_span,
            show_progress,
        )?;
        background_errors.count += closing.count;
        background_errors.message = background_errors.message.or(closing.message);
        phases.push(report);
        rows.push(row);
    }
    let (Some(offloaded), Some(local)) = (rows.pop(), rows.pop()) else {
        return Err(BenchError::NotMeasured {
            experiment: "offload-lookup",
            message: "a variant is missing".into(),
        });
    };
    let summary = LookupSummary {
        lookup_span,
        memory_node: offload.describe_memory_node(),
        link: offload.describe_link(),
        p50_ratio: offloaded.p50_us / local.p50_us.max(1e-9),
        p99_ratio: offloaded.p99_us / local.p99_us.max(1e-9),
        local,
        offloaded,
    };
    print!("{}", describe(&summary));
    Ok(LookupComparison {
        outcome: RunOutcome {
            phases,
            background_errors,
            cut_short: None,
        },
        summary,
    })
}

/// The table, for stdout.
pub fn describe(s: &LookupSummary) -> String {
    let mut out = format!(
        "  {:<17} {:>9} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}\n",
        "lookups hit",
        "gets",
        "found",
        "to memnode",
        "images",
        "mean(us)",
        "p50(us)",
        "p99(us)",
        "p99.9(us)",
        "max(us)"
    );
    for r in [&s.local, &s.offloaded] {
        out.push_str(&format!(
            "  {:<17} {:>9} {:>9} {:>11} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>10.2} {:>10.2}\n",
            r.variant,
            r.lookups,
            r.found,
            r.delegated_gets,
            r.images_offloaded,
            r.mean_us,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.max_us
        ));
    }
    out.push_str(&format!(
        "  offloaded/local latency: p50 {:.2}x, p99 {:.2}x ({} of {} lookups went to the memory node)\n",
        s.p50_ratio, s.p99_ratio, s.offloaded.delegated_gets, s.offloaded.lookups
    ));
    out
}

/// One variant: load with flushes held back, let offloading settle, time
/// the lookups, then let the flushes go and close the database.
fn run_variant(
    name: &str,
    variant: &str,
    cfg: &OffloadLookupConfig,
    engine: &EngineConfig,
    order: &[u64],
    lookup_span: u64,
    show_progress: bool,
) -> Result<(PhaseReport, LookupRow, BackgroundErrors)> {
    let gate = SstGate::new();
    let mut options = engine.db_options();
    options.storage = std::sync::Arc::new(GatedStorage {
        inner: options.storage,
        gate: std::sync::Arc::clone(&gate),
    });
    // Every sealed memtable stays unflushed: room for all of them (a
    // memtable's overhead stays well below its entries' bytes twice over).
    let data = cfg.num * (cfg.key_size + cfg.value_size) as u64;
    options.max_unflushed_bytes = options
        .max_unflushed_bytes
        .max(4 * data + 2 * engine.write_buffer_size as u64);
    let dir = engine.db.join(name);
    let db = crate::fresh_db::open_empty(&dir, options)?;
    // Declared after the database, so an early return opens the gate
    // before the database is dropped (which waits for its flushes).
    let held = gate.close();
    load(name, cfg, &db, order, show_progress)?;
    let before = if engine.offload.is_some() {
        settle(&db)?
    } else {
        db.stats().offload
    };
    let (report, found) = lookups(name, cfg, &db, order, lookup_span, show_progress)?;
    let after = &report.db_stats.offload;
    if found != cfg.reads {
        return Err(BenchError::NotMeasured {
            experiment: "offload-lookup",
            message: format!(
                "{name}: only {found} of {} keys written earlier were found",
                cfg.reads
            ),
        });
    }
    let latency = report.result.latency.iter().find(|l| l.op == OpKind::Read);
    let row = LookupRow {
        variant: variant.to_string(),
        lookups: cfg.reads,
        found,
        delegated_gets: after.delegated_gets - before.delegated_gets.min(after.delegated_gets),
        images_offloaded: before.images_offloaded,
        bytes_offloaded: before.bytes_offloaded,
        mean_us: latency.map_or(0.0, |l| l.mean_us),
        p50_us: latency.map_or(0.0, |l| l.p50_us),
        p99_us: latency.map_or(0.0, |l| l.p99_us),
        p999_us: latency.map_or(0.0, |l| l.p999_us),
        max_us: latency.map_or(0.0, |l| l.max_us),
    };
    drop(held);
    let closing = BackgroundErrors::before_closing(db)?;
    Ok((report, row, closing))
}

/// Put every key once, in `order`.
fn load(
    name: &str,
    cfg: &OffloadLookupConfig,
    db: &Db,
    order: &[u64],
    show_progress: bool,
) -> Result<()> {
    let progress = progress_bar(show_progress, Some(cfg.num), &format!("{name} load"));
    let mut rng = SmallRng::seed_from_u64(cfg.seed);
    let mut values = ValueSource::new(cfg.value_size, &mut rng);
    let mut key = vec![0u8; cfg.key_size];
    for (i, &k) in order.iter().enumerate() {
        make_key(&mut key, k);
        db.put(&key, values.next())
            .map_err(BenchError::engine(format!("{name}: load: put")))?;
        if i % 4096 == 0 {
            progress.set_position(i as u64);
        }
    }
    progress.finish_and_clear();
    Ok(())
}

/// Wait until offloading is done with the loaded memtables: the count of
/// offloaded images stays the same for [`SETTLED_AFTER`]. Returns the
/// offload stats then.
pub(crate) fn settle(db: &Db) -> Result<OffloadStats> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut last = db.stats().offload;
    let mut stable_since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = db.stats().offload;
        if now.images_offloaded != last.images_offloaded
            || now.images_shipped != last.images_shipped
        {
            stable_since = Instant::now();
        } else if stable_since.elapsed() >= SETTLED_AFTER {
            return Ok(now);
        }
        last = now;
        if Instant::now() >= deadline {
            tracing::warn!("offloading still changing after {SETTLE_TIMEOUT:?}; measuring anyway");
            return Ok(last);
        }
    }
}

/// Time `cfg.reads` gets of keys among the first `span` of `order`;
/// returns the phase and how many were found.
fn lookups(
    name: &str,
    cfg: &OffloadLookupConfig,
    db: &Db,
    order: &[u64],
    span: u64,
    show_progress: bool,
) -> Result<(PhaseReport, u64)> {
    let progress = progress_bar(show_progress, Some(cfg.reads), name);
    let mut rng = SmallRng::seed_from_u64(cfg.seed.wrapping_add(1));
    let mut key = vec![0u8; cfg.key_size];
    let mut found = 0u64;
    let before = db.stats();
    let start = Instant::now();
    let mut rec = ThreadRecorder::new(start, progress.clone());
    let mut began = Instant::now();
    for _ in 0..cfg.reads {
        make_key(&mut key, order[rng.random_range(0..span) as usize]);
        if let Some(v) = db
            .get(&key)
            .map_err(BenchError::engine(format!("{name}: get")))?
        {
            found += 1;
            rec.add_bytes(key.len() + v.len());
        }
        began = rec.record(OpKind::Read, began)?;
    }
    let elapsed = start.elapsed();
    progress.finish_and_clear();
    let result = PhaseResult::merge(name, vec![rec], elapsed)?;
    let message = Some(format!("({found} of {} found)", cfg.reads));
    Ok((PhaseReport::new(result, message, db, &before), found))
}
