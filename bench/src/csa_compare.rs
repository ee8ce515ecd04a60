//! `o3-bench csa-compare`: the compaction service experiment, all three
//! runs in one command.
//!
//! The same fillrandom runs three times, each as a child `o3-bench dbbench`
//! process on a fresh database with identical settings:
//! 1. all-local: no service, compactions compete with the writer;
//! 2. with `--csa_scheduler` to an `o3-csa scheduler` and agents this
//!    command starts as child processes;
//! 3. as 2, with one agent SIGKILLed at `--kill_after` seconds (by default
//!    half of run 2's duration).
//!
//! Conditions: the database process is pinned to core 0 and the scheduler
//! and agents to core 1 (`taskset -c`), so the service adds a core the way
//! a remote one would; every process (the database and each agent) gets
//! storage throttled alike (the database through `--storage_*_bytes_per_sec`,
//! agents through `--storage-*-mbps`), so compactions on agents also bring
//! their own storage bandwidth. Memtables are small and level-0 triggers
//! low, so compactions are frequent and compaction, not the writer, is the
//! bottleneck of the all-local run. The key space is split into four shards
//! whose level-0 compactions can run at once, and level 1 is sized to the
//! small memtables (8 MB, 2 MB tables): with one shard and the engine's
//! 256 MiB level 1, every level-0 compaction rewrites the whole level and
//! waits for the one before, and no placement can make that faster.
//!
//! Reported, with the targets next to the figures (the benchmark reports,
//! it does not assert): throughput of runs 1 and 2 and their ratio (target
//! ≥ 1.3x), p99 write latency, the service's share and timings in runs 2
//! and 3, run 3's per-second timeline with the kill marked, and the mean
//! throughput of the `--window_secs` before the kill against the same
//! window after it (target ≥ 0.70). The figures are read from each child's
//! `--json` report. Every child this command started (and only those, by
//! process id) is stopped on every exit path, Ctrl-C included; the working
//! directory is removed unless `--keep`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::children::{ChildProcess, POLL, Pinning, ServiceChildren, last_line, sibling_binary};
use crate::engine::parse_bool;
use crate::error::{BenchError, Result};
use crate::report::ServiceSummary;

/// The targets of the experiment (reported next to the figures).
pub const TARGET_THROUGHPUT_RATIO: f64 = 1.3;
pub const TARGET_KILL_WINDOW_RATIO: f64 = 0.70;

