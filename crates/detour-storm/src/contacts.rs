//! Travelers getting in touch during the storm: OpenCase on several channels, identified the
//! ways the registry knows them, with retries of the same request, the same problem raised again
//! on another channel, and a few safety emergencies. Each answer is kept so the run can check
//! what intake promised: a retry is the same case, a second channel is merged into it, and a
//! safety contact is never shed.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use detour_proto::common::v1 as common;
use detour_proto::intake::v1 as pb;
use detour_proto::intake::v1::intake_service_client::IntakeServiceClient;
use serde::Serialize;

use crate::client::{Authed, pick};
use crate::itinerary::{Crisis, StormTraveler};
use crate::load::{Target, lock};
use crate::rng::Rng;
use crate::stats::{Class, Outcome, Priority};

/// Shares of the contact stream; the rest are first contacts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContactMix {
    /// The same request again, same idempotency key (a client that timed out, a double tap).
    pub retry: f64,
    /// The same traveler about the same flight on another channel, a new request.
    pub other_channel: f64,
    /// An injury or illness, which must be admitted as SAFETY.
    pub safety: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactKind {
    First,
    Retry,
    OtherChannel,
    Safety,
}

/// How the contact names the traveler (see OpenCaseRequest.traveler in intake.proto).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handle {
    TravelerId,
    Phone,
    Email,
    /// Id, name and contact details, as a desk agent would type them.
    Full,
}

/// Everything needed to build the request again, byte for byte.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactSpec {
    pub traveler: u32,
    pub channel: common::Channel,
    pub handle: Handle,
    pub wording: u64,
    pub safety: bool,
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Acknowledged { case_id: String, case_number: String, replayed: bool, merged: bool, priority: Priority },
    Shed { priority: Priority },
    Failed { code: &'static str },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContactRecord {
    pub kind: ContactKind,
    pub spec: ContactSpec,
    pub answer: Answer,
    /// For a retry or a second channel: the case the earlier contact was acknowledged with.
    pub expected_case: Option<String>,
}

const CHANNELS: [common::Channel; 5] = [
    common::Channel::Sms,
    common::Channel::Chat,
    common::Channel::Phone,
    common::Channel::App,
    common::Channel::Email,
];

const ZH_TEXTS: [&str; 4] = [
    "航班取消了，请帮我改签明天的航班",
    "我的航班被取消了，今晚需要一间酒店",
    "航班取消，我要求全额退款",
    "请问取消的航班什么时候能重新安排？",
];
const EN_TEXTS: [&str; 4] = [
    "My flight was cancelled, please rebook me on the next one",
    "Flight cancelled and I'm stuck at the airport with two kids, we need a hotel tonight",
    "Cancelled flight, I want a full refund",
    "When will you rebook the cancelled flight? Nobody at the desk knows anything",
];
// Plainly about injury or illness, as a traveler would put it; the first two are the issue's.
const ZH_SAFETY: [&str; 2] = ["老人摔倒受伤，需要医生", "孩子发高烧昏迷了，需要去医院"];
const EN_SAFETY: [&str; 2] = [
    "My mother fell and is injured, we need a doctor",
    "My husband collapsed at the gate with chest pain, please call an ambulance",
];

// Seed streams (see rng::Rng::derive); phases add their number so each draws its own contacts.
const STREAM_CONTACTS: u64 = 100;

/// The contacts of every phase of a run, and their answers.
#[derive(Debug)]
pub struct Contacts {
    crisis: Arc<Crisis>,
    seed: u64,
    mix: ContactMix,
    records: Mutex<Vec<ContactRecord>>,
    /// Indexes into `records` of acknowledged contacts, to raise again on another channel.
    acknowledged: Mutex<Vec<usize>>,
}

impl Contacts {
    pub fn new(crisis: Arc<Crisis>, seed: u64, mix: ContactMix) -> Self {
        Self { crisis, seed, mix, records: Mutex::default(), acknowledged: Mutex::default() }
    }

    pub fn records(&self) -> Vec<ContactRecord> {
        lock(&self.records).clone()
    }

