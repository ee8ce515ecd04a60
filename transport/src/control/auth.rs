//! The cluster token: a shared secret that every control-plane call carries.
//!
//! The server checks it in an interceptor layered over the whole server, in
//! front of every service, so a call without the right token is rejected with
//! `Unauthenticated` before its handler is polled: it has no effect. The
//! comparison runs in time that depends only on the expected token's length,
//! so response timing does not reveal how many leading bytes were right.

use std::fmt;
use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::{InterceptedService, InterceptorLayer};
use tonic::transport::Channel;
use tonic::{Request, Status};

use super::ControlError;

/// The gRPC metadata key that carries the cluster token.
pub const CLUSTER_TOKEN_HEADER: &str = "o3-cluster-token";

/// Longest accepted token; keeps the header well inside HTTP/2 limits.
const MAX_TOKEN_LEN: usize = 4096;

/// The secret shared by all nodes of one cluster. `Debug` never prints it.
#[derive(Clone)]
pub struct ClusterToken {
    header: MetadataValue<Ascii>,
    secret: Arc<[u8]>,
}

impl ClusterToken {
    /// Accepts a non-empty token of at most 4096 visible ASCII characters
    /// (no spaces or control characters), the set that travels unchanged in
    /// gRPC metadata.
    pub fn new(secret: &str) -> Result<Self, ControlError> {
        if secret.is_empty() {
            return Err(ControlError::InvalidToken {
                reason: "the token is empty",
            });
        }
        if secret.len() > MAX_TOKEN_LEN {
            return Err(ControlError::InvalidToken {
                reason: "the token is longer than 4096 bytes",
            });
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ControlError::InvalidToken {
                reason: "the token must be visible ASCII without spaces",
            });
        }
        let header = MetadataValue::try_from(secret).map_err(|_| ControlError::InvalidToken {
            reason: "the token is not a valid metadata value",
        })?;
        Ok(Self {
            header,
            secret: Arc::from(secret.as_bytes()),
        })
    }

    /// The secret's bytes (the data plane's HMAC key).
    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Whether `presented` is this token, in time independent of where the
    /// first differing byte is.
    fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(&self.secret, presented)
    }
}

impl fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterToken(<redacted>)")
    }
}

/// Compares every byte of `expected` whatever the input, so the running time
/// depends on `expected.len()` alone.
fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    let mut diff = u8::from(expected.len() != presented.len());
    for (i, &e) in expected.iter().enumerate() {
        let p = presented.get(i).copied().unwrap_or(!e);
        diff |= std::hint::black_box(e ^ p);
    }
    std::hint::black_box(diff) == 0
}

/// Server side: rejects calls whose `o3-cluster-token` is missing or wrong
/// with `Unauthenticated`, and strips the token from accepted calls so that
/// handlers (and their logs) never see the secret.
///
/// Install it over the whole server so that no service can be reached
/// without it: `Server::builder().layer(RequireClusterToken::new(t).layer())`.
#[derive(Clone, Debug)]
pub struct RequireClusterToken {
    token: ClusterToken,
}

impl RequireClusterToken {
    pub fn new(token: ClusterToken) -> Self {
        Self { token }
    }

    /// A tower layer applying this check to every service of a server.
    pub fn layer(self) -> InterceptorLayer<Self> {
        InterceptorLayer::new(self)
    }
}

impl Interceptor for RequireClusterToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let accepted = match request.metadata().get(CLUSTER_TOKEN_HEADER) {
            None => {
                return Err(Status::unauthenticated(format!(
                    "missing cluster token (metadata key {CLUSTER_TOKEN_HEADER})"
                )));
            }
            Some(presented) => self.token.matches(presented.as_bytes()),
        };
        if !accepted {
            return Err(Status::unauthenticated("wrong cluster token"));
        }
        request.metadata_mut().remove(CLUSTER_TOKEN_HEADER);
        Ok(request)
    }
}

/// Client side: adds the cluster token to every outgoing call.
#[derive(Clone, Debug)]
pub struct AttachClusterToken {
    token: ClusterToken,
}

impl AttachClusterToken {
    pub fn new(token: ClusterToken) -> Self {
        Self { token }
    }
}

impl Interceptor for AttachClusterToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert(CLUSTER_TOKEN_HEADER, self.token.header.clone());
        Ok(request)
    }
}

/// A channel whose every call carries the cluster token; generated clients
/// accept it in place of a plain [`Channel`].
pub type AuthenticatedChannel = InterceptedService<Channel, AttachClusterToken>;

/// Wraps `channel` so that every call made through it carries `token`.
pub fn authenticated(channel: Channel, token: ClusterToken) -> AuthenticatedChannel {
    InterceptedService::new(channel, AttachClusterToken::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> ClusterToken {
        ClusterToken::new(s).unwrap()
    }

    fn request_with(value: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(v) = value {
            request
                .metadata_mut()
                .insert(CLUSTER_TOKEN_HEADER, MetadataValue::try_from(v).unwrap());
        }
        request
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"secret", b"secrets"));
        assert!(!constant_time_eq(b"secret", b""));
        assert!(!constant_time_eq(b"a", b"\x9e"));
    }

    #[test]
    fn rejects_unusable_tokens() {
        for bad in [
            "",
            "has space",
            "tab\t",
            "ünïcode",
            &"x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(
                matches!(
                    ClusterToken::new(bad),
                    Err(ControlError::InvalidToken { .. })
                ),
                "{bad:?} accepted"
            );
        }
        assert!(ClusterToken::new(&"x".repeat(MAX_TOKEN_LEN)).is_ok());
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let t = token("hunter2");
        assert!(!format!("{t:?}").contains("hunter2"));
        assert!(!format!("{:?}", RequireClusterToken::new(t)).contains("hunter2"));
    }

    #[test]
    fn server_check_accepts_only_the_right_token_and_strips_it() {
        let mut check = RequireClusterToken::new(token("right"));
        for presented in [None, Some("wrong"), Some("righ"), Some("rightt")] {
            let status = check.call(request_with(presented)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{presented:?}");
        }
        let accepted = check.call(request_with(Some("right"))).unwrap();
        assert!(accepted.metadata().get(CLUSTER_TOKEN_HEADER).is_none());
    }

    #[test]
    fn client_attach_then_server_check_round_trips() {
        let t = token("shared-secret");
        let sent = AttachClusterToken::new(t.clone())
            .call(Request::new(()))
            .unwrap();
        assert!(RequireClusterToken::new(t).call(sent).is_ok());
    }
}
