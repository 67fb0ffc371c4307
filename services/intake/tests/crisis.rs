//! The crisis path through intake's gRPC API: itineraries in, a disruption reported, one case
//! per affected traveler exactly once, contacts identified by a handle and merged into the
//! traveler's open case, idempotency across channels, and bad input refused clearly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use detour_proto::common::v1 as common;
use detour_proto::intake::v1 as pb;
use detour_proto::intake::v1::intake_service_client::IntakeServiceClient;
use detour_testkit::{Channel, Service, violated_fields};
use tonic::Code;

type Client = IntakeServiceClient<Channel>;

/// 2026-12-03T01:00:00Z: CA981 leaves PEK at 09:00 local.
const DEPARTS: i64 = 1_796_259_600;

fn ts(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

fn flight(number: &str, departs: i64) -> pb::TripSegment {
    pb::TripSegment {
        segment: Some(common::Segment {
            kind: common::SegmentKind::Flight as i32,
            supplier_code: number[..2].into(),
            service_reference: number.into(),
            origin: "PEK".into(),
            destination: "JFK".into(),
            starts_at: Some(ts(departs)),
            ends_at: Some(ts(departs + 13 * 3600)),
            ..Default::default()
        }),
        local_date: "2026-12-03".into(),
    }
}

fn hotel(code: &str, from: i64, nights: i64) -> pb::TripSegment {
    pb::TripSegment {
        segment: Some(common::Segment {
            kind: common::SegmentKind::Hotel as i32,
            supplier_code: code.into(),
            service_reference: "ROOM-1".into(),
            destination: "NYC".into(),
            starts_at: Some(ts(from)),
            ends_at: Some(ts(from + nights * 86_400)),
            ..Default::default()
        }),
        local_date: "2026-12-03".into(),
    }
}

fn traveler(n: u32, channels: &[common::Channel]) -> pb::TripTraveler {
    pb::TripTraveler {
        traveler: Some(common::Traveler {
            id: Some(common::TravelerId { value: traveler_id(n) }),
            full_name: format!("Traveler {n}"),
            email: format!("t{n}@storm.invalid"),
            phone: format!("+86139{n:08}"),
            preferred_language: if n.is_multiple_of(2) { "zh-CN".into() } else { "en".into() },
            ..Default::default()
        }),
        contact_channels: channels.iter().map(|c| *c as i32).collect(),
    }
}

fn traveler_id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn trip(booking: &str, travelers: Vec<pb::TripTraveler>, segments: Vec<pb::TripSegment>) -> pb::Trip {
    pb::Trip { booking_reference: booking.into(), travelers, segments }
}

async fn start() -> Service<Client> {
    Service::start(detour_intake::MODULE, IntakeServiceClient::new).await
}

/// Ten travelers on CA981 (three bookings), two on CA983, one of the CA981 ones also in a
/// hotel in New York.
async fn import_storm(client: &mut Client) -> pb::ImportItinerariesResponse {
    let sms = common::Channel::Sms;
    let app = common::Channel::App;
    let chunk1 = pb::ImportItinerariesRequest {
        trips: vec![
            trip("PNRA01", (1..=4).map(|n| traveler(n, &[sms])).collect(), vec![flight("CA981", DEPARTS)]),
            trip(
                "PNRA02",
                (5..=8).map(|n| traveler(n, &[app, sms])).collect(),
                vec![flight("CA981", DEPARTS), hotel("NYCHTL1", DEPARTS + 86_400, 2)],
            ),
        ],
    };
    let chunk2 = pb::ImportItinerariesRequest {
        trips: vec![
            trip("PNRA03", (9..=10).map(|n| traveler(n, &[])).collect(), vec![flight("CA981", DEPARTS)]),
            trip(
                "PNRB01",
                (11..=12).map(|n| traveler(n, &[])).collect(),
                vec![flight("CA983", DEPARTS + 3600)],
            ),
            // Refused: a flight without its local date, and no travelers.
            pb::Trip {
                booking_reference: "BROKEN".into(),
                travelers: vec![],
                segments: vec![pb::TripSegment { local_date: String::new(), ..flight("CA985", DEPARTS) }],
            },
        ],
    };
    client.import_itineraries(futures::stream::iter(vec![chunk1, chunk2])).await.unwrap().into_inner()
}

async fn cancel(client: &mut Client, number: &str, reason: &str) -> pb::ReportDisruptionResponse {
    client
        .report_disruption(pb::ReportDisruptionRequest {
            kind: pb::DisruptionKind::FlightCancelled as i32,
            scope: Some(pb::Scope {
                scope: Some(pb::scope::Scope::Flight(pb::FlightScope {
                    flight_number: number.into(),
                    local_date: "2026-12-03".into(),
                })),
            }),
            reason: reason.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn fanned_out(client: &mut Client, incident: &common::IncidentId) -> pb::Incident {
    for _ in 0..200 {
        let i = client
            .get_incident(pb::GetIncidentRequest { incident_id: Some(incident.clone()) })
            .await
            .unwrap()
            .into_inner()
            .incident
            .unwrap();
        if i.fanout == pb::FanoutState::Done as i32 {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the fan-out of {incident:?} did not finish");
}

async fn incident_notifications(client: &mut Client, incident: &common::IncidentId) -> Vec<pb::Notification> {
    let request = pb::ListNotificationsRequest {
        incident_id: Some(incident.clone()),
        page_size: 100,
        ..Default::default()
    };
    client.list_notifications(request).await.unwrap().into_inner().notifications
}

async fn cases_of_incident(client: &mut Client, incident: &common::IncidentId) -> Vec<pb::Case> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_cases(pb::ListCasesRequest {
                channel: common::Channel::Proactive as i32,
                page_size: 500,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.cases.into_iter().filter(|c| c.incident_id.as_ref() == Some(incident)));
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

fn find_request(scope: pb::scope::Scope, page_size: i32) -> pb::FindTravelersRequest {
    pb::FindTravelersRequest {
        scope: Some(pb::Scope { scope: Some(scope) }),
        page_size,
        page_token: String::new(),
    }
}

fn on_flight(number: &str) -> pb::scope::Scope {
    pb::scope::Scope::Flight(pb::FlightScope {
        flight_number: number.into(),
        local_date: "2026-12-03".into(),
    })
}

/// The first page of up to 100 travelers `scope` covers.
async fn found(client: &mut Client, scope: pb::scope::Scope) -> pb::FindTravelersResponse {
    client.find_travelers(find_request(scope, 100)).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn itineraries_are_imported_and_found_by_flight_airport_and_hotel() {
    let mut s = start().await;
    let imported = import_storm(&mut s.client).await;
    assert_eq!(imported.trips_stored, 4);
    assert_eq!(imported.segments_stored, 5);
    assert_eq!(imported.refused.len(), 1);
    let refused = &imported.refused[0];
    assert_eq!((refused.index, refused.booking_reference.as_str()), (4, "BROKEN"));
    assert!(refused.violations.iter().any(|v| v.starts_with("travelers")), "{:?}", refused.violations);
    assert!(
        refused.violations.iter().any(|v| v.starts_with("segments[0].local_date")),
        "{:?}",
        refused.violations
    );

    let on_ca981 = found(&mut s.client, on_flight("ca 981")).await;
    assert_eq!(on_ca981.travelers.len(), 10);

    // Departures from PEK in the morning: both flights, twelve travelers, paged by five.
    let mut seen = Vec::new();
    let mut request = find_request(
        pb::scope::Scope::Airport(pb::AirportScope {
            airport: "PEK".into(),
            from: Some(ts(DEPARTS - 3600)),
            until: Some(ts(DEPARTS + 4 * 3600)),
            departures_only: true,
        }),
        5,
    );
    loop {
        let page = s.client.find_travelers(request.clone()).await.unwrap().into_inner();
        seen.extend(page.travelers.iter().map(|t| t.traveler_id.clone().unwrap().value));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(seen.len(), 12);
    let mut distinct = seen.clone();
    distinct.dedup();
    assert_eq!(distinct, seen, "pages neither repeat nor skip");

    // Who sleeps at NYCHTL1 on the second night.
    let tonight = found(
        &mut s.client,
        pb::scope::Scope::Property(pb::PropertyScope {
            property_code: "NYCHTL1".into(),
            from: Some(ts(DEPARTS + 2 * 86_400)),
            until: Some(ts(DEPARTS + 2 * 86_400 + 3600)),
        }),
    )
    .await;
    assert_eq!(tonight.travelers.len(), 4);

    // Re-importing a booking replaces it: PNRA01 now has one traveler.
    let replaced = s
        .client
        .upsert_trip(pb::UpsertTripRequest {
            trip: Some(trip("PNRA01", vec![traveler(1, &[])], vec![flight("CA981", DEPARTS)])),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!replaced.created);
    let on_ca981 = found(&mut s.client, on_flight("CA981")).await;
    assert_eq!(on_ca981.travelers.len(), 7);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_opens_one_case_per_traveler_once_however_often_it_is_reported() {
    let mut s = start().await;
    import_storm(&mut s.client).await;
    let first = cancel(&mut s.client, "CA981", "heavy snow at PEK").await;
    assert!(first.created);
    let id = first.incident_id.unwrap();
    let incident = fanned_out(&mut s.client, &id).await;
    assert_eq!((incident.affected_travelers, incident.cases_opened), (10, 10));

    // The same report again, twice at once: the same incident, nothing new.
    let (again, again2) = {
        let mut c2 = s.client.clone();
        tokio::join!(cancel(&mut s.client, "CA981", "heavy snow at PEK"), async move {
            cancel(&mut c2, "CA981", "heavy snow at PEK").await
        })
    };
    for r in [&again, &again2] {
        assert!(!r.created && !r.updated);
        assert_eq!(r.incident_id.as_ref(), Some(&id));
    }
    let cases = cases_of_incident(&mut s.client, &id).await;
    assert_eq!(cases.len(), 10);
    let mut travelers: Vec<_> = cases.iter().map(|c| c.traveler.clone().unwrap().id.unwrap().value).collect();
    travelers.sort();
    travelers.dedup();
    assert_eq!(travelers.len(), 10, "one case per traveler");
    let case = &cases[0];
    assert_eq!(case.channel, common::Channel::Proactive as i32);
    assert!(
        case.description.contains("CA981") && case.description.contains("heavy snow"),
        "{}",
        case.description
    );
    assert!(!case.traveler.as_ref().unwrap().full_name.is_empty(), "the case holds the registry's traveler");

    // Every traveler has a disruption notification queued on their preferred channel.
    let notes = incident_notifications(&mut s.client, &id).await;
    assert_eq!(notes.len(), 10);
    assert!(notes.iter().all(|n| n.purpose == pb::NotificationPurpose::Disruption as i32));
    let of = |n: u32| notes.iter().find(|x| x.traveler_id.as_ref().unwrap().value == traveler_id(n)).unwrap();
    // Nothing is configured to send here, so the dispatcher may already have moved on: the
    // first channel tried (or the current one, before any attempt) is the preferred one.
    let first_channel = |n: &pb::Notification| n.attempts.first().map_or(n.channel, |a| a.channel);
    assert_eq!(first_channel(of(5)), common::Channel::App as i32, "APP first for who prefers it");
    assert_eq!(first_channel(of(1)), common::Channel::Sms as i32);
    assert_eq!(of(9).language, "en");
    assert_eq!(of(10).language, "zh");

    // An update (delay becomes a cancellation for another reason) tells everyone again, once.
    let updated = cancel(&mut s.client, "CA981", "runway closed by snow").await;
    assert!(updated.updated);
    let incident = fanned_out(&mut s.client, &id).await;
    assert_eq!(incident.cases_opened, 10);
    let notes = incident_notifications(&mut s.client, &id).await;
    assert_eq!(notes.len(), 20);
    assert_eq!(
        notes.iter().filter(|n| n.purpose == pb::NotificationPurpose::DisruptionUpdate as i32).count(),
        10
    );
    assert_eq!(cases_of_incident(&mut s.client, &id).await.len(), 10);

    // The traveler acknowledges; twice is once.
    let note = notes[0].notification_id.clone();
    for _ in 0..2 {
        let acked = s
            .client
            .acknowledge_notification(pb::AcknowledgeNotificationRequest { notification_id: note.clone() })
            .await
            .unwrap()
            .into_inner()
            .notification
            .unwrap();
        assert_eq!(acked.status, pb::NotificationStatus::Acknowledged as i32);
    }
    s.stop().await;
}

fn contact(
    traveler: common::Traveler,
    channel: common::Channel,
    text: &str,
    key: &str,
) -> pb::OpenCaseRequest {
    let mut f = flight("CA981", DEPARTS);
    f.segment.as_mut().unwrap().booking_reference = "PNRA01".into();
    pb::OpenCaseRequest {
        traveler: Some(traveler),
        segment: f.segment,
        channel: channel as i32,
        description: text.into(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_identified_by_handle_and_merged_into_the_open_case_on_any_channel() {
    let mut s = start().await;
    import_storm(&mut s.client).await;
    let by_phone = common::Traveler { phone: "+86 139 0000 0003".into(), ..Default::default() };
    let first = s
        .client
        .open_case(contact(by_phone.clone(), common::Channel::Phone, "航班取消了，我需要改签", "k-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.merged && !first.replayed);
    assert_eq!(first.language, "en", "traveler 3 prefers English");
    assert_eq!(first.acknowledgement_channel, common::Channel::Sms as i32, "a call is confirmed by SMS");
    assert_eq!(first.priority, pb::Priority::High as i32);

    // The same traveler writes by e-mail about the same flight: merged, not a second case.
    let by_email = common::Traveler { email: "T3@storm.invalid".into(), ..Default::default() };
    let second = s
        .client
        .open_case(contact(by_email.clone(), common::Channel::Email, "Any news about my flight?", "k-2"))
        .await
        .unwrap()
        .into_inner();
    assert!(second.merged);
    assert_eq!(second.case_number, first.case_number);
    assert_eq!(second.acknowledgement_channel, common::Channel::Email as i32);

    // A retry of the e-mail (same key) is the same answer, not a third interaction.
    let retry = s
        .client
        .open_case(contact(by_email.clone(), common::Channel::Email, "Any news about my flight?", "k-2"))
        .await
        .unwrap()
        .into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.case_id, second.case_id);
    assert_eq!(retry.acknowledgement_id, second.acknowledgement_id);

    let case = s
        .client
        .get_case(pb::GetCaseRequest { case_id: first.case_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(case.interactions.len(), 1);
    assert_eq!(case.interactions[0].channel, common::Channel::Email as i32);
    assert_eq!(case.traveler.unwrap().id.unwrap().value, traveler_id(3));

    // Then the flight is cancelled: the traveler's open case joins the incident, no new case.
    let report = cancel(&mut s.client, "CA981", "snow").await;
    let id = report.incident_id.unwrap();
    let incident = fanned_out(&mut s.client, &id).await;
    assert_eq!(incident.cases_opened, 10);
    let case = s
        .client
        .get_case(pb::GetCaseRequest { case_id: first.case_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(case.incident_id.as_ref(), Some(&id));
    assert_eq!(cases_of_incident(&mut s.client, &id).await.len(), 9, "nine opened proactively, one linked");

    // A safety contact is never low priority, and Chinese is detected for an unknown language.
    let by_booking = common::Traveler { ..Default::default() };
    let mut request = contact(by_booking, common::Channel::PartnerFeed, "老人摔倒受伤，需要医生", "");
    request.segment.as_mut().unwrap().booking_reference = "PNRB01".into();
    let refused = s.client.open_case(request.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "PNRB01 has two travelers: {refused:?}");
    assert_eq!(violated_fields(&refused), ["segment.booking_reference"]);
    request.traveler = Some(common::Traveler {
        id: Some(common::TravelerId { value: traveler_id(11) }),
        ..Default::default()
    });
    let safety = s.client.open_case(request).await.unwrap().into_inner();
    assert_eq!(safety.priority, pb::Priority::Safety as i32);
    s.stop().await;
}

/// Travelers the registry does not know, sent in full without an id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_in_traveler_writing_again_joins_their_open_case_and_no_one_elses() {
    let mut s = start().await;
    import_storm(&mut s.client).await;
    // A walk-in's contact about the CA981 flight, answered.
    let open = |name: &str, phone: &str, channel: common::Channel, key: &str| {
        let traveler = common::Traveler { full_name: name.into(), phone: phone.into(), ..Default::default() };
        let request = contact(traveler, channel, "My flight is cancelled", key);
        let mut client = s.client.clone();
        async move { client.open_case(request).await.unwrap().into_inner() }
    };
    let first = open("Lee Walker", "+44 7700 900123", common::Channel::Sms, "w-1").await;
    assert!(!first.merged && !first.replayed);
    // The same person calls: the name typed otherwise, the number written otherwise.
    let again = open(" lee  WALKER", "+447700900123", common::Channel::Phone, "w-2").await;
    assert!(again.merged, "{again:?}");
    assert_eq!(again.case_id, first.case_id);
    // Someone else on the same phone is someone else.
    let other = open("Kim Walker", "+44 7700 900123", common::Channel::Sms, "w-3").await;
    assert!(!other.merged);
    assert_ne!(other.case_id, first.case_id);
    let case_of = |id: Option<common::CaseId>| {
        let mut client = s.client.clone();
        async move {
            client.get_case(pb::GetCaseRequest { case_id: id }).await.unwrap().into_inner().case.unwrap()
        }
    };
    let case = case_of(first.case_id.clone()).await;
    assert_eq!(case.interactions.len(), 1);
    assert_eq!(case.interactions[0].channel, common::Channel::Phone as i32);
    let lee = case.traveler.unwrap().id.unwrap().value;
    let kim = case_of(other.case_id.clone()).await.traveler.unwrap().id.unwrap().value;
    assert_ne!(lee, kim);

    // Two first contacts of another walk-in at the same moment: one case, the other joins it.
    let both = futures::future::join_all(
        (0..2).map(|n| open("Ana Duarte", "+351 912 345 678", common::Channel::Chat, &format!("w-ana-{n}"))),
    )
    .await;
    assert_eq!(both[0].case_id, both[1].case_id, "{both:?}");
    assert_eq!(both.iter().filter(|a| a.merged).count(), 1, "{both:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_writes_nothing() {
    let mut s = start().await;
    import_storm(&mut s.client).await;
    // Unknown traveler by phone: NOT_FOUND naming the field, never the number.
    let unknown = common::Traveler { phone: "+8613999999999".into(), ..Default::default() };
    let e = s.client.open_case(contact(unknown, common::Channel::Sms, "hello", "")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(violated_fields(&e), ["traveler.phone"]);
    assert!(!e.message().contains("13999999999"), "{}", e.message());

    // Oversized text.
    let t = common::Traveler { id: Some(common::TravelerId { value: traveler_id(1) }), ..Default::default() };
    let e = s
        .client
        .open_case(contact(t.clone(), common::Channel::Chat, &"x".repeat(9000), ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&e), ["description"]);

    // A malformed segment in a trip.
    let mut bad = trip("PNRX", vec![traveler(99, &[common::Channel::Phone])], vec![flight("CA981", DEPARTS)]);
    bad.segments[0].segment.as_mut().unwrap().origin = "P!".into();
    bad.segments[0].local_date = "03/12/2026".into();
    let e = s.client.upsert_trip(pb::UpsertTripRequest { trip: Some(bad) }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&e),
        [
            "trip.travelers[0].contact_channels[0]",
            "trip.segments[0].segment.origin",
            "trip.segments[0].local_date"
        ]
    );

    // A disruption whose scope does not fit its kind, and an inverted window.
    let e = s
        .client
        .report_disruption(pb::ReportDisruptionRequest {
            kind: pb::DisruptionKind::HotelClosed as i32,
            scope: Some(pb::Scope {
                scope: Some(pb::scope::Scope::Airport(pb::AirportScope {
                    airport: "PEK".into(),
                    from: Some(ts(DEPARTS)),
                    until: Some(ts(DEPARTS - 1)),
                    departures_only: false,
                })),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&e), ["scope.airport.until"]);
    let e = s
        .client
        .report_disruption(pb::ReportDisruptionRequest {
            kind: pb::DisruptionKind::HotelClosed as i32,
            scope: Some(pb::Scope {
                scope: Some(pb::scope::Scope::Flight(pb::FlightScope {
                    flight_number: "CA981".into(),
                    local_date: "2026-12-03".into(),
                })),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["scope"]);

    // An e-mail adapter forwarding a mis-encoded address: invalid UTF-8 in a string field.
    let e = open_raw(&s, vec![0x66, 0x6f, 0xff, 0xfe, 0x40, 0x78, 0x2e, 0x63, 0x6e]).await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(violated_fields(&e), ["traveler.email"]);

    // Nothing was written by the refusals.
    let listed = s.client.list_cases(pb::ListCasesRequest::default()).await.unwrap().into_inner();
    assert!(listed.cases.is_empty());
    s.stop().await;
}

/// An OpenCaseRequest whose traveler's e-mail is raw bytes: what a client with a broken
/// encoder, or one forwarding a mis-encoded e-mail, puts on the wire.
#[derive(Clone, PartialEq, prost::Message)]
struct RawTraveler {
    #[prost(string, tag = "2")]
    full_name: String,
    #[prost(bytes = "vec", tag = "3")]
    email: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawOpenCase {
    #[prost(message, optional, tag = "1")]
    traveler: Option<RawTraveler>,
    #[prost(message, optional, tag = "2")]
    segment: Option<common::Segment>,
    #[prost(int32, tag = "3")]
    channel: i32,
    #[prost(string, tag = "4")]
    description: String,
}

async fn open_raw(s: &Service<Client>, email: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(s.server.channel().await);
    grpc.ready().await.unwrap();
    let request = RawOpenCase {
        traveler: Some(RawTraveler { full_name: "Li Wei".into(), email }),
        segment: Some(detour_testkit::flight_segment()),
        channel: common::Channel::Email as i32,
        description: "bag lost".into(),
    };
    let path = http::uri::PathAndQuery::from_static("/detour.intake.v1.IntakeService/OpenCase");
    let codec: tonic_prost::ProstCodec<RawOpenCase, pb::OpenCaseResponse> =
        tonic_prost::ProstCodec::default();
    grpc.unary(tonic::Request::new(request), path, codec).await.unwrap_err()
}

/// Three contacts from each of the twelve travelers at once (a call, its retry, an e-mail about
/// the same flight): whatever batches the group commit makes of them, each traveler gets one
/// case, the retry replays, the e-mail joins.
async fn contacts_arriving_together_are_answered_as_if_each_came_alone(settings: detour_server::Settings) {
    let bus = detour_events::connect_bus("inproc://").unwrap();
    let server = detour_testkit::Server::start(&settings, &[detour_intake::MODULE], bus).await;
    let mut client = IntakeServiceClient::new(server.channel().await);
    import_storm(&mut client).await;
    let calls = (1..=12u32).flat_map(|n| {
        let by_phone = common::Traveler { phone: format!("+86139{n:08}"), ..Default::default() };
        let by_email = common::Traveler { email: format!("t{n}@storm.invalid"), ..Default::default() };
        let mut call =
            contact(by_phone, common::Channel::Phone, "My flight is cancelled", &format!("call-{n}"));
        let mut mail = contact(by_email, common::Channel::Email, "Please rebook me", &format!("mail-{n}"));
        if n > 10 {
            // Travelers 11 and 12 are booked on CA983.
            for r in [&mut call, &mut mail] {
                let segment = r.segment.as_mut().unwrap();
                segment.service_reference = "CA983".into();
                segment.booking_reference = "PNRB01".into();
                segment.starts_at = Some(ts(DEPARTS + 3600));
            }
        }
        [(n, call.clone()), (n, call), (n, mail)]
    });
    let answers = futures::future::join_all(calls.map(|(n, request)| {
        let mut client = client.clone();
        async move { (n, client.open_case(request).await.unwrap().into_inner()) }
    }))
    .await;
    let mut by_traveler: std::collections::BTreeMap<u32, Vec<pb::OpenCaseResponse>> = Default::default();
    for (n, answer) in answers {
        by_traveler.entry(n).or_default().push(answer);
    }
    for (n, answers) in &by_traveler {
        let [call, retry, mail] = &answers[..] else { panic!("traveler {n}: {answers:?}") };
        assert!(call.case_id == retry.case_id && retry.case_id == mail.case_id, "traveler {n}: {answers:?}");
        let opened = answers.iter().filter(|a| !a.replayed && !a.merged).count();
        assert_eq!(opened, 1, "traveler {n}: one contact opens the case, {answers:?}");
        assert!(call.replayed || retry.replayed, "traveler {n}: one of the two calls replays");
        assert_eq!(call.acknowledgement_id, retry.acknowledgement_id, "traveler {n}");
        assert!(!mail.replayed);
    }
    let listed = client
        .list_cases(pb::ListCasesRequest { page_size: 100, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .cases;
    assert_eq!(listed.len(), 12, "one case per traveler");
    for case in &listed {
        let case =
            client.get_case(pb::GetCaseRequest { case_id: case.case_id.clone() }).await.unwrap().into_inner();
        let case = case.case.unwrap();
        assert_eq!(case.interactions.len(), 1, "the call or the e-mail joined {}", case.case_number);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_arriving_together_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    contacts_arriving_together_are_answered_as_if_each_came_alone(detour_testkit::sqlite_settings(
        dir.path(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_arriving_together_on_postgres() {
    let url = detour_storage::testing::fresh_postgres_url().await.unwrap();
    // A PostgreSQL host refuses the development issuer and key: trust them as production would.
    let settings = detour_server::Settings {
        database_url: Some(url),
        auth_dev_issuer: false,
        auth_issuers: vec![detour_testkit::jwks_issuer().await],
        vault_keks: vec![detour_vault::KekSettings::new(
            "crisis-kek-1",
            detour_vault::generate_kek_base64().unwrap(),
        )],
        ..detour_testkit::test_settings()
    };
    contacts_arriving_together_are_answered_as_if_each_came_alone(settings).await;
}
