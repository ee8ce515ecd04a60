//! The `tcp` backend: works between any hosts. Each node runs a listener;
//! a thread per accepted connection emulates the NIC (checks key and
//! bounds, applies atomics atomically, executes batches in order) and serves
//! two-sided traffic. Requests are pipelined with ids ([`crate::wire`]).
//!
//! Threads and blocking sockets rather than a tokio runtime: callers are
//! synchronous, and a caller that writes its request and reads its response
//! on its own thread avoids two thread hand-offs per operation, which is
//! most of a small operation's latency.

mod connection;

pub use connection::TcpConnection;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::accept::AcceptQueue;
use crate::access::RegionAccess;
use crate::dispatch::Dispatcher;
use crate::error::{Error, Result};
use crate::identity::Credentials;
use crate::region::{LocalRegion, RegionMemory};
use crate::registry::RegionTable;
use crate::stream::server::{ServerContext, serve};
use crate::verbs::{
    ConnectOptions, Connection, Fabric, FabricOptions, InboundConnection, NodeId, RegionDesc,
    SharedHandler,
};

/// A node's tcp endpoint.
#[derive(Debug)]
pub struct TcpFabric {
    node: NodeId,
    credentials: Credentials,
    regions: Arc<RegionTable>,
    accept: Arc<AcceptQueue>,
}

impl TcpFabric {
    /// Listen on `listen` (e.g. `127.0.0.1:0`). Peers reach this node at
    /// `advertise`, or at the bound address when none is given (then the
    /// listen address must not be a wildcard).
    pub fn bind(
        listen: &str,
        advertise: Option<&str>,
        handler: SharedHandler,
        options: FabricOptions,
    ) -> Result<Self> {
        let listener =
            TcpListener::bind(listen).map_err(|e| Error::io(format!("bind {listen}"), e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::io(format!("address of {listen}"), e))?;
        let node = match advertise {
            Some(a) => NodeId(a.to_string()),
            None if bound.ip().is_unspecified() => {
                return Err(Error::InvalidArgument(format!(
                    "listening on wildcard {bound} needs an advertised address"
                )));
            }
            None => NodeId(bound.to_string()),
        };
        let regions = Arc::new(RegionTable::new(node.clone()));
        let accept = Arc::new(AcceptQueue::default());
        let ctx = Arc::new(ServerContext {
            node: node.clone(),
            credentials: options.credentials.clone(),
            dispatcher: Dispatcher::new(node.0.clone(), handler, options.request_workers),
            poll: options.poll,
            accept: Arc::clone(&accept),
            regions: Some(Arc::clone(&regions)),
            max_message: ConnectOptions::default().max_message,
            mailbox_dir: None,
        });
        std::thread::Builder::new()
            .name(format!("o3-tcp-listen {bound}"))
            .spawn(move || accept_loop(listener, ctx))
            .map_err(|e| Error::io("spawn tcp listener thread", e))?;
        Ok(TcpFabric {
            node,
            credentials: options.credentials,
            regions,
            accept,
        })
    }
}

fn accept_loop(listener: TcpListener, ctx: Arc<ServerContext>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        // Small frames must leave at once; batching is done above the socket.
        let _ = stream.set_nodelay(true);
        let ctx = Arc::clone(&ctx);
        let spawned = std::thread::Builder::new()
            .name("o3-tcp-conn".into())
            .spawn(move || {
                if let Err(e) = serve(stream, &ctx) {
                    tracing::warn!(node = %ctx.node, error = %e, "tcp connection ended with an error");
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot spawn a tcp connection thread");
        }
    }
}

impl Fabric for TcpFabric {
    fn node(&self) -> &NodeId {
        &self.node
    }

    fn register(&self, len: u64, access: RegionAccess) -> Result<LocalRegion> {
        Ok(self
            .regions
            .insert(Arc::new(RegionMemory::heap(len)?), access))
    }

    fn deregister(&self, region: &RegionDesc) -> Result<()> {
        self.regions.remove(region)
    }

    fn connect(&self, peer: &NodeId, options: &ConnectOptions) -> Result<Arc<dyn Connection>> {
        let addr: SocketAddr = peer
            .0
            .parse()
            .map_err(|e| Error::InvalidArgument(format!("tcp address {peer}: {e}")))?;
        let stream = TcpStream::connect_timeout(&addr, options.op_timeout)
            .map_err(|e| Error::peer_gone(peer, format!("connect: {e}")))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Error::io(format!("TCP_NODELAY to {peer}"), e))?;
        Ok(Arc::new(TcpConnection::handshake(
            stream,
            &self.node,
            &self.credentials,
            peer.clone(),
            options.clone(),
        )?))
    }

    fn accept(&self, timeout: Duration) -> Result<Box<dyn InboundConnection>> {
        self.accept.pop(timeout)
    }
}
