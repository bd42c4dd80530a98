//! Percent-decoding of path segments and query strings (RFC 3986), pure so
//! it can be unit-tested natively.

/// The bytes of `text` with every valid `%XX` escape decoded, and `+` read
/// as a space when `plus_as_space` (query strings only). An invalid escape
/// such as `%zz` is kept as written rather than rejected, as browsers do.
pub(crate) fn decode_bytes(text: &str, plus_as_space: bool) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escaped = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (byte, escaped) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', _) if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            (other, _) => {
                out.push(other);
                i += 1;
            }
        }
    }
    out
}

/// A decoded path segment, or `None` if it is not UTF-8 once decoded.
///
/// Refusing invalid UTF-8 (instead of decoding lossily) keeps `%FE` and
/// `%FF` from aliasing to the same key.
pub(crate) fn decode_path(text: &str) -> Option<String> {
    String::from_utf8(decode_bytes(text, false)).ok()
}

/// The `name=value` pairs of a query string, decoded (`+` is a space;
/// invalid UTF-8 is replaced with U+FFFD). A pair without `=` has an empty
/// value; empty pairs (`a=1&&b=2`) are skipped.
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (lossy(name), lossy(value))
        })
}

fn lossy(text: &str) -> String {
    String::from_utf8_lossy(&decode_bytes(text, true)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_escapes_decode_and_invalid_ones_stay() {
        assert_eq!(decode_path("a%20b"), Some("a b".to_owned()));
        assert_eq!(decode_path("100%"), Some("100%".to_owned()));
        assert_eq!(decode_path("%zz%4"), Some("%zz%4".to_owned()));
        assert_eq!(
            decode_path("a+b"),
            Some("a+b".to_owned()),
            "`+` is literal in paths"
        );
        assert_eq!(decode_path("caf%C3%A9"), Some("café".to_owned()));
    }

    #[test]
    fn path_segments_that_are_not_utf8_are_refused() {
        assert_eq!(decode_path("%FE"), None);
        assert_eq!(decode_path("%FF"), None);
    }

    #[test]
    fn query_pairs_decode_plus_and_escapes() {
        let pairs: Vec<_> = query_pairs("line=hello+world&x=%26%3D&flag&&empty=").collect();
        assert_eq!(
            pairs,
            [
                ("line".into(), "hello world".into()),
                ("x".into(), "&=".into()),
                ("flag".into(), String::new()),
                ("empty".into(), String::new()),
            ]
        );
    }
}
