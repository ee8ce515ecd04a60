//! An opened RDMA device: its context, one protection domain, and the port
//! and GID that queue pairs on this node use.
//!
//! GID choice decides whether RoCE works at all: RoCEv2 GIDs are routable
//! (UDP/IP), and soft-RoCE (`rxe`) only speaks RoCEv2, so unless an index is
//! configured we take the first RoCEv2 GID that is an IPv4-mapped address,
//! then any RoCEv2 GID, and on InfiniBand ports (addressed by LID) index 0.

use std::ffi::CStr;
use std::fs;
use std::ptr::NonNull;

use rdma_sys::{
    ___ibv_query_port, ibv_alloc_pd, ibv_close_device, ibv_context, ibv_dealloc_pd,
    ibv_device_attr, ibv_free_device_list, ibv_get_device_list, ibv_get_device_name, ibv_gid,
    ibv_open_device, ibv_pd, ibv_port_attr, ibv_port_state, ibv_query_device, ibv_query_gid,
};

use crate::error::{Error, Result};

/// `IBV_LINK_LAYER_INFINIBAND` from `verbs.h` (a macro bindgen skips).
const LINK_LAYER_INFINIBAND: u8 = 1;

/// Which device, port and GID to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceChoice {
    /// Device name (`rxe0`, `mlx5_0`); `None` takes the first one listed.
    pub device: Option<String>,
    /// Port number, counted from 1.
    pub port: u8,
    /// GID table index; `None` picks a RoCEv2 GID as described above.
    pub gid_index: Option<u32>,
}

impl Default for DeviceChoice {
    fn default() -> Self {
        DeviceChoice {
            device: None,
            port: 1,
            gid_index: None,
        }
    }
}

/// The names of the RDMA devices on this host, in the order the verbs
/// library lists them. No device is an [`Error::NoDevice`], never a panic.
pub fn device_names() -> Result<Vec<String>> {
    let mut count: libc::c_int = 0;
    // SAFETY: `count` is a valid out-pointer; the list is freed below and the
    // names are copied out before that.
    let list = unsafe { ibv_get_device_list(&mut count) };
    let Some(list) = NonNull::new(list) else {
        return Err(Error::NoDevice {
            reason: format!(
                "ibv_get_device_list failed: {}",
                std::io::Error::last_os_error()
            ),
        });
    };
    let mut names = Vec::new();
    for i in 0..usize::try_from(count).unwrap_or(0) {
        // SAFETY: the list holds `count` valid device pointers.
        let device = unsafe { *list.as_ptr().add(i) };
        // SAFETY: `device` is valid while the list lives; the name is a
        // NUL-terminated string owned by the library.
        let name = unsafe { CStr::from_ptr(ibv_get_device_name(device)) };
        names.push(name.to_string_lossy().into_owned());
    }
    // SAFETY: `list` came from ibv_get_device_list and is freed once.
    unsafe { ibv_free_device_list(list.as_ptr()) };
    if names.is_empty() {
        return Err(Error::NoDevice {
            reason: "the verbs library lists no devices (no RDMA NIC, and no soft-RoCE \
                     link such as `rdma link add rxe0 type rxe netdev eth0`)"
                .into(),
        });
    }
    Ok(names)
}

/// An opened device with its protection domain, chosen port and GID.
///
/// Invariant: `context` and `pd` stay valid until drop; everything created
/// from them (memory regions, queue pairs) holds an `Arc<Device>` so it is
/// destroyed first.
#[derive(Debug)]
pub struct Device {
    name: String,
    context: NonNull<ibv_context>,
    pd: NonNull<ibv_pd>,
    port: u8,
    gid_index: u8,
    gid: [u8; 16],
    lid: u16,
    active_mtu: u32,
    max_rd_atomic: u8,
}

// SAFETY: libibverbs contexts and protection domains are thread-safe; the
// raw pointers are only passed to verbs calls.
unsafe impl Send for Device {}
// SAFETY: as above.
unsafe impl Sync for Device {}

