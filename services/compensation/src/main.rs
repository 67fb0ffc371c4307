//! `detour-compensation`: compensation as its own process (what `detour serve compensation`
//! also does).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    detour_server::process::main(&[detour_compensation::MODULE], "compensation").await
}
