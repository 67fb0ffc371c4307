//! `detour-supplier`: supplier coordination as its own process (what `detour serve supplier`
//! also does).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    detour_server::process::main(&[detour_supplier::MODULE], "supplier").await
}
