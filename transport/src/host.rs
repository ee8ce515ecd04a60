//! A region host: a node that registers and deregisters regions when a peer
//! asks, echoes requests and one-way messages, and can be told to stall.
//! `o3-transport-node` runs one as a separate process so that the
//! conformance suite and the benchmark exercise a real region owner in
//! another address space; the `local` suite runs one in-process.
//!
//! Requests are a tag byte and a body: [`ECHO`] answers the body unchanged
//! (the round-trip probe, no parsing on the hot path); [`COMMAND`] carries a
//! JSON [`HostCommand`] and is answered with a JSON [`HostReply`].

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::region::LocalRegion;
use crate::verbs::{Connection, Fabric, NodeId, RegionDesc, RequestHandler};

/// Tag of a request answered with its own body.
pub const ECHO: u8 = 0;
/// Tag of a request whose body is a JSON [`HostCommand`].
pub const COMMAND: u8 = 1;

/// What a peer can ask a region host to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum HostCommand {
    Register {
        len: u64,
    },
    Deregister {
        desc: RegionDesc,
    },
    /// Hold the connection's handler for `millis` (to test a peer dying in
    /// the middle of a call).
    Stall {
        millis: u64,
    },
}

/// The host's answer to a [`HostCommand`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum HostReply {
    Registered { desc: RegionDesc },
    Done,
}

/// The request handler of a region host; [`RegionHost::attach`] gives it the
/// fabric it registers on (the fabric is built with the handler, so the link
/// is made afterwards).
#[derive(Debug, Default)]
pub struct RegionHost {
    fabric: OnceLock<Arc<dyn Fabric>>,
    regions: Mutex<HashMap<u64, LocalRegion>>,
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
        std::thread::Builder::new()
            .name("o3-host-accept".into())
            .spawn(move || echo_messages(fabric))
            .map_err(|e| Error::io("spawn host accept thread", e))?;
        Ok(())
    }

    fn command(&self, command: HostCommand) -> Result<HostReply, String> {
        let fabric = self.fabric.get().ok_or("region host not attached")?;
        match command {
            HostCommand::Register { len } => {
                let region = fabric.register(len).map_err(|e| e.to_string())?;
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
        }
    }
}

impl RequestHandler for RegionHost {
    fn handle(&self, _from: &NodeId, request: &[u8]) -> Result<Vec<u8>, String> {
        match request.split_first() {
            Some((&ECHO, body)) => Ok(body.to_vec()),
            Some((&COMMAND, body)) => {
                let command: HostCommand =
                    serde_json::from_slice(body).map_err(|e| format!("bad command: {e}"))?;
                let reply = self.command(command)?;
                serde_json::to_vec(&reply).map_err(|e| e.to_string())
            }
            _ => Err("unknown request tag".into()),
        }
    }
}

fn echo_messages(fabric: Arc<dyn Fabric>) {
    loop {
        let inbound = match fabric.accept(Duration::from_secs(3600)) {
            Ok(inbound) => inbound,
            Err(Error::Timeout { .. }) => continue,
            Err(_) => return,
        };
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

/// Ask the host behind `connection` to register `len` bytes.
pub fn host_register(connection: &dyn Connection, len: u64) -> Result<RegionDesc> {
    match host_command(connection, &HostCommand::Register { len })? {
        HostReply::Registered { desc } => Ok(desc),
        other => Err(Error::protocol(
            connection.peer(),
            format!("expected Registered, got {other:?}"),
        )),
    }
}
