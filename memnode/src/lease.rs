//! Leases: how long a compute node's regions outlive its silence.
//!
//! `Register` starts a lease for a fresh [`OwnerId`] and hands out a random
//! 64-bit secret that names it in later calls (owner ids appear in stats, so
//! they must not be enough to act for an owner). A lease lasts one TTL from
//! its last renewal. An expired lease is moved, under the table's lock, from
//! the live set to the expired set exactly once — by the reaper or by the
//! first call that finds it overdue — and whoever moved it releases the
//! owner's regions; later calls with its secret are told to register again.
//!
//! Time is passed in (`now`) so the table is tested without sleeping.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::pool::OwnerId;

/// The secret a compute node presents with every call on its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseSecret(pub u64);

/// A live lease, as reported in stats.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseInfo {
    pub owner: OwnerId,
    pub compute_node: String,
    pub expires_in: Duration,
}

/// Why a lease cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LeaseError {
    #[error("unknown lease; register first")]
    Unknown,
    /// `reclaim` is set when this call found the lease overdue: the caller
    /// must release the owner's regions (nobody else will).
    #[error("lease of {owner} expired; register again")]
    Expired { owner: OwnerId, reclaim: bool },
}

#[derive(Debug)]
struct Lease {
    owner: OwnerId,
    compute_node: String,
    expires_at: Instant,
}

#[derive(Debug, Default)]
struct Table {
    next_owner: u64,
    live: HashMap<LeaseSecret, Lease>,
    /// Secrets of leases that expired, so their holders get a clear answer.
    /// One entry per expired registration, which stays small next to the
    /// regions such a registration held.
    expired: HashMap<LeaseSecret, OwnerId>,
}

#[derive(Debug)]
pub struct Leases {
    ttl: Duration,
    table: Mutex<Table>,
}

impl Leases {
    pub fn new(ttl: Duration) -> Leases {
        Leases {
            ttl,
            table: Mutex::new(Table::default()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Starts a lease for `compute_node` with a fresh owner id.
    pub fn register(&self, compute_node: &str, now: Instant) -> (OwnerId, LeaseSecret) {
        let mut table = self.table.lock();
        table.next_owner += 1;
        let owner = OwnerId(table.next_owner);
        // A secret is never reused, so an expired holder can't inherit a
        // newer lease.
        let mut secret = LeaseSecret(rand::random());
        while table.live.contains_key(&secret) || table.expired.contains_key(&secret) {
            secret = LeaseSecret(rand::random());
        }
        table.live.insert(
            secret,
            Lease {
                owner,
                compute_node: compute_node.to_owned(),
                expires_at: now + self.ttl,
            },
        );
        (owner, secret)
    }

    /// The owner of a live lease; expires it here if it is overdue.
    pub fn owner(&self, secret: LeaseSecret, now: Instant) -> Result<OwnerId, LeaseError> {
        let mut table = self.table.lock();
        check(&mut table, secret, now).map(|lease| lease.owner)
    }

    /// Extends a live lease by one TTL from `now`.
    pub fn renew(&self, secret: LeaseSecret, now: Instant) -> Result<OwnerId, LeaseError> {
        let mut table = self.table.lock();
        let ttl = self.ttl;
        check(&mut table, secret, now).map(|lease| {
            lease.expires_at = now + ttl;
            lease.owner
        })
    }

    /// Moves every lease overdue at `now` to the expired set and returns
    /// their owners (whose regions the caller must release).
    pub fn expire_overdue(&self, now: Instant) -> Vec<(OwnerId, String)> {
        let mut table = self.table.lock();
        let overdue: Vec<LeaseSecret> = table
            .live
            .iter()
            .filter(|(_, lease)| lease.expires_at <= now)
            .map(|(secret, _)| *secret)
            .collect();
        let mut owners = Vec::with_capacity(overdue.len());
        for secret in overdue {
            if let Some(lease) = table.live.remove(&secret) {
                table.expired.insert(secret, lease.owner);
                owners.push((lease.owner, lease.compute_node));
            }
        }
        owners
    }

    /// The live leases, ordered by owner.
    pub fn live(&self, now: Instant) -> Vec<LeaseInfo> {
        let table = self.table.lock();
        let mut leases: Vec<LeaseInfo> = table
            .live
            .values()
            .map(|lease| LeaseInfo {
                owner: lease.owner,
                compute_node: lease.compute_node.clone(),
                expires_in: lease.expires_at.saturating_duration_since(now),
            })
            .collect();
        leases.sort_by_key(|lease| lease.owner);
        leases
    }
}

fn check(table: &mut Table, secret: LeaseSecret, now: Instant) -> Result<&mut Lease, LeaseError> {
    if let Some(&owner) = table.expired.get(&secret) {
        return Err(LeaseError::Expired {
            owner,
            reclaim: false,
        });
    }
    let overdue = match table.live.get(&secret) {
        None => return Err(LeaseError::Unknown),
        Some(lease) => lease.expires_at <= now,
    };
    if overdue {
        let owner = table.live.remove(&secret).map(|lease| lease.owner);
        let owner = owner.ok_or(LeaseError::Unknown)?;
        table.expired.insert(secret, owner);
        return Err(LeaseError::Expired {
            owner,
            reclaim: true,
        });
    }
    table.live.get_mut(&secret).ok_or(LeaseError::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    #[test]
    fn registering_gives_fresh_owners_and_secrets() {
        let leases = Leases::new(TTL);
        let t0 = Instant::now();
        let (a, sa) = leases.register("a", t0);
        let (b, sb) = leases.register("a", t0);
        assert_ne!(a, b);
        assert_ne!(sa, sb);
        assert_eq!(leases.owner(sa, t0), Ok(a));
        assert_eq!(leases.owner(sb, t0), Ok(b));
        assert_eq!(
            leases.owner(LeaseSecret(sa.0 ^ 1), t0),
            Err(LeaseError::Unknown)
        );
    }

    #[test]
    fn renewal_extends_and_expiry_is_reported_once_then_sticks() {
        let leases = Leases::new(TTL);
        let t0 = Instant::now();
        let (a, sa) = leases.register("a", t0);
        assert_eq!(leases.renew(sa, t0 + TTL / 2), Ok(a));
        // Past the first deadline but within the renewed one.
        assert_eq!(leases.owner(sa, t0 + TTL), Ok(a));
        assert!(leases.expire_overdue(t0 + TTL).is_empty());
        let late = t0 + TTL / 2 + TTL;
        assert_eq!(
            leases.owner(sa, late),
            Err(LeaseError::Expired {
                owner: a,
                reclaim: true
            })
        );
        assert!(leases.expire_overdue(late).is_empty(), "reclaimed twice");
        for call in [leases.owner(sa, late), leases.renew(sa, late)] {
            assert_eq!(
                call,
                Err(LeaseError::Expired {
                    owner: a,
                    reclaim: false
                })
            );
        }
        assert!(leases.live(late).is_empty());
    }

    #[test]
    fn the_reaper_expires_only_overdue_leases() {
        let leases = Leases::new(TTL);
        let t0 = Instant::now();
        let (a, sa) = leases.register("a", t0);
        let (b, _) = leases.register("b", t0 + TTL / 2);
        assert_eq!(leases.expire_overdue(t0 + TTL), vec![(a, "a".to_owned())]);
        let live = leases.live(t0 + TTL);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].owner, b);
        assert_eq!(live[0].expires_in, TTL / 2);
        assert!(matches!(
            leases.owner(sa, t0 + TTL),
            Err(LeaseError::Expired { reclaim: false, .. })
        ));
    }
}
