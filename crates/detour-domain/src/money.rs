//! Money as integer minor units with an ISO 4217 currency. No floats anywhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The currencies the suite accepts, with their minor-unit exponent (ISO 4217).
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AUD", 2),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CNY", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("MOP", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("PHP", 2),
    ("PLN", 2),
    ("RUB", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TRY", 2),
    ("TWD", 2),
    ("USD", 2),
    ("VND", 0),
    ("ZAR", 2),
];

/// An ISO 4217 alphabetic currency code the suite knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("`{0}` is not a supported ISO 4217 currency code")]
    UnknownCurrency(String),
    #[error("amounts in {0} and {1} cannot be combined")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount overflows")]
    Overflow,
}

impl Currency {
    pub fn code(&self) -> &str {
        // The bytes are always one of the ASCII codes in CURRENCIES.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point (2 for EUR, 0 for JPY).
    pub fn exponent(&self) -> u8 {
        CURRENCIES.iter().find(|(c, _)| c.as_bytes() == self.0).map(|(_, e)| *e).unwrap_or(2)
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == s)
            .map(|(c, _)| {
                let b = c.as_bytes();
                Self([b[0], b[1], b[2]])
            })
            .ok_or_else(|| MoneyError::UnknownCurrency(s.chars().take(8).collect()))
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.code().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Self {
        Self { amount_minor, currency }
    }

    /// `percent` per cent of the amount, rounded half away from zero to the minor unit.
    pub fn percent(&self, percent: u32) -> Result<Money, MoneyError> {
        let scaled = i128::from(self.amount_minor) * i128::from(percent);
        let rounded = if scaled >= 0 { (scaled + 50) / 100 } else { (scaled - 50) / 100 };
        let amount_minor = i64::try_from(rounded).map_err(|_| MoneyError::Overflow)?;
        Ok(Money { amount_minor, currency: self.currency })
    }

    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let amount_minor = self.amount_minor.checked_add(other.amount_minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { amount_minor, currency: self.currency })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exp = u32::from(self.currency.exponent());
        if exp == 0 {
            return write!(f, "{} {}", self.amount_minor, self.currency);
        }
        let unit = 10i64.pow(exp);
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        let unit = unit.unsigned_abs();
        write!(f, "{sign}{}.{:0width$} {}", abs / unit, abs % unit, self.currency, width = exp as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(minor: i64) -> Money {
        Money::new(minor, "EUR".parse().unwrap())
    }

    #[test]
    fn percent_rounds_half_up_to_the_cent() {
        assert_eq!(eur(1001).percent(30).unwrap().amount_minor, 300); // 300.3
        assert_eq!(eur(1005).percent(50).unwrap().amount_minor, 503); // 502.5 → 503
        assert_eq!(eur(-1005).percent(50).unwrap().amount_minor, -503);
    }

    #[test]
    fn display_uses_the_currency_exponent() {
        assert_eq!(eur(12345).to_string(), "123.45 EUR");
        assert_eq!(Money::new(500, "JPY".parse().unwrap()).to_string(), "500 JPY");
        assert_eq!(eur(-5).to_string(), "-0.05 EUR");
    }

    #[test]
    fn unknown_currency_and_mismatch_are_errors() {
        assert!("EURO".parse::<Currency>().is_err());
        assert!("eur".parse::<Currency>().is_err());
        let cny = Money::new(1, "CNY".parse().unwrap());
        assert!(matches!(eur(1).checked_add(&cny), Err(MoneyError::CurrencyMismatch(..))));
    }
}
