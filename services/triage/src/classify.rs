//! The rule-based classifier: keyword rules in English and Chinese over the description, with
//! the segment kind breaking ties. Everything a rule decides (category, starting severity,
//! queue, whether the supplier must be asked) sits in one table, [`RULES`], so that changing
//! the triage policy means editing data, not control flow.
//!
//! Keywords are lower case. An ASCII keyword matches at the start of a word and must end with
//! it, unless it ends in `*` (a stem: "cancel*" matches "cancelled"); a phrase matches across any
//! punctuation or spacing between its words. A non-ASCII (Chinese) keyword matches anywhere,
//! since Chinese text has no spaces between words.

use detour_domain::{CaseCategory, Instant, SegmentKind, Severity, sla};

use crate::model::{Classification, OpenedCase, Queue, Triage};

/// How a matching rule competes with the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Precedence {
    /// Money and paperwork: nearly every complaint asks for a refund, so these decide the
    /// category only when the text describes nothing that went wrong on the trip.
    Secondary,
    /// Something went wrong on the trip; among these, the most distinct keywords wins.
    Incident,
    /// Wins whenever it matches: a traveler's safety outranks everything else the text says.
    Overriding,
}

#[derive(Debug, Clone, Copy)]
enum Route {
    To(Queue),
    /// The desk of the segment's kind (a storm grounds flights or closes hotels).
    BySegment,
}

struct Rule {
    category: CaseCategory,
    precedence: Precedence,
    /// The segment kind the category is about; breaks ties between equally matched rules.
    segment: Option<SegmentKind>,
    /// Before stranding or collective words raise it.
    severity: Severity,
    route: Route,
    /// The airline, hotel or operator must give its account before anything is offered.
    needs_supplier: bool,
    english: &'static [&'static str],
    chinese: &'static [&'static str],
}

impl Rule {
    fn keywords(&self) -> impl Iterator<Item = &'static str> {
        self.english.iter().chain(self.chinese).copied()
    }
}

use CaseCategory as C;
use Precedence::{Incident, Overriding, Secondary};
use SegmentKind as K;

