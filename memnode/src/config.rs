//! The `o3-memnode` binary's configuration: a TOML file (`--config`) whose
//! keys the command-line flags override.
//!
//! Keys (all optional in the file; `token_file` must come from one of them):
//!
//! | key          | flag            | default          | example          |
//! |--------------|-----------------|------------------|------------------|
//! | `listen`     | `--listen`      | `127.0.0.1:7380` | `0.0.0.0:7380`   |
//! | `pool_size`  | `--pool-size`   | `1GiB`           | `8GiB`, `64MiB`  |
//! | `lease_ttl`  | `--lease-ttl`   | `10s`            | `500ms`, `2m`    |
//! | `token_file` | `--token-file`  | —                | `/etc/o3/token`  |
//! | `shutdown_grace` | `--shutdown-grace` | `5s`       | `30s`            |
//! | `transport`  | `--transport`   | `tcp`            | `shm`            |
//! | `data_listen` | `--data-listen` | control port + 1 on the `listen` host (port 0 when `listen`'s is 0) | `10.0.0.5:7381` |
//! | `shm_dir`    | `--shm-dir`     | `/dev/shm`       | `/mnt/hugepages` |
//! | `scheduler`  | `--scheduler`   | — (no flush executor) | `10.0.0.2:7400` |
//! | `flush_slots` | `--flush-slots` | `2`             | `4`              |
//! | `path_map`   | `--path-map`    | —                | `/db=/mnt/db`    |
//! | `storage_read_mbps` | `--storage-read-mbps` | — (unthrottled) | `200` |
//! | `storage_write_mbps` | `--storage-write-mbps` | — (unthrottled) | `100` |
//! | `storage_latency_us` | `--storage-latency-us` | — | `500` |
//! | `poll_spin_us` | `--poll-spin-us` | `50` | `1000` |
//!
//! With `scheduler` set, the memory node also executes flushes of images
//! in its pool for that `o3-csa` scheduler (`crate::flush_executor`),
//! `flush_slots` at once, writing tables to the database directories named
//! by the jobs (moved by `path_map` `FROM=TO` when storage is mounted
//! elsewhere here), through the same emulated storage throttle as an
//! `o3-csa agent`'s (`storage_*`).
//!
//! `transport` is the data plane's `o3-transport` backend: `tcp` (any host;
//! it listens on `data_listen`) or `shm` (compute nodes on this host; region
//! files live in a fresh directory under `shm_dir`). `data_listen` is used
//! with `tcp` only, `shm_dir` with `shm` only.
//!
//! `poll_spin_us` is how long the data plane's receiving threads busy-poll
//! for the next request before they sleep: a request to a sleeping thread
//! pays its wake-up (tens of microseconds on a busy host). A node with a
//! core of its own can poll longer, as an RDMA server polls its queues;
//! 0 sleeps at once.
//!
//! Sizes are a number with an optional unit `B`, `KiB`, `MiB`, `GiB`, `TiB`
//! (powers of 1024); durations a number with a unit `ms`, `s`, `m`, `h`.
//! Unknown keys are errors, so a misspelt key is never silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use o3_transport::control::ClusterToken;
use o3_transport::control::settings;
pub use o3_transport::control::settings::{ConfigError, invalid, parse_duration, parse_size};
use serde::Deserialize;

use crate::data_plane::TransportKind;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7380";
pub const DEFAULT_POOL_SIZE: &str = "1GiB";
pub const DEFAULT_LEASE_TTL: &str = "10s";
pub const DEFAULT_SHUTDOWN_GRACE: &str = "5s";
pub const DEFAULT_TRANSPORT: &str = "tcp";
pub const DEFAULT_SHM_DIR: &str = "/dev/shm";
pub const DEFAULT_FLUSH_SLOTS: u32 = 2;
/// The data plane's busy-poll unless `poll_spin_us` says otherwise (the
/// lookup poll of `client::LOOKUP_POLL`).
pub const DEFAULT_POLL_SPIN_US: u64 = 50;
pub const MAX_POLL_SPIN_US: u64 = 1_000_000;

