//! The conformance suite on the in-process `local` backend.

use o3_transport::conformance::LocalBackend;

o3_transport::conformance_tests!(LocalBackend::new().expect("local backend"));
