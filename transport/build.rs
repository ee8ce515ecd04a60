//! Compiles the control-plane protobufs under `proto/` into Rust.
//!
//! `protox` parses the `.proto` files in pure Rust, so building o3 needs no
//! system `protoc`. Each service lives in its own file under
//! `proto/o3/<component>/v<major>/`; add new files to `PROTOS`.

use std::error::Error;

const PROTOS: &[&str] = &[
    "proto/o3/health/v1/health.proto",
    "proto/o3/memnode/v1/memnode.proto",
    "proto/o3/csa/v1/csa.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
