//! Route patterns: parsing, matching and the most-specific-wins order. The
//! rules are the host's (`host/src/router.rs`), so a path is judged the same
//! way by the gateway and by the service behind it.

use std::cmp::Ordering;

/// One segment of a route pattern, borrowed from the pattern's text.
///
/// Patterns are kept as text and read segment by segment at each match:
/// a fresh instance builds its router for every request, and parsing every
/// pattern up front allocated a vector and a string per segment each time
/// (about 2% of a key-value read's CPU on fresh instances).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Segment<'p> {
    /// Matches exactly this text.
    Literal(&'p str),
    /// `{name}`: matches any one segment.
    Param(&'p str),
    /// `{*name}`: matches the rest of the path, zero or more segments.
    Rest(&'p str),
}

impl Segment<'_> {
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

/// The segments of `pattern`. A `{*rest}` ends the pattern: segments after
/// it could never match and are left out.
pub(crate) fn segments(pattern: &str) -> impl Iterator<Item = Segment<'_>> {
    let mut ended = false;
    split(pattern).map_while(move |part| {
        if ended {
            return None;
        }
        let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => match name.strip_prefix('*') {
                Some(rest) => Segment::Rest(rest),
                None => Segment::Param(name),
            },
            None => Segment::Literal(part),
        };
        ended = matches!(segment, Segment::Rest(_));
        Some(segment)
    })
}

/// How many path segments a pattern can match, from one pass over its
/// text when the route is added: most routes are ruled out by the count
/// alone, before their text is read again (a warm instance keeps its
/// router, and the testbed's 40 routes cost ~20k instructions a request
/// when each was read in full).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Segments before any `{*rest}`.
    fixed: usize,
    /// Whether the pattern ends in `{*rest}` (which takes zero or more).
    rest: bool,
}

impl Shape {
    /// The shape of `pattern`, as [`segments`] reads it, from its bytes:
    /// a fresh instance builds its router for every request, so this runs
    /// for every route each time.
    pub(crate) fn of(pattern: &str) -> Self {
        let mut fixed = 0;
        for part in pattern.as_bytes().split(|&b| b == b'/') {
            if part.starts_with(b"{*") && part.ends_with(b"}") {
                return Self { fixed, rest: true };
            }
            fixed += usize::from(!part.is_empty());
        }
        Self { fixed, rest: false }
    }

    /// Whether a path of `parts` segments could match.
    pub(crate) fn admits(self, parts: usize) -> bool {
        if self.rest {
            parts >= self.fixed
        } else {
            parts == self.fixed
        }
    }
}

/// Whether `pattern` matches the path split into `parts`.
pub(crate) fn matches(pattern: &str, parts: &[&str]) -> bool {
    let mut count = 0;
    for (i, segment) in segments(pattern).enumerate() {
        match segment {
            Segment::Rest(_) => return true,
            Segment::Param(_) if i < parts.len() => {}
            Segment::Literal(text) if parts.get(i) == Some(&text) => {}
            _ => return false,
        }
        count = i + 1;
    }
    count == parts.len()
}

/// The parameters of a path that [`matches`] `pattern`, percent-decoded;
/// `Err` names a parameter that is not UTF-8 once decoded.
pub(crate) fn params(pattern: &str, parts: &[&str]) -> Result<Vec<(String, String)>, String> {
    let mut params = Vec::new();
    for (i, segment) in segments(pattern).enumerate() {
        let (name, raw) = match segment {
            Segment::Literal(_) => continue,
            Segment::Param(name) => (name, parts.get(i).copied().unwrap_or_default().to_owned()),
            Segment::Rest(name) => (name, parts.get(i..).unwrap_or_default().join("/")),
        };
        let value = crate::percent::decode_path(&raw).ok_or_else(|| name.to_owned())?;
        params.push((name.to_owned(), value));
    }
    Ok(params)
}

/// Orders two patterns by specificity: segment ranks left to right, then
/// the longer pattern. `Greater` means `a` is more specific.
pub(crate) fn specificity(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (segments(a), segments(b));
    loop {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) => match x.rank().cmp(&y.rank()) {
                Ordering::Equal => {}
                other => return other,
            },
            (Some(_), None) => return Ordering::Greater,
            (None, Some(_)) => return Ordering::Less,
            (None, None) => return Ordering::Equal,
        }
    }
}