/// `o3-bench csa-compare` flags.
#[derive(Debug, Clone, Args)]
#[command(rename_all = "snake_case")]
pub struct CsaCompareArgs {
    /// Keys the fill writes (random order, each run the same sequence).
    #[arg(long, default_value_t = 600_000)]
    pub num: u64,
    /// Key bytes.
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Value bytes.
    #[arg(long, default_value_t = 400)]
    pub value_size: usize,
    /// Memtable size in bytes: small, so flushes and compactions are
    /// frequent.
    #[arg(long, default_value_t = 1 << 20)]
    pub write_buffer_size: usize,
    /// Bytes of sealed memtables at which writes stop until a flush makes
    /// room (the engine's default, 512 MiB, would hold the whole fill).
    #[arg(long, default_value_t = 4 << 20)]
    pub max_unflushed_bytes: u64,
    /// Level-0 tables that start a compaction.
    #[arg(long, default_value_t = 2)]
    pub level0_file_num_compaction_trigger: usize,
    /// Level-0 tables at which writes slow down.
    #[arg(long, default_value_t = 6)]
    pub level0_slowdown_writes_trigger: usize,
    /// Level-0 tables at which writes stop.
    #[arg(long, default_value_t = 10)]
    pub level0_stop_writes_trigger: usize,
    /// Compaction strategy of the database (dbbench's --compaction;
    /// default: the engine's).
    #[arg(long)]
    pub compaction: Option<String>,
    /// Key-range shards: their level-0 compactions run in parallel (one
    /// shard makes every level-0 compaction wait for the one before).
    #[arg(long, default_value_t = 4)]
    pub shards: usize,
    /// Level 1's size before it spills into level 2, scaled to the small
    /// memtables as RocksDB scales its 256 MiB to 64 MiB memtables.
    #[arg(long, default_value_t = 8_000_000)]
    pub max_bytes_for_level_base: u64,
    /// Compaction output size at level 1.
    #[arg(long, default_value_t = 2_000_000)]
    pub target_file_size_base: u64,
    /// Background jobs of the database: flushes and compactions here, and
    /// compactions at once wherever they run (the same in every run).
    #[arg(long, default_value_t = 4)]
    pub max_background_jobs: usize,
    /// Storage read bandwidth of every process (the database's and each
    /// agent's own), MB/s (10^6 bytes per second).
    #[arg(long, default_value_t = 60.0)]
    pub storage_read_mbps: f64,
    /// Storage write bandwidth of every process, MB/s.
    #[arg(long, default_value_t = 30.0)]
    pub storage_write_mbps: f64,
    /// Storage latency per operation of every process, µs.
    #[arg(long, default_value_t = 0)]
    pub storage_latency_us: u64,
    /// Turn the WAL off (its appends would share the database's throttled
    /// storage with flushes and local compactions).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub disable_wal: bool,
    /// Agents started for runs 2 and 3.
    #[arg(long, default_value_t = 2)]
    pub agents: usize,
    /// Jobs each agent runs at once.
    #[arg(long, default_value_t = 1)]
    pub slots: u32,
    /// Placement policy of runs 2 and 3: auto, remote or local.
    #[arg(long, default_value = "auto")]
    pub csa_policy: String,
    /// Seconds into run 3 at which one agent is SIGKILLed (default: half
    /// of run 2's duration).
    #[arg(long)]
    pub kill_after: Option<f64>,
    /// Seconds of run 3's timeline compared before and after the kill.
    #[arg(long, default_value_t = 10)]
    pub window_secs: usize,
    /// Pin the database to core 0 and the service to core 1 with taskset
    /// (when the machine has two cores and taskset is installed).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub pin: bool,
    /// The o3-csa binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub csa_bin: Option<PathBuf>,
    /// Working directory for the databases, token, logs and reports
    /// (default: a new one in the temp dir).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the working directory.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool, default_value_t = false)]
    pub keep: bool,
}

impl CsaCompareArgs {
    fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(BenchError::InvalidArgument(m.to_string()));
        if self.num == 0 {
            return bad("--num must be at least 1");
        }
        if self.agents < 2 {
            return bad("--agents must be at least 2 (run 3 kills one and needs another)");
        }
        if self.slots == 0 {
            return bad("--slots must be at least 1");
        }
        if !(self.storage_read_mbps > 0.0 && self.storage_write_mbps > 0.0) {
            return bad("--storage_read_mbps and --storage_write_mbps must be above 0");
        }
        if self.window_secs == 0 {
            return bad("--window_secs must be at least 1");
        }
        if let Some(k) = self.kill_after
            && !(k.is_finite() && k > 0.0)
        {
            return bad("--kill_after must be above 0 seconds");
        }
        self.csa_policy
            .parse::<o3_compute::PlacementPolicy>()
            .map_err(|e| BenchError::InvalidArgument(format!("--csa_policy: {e}")))?;
        Ok(())
    }

    /// dbbench's flags for the fill, the same in every run.
    fn fill_flags(&self) -> Vec<String> {
        let mbps = |m: f64| format!("{}", (m * 1e6) as u64);
        let mut flags = vec![
            "--benchmarks=fillrandom".to_string(),
            format!("--num={}", self.num),
            format!("--key_size={}", self.key_size),
            format!("--value_size={}", self.value_size),
            format!("--write_buffer_size={}", self.write_buffer_size),
            format!("--max_unflushed_bytes={}", self.max_unflushed_bytes),
            format!(
                "--level0_file_num_compaction_trigger={}",
                self.level0_file_num_compaction_trigger
            ),
            format!(
                "--level0_slowdown_writes_trigger={}",
                self.level0_slowdown_writes_trigger
            ),
            format!(
                "--level0_stop_writes_trigger={}",
                self.level0_stop_writes_trigger
            ),
            format!(
                "--storage_read_bytes_per_sec={}",
                mbps(self.storage_read_mbps)
            ),
            format!(
                "--storage_write_bytes_per_sec={}",
                mbps(self.storage_write_mbps)
            ),
            format!("--storage_latency_us={}", self.storage_latency_us),
            format!("--disable_wal={}", self.disable_wal),
            format!("--shards={}", self.shards),
            format!(
                "--max_bytes_for_level_base={}",
                self.max_bytes_for_level_base
            ),
            format!("--target_file_size_base={}", self.target_file_size_base),
            format!("--max_background_jobs={}", self.max_background_jobs),
        ];
        if let Some(c) = &self.compaction {
            flags.push(format!("--compaction={c}"));
        }
        flags
    }
}

