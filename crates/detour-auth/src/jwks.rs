//! Issuers' public keys: parsed from a JWKS, fetched over HTTP(S), cached and refreshed.
//!
//! A cached set is re-read when it is older than the TTL, and at once when a token names a
//! `kid` the set lacks (the issuer rotated its key). Every fetch attempt, successful or not,
//! counts against one per `refetch_interval` per issuer, so a stream of tokens with made-up
//! `kid`s cannot make us hammer the issuer. One fetch runs at a time per issuer; callers that
//! hold a usable (stale) set do not wait for a fetch another call already started.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio::time::Instant;

use crate::error::AuthError;

/// Largest JWKS document we read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// JWK members are base64url; some issuers pad them.
const JWK_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One public key and the one algorithm it verifies.
pub(crate) struct VerifyKey {
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
}

/// The usable signature keys of one issuer.
#[derive(Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Arc<VerifyKey>>,
    all: Vec<Arc<VerifyKey>>,
}

pub(crate) enum Lookup {
    Found(Arc<VerifyKey>),
    NotFound,
}

impl KeySet {
    /// Parses a JWKS document. Keys Detour cannot use (encryption keys, other curves, other
    /// algorithms, short RSA moduli, malformed members) are skipped rather than failing the set.
    pub(crate) fn from_json(bytes: &[u8]) -> Result<KeySet, String> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let keys = doc.get("keys").and_then(Value::as_array).ok_or("no `keys` array")?;
        Ok(Self::from_jwks(keys))
    }

    pub(crate) fn from_jwks(keys: &[Value]) -> KeySet {
        let mut set = KeySet::default();
        for jwk in keys {
            let Some(key) = parse_jwk(jwk) else {
                continue;
            };
            let key = Arc::new(key);
            if let Some(kid) = jwk.get("kid").and_then(Value::as_str) {
                // The first key wins a duplicated `kid`.
                set.by_kid.entry(kid.to_owned()).or_insert_with(|| key.clone());
            }
            set.all.push(key);
        }
        set
    }

    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    /// The key a token names, or, for a token without `kid`, the only key of its algorithm.
    pub(crate) fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        let found = match kid {
            Some(kid) => self.by_kid.get(kid).cloned(),
            None => {
                let mut of_alg = self.all.iter().filter(|k| k.alg == alg);
                match (of_alg.next(), of_alg.next()) {
                    (Some(only), None) => Some(only.clone()),
                    _ => None,
                }
            }
        };
        found.map_or(Lookup::NotFound, Lookup::Found)
    }
}

fn parse_jwk(jwk: &Value) -> Option<VerifyKey> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    if member("use").is_some_and(|u| u != "sig") {
        return None;
    }
    if let Some(ops) = jwk.get("key_ops")
        && !ops.as_array().is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")))
    {
        return None;
    }
    let declared = member("alg");
    match member("kty")? {
        "RSA" => {
            if declared.is_some_and(|a| a != "RS256") {
                return None;
            }
            let n = JWK_B64.decode(member("n")?).ok()?;
            let e = JWK_B64.decode(member("e")?).ok()?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES || e.is_empty() {
                return None;
            }
            Some(VerifyKey { alg: Algorithm::RS256, key: DecodingKey::from_rsa_raw_components(&n, &e) })
        }
        "EC" => {
            if declared.is_some_and(|a| a != "ES256") || member("crv")? != "P-256" {
                return None;
            }
            let x = JWK_B64.decode(member("x")?).ok()?;
            let y = JWK_B64.decode(member("y")?).ok()?;
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            // Refuse points that are not on the curve now rather than at every verification.
            p256::PublicKey::from_sec1_bytes(&point).ok()?;
            // jsonwebtoken keeps EC public keys as the SEC1 point, whatever the constructor's name.
            Some(VerifyKey { alg: Algorithm::ES256, key: DecodingKey::from_ec_der(&point) })
        }
        _ => None,
    }
}

/// How often keys are re-read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) ttl: Duration,
    pub(crate) refetch_interval: Duration,
    pub(crate) fetch_timeout: Duration,
}

/// Where an issuer's keys come from.
pub(crate) enum Source {
    /// Known at start-up (the dev issuer): never fetched.
    Static(Arc<KeySet>),
    Http {
        url: reqwest::Url,
        client: reqwest::Client,
    },
}

struct Cached {
    keys: Option<Arc<KeySet>>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    /// Bumped by every successful fetch.
    generation: u64,
}

/// The keys of one issuer.
pub(crate) struct IssuerKeys {
    issuer: String,
    source: Source,
    timing: Timing,
    cached: RwLock<Cached>,
    fetching: tokio::sync::Mutex<()>,
}

