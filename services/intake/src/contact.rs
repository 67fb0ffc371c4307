//! What intake reads off a contact before storing it: the language it is written in, how
//! urgent it is (for admission under overload), and where the acknowledgement goes.

use detour_domain::{Channel, RequestedOutcome};
use detour_proto::intake::v1::Priority as PbPriority;

/// The language of `text`: "zh" when it is mostly Chinese characters, "en" when it is mostly
/// Latin letters, `None` when there is too little to tell.
pub fn detect_language(text: &str) -> Option<&'static str> {
    let (mut han, mut latin) = (0usize, 0usize);
    for c in text.chars() {
        if is_han(c) {
            han += 1;
        } else if c.is_ascii_alphabetic() {
            latin += 1;
        }
    }
    // A Chinese character carries about a word; compare against words, not letters.
    let latin_words = latin / 4;
    if han >= 2 && han >= latin_words {
        Some("zh")
    } else if latin >= 3 {
        Some("en")
    } else {
        None
    }
}

fn is_han(c: char) -> bool {
    matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF | 0x20000..=0x2A6DF)
}

pub use detour_admission::Priority;

/// The wire form of a contact's priority.
pub fn priority_to_proto(p: Priority) -> i32 {
    (match p {
        Priority::Low => PbPriority::Low,
        Priority::Normal => PbPriority::Normal,
        Priority::High => PbPriority::High,
        Priority::Safety => PbPriority::Safety,
    }) as i32
}

/// Words that make a contact a safety case in either language. Kept broad on purpose: a false
/// alarm costs an early answer, a miss can cost a life.
const SAFETY_EN: &[&str] = &[
    "injur",
    "hurt",
    "hospital",
    "ambulance",
    "doctor",
    "medical",
    "medicine",
    "bleeding",
    "unconscious",
    "heart attack",
    "stroke",
    "seizure",
    "emergency",
    "stranded",
    "danger",
    "unsafe",
    "assault",
    "police",
    "fire",
    "accident",
    "collapsed",
    "fell ",
    "fainted",
    "broken leg",
    "broken arm",
    "pregnan",
    "allerg",
    "missing child",
    "lost child",
    "evacuat",
];
const SAFETY_ZH: &[&str] = &[
    "受伤",
    "医院",
    "救护车",
    "医生",
    "生病",
    "急病",
    "昏迷",
    "出血",
    "流血",
    "心脏",
    "中风",
    "危险",
    "被困",
    "滞留",
    "报警",
    "警察",
    "火灾",
    "事故",
    "摔倒",
    "骨折",
    "急救",
    "紧急",
    "晕倒",
    "过敏",
    "怀孕",
    "孕妇",
    "走失",
    "疏散",
    "不安全",
];

/// How urgent a contact is. Safety words win over everything; a caller on the line (or in a
/// live chat) outranks a message that can wait; bulk partner feeds go last.
pub fn priority(channel: Channel, description: &str, outcomes: &[RequestedOutcome]) -> Priority {
    let lower = description.to_lowercase();
    if SAFETY_EN.iter().any(|w| lower.contains(w)) || SAFETY_ZH.iter().any(|w| description.contains(w)) {
        return Priority::Safety;
    }
    match channel {
        Channel::Phone | Channel::Chat => Priority::High,
        Channel::PartnerFeed | Channel::Proactive => Priority::Low,
        _ if outcomes.contains(&RequestedOutcome::Hotel) => Priority::High,
        _ => Priority::Normal,
    }
}

/// The channels an acknowledgement (or any message about the case) goes out on, in order: the
/// channel the traveler used, then their preferences, then whatever contact details exist.
/// A phone call is confirmed by SMS; a chat or web form by e-mail.
pub fn reply_channels(
    channel: Channel,
    preferred: &[Channel],
    has_email: bool,
    has_phone: bool,
) -> Vec<Channel> {
    let first = match channel {
        Channel::Email | Channel::Chat | Channel::Web => Some(Channel::Email),
        Channel::Sms | Channel::Phone => Some(Channel::Sms),
        Channel::App => Some(Channel::App),
        Channel::Wechat => Some(Channel::Wechat),
        Channel::PartnerFeed | Channel::Proactive => None,
    };
    let mut out = Vec::new();
    let candidates = first.into_iter().chain(preferred.iter().copied()).chain([Channel::Email, Channel::Sms]);
    for c in candidates {
        let reachable = match c {
            Channel::Email => has_email,
            Channel::Sms => has_phone,
            Channel::App | Channel::Wechat => true,
            _ => false,
        };
        if reachable && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_told_apart() {
        assert_eq!(detect_language("航班取消了，我需要改签到明天的航班"), Some("zh"));
        assert_eq!(detect_language("My flight CA981 was cancelled and nobody tells me anything"), Some("en"));
        // Chinese with a flight number and an airport code in it is still Chinese.
        assert_eq!(detect_language("CA981 航班在 PEK 取消了"), Some("zh"));
        assert_eq!(detect_language("CA981"), None, "a flight number alone says nothing");
        assert_eq!(detect_language("?!"), None);
        assert_eq!(detect_language(""), None);
    }

    #[test]
    fn safety_words_make_a_safety_case_on_any_channel() {
        for text in [
            "My mother fell and is injured, we need a doctor",
            "老人摔倒受伤，需要医生",
            "We are STRANDED at the airport",
        ] {
            for channel in [Channel::PartnerFeed, Channel::Email, Channel::Phone] {
                assert_eq!(priority(channel, text, &[]), Priority::Safety, "{text} on {channel:?}");
            }
        }
    }

    #[test]
    fn live_channels_outrank_messages_and_feeds_come_last() {
        let text = "My flight was cancelled";
        assert_eq!(priority(Channel::Phone, text, &[]), Priority::High);
        assert_eq!(priority(Channel::Email, text, &[]), Priority::Normal);
        assert_eq!(priority(Channel::Email, text, &[RequestedOutcome::Hotel]), Priority::High);
        assert_eq!(priority(Channel::PartnerFeed, text, &[]), Priority::Low);
        assert!(Priority::Low < Priority::Normal && Priority::High < Priority::Safety);
    }

    #[test]
    fn replies_go_back_the_way_the_traveler_came_then_by_preference() {
        assert_eq!(reply_channels(Channel::Phone, &[], true, true), vec![Channel::Sms, Channel::Email]);
        assert_eq!(
            reply_channels(Channel::Chat, &[Channel::App], true, false),
            vec![Channel::Email, Channel::App]
        );
        assert_eq!(reply_channels(Channel::Sms, &[], true, false), vec![Channel::Email]);
        assert_eq!(
            reply_channels(Channel::Proactive, &[Channel::Wechat, Channel::Sms], true, true),
            vec![Channel::Wechat, Channel::Sms, Channel::Email]
        );
        assert!(reply_channels(Channel::PartnerFeed, &[], false, false).is_empty());
    }
}
