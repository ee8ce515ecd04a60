//! Names of the files in a database directory.
//!
//! | file | name |
//! |---|---|
//! | WAL segment | `000123.log` |
//! | SST | `000123.sst` |
//! | manifest | `MANIFEST-000123` |
//! | pointer to the live manifest | `CURRENT` |
//! | options the database was created with | `OPTIONS` |
//! | process lock | `LOCK` |
//! | temporary (never referenced) | `*.tmp` |

use std::path::{Path, PathBuf};

/// What a file in the database directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Wal(u64),
    Table(u64),
    Manifest(u64),
    Current,
    Options,
    Lock,
    Temp,
}

pub fn wal_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:06}.log"))
}

pub fn table_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:06}.sst"))
}

pub fn manifest_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("MANIFEST-{number:06}"))
}

pub fn current_path(dir: &Path) -> PathBuf {
    dir.join("CURRENT")
}

pub fn options_path(dir: &Path) -> PathBuf {
    dir.join("OPTIONS")
}

pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join("LOCK")
}

/// Classify a directory entry; `None` for files the engine does not own.
pub fn parse_file_name(name: &str) -> Option<FileKind> {
    if name == "CURRENT" {
        return Some(FileKind::Current);
    }
    if name == "OPTIONS" {
        return Some(FileKind::Options);
    }
    if name == "LOCK" {
        return Some(FileKind::Lock);
    }
    if name.ends_with(".tmp") {
        return Some(FileKind::Temp);
    }
    if let Some(n) = name.strip_prefix("MANIFEST-") {
        return n.parse().ok().map(FileKind::Manifest);
    }
    if let Some(n) = name.strip_suffix(".log") {
        return n.parse().ok().map(FileKind::Wal);
    }
    if let Some(n) = name.strip_suffix(".sst") {
        return n.parse().ok().map(FileKind::Table);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let d = Path::new("/db");
        for (p, k) in [
            (wal_path(d, 7), FileKind::Wal(7)),
            (table_path(d, 1234567), FileKind::Table(1234567)),
            (manifest_path(d, 3), FileKind::Manifest(3)),
            (current_path(d), FileKind::Current),
            (options_path(d), FileKind::Options),
        ] {
            let name = p.file_name().unwrap().to_str().unwrap();
            assert_eq!(parse_file_name(name), Some(k));
        }
        assert_eq!(parse_file_name("notes.txt"), None);
    }
}
