//! A whole process: settings, telemetry, listeners, and the host, until SIGTERM.

use std::process::ExitCode;

use tokio::net::TcpListener;

use detour_telemetry::TelemetrySettings;

use crate::{ServiceModule, Settings, host};

/// Connects the event transport named by the settings and serves `modules` until `shutdown`.
pub async fn run(
    settings: &Settings,
    modules: &[ServiceModule],
    grpc_listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), host::HostError> {
    let bus = detour_events::bus::connect_bus(&settings.events_url)
        .map_err(|e| host::HostError::Bus(e.to_string()))?;
    host::serve(settings, modules, bus, grpc_listener, metrics_listener, shutdown).await
}

pub fn telemetry_settings(settings: &Settings, service_name: &str) -> TelemetrySettings {
    TelemetrySettings {
        service_name: service_name.to_owned(),
        log_format: settings.log_format,
        log_filter: settings.log.clone(),
        otlp_endpoint: settings.otlp_endpoint.clone(),
    }
}

/// The whole of a service's thin binary: settings from the defaults, the file named by
/// `DETOUR_CONFIG_FILE` and the environment, then [`serve_until_signal`].
pub async fn main(modules: &[ServiceModule], process_name: &str) -> ExitCode {
    let file = std::env::var_os("DETOUR_CONFIG_FILE").map(std::path::PathBuf::from);
    match Settings::load(file.as_deref()) {
        Ok(settings) => serve_until_signal(settings, modules, process_name).await,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The body of a service's thin binary and of `detour serve <service>`: binds the configured
/// addresses and serves until SIGTERM or Ctrl-C.
pub async fn serve_until_signal(
    settings: Settings,
    modules: &[ServiceModule],
    process_name: &str,
) -> ExitCode {
    let telemetry = match detour_telemetry::init(&telemetry_settings(&settings, process_name)) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = async {
        let grpc = TcpListener::bind(settings.grpc_addr)
            .await
            .map_err(|e| format!("DETOUR_GRPC_ADDR {}: {e}", settings.grpc_addr))?;
        let metrics = TcpListener::bind(settings.metrics_addr)
            .await
            .map_err(|e| format!("DETOUR_METRICS_ADDR {}: {e}", settings.metrics_addr))?;
        tracing::info!(grpc = %settings.grpc_addr, metrics = %settings.metrics_addr, "listening");
        run(&settings, modules, grpc, Some(metrics), host::shutdown_signal()).await.map_err(|e| e.to_string())
    }
    .await;
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "stopped with an error");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    if let Err(e) = telemetry.shutdown() {
        eprintln!("warning: telemetry did not flush: {e}");
    }
    code
}
