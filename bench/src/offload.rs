//! Memtable offloading as the benchmarks configure it: the `--offload`
//! flag group (also the `[offload]` table of a config file), its checks, the
//! engine's [`OffloadOptions`] it resolves to, and the line that reports it
//! with the results.
//!
//! Without `--memnode` the database runs an in-process memory node over the
//! `local` transport (the embedded default); with `--memnode HOST:PORT
//! --token_file F` it registers with an `o3-memnode` process, whose data
//! plane is `shm` or `tcp` as that process serves it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use o3_compute::{
    CacheValues, MemoryNodeChoice, OffloadOptions, ReadPolicy, RemoteConfig, StoreConfig,
};
use o3_transport::control::ClusterToken;
use o3_transport::link::LinkModel;
use serde::{Deserialize, Serialize};

use crate::engine::parse_bool;
use crate::error::{BenchError, Result};

/// The link presets `--link` accepts ([`LinkModel::preset`]).
pub const LINK_PRESETS: [&str; 4] = ["unlimited", "rdma-fabric", "10gbe", "cross-dc"];

/// Default bound on every call to an `o3-memnode` process.
pub const DEFAULT_MEMNODE_TIMEOUT_MS: u64 = 5_000;

/// Offloading flags; every one is optional so a config file can supply it.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(rename_all = "snake_case")]
pub struct OffloadArgs {
    /// Ship sealed memtables beyond the local budget to a memory node
    /// (in-process over the `local` transport unless --memnode is given).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub offload: Option<bool>,
    /// The control plane (HOST:PORT) of an `o3-memnode` process to offload
    /// to; absent = a memory node inside this process.
    #[arg(long, value_name = "HOST:PORT")]
    pub memnode: Option<String>,
    /// File holding the cluster token (required with --memnode).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Pool of the in-process memory node in bytes (default: the engine's,
    /// 4 GiB, reserved lazily).
    #[arg(long, value_name = "BYTES")]
    pub memnode_pool_size: Option<u64>,
    /// Sealed memtables per shard kept in local memory; older ones are
    /// offloaded (default: the engine's, 1).
    #[arg(long, value_name = "N")]
    pub max_local_sealed_memtables: Option<usize>,
    /// Bytes of images this database may hold on the memory node (default:
    /// the engine's, 2 GiB).
    #[arg(long, value_name = "BYTES")]
    pub max_offloaded_bytes: Option<u64>,
    /// Threads shipping images (default: the engine's, 2).
    #[arg(long, value_name = "N")]
    pub offload_threads: Option<usize>,
    /// A shard's flush waits for this many sealed memtables, so offloaded
    /// ones merge into fewer level-0 tables (RocksDB's
    /// min_write_buffer_number_to_merge; default: the engine's, 1).
    #[arg(long, value_name = "N")]
    pub min_memtables_to_merge: Option<usize>,
    /// Emulated link to the memory node: unlimited, rdma-fabric, 10gbe or
    /// cross-dc (default: none added).
    #[arg(long, value_name = "PRESET")]
    pub link: Option<String>,
    /// Emulated link latency per operation, in microseconds (instead of
    /// --link).
    #[arg(long, value_name = "N")]
    pub link_latency_us: Option<u64>,
    /// Emulated link bandwidth in bytes per second (instead of --link;
    /// default unlimited).
    #[arg(long, value_name = "BYTES_PER_SEC")]
    pub link_bandwidth: Option<u64>,
    /// Bound on every call to an `o3-memnode` process, in milliseconds
    /// (default 5000); a node silent for longer counts as failed.
    #[arg(long, value_name = "MS")]
    pub memnode_timeout_ms: Option<u64>,
    /// How reads reach offloaded images: delegate (every lookup and scan
    /// asks the memory node), cache (plus the key→offset cache and
    /// one-sided reads of cached entries) or adaptive (plus choices from
    /// measured costs: pulling hot images back, scan batch sizes, reading
    /// a scan's images whole); default adaptive.
    #[arg(long, value_name = "POLICY")]
    pub read_policy: Option<String>,
    /// Local bytes of the key→offset cache (default 8 MiB; 0 = none).
    #[arg(long, value_name = "BYTES")]
    pub offset_cache_bytes: Option<u64>,
    /// Lookups of a key that reach offloaded images before it is cached
    /// (default 2).
    #[arg(long, value_name = "N")]
    pub cache_admit_after: Option<u32>,
    /// Whether cache entries hold their key and value, so a hit reads
    /// nothing remotely: off, auto (adaptive policy, while a one-sided
    /// read costs more than 4 local lookups) or on (default auto).
    #[arg(long, value_name = "off|auto|on")]
    pub cache_values: Option<String>,
    /// Local bytes for offloaded images pulled back whole because they are
    /// read often (adaptive policy; default 32 MiB; 0 = never).
    #[arg(long, value_name = "BYTES")]
    pub pull_back_bytes: Option<u64>,
    /// Local bytes for key indexes of offloaded images, through which
    /// scans merge images here and read only the values they return
    /// (adaptive policy; default 16 MiB; 0 = none).
    #[arg(long, value_name = "BYTES")]
    pub index_bytes: Option<u64>,
}