/// Ties between rules with as many keyword hits and the same segment fit go to the earlier
/// row, so the specific and the severe come before the generic.
#[rustfmt::skip]
const RULES: &[Rule] = &[
    Rule {
        category: C::SafetyMedical,
        precedence: Overriding,
        segment: None,
        severity: Severity::Critical,
        route: Route::To(Queue::Safety),
        needs_supplier: false,
        english: &["injur*", "ill", "illness", "sick*", "hospital*", "accident*", "ambulance",
            "emergency", "medical", "bleeding", "unconscious", "food poisoning", "heart attack"],
        chinese: &["受伤", "生病", "医院", "事故", "急救", "救护车", "病了", "食物中毒", "摔倒", "发烧", "昏迷"],
    },
    Rule {
        category: C::MissedConnection,
        precedence: Incident,
        segment: Some(K::Flight),
        severity: Severity::High,
        route: Route::To(Queue::Air),
        needs_supplier: true,
        english: &["missed connection", "missed my connection", "missed the connection",
            "missed our connection", "connecting flight*", "connection"],
        chinese: &["转机", "中转", "联程", "衔接"],
    },
    Rule {
        category: C::DeniedBoarding,
        precedence: Incident,
        segment: Some(K::Flight),
        severity: Severity::High,
        route: Route::To(Queue::Air),
        needs_supplier: true,
        english: &["overbook*", "over booked", "bumped", "denied boarding", "refused boarding",
            "not allowed to board"],
        chinese: &["拒绝登机", "超售", "不让登机", "不让上飞机"],
    },
    Rule {
        category: C::FlightCancellation,
        precedence: Incident,
        segment: Some(K::Flight),
        severity: Severity::High,
        route: Route::To(Queue::Air),
        needs_supplier: true,
        english: &["cancel*"],
        chinese: &["取消", "停飞"],
    },
    Rule {
        category: C::FlightDelay,
        precedence: Incident,
        segment: Some(K::Flight),
        severity: Severity::Medium,
        route: Route::To(Queue::Air),
        needs_supplier: true,
        english: &["delay*", "late"],
        chinese: &["延误", "晚点", "延迟"],
    },
    Rule {
        category: C::Baggage,
        precedence: Incident,
        segment: Some(K::Flight),
        severity: Severity::Medium,
        route: Route::To(Queue::Air),
        needs_supplier: true,
        english: &["bag", "bags", "baggage", "luggage", "suitcase*"],
        chinese: &["行李", "托运"],
    },
    Rule {
        category: C::HotelProblem,
        precedence: Incident,
        segment: Some(K::Hotel),
        severity: Severity::Medium,
        route: Route::To(Queue::Hotel),
        needs_supplier: true,
        english: &["hotel*", "room*", "bed", "beds", "dirty", "bathroom", "air conditioning",
            "reception"],
        chinese: &["酒店", "房间", "入住", "宾馆", "住宿", "前台"],
    },
    Rule {
        category: C::GroundTransport,
        precedence: Incident,
        segment: Some(K::GroundTransport),
        severity: Severity::Medium,
        route: Route::To(Queue::GroundAndTour),
        needs_supplier: true,
        english: &["taxi*", "transfer*", "shuttle*", "bus", "buses", "coach", "driver*", "train",
            "trains", "car rental", "rental car", "pick up", "pickup"],
        chinese: &["接机", "送机", "接送", "司机", "大巴", "出租车", "火车", "高铁", "租车"],
    },
    Rule {
        category: C::ForcedShopping,
        precedence: Incident,
        segment: Some(K::Tour),
        severity: Severity::Medium,
        route: Route::To(Queue::GroundAndTour),
        needs_supplier: true,
        english: &["shopping", "shop", "shops", "forced to buy", "forced to shop", "jade"],
        chinese: &["购物", "强制消费", "强迫消费", "购物店"],
    },
    Rule {
        category: C::StaffService,
        precedence: Incident,
        segment: Some(K::Tour),
        severity: Severity::Medium,
        route: Route::BySegment,
        needs_supplier: false,
        english: &["rude*", "attitude", "guide*", "impolite", "unprofessional", "shouted", "yelled",
            "staff"],
        chinese: &["态度", "导游", "服务差", "骂"],
    },
    Rule {
        // A cancelled excursion or transfer changes the itinerary; the segment kind tells it
        // apart from a cancelled flight.
        category: C::ItineraryChange,
        precedence: Incident,
        segment: Some(K::Tour),
        severity: Severity::Medium,
        route: Route::BySegment,
        needs_supplier: true,
        english: &["itinerary", "schedule change*", "changed the schedule", "rescheduled", "reroute*",
            "skipped", "cancel*"],
        chinese: &["行程变更", "更改行程", "行程被改", "改行程", "取消"],
    },
    Rule {
        category: C::DocumentsVisa,
        precedence: Incident,
        segment: None,
        severity: Severity::Medium,
        route: Route::To(Queue::General),
        needs_supplier: false,
        english: &["visa*", "passport*", "document*", "id card"],
        chinese: &["签证", "护照", "证件"],
    },
    Rule {
        category: C::ForceMajeureEvent,
        precedence: Incident,
        segment: None,
        severity: Severity::Medium,
        route: Route::BySegment,
        needs_supplier: false,
        english: &["storm*", "snow*", "blizzard*", "typhoon*", "hurricane*", "earthquake*", "flood*",
            "volcan*", "wildfire*", "tsunami"],
        chinese: &["暴雪", "台风", "地震", "暴雨", "洪水", "大雪", "火山", "海啸"],
    },
    Rule {
        category: C::PaymentProblem,
        precedence: Secondary,
        segment: None,
        severity: Severity::Medium,
        route: Route::To(Queue::Billing),
        needs_supplier: false,
        english: &["payment*", "paid twice", "charged twice", "double charg*", "credit card", "card"],
        chinese: &["支付", "付款", "扣款", "重复扣", "扣了两次"],
    },
    Rule {
        category: C::FeeDispute,
        precedence: Secondary,
        segment: None,
        severity: Severity::Low,
        route: Route::To(Queue::Billing),
        needs_supplier: false,
        english: &["charge*", "fee", "fees", "refund*", "surcharge*", "overcharg*", "price"],
        chinese: &["收费", "退款", "费用", "多收", "退钱"],
    },
    Rule {
        category: C::BookingProblem,
        precedence: Secondary,
        segment: None,
        severity: Severity::Low,
        route: Route::To(Queue::General),
        needs_supplier: false,
        english: &["booking*", "reservation*", "booked", "confirmation"],
        chinese: &["预订", "订单", "预定"],
    },
    OTHER,
];

