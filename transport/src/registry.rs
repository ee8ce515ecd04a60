//! The regions a node has registered, and the checks every software-emulated
//! NIC applies before touching one: the region exists (else
//! [`Error::RegionGone`]), the key matches (else [`Error::BadKey`]) and the
//! region's access flags permit the operation (else
//! [`Error::AccessDenied`]) — the owner's record, not the requester's
//! descriptor, decides.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::access::{RegionAccess, RemoteOp};
use crate::error::{Error, Result};
use crate::region::{LocalRegion, RegionMemory};
use crate::verbs::{NodeId, RegionDesc};

#[derive(Debug)]
struct Entry {
    rkey: u64,
    access: RegionAccess,
    memory: Arc<RegionMemory>,
}

/// Registered regions by id. Ids are handed out once and never reused.
#[derive(Debug)]
pub struct RegionTable {
    node: NodeId,
    next_id: AtomicU64,
    regions: RwLock<HashMap<u64, Entry>>,
}

impl RegionTable {
    pub fn new(node: NodeId) -> Self {
        RegionTable {
            node,
            next_id: AtomicU64::new(1),
            regions: RwLock::new(HashMap::new()),
        }
    }

    /// A fresh region id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Register `memory` with `access` under a fresh id and an unguessable
    /// key.
    pub fn insert(&self, memory: Arc<RegionMemory>, access: RegionAccess) -> LocalRegion {
        let region = self.next_id();
        let rkey = random_key();
        let desc = RegionDesc {
            node: self.node.clone(),
            region,
            base: memory.as_ptr() as u64,
            len: memory.len() as u64,
            rkey,
            access,
        };
        self.regions.write().insert(
            region,
            Entry {
                rkey,
                access,
                memory: Arc::clone(&memory),
            },
        );
        LocalRegion::new(desc, memory)
    }

    /// Revoke a region; its descriptor must carry the right key.
    pub fn remove(&self, desc: &RegionDesc) -> Result<()> {
        let mut regions = self.regions.write();
        match regions.get(&desc.region) {
            None => Err(Error::RegionGone {
                region: desc.region,
            }),
            Some(entry) if entry.rkey != desc.rkey => Err(Error::BadKey {
                region: desc.region,
            }),
            Some(_) => {
                regions.remove(&desc.region);
                Ok(())
            }
        }
    }

    /// The memory of `region` if `rkey` grants access to it and its access
    /// flags permit `op`.
    pub fn lookup(&self, region: u64, rkey: u64, op: RemoteOp) -> Result<Arc<RegionMemory>> {
        match self.regions.read().get(&region) {
            None => Err(Error::RegionGone { region }),
            Some(entry) if entry.rkey != rkey => Err(Error::BadKey { region }),
            Some(entry) if !entry.access.permits(op) => Err(Error::AccessDenied {
                region,
                op,
                access: entry.access,
            }),
            Some(entry) => Ok(Arc::clone(&entry.memory)),
        }
    }

    /// Drop every region (the node shuts down).
    pub fn clear(&self) {
        self.regions.write().clear();
    }
}

/// A key nobody can predict: std's randomly seeded hasher over a counter.
pub fn random_key() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    RandomState::new().hash_one((n, std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_checks_key_and_presence() {
        let table = RegionTable::new(NodeId::from("n"));
        let rw = RegionAccess::READ_WRITE;
        let region = table.insert(Arc::new(RegionMemory::heap(64).unwrap()), rw);
        let desc = region.desc().clone();
        assert!(
            table
                .lookup(desc.region, desc.rkey, RemoteOp::Atomic)
                .is_ok()
        );
        assert!(matches!(
            table.lookup(desc.region, desc.rkey ^ 1, RemoteOp::Read),
            Err(Error::BadKey { .. })
        ));
        table.remove(&desc).unwrap();
        assert!(matches!(
            table.lookup(desc.region, desc.rkey, RemoteOp::Read),
            Err(Error::RegionGone { .. })
        ));
        let next = table.insert(Arc::new(RegionMemory::heap(8).unwrap()), rw);
        assert_ne!(next.desc().region, desc.region, "ids are never reused");
    }

    #[test]
    fn lookup_checks_the_recorded_access_not_the_descriptor() {
        let table = RegionTable::new(NodeId::from("n"));
        let region = table.insert(
            Arc::new(RegionMemory::heap(64).unwrap()),
            RegionAccess::READ_ONLY,
        );
        let (id, rkey) = (region.desc().region, region.desc().rkey);
        assert!(table.lookup(id, rkey, RemoteOp::Read).is_ok());
        for op in [RemoteOp::Write, RemoteOp::Atomic] {
            assert!(matches!(
                table.lookup(id, rkey, op),
                Err(Error::AccessDenied { op: denied, .. }) if denied == op
            ));
        }
    }
}
