//! Settings of the scheduler and the agent: the library's
//! [`SchedulerConfig`] and [`AgentConfig`], and the `o3-csa` binary's
//! resolution of a TOML file (`--config`) whose keys the flags override.
//!
//! `o3-csa scheduler` keys (all optional in the file; `token_file` must come
//! from the file or the flag):
//!
//! | key                    | flag                     | default          |
//! |------------------------|--------------------------|------------------|
//! | `listen`               | `--listen`               | `127.0.0.1:7390` |
//! | `token_file`           | `--token-file`           | —                |
//! | `heartbeat_ms`         | `--heartbeat-ms`         | `250`            |
//! | `heartbeat_timeout_ms` | `--heartbeat-timeout-ms` | `1500`           |
//! | `max_tries`            | `--max-tries`            | `3`              |
//! | `starvation_ms`        | `--starvation-ms`        | `5000`           |
//! | `shutdown_grace`       | `--shutdown-grace`       | `5s`             |
//!
//! `o3-csa agent` keys:
//!
//! | key                  | flag                   | default            |
//! |----------------------|------------------------|--------------------|
//! | `scheduler`          | `--scheduler`          | `127.0.0.1:7390`   |
//! | `token_file`         | `--token-file`         | —                  |
//! | `name`               | `--name`               | `agent-<pid>`      |
//! | `slots`              | `--slots`              | `2`                |
//! | `storage_read_mbps`  | `--storage-read-mbps`  | unlimited          |
//! | `storage_write_mbps` | `--storage-write-mbps` | unlimited          |
//! | `storage_latency_us` | `--storage-latency-us` | `0`                |
//! | `path_map`           | `--path-map`           | none (`FROM=TO`)   |
//! | `shutdown_grace`     | `--shutdown-grace`     | `5s`               |
//!
//! The throttle settings (MB/s = 10^6 bytes per second) wrap the agent's
//! local file system in `o3_storage::env::ThrottledStorage`, to emulate
//! remote storage; none given, the agent uses the file system as is.
//! `path_map` serves agents that mount the tenants' storage elsewhere: a job
//! directory under `FROM` is read and written under `TO` instead.
//! Durations are a number with a unit `ms`, `s`, `m`, `h`. Unknown keys are
//! errors naming the file and line.

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::Duration;

use o3_storage::env::RemoteStorageModel;
pub use o3_transport::control::settings::{
    ConfigError, from_file, from_toml, invalid, parse_duration, read_token,
};
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7390";
pub const DEFAULT_SCHEDULER: &str = "127.0.0.1:7390";
pub const DEFAULT_SHUTDOWN_GRACE: &str = "5s";
pub const DEFAULT_SLOTS: u32 = 2;

/// How the scheduler judges agents and orders jobs.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// How often agents heartbeat (told to them at registration).
    pub heartbeat: Duration,
    /// An agent silent this long is removed and its jobs requeued; an
    /// assignment not fetched within it is requeued too.
    pub heartbeat_timeout: Duration,
    /// Most agents one job is handed to (also bounded by its epochs).
    pub max_tries: u32,
    /// A job queued this long goes ahead of every job that is not.
    pub starvation: Duration,
    /// On shutdown, how long calls in flight may run on (long-polls are
    /// answered at once; this bounds clients that do not hang up).
    pub shutdown_grace: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            heartbeat: Duration::from_millis(250),
            heartbeat_timeout: Duration::from_millis(1500),
            max_tries: 3,
            starvation: Duration::from_millis(5000),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl SchedulerConfig {
    /// Refuses settings under which agents could never stay registered or
    /// jobs never run.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat.is_zero() {
            return Err(invalid("heartbeat_ms", "0", "agents must heartbeat"));
        }
        if self.heartbeat_timeout <= self.heartbeat {
            return Err(invalid(
                "heartbeat_timeout_ms",
                &self.heartbeat_timeout.as_millis().to_string(),
                "must be longer than heartbeat_ms",
            ));
        }
        if self.max_tries == 0 {
            return Err(invalid("max_tries", "0", "a job needs at least one try"));
        }
        Ok(())
    }
}