impl OffloadArgs {
    /// Flags given on the command line win over the config file. The link
    /// is one setting: any link flag replaces the file's whole link (a
    /// `--link_latency_us` on the command line over a file's `link` preset
    /// is a custom link, not a conflict).
    pub fn over(self, base: OffloadArgs) -> OffloadArgs {
        let link_given =
            self.link.is_some() || self.link_latency_us.is_some() || self.link_bandwidth.is_some();
        let (link, link_latency_us, link_bandwidth) = if link_given {
            (self.link, self.link_latency_us, self.link_bandwidth)
        } else {
            (base.link, base.link_latency_us, base.link_bandwidth)
        };
        OffloadArgs {
            offload: self.offload.or(base.offload),
            memnode: self.memnode.or(base.memnode),
            token_file: self.token_file.or(base.token_file),
            memnode_pool_size: self.memnode_pool_size.or(base.memnode_pool_size),
            max_local_sealed_memtables: self
                .max_local_sealed_memtables
                .or(base.max_local_sealed_memtables),
            max_offloaded_bytes: self.max_offloaded_bytes.or(base.max_offloaded_bytes),
            offload_threads: self.offload_threads.or(base.offload_threads),
            min_memtables_to_merge: self.min_memtables_to_merge.or(base.min_memtables_to_merge),
            link,
            link_latency_us,
            link_bandwidth,
            memnode_timeout_ms: self.memnode_timeout_ms.or(base.memnode_timeout_ms),
            read_policy: self.read_policy.or(base.read_policy),
            offset_cache_bytes: self.offset_cache_bytes.or(base.offset_cache_bytes),
            cache_admit_after: self.cache_admit_after.or(base.cache_admit_after),
            cache_values: self.cache_values.or(base.cache_values),
            pull_back_bytes: self.pull_back_bytes.or(base.pull_back_bytes),
            index_bytes: self.index_bytes.or(base.index_bytes),
        }
    }

    /// The offloading the flags ask for, or `None` without `--offload`.
    /// Any other offloading flag without `--offload` is an error (it would
    /// silently do nothing).
    pub fn resolve(self) -> Result<Option<OffloadConfig>> {
        if self.offload.unwrap_or(false) {
            return self.resolve_enabled().map(Some);
        }
        match self.first_flag_given() {
            Some(flag) => Err(BenchError::InvalidArgument(format!(
                "{flag} needs --offload"
            ))),
            None => Ok(None),
        }
    }

    /// The offloading of a subcommand that always offloads in one of its
    /// runs (`offload-compare`, `offload-lookup`): `--offload` is implied,
    /// and `--offload=false` is refused.
    pub fn resolve_implied(self, subcommand: &str) -> Result<OffloadConfig> {
        if self.offload == Some(false) {
            return Err(BenchError::InvalidArgument(format!(
                "{subcommand} runs with and without offloading; --offload=false makes no sense here"
            )));
        }
        self.resolve_enabled()
    }

