//! YCSB's core workload on o3: the property-file format
//! ([`properties`]), YCSB's generators ([`generator`]) and the load and run
//! phases ([`workload`]).

pub mod generator;
pub mod properties;
pub mod workload;

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::engine::parse_bool;
use crate::error::{BenchError, Result};
use properties::{Properties, WorkloadSpec};

/// `o3-bench ycsb` flags (all optional so a config file can supply them).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(rename_all = "snake_case")]
pub struct YcsbArgs {
    /// Workload property file (YCSB format), e.g. bench/workloads/workloada.
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// Run the load phase (starts from an empty database). Without --load
    /// and --run, both phases run.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub load: Option<bool>,
    /// Run the transaction phase.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub run: Option<bool>,
    /// Override a workload property (NAME=VALUE; repeatable; applied after
    /// the file and after the config file's properties).
    #[arg(short = 'p', value_name = "NAME=VALUE")]
    #[serde(rename = "properties")]
    pub properties: Vec<String>,
    /// Seed of the generators (thread i uses seed + i).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl YcsbArgs {
    /// Flags given on the command line win over the config file; `-p`
    /// overrides are applied after the config file's.
    pub fn over(self, base: YcsbArgs) -> YcsbArgs {
        let mut properties = base.properties;
        properties.extend(self.properties);
        YcsbArgs {
            workload: self.workload.or(base.workload),
            load: self.load.or(base.load),
            run: self.run.or(base.run),
            properties,
            seed: self.seed.or(base.seed),
        }
    }

    /// Read the workload file, apply the overrides, check the result.
    pub fn resolve(self) -> Result<YcsbConfig> {
        let Some(path) = self.workload else {
            return Err(BenchError::InvalidArgument(
                "--workload FILE is required (e.g. bench/workloads/workloada)".into(),
            ));
        };
        let mut props = Properties::read_file(&path)?;
        for p in &self.properties {
            props.add_override(p)?;
        }
        let spec = props.to_spec(&path.display().to_string())?;
        let (load, run) = match (self.load, self.run) {
            (None, None) => (true, true),
            (l, r) => (l.unwrap_or(false), r.unwrap_or(false)),
        };
        if !load && !run {
            return Err(BenchError::InvalidArgument(
                "nothing to do: both --load and --run are off".into(),
            ));
        }
        Ok(YcsbConfig {
            spec,
            load,
            run,
            seed: self.seed.unwrap_or(0x5eed),
        })
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
