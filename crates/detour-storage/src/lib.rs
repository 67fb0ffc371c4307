//! Database access shared by every service: a connection chosen by URL, migrations that the
//! service binary runs itself, and the one place database errors are classified by SQLSTATE.
//!
//! Each service owns its data: on PostgreSQL it has its own schema (set as the connection's
//! `search_path`, so the same SQL text runs on both backends); on SQLite its own file.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub mod decode;
pub mod keyset;
pub mod statistics;
pub mod testing;

/// For [`impl_from_sqlx!`], which expands in service crates.
#[doc(hidden)]
pub use sqlx;

pub use statistics::Statistics;

/// Which store backs a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Self, StorageError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else {
            Err(StorageError::UnsupportedUrl { scheme: url.split(':').next().unwrap_or_default().to_owned() })
        }
    }
}

/// A connection pool on one of the two supported backends.
#[derive(Debug, Clone)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    pub fn backend(&self) -> Backend {
        match self {
            Self::Postgres(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// A round trip to the database, for health checks.
    pub async fn ping(&self) -> Result<(), StorageError> {
        match self {
            Self::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            Self::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        }
        .map_err(StorageError::from)
    }

    pub async fn close(&self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }
}

/// Where and how a service connects.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// `postgres://…` or `sqlite://path/file.db`.
    pub url: String,
    /// The service's own schema on PostgreSQL (ignored on SQLite, where the file is the boundary).
    pub schema: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl DbSettings {
    pub fn new(url: impl Into<String>, schema: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: schema.into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens a pool. Connecting is lazy on neither backend: a wrong URL or an unreachable server
/// fails here, at start-up, with the setting named.
pub async fn connect(settings: &DbSettings) -> Result<Db, StorageError> {
    match Backend::of_url(&settings.url)? {
        Backend::Postgres => {
            if !is_identifier(&settings.schema) {
                return Err(StorageError::InvalidSchema(settings.schema.clone()));
            }
            let options = PgConnectOptions::from_str(&settings.url)
                .map_err(|e| StorageError::InvalidUrl(e.to_string()))?
                .options([("search_path", settings.schema.as_str())]);
            let pool = PgPoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(settings.acquire_timeout)
                .connect_with(options)
                .await?;
            Ok(Db::Postgres(pool))
        }
        Backend::Sqlite => {
            let options = SqliteConnectOptions::from_str(&settings.url)
                .map_err(|e| StorageError::InvalidUrl(e.to_string()))?
                .create_if_missing(true)
                // WAL lets readers run beside the one writer; NORMAL sync is durable against a
                // process crash (what we promise), not against losing power.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(settings.max_connections.clamp(1, 8))
                .acquire_timeout(settings.acquire_timeout)
                .connect_with(options)
                .await?;
            Ok(Db::Sqlite(pool))
        }
    }
}

pub(crate) fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// One migration step, written once per backend because the DDL differs (types, identity
/// columns); the query text the services run is the same on both.
#[derive(Debug, Clone, Copy)]
pub struct MigrationStep {
    pub version: i64,
    pub description: &'static str,
    pub postgres: &'static str,
    pub sqlite: &'static str,
}

/// Tables every service has whatever it does: the transactional outbox and the record of
/// events already consumed. Versions below 100 belong here; a service's own start at 100.
pub const PLATFORM_MIGRATIONS: &[MigrationStep] = &[
    MigrationStep {
        version: 1,
        description: "outbox and processed events",
        postgres: include_str!("../migrations/postgres/0001_outbox.sql"),
        sqlite: include_str!("../migrations/sqlite/0001_outbox.sql"),
    },
    MigrationStep {
        version: 2,
        description: "append-only audit log",
        postgres: include_str!("../migrations/postgres/0002_audit.sql"),
        sqlite: include_str!("../migrations/sqlite/0002_audit.sql"),
    },
    MigrationStep {
        version: 3,
        description: "outbox rows name their case",
        postgres: include_str!("../migrations/postgres/0003_outbox_case.sql"),
        sqlite: include_str!("../migrations/sqlite/0003_outbox_case.sql"),
    },
];

/// Applies the platform migrations and then the service's own, in version order, in the
/// service's schema. Safe to run concurrently from several replicas (the migrator locks).
pub async fn migrate(db: &Db, schema: &str, service_steps: &[MigrationStep]) -> Result<(), StorageError> {
    let steps = PLATFORM_MIGRATIONS.iter().chain(service_steps.iter());
    let backend = db.backend();
    let mut migrations: Vec<Migration> = steps
        .map(|s| {
            let sql = match backend {
                Backend::Postgres => s.postgres,
                Backend::Sqlite => s.sqlite,
            };
            Migration::new(
                s.version,
                Cow::Borrowed(s.description),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    migrations.sort();
    let mut migrator = Migrator::with_migrations(migrations);
    match db {
        Db::Postgres(pool) => {
            if !is_identifier(schema) {
                return Err(StorageError::InvalidSchema(schema.to_owned()));
            }
            migrator.create_schema(schema.to_owned());
            migrator.run(pool).await?;
        }
        Db::Sqlite(pool) => {
            migrator.set_locking(false);
            migrator.run(pool).await?;
        }
    }
    Ok(())
}

/// What a database failure means to the caller, decided by SQLSTATE (PostgreSQL) or the
/// extended result code (SQLite) and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFailure {
    UniqueViolation,
    ForeignKeyViolation,
    CheckViolation,
    /// Serialization failure or deadlock: the transaction may be retried.
    Conflict,
    /// The database could not be reached or is shutting down.
    Unavailable,
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("unsupported database URL scheme `{scheme}`: use postgres://… or sqlite://…")]
    UnsupportedUrl { scheme: String },
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error("invalid schema name `{0}`: lower-case letters, digits and underscores only")]
    InvalidSchema(String),
    #[error("database error ({failure:?}): {source}")]
    Database {
        failure: DbFailure,
        #[source]
        source: sqlx::Error,
    },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StorageError {
    pub fn failure(&self) -> Option<DbFailure> {
        match self {
            Self::Database { failure, .. } => Some(*failure),
            _ => None,
        }
    }

    pub fn is_unique_violation(&self) -> bool {
        self.failure() == Some(DbFailure::UniqueViolation)
    }

    /// What a caller is told: a database that cannot be reached is worth retrying, anything
    /// else (corrupt rows, bugs, constraint violations nobody handled) is ours.
    pub fn error_code(&self) -> detour_errors::ErrorCode {
        match self.failure() {
            Some(DbFailure::Unavailable) => detour_errors::ErrorCode::Unavailable,
            _ => detour_errors::ErrorCode::Internal,
        }
    }
}

/// `From<sqlx::Error>` for a service error with a `Storage(StorageError)` variant, so that
/// repository code can use `?` on driver results and every failure is classified on the way.
#[macro_export]
macro_rules! impl_from_sqlx {
    ($error:ty) => {
        impl ::core::convert::From<$crate::sqlx::Error> for $error {
            fn from(e: $crate::sqlx::Error) -> Self {
                Self::Storage($crate::StorageError::from(e))
            }
        }
    };
}

impl From<sqlx::Error> for StorageError {
    fn from(source: sqlx::Error) -> Self {
        Self::Database { failure: classify(&source), source }
    }
}

/// Maps a driver error to what it means. PostgreSQL reports SQLSTATE; SQLite reports extended
/// result codes as decimal strings.
pub fn classify(err: &sqlx::Error) -> DbFailure {
    match err {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("23505") | Some("2067") | Some("1555") => DbFailure::UniqueViolation,
            Some("23503") | Some("787") => DbFailure::ForeignKeyViolation,
            Some("23514") | Some("275") | Some("1299") => DbFailure::CheckViolation,
            Some("40001") | Some("40P01") | Some("5") | Some("517") | Some("6") => DbFailure::Conflict,
            Some(code) if code.starts_with("08") || code == "57P01" || code == "57P03" => {
                DbFailure::Unavailable
            }
            _ => DbFailure::Other,
        },
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            DbFailure::Unavailable
        }
        _ => DbFailure::Other,
    }
}

/// Microseconds since the Unix epoch: the one representation of an instant in every table, so
/// the same SQL orders and compares times on both backends.
pub type Micros = i64;
