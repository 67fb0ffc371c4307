//! Compiles `proto/` with protox (no system `protoc`) into `OUT_DIR`, and writes the encoded
//! descriptor set next to the generated code so reflection serves exactly what was compiled.

use std::path::PathBuf;

use prost::Message;

const FILES: &[&str] = &[
    "detour/common/v1/common.proto",
    "detour/events/v1/events.proto",
    "detour/intake/v1/intake.proto",
    "detour/triage/v1/triage.proto",
    "detour/supplier/v1/supplier.proto",
    "detour/compensation/v1/compensation.proto",
    "detour/feedback/v1/feedback.proto",
    "detour/audit/v1/audit.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let fds = protox::compile(FILES, [&root])?;
    std::fs::write(out_dir.join("detour_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
