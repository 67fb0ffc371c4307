//! Notifications leave intake through the real provider interface: a disruption reaches each
//! traveler on their preferred channel, a refused channel falls back to the next, a traveler no
//! channel reaches is marked undeliverable, and a contact's acknowledgement goes back the way
//! the traveler came. The provider is a local HTTP server that records what it was sent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use detour_proto::common::v1 as common;
use detour_proto::intake::v1 as pb;
use detour_proto::intake::v1::intake_service_client::IntakeServiceClient;
use detour_testkit::{Server, sqlite_settings};

/// The phone the provider refuses (an invalid number, as a real gateway would say).
const REFUSED_PHONE: &str = "+8613900000003";

#[derive(Clone, Default)]
struct Sent(Arc<Mutex<Vec<(String, serde_json::Value)>>>);

async fn provider() -> (String, Sent) {
    let sent = Sent::default();
    async fn messages(State(sent): State<Sent>, headers: HeaderMap, body: String) -> (StatusCode, String) {
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let key = headers.get("idempotency-key").unwrap().to_str().unwrap().to_owned();
        let refused = json["to"] == REFUSED_PHONE;
        sent.0.lock().unwrap().push((key.clone(), json));
        if refused {
            (StatusCode::BAD_REQUEST, r#"{"error":"invalid_number","message":"not a mobile number"}"#.into())
        } else {
            (StatusCode::OK, format!(r#"{{"id":"msg-{key}"}}"#))
        }
    }
    let app = Router::new().route("/v1/messages", post(messages)).with_state(sent.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, sent)
}

fn traveler(n: u32, language: &str, channels: &[common::Channel]) -> pb::TripTraveler {
    pb::TripTraveler {
        traveler: Some(common::Traveler {
            id: Some(common::TravelerId { value: format!("00000000-0000-4000-8000-{n:012}") }),
            full_name: format!("Traveler {n}"),
            email: format!("t{n}@storm.invalid"),
            phone: format!("+86139{n:08}"),
            preferred_language: language.into(),
            ..Default::default()
        }),
        contact_channels: channels.iter().map(|c| *c as i32).collect(),
    }
}

fn flight() -> pb::TripSegment {
    pb::TripSegment {
        segment: Some(common::Segment {
            kind: common::SegmentKind::Flight as i32,
            supplier_code: "CA".into(),
            service_reference: "CA981".into(),
            origin: "PEK".into(),
            destination: "JFK".into(),
            starts_at: Some(prost_types::Timestamp { seconds: 1_796_259_600, nanos: 0 }),
            ..Default::default()
        }),
        local_date: "2026-12-03".into(),
    }
}

async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..400 {
        if let Some(t) = check().await {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disruption_notices_and_acknowledgements_reach_travelers_through_the_provider() {
    let (url, sent) = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = sqlite_settings(dir.path());
    settings.notify.http_url = Some(url);
    let bus = detour_events::connect_bus("inproc://").unwrap();
    let (server, metrics_addr) = Server::start_with_metrics(&settings, &[detour_intake::MODULE], bus).await;
    let mut client = IntakeServiceClient::new(server.channel().await);

    let sms = common::Channel::Sms;
    let app = common::Channel::App;
    let email = common::Channel::Email;
    client
        .upsert_trip(pb::UpsertTripRequest {
            trip: Some(pb::Trip {
                booking_reference: "PNRN01".into(),
                travelers: vec![
                    traveler(1, "zh-CN", &[sms]),
                    traveler(2, "en", &[app, sms]),
                    // SMS is refused and e-mail has no sender here: nothing reaches traveler 3.
                    traveler(3, "en", &[sms, email]),
                ],
                segments: vec![flight()],
            }),
        })
        .await
        .unwrap();
    let report = client
        .report_disruption(pb::ReportDisruptionRequest {
            kind: pb::DisruptionKind::FlightCancelled as i32,
            scope: Some(pb::Scope {
                scope: Some(pb::scope::Scope::Flight(pb::FlightScope {
                    flight_number: "CA981".into(),
                    local_date: "2026-12-03".into(),
                })),
            }),
            reason: "heavy snow".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let id = report.incident_id.unwrap();
    let incident = wait_for("every notice to be handled", async || {
        let i = client
            .get_incident(pb::GetIncidentRequest { incident_id: Some(id.clone()) })
            .await
            .unwrap()
            .into_inner()
            .incident
            .unwrap();
        (i.fanout == pb::FanoutState::Done as i32 && i.notifications_queued == 0 && i.cases_opened == 3)
            .then_some(i)
    })
    .await;
    assert_eq!((incident.notifications_delivered, incident.notifications_undeliverable), (2, 1));
    assert!(incident.last_delivered_at.is_some());

    let requests = sent.0.lock().unwrap().clone();
    let to = |who: &str| requests.iter().filter(|(_, j)| j["to"] == who).collect::<Vec<_>>();
    let zh = to("+8613900000001");
    assert_eq!(zh.len(), 1);
    assert_eq!(zh[0].1["channel"], "sms");
    assert_eq!(zh[0].1["language"], "zh");
    let body = zh[0].1["body"].as_str().unwrap();
    assert!(body.contains("CA981") && body.contains("DT-"), "{body}");
    assert!(body.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "{body}");
    let push = to("00000000-0000-4000-8000-000000000002");
    assert_eq!(push.len(), 1, "APP first for traveler 2: push to the traveler id");
    assert_eq!(push[0].1["channel"], "push");
    assert_eq!(to(REFUSED_PHONE).len(), 1, "a refusal is not retried on the same channel");

    let notes = client
        .list_notifications(pb::ListNotificationsRequest {
            incident_id: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .notifications;
    let lost = notes.iter().find(|n| n.status == pb::NotificationStatus::Undeliverable as i32).unwrap();
    let tried: Vec<_> = lost.attempts.iter().map(|a| (a.channel, a.accepted)).collect();
    assert_eq!(tried, [(sms as i32, false), (email as i32, false)]);
    assert!(!lost.attempts[0].detail.contains(REFUSED_PHONE), "{}", lost.attempts[0].detail);
    let delivered = notes.iter().find(|n| n.status == pb::NotificationStatus::Delivered as i32).unwrap();
    let key = delivered.notification_id.clone().unwrap().value;
    assert_eq!(delivered.attempts[0].detail, format!("msg-{key}"), "the provider's id is kept");

    // A walk-in traveler's SMS is acknowledged by SMS with the case number.
    let opened = client.open_case(walk_in("+447700900123")).await.unwrap().into_inner();
    assert_eq!(opened.acknowledgement_channel, sms as i32);
    let ack = wait_for("the acknowledgement", async || {
        sent.0.lock().unwrap().iter().find(|(_, j)| j["to"] == "+447700900123").cloned()
    })
    .await;
    assert_eq!(
        ack.0,
        opened.acknowledgement_id.unwrap().value,
        "sent with the notification id as idempotency key"
    );
    assert!(ack.1["body"].as_str().unwrap().contains(&opened.case_number));

    // The fan-out's notices and the acknowledgement went from their writers to the dispatcher
    // in memory, and the refused SMS gave way to e-mail in the same delivery: nothing needed
    // the claim.
    let metrics = detour_testkit::scrape_metrics(metrics_addr).await;
    let value = |name: &str, labels: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(labels))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(value("intake_notifications_taken_total", "source=\"handoff\""), 4, "{metrics}");
    assert_eq!(value("intake_notifications_taken_total", "source=\"claim\""), 0, "{metrics}");
    assert_eq!(
        value("intake_notification_sends_total", "channel=\"sms\",outcome=\"next_channel\""),
        1,
        "{metrics}"
    );
    assert_eq!(
        value("intake_notification_sends_total", "channel=\"email\",outcome=\"undeliverable\""),
        1,
        "{metrics}"
    );
    assert_eq!(
        value("intake_notification_sends_total", "channel=\"sms\",outcome=\"delivered\""),
        2,
        "{metrics}"
    );
    assert!(
        !metrics.contains(REFUSED_PHONE) && !metrics.contains("storm.invalid"),
        "no personal data in labels"
    );
    server.stop().await;
}

/// A traveler the registry does not know, writing by SMS about a flight.
fn walk_in(phone: &str) -> pb::OpenCaseRequest {
    pb::OpenCaseRequest {
        traveler: Some(common::Traveler {
            full_name: "Walk In".into(),
            phone: phone.into(),
            ..Default::default()
        }),
        segment: Some(detour_testkit::flight_segment()),
        channel: common::Channel::Sms as i32,
        description: "Where is my bag?".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_handoff_off_every_notification_goes_through_the_claim() {
    let (url, sent) = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = sqlite_settings(dir.path());
    settings.notify.http_url = Some(url);
    settings.intake_notify_handoff = 0;
    let bus = detour_events::connect_bus("inproc://").unwrap();
    let (server, metrics_addr) = Server::start_with_metrics(&settings, &[detour_intake::MODULE], bus).await;
    let mut client = IntakeServiceClient::new(server.channel().await);
    let opened = client.open_case(walk_in("+447700900124")).await.unwrap().into_inner();
    let ack = wait_for("the acknowledgement", async || {
        sent.0.lock().unwrap().iter().find(|(_, j)| j["to"] == "+447700900124").cloned()
    })
    .await;
    assert_eq!(ack.0, opened.acknowledgement_id.unwrap().value);
    let metrics = detour_testkit::scrape_metrics(metrics_addr).await;
    assert!(
        metrics.lines().any(|l| l.starts_with("intake_notifications_taken_total{source=\"claim\"} 1")),
        "{metrics}"
    );
    assert!(!metrics.contains("source=\"handoff\""), "{metrics}");
    server.stop().await;
}
