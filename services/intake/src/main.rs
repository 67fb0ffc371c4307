//! `detour-intake`: intake as its own process (what `detour serve intake` also does).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let file = std::env::var_os("DETOUR_CONFIG_FILE").map(std::path::PathBuf::from);
    match detour_server::Settings::load(file.as_deref()) {
        Ok(settings) => {
            detour_server::process::serve_until_signal(settings, &[detour_intake::MODULE], "intake").await
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
