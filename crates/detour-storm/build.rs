//! Compiles the echo ceiling's own contract with protox (no system `protoc`), as detour-proto
//! does for the suite's; it stays out of `proto/` because it is no part of the suite.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(["detour/bench/v1/echo.proto"], [&root])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