/// Set by SIGINT and SIGTERM while the experiment runs.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catch SIGINT and SIGTERM, so the waiting loops stop the children before
/// this process ends.
fn catch_interrupts() {
    let handler = note_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe; both signal numbers are valid.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(BenchError::NotMeasured {
            experiment: "csa-compare",
            message: "interrupted; the children it started were stopped".into(),
        })
    } else {
        Ok(())
    }
}

/// The working directory; removed when dropped unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A scheduler and agents for run `run`, each agent's storage throttled
/// like the database's.
fn start_service(
    args: &CsaCompareArgs,
    csa_bin: &Path,
    pinning: &Pinning,
    work: &Path,
    token_file: &Path,
    run: &str,
) -> Result<ServiceChildren> {
    ServiceChildren::start(
        csa_bin,
        pinning,
        work,
        &format!("{run}-"),
        token_file,
        args.agents,
        args.slots,
        &[
            format!("--storage-read-mbps={}", args.storage_read_mbps),
            format!("--storage-write-mbps={}", args.storage_write_mbps),
            format!("--storage-latency-us={}", args.storage_latency_us),
        ],
    )
}

/// What the experiment reads from a child's JSON report.
#[derive(Debug, Deserialize)]
struct ChildReport {
    phases: Vec<ChildPhase>,
}

#[derive(Debug, Deserialize)]
struct ChildPhase {
    seconds: f64,
    ops: u64,
    ops_per_sec: f64,
    latency: Vec<ChildLatency>,
    timeline: Vec<u64>,
    timeline_ops_per_sec: Vec<f64>,
    service: Option<ServiceSummary>,
    db_stats: ChildDbStats,
}

#[derive(Debug, Deserialize)]
struct ChildLatency {
    op: String,
    p99_us: f64,
}

#[derive(Debug, Deserialize)]
struct ChildDbStats {
    compactions: u64,
    stall_micros: Vec<(serde_json::Value, u64)>,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    pub name: String,
    /// The fill's own time, and the child process's from start to exit
    /// (opening and closing the database included).
    pub seconds: f64,
    pub process_seconds: f64,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub write_p99_us: f64,
    pub stall_seconds: f64,
    pub compactions: u64,
    /// Operations finished in each second of the fill, and as rates (the
    /// last, partial, second over its real length).
    pub timeline: Vec<u64>,
    pub timeline_ops_per_sec: Vec<f64>,
    pub service: Option<ServiceSummary>,
}

/// Run 3's throughput around the kill.
#[derive(Debug, Clone, Serialize)]
pub struct KillWindow {
    /// Seconds after the child's start at which the agent was killed, and
    /// the timeline second that holds it.
    pub killed_at_seconds: f64,
    pub kill_second: usize,
    pub before_ops_per_sec: Option<f64>,
    pub after_ops_per_sec: Option<f64>,
    /// Seconds the means cover (fewer when the run is shorter).
    pub before_seconds: usize,
    pub after_seconds: usize,
    pub ratio: Option<f64>,
}

