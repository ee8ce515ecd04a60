//! The conformance suite on the in-process `local` backend, with parking
//! waits (the default) and with busy-polling ones.

use o3_transport::conformance::LocalBackend;

o3_transport::conformance_tests!(LocalBackend::new().expect("local backend"));

mod polling {
    use std::time::Duration;

    use o3_transport::conformance::{LocalBackend, suite_credentials};
    use o3_transport::{FabricOptions, PollMode};

    fn polling() -> LocalBackend {
        LocalBackend::with_options(FabricOptions {
            poll: PollMode::spinning(Duration::from_micros(200)),
            ..FabricOptions::new(suite_credentials())
        })
        .expect("local backend")
    }

    o3_transport::conformance_tests!(polling());
}