    /// What contact `seq` of `phase` is. Its kind is fixed by the seed; which earlier contact a
    /// retry or a second channel repeats depends on which had been answered by then.
    pub fn plan(&self, phase: u64, seq: u64) -> (ContactKind, ContactSpec, Option<String>) {
        let mut rng = Rng::derive(self.seed, STREAM_CONTACTS + phase, seq);
        let key = format!("storm-{:x}-{phase}-{seq}", self.seed);
        let draw = rng.unit();
        let m = self.mix;
        if draw < m.safety {
            let mut spec = self.fresh(&mut rng, key);
            spec.safety = true;
            return (ContactKind::Safety, spec, None);
        }
        if draw < m.safety + m.retry {
            let records = lock(&self.records);
            if !records.is_empty() {
                let i = rng.below(records.len() as u64) as usize;
                if let Some(earlier) = records.get(i) {
                    let expected = match &earlier.answer {
                        Answer::Acknowledged { case_id, .. } => Some(case_id.clone()),
                        _ => None,
                    };
                    return (ContactKind::Retry, earlier.spec.clone(), expected);
                }
            }
        } else if draw < m.safety + m.retry + m.other_channel {
            let acknowledged = lock(&self.acknowledged);
            if !acknowledged.is_empty() {
                let i = acknowledged.get(rng.below(acknowledged.len() as u64) as usize).copied();
                drop(acknowledged);
                let records = lock(&self.records);
                if let Some(earlier) = i.and_then(|i| records.get(i))
                    && let Answer::Acknowledged { case_id, .. } = &earlier.answer
                {
                    let shift = 1 + rng.below(CHANNELS.len() as u64 - 1) as usize;
                    let at = CHANNELS.iter().position(|c| *c == earlier.spec.channel).unwrap_or(0);
                    let channel = CHANNELS[(at + shift) % CHANNELS.len()];
                    let spec = ContactSpec {
                        traveler: earlier.spec.traveler,
                        channel,
                        handle: handle(&mut rng),
                        wording: rng.next_u64(),
                        safety: false,
                        idempotency_key: key,
                    };
                    return (ContactKind::OtherChannel, spec, Some(case_id.clone()));
                }
            }
        }
        (ContactKind::First, self.fresh(&mut rng, key), None)
    }

    fn fresh(&self, rng: &mut Rng, idempotency_key: String) -> ContactSpec {
        ContactSpec {
            traveler: rng.below(self.crisis.travelers.len() as u64) as u32,
            channel: *rng.pick(&CHANNELS),
            handle: handle(rng),
            wording: rng.next_u64(),
            safety: false,
            idempotency_key,
        }
    }

    /// The OpenCase request of a contact.
    pub fn request(&self, spec: &ContactSpec) -> Option<pb::OpenCaseRequest> {
        let t = self.crisis.travelers.get(spec.traveler as usize)?;
        Some(open_case_request(&self.crisis, t, spec))
    }

    fn record(&self, record: ContactRecord) {
        let acknowledged = matches!(record.answer, Answer::Acknowledged { .. });
        let mut records = lock(&self.records);
        records.push(record);
        if acknowledged {
            let i = records.len() - 1;
            drop(records);
            lock(&self.acknowledged).push(i);
        }
    }
}

fn handle(rng: &mut Rng) -> Handle {
    match rng.below(100) {
        0..30 => Handle::TravelerId,
        30..55 => Handle::Phone,
        55..80 => Handle::Email,
        _ => Handle::Full,
    }
}