impl KillWindow {
    /// The mean of the `window` whole seconds before `kill_second` and of
    /// the `window` after it (the kill's own second and the timeline's last,
    /// partial, second left out).
    fn of(timeline: &[u64], killed_at_seconds: f64, window: usize) -> KillWindow {
        let kill_second = killed_at_seconds.max(0.0) as usize;
        let whole = timeline.len().saturating_sub(1);
        let before =
            &timeline[kill_second.saturating_sub(window).min(whole)..kill_second.min(whole)];
        let after_start = kill_second.saturating_add(1).min(whole);
        let after = &timeline[after_start..after_start.saturating_add(window).min(whole)];
        let mean =
            |s: &[u64]| (!s.is_empty()).then(|| s.iter().sum::<u64>() as f64 / s.len() as f64);
        let (b, a) = (mean(before), mean(after));
        KillWindow {
            killed_at_seconds,
            kill_second,
            before_ops_per_sec: b,
            after_ops_per_sec: a,
            before_seconds: before.len(),
            after_seconds: after.len(),
            ratio: match (b, a) {
                (Some(b), Some(a)) if b > 0.0 => Some(a / b),
                _ => None,
            },
        }
    }
}

/// The conditions, as printed and reported.
#[derive(Debug, Clone, Serialize)]
pub struct Conditions {
    pub pinning: String,
    pub fill: String,
    pub storage_per_process: String,
    pub wal: bool,
    pub agents: usize,
    pub slots_per_agent: u32,
    pub policy: String,
    pub dbbench_flags: Vec<String>,
}

/// What the experiment concluded (the `--json` document).
#[derive(Debug, Clone, Serialize)]
pub struct CsaCompareSummary {
    pub conditions: Conditions,
    pub all_local: RunFigures,
    pub with_service: RunFigures,
    pub agent_killed: RunFigures,
    /// Run 2's throughput over run 1's.
    pub throughput_ratio: f64,
    pub target_throughput_ratio: f64,
    pub kill: KillWindow,
    pub target_kill_window_ratio: f64,
}

