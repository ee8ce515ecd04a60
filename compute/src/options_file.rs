//! The `OPTIONS` file (`storage/docs/options_file.md`): the options a
//! database was created with, kept in its directory so that an open with
//! options that would misread the tree on disk fails clearly instead of
//! stumbling over the manifest.
//!
//! Two kinds of options are recorded:
//! - *fixed*: those that shape the tree on disk — the physical level count,
//!   the layout of each level below L0, the runs per tiered level, the shard
//!   split keys. They must be given unchanged on every open; a difference is
//!   an [`Error::InvalidArgument`] naming the option, both values and what
//!   to do;
//! - *informational*: everything else (buffer and cache sizes, background
//!   jobs, table options, …), recorded as of the latest open for people and
//!   tools to read, and free to change.
//!
//! The file is replaced like `CURRENT` (write-temp → fsync → rename → fsync
//! directory) when a database is created and whenever an open finds it
//! missing (databases created before it existed) or different.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use o3_storage::compaction::{Layout, Preset};
use o3_storage::env::{Storage, write_file_atomically};
use o3_storage::filename::options_path;
use o3_storage::{Error, Result};

use crate::options::DbOptions;

/// The version this code writes and the newest it reads.
const FORMAT_VERSION: u32 = 1;

const HEADER: &str = "\
# o3 options. The [fixed] options shape the tree on disk: every open must
# give them unchanged. The [informational] ones are those of the latest open
# and may change freely. Written by o3; see storage/docs/options_file.md.
";

/// The content of an `OPTIONS` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OptionsFile {
    format_version: u32,
    fixed: FixedOptions,
    #[serde(default)]
    informational: BTreeMap<String, String>,
}

/// Options an existing tree depends on. Unknown fields are refused: a newer
/// o3 that fixes more options must not be opened by one that ignores them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixedOptions {
    /// Levels of the version, L0 included (tiered levels own several).
    physical_levels: usize,
    /// Layout of each logical level below L0.
    layouts: Vec<Layout>,
    /// Sorted runs per tiered level; absent when no level is tiered (it then
    /// shapes nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    runs_per_tier: Option<usize>,
    /// Shard split keys, hex-encoded.
    shard_splits: Vec<String>,
}

impl OptionsFile {
    /// What `options` would record.
    pub(crate) fn from_options(options: &DbOptions) -> Result<OptionsFile> {
        let composition = options.compaction.composition()?;
        // Entry 0 of the composition is L0, which is always tiered.
        let layouts: Vec<Layout> = composition.layouts.iter().skip(1).copied().collect();
        let tiered = layouts.contains(&Layout::Tiering);
        let fixed = FixedOptions {
            physical_levels: options.compaction.physical_levels()?,
            layouts,
            runs_per_tier: tiered.then_some(options.compaction.runs_per_tier),
            shard_splits: options.shard_splits.iter().map(|k| hex(k)).collect(),
        };
        Ok(OptionsFile {
            format_version: FORMAT_VERSION,
            fixed,
            informational: informational(options),
        })
    }

