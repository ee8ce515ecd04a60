//! Conformance cases for the data plane's identities: refused tokens and
//! proven identities.

use super::{Backend, open, suite_credentials};
use crate::control::ClusterToken;
use crate::error::{Error, Result};
use crate::host::{HostCommand, HostReply, host_command};
use crate::identity::{AuthMethod, Credentials, PeerIdentity};
use crate::verbs::{Connection, NodeId};

fn visitors(conn: &dyn Connection) -> Result<(Vec<PeerIdentity>, Vec<PeerIdentity>)> {
    match host_command(conn, &HostCommand::Visitors)? {
        HostReply::Visitors { served, accepted } => Ok((served, accepted)),
        other => Err(Error::protocol(
            conn.peer(),
            format!("expected Visitors, got {other:?}"),
        )),
    }
}

fn who_am_i(conn: &dyn Connection) -> Result<PeerIdentity> {
    match host_command(conn, &HostCommand::WhoAmI)? {
        HostReply::Identity(identity) => Ok(identity),
        other => Err(Error::protocol(
            conn.peer(),
            format!("expected Identity, got {other:?}"),
        )),
    }
}

/// A connector whose token differs from the owner's is refused with
/// [`Error::Unauthenticated`] on its side; the owner never accepts the
/// connection nor serves a request for it, and other connections go on.
pub fn wrong_token_refused(backend: &dyn Backend) -> Result<()> {
    let s = open(backend)?;
    for wrong in [
        format!("{}x", super::suite_token()),
        "another-cluster".to_string(),
    ] {
        let token = ClusterToken::new(&wrong)
            .map_err(|e| Error::InvalidArgument(format!("test token: {e}")))?;
        let intruder = backend.requester_with(Credentials::ClusterToken(token))?;
        let refused = intruder.connect(&s.owner.node(), &backend.options());
        assert!(
            matches!(&refused, Err(Error::Unauthenticated { peer, .. }) if *peer == s.owner.node()),
            "connecting with a wrong token: {refused:?}"
        );
        // A legitimate call after the refusal, so that the host has seen
        // whatever it was going to see.
        assert_eq!(s.conn.call(&[crate::host::ECHO, 1])?, [1]);
        let (served, accepted) = visitors(&*s.conn)?;
        for (what, list) in [("served", &served), ("accepted", &accepted)] {
            assert!(
                !list.iter().any(|p| &p.node == intruder.node()),
                "the owner {what} the refused intruder {}: {list:?}",
                intruder.node()
            );
        }
    }
    Ok(())
}

/// The owner's handler sees, for every request, the identity the
/// connection's requester proved — distinct requesters on distinct
/// connections, each under its own node id, never one another's.
pub fn identity_is_proven(backend: &dyn Backend) -> Result<()> {
    let s = open(backend)?;
    let other = backend.requester_with(suite_credentials())?;
    let other_conn = other.connect(&s.owner.node(), &backend.options())?;
    let expected = |node: &NodeId| PeerIdentity {
        node: node.clone(),
        method: AuthMethod::ClusterToken,
    };
    let requester = backend.requester();
    assert_ne!(requester.node(), other.node());
    for _ in 0..3 {
        assert_eq!(who_am_i(&*s.conn)?, expected(requester.node()));
        assert_eq!(who_am_i(&*other_conn)?, expected(other.node()));
    }
    let (served, _) = visitors(&*s.conn)?;
    for node in [requester.node(), other.node()] {
        assert!(served.contains(&expected(node)), "{node} not in {served:?}");
    }
    Ok(())
}
