//! Token verification: which issuer, which key, which claims.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dev::DevIssuer;
use crate::error::{AuthError, sanitize_alg};
use crate::jwks::{IssuerKeys, KeySet, Source, Timing, VerifyKey, b64url_decode};
use crate::principal::{Caller, Principal, Role};

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// How long one JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One trusted identity provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSettings {
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// The `aud` its tokens must carry for Detour.
    pub audience: String,
    /// Where it publishes its public keys (`http://` or `https://`).
    pub jwks_url: String,
    /// The claim holding the roles: an array of names (or one space-separated string). A dotted
    /// path walks into objects: `realm_access.roles`. Default `roles`.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
}

impl IssuerSettings {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, jwks_url: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: jwks_url.into(),
            roles_claim: default_roles_claim(),
        }
    }
}

fn default_roles_claim() -> String {
    "roles".to_owned()
}

/// Which tokens the [`Verifier`] accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    #[serde(default)]
    pub issuers: Vec<IssuerSettings>,
    /// Trusted as issuer `detour-dev`, audience `detour`, without HTTP. For `detour dev` only.
    #[serde(skip)]
    pub dev_issuer: Option<DevIssuer>,
    /// Clock skew allowed on `exp` and `nbf`. Default 30, at most 300.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// A fetched JWKS is re-read after this long. Default 300.
    #[serde(default = "default_jwks_ttl")]
    pub jwks_ttl_secs: u64,
    /// At most one JWKS fetch per issuer this often, whatever triggers it (expiry, a token with
    /// an unknown `kid`, failures). Default 10.
    #[serde(default = "default_refetch_interval")]
    pub jwks_refetch_interval_secs: u64,
}

fn default_leeway() -> u64 {
    30
}
fn default_jwks_ttl() -> u64 {
    300
}
fn default_refetch_interval() -> u64 {
    10
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            dev_issuer: None,
            leeway_secs: default_leeway(),
            jwks_ttl_secs: default_jwks_ttl(),
            jwks_refetch_interval_secs: default_refetch_interval(),
        }
    }
}

/// A setting the verifier cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("auth configuration: {setting}: {problem}")]
pub struct AuthConfigError {
    pub setting: String,
    pub problem: String,
}

fn invalid(setting: impl Into<String>, problem: impl Into<String>) -> AuthConfigError {
    AuthConfigError { setting: setting.into(), problem: problem.into() }
}

struct Issuer {
    audience: String,
    roles_claim: Vec<String>,
    keys: Arc<IssuerKeys>,
}

/// Verifies bearer tokens of the configured issuers and turns them into [`Principal`]s.
///
/// Only RS256 and ES256 signatures are accepted, each only with a key of its own type; `none`,
/// HMAC and everything else is refused before any key is looked at. Keys come from each
/// issuer's JWKS, cached and re-read on expiry or when a token names an unknown `kid` (see
/// [`AuthSettings`] for the intervals), so an issuer's key rotation needs no restart.
pub struct Verifier {
    issuers: HashMap<String, Issuer>,
    leeway: u64,
    verified: VerifiedTokens,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut issuers: Vec<&String> = self.issuers.keys().collect();
        issuers.sort();
        f.debug_struct("Verifier").field("issuers", &issuers).finish_non_exhaustive()
    }
}

/// The JOSE header members looked at before the signature is verified.
#[derive(Deserialize)]
struct UnverifiedHeader {
    alg: Option<Value>,
    kid: Option<Value>,
    crit: Option<Value>,
}