    /// The file in `dir`, or `None` when there is none (a database created
    /// before the file existed).
    pub(crate) fn read(storage: &dyn Storage, dir: &Path) -> Result<Option<OptionsFile>> {
        let path = options_path(dir);
        if !storage.exists(&path) {
            return Ok(None);
        }
        let bytes = storage.read_all(&path)?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            Error::corruption(path.display(), e.valid_up_to() as u64, "not UTF-8 text")
        })?;
        let file: OptionsFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start as u64);
            Error::corruption(path.display(), offset, e.message().to_string())
        })?;
        if file.format_version > FORMAT_VERSION {
            return Err(Error::InvalidArgument(format!(
                "{} has format version {}; this o3 reads up to {FORMAT_VERSION} \
                 (the database was written by a newer o3)",
                path.display(),
                file.format_version
            )));
        }
        Ok(Some(file))
    }

    /// Replace the file in `dir` durably.
    pub(crate) fn write(&self, storage: &dyn Storage, dir: &Path) -> Result<()> {
        let path = options_path(dir);
        let body = toml::to_string(self).map_err(|e| {
            Error::InvalidArgument(format!("cannot encode {}: {e}", path.display()))
        })?;
        write_file_atomically(storage, &path, format!("{HEADER}{body}").as_bytes())
    }

    /// Fail unless `given` (the options of this open) keeps every fixed
    /// option of `self` (what the database in `dir` was created with).
    pub(crate) fn check_compatible(&self, given: &OptionsFile, dir: &Path) -> Result<()> {
        let (stored, new) = (&self.fixed, &given.fixed);
        let preset = self
            .informational
            .get("preset")
            .map_or("its original".to_string(), |p| format!("\"{p}\""));
        let shape_hint = format!(
            "the tree on disk has this shape: open with the compaction options it was \
             created with (preset {preset}; see the [informational] section of the file)"
        );
        let mismatch = if stored.layouts != new.layouts {
            Some((
                "compaction layouts (per level below L0)",
                names(&stored.layouts),
                names(&new.layouts),
                shape_hint,
            ))
        } else if stored.runs_per_tier != new.runs_per_tier {
            Some((
                "compaction.runs_per_tier",
                show(stored.runs_per_tier),
                show(new.runs_per_tier),
                shape_hint,
            ))
        } else if stored.physical_levels != new.physical_levels {
            Some((
                "physical level count (compaction.levels.num_levels and layouts)",
                stored.physical_levels.to_string(),
                new.physical_levels.to_string(),
                shape_hint,
            ))
        } else if stored.shard_splits != new.shard_splits {
            Some((
                "shard_splits",
                keys(&stored.shard_splits),
                keys(&new.shard_splits),
                SPLITS_HINT.to_string(),
            ))
        } else {
            None
        };
        match mismatch {
            None => Ok(()),
            Some((option, stored, given, hint)) => Err(mismatch_error(
                option,
                &options_path(dir).display().to_string(),
                &stored,
                &given,
                &hint,
            )),
        }
    }
}

const SPLITS_HINT: &str = "shard split keys are fixed when a database is created: \
                           pass the recorded keys in DbOptions::shard_splits";

/// For a database from before the options file, whose manifest is the only
/// record of its split keys: fail unless `given` are the `recorded` ones.
pub(crate) fn check_manifest_splits(recorded: &[Vec<u8>], given: &[Vec<u8>]) -> Result<()> {
    if recorded == given {
        return Ok(());
    }
    let show = |k: &[Vec<u8>]| keys(&k.iter().map(|k| hex(k)).collect::<Vec<_>>());
    Err(mismatch_error(
        "shard_splits",
        "the manifest",
        &show(recorded),
        &show(given),
        SPLITS_HINT,
    ))
}

fn mismatch_error(option: &str, record: &str, stored: &str, given: &str, hint: &str) -> Error {
    Error::InvalidArgument(format!(
        "option {option} differs from the database's: {record} records {stored}, \
         the options given say {given}; {hint}"
    ))
}

