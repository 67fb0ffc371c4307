//! A stand-in for the SMS/push/WeChat provider: an HTTP server on 127.0.0.1 that records each
//! request and answers as the test tells it to.

// Each test binary uses the part it needs.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// What the provider answers.
#[derive(Clone)]
pub enum Reply {
    /// 200 with `{"id": …}`.
    Accept(&'static str),
    /// This status with this body.
    Status(u16, &'static str),
    /// Accepts, but only after this long.
    Slow(Duration),
    /// This status, quoting the recipient and the text back, as careless gateways do.
    Echo(u16),
}

/// One request as the provider saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub json: serde_json::Value,
    pub idempotency_key: Option<String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
}

pub struct Provider {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

#[derive(Clone)]
struct Shared {
    reply: Reply,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Provider {
    pub async fn start(reply: Reply) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared { reply, requests: Arc::clone(&requests) };
        let app = Router::new().route("/v1/messages", post(messages)).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the provider");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url: format!("http://{addr}"), requests }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }
}

async fn messages(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let sent: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    shared.requests.lock().expect("requests").push(Request {
        json: sent.clone(),
        idempotency_key: text("idempotency-key"),
        authorization: text("authorization"),
        content_type: text("content-type"),
    });
    let json =
        |status: StatusCode, body: String| (status, [(header::CONTENT_TYPE, "application/json")], body);
    match shared.reply {
        Reply::Accept(id) => {
            json(StatusCode::OK, serde_json::json!({ "id": id }).to_string()).into_response()
        }
        Reply::Status(code, body) => {
            json(StatusCode::from_u16(code).expect("status"), body.to_owned()).into_response()
        }
        Reply::Echo(code) => {
            let message = format!(
                "{} cannot receive: {}",
                sent["to"].as_str().unwrap_or(""),
                sent["body"].as_str().unwrap_or("")
            );
            let body = serde_json::json!({ "error": "rejected", "message": message }).to_string();
            json(StatusCode::from_u16(code).expect("status"), body).into_response()
        }
        Reply::Slow(delay) => {
            tokio::time::sleep(delay).await;
            json(StatusCode::OK, r#"{"id":"late"}"#.to_owned()).into_response()
        }
    }
}
