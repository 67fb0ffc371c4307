//! `detour-intake`: intake as its own process (what `detour serve intake` also does).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    detour_server::process::main(&[detour_intake::MODULE], "intake").await
}