impl Verifier {
    pub fn new(settings: AuthSettings) -> Result<Self, AuthConfigError> {
        if settings.leeway_secs > 300 {
            return Err(invalid("leeway_secs", format!("{} is more than 300", settings.leeway_secs)));
        }
        if settings.jwks_ttl_secs == 0 {
            return Err(invalid("jwks_ttl_secs", "must be at least 1"));
        }
        if settings.jwks_refetch_interval_secs == 0 {
            return Err(invalid("jwks_refetch_interval_secs", "must be at least 1"));
        }
        let timing = Timing {
            ttl: Duration::from_secs(settings.jwks_ttl_secs),
            refetch_interval: Duration::from_secs(settings.jwks_refetch_interval_secs),
            fetch_timeout: FETCH_TIMEOUT,
        };
        let mut issuers = HashMap::new();
        // One client (one connection pool) for every issuer.
        let client = crate::jwks::http_client(FETCH_TIMEOUT).map_err(|e| invalid("jwks http client", e))?;
        for (i, s) in settings.issuers.iter().enumerate() {
            let at = |field: &str| format!("issuers[{i}].{field}");
            if s.issuer.trim().is_empty() {
                return Err(invalid(at("issuer"), "is empty"));
            }
            if s.audience.trim().is_empty() {
                return Err(invalid(at("audience"), "is empty"));
            }
            let url = reqwest::Url::parse(&s.jwks_url).map_err(|e| invalid(at("jwks_url"), e.to_string()))?;
            if !matches!(url.scheme(), "https" | "http") {
                return Err(invalid(
                    at("jwks_url"),
                    format!("scheme `{}` is not http or https", url.scheme()),
                ));
            }
            if url.scheme() == "http" && !is_loopback(&url) {
                tracing::warn!(issuer = %s.issuer, url = %url, "signing keys are fetched over plain HTTP");
            }
            let roles_claim: Vec<String> = s.roles_claim.split('.').map(str::to_owned).collect();
            if roles_claim.iter().any(String::is_empty) {
                return Err(invalid(at("roles_claim"), format!("`{}` is not a claim path", s.roles_claim)));
            }
            let source = Source::Http { url, client: client.clone() };
            let keys = IssuerKeys::new(s.issuer.clone(), source, timing);
            let issuer = Issuer { audience: s.audience.clone(), roles_claim, keys: Arc::new(keys) };
            if issuers.insert(s.issuer.clone(), issuer).is_some() {
                return Err(invalid(at("issuer"), format!("`{}` is configured twice", s.issuer)));
            }
        }
        if let Some(dev) = &settings.dev_issuer {
            let jwks = serde_json::to_value(dev.jwks())
                .map_err(|e| invalid("dev_issuer", format!("cannot publish its key: {e}")))?;
            let keys =
                KeySet::from_jwks(jwks.get("keys").and_then(Value::as_array).map_or(&[], Vec::as_slice));
            if keys.len() != 1 {
                return Err(invalid("dev_issuer", "its key is not a usable ES256 key"));
            }
            let keys = IssuerKeys::new(dev.issuer().to_owned(), Source::Static(Arc::new(keys)), timing);
            let issuer = Issuer {
                audience: dev.audience().to_owned(),
                roles_claim: vec![default_roles_claim()],
                keys: Arc::new(keys),
            };
            if issuers.insert(dev.issuer().to_owned(), issuer).is_some() {
                return Err(invalid("dev_issuer", format!("issuer `{}` is also configured", dev.issuer())));
            }
        }
        Ok(Self { issuers, leeway: settings.leeway_secs, verified: VerifiedTokens::default() })
    }

    /// The `iss` values accepted.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.issuers.keys().map(String::as_str)
    }

    /// Fetches every issuer's keys that are not cached yet; for a start-up check. The answer is
    /// the first issuer whose keys could not be had (the others are still fetched).
    pub async fn fetch_keys(&self) -> Result<(), AuthError> {
        let mut first = Ok(());
        for issuer in self.issuers.values() {
            if let Err(e) = issuer.keys.ensure_loaded().await
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// Verifies the `authorization: Bearer …` header of a request.
    pub async fn verify_headers(&self, headers: &http::HeaderMap) -> Result<Principal, AuthError> {
        let token = bearer_token(headers)?;
        self.verify(token).await
    }

    /// Verifies a compact JWS and answers who it names.
    ///
    /// The issuer and key are looked up for every call, so rotation and withdrawal take effect
    /// as they always do; but a token whose signature this key already verified is answered from
    /// memory until it expires: one caller (a channel adapter, a partner) sends the same token
    /// with thousands of calls a second in a storm, and an ECDSA verification costs more CPU
    /// than the rest of a small call.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed("token too long"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("not a compact JWS"));
        };

        let header: UnverifiedHeader = b64url_decode(header)
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(AuthError::Malformed("header is not base64url JSON"))?;
        let alg = match header.alg {
            Some(Value::String(alg)) => alg,
            _ => return Err(AuthError::Malformed("header has no alg")),
        };
        let alg = match alg.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => return Err(AuthError::UnsupportedAlgorithm(sanitize_alg(other))),
        };
        let kid = match &header.kid {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(AuthError::Malformed("kid is not a string")),
        };
        if header.crit.is_some() {
            return Err(AuthError::Malformed("critical header extensions are not supported"));
        }

        // The issuer picks the keys; the signature and `iss` are checked against them below.
        let claims: Value = b64url_decode(payload)
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or(AuthError::Malformed("payload is not base64url JSON"))?;
        let issuer_name = claims.get("iss").and_then(Value::as_str).ok_or(AuthError::Malformed("no iss"))?;
        let issuer = self.issuers.get(issuer_name).ok_or(AuthError::WrongIssuer)?;

        let key = issuer.keys.key_for(kid, alg).await?;
        if key.alg != alg {
            return Err(AuthError::AlgorithmMismatch);
        }
        let digest = token_digest(token);
        if let Some(principal) = self.verified.get(&digest, &key, jsonwebtoken::get_current_timestamp()) {
            return Ok(principal);
        }

        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[issuer_name]);
        validation.set_audience(&[&issuer.audience]);
        let verified = jsonwebtoken::decode::<Value>(token, &key.key, &validation).map_err(map_jwt_error)?;
        let principal = principal(&verified.claims, issuer_name, &issuer.roles_claim)?;
        if let Some(exp) = verified.claims.get("exp").and_then(Value::as_u64) {
            self.verified.put(digest, principal.clone(), key, exp.saturating_add(self.leeway));
        }
        Ok(principal)
    }
}