    /// The name of the first offloading flag given besides `--offload`.
    fn first_flag_given(&self) -> Option<&'static str> {
        [
            ("--memnode", self.memnode.is_some()),
            ("--token_file", self.token_file.is_some()),
            ("--memnode_pool_size", self.memnode_pool_size.is_some()),
            (
                "--max_local_sealed_memtables",
                self.max_local_sealed_memtables.is_some(),
            ),
            ("--max_offloaded_bytes", self.max_offloaded_bytes.is_some()),
            ("--offload_threads", self.offload_threads.is_some()),
            (
                "--min_memtables_to_merge",
                self.min_memtables_to_merge.is_some(),
            ),
            ("--link", self.link.is_some()),
            ("--link_latency_us", self.link_latency_us.is_some()),
            ("--link_bandwidth", self.link_bandwidth.is_some()),
            ("--memnode_timeout_ms", self.memnode_timeout_ms.is_some()),
            ("--read_policy", self.read_policy.is_some()),
            ("--offset_cache_bytes", self.offset_cache_bytes.is_some()),
            ("--cache_admit_after", self.cache_admit_after.is_some()),
            ("--cache_values", self.cache_values.is_some()),
            ("--pull_back_bytes", self.pull_back_bytes.is_some()),
            ("--index_bytes", self.index_bytes.is_some()),
        ]
        .into_iter()
        .find(|(_, given)| *given)
        .map(|(flag, _)| flag)
    }

    fn resolve_enabled(self) -> Result<OffloadConfig> {
        let bad = |m: String| Err(BenchError::InvalidArgument(m));
        let defaults = OffloadOptions::default();
        let link = self.link_setting()?;
        let memory_node = match (self.memnode, self.token_file) {
            (Some(address), Some(token_file)) => {
                if let Some(size) = self.memnode_pool_size {
                    return bad(format!(
                        "--memnode_pool_size {size} sizes the in-process memory node; the o3-memnode at {address} has its own --pool-size"
                    ));
                }
                check_address(&address)?;
                let token = read_token(&token_file)?;
                let timeout_ms = self
                    .memnode_timeout_ms
                    .unwrap_or(DEFAULT_MEMNODE_TIMEOUT_MS);
                if timeout_ms == 0 {
                    return bad("--memnode_timeout_ms must be at least 1".into());
                }
                MemoryNodeSetting::Remote {
                    address,
                    token_file,
                    timeout_ms,
                    token,
                }
            }
            (Some(address), None) => {
                return bad(format!(
                    "--memnode {address} needs --token_file (the cluster token's file)"
                ));
            }
            (None, Some(path)) => {
                return bad(format!(
                    "--token_file {} is only used with --memnode HOST:PORT",
                    path.display()
                ));
            }
            (None, None) => {
                if self.memnode_timeout_ms.is_some() {
                    return bad("--memnode_timeout_ms is only used with --memnode HOST:PORT".into());
                }
                let default_pool = match &defaults.memory_node {
                    MemoryNodeChoice::Config(StoreConfig::InProcess { pool_size, .. }) => {
                        *pool_size
                    }
                    _ => 0,
                };
                let pool_size = self.memnode_pool_size.unwrap_or(default_pool);
                if pool_size == 0 {
                    return bad("--memnode_pool_size must be above 0".into());
                }
                MemoryNodeSetting::InProcess { pool_size }
            }
        };
        let read_policy = match &self.read_policy {
            None => defaults.read_policy,
            Some(name) => name
                .parse::<ReadPolicy>()
                .map_err(|e| BenchError::InvalidArgument(format!("--read_policy: {e}")))?,
        };
        let cache_values = match &self.cache_values {
            None => defaults.cache_values,
            Some(name) => name
                .parse::<CacheValues>()
                .map_err(|e| BenchError::InvalidArgument(format!("--cache_values: {e}")))?,
        };
        let config = OffloadConfig {
            memory_node,
            link,
            read_policy,
            cache_values,
            offset_cache_bytes: self
                .offset_cache_bytes
                .unwrap_or(defaults.offset_cache_bytes),
            cache_admit_after: self.cache_admit_after.unwrap_or(defaults.cache_admit_after),
            pull_back_bytes: self.pull_back_bytes.unwrap_or(defaults.pull_back_bytes),
            index_bytes: self.index_bytes.unwrap_or(defaults.index_bytes),
            max_local_sealed_memtables: self
                .max_local_sealed_memtables
                .unwrap_or(defaults.max_local_sealed_memtables),
            max_offloaded_bytes: self
                .max_offloaded_bytes
                .unwrap_or(defaults.max_offloaded_bytes),
            shipping_threads: self.offload_threads.unwrap_or(defaults.shipping_threads),
            min_memtables_to_merge: self
                .min_memtables_to_merge
                .unwrap_or(defaults.min_memtables_to_merge),
        };
        config
            .options()
            .validate()
            .map_err(|e| BenchError::rejected("", e))?;
        Ok(config)
    }

    /// The link model of `--link`, or of `--link_latency_us` and
    /// `--link_bandwidth`; `None` when no link flag is given.
    fn link_setting(&self) -> Result<Option<LinkSetting>> {
        let custom = self.link_latency_us.is_some() || self.link_bandwidth.is_some();
        match (&self.link, custom) {
            (Some(_), true) => Err(BenchError::InvalidArgument(
                "give --link PRESET or --link_latency_us/--link_bandwidth, not both".into(),
            )),
            (Some(name), false) => match LINK_PRESETS
                .into_iter()
                .find(|p| p == name)
                .and_then(|p| LinkModel::preset(p).map(|model| (p, model)))
            {
                Some((preset, model)) => Ok(Some(LinkSetting {
                    preset: Some(preset),
                    model,
                })),
                None => Err(BenchError::InvalidArgument(format!(
                    "--link: unknown preset '{name}' (valid: {})",
                    LINK_PRESETS.join(", ")
                ))),
            },
            (None, true) => {
                if self.link_bandwidth == Some(0) {
                    return Err(BenchError::InvalidArgument(
                        "--link_bandwidth must be above 0 (leave it out for unlimited)".into(),
                    ));
                }
                Ok(Some(LinkSetting {
                    preset: None,
                    model: LinkModel {
                        latency: Duration::from_micros(self.link_latency_us.unwrap_or(0)),
                        bandwidth_bytes_per_sec: self.link_bandwidth,
                    },
                }))
            }
            (None, false) => Ok(None),
        }
    }
}

