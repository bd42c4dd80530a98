//! Ids that end up in keys and URL paths.

use crate::error::{Error, Result};

/// Most characters in an id.
pub const MAX_ID_LEN: usize = 64;

/// Whether `id` is fit to be part of a key or a URL path: 1-64 ASCII
/// letters, digits, `_`, `-` or `.`, so it can neither reach into another
/// key's range (`:`) nor change the path of a call (`/`, `?`).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `id` if it [`is_valid_id`], else a 400 naming it as `what`.
pub fn valid_id<'a>(what: &str, id: &'a str) -> Result<&'a str> {
    if is_valid_id(id) {
        Ok(id)
    } else {
        Err(Error::bad_request(format!(
            "{what} must be 1-{MAX_ID_LEN} letters, digits, `_`, `-` or `.`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_cannot_reach_into_another_key_or_path() {
        for good in ["a", "order-1_2.3", &"x".repeat(MAX_ID_LEN)] {
            assert_eq!(valid_id("order_id", good), Ok(good));
        }
        for bad in [
            "",
            "a:b",
            "a/b",
            "a?b",
            "a b",
            "é",
            &"x".repeat(MAX_ID_LEN + 1),
        ] {
            let err = valid_id("order_id", bad).expect_err(bad);
            assert_eq!(err.status, 400);
            assert!(
                err.message.starts_with("order_id must be 1-64"),
                "{}",
                err.message
            );
        }
    }
}
