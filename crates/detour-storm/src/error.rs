//! Why a storm run stopped.

#[derive(Debug, thiserror::Error)]
pub enum StormError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot reach {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{what}: {status}")]
    Rpc {
        what: &'static str,
        #[source]
        status: Box<tonic::Status>,
    },
    #[error("PostgreSQL ceiling: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("latency histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("report: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Scenario(String),
}

impl StormError {
    pub(crate) fn rpc(what: &'static str, status: tonic::Status) -> Self {
        Self::Rpc { what, status: Box::new(status) }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }
}
