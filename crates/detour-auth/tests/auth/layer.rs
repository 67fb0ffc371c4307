//! The auth layer: every RPC of the policy, driven with real HTTP requests, and a real tonic server.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::body::Body;
use tonic::{Code, Request, Response, Status};
use tower::{Layer as _, ServiceExt as _};

use detour_auth::{AuthLayer, AuthSettings, DevIssuer, Policy, Principal, Role, Verifier};
use detour_proto::triage::v1 as triage;

struct Fixture {
    _dir: tempfile::TempDir,
    dev: DevIssuer,
    layer: AuthLayer,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevIssuer::load_or_create(dir.path()).unwrap();
    let verifier =
        Verifier::new(AuthSettings { dev_issuer: Some(dev.clone()), ..AuthSettings::default() }).unwrap();
    let layer = AuthLayer::new(Arc::new(verifier), Arc::new(Policy::embedded().unwrap()));
    Fixture { _dir: dir, dev, layer }
}

const TTL: Duration = Duration::from_secs(60);

/// One request through the layer to an inner service that answers OK and reports the principal
/// it was handed. Answers (grpc-status, grpc-message, principal id seen by the inner service).
async fn call(layer: &AuthLayer, path: &str, token: Option<&str>) -> (Code, String, Option<String>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let inner = {
        let calls = calls.clone();
        tower::service_fn(move |request: http::Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let seen = Principal::from_extensions(request.extensions()).map(|p| p.id().to_owned());
            async move {
                let mut response = http::Response::new(Body::default());
                response.headers_mut().insert("content-type", "application/grpc".parse().unwrap());
                response.headers_mut().insert("grpc-status", "0".parse().unwrap());
                if let Some(id) = seen {
                    response.headers_mut().insert("x-principal", id.parse().unwrap());
                }
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://detour.test{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = layer.layer(inner).oneshot(request.body(Body::default()).unwrap()).await.unwrap();

    assert_eq!(response.status(), http::StatusCode::OK, "{path}");
    assert_eq!(response.headers()["content-type"], "application/grpc", "{path}");
    // grpc-message is percent-encoded on the wire; tonic decodes it as a client would.
    let status = Status::from_header_map(response.headers()).expect("a trailers-only grpc-status");
    let (code, message) = (status.code(), status.message().to_owned());
    let seen = response.headers().get("x-principal").map(|p| p.to_str().unwrap().to_owned());
    let called = calls.load(Ordering::SeqCst);
    assert_eq!(
        called == 1,
        code == Code::Ok,
        "{path}: the inner service is called exactly when the call is let through"
    );
    if code != Code::Ok {
        assert!(!message.is_empty(), "{path}: a refusal says why");
    }
    (code, message, seen)
}

#[tokio::test]
async fn every_rpc_in_the_policy_is_enforced() {
    let f = fixture();
    let policy = Policy::embedded().unwrap();
    let mut checked = 0;
    for (rpc, rule) in policy.rules() {
        let path = format!("/{rpc}");
        let (code, message, _) = call(&f.layer, &path, None).await;
        assert_eq!(code, Code::Unauthenticated, "{rpc} without a token");
        assert_eq!(message, "missing bearer token");

        for role in Role::ALL {
            let token = f.dev.mint(&format!("user-{role}"), &[role], TTL).unwrap();
            let (code, message, seen) = call(&f.layer, &path, Some(&token)).await;
            if rule.roles.contains(&role) {
                assert_eq!(code, Code::Ok, "{rpc} as {role}: {message}");
                assert_eq!(
                    seen.as_deref(),
                    Some(format!("user-{role}").as_str()),
                    "{rpc}: principal handed on"
                );
            } else {
                assert_eq!(code, Code::PermissionDenied, "{rpc} as {role}");
                assert!(message.contains(rpc), "{message}");
            }
            checked += 1;
        }

        let no_roles = f.dev.mint("nobody", &[], TTL).unwrap();
        assert_eq!(
            call(&f.layer, &path, Some(&no_roles)).await.0,
            Code::PermissionDenied,
            "{rpc} without roles"
        );

        let service = f.dev.mint_service("portal", Some("traveler-1"), TTL).unwrap();
        let (code, _, seen) = call(&f.layer, &path, Some(&service)).await;
        let expected = if rule.services { Code::Ok } else { Code::PermissionDenied };
        assert_eq!(code, expected, "{rpc} as a service");
        if rule.services {
            assert_eq!(seen.as_deref(), Some("portal"));
        }
    }
    assert!(checked >= 15 * Role::ALL.len(), "the policy table was walked ({checked} checks)");
}

#[tokio::test]
async fn refused_tokens_never_reach_the_service() {
    let f = fixture();
    let path = "/detour.intake.v1.IntakeService/GetCase";
    let expired = {
        // Minted by the same key, expired beyond the leeway.
        let claims = serde_json::json!({
            "iss": "detour-dev", "aud": "detour", "sub": "u", "roles": ["admin"],
            "exp": jsonwebtoken::get_current_timestamp() - 600,
        });
        let pem = std::fs::read_to_string(f.dev.key_path()).unwrap();
        let key = {
            use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
            let secret = p256::SecretKey::from_pkcs8_pem(&pem).unwrap();
            jsonwebtoken::EncodingKey::from_ec_der(secret.to_pkcs8_der().unwrap().as_bytes())
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(f.dev.kid().to_owned());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let cases = [
        ("expired", expired.as_str(), "token expired"),
        ("garbage", "garbage", "malformed token: not a compact JWS"),
        ("alg none", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.", "token algorithm `none` is not accepted"),
    ];
    for (name, token, said) in cases {
        let (code, message, _) = call(&f.layer, path, Some(token)).await;
        assert_eq!(code, Code::Unauthenticated, "{name}");
        assert_eq!(message, said, "{name}");
    }
    // Another scheme than Bearer.
    let calls = Arc::new(AtomicUsize::new(0));
    let inner = {
        let calls = calls.clone();
        tower::service_fn(move |_: http::Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(http::Response::new(Body::default())) }
        })
    };
    let request = http::Request::builder()
        .uri(format!("http://detour.test{path}"))
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .body(Body::default())
        .unwrap();
    let response = f.layer.layer(inner).oneshot(request).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "16");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn health_and_reflection_need_no_token() {
    let f = fixture();
    for path in [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ] {
        let (code, _, seen) = call(&f.layer, path, None).await;
        assert_eq!(code, Code::Ok, "{path}");
        assert_eq!(seen, None);
    }
}

#[tokio::test]
async fn rpcs_without_a_policy_entry_are_refused() {
    let f = fixture();
    let admin = f.dev.mint("root", &[Role::Admin], TTL).unwrap();
    for path in [
        "/detour.intake.v1.IntakeService/DeleteEverything",
        "/detour.intake.v2.IntakeService/OpenCase",
        "/detour.intake.v1.IntakeService/OpenCase/",
        "/other.v1.Service/Method",
        "/grpc.health.v1.HealthX/Check",
        "/",
    ] {
        assert_eq!(call(&f.layer, path, None).await.0, Code::Unauthenticated, "{path}");
        assert_eq!(call(&f.layer, path, Some(&admin)).await.0, Code::PermissionDenied, "{path}");
    }
}

/// A handler that answers with the principal it was given, through `Principal::from_request`.
struct Triage;

#[tonic::async_trait]
impl triage::triage_service_server::TriageService for Triage {
    async fn get_triage(
        &self,
        request: Request<triage::GetTriageRequest>,
    ) -> Result<Response<triage::GetTriageResponse>, Status> {
        let who = Principal::from_request(&request).map(|p| p.id().to_owned()).unwrap_or_default();
        Err(Status::not_found(format!("handled for {who}")))
    }

    async fn list_queue(
        &self,
        _: Request<triage::ListQueueRequest>,
    ) -> Result<Response<triage::ListQueueResponse>, Status> {
        Ok(Response::new(triage::ListQueueResponse::default()))
    }
}

#[tokio::test]
async fn a_tonic_server_with_the_layer() {
    let f = fixture();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(detour_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .layer(f.layer.clone())
        .add_service(health)
        .add_service(reflection)
        .add_service(triage::triage_service_server::TriageServiceServer::new(Triage))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    let server = tokio::spawn(server);

    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(
        status.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let mut client = triage::triage_service_client::TriageServiceClient::new(channel);
    let err = client.get_triage(triage::GetTriageRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(err.message(), "missing bearer token");

    let with_token = |token: &str| {
        let mut request = Request::new(triage::GetTriageRequest::default());
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    };
    let agent = f.dev.mint("agent-1", &[Role::Agent], TTL).unwrap();
    let err = client.get_triage(with_token(&agent)).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::NotFound, "handled for agent-1"));

    let partner = f.dev.mint("airline-1", &[Role::Partner], TTL).unwrap();
    let err = client.get_triage(with_token(&partner)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "caller may not call detour.triage.v1.TriageService/GetTriage");

    server.abort();
}
