//! The two halves of a SIGKILL crash test: a child that writes a
//! deterministic operation stream with WAL fsync until it is killed, and a
//! parent that kills it at random moments and checks after each kill that
//! the reopened database holds exactly the acknowledged prefix of the
//! stream (the one operation in flight may or may not be there).

use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};

use o3_compute::{Db, DbOptions};
use o3_storage::env::LocalFs;

use super::{Model, full_scan, run_child_until_killed, tiny_options};

/// Where the child's database lives, set by the parent.
const DIR_ENV: &str = "O3_CRASH_CHILD_DIR";
/// The first operation the child writes: all before it were recovered.
const START_ENV: &str = "O3_CRASH_CHILD_START";

/// Options of the crash tests: on the local disk (a SIGKILL must not take
/// the data with it), every write synced before it is acknowledged.
pub fn crash_options() -> DbOptions {
    DbOptions {
        sync_writes: true,
        write_buffer_size: 16 * 1024,
        ..tiny_options(Arc::new(LocalFs::new()), 4)
    }
}

/// How many times a crash test kills its child: `O3_CRASH_KILLS`, default 30.
pub fn kills() -> usize {
    std::env::var("O3_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

/// The body of a crash test's child (an ignored test, started by
/// [`kill_and_recover`]): open the parent's database, then for `i` from
/// where the last recovery ended, `write` operation `i` and print that
/// `i + 1` operations are acknowledged, until killed.
pub fn child_writes(mut write: impl FnMut(&Db, u64)) {
    let dir = std::env::var(DIR_ENV).expect("run only as the crash test's child");
    let start: u64 = std::env::var(START_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let db = Db::open(&dir, crash_options()).expect("child open");
    println!("ready");
    for i in start.. {
        write(&db, i);
        println!("acked {}", i + 1);
    }
}

/// Run the child test `child_test` (which calls [`child_writes`]) and kill
/// it after a random while, [`kills`] times, each child resuming the stream
/// where the last recovery ended. After each kill the reopened database
/// must hold `model_after(n)` for `n` the acknowledged count or one more;
/// `check(db, state, round)` then inspects it further. Returns how many
/// operations the last recovery kept.
pub fn kill_and_recover(
    child_test: &str,
    seed: u64,
    model_after: impl Fn(u64) -> Model,
    mut check: impl FnMut(&Db, &Model, usize),
) -> u64 {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("db");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut recovered = 0u64;
    for round in 0..kills() {
        let env = [
            (DIR_ENV, dir.display().to_string()),
            (START_ENV, recovered.to_string()),
        ];
        let run_for = Duration::from_millis(rng.random_range(5..150));
        let acked = run_child_until_killed(child_test, &env, run_for).unwrap_or(recovered);
        let db = Db::open(&dir, crash_options()).expect("reopen after kill");
        let state = full_scan(&db);
        // Acknowledged ops must all be there; the one in flight may be too.
        recovered = [acked, acked + 1]
            .into_iter()
            .find(|&n| model_after(n) == state)
            .unwrap_or_else(|| {
                panic!(
                    "round {round}: recovered state is not the state after {acked} or {} ops",
                    acked + 1
                )
            });
        check(&db, &state, round);
        db.close().expect("close");
    }
    recovered
}
