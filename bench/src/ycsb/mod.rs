//! YCSB's core workload on o3, driven the way YCSB's client is driven:
//! `o3-bench ycsb load|run -P FILE -p NAME=VALUE -threads N -target OPS -s`.
//!
//! - [`command_line`]: YCSB's single-dash long options, respelt for clap;
//! - [`properties`]: the property-file format and `-p` overrides;
//!   [`spec`]: the typed, validated workload;
//! - [`generator`]: YCSB's number generators; [`record`]: a record as one
//!   value;
//! - [`workload`]: the load phase and both phases in order;
//!   [`transactions`]: the run phase; [`client`]: the `-target`
//!   schedule ([`throttle`]), `maxexecutiontime`, the `-s` status lines
//!   ([`status`]) and YCSB's measurements ([`measurements`]), printed as
//!   YCSB's `[SECTION], metric, value` lines.

pub mod client;
pub mod command_line;
pub mod generator;
pub mod measurements;
pub mod properties;
pub mod record;
pub mod spec;
pub mod status;
pub mod throttle;
pub mod transactions;
pub mod workload;

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Deserializer, Serialize};

use crate::engine::parse_bool;
use crate::error::{BenchError, Result};
pub use command_line::ycsb_long_options;
use properties::Properties;
use spec::WorkloadSpec;

/// YCSB's client commands: which phase to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum YcsbCommand {
    /// Insert the records (YCSB's `load`).
    Load,
    /// Run the operation mix (YCSB's `run`).
    Run,
}

/// `o3-bench ycsb` flags (all optional so a config file can supply them).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(rename_all = "snake_case")]
pub struct YcsbArgs {
    /// The phase to run, as YCSB's client takes it: `load` or `run`.
    /// Without it, --load/--run decide (both phases when neither is given).
    #[arg(value_enum)]
    #[serde(skip)]
    pub command: Option<YcsbCommand>,
    /// Workload property file (YCSB format), e.g. bench/workloads/workloada;
    /// repeatable, later files override earlier ones.
    #[arg(short = 'P', long = "workload", value_name = "FILE")]
    #[serde(deserialize_with = "one_or_many")]
    pub workload: Vec<PathBuf>,
    /// Run the load phase. A load of the whole key space starts from an
    /// empty database; one with insertstart/insertcount adds its slice.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub load: Option<bool>,
    /// Run the transaction phase.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub run: Option<bool>,
    /// Override a workload property (NAME=VALUE; repeatable; applied after
    /// the files and after the config file's properties).
    #[arg(short = 'p', value_name = "NAME=VALUE")]
    #[serde(rename = "properties")]
    pub properties: Vec<String>,
    /// Client threads (YCSB's -threads; sets threadcount).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Total operations per second over all threads (YCSB's -target; sets
    /// target; 0 = unthrottled).
    #[arg(long)]
    pub target: Option<f64>,
    /// Status lines on stderr every status.interval seconds (YCSB's -s).
    #[arg(short = 's')]
    pub status: bool,
    /// Let a run phase start on a missing or empty database (sets
    /// o3.allowempty).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub allow_empty: Option<bool>,
    /// Seed of the generators (thread i uses seed + i).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// The config file's `workload`: one file name or a list.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(v) => v,
    })
}

impl YcsbArgs {
    /// Flags given on the command line win over the config file (workload
    /// files given on the command line replace the config file's); `-p`
    /// overrides are applied after the config file's.
    pub fn over(self, base: YcsbArgs) -> YcsbArgs {
        let mut properties = base.properties;
        properties.extend(self.properties);
        YcsbArgs {
            command: self.command.or(base.command),
            workload: if self.workload.is_empty() {
                base.workload
            } else {
                self.workload
            },
            load: self.load.or(base.load),
            run: self.run.or(base.run),
            properties,
            threads: self.threads.or(base.threads),
            target: self.target.or(base.target),
            status: self.status || base.status,
            allow_empty: self.allow_empty.or(base.allow_empty),
            seed: self.seed.or(base.seed),
        }
    }

    /// Read the workload files, apply the overrides and flags, check the
    /// result.
    pub fn resolve(self) -> Result<YcsbConfig> {
        if self.workload.is_empty() {
            return Err(BenchError::InvalidArgument(
                "-P FILE (or --workload FILE) is required (e.g. -P bench/workloads/workloada)"
                    .into(),
            ));
        }
        let mut props = Properties::default();
        for path in &self.workload {
            props.add_file(path)?;
        }
        for p in &self.properties {
            props.add_override(p)?;
        }
        self.add_flags(&mut props);
        let files: Vec<String> = self
            .workload
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let spec = props.to_spec(&files.join(", "))?;
        let (load, run) = self.phases()?;
        Ok(YcsbConfig {
            spec,
            load,
            run,
            seed: self.seed.unwrap_or(0x5eed),
        })
    }

