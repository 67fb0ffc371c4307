//! A notification provider for the suite to deliver to during a storm: it implements the HTTP
//! contract of the suite's notifier (`POST /v1/messages`, JSON
//! `{"channel","to","language","subject","body"}`, an `Idempotency-Key` header, answered with
//! `{"id": "<uuid>"}`), accepts everything at once and counts what arrived, so the benchmark
//! measures the suite's fan-out rather than a provider. The suite is pointed at it with
//! `DETOUR_NOTIFY='{http_url="http://<addr>"}'` (SMS and push; e-mail goes to an SMTP relay,
//! which the benchmark does not provide).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::StormError;
use crate::load::lock;

#[derive(Debug, Deserialize)]
struct Message {
    channel: String,
    to: String,
    // subject and body are the suite's business; the sink only counts.
    #[serde(default)]
    language: String,
}

#[derive(Debug, Default)]
struct Counts {
    accepted: u64,
    replayed: u64,
    refused: u64,
    by_channel: BTreeMap<String, u64>,
    by_language: BTreeMap<String, u64>,
    ids: HashMap<String, String>,
    first: Option<(Instant, SystemTime)>,
    last: Option<(Instant, SystemTime)>,
}

/// What the sink has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SinkSnapshot {
    /// Distinct messages (a repeated idempotency key counts once).
    pub accepted: u64,
    /// Posts that repeated an idempotency key already accepted: the suite retried.
    pub replayed: u64,
    /// Posts that were not a message (bad JSON, no channel or recipient).
    pub refused: u64,
    pub by_channel: BTreeMap<String, u64>,
    pub by_language: BTreeMap<String, u64>,
    /// Wall-clock time of the first and last distinct message, RFC 3339.
    pub first_at: Option<String>,
    pub last_at: Option<String>,
    #[serde(skip)]
    pub first_instant: Option<Instant>,
    #[serde(skip)]
    pub last_instant: Option<Instant>,
}

type Shared = Arc<Mutex<Counts>>;

/// The running sink.
#[derive(Debug)]
pub struct Sink {
    addr: SocketAddr,
    counts: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

/// Serves the provider contract on `listener` until [`Sink::stop`].
pub fn serve(listener: TcpListener) -> Result<Sink, StormError> {
    serve_with_jwks(listener, None)
}

/// As [`serve`], also publishing `jwks` (a JSON Web Key Set) at `/jwks.json`: a suite on
/// PostgreSQL refuses the development issuer itself, and trusts it for a benchmark run only as
/// an ordinary issuer whose keys it fetches (`DETOUR_AUTH_ISSUERS`), as the end-to-end tests
/// do.
pub fn serve_with_jwks(listener: TcpListener, jwks: Option<String>) -> Result<Sink, StormError> {
    let addr = listener.local_addr().map_err(|e| StormError::io("notification sink address", e))?;
    let counts: Shared = Arc::default();
    let mut app = Router::new()
        .route("/v1/messages", post(accept))
        .route("/v1/stats", get(stats))
        .with_state(counts.clone());
    if let Some(jwks) = jwks {
        let jwks: Arc<str> = jwks.into();
        app = app.route(
            "/jwks.json",
            get(move || {
                let jwks = jwks.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], jwks.to_string()) }
            }),
        );
    }
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    Ok(Sink { addr, counts, shutdown: Some(tx), task })
}

impl Sink {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn snapshot(&self) -> SinkSnapshot {
        snapshot(&lock(&self.counts))
    }

    /// A handle that reads the counts while the sink runs (the fan-out follower samples it).
    pub fn watcher(&self) -> SinkWatcher {
        SinkWatcher(self.counts.clone())
    }

    pub async fn stop(mut self) -> Result<SinkSnapshot, StormError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match (&mut self.task).await {
            Ok(Ok(())) => Ok(self.snapshot()),
            Ok(Err(e)) => Err(StormError::io("notification sink", e)),
            Err(e) => Err(StormError::Scenario(format!("notification sink task: {e}"))),
        }
    }
}

/// Reads a running sink's counts.
#[derive(Debug, Clone)]
pub struct SinkWatcher(Shared);

impl SinkWatcher {
    pub fn snapshot(&self) -> SinkSnapshot {
        snapshot(&lock(&self.0))
    }
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn snapshot(c: &Counts) -> SinkSnapshot {
    SinkSnapshot {
        accepted: c.accepted,
        replayed: c.replayed,
        refused: c.refused,
        by_channel: c.by_channel.clone(),
        by_language: c.by_language.clone(),
        first_at: c.first.map(|(_, t)| rfc3339(t)),
        last_at: c.last.map(|(_, t)| rfc3339(t)),
        first_instant: c.first.map(|(i, _)| i),
        last_instant: c.last.map(|(i, _)| i),
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn accept(State(counts): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let message = match serde_json::from_slice::<Message>(&body) {
        Ok(m) if !m.channel.trim().is_empty() && !m.to.trim().is_empty() => m,
        Ok(_) => {
            lock(&counts).refused += 1;
            return json(
                StatusCode::UNPROCESSABLE_ENTITY,
                serde_json::json!({"error": "channel and to are required"}),
            );
        }
        Err(e) => {
            lock(&counts).refused += 1;
            return json(StatusCode::BAD_REQUEST, serde_json::json!({"error": e.to_string()}));
        }
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    let mut c = lock(&counts);
    if let Some(id) = key.as_ref().and_then(|k| c.ids.get(k)).cloned() {
        c.replayed += 1;
        return json(StatusCode::OK, serde_json::json!({"id": id}));
    }
    let id = uuid::Uuid::now_v7().to_string();
    if let Some(k) = key {
        c.ids.insert(k, id.clone());
    }
    c.accepted += 1;
    *c.by_channel.entry(message.channel.trim().to_ascii_lowercase()).or_default() += 1;
    *c.by_language.entry(message.language.trim().to_owned()).or_default() += 1;
    let now = (Instant::now(), SystemTime::now());
    c.first.get_or_insert(now);
    c.last = Some(now);
    json(StatusCode::OK, serde_json::json!({"id": id}))
}

async fn stats(State(counts): State<Shared>) -> Response {
    let s = snapshot(&lock(&counts));
    match serde_json::to_value(&s) {
        Ok(v) => json(StatusCode::OK, v),
        Err(e) => json(StatusCode::INTERNAL_SERVER_ERROR, serde_json::json!({"error": e.to_string()})),
    }
}