pub fn open_case_request(crisis: &Crisis, t: &StormTraveler, spec: &ContactSpec) -> pb::OpenCaseRequest {
    let id = || Some(common::TravelerId { value: t.id.clone() });
    let traveler = match spec.handle {
        Handle::TravelerId => common::Traveler { id: id(), ..Default::default() },
        Handle::Phone => common::Traveler { phone: t.phone.clone(), ..Default::default() },
        Handle::Email => common::Traveler { email: t.email.clone(), ..Default::default() },
        Handle::Full => common::Traveler {
            id: id(),
            full_name: t.full_name.clone(),
            email: t.email.clone(),
            phone: t.phone.clone(),
            preferred_language: t.language.to_owned(),
            document_number: String::new(),
        },
    };
    let chinese = t.language.starts_with("zh");
    let pick = |texts: &[&'static str]| texts.get((spec.wording % texts.len() as u64) as usize).copied();
    let description = match (spec.safety, chinese) {
        (true, true) => pick(&ZH_SAFETY),
        (true, false) => pick(&EN_SAFETY),
        (false, true) => pick(&ZH_TEXTS),
        (false, false) => pick(&EN_TEXTS),
    }
    .unwrap_or_default();
    use common::RequestedOutcome as R;
    let requested_outcomes = if spec.safety {
        vec![R::Help as i32]
    } else {
        match spec.wording % 3 {
            0 => vec![R::Rebooking as i32, R::Hotel as i32],
            1 => vec![R::Refund as i32],
            _ => vec![R::Rebooking as i32],
        }
    };
    pb::OpenCaseRequest {
        traveler: Some(traveler),
        segment: crisis.flight_segment(t),
        channel: spec.channel as i32,
        description: description.to_owned(),
        requested_outcomes,
        idempotency_key: spec.idempotency_key.clone(),
    }
}

/// Sends one phase's contacts; `phase` keeps its idempotency keys apart from other phases'.
#[derive(Debug, Clone)]
pub struct ContactTarget {
    contacts: Arc<Contacts>,
    pool: Vec<Authed>,
    phase: u64,
}

impl ContactTarget {
    pub fn new(contacts: Arc<Contacts>, pool: Vec<Authed>, phase: u64) -> Self {
        Self { contacts, pool, phase }
    }
}

impl Target for ContactTarget {
    fn call(&self, seq: u64) -> impl Future<Output = Outcome> + Send {
        let (kind, spec, expected_case) = self.contacts.plan(self.phase, seq);
        let request = self.contacts.request(&spec);
        let channel = pick(&self.pool, seq);
        let contacts = self.contacts.clone();
        async move {
            let (Some(request), Some(channel)) = (request, channel) else {
                return Outcome::error("NO_REQUEST");
            };
            let (outcome, answer) = match IntakeServiceClient::new(channel).open_case(request).await {
                Ok(response) => {
                    let r = response.into_inner();
                    let priority = Priority::from_proto(r.priority);
                    let answer = Answer::Acknowledged {
                        case_id: r.case_id.map(|c| c.value).unwrap_or_default(),
                        case_number: r.case_number,
                        replayed: r.replayed,
                        merged: r.merged,
                        priority,
                    };
                    (Outcome::ok(Some(priority)), answer)
                }
                Err(status) => {
                    let outcome = Outcome::from_status(&status);
                    let answer = match outcome.class {
                        Class::Shed => {
                            Answer::Shed { priority: outcome.priority.unwrap_or(Priority::Unknown) }
                        }
                        _ => Answer::Failed { code: outcome.code },
                    };
                    (outcome, answer)
                }
            };
            contacts.record(ContactRecord { kind, spec, answer, expected_case });
            outcome
        }
    }
}

/// What the answers say about intake's promises.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ContactChecks {
    pub contacts: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub acknowledged: u64,
    /// Acknowledged as added to an open case of the traveler's.
    pub merged: u64,
    /// Acknowledged as a repeat of an earlier idempotency key.
    pub replayed: u64,
    pub distinct_cases: u64,
    /// Retries of an acknowledged contact that came back acknowledged.
    pub retries_checked: u64,
    /// ... with replayed=false or another case.
    pub retry_violations: u64,
    /// Second-channel contacts about an acknowledged case that came back acknowledged.
    pub other_channel_checked: u64,
    /// ... with merged=false or another case.
    pub other_channel_violations: u64,
    pub safety_sent: u64,
    pub safety_as_safety: u64,
    /// Safety contacts acknowledged with a lower priority.
    pub safety_misclassified: u64,
    /// Safety contacts shed: must be 0.
    pub safety_shed: u64,
    /// Handles the registry did not know (NOT_FOUND): the import missed someone.
    pub not_found: u64,
    pub failed_by_code: BTreeMap<String, u64>,
    /// A few of the violations, to start looking from.
    pub examples: Vec<String>,
}

