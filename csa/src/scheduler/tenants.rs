//! Tenants: registration, sessions, roots and per-tenant counters.
//!
//! A tenant is a compute node's database. It registers with a name, a root
//! directory and a priority; the name is its identity across reconnects
//! (the same name gets the same id back, with a new session that replaces
//! the old one), the root bounds which files its jobs may name, and no two
//! differently named tenants may have overlapping roots (one inside the
//! other's), so a tenant can never have another's files compacted.
//! Paths are compared lexically, component by component; a root must be
//! absolute and contain no `..`, and a job directory with `..` is
//! refused outright, so no spelling escapes a root.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use tonic::Status;

/// Bytes of a session secret.
pub const SESSION_LEN: usize = 16;

/// What is counted for one tenant (reported by `Stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantCounters {
    pub submitted: u64,
    pub done: u64,
    pub failed: u64,
    pub queue_wait_us_total: u64,
    pub l0_jobs: u64,
    pub l0_queue_wait_us_total: u64,
    /// Jobs refused because they named files outside the root.
    pub refused: u64,
}

#[derive(Debug)]
pub struct Tenant {
    pub id: u64,
    pub name: String,
    pub root: PathBuf,
    pub priority: u32,
    session: [u8; SESSION_LEN],
    pub counters: TenantCounters,
}

/// Every registered tenant.
#[derive(Debug, Default)]
pub struct Tenants {
    by_id: HashMap<u64, Tenant>,
    by_name: HashMap<String, u64>,
    next_id: u64,
}

/// Whether `root` is absolute and lexically normal (no `.` or `..`).
pub fn is_normal_root(root: &Path) -> bool {
    root.is_absolute()
        && root
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// Whether `path` lies under (or is) `root`, lexically: no `..` anywhere
/// and `root`'s components are a prefix of `path`'s.
pub fn is_under(path: &Path, root: &Path) -> bool {
    is_normal_root(path) && path.starts_with(root)
}

impl Tenants {
    /// Registers `name` (or registers it again): its id and a fresh
    /// session, which invalidates the previous one.
    pub fn register(
        &mut self,
        name: &str,
        root: &str,
        priority: u32,
    ) -> Result<(u64, [u8; SESSION_LEN]), Status> {
        if name.is_empty() {
            return Err(Status::invalid_argument("a tenant needs a non-empty name"));
        }
        let root = PathBuf::from(root);
        if !is_normal_root(&root) {
            return Err(Status::invalid_argument(format!(
                "tenant {name}: root {} must be an absolute path without . or ..",
                root.display()
            )));
        }
        if let Some(other) = self
            .by_id
            .values()
            .find(|t| t.name != name && (t.root.starts_with(&root) || root.starts_with(&t.root)))
        {
            return Err(Status::already_exists(format!(
                "tenant {name}: root {} overlaps root {} of tenant {}",
                root.display(),
                other.root.display(),
                other.name
            )));
        }
        let session: [u8; SESSION_LEN] = rand::random();
        if let Some(id) = self.by_name.get(name).copied()
            && let Some(tenant) = self.by_id.get_mut(&id)
        {
            tenant.root = root;
            tenant.priority = priority;
            tenant.session = session;
            return Ok((id, session));
        }
        self.next_id += 1;
        let id = self.next_id;
        self.by_name.insert(name.to_owned(), id);
        self.by_id.insert(
            id,
            Tenant {
                id,
                name: name.to_owned(),
                root,
                priority,
                session,
                counters: TenantCounters::default(),
            },
        );
        Ok((id, session))
    }

    /// The tenant `id` if `session` is its current session.
    pub fn check(&mut self, id: u64, session: &[u8]) -> Result<&mut Tenant, Status> {
        let tenant = self
            .by_id
            .get_mut(&id)
            .ok_or_else(|| Status::failed_precondition("unknown tenant: register again"))?;
        if !constant_time_eq(&tenant.session, session) {
            return Err(Status::permission_denied(format!(
                "wrong session for tenant {id}"
            )));
        }
        Ok(tenant)
    }

    pub fn get(&self, id: u64) -> Option<&Tenant> {
        self.by_id.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Tenant> {
        self.by_id.get_mut(&id)
    }

    /// Tenants by id.
    pub fn iter(&self) -> impl Iterator<Item = &Tenant> {
        let mut all: Vec<&Tenant> = self.by_id.values().collect();
        all.sort_by_key(|t| t.id);
        all.into_iter()
    }
}

/// Compares every byte of `expected`, so the time does not tell how much
/// of a guessed session was right.
fn constant_time_eq(expected: &[u8; SESSION_LEN], presented: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != SESSION_LEN);
    for (i, e) in expected.iter().enumerate() {
        diff |= e ^ presented.get(i).copied().unwrap_or(!e);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_must_be_normal_and_must_not_overlap_another_tenants() {
        let mut tenants = Tenants::default();
        // (An inner `.` is no component at all: `/a/./b` is `/a/b`.)
        for bad in ["", "relative/db", "/a/../b", "./a"] {
            let e = tenants.register("t", bad, 0).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
        }
        let (a, first) = tenants.register("a", "/data/a", 1).unwrap();
        for overlapping in ["/data/a", "/data/a/sub", "/data", "/"] {
            let e = tenants.register("b", overlapping, 0).unwrap_err();
            assert_eq!(e.code(), tonic::Code::AlreadyExists, "{overlapping}");
        }
        let (b, _) = tenants.register("b", "/data/ab", 0).unwrap();
        assert_ne!(a, b);
        let (again, second) = tenants.register("a", "/data/a", 2).unwrap();
        assert_eq!(again, a);
        assert_ne!(first, second);
        assert_eq!(
            tenants.check(a, &first).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(tenants.check(a, &second).unwrap().priority, 2);
        assert_eq!(
            tenants.check(99, &second).unwrap_err().code(),
            tonic::Code::FailedPrecondition
        );
    }

    #[test]
    fn paths_are_under_a_root_component_wise_only() {
        let root = Path::new("/data/a");
        assert!(is_under(Path::new("/data/a"), root));
        assert!(is_under(Path::new("/data/a/x"), root));
        assert!(!is_under(Path::new("/data/ab"), root));
        assert!(!is_under(Path::new("/data/a/../b"), root));
        assert!(!is_under(Path::new("data/a/x"), root));
    }
}