impl Device {
    /// Open the chosen device and port. Any failure to find a usable device
    /// is [`Error::NoDevice`] with the reason.
    pub fn open(choice: &DeviceChoice) -> Result<Self> {
        let names = device_names()?;
        let name = match &choice.device {
            None => names.first().cloned().unwrap_or_default(),
            Some(wanted) if names.contains(wanted) => wanted.clone(),
            Some(wanted) => {
                return Err(Error::NoDevice {
                    reason: format!("device {wanted} not found (have: {})", names.join(", ")),
                });
            }
        };
        let context = open_context(&name)?;
        // From here on, `partial` closes the context if a later step fails.
        let mut partial = Device {
            name,
            context,
            pd: NonNull::dangling(),
            port: choice.port,
            gid_index: 0,
            gid: [0; 16],
            lid: 0,
            active_mtu: 0,
            max_rd_atomic: 1,
        };
        partial.setup(choice)?;
        Ok(partial)
    }

    fn setup(&mut self, choice: &DeviceChoice) -> Result<()> {
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut device_attr: ibv_device_attr = unsafe { std::mem::zeroed() };
        // SAFETY: valid context and out-pointer.
        if unsafe { ibv_query_device(self.context.as_ptr(), &mut device_attr) } != 0 {
            return Err(self.no_device("ibv_query_device failed"));
        }
        self.max_rd_atomic = u8::try_from(device_attr.max_qp_rd_atom.clamp(1, 16)).unwrap_or(1);

        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut port_attr: ibv_port_attr = unsafe { std::mem::zeroed() };
        // SAFETY: valid context and out-pointer of the full-size struct.
        if unsafe { ___ibv_query_port(self.context.as_ptr(), self.port, &mut port_attr) } != 0 {
            return Err(self.no_device(&format!("port {} does not exist", self.port)));
        }
        if port_attr.state != ibv_port_state::IBV_PORT_ACTIVE {
            return Err(self.no_device(&format!(
                "port {} is not active (state {}; is the network interface up?)",
                self.port, port_attr.state
            )));
        }
        self.lid = port_attr.lid;
        self.active_mtu = port_attr.active_mtu;

        let index = match choice.gid_index {
            Some(i) => i,
            None => self.pick_gid(&port_attr)?,
        };
        self.gid_index = u8::try_from(index)
            .map_err(|_| self.no_device(&format!("GID index {index} out of range")))?;
        self.gid = self
            .query_gid(index)
            .ok_or_else(|| self.no_device(&format!("GID index {index} cannot be read")))?;

        // SAFETY: valid context.
        let pd = unsafe { ibv_alloc_pd(self.context.as_ptr()) };
        self.pd = NonNull::new(pd).ok_or_else(|| self.no_device("ibv_alloc_pd failed"))?;
        Ok(())
    }

    /// The preferred GID index (see the module doc).
    fn pick_gid(&self, port_attr: &ibv_port_attr) -> Result<u32> {
        if port_attr.link_layer == LINK_LAYER_INFINIBAND {
            return Ok(0);
        }
        let table_len = u32::try_from(port_attr.gid_tbl_len).unwrap_or(0);
        let mut any_v2 = None;
        for index in 0..table_len {
            let Some(gid) = self.query_gid(index) else {
                continue;
            };
            if gid == [0; 16] || !self.is_roce_v2(index) {
                continue;
            }
            if is_ipv4_mapped(&gid) {
                return Ok(index);
            }
            any_v2.get_or_insert(index);
        }
        any_v2.ok_or_else(|| {
            self.no_device(&format!(
                "port {} has no RoCEv2 GID (does the interface have an IP address?)",
                self.port
            ))
        })
    }

    fn query_gid(&self, index: u32) -> Option<[u8; 16]> {
        let index = libc::c_int::try_from(index).ok()?;
        let mut gid = ibv_gid { raw: [0; 16] };
        // SAFETY: valid context and out-pointer.
        let rc = unsafe { ibv_query_gid(self.context.as_ptr(), self.port, index, &mut gid) };
        if rc != 0 {
            return None;
        }
        // SAFETY: every bit pattern of the union is a valid byte array.
        Some(unsafe { gid.raw })
    }

