//! Splitting an absolute URL into the parts `wasi:http` sets one by one.

/// The scheme of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
    Other(String),
}

/// An absolute URL split for an outgoing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) scheme: Scheme,
    /// `host` or `host:port`.
    pub(crate) authority: String,
    /// Path and query, starting with `/`; the fragment is dropped.
    pub(crate) path_with_query: String,
}

/// Splits `url` (`scheme://authority/path?query#fragment`); `Err` says what
/// is missing.
pub(crate) fn parse(url: &str) -> Result<Target, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not an absolute URL (no `scheme://`)"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        "" => return Err(format!("`{url}` has an empty scheme")),
        other => Scheme::Other(other.to_owned()),
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    if authority.contains('@') {
        return Err(format!("`{url}` has credentials, which are not supported"));
    }
    let path_with_query = match tail.chars().next() {
        None => "/".to_owned(),
        Some('?') => format!("/{tail}"),
        Some(_) => tail.to_owned(),
    };
    Ok(Target {
        scheme,
        authority: authority.to_owned(),
        path_with_query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(scheme: Scheme, authority: &str, path_with_query: &str) -> Target {
        Target {
            scheme,
            authority: authority.to_owned(),
            path_with_query: path_with_query.to_owned(),
        }
    }

    #[test]
    fn absolute_urls_split_into_scheme_authority_and_path() {
        assert_eq!(
            parse("http://users.internal/api/users/7?x=1#top"),
            Ok(target(Scheme::Http, "users.internal", "/api/users/7?x=1"))
        );
        assert_eq!(
            parse("HTTPS://example.com:8443"),
            Ok(target(Scheme::Https, "example.com:8443", "/"))
        );
        assert_eq!(
            parse("http://127.0.0.1:9?q"),
            Ok(target(Scheme::Http, "127.0.0.1:9", "/?q"))
        );
    }

    #[test]
    fn urls_without_scheme_or_host_are_refused() {
        assert!(parse("/api/users").is_err(), "a path alone is not a URL");
        assert!(parse("http:///x").is_err(), "an empty host is refused");
        assert!(
            parse("http://user:pw@host/").is_err(),
            "credentials are refused"
        );
    }
}
