//! gRPC connections for the generator: a few HTTP/2 connections shared round-robin by every
//! request of a phase, the same for intake and the echo ceiling so neither gets a better pipe.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::error::StormError;

/// Sends `authorization: Bearer <token>` with every call (nothing without a token).
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: Option<&str>) -> Result<Self, StormError> {
        match token.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(Self(None)),
            Some(t) => format!("Bearer {t}")
                .parse()
                .map(|v| Self(Some(v)))
                .map_err(|_| StormError::Config("the token is not a valid header value".into())),
        }
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Bearer(<token>)" } else { "Bearer(none)" })
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

/// `connections` channels to `url`, each its own HTTP/2 connection, opened now so connection
/// set-up is not measured as request latency.
pub async fn connect_pool(
    url: &str,
    connections: usize,
    request_timeout: Duration,
    bearer: &Bearer,
) -> Result<Vec<Authed>, StormError> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| StormError::Config(format!("bad server address {url}: {e}")))?
        .timeout(request_timeout)
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30));
    let mut pool = Vec::with_capacity(connections.max(1));
    for _ in 0..connections.max(1) {
        let channel =
            endpoint.connect().await.map_err(|source| StormError::Connect { url: url.to_owned(), source })?;
        pool.push(InterceptedService::new(channel, bearer.clone()));
    }
    Ok(pool)
}

/// The pool member for request `seq`.
pub fn pick<T: Clone>(pool: &[T], seq: u64) -> Option<T> {
    if pool.is_empty() {
        return None;
    }
    pool.get((seq % pool.len() as u64) as usize).cloned()
}
