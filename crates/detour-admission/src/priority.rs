use std::fmt;

/// How much a request matters when intake is overloaded, lowest first, so `Ord` ranks them.
///
/// What gets which priority is the caller's decision (e.g. a bulk partner import is `Low`, a
/// traveler stranded at a gate is `High`); [`Priority::Safety`] is for safety and medical
/// contacts, which admission control never refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Low,
    Normal,
    High,
    Safety,
}

impl Priority {
    /// Every priority, lowest first.
    pub const ALL: [Priority; 4] = [Priority::Low, Priority::Normal, Priority::High, Priority::Safety];

    /// The name used in metrics labels, error details and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Safety => "safety",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_rank_from_low_to_safety() {
        let mut shuffled = [Priority::High, Priority::Safety, Priority::Low, Priority::Normal];
        shuffled.sort();
        assert_eq!(shuffled, Priority::ALL);
        let names: Vec<_> = Priority::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["low", "normal", "high", "safety"]);
    }
}