/// The settings as the file or the flags spell them, before parsing.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub pool_size: Option<String>,
    pub lease_ttl: Option<String>,
    pub token_file: Option<PathBuf>,
    pub shutdown_grace: Option<String>,
    pub transport: Option<String>,
    pub data_listen: Option<String>,
    pub shm_dir: Option<PathBuf>,
    pub scheduler: Option<String>,
    pub flush_slots: Option<u32>,
    pub path_map: Option<String>,
    pub storage_read_mbps: Option<f64>,
    pub storage_write_mbps: Option<f64>,
    pub storage_latency_us: Option<u64>,
    pub poll_spin_us: Option<u64>,
}

impl RawConfig {
    /// Parses the TOML text of the config file at `path`.
    pub fn from_toml(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
        settings::from_toml(path, text)
    }

    /// Reads and parses the config file at `path`.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        settings::from_file(path)
    }

    /// `self` with every setting `flags` has replaced by the flag's.
    pub fn overridden_by(self, flags: RawConfig) -> RawConfig {
        RawConfig {
            listen: flags.listen.or(self.listen),
            pool_size: flags.pool_size.or(self.pool_size),
            lease_ttl: flags.lease_ttl.or(self.lease_ttl),
            token_file: flags.token_file.or(self.token_file),
            shutdown_grace: flags.shutdown_grace.or(self.shutdown_grace),
            transport: flags.transport.or(self.transport),
            data_listen: flags.data_listen.or(self.data_listen),
            shm_dir: flags.shm_dir.or(self.shm_dir),
            scheduler: flags.scheduler.or(self.scheduler),
            flush_slots: flags.flush_slots.or(self.flush_slots),
            path_map: flags.path_map.or(self.path_map),
            storage_read_mbps: flags.storage_read_mbps.or(self.storage_read_mbps),
            storage_write_mbps: flags.storage_write_mbps.or(self.storage_write_mbps),
            storage_latency_us: flags.storage_latency_us.or(self.storage_latency_us),
            poll_spin_us: flags.poll_spin_us.or(self.poll_spin_us),
        }
    }

    /// Parses every setting, filling in defaults.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let listen = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::InvalidValue {
                key: "listen",
                value: listen.to_owned(),
                reason: e.to_string(),
            })?;
        let pool_size = parse_size(
            "pool_size",
            self.pool_size.as_deref().unwrap_or(DEFAULT_POOL_SIZE),
        )?;
        if pool_size == 0 {
            return Err(invalid("pool_size", "0", "the pool cannot be empty"));
        }
        let lease_ttl = parse_duration(
            "lease_ttl",
            self.lease_ttl.as_deref().unwrap_or(DEFAULT_LEASE_TTL),
        )?;
        if lease_ttl.is_zero() {
            return Err(invalid("lease_ttl", "0", "a lease must last"));
        }
        let shutdown_grace = parse_duration(
            "shutdown_grace",
            self.shutdown_grace
                .as_deref()
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        )?;
        let transport_name = self.transport.as_deref().unwrap_or(DEFAULT_TRANSPORT);
        let transport = match transport_name.parse::<TransportKind>() {
            Ok(TransportKind::Local) => {
                return Err(invalid(
                    "transport",
                    transport_name,
                    "local is only for a memory node inside the compute process (use shm or tcp)",
                ));
            }
            Ok(kind) => kind,
            Err(reason) => return Err(invalid("transport", transport_name, &reason)),
        };
        let data_listen = match self.data_listen.as_deref() {
            Some(text) => text
                .parse::<SocketAddr>()
                .map_err(|e| invalid("data_listen", text, &e.to_string()))?,
            None => default_data_listen(listen)?,
        };
        if transport == TransportKind::Tcp && data_listen == listen && listen.port() != 0 {
            return Err(invalid(
                "data_listen",
                &data_listen.to_string(),
                "the control plane already listens there",
            ));
        }
        let shm_dir = self
            .shm_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SHM_DIR));
        if shm_dir.as_os_str().is_empty() {
            return Err(invalid("shm_dir", "", "an empty path"));
        }
        let poll_spin_us = self.poll_spin_us.unwrap_or(DEFAULT_POLL_SPIN_US);
        if poll_spin_us > MAX_POLL_SPIN_US {
            return Err(invalid(
                "poll_spin_us",
                &poll_spin_us.to_string(),
                &format!("at most {MAX_POLL_SPIN_US} (one second)"),
            ));
        }
        let poll_spin = Duration::from_micros(poll_spin_us);
        let token_file = self.token_file.ok_or(ConfigError::MissingTokenFile)?;
        let flush_executor = match self.scheduler {
            None => None,
            // The agent's own parsing: the same keys mean the same there.
            Some(scheduler) => Some(
                o3_csa::config::RawAgentConfig {
                    scheduler: Some(scheduler),
                    token_file: Some(token_file.clone()),
                    name: Some(format!("memnode {listen}")),
                    slots: Some(self.flush_slots.unwrap_or(DEFAULT_FLUSH_SLOTS)),
                    storage_read_mbps: self.storage_read_mbps,
                    storage_write_mbps: self.storage_write_mbps,
                    storage_latency_us: self.storage_latency_us,
                    path_map: self.path_map,
                    shutdown_grace: Some(format!("{}ms", shutdown_grace.as_millis())),
                }
                .resolve()?,
            ),
        };
        Ok(Config {
            listen,
            pool_size,
            lease_ttl,
            token_file,
            shutdown_grace,
            transport,
            data_listen,
            shm_dir,
            flush_executor,
            poll_spin,
        })
    }
}

