//! What every service gets from its host, checked through the real server: health that follows
//! dependencies, reflection, gRPC-Web, metrics, and field-level validation errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use detour_proto::intake::v1 as intake;
use detour_server::Settings;
use detour_testkit::Role;
use detour_testkit::{Server, eventually, test_settings, violated_fields};
use support::lifecycle::{self, Clients, cancelled_flight};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

mod support;

fn embedded(dir: &tempfile::TempDir) -> Settings {
    Settings { data_dir: dir.path().to_owned(), ..test_settings() }
}

#[tokio::test]
async fn health_stays_not_serving_while_the_event_bus_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: the transport never answers.
    let settings = Settings { events_url: "redis://127.0.0.1:1".into(), ..embedded(&dir) };
    let bus = detour_events::connect_bus(&settings.events_url).unwrap();
    let server = Server::spawn(&settings, &[detour_intake::MODULE], bus, None).await;
    let mut seen = Vec::new();
    for _ in 0..10 {
        if let Ok(channel) =
            tonic::transport::Channel::from_shared(server.url.clone()).unwrap().connect().await
        {
            let status = HealthClient::new(channel)
                .check(HealthCheckRequest { service: detour_proto::service_names::INTAKE.into() })
                .await
                .unwrap()
                .into_inner()
                .status;
            seen.push(status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|s| *s == ServingStatus::NotServing as i32), "{seen:?}");
    server.stop().await;
}

#[tokio::test]
async fn reflection_lists_every_service_in_v1_and_v1alpha() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient as V1;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest as V1Req;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse as V1Resp;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as V1Alpha;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AReq;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AResp;

    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(&embedded(&dir), detour_cli::MODULES, detour_events::connect_bus("inproc://").unwrap())
            .await;
    let channel = server.channel().await;

    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(V1Req::ListServices(String::new())),
    };
    let mut stream = V1::new(channel.clone())
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(V1Resp::ListServicesResponse(list)) = stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        detour_proto::service_names::INTAKE,
        detour_proto::service_names::TRIAGE,
        detour_proto::service_names::SUPPLIER,
        detour_proto::service_names::COMPENSATION,
        detour_proto::service_names::FEEDBACK,
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }

    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AReq::FileContainingSymbol("detour.intake.v1.IntakeService".into())),
    };
    let mut stream = V1Alpha::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(AResp::FileDescriptorResponse(files)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("no descriptor for the intake service")
    };
    assert!(!files.file_descriptor_proto.is_empty());
    server.stop().await;
}

