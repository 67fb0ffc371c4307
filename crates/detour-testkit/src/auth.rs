//! Callers with tokens: every `detour.*` RPC needs one, in tests as in production.

use std::sync::OnceLock;
use std::time::Duration;

use detour_auth::{Bearer, DevIssuer, IssuerSettings, Role};
use tonic::service::interceptor::InterceptedService;

/// A connection that sends a bearer token with every call.
pub type Channel = InterceptedService<tonic::transport::Channel, Bearer>;

/// The issuer tests mint with when a host trusts issuers over HTTP (PostgreSQL hosts, where the
/// development issuer is refused): one key for the whole test process.
pub fn test_issuer() -> DevIssuer {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    // The key is created while the lock is held: tests starting at once in one process would
    // otherwise each create one, and a host could read the file while another test writes it.
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        DevIssuer::load_or_create(dir.path()).unwrap();
        dir
    });
    DevIssuer::load_or_create(dir.path()).unwrap()
}

/// A token for a user with `roles`, valid for an hour.
pub fn token(issuer: &DevIssuer, subject: &str, roles: &[Role]) -> String {
    issuer.mint(subject, roles, Duration::from_secs(3600)).unwrap()
}

/// Serves [`test_issuer`]'s public keys at a JWKS URL on loopback, as an OpenID provider would,
/// and returns the issuer settings a host needs to trust it.
pub async fn jwks_issuer() -> IssuerSettings {
    static URL: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let url = URL
        .get_or_init(|| async {
            let jwks = serde_json::to_string(&test_issuer().jwks()).unwrap();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            // Its own thread and runtime: the keys must outlive any one test's runtime.
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async move {
                    listener.set_nonblocking(true).unwrap();
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let app = axum::Router::new().route(
                        "/jwks.json",
                        axum::routing::get(move || {
                            let jwks = jwks.clone();
                            async move { ([("content-type", "application/json")], jwks) }
                        }),
                    );
                    axum::serve(listener, app).await.unwrap();
                });
            });
            format!("http://{addr}/jwks.json")
        })
        .await;
    IssuerSettings::new(detour_auth::DEV_ISSUER, detour_auth::DEV_AUDIENCE, url.clone())
}
