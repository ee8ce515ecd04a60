//! Helpers shared by the o3-csa integration tests: a database whose
//! compactions are claimed for the service, the cluster token, and bounded
//! waits for a ticket.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use o3_compute::{Db, DbOptions};
use o3_csa::{JobStatus, SchedulerClient, TenantSession};
use o3_storage::compaction::{CompactionOptions, LeveledOptions};
use o3_storage::env::LocalFs;
use o3_storage::job::CompactionJob;
use o3_transport::control::ClusterToken;

pub const TOKEN: &str = "o3-csa-test-token-7f1e";
/// Bound on every wait in the tests.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn token() -> ClusterToken {
    ClusterToken::new(TOKEN).unwrap()
}

/// A database on the local file system whose compactions only run when a
/// test claims them.
pub struct TestDb {
    pub dir: tempfile::TempDir,
    pub db: Db,
}

impl TestDb {
    /// `rounds` flushed rounds over `keys` keys with `value_len`-byte values.
    pub fn new(rounds: usize, keys: usize, value_len: usize) -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let options = DbOptions {
            storage: Arc::new(LocalFs::new()),
            disable_auto_compactions: true,
            write_buffer_size: 1 << 20,
            compaction: CompactionOptions {
                levels: LeveledOptions {
                    l0_compaction_trigger: 2,
                    target_file_size_base: 64 * 1024,
                    max_compaction_bytes: 64 << 20,
                    ..LeveledOptions::default()
                },
                ..CompactionOptions::default()
            },
            ..DbOptions::default()
        };
        let db = Db::open(dir.path(), options).unwrap();
        for round in 0..rounds {
            for i in 0..keys {
                let key = format!("k{i:06}");
                if (i + round) % 7 == 0 {
                    db.delete(key.as_bytes()).unwrap();
                } else {
                    let value = format!("r{round}-{i}-").repeat(value_len / 4 + 1);
                    db.put(key.as_bytes(), &value.as_bytes()[..value_len])
                        .unwrap();
                }
            }
            db.flush().unwrap();
        }
        TestDb { dir, db }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn scan(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.db
            .scan::<std::ops::RangeFull>(.., false)
            .unwrap()
            .into_iter()
            .collect()
    }

    /// The next compaction, claimed for outside execution.
    pub fn claim(&self) -> CompactionJob {
        self.db
            .claim_compaction()
            .unwrap()
            .expect("a compaction is due")
    }
}

/// Awaits `ticket` until it is done or failed, within [`WAIT`].
pub async fn finished(client: &SchedulerClient, tenant: &TenantSession, ticket: u64) -> JobStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = client
            .await_job(tenant, ticket, Duration::from_secs(2))
            .await
            .unwrap();
        if matches!(status, JobStatus::Done(_) | JobStatus::Failed { .. }) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "ticket {ticket} still {status:?} after {WAIT:?}"
        );
    }
}