/// Run the experiment and print it; `json` receives the summary.
pub fn run(args: &CsaCompareArgs, json: Option<&Path>) -> Result<()> {
    args.check()?;
    let exe = std::env::current_exe()
        .map_err(|e| BenchError::InvalidArgument(format!("locating o3-bench: {e}")))?;
    let csa_bin = sibling_binary(args.csa_bin.as_deref(), "o3-csa", "--csa_bin")?;
    catch_interrupts();
    let pinning = Pinning::detect(
        args.pin,
        "database on core 0, scheduler and agents on core 1",
    );
    let path = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("o3-bench-csa-compare-{}", std::process::id()))
    });
    std::fs::create_dir_all(&path).map_err(|e| BenchError::io(&path, e))?;
    let work = WorkDir {
        path,
        keep: args.keep,
    };
    let token_file = work.path.join("token");
    let secret = format!("o3-bench-csa-{:016x}", rand::random::<u64>());
    std::fs::write(&token_file, &secret).map_err(|e| BenchError::io(&token_file, e))?;

    let conditions = Conditions {
        pinning: pinning.description.clone(),
        fill: format!(
            "fillrandom of {} keys, key {} B, value {} B, 1 thread; {} shards; write buffer {} B, max unflushed {} B, level-0 triggers compaction {} / slowdown {} / stop {}, level 1 {} B, tables {} B, {} background jobs, compaction {}",
            args.num,
            args.key_size,
            args.value_size,
            args.shards,
            args.write_buffer_size,
            args.max_unflushed_bytes,
            args.level0_file_num_compaction_trigger,
            args.level0_slowdown_writes_trigger,
            args.level0_stop_writes_trigger,
            args.max_bytes_for_level_base,
            args.target_file_size_base,
            args.max_background_jobs,
            args.compaction.as_deref().unwrap_or("the engine's default")
        ),
        storage_per_process: format!(
            "read {} MB/s, write {} MB/s, latency {} µs, for the database and for each agent alike",
            args.storage_read_mbps, args.storage_write_mbps, args.storage_latency_us
        ),
        wal: !args.disable_wal,
        agents: args.agents,
        slots_per_agent: args.slots,
        policy: args.csa_policy.clone(),
        dbbench_flags: args.fill_flags(),
    };
    println!("csa-compare: conditions");
    println!("  cores:   {}", conditions.pinning);
    println!("  fill:    {}", conditions.fill);
    println!("  storage: {}", conditions.storage_per_process);
    println!(
        "  WAL {}; service: {} agent(s) x {} slot(s), placement policy {}",
        if conditions.wal { "on" } else { "off" },
        args.agents,
        args.slots,
        args.csa_policy
    );
    println!("  o3-csa:  {}", csa_bin.display());
    println!(
        "  work:    {}{}",
        work.path.display(),
        if args.keep {
            " (kept)"
        } else {
            " (removed at the end)"
        }
    );

    let fill = FillRunner {
        exe: &exe,
        args,
        pinning: &pinning,
        work: &work.path,
    };
    let all_local = fill.run("run1-all-local", None, None)?;
    print_run("run 1 (all local)", &all_local);

    let service = start_service(args, &csa_bin, &pinning, &work.path, &token_file, "run2")?;
    let with_service = fill.run(
        "run2-with-service",
        Some((&service.address, &token_file)),
        None,
    )?;
    drop(service);
    print_run("run 2 (with the service)", &with_service);

    let kill_after = args
        .kill_after
        .unwrap_or(with_service.process_seconds / 2.0);
    let mut service = start_service(args, &csa_bin, &pinning, &work.path, &token_file, "run3")?;
    let (agent_killed, killed_at) = {
        let victim = service
            .agents
            .first_mut()
            .ok_or_else(|| BenchError::InvalidArgument("run 3 has no agent to kill".into()))?;
        let victim_pid = victim.pid();
        let mut killed_at = None;
        let figures = fill.run(
            "run3-agent-killed",
            Some((&service.address, &token_file)),
            Some(&mut |elapsed: Duration| {
                if killed_at.is_none() && elapsed.as_secs_f64() >= kill_after {
                    victim.kill();
                    killed_at = Some(elapsed.as_secs_f64());
                }
            }),
        )?;
        if killed_at.is_none() {
            println!(
                "  (run 3 ended before {kill_after:.1} s: agent-0, pid {victim_pid}, was never killed)"
            );
        }
        (figures, killed_at)
    };
    drop(service);
    print_run("run 3 (agent-0 SIGKILLed mid-run)", &agent_killed);

    let kill = KillWindow::of(
        &agent_killed.timeline,
        killed_at.unwrap_or(f64::INFINITY),
        args.window_secs,
    );
    let summary = CsaCompareSummary {
        throughput_ratio: with_service.ops_per_sec / all_local.ops_per_sec.max(1e-9),
        target_throughput_ratio: TARGET_THROUGHPUT_RATIO,
        target_kill_window_ratio: TARGET_KILL_WINDOW_RATIO,
        conditions,
        all_local,
        with_service,
        agent_killed,
        kill,
    };
    print_summary(&summary, killed_at.is_some());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&summary)
            .map_err(|e| BenchError::InvalidArgument(format!("encoding the JSON report: {e}")))?;
        std::fs::write(path, text + "\n").map_err(|e| BenchError::io(path, e))?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

/// Runs the fill as a child `o3-bench dbbench`.
struct FillRunner<'a> {
    exe: &'a Path,
    args: &'a CsaCompareArgs,
    pinning: &'a Pinning,
    work: &'a Path,
}

