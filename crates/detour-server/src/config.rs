//! Configuration: built-in defaults, then an optional TOML file, then `DETOUR_*` environment
//! variables, validated once at start-up with messages that name the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use detour_storage::Backend;
pub use detour_telemetry::LogFormat;

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
    "queue_wait_ms",
    "max_request_bytes",
    "max_concurrent_streams",
    "http2_keepalive_interval_secs",
    "http2_keepalive_timeout_secs",
    "db_max_connections",
    "auth_issuers",
    "auth_dev_issuer",
    "vault_keks",
    "vault_primary_kek",
    "tenant",
    "notify",
    "intake_admission_capacity",
    "intake_rate_limit_per_second",
    "intake_rate_limit_burst",
    "intake_group_commit_max_batch",
    "intake_group_commit_in_flight",
    "intake_notify_concurrency",
    "intake_notify_attempts_per_channel",
    "intake_notify_first_retry_secs",
    "intake_notify_handoff",
];

/// The largest request message a generated tonic server decodes unless the service raises it
/// (`max_decoding_message_size`, 4 MiB); a larger `max_request_bytes` could never take effect.
pub const MAX_REQUEST_BYTES_CEILING: usize = 4 * 1024 * 1024;
/// The smallest `max_request_bytes` accepted: below it health checks and reflection stop working.
const MAX_REQUEST_BYTES_FLOOR: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// OpenID Connect issuers whose access tokens are accepted (issuer, audience, jwks_url,
    /// roles_claim). In a TOML file an array of tables; in the environment an inline array,
    /// `DETOUR_AUTH_ISSUERS='[{issuer="https://id.example",audience="detour",jwks_url="…"}]'`.
    pub auth_issuers: Vec<detour_auth::IssuerSettings>,
    /// Trust the local development issuer (its key lives in `data_dir`; `detour token` mints
    /// tokens with it). Refused together with a PostgreSQL database, so it cannot reach
    /// production by accident.
    pub auth_dev_issuer: bool,
    /// Key-encryption keys that wrap the data keys sealing travelers' personal data: in a TOML
    /// file an array of tables, in the environment an inline array,
    /// `DETOUR_VAULT_KEKS='[{id="kek-2026-11",key="<base64 of 32 bytes>"}]'` (`detour kek`
    /// prints a fresh one). To rotate without downtime, roll out three times: add the new KEK
    /// (every replica can then unwrap with either); make it primary (replicas rewrap the stored
    /// data keys at start-up); drop the old one. Unset with a SQLite database: a development KEK
    /// kept in `data_dir`; unset with PostgreSQL: start-up refuses.
    pub vault_keks: Vec<detour_vault::KekSettings>,
    /// The id of the KEK that wraps new data keys; may stay empty when only one is listed.
    pub vault_primary_kek: String,
    /// The travel company this deployment serves; its own data key seals its travelers' data.
    pub tenant: String,
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
    /// Calls served at once per process (health checks aside). A call over the limit waits up
    /// to `queue_wait_ms` for a slot, then is refused with `UNAVAILABLE` (load shedding: a
    /// crisis spike gets quick, retryable refusals instead of a queue that only grows).
    pub concurrency_limit: usize,
    /// How long a call may wait for a slot under `concurrency_limit` before it is shed; 0 sheds
    /// as soon as the limit is reached. Less than the request timeout.
    pub queue_wait_ms: u64,
    /// The largest request message accepted, in bytes as sent (the length in the gRPC frame
    /// prefix), on every route including gRPC-Web; larger ones are refused with
    /// `RESOURCE_EXHAUSTED` as soon as the prefix arrives. At most 4 MiB (the generated servers'
    /// own decoding limit).
    pub max_request_bytes: usize,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`: calls one connection may have open at once;
    /// clients queue the rest on their side.
    pub max_concurrent_streams: u32,
    /// HTTP/2 PING sent after this long without a frame, so dead peers and silently dropped
    /// connections are found and idle connections survive middleboxes' idle timeouts.
    pub http2_keepalive_interval_secs: u64,
    /// A connection whose PING is not acknowledged within this is closed.
    pub http2_keepalive_timeout_secs: u64,
    /// Connections per service to its database.
    pub db_max_connections: u32,
    /// Where travelers' notifications go: `smtp_url` (e-mail), `http_url` and `http_token` (the
    /// SMS, push and WeChat provider). In the environment an inline table,
    /// `DETOUR_NOTIFY='{smtp_url="smtp://relay:25",http_url="https://sms.example"}'`. A channel
    /// without a sender is skipped for the traveler's next one.
    pub notify: detour_notify::NotifySettings,
    /// Contacts intake works on at once before shedding by priority: low-priority contacts are
    /// refused first (`RESOURCE_EXHAUSTED` with a retry hint), safety contacts never.
    pub intake_admission_capacity: usize,
    /// Contacts one caller (a channel adapter, a partner feed, an agent) may open per second,
    /// shared by every intake replica through Redis when `events_url` is Redis.
    pub intake_rate_limit_per_second: u32,
    /// How many contacts a caller may send at once above its per-second rate.
    pub intake_rate_limit_burst: u32,
    /// Most contacts intake writes in one transaction (group commit); 1 writes each alone.
    /// Batches are never waited for: a batch is what queued while the previous ones committed.
    pub intake_group_commit_max_batch: usize,
    /// OpenCase transactions intake writes at once. Fewer make larger batches (fewer round
    /// trips and commits a contact) at the price of waiting for the one being written.
    pub intake_group_commit_in_flight: usize,
    /// Notification sends intake's dispatcher keeps in flight at once: what the SMS, push and
    /// e-mail providers take from one replica.
    pub intake_notify_concurrency: usize,
    /// Sends on one channel that fail for a passing reason (a timeout, the provider's 5xx)
    /// before the traveler's next channel is tried. A refusal moves on at once.
    pub intake_notify_attempts_per_channel: u32,
    /// Pause before a failed send is retried on the same channel, doubled for each further
    /// attempt.
    pub intake_notify_first_retry_secs: u64,
    /// Notifications a writer (the fan-out, OpenCase) may hand its own replica's dispatcher in
    /// memory and not yet taken; beyond that, and with 0, they are left to the claim on the
    /// table, which every replica runs.
    pub intake_notify_handoff: usize,
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
            queue_wait_ms: 100,
            max_request_bytes: MAX_REQUEST_BYTES_CEILING,
            max_concurrent_streams: 200,
            http2_keepalive_interval_secs: 30,
            http2_keepalive_timeout_secs: 10,
            db_max_connections: 10,
            auth_issuers: Vec::new(),
            auth_dev_issuer: false,
            vault_keks: Vec::new(),
            vault_primary_kek: String::new(),
            tenant: "default".to_owned(),
            notify: detour_notify::NotifySettings::default(),
            intake_admission_capacity: 256,
            intake_rate_limit_per_second: 2_000,
            intake_rate_limit_burst: 4_000,
            intake_group_commit_max_batch: 128,
            intake_group_commit_in_flight: 2,
            intake_notify_concurrency: 64,
            intake_notify_attempts_per_channel: 3,
            intake_notify_first_retry_secs: 10,
            intake_notify_handoff: 2_000,
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
            ("DETOUR_INTAKE_ADMISSION_CAPACITY", self.intake_admission_capacity as u64),
            ("DETOUR_INTAKE_RATE_LIMIT_PER_SECOND", u64::from(self.intake_rate_limit_per_second)),
            ("DETOUR_INTAKE_RATE_LIMIT_BURST", u64::from(self.intake_rate_limit_burst)),
        ] {
            if value == 0 || value > 1_000_000 {
                return Err(ConfigError::Invalid {
                    setting,
                    problem: format!("{value} is not between 1 and 1000000"),
                });
            }
        }
        if !(1..=1_000).contains(&self.intake_group_commit_max_batch) {
            return Err(ConfigError::Invalid {
                setting: "DETOUR_INTAKE_GROUP_COMMIT_MAX_BATCH",
                problem: format!("{} is not between 1 and 1000", self.intake_group_commit_max_batch),
            });
        }
        for (setting, value, range) in [
            ("DETOUR_INTAKE_GROUP_COMMIT_IN_FLIGHT", self.intake_group_commit_in_flight as u64, 1..=64),
            ("DETOUR_INTAKE_NOTIFY_CONCURRENCY", self.intake_notify_concurrency as u64, 1..=1_024),
            (
                "DETOUR_INTAKE_NOTIFY_ATTEMPTS_PER_CHANNEL",
                u64::from(self.intake_notify_attempts_per_channel),
                1..=20,
            ),
            ("DETOUR_INTAKE_NOTIFY_FIRST_RETRY_SECS", self.intake_notify_first_retry_secs, 1..=3_600),
            ("DETOUR_INTAKE_NOTIFY_HANDOFF", self.intake_notify_handoff as u64, 0..=100_000),
        ] {
            if !range.contains(&value) {
                return Err(ConfigError::Invalid {
                    setting,
                    problem: format!("{value} is not between {} and {}", range.start(), range.end()),
                });
            }
        }
        if let Err(e) = detour_notify::Notifiers::from_settings(&self.notify) {
            return Err(ConfigError::Invalid { setting: "DETOUR_NOTIFY", problem: e.to_string() });
        }
        for (setting, value) in [
            ("DETOUR_DRAIN_TIMEOUT_SECS", self.drain_timeout_secs),
            ("DETOUR_REQUEST_TIMEOUT_SECS", self.request_timeout_secs),
            ("DETOUR_HTTP2_KEEPALIVE_INTERVAL_SECS", self.http2_keepalive_interval_secs),
            ("DETOUR_HTTP2_KEEPALIVE_TIMEOUT_SECS", self.http2_keepalive_timeout_secs),
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
        if self.queue_wait_ms >= self.request_timeout_secs.saturating_mul(1000) {
            return Err(ConfigError::Invalid {
                setting: "DETOUR_QUEUE_WAIT_MS",
                problem: format!(
                    "{} ms is not less than DETOUR_REQUEST_TIMEOUT_SECS ({} s)",
                    self.queue_wait_ms, self.request_timeout_secs
                ),
            });
        }
        if !(MAX_REQUEST_BYTES_FLOOR..=MAX_REQUEST_BYTES_CEILING).contains(&self.max_request_bytes) {
            return Err(ConfigError::Invalid {
                setting: "DETOUR_MAX_REQUEST_BYTES",
                problem: format!(
                    "{} is not between {MAX_REQUEST_BYTES_FLOOR} and {MAX_REQUEST_BYTES_CEILING} (4 MiB, \
                     the largest message the generated servers decode)",
                    self.max_request_bytes
                ),
            });
        }
        if self.max_concurrent_streams == 0 {
            return Err(ConfigError::Invalid {
                setting: "DETOUR_MAX_CONCURRENT_STREAMS",
                problem: "must be at least 1".into(),
            });
        }
        if self.db_max_connections == 0 {
            return Err(ConfigError::Invalid {
                setting: "DETOUR_DB_MAX_CONNECTIONS",
                problem: "must be at least 1".into(),
            });
        }
        if self.tenant.is_empty()
            || self.tenant.len() > 64
            || !self.tenant.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::Invalid {
                setting: "DETOUR_TENANT",
                problem: format!("`{}` is not 1 to 64 of a-z, A-Z, 0-9, - and _", self.tenant),
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

    /// What serving needs beyond [`Settings::validate`]: someone to trust tokens from, and never
    /// the development issuer beside a production database. Not part of `validate`, so that
    /// `detour migrate` runs without an issuer.
    pub fn validate_auth(&self) -> Result<(), ConfigError> {
        if self.auth_dev_issuer && self.uses_postgres() {
            return Err(ConfigError::Invalid {
                setting: "DETOUR_AUTH_DEV_ISSUER",
                problem: "the development issuer cannot be enabled with a PostgreSQL database \
                          (DETOUR_DATABASE_URL); configure DETOUR_AUTH_ISSUERS instead"
                    .into(),
            });
        }
        if !self.auth_dev_issuer && self.auth_issuers.is_empty() {
            return Err(ConfigError::Invalid {
                setting: "DETOUR_AUTH_ISSUERS",
                problem: "no token issuer is configured, so every call would be refused; set \
                          DETOUR_AUTH_ISSUERS (or DETOUR_AUTH_DEV_ISSUER=true for local development)"
                    .into(),
            });
        }
        Ok(())
    }

    /// The key ring protecting personal data (see `vault_keks`).
    pub fn personal_data_keys(&self) -> Result<detour_vault::KeyRing, ConfigError> {
        if self.vault_keks.is_empty() {
            if self.uses_postgres() {
                return Err(ConfigError::Invalid {
                    setting: "DETOUR_VAULT_KEKS",
                    problem: "no key-encryption key is configured for personal data; with a PostgreSQL \
                              database one is required (`detour kek` prints a fresh one)"
                        .into(),
                });
            }
            return detour_vault::KeyRing::load_or_create_dev(&self.data_dir).map_err(|e| {
                ConfigError::Invalid {
                    setting: "DETOUR_DATA_DIR",
                    problem: format!("development key-encryption key: {e}"),
                }
            });
        }
        let primary = match (self.vault_primary_kek.as_str(), self.vault_keks.as_slice()) {
            ("", [only]) => only.id.clone(),
            (primary, _) => primary.to_owned(),
        };
        let vault = detour_vault::VaultSettings { keks: self.vault_keks.clone(), primary };
        vault.key_ring().map_err(|e| ConfigError::Invalid {
            setting: if e.setting == "primary" { "DETOUR_VAULT_PRIMARY_KEK" } else { "DETOUR_VAULT_KEKS" },
            problem: e.to_string(),
        })
    }

    fn uses_postgres(&self) -> bool {
        self.database_url.as_deref().and_then(|u| Backend::of_url(u).ok()) == Some(Backend::Postgres)
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

    pub fn queue_wait(&self) -> Duration {
        Duration::from_millis(self.queue_wait_ms)
    }

    pub fn http2_keepalive_interval(&self) -> Duration {
        Duration::from_secs(self.http2_keepalive_interval_secs)
    }

    pub fn http2_keepalive_timeout(&self) -> Duration {
        Duration::from_secs(self.http2_keepalive_timeout_secs)
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
            jail.set_env("DETOUR_AUTH_DEV_ISSUER", "true");
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
            jail.set_env("DETOUR_AUTH_DEV_ISSUER", "true");
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
    fn the_server_limits_are_settings() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("DETOUR_AUTH_DEV_ISSUER", "true");
            jail.set_env("DETOUR_MAX_REQUEST_BYTES", "1048576");
            jail.set_env("DETOUR_MAX_CONCURRENT_STREAMS", "50");
            jail.set_env("DETOUR_QUEUE_WAIT_MS", "0");
            jail.set_env("DETOUR_HTTP2_KEEPALIVE_INTERVAL_SECS", "60");
            jail.set_env("DETOUR_HTTP2_KEEPALIVE_TIMEOUT_SECS", "5");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.max_request_bytes, 1 << 20);
            assert_eq!(s.max_concurrent_streams, 50);
            assert_eq!(s.queue_wait(), Duration::ZERO);
            assert_eq!(s.http2_keepalive_interval(), Duration::from_secs(60));
            assert_eq!(s.http2_keepalive_timeout(), Duration::from_secs(5));
            let defaults = Settings { auth_dev_issuer: true, ..Settings::default() };
            assert_eq!(defaults.max_request_bytes, 4 * 1024 * 1024);
            defaults.validate().map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    #[test]
    fn a_bad_server_limit_is_named() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("DETOUR_AUTH_DEV_ISSUER", "true");
            for (setting, value, problem) in [
                ("DETOUR_MAX_REQUEST_BYTES", "4194305", "4194304"),
                ("DETOUR_MAX_REQUEST_BYTES", "100", "1024"),
                ("DETOUR_MAX_REQUEST_BYTES", "-1", "invalid value"),
                ("DETOUR_MAX_CONCURRENT_STREAMS", "0", "at least 1"),
                ("DETOUR_QUEUE_WAIT_MS", "30000", "DETOUR_REQUEST_TIMEOUT_SECS"),
                ("DETOUR_HTTP2_KEEPALIVE_INTERVAL_SECS", "0", "between 1 and 3600"),
                ("DETOUR_HTTP2_KEEPALIVE_TIMEOUT_SECS", "7200", "between 1 and 3600"),
            ] {
                jail.clear_env();
                jail.set_env("DETOUR_AUTH_DEV_ISSUER", "true");
                jail.set_env(setting, value);
                let err = Settings::load(None).unwrap_err().to_string();
                // figment names a value it cannot parse by its key, in lower case.
                assert!(err.to_uppercase().contains(setting.trim_start_matches("DETOUR_")), "{err}");
                assert!(err.contains(problem), "{setting}={value}: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn the_dispatcher_and_group_commit_are_tuned_by_settings_and_a_bad_value_is_named() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("DETOUR_AUTH_DEV_ISSUER", "true");
            jail.set_env("DETOUR_INTAKE_GROUP_COMMIT_IN_FLIGHT", "3");
            jail.set_env("DETOUR_INTAKE_NOTIFY_CONCURRENCY", "8");
            jail.set_env("DETOUR_INTAKE_NOTIFY_ATTEMPTS_PER_CHANNEL", "5");
            jail.set_env("DETOUR_INTAKE_NOTIFY_FIRST_RETRY_SECS", "30");
            jail.set_env("DETOUR_INTAKE_NOTIFY_HANDOFF", "0");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                (
                    s.intake_notify_concurrency,
                    s.intake_notify_attempts_per_channel,
                    s.intake_notify_first_retry_secs,
                    s.intake_notify_handoff
                ),
                (8, 5, 30, 0)
            );
            assert_eq!(s.intake_group_commit_in_flight, 3);
            for (setting, value, problem) in [
                ("DETOUR_INTAKE_GROUP_COMMIT_IN_FLIGHT", "0", "between 1 and 64"),
                ("DETOUR_INTAKE_NOTIFY_CONCURRENCY", "0", "between 1 and 1024"),
                ("DETOUR_INTAKE_NOTIFY_ATTEMPTS_PER_CHANNEL", "21", "between 1 and 20"),
                ("DETOUR_INTAKE_NOTIFY_FIRST_RETRY_SECS", "0", "between 1 and 3600"),
                ("DETOUR_INTAKE_NOTIFY_HANDOFF", "100001", "between 0 and 100000"),
            ] {
                jail.clear_env();
                jail.set_env("DETOUR_AUTH_DEV_ISSUER", "true");
                jail.set_env(setting, value);
                let err = Settings::load(None).unwrap_err().to_string();
                assert!(err.contains(setting) && err.contains(problem), "{setting}={value}: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("DETOUR_AUTH_DEV_ISSUER", "true");
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

    #[test]
    fn the_dev_issuer_is_refused_with_a_production_database() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("DETOUR_AUTH_DEV_ISSUER", "true");
            jail.set_env("DETOUR_DATABASE_URL", "postgres://db.internal/detour");
            let err = Settings::load(None).and_then(|s| s.validate_auth()).unwrap_err().to_string();
            assert!(err.contains("DETOUR_AUTH_DEV_ISSUER"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn without_any_issuer_start_up_is_refused() {
        figment::Jail::expect_with(|_jail| {
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            let err = settings.validate_auth().unwrap_err().to_string();
            assert!(err.contains("DETOUR_AUTH_ISSUERS"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn issuers_come_from_the_environment_as_an_inline_array() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "DETOUR_AUTH_ISSUERS",
                r#"[{issuer="https://id.example",audience="detour",jwks_url="https://id.example/jwks"}]"#,
            );
            jail.set_env("DETOUR_DATABASE_URL", "postgres://db.internal/detour");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.auth_issuers.len(), 1);
            assert_eq!(s.auth_issuers[0].audience, "detour");
            assert_eq!(s.auth_issuers[0].roles_claim, "roles");
            Ok(())
        });
    }
}