/// `HOST:PORT` with a non-empty host and a port number.
fn check_address(address: &str) -> Result<()> {
    let ok = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(BenchError::InvalidArgument(format!(
            "--memnode '{address}' is not HOST:PORT"
        )))
    }
}

/// The cluster token in `path` (surrounding whitespace, such as a trailing
/// newline, is not part of it).
pub(crate) fn read_token(path: &std::path::Path) -> Result<ClusterToken> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        BenchError::InvalidArgument(format!("--token_file {}: {e}", path.display()))
    })?;
    ClusterToken::new(text.trim())
        .map_err(|e| BenchError::InvalidArgument(format!("--token_file {}: {e}", path.display())))
}

/// Which memory node, as configured.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MemoryNodeSetting {
    /// A memory node inside this process, over the `local` transport.
    InProcess { pool_size: u64 },
    /// A memory node inside this process served on loopback (control
    /// plane and `tcp` data plane), so that a compaction service's agents
    /// can read its images and its flush executor can run flushes
    /// (`--flush_placement` with `--csa_agents`).
    Served {
        control: String,
        pool_size: u64,
        flush_executor: bool,
        #[serde(skip)]
        token: ClusterToken,
    },
    /// An `o3-memnode` process.
    Remote {
        address: String,
        token_file: PathBuf,
        timeout_ms: u64,
        #[serde(skip)]
        token: ClusterToken,
    },
}

/// An emulated link: a preset's name (if one was named) and its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSetting {
    pub preset: Option<&'static str>,
    pub model: LinkModel,
}