pub fn check(records: &[ContactRecord]) -> ContactChecks {
    let mut c = ContactChecks { contacts: records.len() as u64, ..ContactChecks::default() };
    let mut cases = std::collections::HashSet::new();
    for r in records {
        let kind = serde_json::to_value(r.kind).ok().and_then(|v| v.as_str().map(str::to_owned));
        *c.by_kind.entry(kind.unwrap_or_default()).or_default() += 1;
        if r.spec.safety {
            c.safety_sent += 1;
        }
        match &r.answer {
            Answer::Acknowledged { case_id, case_number, replayed, merged, priority } => {
                c.acknowledged += 1;
                c.merged += u64::from(*merged);
                c.replayed += u64::from(*replayed);
                cases.insert(case_id.clone());
                if r.spec.safety {
                    if *priority == Priority::Safety {
                        c.safety_as_safety += 1;
                    } else {
                        c.safety_misclassified += 1;
                        example(
                            &mut c,
                            format!(
                                "safety contact {} acknowledged as {}",
                                r.spec.idempotency_key,
                                priority.name()
                            ),
                        );
                    }
                }
                match (r.kind, &r.expected_case) {
                    (ContactKind::Retry, Some(expected)) => {
                        c.retries_checked += 1;
                        if !*replayed || case_id != expected {
                            c.retry_violations += 1;
                            example(
                                &mut c,
                                format!(
                                    "retry {} answered case {case_number} ({case_id}) replayed={replayed}, the first answer was {expected}",
                                    r.spec.idempotency_key
                                ),
                            );
                        }
                    }
                    (ContactKind::OtherChannel, Some(expected)) => {
                        c.other_channel_checked += 1;
                        if !*merged || case_id != expected {
                            c.other_channel_violations += 1;
                            example(
                                &mut c,
                                format!(
                                    "second channel {} answered case {case_number} ({case_id}) merged={merged}, the traveler's case is {expected}",
                                    r.spec.idempotency_key
                                ),
                            );
                        }
                    }
                    _ => {}
                }
            }
            Answer::Shed { .. } => {
                if r.spec.safety {
                    c.safety_shed += 1;
                    example(&mut c, format!("safety contact {} was shed", r.spec.idempotency_key));
                }
            }
            Answer::Failed { code } => {
                *c.failed_by_code.entry((*code).to_owned()).or_default() += 1;
                if *code == "NOT_FOUND" {
                    c.not_found += 1;
                }
            }
        }
    }
    c.distinct_cases = cases.len() as u64;
    c
}

