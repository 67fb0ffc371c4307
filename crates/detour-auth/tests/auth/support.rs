//! Test keys, token forging, a local JWKS endpoint and verifiers configured against it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey as _;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};

use detour_auth::{AuthSettings, IssuerSettings, Role, Verifier};

pub const ISSUER: &str = "https://idp.test/realms/detour";
pub const AUDIENCE: &str = "detour-api";

/// A private key that signs test tokens, with its public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

/// RSA key generation is slow in debug builds; tests share a few.
static RSA_KEYS: LazyLock<Vec<rsa::RsaPrivateKey>> = LazyLock::new(|| {
    (0..2).map(|_| rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).expect("RSA key")).collect()
});

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RSA key `index` (0 or 1) under `kid`, for RS256.
pub fn rsa_key(index: usize, kid: &str) -> TestKey {
    let private = &RSA_KEYS[index];
    let der = private.to_pkcs1_der().expect("PKCS#1");
    let public = private.to_public_key();
    TestKey {
        kid: kid.to_owned(),
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        jwk: json!({
            "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
            "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be()),
        }),
    }
}

/// A fresh P-256 key under `kid`, for ES256.
pub fn ec_key(kid: &str) -> TestKey {
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let der = secret.to_pkcs8_der().expect("PKCS#8");
    let encoding = EncodingKey::from_ec_der(der.as_bytes());
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, Algorithm::ES256).expect("jwk"))
        .expect("jwk json");
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    TestKey { kid: kid.to_owned(), alg: Algorithm::ES256, encoding, jwk }
}

pub fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// Valid claims of a user of [`ISSUER`] for [`AUDIENCE`].
pub fn user_claims(subject: &str, roles: &[Role]) -> Value {
    let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "roles": roles,
        "iat": now(), "exp": now() + 300,
        "email": "someone@example.com", "name": "Some One",
    })
}

pub fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    sign_with(&header, key, claims)
}

pub fn sign_with(header: &Header, key: &TestKey, claims: &Value) -> String {
    jsonwebtoken::encode(header, claims, &key.encoding).expect("sign")
}

/// A token with any header, an unsigned payload and any signature text.
pub fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
    format!("{}.{}.{signature}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()))
}

/// A JWKS endpoint on 127.0.0.1 whose keys can be swapped, or made to fail, while it runs.
pub struct JwksServer {
    pub url: String,
    state: Arc<ServerState>,
}

struct ServerState {
    /// `None`: answer 500.
    keys: Mutex<Option<Vec<Value>>>,
    fetches: AtomicUsize,
}

async fn jwks(State(state): State<Arc<ServerState>>) -> axum::response::Response {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    let keys = state.keys.lock().expect("lock").clone();
    match keys {
        Some(keys) => ([(header::CONTENT_TYPE, "application/json")], json!({ "keys": keys }).to_string())
            .into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response(),
    }
}

impl JwksServer {
    pub async fn start(keys: &[&TestKey]) -> Self {
        let state = Arc::new(ServerState {
            keys: Mutex::new(Some(keys.iter().map(|k| k.jwk.clone()).collect())),
            fetches: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/realms/detour/certs", axum::routing::get(jwks))
            .with_state(state.clone());
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url: format!("http://{addr}/realms/detour/certs"), state }
    }

    pub fn serve(&self, keys: &[&TestKey]) {
        *self.state.keys.lock().expect("lock") = Some(keys.iter().map(|k| k.jwk.clone()).collect());
    }

    pub fn fail(&self) {
        *self.state.keys.lock().expect("lock") = None;
    }

    pub fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }
}

/// Settings trusting [`ISSUER`] with keys from `server`.
pub fn settings(server: &JwksServer) -> AuthSettings {
    AuthSettings {
        issuers: vec![IssuerSettings::new(ISSUER, AUDIENCE, &server.url)],
        leeway_secs: 5,
        jwks_refetch_interval_secs: 1,
        ..AuthSettings::default()
    }
}

pub fn verifier(server: &JwksServer) -> Verifier {
    Verifier::new(settings(server)).expect("verifier")
}

/// Slightly more than the test settings' refetch interval.
pub const PAST_INTERVAL: Duration = Duration::from_millis(1100);