/// Resolved offloading settings (reported verbatim).
#[derive(Debug, Clone, Serialize)]
pub struct OffloadConfig {
    pub memory_node: MemoryNodeSetting,
    /// `None`: no link model (the transport's own speed).
    pub link: Option<LinkSetting>,
    pub max_local_sealed_memtables: usize,
    pub max_offloaded_bytes: u64,
    pub shipping_threads: usize,
    pub min_memtables_to_merge: usize,
    #[serde(serialize_with = "serialize_policy")]
    pub read_policy: ReadPolicy,
    #[serde(serialize_with = "serialize_cache_values")]
    pub cache_values: CacheValues,
    pub offset_cache_bytes: u64,
    pub cache_admit_after: u32,
    pub pull_back_bytes: u64,
    pub index_bytes: u64,
}

fn serialize_policy<S: serde::Serializer>(
    p: &ReadPolicy,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(p.name())
}

fn serialize_cache_values<S: serde::Serializer>(
    v: &CacheValues,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(v.name())
}

impl OffloadConfig {
    /// The engine's options for these settings.
    pub fn options(&self) -> OffloadOptions {
        let link = self.link.map(|l| l.model);
        let store = match &self.memory_node {
            MemoryNodeSetting::InProcess { pool_size } => StoreConfig::InProcess {
                pool_size: *pool_size,
                link,
            },
            MemoryNodeSetting::Served { control, token, .. } => StoreConfig::Remote(RemoteConfig {
                control: control.clone(),
                token: token.clone(),
                compute_node: format!("o3-bench-{}", std::process::id()),
                link,
                op_timeout: Duration::from_millis(DEFAULT_MEMNODE_TIMEOUT_MS),
            }),
            MemoryNodeSetting::Remote {
                address,
                timeout_ms,
                token,
                ..
            } => StoreConfig::Remote(RemoteConfig {
                control: address.clone(),
                token: token.clone(),
                compute_node: format!("o3-bench-{}", std::process::id()),
                link,
                op_timeout: Duration::from_millis(*timeout_ms),
            }),
        };
        OffloadOptions {
            memory_node: MemoryNodeChoice::Config(store),
            max_local_sealed_memtables: self.max_local_sealed_memtables,
            max_offloaded_bytes: self.max_offloaded_bytes,
            shipping_threads: self.shipping_threads,
            min_memtables_to_merge: self.min_memtables_to_merge,
            read_policy: self.read_policy,
            offset_cache_bytes: self.offset_cache_bytes,
            cache_admit_after: self.cache_admit_after,
            cache_values: self.cache_values,
            pull_back_bytes: self.pull_back_bytes,
            index_bytes: self.index_bytes,
            ..OffloadOptions::default()
        }
    }

    /// The memory node and how it is reached, for the report.
    pub fn describe_memory_node(&self) -> String {
        match &self.memory_node {
            MemoryNodeSetting::InProcess { pool_size } => format!(
                "in-process memory node (local transport, pool {})",
                bytes(*pool_size)
            ),
            MemoryNodeSetting::Served {
                control,
                pool_size,
                flush_executor,
                ..
            } => format!(
                "in-process memory node served at {control} (tcp data plane on loopback, pool {}){}",
                bytes(*pool_size),
                if *flush_executor {
                    ", running flushes for the compaction service"
                } else {
                    ""
                }
            ),
            MemoryNodeSetting::Remote { address, .. } => format!(
                "o3-memnode at {address} (data plane: shm or tcp, as that process serves it)"
            ),
        }
    }

    /// The link model, for the report.
    pub fn describe_link(&self) -> String {
        match self.link {
            None => "link none added".to_string(),
            Some(LinkSetting {
                preset: Some(name),
                model,
            }) => format!("link {name} ({model})"),
            Some(LinkSetting {
                preset: None,
                model,
            }) => format!("link ({model})"),
        }
    }