/// The informational options, by name.
fn informational(o: &DbOptions) -> BTreeMap<String, String> {
    let c = &o.compaction;
    let t = &o.table;
    let preset: Preset = c.preset;
    [
        ("preset", preset.to_string()),
        ("num_levels", c.levels.num_levels.to_string()),
        (
            "compaction.levels.l0_compaction_trigger",
            c.levels.l0_compaction_trigger.to_string(),
        ),
        (
            "compaction.levels.max_bytes_for_level_base",
            c.levels.max_bytes_for_level_base.to_string(),
        ),
        (
            "compaction.levels.max_bytes_for_level_multiplier",
            c.levels.max_bytes_for_level_multiplier.to_string(),
        ),
        (
            "compaction.levels.target_file_size_base",
            c.levels.target_file_size_base.to_string(),
        ),
        ("block_size", t.block_size.to_string()),
        ("restart_interval", t.restart_interval.to_string()),
        ("bloom_bits_per_key", t.bloom_bits_per_key.to_string()),
        ("compression", t.compression.to_string()),
        ("page_aligned_blocks", t.page_aligned_blocks.to_string()),
        ("write_buffer_size", o.write_buffer_size.to_string()),
        ("max_unflushed_bytes", o.max_unflushed_bytes.to_string()),
        ("wal_segment_size", o.wal_segment_size.to_string()),
        ("max_total_wal_size", o.max_total_wal_size.to_string()),
        ("sync_writes", o.sync_writes.to_string()),
        ("disable_wal", o.disable_wal.to_string()),
        ("wal_recovery_mode", o.wal_recovery_mode.to_string()),
        ("block_cache_size", o.block_cache_size.to_string()),
        ("max_background_jobs", o.max_background_jobs.to_string()),
        (
            "disable_auto_compactions",
            o.disable_auto_compactions.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex-encoded keys as readable text (non-printable bytes escaped).
fn keys(hex_keys: &[String]) -> String {
    let shown: Vec<String> = hex_keys
        .iter()
        .map(|h| {
            let bytes: Vec<u8> = (0..h.len() / 2)
                .filter_map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok())
                .collect();
            format!("\"{}\"", bytes.escape_ascii())
        })
        .collect();
    format!("[{}]", shown.join(", "))
}

fn names(layouts: &[Layout]) -> String {
    let names: Vec<&str> = layouts.iter().map(|l| l.name()).collect();
    format!("[{}]", names.join(", "))
}

fn show(runs: Option<usize>) -> String {
    runs.map_or("none (no tiered level)".to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use o3_storage::compaction::CompactionOptions;
    use o3_storage::env::FaultInjectingFs;

    #[test]
    fn the_file_round_trips_and_is_readable_text() {
        let fs = FaultInjectingFs::new();
        let dir = Path::new("/db");
        fs.create_dir_all(dir).unwrap();
        let options = DbOptions {
            shard_splits: vec![b"k\x00m".to_vec(), b"z".to_vec()],
            compaction: CompactionOptions::with_preset(Preset::LazyLeveling),
            ..DbOptions::default()
        };
        let file = OptionsFile::from_options(&options).unwrap();
        file.write(&fs, dir).unwrap();
        assert_eq!(OptionsFile::read(&fs, dir).unwrap(), Some(file));
        let text = String::from_utf8(fs.read_all(&options_path(dir)).unwrap()).unwrap();
        assert!(text.contains("physical_levels = 22"), "{text}");
        assert!(text.contains("\"6b006d\""), "{text}");
        assert!(text.contains("preset = \"lazy-leveling\""), "{text}");
    }

    #[test]
    fn unknown_fixed_options_and_newer_versions_are_refused() {
        let fs = FaultInjectingFs::new();
        let dir = Path::new("/db");
        fs.create_dir_all(dir).unwrap();
        let write = |text: &str| {
            write_file_atomically(&fs, &options_path(dir), text.as_bytes()).unwrap();
            OptionsFile::read(&fs, dir)
        };
        let fixed = "physical_levels = 7\nlayouts = [\"leveling\"]\nshard_splits = []\n";
        assert!(write(&format!("format_version = 1\n[fixed]\n{fixed}")).is_ok());
        let e = write(&format!(
            "format_version = 1\n[fixed]\n{fixed}comparator = \"x\"\n"
        ))
        .unwrap_err();
        assert!(
            e.is_corruption() && e.to_string().contains("comparator"),
            "{e}"
        );
        let e = write(&format!("format_version = 2\n[fixed]\n{fixed}")).unwrap_err();
        assert!(e.to_string().contains("newer o3"), "{e}");
    }
}
