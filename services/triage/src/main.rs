//! `detour-triage`: triage as its own process (what `detour serve triage` also does).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    detour_server::process::main(&[detour_triage::MODULE], "triage").await
}