    /// Every condition offloading adds, for the report's "emulated
    /// conditions" line: the memory node, the link and the memtables kept
    /// local by a database whose memtables are `write_buffer_size` bytes.
    pub fn describe(&self, write_buffer_size: usize) -> String {
        format!(
            "offloading to {}, {}, keeping {} sealed memtable(s) per shard local + the active one ({} per shard), offload cap {}, {} shipping thread(s), flushes merge {} memtable(s), reads: {}",
            self.describe_memory_node(),
            self.describe_link(),
            self.max_local_sealed_memtables,
            bytes(self.local_memtable_bytes(write_buffer_size)),
            bytes(self.max_offloaded_bytes),
            self.shipping_threads,
            self.min_memtables_to_merge,
            self.describe_reads()
        )
    }

    /// The read policy and the local memory it uses, for the report.
    pub fn describe_reads(&self) -> String {
        match self.read_policy {
            ReadPolicy::Delegate => "delegate (no cache)".to_string(),
            ReadPolicy::Cache => format!(
                "cache (key→offset cache {}, admitted after {} lookups, values held: {})",
                bytes(self.offset_cache_bytes),
                self.cache_admit_after,
                self.cache_values
            ),
            ReadPolicy::Adaptive => format!(
                "adaptive (key→offset cache {}, admitted after {} lookups, values held: {}; pull-back {}; key indexes {})",
                bytes(self.offset_cache_bytes),
                self.cache_admit_after,
                self.cache_values,
                bytes(self.pull_back_bytes),
                bytes(self.index_bytes)
            ),
        }
    }

    /// Bytes of memtables a shard keeps in local memory once offloading has
    /// caught up: the active one and `max_local_sealed_memtables` sealed
    /// ones (a memtable being flushed or shipped comes on top).
    pub fn local_memtable_bytes(&self, write_buffer_size: usize) -> u64 {
        (write_buffer_size as u64).saturating_mul(self.max_local_sealed_memtables as u64 + 1)
    }
}

impl Serialize for LinkSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("LinkSetting", 3)?;
        st.serialize_field("preset", &self.preset)?;
        st.serialize_field("latency_us", &(self.model.latency.as_micros() as u64))?;
        st.serialize_field(
            "bandwidth_bytes_per_sec",
            &self.model.bandwidth_bytes_per_sec,
        )?;
        st.end()
    }
}

