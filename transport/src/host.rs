//! A region host: a node that registers and deregisters regions when a peer
//! asks, echoes requests and one-way messages, can be told to stall, tells a
//! peer the identity it proved, and records who it served.
//! `o3-transport-node` runs one as a separate process so that the
//! conformance suite and the benchmark exercise a real region owner in
//! another address space; the `local` suite runs one in-process.
//!
//! Requests are a tag byte and a body: [`ECHO`] answers the body unchanged
//! (the round-trip probe, no parsing on the hot path, so it is a quick
//! request served inline); [`COMMAND`] carries a JSON [`HostCommand`] and is
//! answered with a JSON [`HostReply`] (on a worker: commands may wait).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::access::RegionAccess;
use crate::error::{Error, Result};
use crate::identity::PeerIdentity;
use crate::region::LocalRegion;
use crate::verbs::{Connection, Fabric, RegionDesc, RequestHandler};

/// Tag of a request answered with its own body.
pub const ECHO: u8 = 0;
/// Tag of a request whose body is a JSON [`HostCommand`].
pub const COMMAND: u8 = 1;

/// What a peer can ask a region host to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum HostCommand {
    Register {
        len: u64,
        access: RegionAccess,
    },
    Deregister {
        desc: RegionDesc,
    },
    /// Hold the connection's handler for `millis` (to test a peer dying in
    /// the middle of a call).
    Stall {
        millis: u64,
    },
    /// Answer the identity this request arrived under.
    WhoAmI,
    /// Wait (at most `millis`) until a [`HostCommand::Meet`] with the same
    /// key has arrived: answered only if requests are served concurrently
    /// when both travel on one connection.
    AwaitMeeting {
        key: u64,
        millis: u64,
    },
    /// Arrive at meeting `key`.
    Meet {
        key: u64,
    },
    /// Who the host has served and which connections it accepted.
    Visitors,
}

/// The host's answer to a [`HostCommand`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum HostReply {
    Registered {
        desc: RegionDesc,
    },
    Done,
    Identity(PeerIdentity),
    Visitors {
        /// Every identity a command was served for.
        served: Vec<PeerIdentity>,
        /// The identity of every connection accepted.
        accepted: Vec<PeerIdentity>,
    },
}

/// The request handler of a region host; [`RegionHost::attach`] gives it the
/// fabric it registers on (the fabric is built with the handler, so the link
/// is made afterwards).
#[derive(Debug, Default)]
pub struct RegionHost {
    fabric: OnceLock<Arc<dyn Fabric>>,
    regions: Mutex<HashMap<u64, LocalRegion>>,
    served: RwLock<Vec<PeerIdentity>>,
    accepted: Arc<Mutex<Vec<PeerIdentity>>>,
    meetings: Mutex<HashSet<u64>>,
    met: Condvar,
}

impl RegionHost {
    pub fn new() -> Arc<Self> {
        Arc::new(RegionHost::default())
    }

    /// Use `fabric` for registrations and start echoing one-way messages on
    /// every connection peers open.
    pub fn attach(self: &Arc<Self>, fabric: Arc<dyn Fabric>) -> Result<()> {
        self.fabric
            .set(Arc::clone(&fabric))
            .map_err(|_| Error::InvalidArgument("region host already attached".into()))?;
        let accepted = Arc::clone(&self.accepted);
        std::thread::Builder::new()
            .name("o3-host-accept".into())
            .spawn(move || echo_messages(fabric, &accepted))
            .map_err(|e| Error::io("spawn host accept thread", e))?;
        Ok(())
    }

    /// A region this host registered and has not deregistered.
    pub fn region(&self, region: u64) -> Option<LocalRegion> {
        self.regions.lock().get(&region).cloned()
    }

