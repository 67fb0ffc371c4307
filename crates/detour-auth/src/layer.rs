//! The tower layer that authenticates every call and enforces the policy before a handler runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::error::AuthError;
use crate::policy::Policy;
use crate::verifier::Verifier;

/// Paths anyone may call: gRPC health checking (probes, load balancers) and server reflection.
const OPEN_PREFIXES: &[&str] = &["/grpc.health.v1.Health/", "/grpc.reflection."];

/// Whether a request path is served without a token.
pub fn is_open_path(path: &str) -> bool {
    OPEN_PREFIXES.iter().any(|prefix| path.starts_with(prefix))
}

/// `Server::builder().layer(AuthLayer::new(verifier, policy))`.
///
/// Every call except [health and reflection](is_open_path) must carry
/// `authorization: Bearer <jwt>`; the token is verified by the [`Verifier`], the caller checked
/// against the [`Policy`] (an RPC without an entry is refused), and the
/// [`Principal`](crate::Principal) put into the request's extensions for the handler. A refused
/// call never reaches the inner service: it is answered at once, trailers-only (HTTP 200,
/// `content-type: application/grpc`, `grpc-status` 16 UNAUTHENTICATED or 7 PERMISSION_DENIED,
/// or 14 UNAVAILABLE while an issuer's keys cannot be fetched, and a short `grpc-message`).
///
/// Key fetches happen inside the call's future, never blocking the runtime. A CORS layer, if
/// any, belongs outside this one, so that preflight requests (which carry no token) are
/// answered before they get here.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    verifier: Arc<Verifier>,
    policy: Arc<Policy>,
}

impl AuthLayer {
    pub fn new(verifier: Arc<Verifier>, policy: Arc<Policy>) -> Self {
        Self { verifier, policy }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, verifier: self.verifier.clone(), policy: self.policy.clone() }
    }
}

/// The RPC (`package.Service/Method`) the policy allowed the request's principal to call, put in
/// the request's extensions beside the [`Principal`](crate::Principal): the handler's own view
/// of the call does not carry its path, and the audit trail records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedRpc(pub String);

impl AuthorizedRpc {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The service [`AuthLayer`] wraps around the routes.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    verifier: Arc<Verifier>,
    policy: Arc<Policy>,
}

/// Future of [`AuthService`].
pub type AuthFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for AuthService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = AuthFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The instance that was polled ready serves this call; leave a fresh clone behind.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        if is_open_path(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        let verifier = self.verifier.clone();
        let policy = self.policy.clone();
        Box::pin(async move {
            let path = request.uri().path();
            let checked = match verifier.verify_headers(request.headers()).await {
                Ok(principal) => policy.check(path, &principal).map(|()| principal),
                Err(e) => Err(e),
            };
            match checked {
                Ok(principal) => {
                    let rpc = AuthorizedRpc(path.trim_start_matches('/').to_owned());
                    request.extensions_mut().insert(principal);
                    request.extensions_mut().insert(rpc);
                    inner.call(request).await
                }
                Err(error) => {
                    refused(path, &error);
                    Ok(error.to_status().into_http())
                }
            }
        })
    }
}

fn refused(path: &str, error: &AuthError) {
    match error {
        AuthError::KeysUnavailable { .. } => tracing::warn!(rpc = %path, reason = %error, "call refused"),
        _ => tracing::debug!(rpc = %path, reason = %error, "call refused"),
    }
}
