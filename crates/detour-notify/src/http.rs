//! SMS, push and WeChat through the provider interface described in the crate documentation.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use detour_vault::SecretString;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

use crate::redact::provider_text;
use crate::settings::ConfigError;
use crate::{OutgoingMessage, Receipt, SendError, Sender};

/// More than any receipt or error needs; a provider sending more is cut off, not buffered.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

pub(crate) struct HttpSender {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    token: Option<SecretString>,
}

#[derive(Serialize)]
struct ProviderRequest<'a> {
    channel: &'a str,
    to: &'a str,
    language: &'a str,
    subject: &'a str,
    body: &'a str,
}

#[derive(Deserialize)]
struct Accepted {
    id: String,
}

#[derive(Deserialize)]
struct Refused {
    error: Option<String>,
    message: Option<String>,
}

impl HttpSender {
    pub(crate) fn new(base_url: &str, token: Option<&str>, timeout: Duration) -> Result<Self, ConfigError> {
        let bad_url = |problem: &str| ConfigError::new("http_url", problem);
        let base = reqwest::Url::parse(base_url).map_err(|_| bad_url("not a URL"))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(bad_url("must be an http:// or https:// URL with a host"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad_url("must not hold credentials; put the token in http_token"));
        }
        let endpoint = reqwest::Url::parse(&format!("{}/v1/messages", base.as_str().trim_end_matches('/')))
            .map_err(|_| bad_url("cannot be extended with /v1/messages"))?;
        let client = client(timeout).map_err(|problem| ConfigError::new("http_url", problem))?;
        Ok(Self { client, endpoint, token: token.map(|t| SecretString::new(t.to_owned())) })
    }
}

/// rustls with the ring provider and the platform's roots, as everywhere in Detour.
fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS could not be set up: {e}"))?
        .with_platform_verifier()
        .map_err(|e| format!("TLS could not be set up: {e}"))?
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("detour-notify/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("HTTP client could not be built: {e}"))
}

#[async_trait]
impl Sender for HttpSender {
    async fn send(&self, message: &OutgoingMessage) -> Result<Receipt, SendError> {
        let payload = serde_json::to_vec(&ProviderRequest {
            channel: message.channel.as_str(),
            to: message.to.expose(),
            language: message.language.as_str(),
            subject: &message.rendered.subject,
            body: &message.rendered.body,
        })
        .map_err(|_| SendError::Permanent { reason: "request could not be encoded".to_owned() })?;
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .header("Idempotency-Key", &message.notification_id)
            .body(payload);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let mut response = request.send().await.map_err(|e| transport_error(&e))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(&e))? {
            let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        if status.is_success() {
            return match serde_json::from_slice::<Accepted>(&body) {
                Ok(accepted) if !accepted.id.trim().is_empty() => {
                    Ok(Receipt { provider_message_id: accepted.id })
                }
                // Retrying is safe: the idempotency key makes the provider answer with the
                // message it already accepted instead of sending another.
                _ => Err(SendError::Transient { reason: format!("provider {status} without a message id") }),
            };
        }
        let reason =
            format!("provider {}: {}", status.as_u16(), provider_text(&refusal_text(&body), message));
        if status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
        {
            Err(SendError::Transient { reason })
        } else {
            Err(SendError::Permanent { reason })
        }
    }
}

/// `error` and `message` of a contract-shaped refusal, else the body as text.
fn refusal_text(body: &[u8]) -> String {
    match serde_json::from_slice::<Refused>(body) {
        Ok(Refused { error, message }) => {
            [error, message].into_iter().flatten().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(": ")
        }
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

/// By class only: reqwest's own text names the URL and its sources add nothing a reader needs.
fn transport_error(error: &reqwest::Error) -> SendError {
    let reason = if error.is_timeout() {
        "provider timed out"
    } else if error.is_connect() {
        "provider unreachable"
    } else {
        "request to provider failed"
    };
    SendError::Transient { reason: reason.to_owned() }
}
