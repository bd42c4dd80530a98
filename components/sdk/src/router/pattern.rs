//! Route patterns: parsing, matching and the most-specific-wins order. The
//! rules are the host's (`host/src/router.rs`), so a path is judged the same
//! way by the gateway and by the service behind it.

use std::cmp::Ordering;

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Matches exactly this text.
    Literal(String),
    /// `{name}`: matches any one segment.
    Param(String),
    /// `{*name}`: matches the rest of the path, zero or more segments.
    Rest(String),
}

impl Segment {
    /// Higher is more specific.
    fn rank(&self) -> u8 {
        match self {
            Self::Literal(_) => 2,
            Self::Param(_) => 1,
            Self::Rest(_) => 0,
        }
    }
}

/// The non-empty segments of a path or pattern (`//a/` is `a`).
pub(crate) fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// Parses `pattern`. A `{*rest}` ends the pattern: segments after it could
/// never match and are ignored.
pub(crate) fn parse(pattern: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    for part in split(pattern) {
        let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => match name.strip_prefix('*') {
                Some(rest) => Segment::Rest(rest.to_owned()),
                None => Segment::Param(name.to_owned()),
            },
            None => Segment::Literal(part.to_owned()),
        };
        let is_rest = matches!(segment, Segment::Rest(_));
        segments.push(segment);
        if is_rest {
            break;
        }
    }
    segments
}

/// Whether `segments` match the path split into `parts`.
pub(crate) fn matches(segments: &[Segment], parts: &[&str]) -> bool {
    for (i, segment) in segments.iter().enumerate() {
        match segment {
            Segment::Rest(_) => return true,
            Segment::Param(_) if i < parts.len() => {}
            Segment::Literal(text) if parts.get(i) == Some(&text.as_str()) => {}
            _ => return false,
        }
    }
    segments.len() == parts.len()
}

/// The parameters of a path that [`matches`] `segments`, percent-decoded;
/// `Err` names a parameter that is not UTF-8 once decoded.
pub(crate) fn params(
    segments: &[Segment],
    parts: &[&str],
) -> Result<Vec<(String, String)>, String> {
    let mut params = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let (name, raw) = match segment {
            Segment::Literal(_) => continue,
            Segment::Param(name) => (name, parts.get(i).copied().unwrap_or_default().to_owned()),
            Segment::Rest(name) => (name, parts.get(i..).unwrap_or_default().join("/")),
        };
        let value = crate::percent::decode_path(&raw).ok_or_else(|| name.clone())?;
        params.push((name.clone(), value));
    }
    Ok(params)
}

/// Orders two patterns by specificity: segment ranks left to right, then
/// the longer pattern. `Greater` means `a` is more specific.
pub(crate) fn specificity(a: &[Segment], b: &[Segment]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match x.rank().cmp(&y.rank()) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    a.len().cmp(&b.len())
}