/// A gRPC-Web call as a browser makes it: HTTP/1.1, `application/grpc-web+proto`, the
/// message in a length-prefixed frame.
#[tokio::test]
async fn grpc_web_reaches_the_services_over_http1() {
    use prost::Message;

    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(&embedded(&dir), detour_cli::MODULES, detour_events::connect_bus("inproc://").unwrap())
            .await;
    let addr = server.url.trim_start_matches("http://").to_owned();

    let body = intake::ListCasesRequest { page_size: 5, ..Default::default() }.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    let token = detour_testkit::token(&server.issuer, "agent-web", &[Role::Agent]);
    let head = format!(
        "POST /detour.intake.v1.IntakeService/ListCases HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        frame.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&frame).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&response).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("content-type: application/grpc-web+proto"), "{text}");
    assert!(text.contains("grpc-status:0") || text.contains("grpc-status: 0"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn metrics_count_calls_by_method_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let settings = embedded(&dir);
    let bus = detour_events::connect_bus("inproc://").unwrap();
    let (server, metrics_addr) = Server::start_with_metrics(&settings, detour_cli::MODULES, bus).await;
    let mut clients = Clients::single(server.channel().await);
    clients.intake.open_case(cancelled_flight("metrics-1", "Ann Lee")).await.unwrap();
    let not_found = clients
        .intake
        .get_case(intake::GetCaseRequest {
            case_id: lifecycle::case_ref(&detour_domain::CaseId::new().to_string()),
        })
        .await
        .unwrap_err();
    assert_eq!(not_found.code(), tonic::Code::NotFound);

    // A made-up path, refused for want of a token before any routing, is counted as "other".
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut made_up = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /detour.madeup.v1.X/Y HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/grpc-web+proto\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
    );
    made_up.write_all(head.as_bytes()).await.unwrap();
    made_up.write_all(&[0, 0, 0, 0, 0]).await.unwrap();
    let mut answer = String::new();
    made_up.read_to_string(&mut answer).await.unwrap();
    assert!(answer.to_lowercase().contains("grpc-status: 16"), "{answer}");

    let response = detour_testkit::scrape_metrics(metrics_addr).await;
    let line = |method: &str, code: &str| {
        response.lines().any(|l| {
            l.starts_with("grpc_server_requests_total")
                && l.contains(&format!("method=\"/detour.intake.v1.IntakeService/{method}\""))
                && l.contains(&format!("code=\"{code}\""))
        })
    };
    assert!(line("OpenCase", "0"), "{response}");
    assert!(line("GetCase", "5"), "{response}");
    // Personal data never becomes a label, nor does a path a caller made up.
    assert!(!response.contains("example.com") && !response.contains("Ann Lee"));
    assert!(!response.contains("madeup"), "{response}");
    assert!(
        response.lines().any(|l| l.contains("method=\"other\"") && l.contains("code=\"16\"")),
        "{response}"
    );
    server.stop().await;
}

#[tokio::test]
async fn invalid_input_is_answered_with_every_field_violation_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(&embedded(&dir), detour_cli::MODULES, detour_events::connect_bus("inproc://").unwrap())
            .await;
    let mut clients = Clients::single(server.channel().await);

    let mut request = cancelled_flight("bad-1", "Li Wei");
    request.traveler.as_mut().unwrap().email = "not-an-email".into();
    request.segment.as_mut().unwrap().price.as_mut().unwrap().currency = "XXQ".into();
    request.channel = 0;
    request.description = String::new();
    let status = clients.intake.open_case(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, ["channel", "description", "segment.price.currency", "traveler.email"]);

    // An empty request is refused too, not a panic, and nothing was stored.
    let status = clients.intake.open_case(intake::OpenCaseRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let listed = clients.intake.list_cases(intake::ListCasesRequest::default()).await.unwrap().into_inner();
    assert!(listed.cases.is_empty());

    let status = clients
        .intake
        .list_cases(intake::ListCasesRequest {
            page_size: 9_999,
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let fields = violated_fields(&status);
    assert_eq!(fields, ["page_size", "page_token"]);
    server.stop().await;
}

/// Every `detour.*` RPC needs a token and the right role, through the real server; health and
/// reflection stay open (see the policy table test in detour-auth for every RPC and role).
#[tokio::test]
async fn calls_need_a_token_and_a_role_the_policy_allows() {
    use detour_proto::compensation::v1 as comp;
    use detour_proto::compensation::v1::compensation_service_client::CompensationServiceClient;
    use detour_proto::intake::v1::intake_service_client::IntakeServiceClient;

    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(&embedded(&dir), detour_cli::MODULES, detour_events::connect_bus("inproc://").unwrap())
            .await;

    let anonymous = IntakeServiceClient::new(server.raw_channel().await)
        .list_cases(intake::ListCasesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);

    let forged = detour_testkit::Bearer::new("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.").unwrap();
    let status = IntakeServiceClient::with_interceptor(server.raw_channel().await, forged)
        .list_cases(intake::ListCasesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    // A partner may answer supplier requests, not read the case desk.
    let partner = IntakeServiceClient::new(server.channel_as("airline-ca", &[Role::Partner]).await)
        .list_cases(intake::ListCasesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(partner.code(), tonic::Code::PermissionDenied);

    // An agent opens cases but may not accept an offer on the traveler's behalf.
    let mut agent = Clients::single(server.channel_as("agent-7", &[Role::Agent]).await);
    agent.intake.open_case(cancelled_flight("auth-1", "Wang Fang")).await.unwrap();
    let accept = CompensationServiceClient::new(server.channel_as("agent-7", &[Role::Agent]).await)
        .accept_offer(comp::AcceptOfferRequest { offer_id: None })
        .await
        .unwrap_err();
    assert_eq!(accept.code(), tonic::Code::PermissionDenied);
    // Finance may: the request then reaches the handler, which validates it.
    let accept = CompensationServiceClient::new(server.channel_as("fin-2", &[Role::Finance]).await)
        .accept_offer(comp::AcceptOfferRequest { offer_id: None })
        .await
        .unwrap_err();
    assert_eq!(accept.code(), tonic::Code::InvalidArgument);

    let health = HealthClient::new(server.raw_channel().await)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .unwrap();
    assert_eq!(health.into_inner().status, ServingStatus::Serving as i32);
    server.stop().await;
}

/// The audit trail answers by case, by user (who acted, or was acted for) and by time window,
/// across every service the host runs, a page at a time; bad filters are refused by field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_is_queried_by_case_user_and_time() {
    use detour_proto::audit::v1 as audit;
    use detour_proto::audit::v1::audit_service_client::AuditServiceClient;

    let dir = tempfile::tempdir().unwrap();
    let bus = detour_events::connect_bus("inproc://").unwrap();
    let server = Server::start(&embedded(&dir), detour_cli::MODULES, bus).await;
    let mut ann = intake::intake_service_client::IntakeServiceClient::new(
        server.channel_as("ann", &[Role::Agent]).await,
    );
    let mut bob = intake::intake_service_client::IntakeServiceClient::new(
        server.channel_as("bob", &[Role::Agent]).await,
    );
    let trail = AuditServiceClient::new(server.channel_as("sup", &[Role::Supervisor]).await);
    let list = |req: audit::ListAuditRecordsRequest| {
        let mut t = trail.clone();
        async move { t.list_audit_records(req).await.unwrap().into_inner() }
    };
    let first =
        ann.open_case(cancelled_flight("audit-1", "Ann Case")).await.unwrap().into_inner().case_id.unwrap();
    // Everything Ann's case sets off (intake, triage, supplier, compensation, intake again) is
    // done before the time window's edge.
    eventually("ann's case settles", Duration::from_secs(20), || async {
        let page =
            list(audit::ListAuditRecordsRequest { case_id: Some(first.clone()), ..Default::default() }).await;
        (page.records.len() >= 6).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = prost_types::Timestamp::from(std::time::SystemTime::now());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second =
        bob.open_case(cancelled_flight("audit-2", "Bob Case")).await.unwrap().into_inner().case_id.unwrap();

    // Bob's own call and what triage and the others did for him once his case arrived.
    let bobs = eventually("triage acts for bob", Duration::from_secs(20), || async {
        let page =
            list(audit::ListAuditRecordsRequest { actor_id: "bob".into(), ..Default::default() }).await;
        page.records.iter().any(|r| r.service == "triage").then_some(page)
    })
    .await;
    assert!(bobs.records.iter().all(|r| r.case_id.as_ref() == Some(&second)), "{bobs:?}");
    assert!(bobs.records.iter().any(|r| r.actor.as_ref().unwrap().id == "bob"));
    let for_bob = bobs.records.iter().find(|r| r.service == "triage").unwrap().actor.clone().unwrap();
    assert_eq!((for_bob.id.as_str(), for_bob.on_behalf_of.as_str()), ("triage", "bob"));

    let of_first =
        list(audit::ListAuditRecordsRequest { case_id: Some(first.clone()), ..Default::default() }).await;
    assert!(
        !of_first.records.is_empty() && of_first.records.iter().all(|r| r.case_id.as_ref() == Some(&first))
    );
    let before = list(audit::ListAuditRecordsRequest { to: Some(between), ..Default::default() }).await;
    assert!(before.records.iter().all(|r| r.case_id.as_ref() != Some(&second)), "{before:?}");
    assert!(before.records.iter().any(|r| r.case_id.as_ref() == Some(&first)), "{before:?}");
    let after = list(audit::ListAuditRecordsRequest { from: Some(between), ..Default::default() }).await;
    assert!(after.records.iter().all(|r| r.case_id.as_ref() == Some(&second)), "{after:?}");
    // Newest first, in pages that neither repeat nor skip: once Bob's case has settled as Ann's
    // did (supplier and compensation may still be acting for it after triage), so no record
    // arrives between the listing and the pages.
    eventually("bob's case settles", Duration::from_secs(20), || async {
        let page =
            list(audit::ListAuditRecordsRequest { case_id: Some(second.clone()), ..Default::default() })
                .await;
        let before = list(audit::ListAuditRecordsRequest::default()).await.records.len();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = list(audit::ListAuditRecordsRequest::default()).await.records.len();
        (page.records.len() >= 6 && before == after).then_some(())
    })
    .await;
    let all = list(audit::ListAuditRecordsRequest::default()).await.records;
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(audit::ListAuditRecordsRequest {
            page_size: 3,
            page_token: token.clone(),
            ..Default::default()
        })
        .await;
        paged.extend(page.records.into_iter().map(|r| r.audit_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let ids: Vec<String> = all.iter().map(|r| r.audit_id.clone()).collect();
    assert!(paged.len() >= ids.len() && paged[..ids.len()] == ids[..], "{paged:?} vs {ids:?}");

    let bad = trail
        .clone()
        .list_audit_records(audit::ListAuditRecordsRequest {
            from: Some(between),
            to: Some(between),
            page_size: 9999,
            page_token: "garbage".into(),
            case_id: Some(detour_proto::common::v1::CaseId { value: "not-a-case".into() }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), ["case_id.value", "to", "page_size", "page_token"]);
    // Agents do not read the trail.
    let mut agent = AuditServiceClient::new(server.channel_as("ann", &[Role::Agent]).await);
    let denied = agent.list_audit_records(audit::ListAuditRecordsRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    server.stop().await;
}
