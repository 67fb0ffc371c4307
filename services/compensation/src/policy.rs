//! The company policy that sets a case's first offer (compensation-rules.md, section 3).
//!
//! Deliberately small and explicit until the jurisdiction rule packs (EU261, the Chinese travel
//! agency standard) arrive: those decide what is *owed*, this decides what the company *offers*
//! first. A pure function of what triage and the supplier said, so it is tested on its own.

use detour_domain::money::MoneyError;
use detour_domain::{CaseCategory, Currency, Money};

use crate::model::{CaseContext, SupplierOutcome};

/// Rule names, as offers and their events record them.
pub mod rules {
    pub const FIRST_OFFER_30PCT: &str = "company.first_offer_30pct";
    pub const CARE_ONLY_FORCE_MAJEURE: &str = "company.care_only_force_majeure";
    pub const FEE_DISPUTE_REFUND: &str = "company.fee_dispute_refund";
    pub const GOODWILL_NO_PRICE: &str = "company.goodwill_no_price";
}

/// The first rung of the company's ladder; a declined offer is followed by a larger second one.
pub const FIRST_OFFER_PERCENT: u32 = 30;

/// Company policy refunds a wrongly charged item and adds a voucher of twice its amount.
/// Vouchers cannot be issued yet, so the refund alone is offered.
pub const FEE_DISPUTE_REFUND_PERCENT: u32 = 100;

/// The goodwill gesture when the price is unknown: 50.00 EUR.
pub const GOODWILL_MINOR: i64 = 5_000;
pub const GOODWILL_CURRENCY: &str = "EUR";

/// What the policy offers, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub amount: Money,
    pub rule: &'static str,
    /// For the agent and the traveler: the reason in words.
    pub rationale: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Offered when no share of a price can be computed.
    pub goodwill: Money,
}

impl Policy {
    /// The company's configuration.
    pub fn company() -> Result<Self, MoneyError> {
        let currency: Currency = GOODWILL_CURRENCY.parse()?;
        Ok(Self { goodwill: Money::new(GOODWILL_MINOR, currency) })
    }

    /// The first offer for `case`, once the supplier has said `supplier` (`None` when the case
    /// needed no supplier).
    pub fn first_offer(
        &self,
        case: &CaseContext,
        supplier: Option<SupplierOutcome>,
    ) -> Result<Proposal, MoneyError> {
        // A wrongly charged fee is the company's own mistake: no circumstance at the supplier,
        // extraordinary or not, excuses refunding it.
        if case.category == CaseCategory::FeeDispute {
            return match case.price {
                Some(price) => fee_dispute_refund(price),
                None => Ok(self.goodwill_no_price()),
            };
        }
        if supplier == Some(SupplierOutcome::ExtraordinaryCircumstances) {
            let currency = case.price.map_or(self.goodwill.currency, |p| p.currency);
            return Ok(care_only(currency));
        }
        match case.price {
            Some(price) => first_offer_share(price),
            None => Ok(self.goodwill_no_price()),
        }
    }

    fn goodwill_no_price(&self) -> Proposal {
        Proposal {
            amount: self.goodwill,
            rule: rules::GOODWILL_NO_PRICE,
            rationale: format!(
                "The price paid for the segment is not known, so no share of it can be offered; a goodwill \
                 gesture of {} is offered instead.",
                self.goodwill
            ),
        }
    }
}

fn first_offer_share(price: Money) -> Result<Proposal, MoneyError> {
    let amount = price.percent(FIRST_OFFER_PERCENT)?;
    Ok(Proposal {
        amount,
        rule: rules::FIRST_OFFER_30PCT,
        rationale: format!(
            "First offer of the company's compensation ladder: {FIRST_OFFER_PERCENT} % of the {price} paid \
             for the segment, rounded half up to the minor unit."
        ),
    })
}

fn fee_dispute_refund(price: Money) -> Result<Proposal, MoneyError> {
    let amount = price.percent(FEE_DISPUTE_REFUND_PERCENT)?;
    Ok(Proposal {
        amount,
        rule: rules::FEE_DISPUTE_REFUND,
        rationale: format!(
            "The disputed charge of {price} is refunded in full. Company policy adds a voucher of twice \
             that amount, which is not issued automatically yet."
        ),
    })
}