    fn command(&self, from: &PeerIdentity, command: HostCommand) -> Result<HostReply, String> {
        let fabric = self.fabric.get().ok_or("region host not attached")?;
        match command {
            HostCommand::Register { len, access } => {
                let region = fabric.register(len, access).map_err(|e| e.to_string())?;
                let desc = region.desc().clone();
                self.regions.lock().insert(desc.region, region);
                Ok(HostReply::Registered { desc })
            }
            HostCommand::Deregister { desc } => {
                fabric.deregister(&desc).map_err(|e| e.to_string())?;
                self.regions.lock().remove(&desc.region);
                Ok(HostReply::Done)
            }
            HostCommand::Stall { millis } => {
                std::thread::sleep(Duration::from_millis(millis));
                Ok(HostReply::Done)
            }
            HostCommand::WhoAmI => Ok(HostReply::Identity(from.clone())),
            HostCommand::AwaitMeeting { key, millis } => {
                let deadline = Instant::now() + Duration::from_millis(millis);
                let mut meetings = self.meetings.lock();
                while !meetings.remove(&key) {
                    if self.met.wait_until(&mut meetings, deadline).timed_out()
                        && !meetings.contains(&key)
                    {
                        return Err(format!(
                            "nobody met at {key} within {millis} ms: the later request \
                             was not served while this one waited"
                        ));
                    }
                }
                Ok(HostReply::Done)
            }
            HostCommand::Meet { key } => {
                self.meetings.lock().insert(key);
                self.met.notify_all();
                Ok(HostReply::Done)
            }
            HostCommand::Visitors => Ok(HostReply::Visitors {
                served: self.served.read().clone(),
                accepted: self.accepted.lock().clone(),
            }),
        }
    }

    fn record(&self, from: &PeerIdentity) {
        if !self.served.read().contains(from) {
            let mut served = self.served.write();
            if !served.contains(from) {
                served.push(from.clone());
            }
        }
    }
}

impl RequestHandler for RegionHost {
    fn handle(&self, from: &PeerIdentity, request: &[u8]) -> Result<Vec<u8>, String> {
        match request.split_first() {
            // The round-trip probe stays free of bookkeeping.
            Some((&ECHO, body)) => Ok(body.to_vec()),
            Some((&COMMAND, body)) => {
                self.record(from);
                let command: HostCommand =
                    serde_json::from_slice(body).map_err(|e| format!("bad command: {e}"))?;
                let reply = self.command(from, command)?;
                serde_json::to_vec(&reply).map_err(|e| e.to_string())
            }
            _ => Err("unknown request tag".into()),
        }
    }

    fn is_quick(&self, request: &[u8]) -> bool {
        request.first() == Some(&ECHO)
    }
}

fn echo_messages(fabric: Arc<dyn Fabric>, accepted: &Mutex<Vec<PeerIdentity>>) {
    loop {
        let inbound = match fabric.accept(Duration::from_secs(3600)) {
            Ok(inbound) => inbound,
            Err(Error::Timeout { .. }) => continue,
            Err(_) => return,
        };
        accepted.lock().push(inbound.peer().clone());
        let spawned = std::thread::Builder::new()
            .name("o3-host-echo".into())
            .spawn(move || {
                loop {
                    match inbound.recv(Duration::from_secs(3600)) {
                        Ok(message) => {
                            if inbound.send(&message).is_err() {
                                return;
                            }
                        }
                        Err(Error::Timeout { .. }) => {}
                        Err(_) => return,
                    }
                }
            });
        if spawned.is_err() {
            return;
        }
    }
}

/// Ask the host behind `connection` to run `command`.
pub fn host_command(connection: &dyn Connection, command: &HostCommand) -> Result<HostReply> {
    let mut request = vec![COMMAND];
    serde_json::to_writer(&mut request, command)
        .map_err(|e| Error::InvalidArgument(format!("encode host command: {e}")))?;
    let response = connection.call(&request)?;
    serde_json::from_slice(&response)
        .map_err(|e| Error::protocol(connection.peer(), format!("bad host reply: {e}")))
}

/// Ask the host behind `connection` to register `len` bytes peers may read
/// and write.
pub fn host_register(connection: &dyn Connection, len: u64) -> Result<RegionDesc> {
    host_register_with(connection, len, RegionAccess::READ_WRITE)
}

/// Ask the host behind `connection` to register `len` bytes with `access`.
pub fn host_register_with(
    connection: &dyn Connection,
    len: u64,
    access: RegionAccess,
) -> Result<RegionDesc> {
    match host_command(connection, &HostCommand::Register { len, access })? {
        HostReply::Registered { desc } => Ok(desc),
        other => Err(Error::protocol(
            connection.peer(),
            format!("expected Registered, got {other:?}"),
        )),
    }
}