/// Most tokens remembered; beyond it the expired ones go, then all (the next calls verify again).
const VERIFIED_CAPACITY: usize = 10_000;

fn token_digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

struct VerifiedToken {
    principal: Principal,
    /// The key that verified it: once the issuer's key set is re-read, even with the same key
    /// in it, the token is verified again.
    key: Arc<VerifyKey>,
    /// `exp` plus the leeway, in Unix seconds: the token is refused from then on anyway.
    expires: u64,
}

/// Tokens whose signature and claims were checked, by SHA-256 of the whole token, so only the
/// very same bytes are answered from here.
#[derive(Default)]
struct VerifiedTokens(Mutex<HashMap<[u8; 32], VerifiedToken>>);

impl VerifiedTokens {
    fn get(&self, digest: &[u8; 32], key: &Arc<VerifyKey>, now: u64) -> Option<Principal> {
        let Ok(mut map) = self.0.lock() else { return None };
        let entry = map.get(digest)?;
        if now < entry.expires && Arc::ptr_eq(&entry.key, key) {
            return Some(entry.principal.clone());
        }
        map.remove(digest);
        None
    }

    fn put(&self, digest: [u8; 32], principal: Principal, key: Arc<VerifyKey>, expires: u64) {
        let Ok(mut map) = self.0.lock() else { return };
        if map.len() >= VERIFIED_CAPACITY {
            let now = jsonwebtoken::get_current_timestamp();
            map.retain(|_, t| now < t.expires);
            if map.len() >= VERIFIED_CAPACITY {
                map.clear();
            }
        }
        map.insert(digest, VerifiedToken { principal, key, expires });
    }
}

/// The token of an `authorization: Bearer <token>` header.
pub fn bearer_token(headers: &http::HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::MissingToken)?;
    if values.next().is_some() {
        return Err(AuthError::Malformed("more than one authorization header"));
    }
    let value = value.to_str().map_err(|_| AuthError::Malformed("authorization header is not text"))?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed("not a bearer token"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed("not a bearer token"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token)
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) => {
            AuthError::BadSignature
        }
        ErrorKind::InvalidAlgorithm => AuthError::AlgorithmMismatch,
        ErrorKind::MissingRequiredClaim(_) => {
            AuthError::Malformed("a required claim (exp, iss, aud) is missing")
        }
        ErrorKind::InvalidClaimFormat(_) => AuthError::Malformed("a registered claim has the wrong type"),
        _ => AuthError::Malformed("token does not decode"),
    }
}