/// `n` bytes with the exact count and a binary-unit reading.
pub fn bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    match UNITS.iter().find(|(size, _)| n >= *size) {
        Some((size, unit)) => format!("{n} bytes = {:.1} {unit}", n as f64 / *size as f64),
        None => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> OffloadArgs {
        OffloadArgs {
            offload: Some(true),
            ..Default::default()
        }
    }

    fn error(args: OffloadArgs) -> String {
        let e = args.resolve().unwrap_err().to_string();
        assert_eq!(e.lines().count(), 1, "{e}");
        e
    }

    #[test]
    fn without_offload_flags_nothing_is_offloaded() {
        assert!(OffloadArgs::default().resolve().unwrap().is_none());
        let off = OffloadArgs {
            offload: Some(false),
            ..Default::default()
        };
        assert!(off.resolve().unwrap().is_none());
    }

    /// The in-process default takes the engine's defaults for everything
    /// not given.
    #[test]
    fn offload_alone_is_an_in_process_memory_node_with_the_engine_defaults() {
        let c = enabled().resolve().unwrap().unwrap();
        let d = OffloadOptions::default();
        assert!(
            matches!(c.memory_node, MemoryNodeSetting::InProcess { pool_size } if pool_size > 0)
        );
        assert_eq!(c.link, None);
        assert_eq!(c.max_local_sealed_memtables, d.max_local_sealed_memtables);
        assert_eq!(c.max_offloaded_bytes, d.max_offloaded_bytes);
        assert_eq!(c.shipping_threads, d.shipping_threads);
        assert_eq!(c.min_memtables_to_merge, d.min_memtables_to_merge);
        let o = c.options();
        assert!(matches!(
            o.memory_node,
            MemoryNodeChoice::Config(StoreConfig::InProcess { link: None, .. })
        ));
        assert!(c.describe(1 << 20).contains("in-process memory node"));
        assert!(
            c.describe(1 << 20)
                .contains("2097152 bytes = 2.0 MiB per shard"),
            "{}",
            c.describe(1 << 20)
        );
    }

    #[test]
    fn flags_reach_the_engine_options() {
        let c = OffloadArgs {
            memnode_pool_size: Some(64 << 20),
            max_local_sealed_memtables: Some(3),
            max_offloaded_bytes: Some(1 << 30),
            offload_threads: Some(4),
            min_memtables_to_merge: Some(3),
            link: Some("rdma-fabric".into()),
            ..enabled()
        }
        .resolve()
        .unwrap()
        .unwrap();
        let o = c.options();
        assert_eq!(o.max_local_sealed_memtables, 3);
        assert_eq!(o.max_offloaded_bytes, 1 << 30);
        assert_eq!(o.shipping_threads, 4);
        assert_eq!(o.min_memtables_to_merge, 3);
        match o.memory_node {
            MemoryNodeChoice::Config(StoreConfig::InProcess { pool_size, link }) => {
                assert_eq!(pool_size, 64 << 20);
                assert_eq!(link, Some(LinkModel::RDMA_FABRIC));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.local_memtable_bytes(1 << 20), 4 << 20);
        assert!(
            c.describe_link()
                .starts_with("link rdma-fabric (latency 2µs")
        );
    }

    #[test]
    fn a_custom_link_takes_latency_and_bandwidth() {
        let c = OffloadArgs {
            link_latency_us: Some(3),
            link_bandwidth: Some(12_500_000_000),
            ..enabled()
        }
        .resolve()
        .unwrap()
        .unwrap();
        assert_eq!(
            c.link.unwrap().model,
            LinkModel {
                latency: Duration::from_micros(3),
                bandwidth_bytes_per_sec: Some(12_500_000_000),
            }
        );
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["link"]["latency_us"], 3);
        assert_eq!(json["memory_node"]["kind"], "in_process");
    }

    #[test]
    fn a_remote_memory_node_reads_its_token() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-token\n").unwrap();
        let c = OffloadArgs {
            memnode: Some("127.0.0.1:7380".into()),
            token_file: Some(token.clone()),
            link: Some("10gbe".into()),
            ..enabled()
        }
        .resolve()
        .unwrap()
        .unwrap();
        match c.options().memory_node {
            MemoryNodeChoice::Config(StoreConfig::Remote(r)) => {
                assert_eq!(r.control, "127.0.0.1:7380");
                assert_eq!(r.link, Some(LinkModel::TEN_GBE));
                assert_eq!(
                    r.op_timeout,
                    Duration::from_millis(DEFAULT_MEMNODE_TIMEOUT_MS)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(c.describe(4096).contains("o3-memnode at 127.0.0.1:7380"));
        // The token never reaches the report.
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("s3cret"), "{json}");

        std::fs::write(&token, "two words\n").unwrap();
        let e = error(OffloadArgs {
            memnode: Some("127.0.0.1:7380".into()),
            token_file: Some(token),
            ..enabled()
        });
        assert!(e.contains("--token_file") && e.contains("ASCII"), "{e}");
    }

    #[test]
    fn bad_combinations_are_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t").unwrap();
        let cases: Vec<(OffloadArgs, &[&str])> = vec![
            (
                OffloadArgs {
                    link: Some("10gbe".into()),
                    ..Default::default()
                },
                &["--link needs --offload"],
            ),
            (
                OffloadArgs {
                    link_latency_us: Some(3),
                    offload: Some(false),
                    ..Default::default()
                },
                &["--link_latency_us needs --offload"],
            ),
            (
                OffloadArgs {
                    memnode: Some("h:1".into()),
                    ..Default::default()
                },
                &["--memnode needs --offload"],
            ),
            (
                OffloadArgs {
                    memnode: Some("127.0.0.1:7380".into()),
                    ..enabled()
                },
                &["--memnode 127.0.0.1:7380 needs --token_file"],
            ),
            (
                OffloadArgs {
                    token_file: Some(token.clone()),
                    ..enabled()
                },
                &["--token_file", "only used with --memnode"],
            ),
            (
                OffloadArgs {
                    memnode: Some("no-port".into()),
                    token_file: Some(token.clone()),
                    ..enabled()
                },
                &["'no-port' is not HOST:PORT"],
            ),
            (
                OffloadArgs {
                    memnode: Some("h:1".into()),
                    token_file: Some(dir.path().join("missing")),
                    ..enabled()
                },
                &["--token_file", "missing"],
            ),
            (
                OffloadArgs {
                    memnode: Some("h:1".into()),
                    token_file: Some(token.clone()),
                    memnode_pool_size: Some(1 << 20),
                    ..enabled()
                },
                &["--memnode_pool_size", "in-process"],
            ),
            (
                OffloadArgs {
                    link: Some("infiniband".into()),
                    ..enabled()
                },
                &["unknown preset 'infiniband'", "rdma-fabric"],
            ),
            (
                OffloadArgs {
                    link: Some("10gbe".into()),
                    link_latency_us: Some(3),
                    ..enabled()
                },
                &["not both"],
            ),
            (
                OffloadArgs {
                    link_bandwidth: Some(0),
                    ..enabled()
                },
                &["--link_bandwidth must be above 0"],
            ),
            (
                OffloadArgs {
                    offload_threads: Some(0),
                    ..enabled()
                },
                &["shipping_threads"],
            ),
            (
                OffloadArgs {
                    min_memtables_to_merge: Some(0),
                    ..enabled()
                },
                &["min_memtables_to_merge"],
            ),
            (
                OffloadArgs {
                    min_memtables_to_merge: Some(2),
                    ..Default::default()
                },
                &["--min_memtables_to_merge needs --offload"],
            ),
            (
                OffloadArgs {
                    memnode_pool_size: Some(0),
                    ..enabled()
                },
                &["--memnode_pool_size must be above 0"],
            ),
            (
                OffloadArgs {
                    memnode_timeout_ms: Some(100),
                    ..enabled()
                },
                &["--memnode_timeout_ms is only used with --memnode"],
            ),
        ];
        for (args, needles) in cases {
            let e = error(args);
            for n in needles {
                assert!(e.contains(n), "{e:?} lacks {n:?}");
            }
        }
    }

    #[test]
    fn link_flags_replace_the_config_files_link_as_a_whole() {
        let file = OffloadArgs {
            offload: Some(true),
            link: Some("10gbe".into()),
            max_local_sealed_memtables: Some(2),
            ..Default::default()
        };
        let flags = OffloadArgs {
            link_latency_us: Some(3),
            ..Default::default()
        };
        let c = flags.over(file.clone()).resolve().unwrap().unwrap();
        assert_eq!(c.max_local_sealed_memtables, 2);
        assert_eq!(
            c.link.unwrap().model,
            LinkModel {
                latency: Duration::from_micros(3),
                bandwidth_bytes_per_sec: None,
            }
        );
        let c = OffloadArgs::default()
            .over(file)
            .resolve()
            .unwrap()
            .unwrap();
        assert_eq!(c.link.unwrap().preset, Some("10gbe"));
    }

    #[test]
    fn subcommands_that_always_offload_imply_the_flag() {
        let c = OffloadArgs {
            link: Some("10gbe".into()),
            ..Default::default()
        }
        .resolve_implied("offload-compare")
        .unwrap();
        assert_eq!(c.link.unwrap().model, LinkModel::TEN_GBE);
        let e = OffloadArgs {
            offload: Some(false),
            ..Default::default()
        }
        .resolve_implied("offload-compare")
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("offload-compare") && e.contains("--offload=false"),
            "{e}"
        );
    }

    #[test]
    fn byte_counts_read_in_binary_units() {
        assert_eq!(bytes(100), "100 bytes");
        assert_eq!(bytes(3 << 20), "3145728 bytes = 3.0 MiB");
        assert_eq!(bytes(4 << 30), "4294967296 bytes = 4.0 GiB");
    }
}