impl FillRunner<'_> {
    /// Run the fill named `name`, with the service at `service` (address,
    /// token file) if given; `tick` is called with the time since the
    /// child started while it runs.
    fn run(
        &self,
        name: &str,
        service: Option<(&str, &Path)>,
        mut tick: Option<&mut dyn FnMut(Duration)>,
    ) -> Result<RunFigures> {
        interrupted()?;
        let json = self.work.join(format!("{name}.json"));
        let log = self.work.join(format!("{name}.log"));
        let mut flags: Vec<OsString> = vec!["--json".into(), json.clone().into(), "dbbench".into()];
        flags.extend(self.args.fill_flags().into_iter().map(OsString::from));
        flags.push(format!("--db={}", self.work.join(name).display()).into());
        if let Some((address, token_file)) = service {
            flags.push(format!("--csa_scheduler={address}").into());
            flags.push("--token_file".into());
            flags.push(token_file.into());
            flags.push(format!("--csa_policy={}", self.args.csa_policy).into());
        }
        let output = std::fs::File::create(&log).map_err(|e| BenchError::io(&log, e))?;
        let errors = output.try_clone().map_err(|e| BenchError::io(&log, e))?;
        let started = Instant::now();
        let mut child = ChildProcess::spawn(
            name,
            self.pinning
                .command(0, self.exe)
                .args(&flags)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(output)
                .stderr(errors),
        )?;
        let status = loop {
            interrupted()?;
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if let Some(tick) = tick.as_mut() {
                tick(started.elapsed());
            }
            std::thread::sleep(POLL);
        };
        let process_seconds = started.elapsed().as_secs_f64();
        if !status.success() {
            return Err(BenchError::NotMeasured {
                experiment: "csa-compare",
                message: format!("{name}: o3-bench dbbench {status}; {}", last_line(&log)),
            });
        }
        let text = std::fs::read_to_string(&json).map_err(|e| BenchError::io(&json, e))?;
        let report: ChildReport = serde_json::from_str(&text).map_err(|e| {
            BenchError::InvalidArgument(format!("{}: not a dbbench report: {e}", json.display()))
        })?;
        let Some(phase) = report.phases.into_iter().next() else {
            return Err(BenchError::NotMeasured {
                experiment: "csa-compare",
                message: format!("{name}: the report {} has no phase", json.display()),
            });
        };
        Ok(RunFigures {
            name: name.to_string(),
            seconds: phase.seconds,
            process_seconds,
            ops: phase.ops,
            ops_per_sec: phase.ops_per_sec,
            write_p99_us: phase
                .latency
                .iter()
                .find(|l| l.op == "Write")
                .map_or(0.0, |l| l.p99_us),
            stall_seconds: phase
                .db_stats
                .stall_micros
                .iter()
                .map(|(_, us)| us)
                .sum::<u64>() as f64
                / 1e6,
            compactions: phase.db_stats.compactions,
            timeline: phase.timeline,
            timeline_ops_per_sec: phase.timeline_ops_per_sec,
            service: phase.service,
        })
    }
}

fn print_run(label: &str, r: &RunFigures) {
    println!(
        "{label}: {:.0} ops/s over {:.1} s (process {:.1} s), write p99 {:.0} µs, stalled {:.1} s, {} compactions",
        r.ops_per_sec, r.seconds, r.process_seconds, r.write_p99_us, r.stall_seconds, r.compactions
    );
    if let Some(s) = &r.service {
        print!("{}", s.describe("    "));
    }
}