/// What one agent is and where its scheduler is.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    /// The scheduler's `host:port` (or `http://host:port`).
    pub scheduler: String,
    /// Shown in the scheduler's load and logs.
    pub name: String,
    /// Jobs run at once.
    pub slots: u32,
    /// On shutdown, how long running jobs may go on before the agent stops.
    pub shutdown_grace: Duration,
    /// Bound on each call to the scheduler.
    pub call_timeout: Duration,
    /// Job directories under `.0` are used under `.1` on this agent.
    pub path_map: Option<(PathBuf, PathBuf)>,
    /// Set when this executor is a memory node (its data-plane node id):
    /// it is given only flushes of images it holds.
    pub memnode: Option<String>,
}

impl AgentConfig {
    /// An agent named `name` with `slots` slots on the scheduler at
    /// `scheduler`, with default timings.
    pub fn new(scheduler: &str, name: &str, slots: u32) -> AgentConfig {
        AgentConfig {
            scheduler: scheduler.to_owned(),
            name: name.to_owned(),
            slots,
            shutdown_grace: Duration::from_secs(5),
            call_timeout: Duration::from_secs(5),
            path_map: None,
            memnode: None,
        }
    }
}

/// The scheduler binary's settings as the file or the flags spell them.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedulerConfig {
    pub listen: Option<String>,
    pub token_file: Option<PathBuf>,
    pub heartbeat_ms: Option<u64>,
    pub heartbeat_timeout_ms: Option<u64>,
    pub max_tries: Option<u32>,
    pub starvation_ms: Option<u64>,
    pub shutdown_grace: Option<String>,
}

/// The scheduler binary's resolved settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerSettings {
    pub listen: SocketAddr,
    pub token_file: PathBuf,
    pub scheduler: SchedulerConfig,
}

impl RawSchedulerConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        from_file(path)
    }

    pub fn overridden_by(self, flags: Self) -> Self {
        Self {
            listen: flags.listen.or(self.listen),
            token_file: flags.token_file.or(self.token_file),
            heartbeat_ms: flags.heartbeat_ms.or(self.heartbeat_ms),
            heartbeat_timeout_ms: flags.heartbeat_timeout_ms.or(self.heartbeat_timeout_ms),
            max_tries: flags.max_tries.or(self.max_tries),
            starvation_ms: flags.starvation_ms.or(self.starvation_ms),
            shutdown_grace: flags.shutdown_grace.or(self.shutdown_grace),
        }
    }

    pub fn resolve(self) -> Result<SchedulerSettings, ConfigError> {
        let listen_text = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text
            .parse::<SocketAddr>()
            .map_err(|e| invalid("listen", listen_text, &e.to_string()))?;
        let defaults = SchedulerConfig::default();
        let ms = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_millis);
        let shutdown_grace = parse_duration(
            "shutdown_grace",
            self.shutdown_grace
                .as_deref()
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        )?;
        let scheduler = SchedulerConfig {
            heartbeat: ms(self.heartbeat_ms, defaults.heartbeat),
            heartbeat_timeout: ms(self.heartbeat_timeout_ms, defaults.heartbeat_timeout),
            max_tries: self.max_tries.unwrap_or(defaults.max_tries),
            starvation: ms(self.starvation_ms, defaults.starvation),
            shutdown_grace,
        };
        scheduler.validate()?;
        Ok(SchedulerSettings {
            listen,
            token_file: self.token_file.ok_or(ConfigError::MissingTokenFile)?,
            scheduler,
        })
    }
}

