//! Conformance case for region access flags.

use super::{Backend, open};
use crate::access::{RegionAccess, RemoteOp};
use crate::error::{Error, Result};
use crate::host::{host_register, host_register_with};
use crate::verbs::{Completion, RegionDesc, WorkRequest};

/// Registration access flags are enforced by the owner on every one-sided
/// operation, whatever the descriptor claims: refused operations are
/// [`Error::AccessDenied`] and change no byte.
pub fn access_flags(backend: &dyn Backend) -> Result<()> {
    let s = open(backend)?;
    let c = &*s.conn;
    let staging = host_register(c, 64)?;
    let read_only = host_register_with(c, 64, RegionAccess::READ_ONLY)?;
    assert_eq!(read_only.access, RegionAccess::READ_ONLY);
    // The owner can fill a read-only region; peers only read it. Fill it
    // here through a forged writable descriptor only if the owner allowed
    // it — it must not.
    let forged = RegionDesc {
        access: RegionAccess::READ_WRITE,
        ..read_only.clone()
    };
    let mut before = vec![0u8; 64];
    c.read(&read_only, 0, &mut before)?;
    let denied = |r: &Result<()>, op: RemoteOp, what: &str| {
        assert!(
            matches!(r, Err(Error::AccessDenied { op: o, .. }) if *o == op),
            "{what}: {r:?}"
        );
    };
    for desc in [&read_only, &forged] {
        let label = if desc.access == read_only.access {
            "read-only descriptor"
        } else {
            "forged writable descriptor"
        };
        denied(&c.write(desc, 0, &[0xEE; 16]), RemoteOp::Write, label);
        denied(
            &c.fetch_add(desc, 8, 1).map(|_| ()),
            RemoteOp::Atomic,
            label,
        );
        denied(
            &c.compare_and_swap(desc, 16, 0, 7).map(|_| ()),
            RemoteOp::Atomic,
            label,
        );
        let results = c.post(&mut [
            WorkRequest::Write {
                remote: &staging,
                offset: 0,
                data: b"allowed",
            },
            WorkRequest::Write {
                remote: desc,
                offset: 0,
                data: b"refused",
            },
        ]);
        assert!(
            matches!(results[0], Ok(Completion::Write { len: 7 })),
            "{results:?}"
        );
        assert!(
            matches!(
                results[1],
                Err(Error::AccessDenied {
                    op: RemoteOp::Write,
                    ..
                })
            ),
            "{label} in a batch: {results:?}"
        );
    }
    let mut after = vec![0u8; 64];
    c.read(&forged, 0, &mut after)?;
    assert_eq!(after, before, "a refused write changed a read-only region");

    let write_only = host_register_with(c, 64, RegionAccess::WRITE_ONLY)?;
    c.write(&write_only, 0, b"drop box")?;
    let forged = RegionDesc {
        access: RegionAccess::READ_WRITE,
        ..write_only.clone()
    };
    for desc in [&write_only, &forged] {
        denied(
            &c.read(desc, 0, &mut [0u8; 8]),
            RemoteOp::Read,
            "write-only",
        );
        denied(
            &c.fetch_add(desc, 8, 1).map(|_| ()),
            RemoteOp::Atomic,
            "write-only",
        );
    }
    let sealed = host_register_with(c, 64, RegionAccess::NONE)?;
    let forged = RegionDesc {
        access: RegionAccess::READ_WRITE,
        ..sealed
    };
    denied(
        &c.read(&forged, 0, &mut [0u8; 8]),
        RemoteOp::Read,
        "no access",
    );
    denied(&c.write(&forged, 0, &[1; 8]), RemoteOp::Write, "no access");
    Ok(())
}
