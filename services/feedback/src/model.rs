//! Feedback's domain: one satisfaction survey per resolved case, and the traveler's answer.

use detour_domain::{CaseId, Instant, SurveyId};

pub use detour_domain::time::now;

/// Longest comment a traveler may leave with a score.
pub const MAX_COMMENT_CHARS: usize = 2_000;

detour_domain::stored_names!(
    SurveyStatus, "survey status", proto = detour_proto::feedback::v1::SurveyStatus, {
    Sent => "sent",
    Answered => "answered",
});

/// Satisfaction from 1 (very unhappy) to 5 (very satisfied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Score(u8);

impl Score {
    pub const MIN: i32 = 1;
    pub const MAX: i32 = 5;

    /// `None` outside 1..=5.
    pub fn new(value: i32) -> Option<Score> {
        if (Self::MIN..=Self::MAX).contains(&value) { u8::try_from(value).ok().map(Score) } else { None }
    }

    pub fn get(self) -> i32 {
        i32::from(self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub score: Score,
    pub comment: Option<String>,
    pub answered_at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survey {
    pub id: SurveyId,
    pub case_id: CaseId,
    pub sent_at: Instant,
    /// `None` until the traveler answers; a survey takes one answer.
    pub answer: Option<Answer>,
}

impl Survey {
    pub fn status(&self) -> SurveyStatus {
        if self.answer.is_some() { SurveyStatus::Answered } else { SurveyStatus::Sent }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// The event was applied before (a redelivery), or the case already has its survey.
    Unchanged,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_one_to_five() {
        assert_eq!(Score::new(0), None);
        assert_eq!(Score::new(6), None);
        assert_eq!(Score::new(-1), None);
        assert_eq!(Score::new(1).map(Score::get), Some(1));
        assert_eq!(Score::new(5).map(Score::get), Some(5));
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in [SurveyStatus::Sent, SurveyStatus::Answered] {
            assert_eq!(s.as_str().parse::<SurveyStatus>(), Ok(s));
        }
        assert!("closed".parse::<SurveyStatus>().is_err());
    }
}
