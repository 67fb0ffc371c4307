//! Messages as the dispatcher would build them, with personal data the tests look for.

// Each test binary uses the part it needs.
#![allow(dead_code)]

use detour_notify::{
    Affected, DisruptionFacts, DisruptionKind, Language, NotifyChannel, OutgoingMessage, Purpose,
    TemplateVars, render,
};
use detour_vault::SecretString;

pub const EMAIL: &str = "li.wei@example.com";
pub const PHONE: &str = "+8613800138000";
pub const NAME_EN: &str = "Li Wei";
pub const NAME_ZH: &str = "李伟";

pub fn vars(name: &str) -> TemplateVars {
    TemplateVars {
        case_number: "DT-0000042".to_owned(),
        first_response_due: Some("2026-12-03T14:00:00Z".parse().expect("instant")),
        traveler_name: Some(SecretString::new(name.to_owned())),
        disruption: Some(DisruptionFacts {
            kind: DisruptionKind::Cancelled,
            affected: Affected::Flight { number: "CA981".to_owned(), local_date: "2026-12-03".to_owned() },
            reason: Some("大雪".to_owned()),
            delay_minutes: None,
            diverted_to: None,
        }),
    }
}

/// The disruption notice in `language` for `channel`, addressed to `to`.
pub fn message(id: &str, channel: NotifyChannel, to: &str, language: Language) -> OutgoingMessage {
    let name = if language == Language::Zh { NAME_ZH } else { NAME_EN };
    OutgoingMessage {
        notification_id: id.to_owned(),
        channel,
        to: SecretString::new(to.to_owned()),
        language,
        rendered: render(Purpose::Disruption, language, channel, &vars(name)),
    }
}

/// The personal data no error may contain.
pub const PERSONAL: [&str; 5] = [EMAIL, PHONE, "8613800138000", NAME_EN, NAME_ZH];
