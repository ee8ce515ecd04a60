//! Both ends of an RDMA connection: the requester's [`RdmaConnection`] and
//! the owner's session (serving the side channel) with its
//! [`RdmaInbound`] handle.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::FabricCore;
use super::messages::{MessageChannel, Serving};
use super::one_sided::{DataPath, Failure, completion_error};
use super::queue_pair::{Pacer, QpDepth, QueuePair};
use super::side_channel::{self, SideMessage, Verdict};
use crate::error::{Error, Result};
use crate::handshake::{Accepting, Challenge, Connecting, Hello, Proof};
use crate::identity::PeerIdentity;
use crate::verbs::{
    Completion, ConnectOptions, Connection, InboundConnection, NodeId, PendingCall, WorkRequest,
};

/// The one-sided path and the side channel, used together under one lock.
#[derive(Debug)]
struct DataSide {
    path: DataPath,
    side: TcpStream,
}

/// The requester's end of a connection to one RDMA peer.
#[derive(Debug)]
pub struct RdmaConnection {
    peer: NodeId,
    options: ConnectOptions,
    data: Mutex<DataSide>,
    messages: Arc<MessageChannel>,
}

impl RdmaConnection {
    /// Connect to `peer`'s side-channel listener and set up both queue
    /// pairs.
    pub(super) fn open(core: &FabricCore, peer: &NodeId, options: &ConnectOptions) -> Result<Self> {
        let addr: SocketAddr = peer
            .0
            .parse()
            .map_err(|e| Error::InvalidArgument(format!("rdma peer address {peer}: {e}")))?;
        let mut side = TcpStream::connect_timeout(&addr, options.op_timeout)
            .map_err(|e| Error::peer_gone(peer, format!("side channel connect: {e}")))?;
        side.set_nodelay(true)
            .and_then(|()| side.set_read_timeout(Some(options.op_timeout)))
            .map_err(|e| Error::io(format!("side channel to {peer}"), e))?;

        let mut path = DataPath::new(
            &core.device,
            core.options.staging_bytes,
            core.options.direct_threshold,
        )?;
        let data_qp = path.new_queue_pair()?;
        let messages = Arc::new(MessageChannel::new(
            &core.device,
            peer.clone(),
            core.options.message_buffers(),
            options.max_message,
            options.op_timeout,
            options.poll,
            None,
        )?);
        let (connecting, hello) = Connecting::start(&core.node, peer)?;
        let hello = SideMessage::Hello {
            node: hello.node,
            nonce: hello.nonce,
            data: data_qp.endpoint(),
            messages: messages.queue_pair().endpoint(),
        };
        side_channel::send(&mut side, &hello, peer)?;
        let challenge = match side_channel::receive(&mut side, peer)? {
            SideMessage::Challenge { node, nonce, proof } => Challenge { node, nonce, proof },
            other => {
                return Err(Error::protocol(
                    peer,
                    format!("expected Challenge, got {other:?}"),
                ));
            }
        };
        let proof = connecting.answer(&core.credentials, &challenge)?;
        side_channel::send(&mut side, &SideMessage::Proof(proof.0), peer)?;
        let (remote_data, remote_messages) = match side_channel::receive(&mut side, peer)? {
            SideMessage::Welcome { data, messages } => (data, messages),
            SideMessage::Refused(reason) => {
                return Err(Error::Unauthenticated {
                    peer: peer.clone(),
                    reason: format!("the peer refused us: {reason}"),
                });
            }
            other => {
                return Err(Error::protocol(
                    peer,
                    format!("expected Welcome, got {other:?}"),
                ));
            }
        };
        data_qp.connect(&remote_data)?;
        messages.queue_pair().connect(&remote_messages)?;
        path.install(data_qp);
        messages.spawn_receiver()?;
        side_channel::send(&mut side, &SideMessage::Ready, peer)?;
        Ok(RdmaConnection {
            peer: peer.clone(),
            options: options.clone(),
            data: Mutex::new(DataSide { path, side }),
            messages,
        })
    }
}

impl DataSide {
    /// Replace a queue pair that failed with a fresh one, agreed with the
    /// owner over the side channel.
    fn renew(&mut self, peer: &NodeId) -> Result<()> {
        let qp = self.path.new_queue_pair()?;
        side_channel::send(&mut self.side, &SideMessage::RenewData(qp.endpoint()), peer)?;
        match side_channel::receive(&mut self.side, peer)? {
            SideMessage::Renewed(remote) => qp.connect(&remote)?,
            other => {
                return Err(Error::protocol(
                    peer,
                    format!("expected Renewed, got {other:?}"),
                ));
            }
        }
        self.path.install(qp);
        Ok(())
    }