/// What a description no rule matches becomes.
const OTHER: Rule = Rule {
    category: C::Other,
    precedence: Secondary,
    segment: None,
    severity: Severity::Medium,
    route: Route::To(Queue::General),
    needs_supplier: false,
    english: &[],
    chinese: &[],
};

/// Travelers with nowhere to go: the case becomes critical whatever its category.
const STRANDED: &[&str] =
    &["stranded", "stuck at the airport", "stuck overnight", "nowhere to sleep", "滞留", "被困", "困在"];

/// A complaint on behalf of several travelers weighs more than one person's.
const COLLECTIVE: &[&str] =
    &["we", "all of us", "family", "families", "group", "groups", "全家", "我们", "家人", "一家", "旅行团"];

/// Lower case, with every run of characters that are not letters or digits folded into one
/// space, so that "Denied-boarding!" matches the phrase "denied boarding".
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut gap = true;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
            gap = false;
        } else if !gap {
            out.push(' ');
            gap = true;
        }
    }
    out
}

fn is_word_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric())
}

fn matches(text: &str, keyword: &str) -> bool {
    let (needle, stem) = match keyword.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (keyword, false),
    };
    if needle.is_empty() {
        return false;
    }
    if !needle.is_ascii() {
        return text.contains(needle);
    }
    text.match_indices(needle).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + needle.len()..].chars().next();
        !is_word_char(before) && (stem || !is_word_char(after))
    })
}