fn principal(claims: &Value, issuer: &str, roles_claim: &[String]) -> Result<Principal, AuthError> {
    let string = |name: &str| match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(AuthError::Malformed("a string claim is empty or not a string")),
    };
    if let Some(name) = string("svc")? {
        let on_behalf_of = match string("on_behalf_of")? {
            Some(user) => Some(user),
            None => match claims.get("act").and_then(|act| act.get("sub")) {
                None => None,
                Some(Value::String(user)) if !user.is_empty() => Some(user.clone()),
                Some(_) => return Err(AuthError::Malformed("act.sub is empty or not a string")),
            },
        };
        return Ok(Principal { caller: Caller::Service { name, on_behalf_of }, issuer: issuer.to_owned() });
    }
    let subject = string("sub")?.ok_or(AuthError::Malformed("no sub"))?;
    let roles = roles_claim
        .iter()
        .try_fold(claims, |at, step| at.get(step))
        .map(|value| match value {
            Value::Array(names) => {
                names.iter().filter_map(Value::as_str).filter_map(|n| n.parse::<Role>().ok()).collect()
            }
            Value::String(names) => names.split_whitespace().filter_map(|n| n.parse::<Role>().ok()).collect(),
            _ => Default::default(),
        })
        .unwrap_or_default();
    Ok(Principal { caller: Caller::User { subject, roles }, issuer: issuer.to_owned() })
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => {
            host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_come_from_a_dotted_path_and_unknown_names_are_ignored() {
        let claims = json!({"sub": "u", "realm_access": {"roles": ["agent", "offline_access", "finance"]}});
        let path = vec!["realm_access".to_owned(), "roles".to_owned()];
        let p = principal(&claims, "i", &path).unwrap();
        assert_eq!(p, Principal::user("u", [Role::Agent, Role::Finance], "i"));
        let claims = json!({"sub": "u", "roles": "supervisor partner"});
        let p = principal(&claims, "i", &["roles".to_owned()]).unwrap();
        assert_eq!(p, Principal::user("u", [Role::Supervisor, Role::Partner], "i"));
        let p = principal(&json!({"sub": "u"}), "i", &["roles".to_owned()]).unwrap();
        assert_eq!(p.roles().count(), 0);
    }

    #[test]
    fn service_tokens_carry_the_end_user() {
        let svc = |claims: Value| principal(&claims, "i", &["roles".to_owned()]).unwrap();
        assert_eq!(svc(json!({"sub": "x", "svc": "gateway"})), Principal::service("gateway", None, "i"));
        assert_eq!(
            svc(json!({"svc": "gateway", "on_behalf_of": "u-1"})),
            Principal::service("gateway", Some("u-1".into()), "i")
        );
        assert_eq!(
            svc(json!({"svc": "portal", "act": {"sub": "u-2"}, "roles": ["admin"]})),
            Principal::service("portal", Some("u-2".into()), "i")
        );
        assert!(principal(&json!({"svc": 3}), "i", &[]).is_err());
        assert!(principal(&json!({"roles": ["admin"]}), "i", &[]).is_err());
    }

    #[test]
    fn bearer_header_parsing() {
        let mut h = http::HeaderMap::new();
        assert_eq!(bearer_token(&h), Err(AuthError::MissingToken));
        h.insert("authorization", "Bearer abc.def.ghi".parse().unwrap());
        assert_eq!(bearer_token(&h), Ok("abc.def.ghi"));
        h.insert("authorization", "bearer  abc ".parse().unwrap());
        assert_eq!(bearer_token(&h), Ok("abc"));
        h.insert("authorization", "Basic dXNlcjpwdw==".parse().unwrap());
        assert!(matches!(bearer_token(&h), Err(AuthError::Malformed(_))));
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer_token(&h), Err(AuthError::MissingToken));
        h.insert("authorization", "Bearer a".parse().unwrap());
        h.append("authorization", "Bearer b".parse().unwrap());
        assert!(matches!(bearer_token(&h), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn settings_are_checked() {
        let with =
            |issuers: Vec<IssuerSettings>| Verifier::new(AuthSettings { issuers, ..AuthSettings::default() });
        let ok = IssuerSettings::new("https://idp", "detour", "https://idp/jwks");
        assert!(with(vec![ok.clone()]).is_ok());
        let err = with(vec![ok.clone(), ok.clone()]).unwrap_err();
        assert_eq!(err.setting, "issuers[1].issuer");
        let err = with(vec![IssuerSettings { jwks_url: "ftp://idp/jwks".into(), ..ok.clone() }]).unwrap_err();
        assert_eq!(err.setting, "issuers[0].jwks_url");
        let err = with(vec![IssuerSettings { roles_claim: "a..b".into(), ..ok.clone() }]).unwrap_err();
        assert_eq!(err.setting, "issuers[0].roles_claim");
        let err = with(vec![IssuerSettings { audience: " ".into(), ..ok }]).unwrap_err();
        assert_eq!(err.setting, "issuers[0].audience");
        let err = Verifier::new(AuthSettings { leeway_secs: 3600, ..AuthSettings::default() }).unwrap_err();
        assert_eq!(err.setting, "leeway_secs");
    }

    #[test]
    fn settings_deserialize_with_defaults() {
        let s: AuthSettings = toml::from_str(
            "[[issuers]]\nissuer = \"https://idp\"\naudience = \"detour\"\njwks_url = \"https://idp/jwks\"\n",
        )
        .unwrap();
        assert_eq!(s.issuers[0].roles_claim, "roles");
        assert_eq!((s.leeway_secs, s.jwks_ttl_secs, s.jwks_refetch_interval_secs), (30, 300, 10));
        assert!(toml::from_str::<AuthSettings>("leeway = 3\n").is_err());
    }
}
