//! Card numbers: checked, reduced to their last four digits, then dropped.
//!
//! No error message here quotes the number or any part of it: errors go
//! back to clients and into logs, and the full number must reach neither.

use bazaar_sdk::{Error, Result};
use serde_json::Value;

/// The simulated processor declines this card and accepts every other
/// valid one.
const DECLINED_CARD: &str = "4000000000000002";

/// A valid card number, kept only for the length of one request.
pub struct Card {
    digits: String,
}

impl Card {
    /// Checks the `card` field of a request: a string of 12-19 digits
    /// (spaces and dashes allowed between them) that passes the Luhn check.
    /// Takes any JSON value so that a number sent by mistake is refused
    /// here, by a message that does not echo it, rather than by the JSON
    /// decoder, whose message would.
    pub fn parse(value: &Value) -> Result<Self> {
        let Value::String(text) = value else {
            return Err(Error::bad_request("card must be a string of digits"));
        };
        let digits = normalize(text)?;
        if !luhn_valid(&digits) {
            return Err(Error::bad_request("card number is not valid"));
        }
        Ok(Self { digits })
    }

    /// The last four digits: all of the number that is ever stored.
    pub fn last4(&self) -> String {
        let start = self.digits.len().saturating_sub(4);
        self.digits.get(start..).unwrap_or_default().to_owned()
    }

    /// Whether the simulated processor declines this card.
    pub fn is_declined(&self) -> bool {
        self.digits == DECLINED_CARD
    }
}

/// `text` with spaces and dashes removed; a 400 unless the rest is 12-19
/// ASCII digits.
fn normalize(text: &str) -> Result<String> {
    let digits: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::bad_request(
            "card must contain only digits, spaces and dashes",
        ));
    }
    if !(12..=19).contains(&digits.len()) {
        return Err(Error::bad_request("card must have 12-19 digits"));
    }
    Ok(digits)
}

/// The Luhn checksum over ASCII digits: from the right, double every
/// second digit (subtracting 9 above 9); the sum must end in 0.
fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, byte) in digits.bytes().rev().enumerate() {
        if !byte.is_ascii_digit() {
            return false;
        }
        let mut digit = u32::from(byte - b'0');
        if i % 2 == 1 {
            digit *= 2;
            if digit > 9 {
                digit -= 9;
            }
        }
        sum += digit;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn luhn_accepts_test_cards_and_refuses_a_changed_digit() {
        assert!(luhn_valid("4242424242424242"));
        assert!(luhn_valid("4000000000000002"));
        assert!(luhn_valid("5555555555554444"));
        assert!(!luhn_valid("4242424242424241"));
        assert!(!luhn_valid(""));
    }

    #[test]
    fn spaces_and_dashes_are_dropped_and_last4_kept() {
        let card = Card::parse(&json!("4242 4242-4242 4242")).unwrap();
        assert_eq!(card.last4(), "4242");
        assert!(!card.is_declined());
        assert!(
            Card::parse(&json!("4000-0000-0000-0002"))
                .unwrap()
                .is_declined()
        );
    }

    #[test]
    fn bad_cards_are_400_without_quoting_the_number() {
        for bad in [
            json!("4242424242424241"),
            json!("4242x42424242424"),
            json!("42424242424"),
            json!("42424242424242424242"),
            json!(4242424242424242u64),
            json!(null),
        ] {
            let error = Card::parse(&bad).err().expect("should be refused");
            assert_eq!(error.status, 400, "{bad}");
            assert!(!error.message.contains("4242"), "leaks: {}", error.message);
        }
    }
}
