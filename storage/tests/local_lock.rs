//! `LocalFs::lock`: one holder per lock file, in this process and across
//! processes, free again the moment the holder drops it, whichever spelling
//! of the path is used.

use std::process::{Command, Stdio};

use o3_storage::Error;
use o3_storage::env::{LocalFs, Storage};

#[test]
fn a_lock_file_has_one_holder_and_is_free_once_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let fs = LocalFs::new();
    let path = dir.path().join("LOCK");
    let held = fs.lock(&path).unwrap();
    assert!(matches!(fs.lock(&path), Err(Error::Locked { .. })));
    // Another spelling of the same file is the same lock.
    let other = dir.path().join(".").join("LOCK");
    assert!(matches!(fs.lock(&other), Err(Error::Locked { .. })));
    drop(held);
    let again = fs.lock(&other).unwrap();
    drop(again);
}

/// Another process cannot take it. The other process is this test binary
/// run again on [`lock_probe_child`], which reports with its exit code.
#[test]
fn another_process_cannot_take_a_held_lock() {
    let probe = |path: &std::path::Path| {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "lock_probe_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(PROBE_ENV, path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .code()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("LOCK");
    assert_eq!(
        probe(&path),
        Some(0),
        "an unheld lock is free for another process"
    );
    let held = LocalFs::new().lock(&path).unwrap();
    assert_eq!(
        probe(&path),
        Some(LOCKED_EXIT),
        "a held lock was taken by another process"
    );
    drop(held);
    assert_eq!(probe(&path), Some(0), "a dropped lock is free again");
}

const PROBE_ENV: &str = "O3_LOCK_PROBE_PATH";
const LOCKED_EXIT: i32 = 3;

/// Not a test on its own: the child of `another_process_cannot_take_a_held_lock`
/// (it does nothing unless that test set its environment variable). Exits
/// 0 when it got the lock, [`LOCKED_EXIT`] when it is held elsewhere.
#[test]
fn lock_probe_child() {
    let Some(path) = std::env::var_os(PROBE_ENV) else {
        return;
    };
    match LocalFs::new().lock(std::path::Path::new(&path)) {
        Ok(_) => std::process::exit(0),
        Err(Error::Locked { .. }) => std::process::exit(LOCKED_EXIT),
        Err(e) => panic!("lock probe: {e}"),
    }
}