/// A complete, parsed configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub pool_size: u64,
    pub lease_ttl: Duration,
    pub token_file: PathBuf,
    /// How long calls in flight may run on after SIGINT or SIGTERM.
    pub shutdown_grace: Duration,
    /// The data plane's backend (`shm` or `tcp`).
    pub transport: TransportKind,
    /// Where the `tcp` data plane listens.
    pub data_listen: SocketAddr,
    /// Where the `shm` data plane creates its directory.
    pub shm_dir: PathBuf,
    /// The flush executor's settings, when a scheduler is configured.
    pub flush_executor: Option<o3_csa::config::AgentSettings>,
    /// How long the data plane's receiving threads busy-poll before they
    /// sleep.
    pub poll_spin: Duration,
}

/// The control address's port + 1 on the same host; port 0 (any free
/// port) when the control plane's is 0.
fn default_data_listen(listen: SocketAddr) -> Result<SocketAddr, ConfigError> {
    let port = match listen.port() {
        0 => 0,
        port => port.checked_add(1).ok_or_else(|| {
            invalid(
                "data_listen",
                "",
                "the control port is 65535, so control port + 1 does not exist: set data_listen",
            )
        })?,
    };
    Ok(SocketAddr::new(listen.ip(), port))
}

impl Config {
    /// The cluster token in `token_file` (surrounding whitespace, such as a
    /// trailing newline, is not part of it).
    pub fn read_token(&self) -> Result<ClusterToken, ConfigError> {
        settings::read_token(&self.token_file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RawConfig, ConfigError> {
        RawConfig::from_toml(Path::new("memnode.toml"), text)
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("k", "4096").unwrap(), 4096);
        assert_eq!(parse_size("k", "4096B").unwrap(), 4096);
        assert_eq!(parse_size("k", "64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("k", "8GiB").unwrap(), 8 << 30);
        assert_eq!(parse_size("k", " 2 TiB ").unwrap(), 2 << 40);
        for bad in [
            "",
            "GiB",
            "8GB",
            "8 gib",
            "-1MiB",
            "1.5GiB",
            "99999999999TiB",
        ] {
            assert!(
                matches!(
                    parse_size("pool_size", bad),
                    Err(ConfigError::InvalidValue {
                        key: "pool_size",
                        ..
                    })
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(
            parse_duration("k", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("k", "10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("k", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(
            parse_duration("k", "1h").unwrap(),
            Duration::from_secs(3600)
        );
        for bad in ["10", "s", "10 sec", "1.5s", "-1s"] {
            assert!(
                parse_duration("lease_ttl", bad).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn file_values_resolve_and_flags_override_them() {
        let file = parse(
            "listen = \"127.0.0.1:9000\"\npool_size = \"64MiB\"\nlease_ttl = \"2s\"\ntoken_file = \"/t\"\n",
        )
        .unwrap();
        let resolved = file.clone().resolve().unwrap();
        assert_eq!(
            resolved,
            Config {
                listen: "127.0.0.1:9000".parse().unwrap(),
                pool_size: 64 << 20,
                lease_ttl: Duration::from_secs(2),
                token_file: PathBuf::from("/t"),
                shutdown_grace: Duration::from_secs(5),
                transport: TransportKind::Tcp,
                data_listen: "127.0.0.1:9001".parse().unwrap(),
                shm_dir: PathBuf::from("/dev/shm"),
                flush_executor: None,
                poll_spin: Duration::from_micros(DEFAULT_POLL_SPIN_US),
            }
        );
        let flags = RawConfig {
            pool_size: Some("8GiB".into()),
            token_file: Some("/other".into()),
            ..RawConfig::default()
        };
        let resolved = file.overridden_by(flags).resolve().unwrap();
        assert_eq!(resolved.pool_size, 8 << 30);
        assert_eq!(resolved.token_file, PathBuf::from("/other"));
        assert_eq!(resolved.lease_ttl, Duration::from_secs(2));
        assert_eq!(resolved.listen.port(), 9000);
    }

    #[test]
    fn defaults_fill_everything_but_the_token_file() {
        assert!(matches!(
            RawConfig::default().resolve(),
            Err(ConfigError::MissingTokenFile)
        ));
        let resolved = parse("token_file = \"/t\"").unwrap().resolve().unwrap();
        assert_eq!(resolved.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(resolved.pool_size, 1 << 30);
        assert_eq!(resolved.lease_ttl, Duration::from_secs(10));
        assert_eq!(resolved.transport, TransportKind::Tcp);
        assert_eq!(resolved.data_listen, "127.0.0.1:7381".parse().unwrap());
        assert_eq!(resolved.shm_dir, PathBuf::from("/dev/shm"));
    }

    #[test]
    fn a_scheduler_makes_the_node_a_flush_executor_with_the_agents_settings() {
        let none = parse("token_file = \"/t\"").unwrap().resolve().unwrap();
        assert_eq!(none.flush_executor, None);
        let resolved = parse(
            "token_file = \"/t\"\nscheduler = \"127.0.0.1:7400\"\nflush_slots = 3\npath_map = \"/db=/mnt/db\"\nstorage_write_mbps = 2.5",
        )
        .unwrap()
        .resolve()
        .unwrap();
        let executor = resolved.flush_executor.unwrap();
        assert_eq!(executor.agent.scheduler, "127.0.0.1:7400");
        assert_eq!(executor.agent.slots, 3);
        assert_eq!(
            executor.agent.path_map,
            Some((PathBuf::from("/db"), PathBuf::from("/mnt/db")))
        );
        let model = executor.storage_model.unwrap();
        assert_eq!(model.write_bytes_per_sec.map(|b| b.get()), Some(2_500_000));
        assert_eq!(executor.token_file, PathBuf::from("/t"));
        let default_slots = parse("token_file = \"/t\"\nscheduler = \"s:1\"")
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(
            default_slots.flush_executor.unwrap().agent.slots,
            DEFAULT_FLUSH_SLOTS
        );
        assert!(
            parse("token_file = \"/t\"\nscheduler = \"s:1\"\nflush_slots = 0")
                .unwrap()
                .resolve()
                .is_err()
        );
    }

    #[test]
    fn the_data_plane_settings_resolve() {
        let resolved = parse("token_file = \"/t\"\ntransport = \"shm\"\nshm_dir = \"/tmp/x\"")
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(resolved.transport, TransportKind::Shm);
        assert_eq!(resolved.shm_dir, PathBuf::from("/tmp/x"));
        let ephemeral = parse("token_file = \"/t\"\nlisten = \"127.0.0.1:0\"")
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(ephemeral.data_listen, "127.0.0.1:0".parse().unwrap());
        let explicit = parse("token_file = \"/t\"\ndata_listen = \"[::1]:9\"")
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(explicit.data_listen, "[::1]:9".parse().unwrap());
    }

    #[test]
    fn bad_files_are_one_line_errors_naming_the_problem() {
        for (text, needle) in [
            ("pool_sise = \"1GiB\"", "pool_sise"),
            ("pool_size = 5", "string"),
            ("listen = ", "line 1"),
            ("token_file = \"/t\"\n[extra]\nx = 1", "extra"),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(!error.contains('\n'), "{text:?}: {error}");
            assert!(error.contains(needle), "{text:?}: {error}");
        }
        for (text, key) in [
            ("token_file = \"/t\"\nlisten = \"nowhere\"", "listen"),
            ("token_file = \"/t\"\npool_size = \"0\"", "pool_size"),
            ("token_file = \"/t\"\nlease_ttl = \"0s\"", "lease_ttl"),
            ("token_file = \"/t\"\ntransport = \"rdma\"", "transport"),
            ("token_file = \"/t\"\ntransport = \"local\"", "transport"),
            (
                "token_file = \"/t\"\ndata_listen = \"somewhere\"",
                "data_listen",
            ),
            (
                "token_file = \"/t\"\nlisten = \"127.0.0.1:9000\"\ndata_listen = \"127.0.0.1:9000\"",
                "data_listen",
            ),
            (
                "token_file = \"/t\"\nlisten = \"127.0.0.1:65535\"",
                "data_listen",
            ),
            ("token_file = \"/t\"\nshm_dir = \"\"", "shm_dir"),
            (
                "token_file = \"/t\"\npoll_spin_us = 2000000",
                "poll_spin_us",
            ),
        ] {
            let error = parse(text).unwrap().resolve().unwrap_err();
            assert!(
                matches!(&error, ConfigError::InvalidValue { key: k, .. } if *k == key),
                "{text:?}: {error}"
            );
        }
    }

    #[test]
    fn the_token_file_is_trimmed_and_must_hold_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let config = |name: &str, contents: Option<&str>| {
            let path = dir.path().join(name);
            if let Some(contents) = contents {
                std::fs::write(&path, contents).unwrap();
            }
            Config {
                listen: DEFAULT_LISTEN.parse().unwrap(),
                pool_size: 1 << 20,
                lease_ttl: Duration::from_secs(1),
                token_file: path,
                shutdown_grace: Duration::from_secs(1),
                transport: TransportKind::Tcp,
                data_listen: "127.0.0.1:7381".parse().unwrap(),
                shm_dir: PathBuf::from("/dev/shm"),
                flush_executor: None,
                poll_spin: Duration::from_micros(DEFAULT_POLL_SPIN_US),
            }
        };
        assert!(config("good", Some("secret-1\n")).read_token().is_ok());
        assert!(matches!(
            config("missing", None).read_token(),
            Err(ConfigError::ReadToken { .. })
        ));
        for (name, contents) in [("empty", ""), ("blank", " \n"), ("spaced", "a b")] {
            assert!(
                matches!(
                    config(name, Some(contents)).read_token(),
                    Err(ConfigError::BadToken { .. })
                ),
                "{name}"
            );
        }
    }
}