fn example(c: &mut ContactChecks, s: String) {
    if c.examples.len() < 10 {
        c.examples.push(s);
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::itinerary::{CrisisSpec, generate};

    fn contacts(mix: ContactMix) -> Contacts {
        let spec = CrisisSpec {
            seed: 9,
            airport: "PEK".into(),
            date: NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(),
            utc_offset_hours: 8,
            flights: 5,
            travelers: 50,
        };
        Contacts::new(Arc::new(generate(&spec).unwrap()), 9, mix)
    }

    fn ack(case: &str, replayed: bool, merged: bool, priority: Priority) -> Answer {
        Answer::Acknowledged {
            case_id: case.into(),
            case_number: format!("DT-{case}"),
            replayed,
            merged,
            priority,
        }
    }

    #[test]
    fn plans_are_reproducible_and_follow_the_mix() {
        let c = contacts(ContactMix { retry: 0.0, other_channel: 0.0, safety: 0.1 });
        let a: Vec<_> = (0..200).map(|s| c.plan(0, s)).collect();
        let b: Vec<_> = (0..200).map(|s| c.plan(0, s)).collect();
        assert_eq!(a, b);
        let safety = a.iter().filter(|p| p.0 == ContactKind::Safety).count();
        assert!((5..=40).contains(&safety), "{safety}");
        assert!(a.iter().all(|p| p.0 != ContactKind::Retry));
        // Keys are unique within and across phases.
        let keys: std::collections::HashSet<_> = a
            .iter()
            .map(|p| p.1.idempotency_key.clone())
            .chain((0..200).map(|s| c.plan(1, s).1.idempotency_key))
            .collect();
        assert_eq!(keys.len(), 400);
    }

    #[test]
    fn retries_and_second_channels_repeat_answered_contacts() {
        let c = contacts(ContactMix { retry: 0.5, other_channel: 0.5, safety: 0.0 });
        // Nothing answered yet: everything is a first contact.
        assert_eq!(c.plan(0, 0).0, ContactKind::First);
        let (_, first, _) = c.plan(0, 1);
        c.record(ContactRecord {
            kind: ContactKind::First,
            spec: first.clone(),
            answer: ack("case-1", false, true, Priority::Normal),
            expected_case: None,
        });
        let plans: Vec<_> = (2..50).map(|s| c.plan(0, s)).collect();
        for (kind, spec, expected) in &plans {
            assert_eq!(expected.as_deref(), Some("case-1"));
            assert_eq!(spec.traveler, first.traveler);
            match kind {
                ContactKind::Retry => assert_eq!(spec, &first),
                ContactKind::OtherChannel => {
                    assert_ne!(spec.channel, first.channel);
                    assert_ne!(spec.idempotency_key, first.idempotency_key);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(plans.iter().any(|p| p.0 == ContactKind::Retry));
        assert!(plans.iter().any(|p| p.0 == ContactKind::OtherChannel));
    }

    #[test]
    fn requests_identify_the_traveler_by_one_handle_and_name_the_flight() {
        let c = contacts(ContactMix { retry: 0.0, other_channel: 0.0, safety: 0.0 });
        let t = &c.crisis.travelers[7];
        let mut spec = ContactSpec {
            traveler: 7,
            channel: common::Channel::Sms,
            handle: Handle::Phone,
            wording: 0,
            safety: false,
            idempotency_key: "k".into(),
        };
        let r = c.request(&spec).unwrap();
        let who = r.traveler.as_ref().unwrap();
        assert_eq!((who.phone.as_str(), who.email.as_str(), who.id.is_none()), (t.phone.as_str(), "", true));
        let seg = r.segment.as_ref().unwrap();
        assert_eq!(seg.service_reference, c.crisis.flights[t.flight].number);
        assert_eq!(seg.booking_reference, t.booking_reference);
        assert_eq!(r.idempotency_key, "k");
        spec.safety = true;
        spec.handle = Handle::TravelerId;
        let r = c.request(&spec).unwrap();
        assert!(ZH_SAFETY.contains(&r.description.as_str()) || EN_SAFETY.contains(&r.description.as_str()));
        assert_eq!(r.requested_outcomes, vec![common::RequestedOutcome::Help as i32]);
        assert_eq!(r.traveler.unwrap().id.unwrap().value, t.id);
        assert!(c.request(&ContactSpec { traveler: 10_000, ..spec }).is_none());
    }

    #[test]
    fn checks_find_broken_promises() {
        let spec = |key: &str, safety| ContactSpec {
            traveler: 1,
            channel: common::Channel::Sms,
            handle: Handle::TravelerId,
            wording: 0,
            safety,
            idempotency_key: key.into(),
        };
        let rec = |kind, spec, answer, expected: Option<&str>| ContactRecord {
            kind,
            spec,
            answer,
            expected_case: expected.map(str::to_owned),
        };
        let records = vec![
            rec(ContactKind::First, spec("a", false), ack("c1", false, true, Priority::Normal), None),
            rec(ContactKind::Retry, spec("a", false), ack("c1", true, true, Priority::Normal), Some("c1")),
            rec(ContactKind::Retry, spec("a", false), ack("c2", false, false, Priority::Normal), Some("c1")),
            rec(
                ContactKind::OtherChannel,
                spec("b", false),
                ack("c1", false, true, Priority::High),
                Some("c1"),
            ),
            rec(
                ContactKind::OtherChannel,
                spec("c", false),
                ack("c3", false, false, Priority::High),
                Some("c1"),
            ),
            rec(ContactKind::Safety, spec("d", true), ack("c1", false, true, Priority::Safety), None),
            rec(ContactKind::Safety, spec("e", true), ack("c1", false, true, Priority::Normal), None),
            rec(ContactKind::Safety, spec("f", true), Answer::Shed { priority: Priority::Safety }, None),
            rec(ContactKind::First, spec("g", false), Answer::Failed { code: "NOT_FOUND" }, None),
        ];
        let c = check(&records);
        assert_eq!(c.contacts, 9);
        assert_eq!(c.acknowledged, 7);
        assert_eq!((c.retries_checked, c.retry_violations), (2, 1));
        assert_eq!((c.other_channel_checked, c.other_channel_violations), (2, 1));
        assert_eq!((c.safety_sent, c.safety_as_safety, c.safety_misclassified, c.safety_shed), (3, 1, 1, 1));
        assert_eq!(c.not_found, 1);
        assert_eq!(c.distinct_cases, 3);
        assert_eq!(c.by_kind.get("retry"), Some(&2));
        assert_eq!(c.examples.len(), 4);
    }
}
