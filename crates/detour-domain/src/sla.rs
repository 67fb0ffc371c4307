//! Service-level targets from the domain: a complaint is answered within the one-hour "golden
//! response period"; a safety case has a plan started within 30 minutes.

use chrono::Duration;

use crate::{CaseCategory, Severity};

/// How soon the traveler must hear from a person.
pub fn first_response_within(category: Option<CaseCategory>, severity: Option<Severity>) -> Duration {
    match (category, severity) {
        (Some(CaseCategory::SafetyMedical), _) | (_, Some(Severity::Critical)) => Duration::minutes(30),
        (_, Some(Severity::High)) => Duration::minutes(45),
        _ => Duration::hours(1),
    }
}

/// How soon the case must be resolved.
pub fn resolution_within(category: CaseCategory, severity: Severity) -> Duration {
    match (category, severity) {
        (CaseCategory::SafetyMedical, _) | (_, Severity::Critical) => Duration::hours(4),
        (_, Severity::High) => Duration::hours(24),
        // Leftover issues after a trip are solved within three working days; calendar days
        // here until the working calendar lands.
        _ => Duration::days(3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safety_is_answered_within_thirty_minutes_and_the_rest_within_the_golden_hour() {
        assert_eq!(
            first_response_within(Some(CaseCategory::SafetyMedical), Some(Severity::Low)),
            Duration::minutes(30)
        );
        assert_eq!(first_response_within(None, None), Duration::hours(1));
        assert!(
            resolution_within(CaseCategory::Baggage, Severity::Critical)
                < resolution_within(CaseCategory::Baggage, Severity::Low)
        );
    }
}
