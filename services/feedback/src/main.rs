//! `detour-feedback`: feedback as its own process (what `detour serve feedback` also does).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    detour_server::process::main(&[detour_feedback::MODULE], "feedback").await
}