/// The keywords found in `text`, as written (without the stem marker).
fn hits(text: &str, keywords: impl IntoIterator<Item = &'static str>) -> Vec<&'static str> {
    keywords.into_iter().filter(|k| matches(text, k)).map(|k| k.trim_end_matches('*')).collect()
}

fn queue_for_segment(kind: SegmentKind) -> Queue {
    match kind {
        SegmentKind::Flight => Queue::Air,
        SegmentKind::Hotel => Queue::Hotel,
        SegmentKind::GroundTransport | SegmentKind::Tour => Queue::GroundAndTour,
    }
}

fn quoted(words: &[&str]) -> String {
    words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(", ")
}

fn names(rules: &[&Rule]) -> String {
    rules.iter().map(|r| r.category.as_str()).collect::<Vec<_>>().join(", ")
}

/// Classifies a case from its description and the kind of segment it is about.
pub fn classify(description: &str, segment: SegmentKind) -> Classification {
    let text = normalise(description);
    let matched: Vec<(usize, &Rule, Vec<&'static str>)> = RULES
        .iter()
        .enumerate()
        .map(|(i, rule)| (i, rule, hits(&text, rule.keywords())))
        .filter(|(_, _, found)| !found.is_empty())
        .collect();
    let top = matched.iter().map(|(_, r, _)| r.precedence).max();
    let contenders: Vec<&(usize, &Rule, Vec<&'static str>)> =
        matched.iter().filter(|(_, r, _)| Some(r.precedence) == top).collect();
    // More distinct keywords first, then the rule about this segment's kind, then table order.
    let rank = |(i, r, found): &(usize, &Rule, Vec<&'static str>)| {
        (found.len(), r.segment == Some(segment), std::cmp::Reverse(*i))
    };
    let best = contenders.iter().copied().max_by_key(|c| rank(c));

    let mut rationale = Vec::new();
    let (rule, found) = match best {
        Some((_, rule, found)) => {
            let mut why = format!("Classified {} on {}", rule.category, quoted(found));
            let tied: Vec<&Rule> = contenders
                .iter()
                .filter(|(_, r, f)| r.category != rule.category && f.len() == found.len())
                .map(|(_, r, _)| *r)
                .collect();
            let outranked: Vec<&Rule> = matched
                .iter()
                .filter(|(_, r, _)| r.precedence < rule.precedence)
                .map(|(_, r, _)| *r)
                .collect();
            if !tied.is_empty() {
                let decider = if rule.segment == Some(segment) {
                    format!("the {segment} segment decided")
                } else {
                    "rule order decided".to_owned()
                };
                why.push_str(&format!(" (tied with {}; {decider})", names(&tied)));
            }
            if rule.precedence == Overriding && !outranked.is_empty() {
                why.push_str(&format!(" (safety words win over {})", names(&outranked)));
            }
            rationale.push(why);
            (*rule, found.as_slice())
        }
        None => {
            rationale.push("No rule matched; classified other".to_owned());
            (&OTHER, &[][..])
        }
    };

    let stranded = hits(&text, STRANDED.iter().copied());
    let collective = hits(&text, COLLECTIVE.iter().copied());
    let severity = if !stranded.is_empty() {
        rationale.push(format!("Severity critical: stranded travelers ({})", quoted(&stranded)));
        Severity::Critical
    } else if !collective.is_empty() && rule.severity < Severity::High {
        rationale.push(format!("Severity high: several travelers ({})", quoted(&collective)));
        Severity::High
    } else {
        let level = if found.is_empty() {
            "the default".to_owned()
        } else {
            format!("the level for {}", rule.category)
        };
        rationale.push(format!("Severity {}: {level}", rule.severity));
        rule.severity
    };

    let queue = match (severity, rule.route) {
        (Severity::Critical, _) if rule.category != C::SafetyMedical => {
            rationale.push("Queue safety: critical cases go to the safety desk".to_owned());
            Queue::Safety
        }
        (_, Route::To(queue)) => {
            rationale.push(format!("Queue {queue}"));
            queue
        }
        (_, Route::BySegment) => {
            let queue = queue_for_segment(segment);
            rationale.push(format!("Queue {queue}, the desk for {segment} segments"));
            queue
        }
    };

    Classification {
        category: rule.category,
        severity,
        queue,
        needs_supplier: rule.needs_supplier,
        rationale: rationale.join(". ") + ".",
    }
}

/// The triage of a newly opened case: its classification, with deadlines counted from when
/// the case was received (the traveler has been waiting since then, not since triage ran).
pub fn triage(case: &OpenedCase, triaged_at: Instant) -> Triage {
    let c = classify(&case.description, case.segment.kind);
    Triage {
        case_id: case.case_id,
        first_response_due: case.received_at + sla::first_response_within(Some(c.category), Some(c.severity)),
        resolution_due: case.received_at + sla::resolution_within(c.category, c.severity),
        category: c.category,
        severity: c.severity,
        queue: c.queue,
        needs_supplier: c.needs_supplier,
        rationale: c.rationale,
        received_at: case.received_at,
        triaged_at,
        resolved_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        description: &str,
        segment: SegmentKind,
        category: CaseCategory,
        severity: Severity,
        queue: Queue,
    ) {
        let c = classify(description, segment);
        assert_eq!(
            (c.category, c.severity, c.queue),
            (category, severity, queue),
            "{description:?} on a {segment} segment: {}",
            c.rationale
        );
    }

    #[test]
    fn english_incidents_find_their_category() {
        check("My flight CA981 was cancelled.", K::Flight, C::FlightCancellation, Severity::High, Queue::Air);
        check("Flight delayed by 5 hours", K::Flight, C::FlightDelay, Severity::Medium, Queue::Air);
        check(
            "The inbound flight was late so I missed my connection in Frankfurt",
            K::Flight,
            C::MissedConnection,
            Severity::High,
            Queue::Air,
        );
        check(
            "I was bumped, the flight was overbooked",
            K::Flight,
            C::DeniedBoarding,
            Severity::High,
            Queue::Air,
        );
        check("My suitcase never arrived", K::Flight, C::Baggage, Severity::Medium, Queue::Air);
        check("The room was dirty and smelled", K::Hotel, C::HotelProblem, Severity::Medium, Queue::Hotel);
        check(
            "Nobody came to the airport pickup, the driver did not answer",
            K::GroundTransport,
            C::GroundTransport,
            Severity::Medium,
            Queue::GroundAndTour,
        );
        check("My passport expired", K::Flight, C::DocumentsVisa, Severity::Medium, Queue::General);
        check("The guide was rude to me", K::Tour, C::StaffService, Severity::Medium, Queue::GroundAndTour);
    }

    #[test]
    fn chinese_incidents_find_their_category() {
        check("航班取消了，没有人通知", K::Flight, C::FlightCancellation, Severity::High, Queue::Air);
        check("航班延误了三个小时", K::Flight, C::FlightDelay, Severity::Medium, Queue::Air);
        check("我的行李丢了", K::Flight, C::Baggage, Severity::Medium, Queue::Air);
        check("酒店房间很脏，空调也坏了", K::Hotel, C::HotelProblem, Severity::Medium, Queue::Hotel);
        check("值机时被拒绝登机", K::Flight, C::DeniedBoarding, Severity::High, Queue::Air);
        check("导游态度很差", K::Tour, C::StaffService, Severity::Medium, Queue::GroundAndTour);
        check("台风来了，景区关闭", K::Tour, C::ForceMajeureEvent, Severity::Medium, Queue::GroundAndTour);
        check("请问退款什么时候到账", K::Hotel, C::FeeDispute, Severity::Low, Queue::Billing);
    }

    #[test]
    fn safety_words_win_over_everything_else() {
        check(
            "My father fell in the hotel bathroom and is in hospital; the hotel staff were rude",
            K::Hotel,
            C::SafetyMedical,
            Severity::Critical,
            Queue::Safety,
        );
        check("老人在酒店摔倒受伤，已送医院", K::Hotel, C::SafetyMedical, Severity::Critical, Queue::Safety);
        let c = classify("I got food poisoning at the hotel restaurant and want a refund", K::Hotel);
        assert_eq!(c.category, C::SafetyMedical);
        assert!(c.rationale.contains("safety words win over"), "{}", c.rationale);
        assert!(!c.needs_supplier);
    }

    #[test]
    fn stranded_travelers_are_critical_and_go_to_the_safety_desk() {
        let c = classify("Flight cancelled due to the typhoon, we are stranded at the airport", K::Flight);
        assert_eq!(
            (c.category, c.severity, c.queue),
            (C::FlightCancellation, Severity::Critical, Queue::Safety)
        );
        assert!(c.needs_supplier);
        assert!(c.rationale.contains("\"stranded\""), "{}", c.rationale);
        check(
            "航班因台风取消，我们全家滞留在机场",
            K::Flight,
            C::FlightCancellation,
            Severity::Critical,
            Queue::Safety,
        );
    }

    #[test]
    fn collective_complaints_are_high() {
        check(
            "The guide forced us into a jade shop, we had to stay two hours",
            K::Tour,
            C::ForcedShopping,
            Severity::High,
            Queue::GroundAndTour,
        );
        check("导游强迫我们去购物店购物", K::Tour, C::ForcedShopping, Severity::High, Queue::GroundAndTour);
        check("Our whole family got a dirty room", K::Hotel, C::HotelProblem, Severity::High, Queue::Hotel);
    }

    #[test]
    fn money_questions_only_win_when_nothing_went_wrong() {
        check("Why was I charged a booking fee?", K::Hotel, C::FeeDispute, Severity::Low, Queue::Billing);
        check(
            "I was charged twice on my credit card",
            K::Hotel,
            C::PaymentProblem,
            Severity::Medium,
            Queue::Billing,
        );
        check("Where is my booking confirmation", K::Tour, C::BookingProblem, Severity::Low, Queue::General);
        check(
            "The flight was cancelled, I want a refund of the ticket price and fees",
            K::Flight,
            C::FlightCancellation,
            Severity::High,
            Queue::Air,
        );
    }

    #[test]
    fn the_segment_kind_breaks_ties() {
        let flight = classify("It was cancelled", K::Flight);
        assert_eq!(flight.category, C::FlightCancellation);
        assert!(flight.rationale.contains("the flight segment decided"), "{}", flight.rationale);
        let tour = classify("行程取消了", K::Tour);
        assert_eq!((tour.category, tour.queue), (C::ItineraryChange, Queue::GroundAndTour));
        check(
            "The driver was two hours late",
            K::GroundTransport,
            C::GroundTransport,
            Severity::Medium,
            Queue::GroundAndTour,
        );
        check("The airline staff shouted at me", K::Flight, C::StaffService, Severity::Medium, Queue::Air);
    }

    #[test]
    fn words_match_whole_and_stems_match_prefixes() {
        // "ill" is a word, not a part of "will" or "still"; "late" not of "translated".
        check(
            "I will still wait for the translated menu",
            K::Tour,
            C::Other,
            Severity::Medium,
            Queue::General,
        );
        check("She is ill", K::Tour, C::SafetyMedical, Severity::Critical, Queue::Safety);
        check("DENIED-BOARDING at the gate!", K::Flight, C::DeniedBoarding, Severity::High, Queue::Air);
        check("我的flight被cancel了", K::Flight, C::FlightCancellation, Severity::High, Queue::Air);
    }

    #[test]
    fn nothing_matched_is_other_with_a_rationale() {
        let c = classify("Hello, please call me back.", K::Hotel);
        assert_eq!(
            (c.category, c.severity, c.queue, c.needs_supplier),
            (C::Other, Severity::Medium, Queue::General, false)
        );
        assert!(c.rationale.starts_with("No rule matched"), "{}", c.rationale);
    }

    #[test]
    fn every_category_has_exactly_one_rule_and_supplier_flags_follow_the_policy() {
        for category in CaseCategory::ALL {
            assert_eq!(RULES.iter().filter(|r| r.category == *category).count(), 1, "{category}");
        }
        let supplier: Vec<CaseCategory> =
            RULES.iter().filter(|r| r.needs_supplier).map(|r| r.category).collect();
        for c in [
            C::FlightCancellation,
            C::FlightDelay,
            C::MissedConnection,
            C::DeniedBoarding,
            C::Baggage,
            C::HotelProblem,
            C::GroundTransport,
            C::ItineraryChange,
            C::ForcedShopping,
        ] {
            assert!(supplier.contains(&c), "{c} must ask its supplier");
        }
        assert_eq!(supplier.len(), 9);
    }

    #[test]
    fn keywords_are_lower_case_and_in_the_right_list() {
        for rule in RULES {
            // English words match at word boundaries, Chinese anywhere: a word in the wrong
            // list would match differently from how it reads.
            assert!(rule.english.iter().all(|k| k.is_ascii() && *k == k.to_lowercase()), "{}", rule.category);
            assert!(rule.chinese.iter().all(|k| !k.is_ascii()), "{}", rule.category);
        }
    }

    #[test]
    fn deadlines_count_from_reception() {
        let received_at = detour_domain::time::from_micros(1_790_000_000_000_000).unwrap();
        let case = OpenedCase {
            case_id: detour_domain::CaseId::new(),
            description: "Flight cancelled".into(),
            segment: detour_domain::Segment {
                kind: K::Flight,
                supplier_code: "CA".into(),
                service_reference: "CA981".into(),
                origin: Some("PEK".into()),
                destination: Some("JFK".into()),
                starts_at: received_at,
                ends_at: None,
                booking_reference: "PNR123".into(),
                price: None,
            },
            received_at,
        };
        let t = triage(&case, received_at + chrono::Duration::minutes(10));
        assert_eq!(t.first_response_due, received_at + chrono::Duration::minutes(45));
        assert_eq!(t.resolution_due, received_at + chrono::Duration::hours(24));
        assert_eq!(t.resolved_at, None);
    }
}