    /// Ask the owner why `wr` was refused by its NIC.
    fn diagnose(&mut self, peer: &NodeId, wr: &WorkRequest<'_>) -> Error {
        let remote = wr.remote();
        let (offset, len) = match wr {
            WorkRequest::Read { offset, buf, .. } => (*offset, buf.len() as u64),
            WorkRequest::Write { offset, data, .. } => (*offset, data.len() as u64),
            WorkRequest::CompareAndSwap { offset, .. } | WorkRequest::FetchAdd { offset, .. } => {
                (*offset, 8)
            }
        };
        let question = SideMessage::Diagnose {
            region: remote.region,
            base: remote.base,
            rkey: remote.rkey,
            offset,
            len,
            op: wr.op(),
        };
        let answer = side_channel::send(&mut self.side, &question, peer)
            .and_then(|()| side_channel::receive(&mut self.side, peer));
        match answer {
            Ok(SideMessage::Diagnosis(Verdict::BadKey)) => Error::BadKey {
                region: remote.region,
            },
            Ok(SideMessage::Diagnosis(Verdict::Gone)) => Error::RegionGone {
                region: remote.region,
            },
            Ok(SideMessage::Diagnosis(Verdict::AccessDenied { access })) => Error::AccessDenied {
                region: remote.region,
                op: wr.op(),
                access,
            },
            Ok(SideMessage::Diagnosis(Verdict::OutOfBounds { region_len })) => Error::OutOfBounds {
                region: remote.region,
                offset,
                len,
                region_len,
            },
            Ok(SideMessage::Diagnosis(Verdict::Valid)) => Error::protocol(
                peer,
                format!("remote access error on valid region {}", remote.region),
            ),
            Ok(other) => Error::protocol(peer, format!("expected Diagnosis, got {other:?}")),
            Err(e) => e,
        }
    }
}

impl Connection for RdmaConnection {
    fn peer(&self) -> &NodeId {
        &self.peer
    }

    fn options(&self) -> &ConnectOptions {
        &self.options
    }

    fn post(&self, batch: &mut [WorkRequest<'_>]) -> Vec<Result<Completion>> {
        let mut results = Vec::with_capacity(batch.len());
        let invalid = batch.iter().enumerate().find_map(|(i, wr)| {
            let checked = wr.validate(&self.peer).and_then(|()| {
                u32::try_from(wr.remote().rkey)
                    .map(|_| ())
                    .map_err(|_| Error::BadKey {
                        region: wr.remote().region,
                    })
            });
            checked.err().map(|e| (i, e))
        });
        let valid = invalid.as_ref().map_or(batch.len(), |(i, _)| *i);
        let mut failure = None;
        if valid > 0 {
            let mut data = self.data.lock();
            let ready = if data.path.is_ready() {
                Ok(())
            } else {
                data.renew(&self.peer)
            };
            match ready {
                Err(e) => failure = Some((0, e)),
                Ok(()) => {
                    let outcome = data.path.run(
                        &mut batch[..valid],
                        0,
                        Pacer::new(self.options.op_timeout, self.options.poll),
                        &mut results,
                    );
                    failure = match outcome {
                        Ok(()) => None,
                        Err(Failure::Local { index, error }) => Some((index, error)),
                        Err(Failure::Completion { index, status }) => {
                            let error = completion_error(&self.peer, index, status, || {
                                data.diagnose(&self.peer, &batch[index])
                            });
                            Some((index, error))
                        }
                    };
                }
            }
        }
        let failure = failure.or(invalid);
        if let Some((index, error)) = failure {
            results.truncate(index);
            results.push(Err(error));
            results.extend((index + 1..batch.len()).map(|i| Err(Error::Flushed { index: i })));
        }
        results
    }

    fn send(&self, message: &[u8]) -> Result<()> {
        self.messages.send_message(message)
    }

    fn recv(&self) -> Result<Vec<u8>> {
        self.messages.recv_message(self.options.op_timeout)
    }

    fn start_call(&self, request: &[u8]) -> Result<PendingCall<'_>> {
        Ok(PendingCall::new(Box::new(
            self.messages.start_call(request)?,
        )))
    }
}

impl Drop for RdmaConnection {
    fn drop(&mut self) {
        self.messages.close("connection closed");
        // The owner's session sees the side channel close and ends.
        let _ = self.data.lock().side.shutdown(Shutdown::Both);
    }
}

/// The owner's handle on a connection a peer opened.
#[derive(Debug)]
pub struct RdmaInbound {
    peer: PeerIdentity,
    messages: Arc<MessageChannel>,
}

