//! Settings every node binary reads the same way: a TOML file whose errors
//! name the file and line, durations (`500ms`, `10s`, `2m`, `1h`), byte
//! sizes (`64MiB`, `8GiB`) and the cluster token's file; and the one error
//! type for all of them, whose messages fit on one line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ClusterToken;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}{location}: {message}")]
    ParseConfig {
        path: PathBuf,
        location: String,
        message: String,
    },
    #[error("invalid {key} {value:?}: {reason}")]
    InvalidValue {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("no token file: set token_file in the config file or pass --token-file")]
    MissingTokenFile,
    #[error("cannot read token file {path}: {source}")]
    ReadToken {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path}: {reason}")]
    BadToken { path: PathBuf, reason: String },
}

/// `InvalidValue` for setting `key` spelled `value`.
pub fn invalid(key: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue {
        key,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The cluster token in `path` (surrounding whitespace is not part of it).
pub fn read_token(path: &Path) -> Result<ClusterToken, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadToken {
        path: path.to_owned(),
        source,
    })?;
    ClusterToken::new(text.trim()).map_err(|e| ConfigError::BadToken {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads and parses the TOML file at `path`.
pub fn from_file<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadConfig {
        path: path.to_owned(),
        source,
    })?;
    from_toml(path, &text)
}

/// Parses `text`, the contents of the file at `path`; errors name the line.
pub fn from_toml<T: for<'de> Deserialize<'de>>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let location = e.span().map_or(String::new(), |span| {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" line {line}")
        });
        ConfigError::ParseConfig {
            path: path.to_owned(),
            location,
            // toml's message can span lines; the error must be one.
            message: e.message().replace('\n', " ").trim().to_owned(),
        }
    })
}

/// Splits `text` into its leading decimal number and the unit after it.
fn number_and_unit<'t>(key: &'static str, text: &'t str) -> Result<(u64, &'t str), ConfigError> {
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let number = trimmed[..digits]
        .parse::<u64>()
        .map_err(|_| invalid(key, text, "expected a whole number followed by a unit"))?;
    Ok((number, trimmed[digits..].trim()))
}

/// A byte size such as `8GiB`, `64MiB`, `4096` or `4096B`.
pub fn parse_size(key: &'static str, text: &str) -> Result<u64, ConfigError> {
    let (number, unit) = number_and_unit(key, text)?;
    let shift = match unit {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        _ => {
            return Err(invalid(
                key,
                text,
                "unknown unit (use B, KiB, MiB, GiB or TiB)",
            ));
        }
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| invalid(key, text, "too large"))
}

/// A duration such as `500ms`, `10s`, `2m` or `1h`.
pub fn parse_duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    let (number, unit) = number_and_unit(key, text)?;
    let seconds_per_unit = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "" => return Err(invalid(key, text, "missing unit (use ms, s, m or h)")),
        _ => return Err(invalid(key, text, "unknown unit (use ms, s, m or h)")),
    };
    number
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| invalid(key, text, "too large"))
}