/// The agent binary's settings as the file or the flags spell them.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgentConfig {
    pub scheduler: Option<String>,
    pub token_file: Option<PathBuf>,
    pub name: Option<String>,
    pub slots: Option<u32>,
    pub storage_read_mbps: Option<f64>,
    pub storage_write_mbps: Option<f64>,
    pub storage_latency_us: Option<u64>,
    pub path_map: Option<String>,
    pub shutdown_grace: Option<String>,
}

/// The agent binary's resolved settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    pub token_file: PathBuf,
    pub agent: AgentConfig,
    /// Emulated remote storage, when any throttle setting is given.
    pub storage_model: Option<RemoteStorageModel>,
}

impl RawAgentConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        from_file(path)
    }

    pub fn overridden_by(self, flags: Self) -> Self {
        Self {
            scheduler: flags.scheduler.or(self.scheduler),
            token_file: flags.token_file.or(self.token_file),
            name: flags.name.or(self.name),
            slots: flags.slots.or(self.slots),
            storage_read_mbps: flags.storage_read_mbps.or(self.storage_read_mbps),
            storage_write_mbps: flags.storage_write_mbps.or(self.storage_write_mbps),
            storage_latency_us: flags.storage_latency_us.or(self.storage_latency_us),
            path_map: flags.path_map.or(self.path_map),
            shutdown_grace: flags.shutdown_grace.or(self.shutdown_grace),
        }
    }

    pub fn resolve(self) -> Result<AgentSettings, ConfigError> {
        let scheduler = self
            .scheduler
            .unwrap_or_else(|| DEFAULT_SCHEDULER.to_owned());
        if scheduler.trim().is_empty() {
            return Err(invalid("scheduler", &scheduler, "an empty address"));
        }
        let name = self
            .name
            .unwrap_or_else(|| format!("agent-{}", std::process::id()));
        if name.is_empty() {
            return Err(invalid("name", "", "an agent needs a name"));
        }
        let slots = self.slots.unwrap_or(DEFAULT_SLOTS);
        if slots == 0 {
            return Err(invalid("slots", "0", "an agent needs at least one slot"));
        }
        let rate = |key: &'static str, mbps: Option<f64>| -> Result<_, ConfigError> {
            match mbps {
                None => Ok(None),
                Some(v) if v.is_finite() && v > 0.0 => {
                    let bytes = (v * 1e6).round().max(1.0) as u64;
                    Ok(NonZeroU64::new(bytes))
                }
                Some(v) => Err(invalid(key, &v.to_string(), "must be a positive number")),
            }
        };
        let read = rate("storage_read_mbps", self.storage_read_mbps)?;
        let write = rate("storage_write_mbps", self.storage_write_mbps)?;
        let storage_model = (read.is_some()
            || write.is_some()
            || self.storage_latency_us.is_some())
        .then(|| RemoteStorageModel {
            latency: Duration::from_micros(self.storage_latency_us.unwrap_or(0)),
            read_bytes_per_sec: read,
            write_bytes_per_sec: write,
        });
        let path_map = match self.path_map.as_deref() {
            None => None,
            Some(text) => Some(parse_path_map(text)?),
        };
        let shutdown_grace = parse_duration(
            "shutdown_grace",
            self.shutdown_grace
                .as_deref()
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        )?;
        let mut agent = AgentConfig::new(&scheduler, &name, slots);
        agent.shutdown_grace = shutdown_grace;
        agent.path_map = path_map;
        Ok(AgentSettings {
            token_file: self.token_file.ok_or(ConfigError::MissingTokenFile)?,
            agent,
            storage_model,
        })
    }
}