    /// The client flags, as the properties they set (over files and `-p`).
    fn add_flags(&self, props: &mut Properties) {
        if let Some(n) = self.threads {
            props.add_flag("threadcount", &n.to_string(), "-threads");
        }
        if let Some(t) = self.target {
            props.add_flag("target", &t.to_string(), "-target");
        }
        if self.status {
            props.add_flag("status", "true", "-s");
        }
        if let Some(a) = self.allow_empty {
            props.add_flag("o3.allowempty", &a.to_string(), "--allow_empty");
        }
    }

    /// Which phases run: the `load`/`run` command, else `--load`/`--run`,
    /// else both.
    fn phases(&self) -> Result<(bool, bool)> {
        let (load, run) = match (self.command, self.load, self.run) {
            (Some(c), _, _) => (c == YcsbCommand::Load, c == YcsbCommand::Run),
            (None, None, None) => (true, true),
            (None, l, r) => (l.unwrap_or(false), r.unwrap_or(false)),
        };
        if !load && !run {
            return Err(BenchError::InvalidArgument(
                "nothing to do: both --load and --run are off".into(),
            ));
        }
        Ok((load, run))
    }
}

/// Resolved YCSB settings (reported verbatim).
#[derive(Debug, Clone, Serialize)]
pub struct YcsbConfig {
    pub spec: WorkloadSpec,
    pub load: bool,
    pub run: bool,
    pub seed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        ycsb: YcsbArgs,
    }

    /// `o3-bench ycsb ARGS`, respelt as main does, parsed as `ycsb`'s flags.
    fn parse(args: &[&str]) -> YcsbArgs {
        let full = ["o3-bench", "ycsb"].into_iter().chain(args.iter().copied());
        let mut respelt = ycsb_long_options(full.map(Into::into));
        respelt.remove(1);
        Cli::try_parse_from(respelt).unwrap().ycsb
    }

    fn workload_file(dir: &std::path::Path, name: &str, text: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    #[test]
    fn ycsb_command_shape_sets_phase_and_client_properties() {
        let dir = tempfile::tempdir().unwrap();
        let a = workload_file(
            dir.path(),
            "a",
            "recordcount=10\nthreadcount=1\nfieldlength=5\n",
        );
        let b = workload_file(dir.path(), "b", "fieldlength=7\ntarget=10\n");
        let args = parse(&[
            "run",
            "-P",
            &a,
            "-P",
            &b,
            "-p",
            "threadcount=3",
            "-threads",
            "2",
            "-target",
            "500",
            "-s",
        ]);
        let cfg = args.resolve().unwrap();
        assert_eq!((cfg.load, cfg.run), (false, true));
        let s = &cfg.spec;
        assert_eq!(s.fieldlength, 7, "a later -P file overrides an earlier one");
        assert_eq!(s.threadcount, 2, "-threads overrides -p threadcount");
        assert_eq!((s.target, s.status), (500.0, true));
        assert!(s.file.contains(&a) && s.file.contains(&b));
    }

    #[test]
    fn the_old_flags_still_choose_the_phases() {
        let dir = tempfile::tempdir().unwrap();
        let a = workload_file(dir.path(), "a", "recordcount=10\n");
        let cfg = parse(&["--workload", &a, "--load"]).resolve().unwrap();
        assert_eq!((cfg.load, cfg.run), (true, false));
        let cfg = parse(&["--workload", &a]).resolve().unwrap();
        assert_eq!((cfg.load, cfg.run), (true, true));
        let cfg = parse(&["load", "-P", &a]).resolve().unwrap();
        assert_eq!((cfg.load, cfg.run), (true, false));
        assert!(parse(&["-p", "recordcount=1"]).resolve().is_err());
    }

    #[test]
    fn config_file_keys_work_for_the_new_flags() {
        let dir = tempfile::tempdir().unwrap();
        let a = workload_file(dir.path(), "a", "recordcount=10\n");
        let config: YcsbArgs = toml::from_str(&format!(
            "workload = {a:?}\nthreads = 4\ntarget = 100.0\nstatus = true\nallow_empty = true\nproperties = [\"fieldcount=2\"]\n"
        ))
        .unwrap();
        let cfg = parse(&["run", "-threads", "2"])
            .over(config)
            .resolve()
            .unwrap();
        let s = &cfg.spec;
        assert_eq!((s.threadcount, s.target, s.status), (2, 100.0, true));
        assert!(s.allow_empty);
        assert_eq!(s.fieldcount, 2);
        let list: YcsbArgs = toml::from_str(&format!("workload = [{a:?}, {a:?}]\n")).unwrap();
        assert_eq!(list.workload.len(), 2);
    }
}