fn care_only(currency: Currency) -> Proposal {
    Proposal {
        amount: Money::new(0, currency),
        rule: rules::CARE_ONLY_FORCE_MAJEURE,
        rationale: "The supplier reports extraordinary circumstances beyond its control, so no money is \
                    owed; the traveler is offered care and rebooking instead."
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use detour_domain::{CaseId, Severity};

    fn money(minor: i64, currency: &str) -> Money {
        Money::new(minor, currency.parse().unwrap())
    }

    fn case(category: CaseCategory, price: Option<Money>) -> CaseContext {
        CaseContext {
            case_id: CaseId::new(),
            category,
            severity: Severity::Medium,
            needs_supplier: true,
            price,
            triaged_at: detour_domain::time::now(),
        }
    }

    fn offer(category: CaseCategory, price: Option<Money>, supplier: Option<SupplierOutcome>) -> Proposal {
        Policy::company().unwrap().first_offer(&case(category, price), supplier).unwrap()
    }

    #[test]
    fn the_first_offer_is_thirty_percent_rounded_half_up() {
        let p = offer(CaseCategory::FlightCancellation, Some(money(1_001, "EUR")), None);
        assert_eq!(p.amount, money(300, "EUR")); // 300.3
        assert_eq!(p.rule, "company.first_offer_30pct");
        assert!(p.rationale.contains("30 % of the 10.01 EUR"), "{}", p.rationale);
        let p = offer(CaseCategory::HotelProblem, Some(money(1_005, "EUR")), None);
        assert_eq!(p.amount, money(302, "EUR")); // 301.5 rounds up
        let p = offer(CaseCategory::Baggage, Some(money(5_000, "JPY")), None);
        assert_eq!(p.amount, money(1_500, "JPY"));
    }

    #[test]
    fn supplier_answers_other_than_force_majeure_keep_the_first_rung() {
        for outcome in
            [SupplierOutcome::AlternativeOffered, SupplierOutcome::FaultAccepted, SupplierOutcome::Disputed]
        {
            let p = offer(CaseCategory::FlightDelay, Some(money(520_000, "CNY")), Some(outcome));
            assert_eq!((p.amount, p.rule), (money(156_000, "CNY"), rules::FIRST_OFFER_30PCT), "{outcome:?}");
        }
    }

    #[test]
    fn force_majeure_offers_care_and_no_money_in_the_price_currency() {
        let p = offer(
            CaseCategory::FlightCancellation,
            Some(money(520_000, "CNY")),
            Some(SupplierOutcome::ExtraordinaryCircumstances),
        );
        assert_eq!(p.amount, money(0, "CNY"));
        assert_eq!(p.rule, "company.care_only_force_majeure");
        assert!(p.rationale.contains("extraordinary circumstances"), "{}", p.rationale);
        // Without a price the care-only offer still states a currency: the goodwill one.
        let p =
            offer(CaseCategory::FlightCancellation, None, Some(SupplierOutcome::ExtraordinaryCircumstances));
        assert_eq!((p.amount, p.rule), (money(0, "EUR"), rules::CARE_ONLY_FORCE_MAJEURE));
    }

    #[test]
    fn a_fee_dispute_refunds_the_whole_price_whatever_the_supplier_says() {
        let p = offer(CaseCategory::FeeDispute, Some(money(12_345, "EUR")), None);
        assert_eq!(p.amount, money(12_345, "EUR"));
        assert_eq!(p.rule, "company.fee_dispute_refund");
        assert!(p.rationale.contains("123.45 EUR"), "{}", p.rationale);
        let p = offer(
            CaseCategory::FeeDispute,
            Some(money(12_345, "EUR")),
            Some(SupplierOutcome::ExtraordinaryCircumstances),
        );
        assert_eq!((p.amount, p.rule), (money(12_345, "EUR"), rules::FEE_DISPUTE_REFUND));
    }

    #[test]
    fn without_a_price_a_goodwill_gesture_is_offered() {
        let p = offer(CaseCategory::StaffService, None, None);
        assert_eq!(p.amount, money(5_000, "EUR"));
        assert_eq!(p.rule, "company.goodwill_no_price");
        assert!(p.rationale.contains("50.00 EUR"), "{}", p.rationale);
        let p = offer(CaseCategory::FeeDispute, None, None);
        assert_eq!(p.rule, rules::GOODWILL_NO_PRICE);
        let custom = Policy { goodwill: money(2_000, "GBP") };
        let p = custom
            .first_offer(&case(CaseCategory::Other, None), Some(SupplierOutcome::FaultAccepted))
            .unwrap();
        assert_eq!(p.amount, money(2_000, "GBP"));
    }
}
