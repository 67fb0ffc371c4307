//! Configuration: built-in defaults, then an optional TOML file, then `DETOUR_*` environment
//! variables, validated once at start-up with messages that name the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// How logs are written: text for people, JSON for collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Every key a file or `DETOUR_*` variable may set. Other `DETOUR_*` variables (the test
/// harness's, say) are not configuration and are left alone.
const KEYS: &[&str] = &[
    "grpc_addr",
    "metrics_addr",
    "database_url",
    "events_url",
    "migrate_on_start",
    "data_dir",
    "log_format",
    "log",
    "otlp_endpoint",
    "drain_timeout_secs",
    "request_timeout_secs",
    "concurrency_limit",
    "db_max_connections",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// gRPC, health, reflection and gRPC-Web.
    pub grpc_addr: SocketAddr,
    /// Prometheus `/metrics` and liveness `/healthz`.
    pub metrics_addr: SocketAddr,
    /// `postgres://…` or `sqlite://…`; `{service}` is replaced by the service's name, so one
    /// setting gives every service of a process its own SQLite file. Unset: a SQLite file per
    /// service under `data_dir`.
    pub database_url: Option<String>,
    /// `inproc://` (one process) or `redis://…` (Redis Streams).
    pub events_url: String,
    pub migrate_on_start: bool,
    /// Where the embedded default keeps its SQLite files.
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    /// An `EnvFilter` directive such as `info,sqlx=warn`.
    pub log: String,
    pub otlp_endpoint: Option<String>,
    /// How long in-flight calls may finish after SIGTERM before they are cut.
    pub drain_timeout_secs: u64,
    /// Deadline for one gRPC call.
    pub request_timeout_secs: u64,
    /// Calls served at once per process; the rest wait (backpressure rather than collapse).
    pub concurrency_limit: usize,
    /// Connections per service to its database.
    pub db_max_connections: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 50051)),
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 9090)),
            database_url: None,
            events_url: "inproc://".to_owned(),
            migrate_on_start: true,
            data_dir: PathBuf::from(".detour-data"),
            log_format: LogFormat::Text,
            log: "info,sqlx=warn".to_owned(),
            otlp_endpoint: None,
            drain_timeout_secs: 20,
            request_timeout_secs: 30,
            concurrency_limit: 1024,
            db_max_connections: 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[source] Box<figment::Error>),
    #[error("configuration: {setting}: {problem}")]
    Invalid { setting: &'static str, problem: String },
}

impl Settings {
    /// Defaults, then `file` (when given), then the environment (`DETOUR_GRPC_ADDR`, …).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(Figment::from(Serialized::defaults(Settings::default())), file)
    }

    /// As [`Settings::load`], starting from other defaults (`detour dev` binds to loopback).
    pub fn load_from(base: Figment, file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = base;
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid {
                    setting: "config file",
                    problem: format!("{} does not exist", path.display()),
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("DETOUR_").filter(|key| KEYS.iter().any(|k| key == *k)));
        let settings: Settings = figment.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
        {
            return Err(ConfigError::Invalid {
                setting: "DETOUR_DATABASE_URL",
                problem: format!("scheme `{}` is not supported: use postgres://… or sqlite://…", scheme(url)),
            });
        }
        if !(self.events_url.starts_with("inproc://") || self.events_url.starts_with("redis://")) {
            return Err(ConfigError::Invalid {
                setting: "DETOUR_EVENTS_URL",
                problem: format!(
                    "scheme `{}` is not supported: use inproc:// or redis://…",
                    scheme(&self.events_url)
                ),
            });
        }
        for (setting, value) in [
            ("DETOUR_DRAIN_TIMEOUT_SECS", self.drain_timeout_secs),
            ("DETOUR_REQUEST_TIMEOUT_SECS", self.request_timeout_secs),
        ] {
            if value == 0 || value > 3600 {
                return Err(ConfigError::Invalid {
                    setting,
                    problem: format!("{value} is not between 1 and 3600"),
                });
            }
        }
        if self.concurrency_limit == 0 {
            return Err(ConfigError::Invalid {
                setting: "DETOUR_CONCURRENCY_LIMIT",
                problem: "must be at least 1".into(),
            });
        }
        if self.db_max_connections == 0 {
            return Err(ConfigError::Invalid {
                setting: "DETOUR_DB_MAX_CONNECTIONS",
                problem: "must be at least 1".into(),
            });
        }
        if self.grpc_addr == self.metrics_addr && self.grpc_addr.port() != 0 {
            return Err(ConfigError::Invalid {
                setting: "DETOUR_METRICS_ADDR",
                problem: format!("is the same address as DETOUR_GRPC_ADDR ({})", self.grpc_addr),
            });
        }
        Ok(())
    }

    /// The database URL for one service.
    pub fn database_url_for(&self, service: &str) -> String {
        match &self.database_url {
            Some(url) => url.replace("{service}", service),
            None => format!("sqlite://{}/{service}.db", self.data_dir.display()),
        }
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

fn scheme(url: &str) -> &str {
    url.split_once(':').map(|(s, _)| s).unwrap_or(url)
}

#[cfg(test)]
// figment's Jail fixes the closure's error type; its size is not ours to choose.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    // figment::Jail serialises environment changes, so these tests do not race each other.
    #[test]
    fn environment_overrides_file_overrides_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("detour.toml", "grpc_addr = \"127.0.0.1:6000\"\nlog = \"debug\"\n")?;
            jail.set_env("DETOUR_LOG", "warn");
            let s = Settings::load(Some(Path::new("detour.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(s.grpc_addr.port(), 6000);
            assert_eq!(s.log, "warn");
            assert_eq!(s.events_url, "inproc://");
            Ok(())
        });
    }

    #[test]
    fn a_bad_setting_is_named() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("DETOUR_DATABASE_URL", "mysql://x");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("DETOUR_DATABASE_URL"), "{err}");
            assert!(err.contains("mysql"), "{err}");
            jail.set_env("DETOUR_DATABASE_URL", "sqlite://x.db");
            jail.set_env("DETOUR_GRPC_ADDR", "not an address");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("grpc_addr"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("detour.toml", "grpc_adr = \"127.0.0.1:6000\"\n")?;
            let err = Settings::load(Some(Path::new("detour.toml"))).unwrap_err().to_string();
            assert!(err.contains("grpc_adr"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn each_service_gets_its_own_sqlite_file_by_default() {
        let s = Settings { data_dir: PathBuf::from("/d"), ..Settings::default() };
        assert_eq!(s.database_url_for("intake"), "sqlite:///d/intake.db");
        let s = Settings { database_url: Some("postgres://h/detour".into()), ..Settings::default() };
        assert_eq!(s.database_url_for("triage"), "postgres://h/detour");
    }
}
