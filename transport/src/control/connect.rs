//! Reaching a control-plane endpoint: a timeout per attempt, a bounded number
//! of attempts, and exponential backoff with jitter between them, so that a
//! cluster starting all at once does not retry in lock step and a peer that
//! is down yields an error in bounded time instead of a hang.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};

use super::ControlError;

/// Delay before retry `n` (counting from 0): `initial * multiplier^n`, capped
/// at `max`, then scaled by a random factor in `[1 - jitter, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    /// Fraction of each delay that is randomised, in `[0, 1]`.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(2),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }
}

impl Backoff {
    /// The delay before retry `retry`, given `unit` drawn uniformly from
    /// `[0, 1)`. Never exceeds `max`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let exponent = i32::try_from(retry).unwrap_or(i32::MAX);
        let grown = self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let capped = grown.min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter * unit.clamp(0.0, 1.0);
        Duration::try_from_secs_f64(capped * factor).unwrap_or(self.max)
    }
}

/// How [`connect`] tries to reach an endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectOptions {
    /// Limit on one attempt (TCP connect and HTTP/2 handshake).
    pub connect_timeout: Duration,
    /// Deadline applied to every RPC on the resulting channel.
    pub request_timeout: Duration,
    /// Attempts before giving up; at least 1.
    pub max_attempts: u32,
    pub backoff: Backoff,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            max_attempts: 5,
            backoff: Backoff::default(),
        }
    }
}

/// Connects to `endpoint` (`http://host:port`), retrying with backoff.
///
/// Fails with [`ControlError::Unreachable`] once `max_attempts` attempts have
/// failed, so the total time is bounded by
/// `max_attempts * connect_timeout + (max_attempts - 1) * backoff.max`.
pub async fn connect(endpoint: &str, options: &ConnectOptions) -> Result<Channel, ControlError> {
    if options.max_attempts == 0 {
        return Err(ControlError::InvalidOptions {
            reason: "max_attempts must be at least 1",
        });
    }
    let target = Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| ControlError::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        })?
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout);

    let started = Instant::now();
    let mut last_error = String::new();
    for attempt in 0..options.max_attempts {
        if attempt > 0 {
            let pause = options.backoff.delay(attempt - 1, random_unit());
            tokio::time::sleep(pause).await;
        }
        // The endpoint's own connect timeout covers the TCP connect; the
        // outer one also bounds the HTTP/2 handshake with a silent peer.
        match tokio::time::timeout(options.connect_timeout, target.connect()).await {
            Ok(Ok(channel)) => return Ok(channel),
            Ok(Err(e)) => last_error = describe_error(&e),
            Err(_) => last_error = format!("attempt timed out after {:?}", options.connect_timeout),
        }
        tracing::debug!(endpoint, attempt, error = %last_error, "control-plane connect failed");
    }
    Err(ControlError::Unreachable {
        endpoint: endpoint.to_owned(),
        attempts: options.max_attempts,
        elapsed: started.elapsed(),
        last_error,
    })
}

/// The error with its chain of causes on one line, which is where tonic
/// puts the reason (for example "Connection refused"); for one-line
/// errors of the control-plane binaries too.
pub fn describe_error(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A number in `[0, 1)` for jitter. Each `RandomState` is seeded with fresh
/// per-process randomness, which is plenty to de-synchronise retries and
/// avoids a dependency on a random-number crate.
fn random_unit() -> f64 {
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(100),
            multiplier: 2.0,
            jitter: 0.0,
        };
        let delays: Vec<u128> = (0..6).map(|n| b.delay(n, 0.7).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 100, 100]);
        assert_eq!(b.delay(u32::MAX, 0.0), b.max);
    }

    #[test]
    fn jitter_only_shortens_and_stays_within_its_fraction() {
        let b = Backoff {
            jitter: 0.5,
            ..Backoff::default()
        };
        for retry in 0..10 {
            let full = b.delay(retry, 0.0);
            for unit in [0.0, 0.25, 0.5, 0.999] {
                let d = b.delay(retry, unit);
                assert!(
                    d <= full && d >= full / 2,
                    "retry {retry} unit {unit}: {d:?}"
                );
            }
        }
    }

    #[test]
    fn random_unit_is_in_range() {
        for _ in 0..1000 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[tokio::test]
    async fn rejects_bad_endpoint_and_zero_attempts() {
        let options = ConnectOptions::default();
        assert!(matches!(
            connect("not a uri", &options).await,
            Err(ControlError::InvalidEndpoint { .. })
        ));
        let zero = ConnectOptions {
            max_attempts: 0,
            ..options
        };
        assert!(matches!(
            connect("http://127.0.0.1:1", &zero).await,
            Err(ControlError::InvalidOptions { .. })
        ));
    }
}
