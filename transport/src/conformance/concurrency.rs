//! Conformance case for requests served concurrently on one connection.

use super::{Backend, open};
use crate::error::{Error, Result};
use crate::host::HostCommand;

/// Two requests on one connection where the first one's handler waits for
/// the second to arrive: both are answered only if the owner serves them
/// concurrently. A serialising owner fails the first after a bounded wait
/// instead of hanging the test.
pub fn concurrent_requests(backend: &dyn Backend) -> Result<()> {
    let s = open(backend)?;
    let patience = backend.options().op_timeout.as_millis() as u64 * 3 / 5;
    for round in 0..3u64 {
        let key = crate::registry::random_key() ^ round;
        let encode = |command: &HostCommand| -> Result<Vec<u8>> {
            let mut request = vec![crate::host::COMMAND];
            serde_json::to_writer(&mut request, command)
                .map_err(|e| Error::InvalidArgument(format!("encode: {e}")))?;
            Ok(request)
        };
        let waiting = encode(&HostCommand::AwaitMeeting {
            key,
            millis: patience,
        })?;
        let arriving = encode(&HostCommand::Meet { key })?;
        let first = s.conn.start_call(&waiting)?;
        let second = s.conn.start_call(&arriving)?;
        let (first, second) = (first.wait(), second.wait());
        assert!(second.is_ok(), "the arriving request: {second:?}");
        assert!(
            first.is_ok(),
            "the waiting request (round {round}): {first:?}"
        );
    }
    Ok(())
}
