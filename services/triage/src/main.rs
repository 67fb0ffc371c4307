//! `detour-triage`: triage as its own process (what `detour serve triage` also does).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let file = std::env::var_os("DETOUR_CONFIG_FILE").map(std::path::PathBuf::from);
    match detour_server::Settings::load(file.as_deref()) {
        Ok(settings) => {
            detour_server::process::serve_until_signal(settings, &[detour_triage::MODULE], "triage").await
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
