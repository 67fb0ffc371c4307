//! Under overload intake sheds by priority, never a safety contact, and every refusal says
//! when to retry; per-caller rate limits hold back one flooding source without touching the
//! others. Nothing accepted is lost.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use detour_auth::Role;
use detour_proto::common::v1 as common;
use detour_proto::intake::v1 as pb;
use detour_proto::intake::v1::intake_service_client::IntakeServiceClient;
use detour_testkit::{Server, sqlite_settings};
use tonic::Code;
use tonic_types::StatusExt;

fn request(n: usize, channel: common::Channel, text: &str) -> pb::OpenCaseRequest {
    pb::OpenCaseRequest {
        traveler: Some(common::Traveler {
            full_name: format!("Flood {n}"),
            phone: format!("+44770091{n:04}"),
            ..Default::default()
        }),
        segment: Some(detour_testkit::flight_segment()),
        channel: channel as i32,
        description: text.into(),
        idempotency_key: format!("flood-{n}"),
        ..Default::default()
    }
}

#[derive(Debug, Default)]
struct Tally {
    accepted: usize,
    shed: usize,
}

async fn start(settings: detour_server::Settings) -> Server {
    let bus = detour_events::connect_bus("inproc://").unwrap();
    Server::start(&settings, &[detour_intake::MODULE], bus).await
}

fn retry_hint(status: &tonic::Status) -> std::time::Duration {
    let details = status.get_error_details();
    details.retry_info().and_then(|r| r.retry_delay).expect("a retry hint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_sheds_low_priority_first_and_never_a_safety_contact() {
    let dir = tempfile::tempdir().unwrap();
    let settings = detour_server::Settings { intake_admission_capacity: 2, ..sqlite_settings(dir.path()) };
    let server = start(settings).await;
    let client = IntakeServiceClient::new(server.channel().await);

    // 300 contacts at once: a partner feed's bulk (low), e-mails (normal), calls (high) and
    // travelers in danger (safety).
    let kinds = [
        (common::Channel::PartnerFeed, "Passenger list update: flight cancelled"),
        (common::Channel::Email, "My flight was cancelled, please rebook me"),
        (common::Channel::Phone, "Caller asks about the cancelled flight"),
        (common::Channel::Email, "My father fell at the gate and is injured, we need a doctor"),
    ];
    let calls = (0..300).map(|n| {
        let mut client = client.clone();
        let (channel, text) = kinds[n % kinds.len()];
        async move { (n % kinds.len(), client.open_case(request(n, channel, text)).await) }
    });
    let results = futures::future::join_all(calls).await;
    let mut tally: [Tally; 4] = Default::default();
    let mut accepted_ids = Vec::new();
    for (kind, result) in results {
        match result {
            Ok(ack) => {
                tally[kind].accepted += 1;
                accepted_ids.push(ack.into_inner().case_id.unwrap());
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(retry_hint(&status) > std::time::Duration::ZERO);
                let info = status.get_error_details().error_info().cloned().unwrap();
                assert_eq!(info.reason, "OVERLOADED");
                tally[kind].shed += 1;
            }
        }
    }
    let [low, normal, high, safety] = &tally;
    assert_eq!(safety.shed, 0, "a safety contact was shed: {tally:?}");
    assert_eq!(safety.accepted, 75);
    assert!(low.shed > 0, "nothing was shed at capacity 2: {tally:?}");
    assert!(low.shed >= high.shed, "low priority is shed first: {tally:?}");
    assert_eq!(low.accepted + low.shed + normal.accepted + normal.shed + high.accepted + high.shed, 225);

    // Every acknowledged contact is there; a retry of a shed one is accepted once load is gone.
    let mut client = client.clone();
    for id in &accepted_ids {
        client.get_case(pb::GetCaseRequest { case_id: Some(id.clone()) }).await.unwrap();
    }
    let again = client.open_case(request(0, kinds[0].0, kinds[0].1)).await.unwrap().into_inner();
    assert!(again.priority == pb::Priority::Low as i32);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flooding_caller_is_rate_limited_and_the_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let settings = detour_server::Settings {
        intake_rate_limit_per_second: 1,
        intake_rate_limit_burst: 5,
        ..sqlite_settings(dir.path())
    };
    let server = start(settings).await;
    let mut feed = IntakeServiceClient::new(server.channel_as("partner-feed-1", &[Role::Agent]).await);
    let mut agent = IntakeServiceClient::new(server.channel_as("agent-7", &[Role::Agent]).await);
    for n in 0..5 {
        feed.open_case(request(n, common::Channel::PartnerFeed, "Flight cancelled")).await.unwrap();
    }
    let limited =
        feed.open_case(request(5, common::Channel::PartnerFeed, "Flight cancelled")).await.unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted);
    assert_eq!(limited.get_error_details().error_info().unwrap().reason, "RATE_LIMITED");
    assert!(retry_hint(&limited) > std::time::Duration::ZERO);
    // Another caller has its own budget; a safety contact is never held back.
    agent.open_case(request(6, common::Channel::Phone, "Flight cancelled")).await.unwrap();
    let safety = request(7, common::Channel::PartnerFeed, "Passenger collapsed, ambulance called");
    assert_eq!(feed.open_case(safety).await.unwrap().into_inner().priority, pb::Priority::Safety as i32);
    server.stop().await;
}