impl InboundConnection for RdmaInbound {
    fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    fn send(&self, message: &[u8]) -> Result<()> {
        self.messages.send_message(message)
    }

    fn recv(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.messages.recv_message(timeout)
    }
}

/// Serve one peer's side channel on the owner: handshake, then diagnoses
/// and queue-pair renewals until the peer closes it.
pub(super) fn serve_session(core: &Arc<FabricCore>, mut side: TcpStream) -> Result<()> {
    let unknown = NodeId::from("(handshaking peer)");
    side.set_nodelay(true)
        .and_then(|()| side.set_read_timeout(Some(core.options.handshake_timeout)))
        .map_err(|e| Error::io("rdma side channel setup", e))?;
    let (hello, remote_data, remote_messages) = match side_channel::receive(&mut side, &unknown)? {
        SideMessage::Hello {
            node,
            nonce,
            data,
            messages,
        } => (Hello { node, nonce }, data, messages),
        other => {
            return Err(Error::protocol(
                &unknown,
                format!("expected Hello, got {other:?}"),
            ));
        }
    };
    let (accepting, challenge) = Accepting::start(&core.credentials, &core.node, hello)?;
    let claimed = accepting.claimed().clone();
    let challenge = SideMessage::Challenge {
        node: challenge.node,
        nonce: challenge.nonce,
        proof: challenge.proof,
    };
    side_channel::send(&mut side, &challenge, &claimed)?;
    let proof = match side_channel::receive(&mut side, &claimed)? {
        SideMessage::Proof(proof) => Proof(proof),
        other => {
            return Err(Error::protocol(
                &claimed,
                format!("expected Proof, got {other:?}"),
            ));
        }
    };
    // No queue pair of ours is connected before the peer is proven.
    let identity = match accepting.finish(&core.credentials, &proof) {
        Ok(identity) => Arc::new(identity),
        Err(e) => {
            let refusal = SideMessage::Refused("proof of the cluster token refused".into());
            let _ = side_channel::send(&mut side, &refusal, &claimed);
            return Err(e);
        }
    };
    let peer = identity.node.clone();
    let responder_depth = QpDepth { send: 1, recv: 1 };
    let mut data_qp = QueuePair::create(&core.device, responder_depth)?;
    data_qp.connect(&remote_data)?;
    let defaults = ConnectOptions::default();
    let channel = Arc::new(MessageChannel::new(
        &core.device,
        peer.clone(),
        core.options.message_buffers(),
        defaults.max_message,
        defaults.op_timeout,
        core.poll,
        Some(Serving {
            dispatcher: Arc::clone(&core.dispatcher),
            from: Arc::clone(&identity),
        }),
    )?);
    channel.queue_pair().connect(&remote_messages)?;
    let welcome = SideMessage::Welcome {
        data: data_qp.endpoint(),
        messages: channel.queue_pair().endpoint(),
    };
    side_channel::send(&mut side, &welcome, &peer)?;
    match side_channel::receive(&mut side, &peer)? {
        SideMessage::Ready => {}
        other => {
            return Err(Error::protocol(
                &peer,
                format!("expected Ready, got {other:?}"),
            ));
        }
    }
    channel.spawn_receiver()?;
    let closed = Arc::new(AtomicBool::new(false));
    core.track_session(&side, &channel)?;
    core.accept.push(
        Box::new(RdmaInbound {
            peer: PeerIdentity::clone(&identity),
            messages: Arc::clone(&channel),
        }),
        Arc::clone(&closed),
    );
    side.set_read_timeout(None)
        .map_err(|e| Error::io(format!("side channel of {peer}"), e))?;

    let outcome = loop {
        let message = match side_channel::receive(&mut side, &peer) {
            Ok(m) => m,
            Err(Error::PeerGone { .. }) => break Ok(()),
            Err(e) => break Err(e),
        };
        let reply = match message {
            SideMessage::Diagnose {
                region,
                base,
                rkey,
                offset,
                len,
                op,
            } => SideMessage::Diagnosis(core.verdict(region, base, rkey, offset, len, op)),
            SideMessage::RenewData(remote) => {
                let fresh = QueuePair::create(&core.device, responder_depth)?;
                fresh.connect(&remote)?;
                let reply = SideMessage::Renewed(fresh.endpoint());
                data_qp = fresh;
                reply
            }
            other => {
                break Err(Error::protocol(
                    &peer,
                    format!("unexpected side-channel message {other:?}"),
                ));
            }
        };
        if let Err(e) = side_channel::send(&mut side, &reply, &peer) {
            break Err(e);
        }
    };
    channel.close("peer closed the connection");
    closed.store(true, Ordering::Release);
    drop(data_qp);
    outcome
}