impl IssuerKeys {
    pub(crate) fn new(issuer: String, source: Source, timing: Timing) -> Self {
        Self {
            issuer,
            source,
            timing,
            cached: RwLock::new(Cached { keys: None, fetched_at: None, last_attempt: None, generation: 0 }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The key that verifies a token with header `kid` and `alg`.
    pub(crate) async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyKey>, AuthError> {
        if let Source::Static(keys) = &self.source {
            return match keys.lookup(kid, alg) {
                Lookup::Found(key) => Ok(key),
                Lookup::NotFound => Err(AuthError::UnknownKey),
            };
        }
        let (keys, generation) = match self.snapshot() {
            (Some(keys), generation, false) => (keys, generation),
            // Stale: refresh, but if another call is already fetching, use what we have.
            (Some(keys), generation, true) => match self.refresh(generation, false).await {
                Ok(fresh) => fresh,
                Err(_) => (keys, generation),
            },
            (None, generation, _) => self.refresh(generation, true).await?,
        };
        if let Lookup::Found(key) = keys.lookup(kid, alg) {
            return Ok(key);
        }
        // Not in the set: the issuer may have rotated. Re-read once (rate-limited).
        let (fresh, fresh_generation) = self.refresh(generation, true).await?;
        if fresh_generation == generation {
            return Err(AuthError::UnknownKey);
        }
        match fresh.lookup(kid, alg) {
            Lookup::Found(key) => Ok(key),
            Lookup::NotFound => Err(AuthError::UnknownKey),
        }
    }

    /// Fetches the keys now unless the rate limit forbids it; for start-up checks.
    pub(crate) async fn ensure_loaded(&self) -> Result<(), AuthError> {
        if let Source::Static(_) = self.source {
            return Ok(());
        }
        let (_, generation, stale) = self.snapshot();
        if generation == 0 || stale {
            self.refresh(generation, true).await?;
        }
        Ok(())
    }

    /// (keys, generation, stale)
    fn snapshot(&self) -> (Option<Arc<KeySet>>, u64, bool) {
        let cached = self.cached.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let stale = cached.fetched_at.is_none_or(|at| at.elapsed() >= self.timing.ttl);
        (cached.keys.clone(), cached.generation, stale)
    }

    /// Re-reads the JWKS unless someone already did since `seen_generation` or the last attempt
    /// is too recent; answers the newest keys held afterwards. `wait`: whether to wait for a
    /// fetch in progress (otherwise `Err(KeysUnavailable)` is answered at once).
    async fn refresh(&self, seen_generation: u64, wait: bool) -> Result<(Arc<KeySet>, u64), AuthError> {
        let unavailable = || AuthError::KeysUnavailable { issuer: self.issuer.clone() };
        let _fetching = if wait {
            self.fetching.lock().await
        } else {
            self.fetching.try_lock().map_err(|_| unavailable())?
        };
        let Source::Http { url, client } = &self.source else {
            return Err(unavailable());
        };
        {
            let cached = self.cached.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let current = cached.keys.clone().map(|keys| (keys, cached.generation));
            if cached.generation != seen_generation {
                return current.ok_or_else(unavailable);
            }
            if cached.last_attempt.is_some_and(|at| at.elapsed() < self.timing.refetch_interval) {
                return current.ok_or_else(unavailable);
            }
        }
        self.write().last_attempt = Some(Instant::now());
        let fetched = tokio::time::timeout(self.timing.fetch_timeout, fetch(client, url))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timing.fetch_timeout)));
        let mut cached = self.write();
        match fetched {
            Ok(keys) => {
                tracing::debug!(issuer = %self.issuer, keys = keys.len(), "fetched signing keys");
                let keys = Arc::new(keys);
                cached.keys = Some(keys.clone());
                cached.fetched_at = Some(Instant::now());
                cached.generation += 1;
                Ok((keys, cached.generation))
            }
            Err(problem) => {
                tracing::warn!(issuer = %self.issuer, url = %url, %problem, "cannot fetch signing keys");
                cached.keys.clone().map(|keys| (keys, cached.generation)).ok_or_else(unavailable)
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cached> {
        self.cached.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn fetch(client: &reqwest::Client, url: &reqwest::Url) -> Result<KeySet, String> {
    let mut response = client
        .get(url.clone())
        .header(http::header::ACCEPT, "application/json, application/jwk-set+json")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("document larger than {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    KeySet::from_json(&body)
}

/// The HTTP client for JWKS: rustls with the ring provider and the platform's roots.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_platform_verifier()
        .map_err(|e| e.to_string())?
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("detour-auth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// base64url without padding, as JWS compact serialization uses it.
pub(crate) fn b64url_decode(part: &str) -> Option<Vec<u8>> {
    general_purpose::URL_SAFE_NO_PAD.decode(part).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn ec_point() -> (String, String) {
        let secret = p256::SecretKey::random(&mut rand_core::OsRng);
        let point = secret.public_key().to_sec1_bytes();
        (b64(&point[1..33]), b64(&point[33..65]))
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let (x, y) = ec_point();
        let set = KeySet::from_json(
            json!({"keys": [
                {"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": "good"},
                {"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": "enc", "use": "enc"},
                {"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": "es384", "alg": "ES384"},
                {"kty": "EC", "crv": "P-384", "x": x, "y": y, "kid": "p384"},
                {"kty": "EC", "crv": "P-256", "x": x, "y": x, "kid": "off-curve"},
                {"kty": "RSA", "n": b64(&[0xff; 128]), "e": "AQAB", "kid": "rsa1024"},
                {"kty": "RSA", "n": b64(&[0xff; 256]), "e": "AQAB", "kid": "rsa2048", "alg": "RS256"},
                {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
                {"kty": "RSA", "n": b64(&[0xff; 256]), "e": "AQAB", "kid": "ps", "alg": "PS256"},
                "not an object",
            ]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(set.len(), 2);
        assert!(
            matches!(set.lookup(Some("good"), Algorithm::ES256), Lookup::Found(k) if k.alg == Algorithm::ES256)
        );
        assert!(matches!(set.lookup(Some("rsa2048"), Algorithm::RS256), Lookup::Found(_)));
        for kid in ["enc", "es384", "p384", "off-curve", "rsa1024", "hmac", "ps"] {
            assert!(matches!(set.lookup(Some(kid), Algorithm::ES256), Lookup::NotFound), "{kid}");
        }
        // Without `kid`, the only key of the algorithm.
        assert!(matches!(set.lookup(None, Algorithm::ES256), Lookup::Found(_)));
    }

    #[test]
    fn a_document_without_keys_is_an_error() {
        assert!(KeySet::from_json(b"{}").is_err());
        assert!(KeySet::from_json(b"<html>").is_err());
    }
}
