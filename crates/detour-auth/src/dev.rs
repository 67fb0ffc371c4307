//! The development issuer: a local ES256 key that mints tokens for `detour dev` and
//! `detour token`.
//!
//! It exists so that a developer can run the whole suite on a laptop and call it with real,
//! verified tokens without an identity provider. It is **not** for deployed environments: whoever
//! can read its key file can mint any role. The key is kept as PKCS#8 PEM (mode 0600) in a
//! directory the caller chooses, created on first use and reused afterwards, so tokens survive
//! restarts. The verifier trusts it directly (no HTTP) when it is configured in
//! [`AuthSettings::dev_issuer`](crate::AuthSettings::dev_issuer).

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use serde_json::{Value, json};

use crate::principal::Role;

/// `iss` of every dev token.
pub const DEV_ISSUER: &str = "detour-dev";
/// `aud` of every dev token.
pub const DEV_AUDIENCE: &str = "detour";
/// The key's file name inside the directory given to [`DevIssuer::load_or_create`].
pub const DEV_KEY_FILE: &str = "dev-issuer-es256.pem";

#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    #[error("dev issuer key {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("dev issuer key {path}: not a PKCS#8 P-256 private key")]
    BadKey { path: PathBuf },
    #[error("dev issuer: {0}")]
    Mint(String),
}

/// The ES256 key pair of the development issuer. Cheap to clone.
#[derive(Clone)]
pub struct DevIssuer {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    kid: String,
    encoding: EncodingKey,
    /// Public only.
    jwk: Jwk,
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &DEV_ISSUER)
            .field("kid", &self.inner.kid)
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// Loads the key from `dir`, creating the directory (0700) and the key (0600) on first use.
    pub fn load_or_create(dir: impl AsRef<Path>) -> Result<Self, DevIssuerError> {
        let dir = dir.as_ref();
        let path = dir.join(DEV_KEY_FILE);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DevIssuerError::Io { path, source }
        };
        let pem = match std::fs::read_to_string(&path) {
            Ok(pem) => {
                restrict_permissions(&path).map_err(io(&path))?;
                pem
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_dir(dir).map_err(io(dir))?;
                create_key(&path)?
            }
            Err(e) => return Err(io(&path)(e)),
        };
        Self::from_pem(&pem, path)
    }

    fn from_pem(pem: &str, path: PathBuf) -> Result<Self, DevIssuerError> {
        let bad = || DevIssuerError::BadKey { path: path.clone() };
        let secret = p256::SecretKey::from_pkcs8_pem(pem).map_err(|_| bad())?;
        let der = secret.to_pkcs8_der().map_err(|_| bad())?;
        let encoding = EncodingKey::from_ec_der(der.as_bytes());
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).map_err(|_| bad())?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(|_| bad())?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self { inner: Arc::new(Inner { path, kid, encoding, jwk }) })
    }

    pub fn issuer(&self) -> &'static str {
        DEV_ISSUER
    }

    pub fn audience(&self) -> &'static str {
        DEV_AUDIENCE
    }

    /// Where the private key is kept.
    pub fn key_path(&self) -> &Path {
        &self.inner.path
    }

    /// The key id: the key's RFC 7638 thumbprint, so it is the same after a restart.
    pub fn kid(&self) -> &str {
        &self.inner.kid
    }

    /// The public key set, as an issuer would publish it.
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: vec![self.inner.jwk.clone()] }
    }

    /// A token for user `subject` with `roles`, valid for `ttl`.
    pub fn mint(&self, subject: &str, roles: &[Role], ttl: Duration) -> Result<String, DevIssuerError> {
        let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        self.sign(json!({ "sub": subject, "roles": roles }), ttl)
    }

    /// A token for service `name` (claim `svc`), acting for end user `on_behalf_of` when given.
    pub fn mint_service(
        &self,
        name: &str,
        on_behalf_of: Option<&str>,
        ttl: Duration,
    ) -> Result<String, DevIssuerError> {
        let mut claims = json!({ "sub": name, "svc": name });
        if let (Some(user), Some(map)) = (on_behalf_of, claims.as_object_mut()) {
            map.insert("on_behalf_of".into(), Value::from(user));
        }
        self.sign(claims, ttl)
    }

    fn sign(&self, mut claims: Value, ttl: Duration) -> Result<String, DevIssuerError> {
        let now = jsonwebtoken::get_current_timestamp();
        let exp = now.saturating_add(ttl.as_secs().max(1));
        if let Some(map) = claims.as_object_mut() {
            map.insert("iss".into(), DEV_ISSUER.into());
            map.insert("aud".into(), DEV_AUDIENCE.into());
            map.insert("iat".into(), now.into());
            map.insert("nbf".into(), now.into());
            map.insert("exp".into(), exp.into());
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.inner.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.inner.encoding)
            .map_err(|e| DevIssuerError::Mint(e.to_string()))
    }
}

fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes a new key to a private temporary file and links it into place, so a concurrent
/// start-up either wins or reads the complete key the other one wrote.
fn create_key(path: &Path) -> Result<String, DevIssuerError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DevIssuerError::Io { path, source }
    };
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| DevIssuerError::Mint(format!("cannot encode a new key: {e}")))?;
    // Random, not the clock: threads of one process starting together (tests, or hosts in one
    // process) read the same nanoseconds often enough to collide on the name.
    let nonce = rand_core::RngCore::next_u64(&mut rand_core::OsRng);
    let tmp = path.with_extension(format!("pem.{}.{nonce}.tmp", std::process::id()));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io(&tmp))?;
        file.write_all(pem.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(&tmp)(e)
        })?;
    }
    let linked = match std::fs::hard_link(&tmp, path) {
        // A file system without hard links: a rename is nearly as good.
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists && !path.exists() => {
            std::fs::rename(&tmp, path)
        }
        other => other,
    };
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created the dev issuer's signing key");
            Ok(pem.to_string())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path).map_err(io(path))
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// A key readable by others is made private again.
fn restrict_permissions(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "dev issuer key was readable by others; setting 0600");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
