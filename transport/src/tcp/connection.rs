//! The requester's end of a tcp connection: one-sided batches become `Batch`
//! frames executed by the owner's connection thread.

use std::net::TcpStream;
use std::time::Instant;

use crate::batch_codec::{EncodedBatch, decode_result, post_validated, replicate};
use crate::error::Result;
use crate::identity::Credentials;
use crate::stream::client::{StreamCall, StreamClient};
use crate::verbs::{Completion, ConnectOptions, Connection, NodeId, PendingCall, WorkRequest};
use crate::wire::FrameKind;

/// A connection to a tcp node.
#[derive(Debug)]
pub struct TcpConnection {
    client: StreamClient<TcpStream>,
}

impl TcpConnection {
    pub(crate) fn handshake(
        stream: TcpStream,
        me: &NodeId,
        credentials: &Credentials,
        peer: NodeId,
        options: ConnectOptions,
    ) -> Result<Self> {
        Ok(TcpConnection {
            // A tcp owner offers no mailbox (its peers share no memory).
            client: StreamClient::handshake(stream, me, credentials, peer, options)?.0,
        })
    }

    fn execute(&self, batch: &mut [WorkRequest<'_>]) -> Result<Vec<Result<Completion>>> {
        let deadline = Instant::now() + self.client.options().op_timeout;
        let encoded = EncodedBatch::new(batch);
        let id = self
            .client
            .start(FrameKind::Batch, &encoded.parts(batch), encoded.max_reply)?;
        let reply = self.client.wait(id, deadline, "one-sided batch")?;
        decode_result(&reply.payload, batch, self.client.peer())
    }
}

impl Connection for TcpConnection {
    fn peer(&self) -> &NodeId {
        self.client.peer()
    }

    fn options(&self) -> &ConnectOptions {
        self.client.options()
    }

    fn post(&self, batch: &mut [WorkRequest<'_>]) -> Vec<Result<Completion>> {
        let peer = self.client.peer();
        post_validated(peer, batch, |valid| match self.execute(valid) {
            Ok(results) => results,
            Err(e) => (0..valid.len()).map(|_| Err(replicate(&e, peer))).collect(),
        })
    }

    fn send(&self, message: &[u8]) -> Result<()> {
        self.client.send_frame(FrameKind::Message, 0, &[message])
    }

    fn recv(&self) -> Result<Vec<u8>> {
        self.client
            .recv(Instant::now() + self.client.options().op_timeout)
    }

    fn start_call(&self, request: &[u8]) -> Result<PendingCall<'_>> {
        let id = self.client.start(
            FrameKind::Request,
            &[request],
            self.client.options().max_message as u64,
        )?;
        Ok(PendingCall::new(Box::new(StreamCall::new(
            &self.client,
            id,
        ))))
    }
}
