//! Memory registration: pinning memory and handing its keys to the NIC.

use std::ptr::NonNull;
use std::sync::Arc;

use rdma_sys::{ibv_access_flags, ibv_dereg_mr, ibv_mr, ibv_reg_mr};

use super::device::Device;
use crate::access::{RegionAccess, RemoteOp};
use crate::error::{Error, Result};
use crate::region::RegionMemory;

/// The verbs access flags of a region registered with `access`, so that the
/// NIC enforces it. An atomic both reads and writes, so remote atomics are
/// granted only with both rights (matching [`RegionAccess::permits`]).
pub fn region_access(access: RegionAccess) -> ibv_access_flags {
    let mut flags = ibv_access_flags::IBV_ACCESS_LOCAL_WRITE;
    if access.remote_read {
        flags |= ibv_access_flags::IBV_ACCESS_REMOTE_READ;
    }
    if access.remote_write {
        flags |= ibv_access_flags::IBV_ACCESS_REMOTE_WRITE;
    }
    if access.permits(RemoteOp::Atomic) {
        flags |= ibv_access_flags::IBV_ACCESS_REMOTE_ATOMIC;
    }
    flags
}

/// Access rights a queue pair accepts: everything one-sided verbs do (each
/// memory registration then narrows them).
pub fn remote_access() -> ibv_access_flags {
    ibv_access_flags::IBV_ACCESS_LOCAL_WRITE
        | ibv_access_flags::IBV_ACCESS_REMOTE_READ
        | ibv_access_flags::IBV_ACCESS_REMOTE_WRITE
        | ibv_access_flags::IBV_ACCESS_REMOTE_ATOMIC
}

/// Access rights of local buffers the NIC fills (read results, atomics'
/// old values, received messages) or reads from.
pub fn local_access() -> ibv_access_flags {
    ibv_access_flags::IBV_ACCESS_LOCAL_WRITE
}

/// A registration of `len` bytes at `addr`. Dropping it deregisters, after
/// which the NIC no longer touches the memory.
#[derive(Debug)]
pub struct MemoryRegion {
    mr: NonNull<ibv_mr>,
    _device: Arc<Device>,
}

// SAFETY: an ibv_mr is an immutable record after registration; verbs calls
// on it are thread-safe.
unsafe impl Send for MemoryRegion {}
// SAFETY: as above.
unsafe impl Sync for MemoryRegion {}

impl MemoryRegion {
    /// Register `addr..addr + len`.
    ///
    /// # Safety
    /// The memory must stay valid (not freed or unmapped) until the returned
    /// registration is dropped.
    pub unsafe fn register(
        device: &Arc<Device>,
        addr: *mut u8,
        len: usize,
        access: ibv_access_flags,
    ) -> Result<Self> {
        let flags = libc::c_int::try_from(access.0)
            .map_err(|_| Error::InvalidArgument(format!("access flags {:#x}", access.0)))?;
        // SAFETY: valid PD; the caller keeps the memory valid for the
        // registration's lifetime.
        let mr = unsafe { ibv_reg_mr(device.pd(), addr.cast(), len, flags) };
        let mr = NonNull::new(mr).ok_or_else(|| {
            Error::io(
                format!("ibv_reg_mr of {len} bytes on {}", device.name()),
                std::io::Error::last_os_error(),
            )
        })?;
        Ok(MemoryRegion {
            mr,
            _device: Arc::clone(device),
        })
    }

    pub fn lkey(&self) -> u32 {
        // SAFETY: `mr` is valid until drop.
        unsafe { self.mr.as_ref().lkey }
    }

    pub fn rkey(&self) -> u32 {
        // SAFETY: `mr` is valid until drop.
        unsafe { self.mr.as_ref().rkey }
    }
}

impl Drop for MemoryRegion {
    fn drop(&mut self) {
        // SAFETY: registered in `register`, deregistered once.
        unsafe { ibv_dereg_mr(self.mr.as_ptr()) };
    }
}

/// Heap memory registered for local use (staging and message buffers).
/// Field order matters: the registration is dropped before the memory.
#[derive(Debug)]
pub struct RegisteredBuffer {
    mr: MemoryRegion,
    memory: RegionMemory,
}

impl RegisteredBuffer {
    pub fn new(device: &Arc<Device>, len: usize, access: ibv_access_flags) -> Result<Self> {
        let memory = RegionMemory::heap(len.max(8) as u64)?;
        // SAFETY: `memory` is owned by the returned value and dropped after
        // the registration (field order).
        let mr = unsafe { MemoryRegion::register(device, memory.as_ptr(), memory.len(), access)? };
        Ok(RegisteredBuffer { mr, memory })
    }

    pub fn lkey(&self) -> u32 {
        self.mr.lkey()
    }

    /// Address of byte `offset` (as the NIC sees it).
    pub fn addr(&self, offset: usize) -> u64 {
        self.memory.as_ptr() as u64 + offset as u64
    }

    pub fn len(&self) -> usize {
        self.memory.len()
    }

    pub fn memory(&self) -> &RegionMemory {
        &self.memory
    }
}
