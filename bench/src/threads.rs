//! Joining a phase's worker threads.

use std::thread::ScopedJoinHandle;

use crate::error::{BenchError, Result};

/// The error for a worker thread that panicked.
pub fn panicked() -> BenchError {
    BenchError::InvalidArgument("a worker thread panicked".into())
}

/// Join every thread (none is left running), keeping the results in order,
/// or the first error (a panic counts as one).
pub fn join_all<T>(handles: Vec<ScopedJoinHandle<'_, Result<T>>>) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(handles.len());
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => first_err = first_err.or(Some(panicked())),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