fn print_summary(s: &CsaCompareSummary, killed: bool) {
    let verdict = |ok: bool| if ok { "meets" } else { "misses" };
    println!("== csa-compare results");
    println!(
        "  throughput: all local {:.0} ops/s, with the service {:.0} ops/s: ratio {:.2}x (target >= {:.1}x: {})",
        s.all_local.ops_per_sec,
        s.with_service.ops_per_sec,
        s.throughput_ratio,
        s.target_throughput_ratio,
        verdict(s.throughput_ratio >= s.target_throughput_ratio)
    );
    println!(
        "  write p99: all local {:.0} µs, with the service {:.0} µs, agent killed {:.0} µs",
        s.all_local.write_p99_us, s.with_service.write_p99_us, s.agent_killed.write_p99_us
    );
    println!("  run 3 timeline (ops per second):");
    for (i, n) in s.agent_killed.timeline_ops_per_sec.iter().enumerate() {
        let mark = if killed && i == s.kill.kill_second {
            "  <- agent-0 SIGKILLed"
        } else {
            ""
        };
        println!("    {i:>4} s {n:>9.0}{mark}");
    }
    let k = &s.kill;
    let ops = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} ops/s"));
    if killed {
        println!(
            "  kill at {:.1} s (second {}): {} s before {}, {} s after {}: ratio {} (target >= {:.2}: {})",
            k.killed_at_seconds,
            k.kill_second,
            k.before_seconds,
            ops(k.before_ops_per_sec),
            k.after_seconds,
            ops(k.after_ops_per_sec),
            k.ratio.map_or("-".to_string(), |r| format!("{r:.2}")),
            s.target_kill_window_ratio,
            k.ratio
                .map_or("not measured", |r| verdict(r >= s.target_kill_window_ratio))
        );
    } else {
        println!("  no kill happened: lower --kill_after or raise --num");
    }
    println!(
        "  (the timeline counts from the fill's start, a database open after the child's start)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_windows_leave_out_the_kill_second_and_the_partial_last_one() {
        // Seconds 0..=9; the kill in second 4; the last second is partial.
        let timeline = [10, 10, 10, 10, 99, 5, 5, 5, 5, 1];
        let k = KillWindow::of(&timeline, 4.5, 3);
        assert_eq!(k.kill_second, 4);
        assert_eq!((k.before_seconds, k.after_seconds), (3, 3));
        assert_eq!(k.before_ops_per_sec, Some(10.0));
        assert_eq!(k.after_ops_per_sec, Some(5.0));
        assert_eq!(k.ratio, Some(0.5));
        // Windows shrink at the edges of the run.
        let k = KillWindow::of(&timeline, 1.2, 10);
        assert_eq!((k.before_seconds, k.after_seconds), (1, 7));
        // No kill: nothing after it.
        let k = KillWindow::of(&timeline, f64::INFINITY, 10);
        assert_eq!(k.after_ops_per_sec, None);
        assert_eq!(k.ratio, None);
    }

    #[test]
    fn the_fill_flags_are_the_same_for_every_run_and_throttle_in_bytes() {
        let args = CsaCompareArgs {
            num: 10,
            key_size: 16,
            value_size: 400,
            write_buffer_size: 1 << 20,
            max_unflushed_bytes: 4 << 20,
            level0_file_num_compaction_trigger: 2,
            level0_slowdown_writes_trigger: 6,
            level0_stop_writes_trigger: 10,
            compaction: None,
            shards: 4,
            max_bytes_for_level_base: 8_000_000,
            target_file_size_base: 2_000_000,
            max_background_jobs: 4,
            storage_read_mbps: 60.0,
            storage_write_mbps: 30.0,
            storage_latency_us: 0,
            disable_wal: true,
            agents: 2,
            slots: 1,
            csa_policy: "auto".into(),
            kill_after: None,
            window_secs: 10,
            pin: true,
            csa_bin: None,
            dir: None,
            keep: false,
        };
        let flags = args.fill_flags();
        assert!(flags.contains(&"--storage_read_bytes_per_sec=60000000".to_string()));
        assert!(flags.contains(&"--storage_write_bytes_per_sec=30000000".to_string()));
        assert!(flags.contains(&"--disable_wal=true".to_string()));
        assert!(args.check().is_ok());
        let e = CsaCompareArgs {
            csa_policy: "sometimes".into(),
            ..args.clone()
        }
        .check()
        .unwrap_err()
        .to_string();
        assert!(e.contains("--csa_policy"), "{e}");
        let e = CsaCompareArgs { agents: 1, ..args }
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--agents"), "{e}");
    }
}