    /// The GID type is published in sysfs (the verbs call for it is an
    /// inline helper the bindings lack).
    fn is_roce_v2(&self, index: u32) -> bool {
        let path = format!(
            "/sys/class/infiniband/{}/ports/{}/gid_attrs/types/{index}",
            self.name, self.port
        );
        fs::read_to_string(path).is_ok_and(|t| t.trim().eq_ignore_ascii_case("RoCE v2"))
    }

    fn no_device(&self, what: &str) -> Error {
        Error::NoDevice {
            reason: format!("{}: {what}", self.name),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn context(&self) -> *mut ibv_context {
        self.context.as_ptr()
    }
    pub fn pd(&self) -> *mut ibv_pd {
        self.pd.as_ptr()
    }
    pub fn port(&self) -> u8 {
        self.port
    }
    pub fn gid_index(&self) -> u8 {
        self.gid_index
    }
    pub fn gid(&self) -> [u8; 16] {
        self.gid
    }
    pub fn lid(&self) -> u16 {
        self.lid
    }
    /// The port's active MTU as an `ibv_mtu` value.
    pub fn active_mtu(&self) -> u32 {
        self.active_mtu
    }
    /// Outstanding RDMA READs/atomics per queue pair the device allows (≤ 16).
    pub fn max_rd_atomic(&self) -> u8 {
        self.max_rd_atomic
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if self.pd != NonNull::dangling() {
            // SAFETY: the PD was allocated in `setup`, and every object
            // created from it holds an Arc<Device>, so none is left.
            unsafe { ibv_dealloc_pd(self.pd.as_ptr()) };
        }
        // SAFETY: the context was opened in `open` and is closed once.
        unsafe { ibv_close_device(self.context.as_ptr()) };
    }
}

fn open_context(name: &str) -> Result<NonNull<ibv_context>> {
    let mut count: libc::c_int = 0;
    // SAFETY: `count` is a valid out-pointer; the list is freed below (an
    // opened context stays valid after that).
    let list = unsafe { ibv_get_device_list(&mut count) };
    let Some(list) = NonNull::new(list) else {
        return Err(Error::NoDevice {
            reason: format!(
                "ibv_get_device_list failed: {}",
                std::io::Error::last_os_error()
            ),
        });
    };
    let mut context = None;
    for i in 0..usize::try_from(count).unwrap_or(0) {
        // SAFETY: the list holds `count` valid device pointers.
        let device = unsafe { *list.as_ptr().add(i) };
        // SAFETY: `device` is valid while the list lives.
        let this = unsafe { CStr::from_ptr(ibv_get_device_name(device)) };
        if this.to_bytes() == name.as_bytes() {
            // SAFETY: `device` is valid; a null result is handled below.
            context = NonNull::new(unsafe { ibv_open_device(device) });
            break;
        }
    }
    // SAFETY: `list` came from ibv_get_device_list and is freed once.
    unsafe { ibv_free_device_list(list.as_ptr()) };
    context.ok_or_else(|| Error::NoDevice {
        reason: format!("cannot open {name}: {}", std::io::Error::last_os_error()),
    })
}

/// `::ffff:a.b.c.d`, the form RoCEv2 uses for IPv4 addresses.
fn is_ipv4_mapped(gid: &[u8; 16]) -> bool {
    gid[..10].iter().all(|&b| b == 0) && gid[10] == 0xff && gid[11] == 0xff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_mapped_gids_are_recognised() {
        let mut gid = [0u8; 16];
        gid[10] = 0xff;
        gid[11] = 0xff;
        gid[12..].copy_from_slice(&[10, 0, 0, 7]);
        assert!(is_ipv4_mapped(&gid));
        gid[0] = 0xfe;
        assert!(!is_ipv4_mapped(&gid));
    }

    #[test]
    fn missing_devices_are_an_error_not_a_panic() {
        // On a host without RDMA this is NoDevice; with a device it lists it.
        match device_names() {
            Ok(names) => assert!(!names.is_empty()),
            Err(e) => assert!(matches!(e, Error::NoDevice { .. }), "{e}"),
        }
        let choice = DeviceChoice {
            device: Some("o3-no-such-device".into()),
            ..DeviceChoice::default()
        };
        assert!(matches!(Device::open(&choice), Err(Error::NoDevice { .. })));
    }
}