/// `FROM=TO`, both absolute.
fn parse_path_map(text: &str) -> Result<(PathBuf, PathBuf), ConfigError> {
    let (from, to) = text
        .split_once('=')
        .ok_or_else(|| invalid("path_map", text, "expected FROM=TO"))?;
    let (from, to) = (PathBuf::from(from), PathBuf::from(to));
    if !from.is_absolute() || !to.is_absolute() {
        return Err(invalid("path_map", text, "both paths must be absolute"));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_file_values_resolve_and_flags_override_them() {
        let file: RawSchedulerConfig = from_toml(
            Path::new("s.toml"),
            "listen = \"127.0.0.1:9000\"\ntoken_file = \"/t\"\nmax_tries = 5\n",
        )
        .unwrap();
        let flags = RawSchedulerConfig {
            max_tries: Some(2),
            heartbeat_ms: Some(100),
            ..RawSchedulerConfig::default()
        };
        let s = file.overridden_by(flags).resolve().unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.scheduler.max_tries, 2);
        assert_eq!(s.scheduler.heartbeat, Duration::from_millis(100));
        assert_eq!(s.scheduler.heartbeat_timeout, Duration::from_millis(1500));
        assert_eq!(s.scheduler.shutdown_grace, Duration::from_secs(5));
    }

    #[test]
    fn bad_settings_name_their_key() {
        let bad_scheduler = [
            ("token_file = \"/t\"\nlisten = \"nowhere\"", "listen"),
            ("token_file = \"/t\"\nmax_tries = 0", "max_tries"),
            ("token_file = \"/t\"\nheartbeat_ms = 0", "heartbeat_ms"),
            (
                "token_file = \"/t\"\nheartbeat_ms = 500\nheartbeat_timeout_ms = 400",
                "heartbeat_timeout_ms",
            ),
            (
                "token_file = \"/t\"\nshutdown_grace = \"5\"",
                "shutdown_grace",
            ),
        ];
        for (text, key) in bad_scheduler {
            let raw: RawSchedulerConfig = from_toml(Path::new("s.toml"), text).unwrap();
            let error = raw.resolve().unwrap_err();
            assert!(
                matches!(&error, ConfigError::InvalidValue { key: k, .. } if *k == key),
                "{text:?}: {error}"
            );
        }
        let bad_agent = [
            ("token_file = \"/t\"\nslots = 0", "slots"),
            (
                "token_file = \"/t\"\nstorage_read_mbps = -1.0",
                "storage_read_mbps",
            ),
            ("token_file = \"/t\"\npath_map = \"a=b\"", "path_map"),
            ("token_file = \"/t\"\nname = \"\"", "name"),
        ];
        for (text, key) in bad_agent {
            let raw: RawAgentConfig = from_toml(Path::new("a.toml"), text).unwrap();
            let error = raw.resolve().unwrap_err();
            assert!(
                matches!(&error, ConfigError::InvalidValue { key: k, .. } if *k == key),
                "{text:?}: {error}"
            );
        }
        assert!(matches!(
            RawAgentConfig::default().resolve(),
            Err(ConfigError::MissingTokenFile)
        ));
    }

    #[test]
    fn unknown_keys_are_one_line_errors_with_file_and_line() {
        let error = from_toml::<RawAgentConfig>(Path::new("a.toml"), "slots = 1\nslotz = 2\n")
            .unwrap_err()
            .to_string();
        assert!(!error.contains('\n'), "{error}");
        assert!(
            error.contains("a.toml line 2") && error.contains("slotz"),
            "{error}"
        );
    }

    #[test]
    fn throttle_settings_make_a_storage_model() {
        let raw: RawAgentConfig = from_toml(
            Path::new("a.toml"),
            "token_file = \"/t\"\nstorage_read_mbps = 1.5\nstorage_latency_us = 200",
        )
        .unwrap();
        let s = raw.resolve().unwrap();
        let model = s.storage_model.unwrap();
        assert_eq!(
            model.read_bytes_per_sec.map(NonZeroU64::get),
            Some(1_500_000)
        );
        assert_eq!(model.write_bytes_per_sec, None);
        assert_eq!(model.latency, Duration::from_micros(200));
        let plain: RawAgentConfig = from_toml(Path::new("a.toml"), "token_file = \"/t\"").unwrap();
        assert_eq!(plain.resolve().unwrap().storage_model, None);
    }
}
