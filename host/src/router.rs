//! Path → service routing.
//!
//! A [`RouteTable`] is built once from `gateway.toml` and is pure: no I/O, no
//! locks. Patterns are split into segments; a path matches a pattern segment
//! by segment, and when several patterns match, the most specific wins
//! (literal beats `{param}` beats `{*rest}`, compared left to right).
//!
//! The patterns form a tree, one level per segment, so finding a path's
//! route takes a step per segment of the path, however many services the
//! host runs (a scan of every route cost 54k instructions for a request to
//! the last of 1,000 services' routes, as much as the rest of a warm
//! request). Each node of the tree is visited at most once per lookup.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Matches exactly this text.
    Literal(String),
    /// `{name}`: matches any one segment.
    Param,
    /// `{*name}`: matches the rest of the path, zero or more segments.
    Rest,
}

impl Segment {
    /// Higher is more specific.
    fn rank(&self) -> u8 {
        match self {
            Self::Literal(_) => 2,
            Self::Param => 1,
            Self::Rest => 0,
        }
    }
}

/// A parsed route pattern and the service that owns it.
#[derive(Debug, Clone)]
struct Route {
    pattern: String,
    segments: Vec<Segment>,
    service: String,
}

/// Two services' routes that match some of the same paths; ordered by
/// route, then the other service and its route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct RouteOverlap {
    /// The route of the service asked about.
    pub pattern: String,
    /// The other service.
    pub other_service: String,
    /// Its route.
    pub other_pattern: String,
    /// The service that answers the paths both match.
    pub winner: String,
}

impl std::fmt::Display for RouteOverlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "route `{}` overlaps `{}` of service `{}`: `{}` answers the paths both match (the more specific pattern wins)",
            self.pattern, self.other_pattern, self.other_service, self.winner
        )
    }
}

/// Why a route table could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// The pattern is not of a form the router understands.
    #[error("route `{pattern}` of service `{service}` is invalid: {reason}")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// Its service.
        service: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two routes match exactly the same paths.
    #[error(
        "route `{pattern}` of service `{service}` and route `{other_pattern}` of service `{other_service}` match the same paths; remove one"
    )]
    Duplicate {
        /// The later pattern.
        pattern: String,
        /// Its service.
        service: String,
        /// The earlier, equivalent pattern.
        other_pattern: String,
        /// Its service.
        other_service: String,
    },
}

/// Maps request paths to service names.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Every route, in the order given.
    routes: Vec<Route>,
    /// The same routes as a tree of segments, for [`RouteTable::route`].
    root: Node,
}

/// Where the patterns that share their first segments part: the routes
/// that end here, and the segments that follow.
#[derive(Debug, Clone, Default)]
struct Node {
    /// The route whose pattern ends here (an index into `routes`).
    end: Option<usize>,
    /// The route whose `{*rest}` comes next.
    rest: Option<usize>,
    /// The nodes after each literal segment.
    literals: BTreeMap<String, Node>,
    /// The node after a `{param}` segment.
    param: Option<Box<Node>>,
}

impl Node {
    fn insert(&mut self, segments: &[Segment], route: usize) {
        match segments.split_first() {
            None => self.end = Some(route),
            Some((Segment::Rest, _)) => self.rest = Some(route),
            Some((Segment::Param, next)) => self.param.get_or_insert_default().insert(next, route),
            Some((Segment::Literal(text), next)) => self
                .literals
                .entry(text.clone())
                .or_default()
                .insert(next, route),
        }
    }

    /// The most specific route matching `parts`: at each segment a literal
    /// before a `{param}` before a `{*rest}`, and an exact end before a
    /// `{*rest}` that would match nothing more.
    fn find<'p>(&self, mut parts: impl Iterator<Item = &'p str> + Clone) -> Option<usize> {
        let Some(part) = parts.next() else {
            return self.end.or(self.rest);
        };
        self.literals
            .get(part)
            .and_then(|node| node.find(parts.clone()))
            .or_else(|| self.param.as_ref().and_then(|node| node.find(parts)))
            .or(self.rest)
    }
}

/// The result of routing a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    /// The owning service.
    pub service: &'a str,
    /// The pattern that matched, as written in `gateway.toml`.
    pub pattern: &'a str,
}

impl RouteTable {
    /// Builds a table from `(service, pattern)` pairs, rejecting bad or
    /// duplicate patterns.
    pub fn build<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, RouteError> {
        let mut routes: Vec<Route> = Vec::new();
        for (service, pattern) in entries {
            let segments = parse_pattern(pattern).map_err(|reason| RouteError::InvalidPattern {
                pattern: pattern.to_owned(),
                service: service.to_owned(),
                reason,
            })?;
            if let Some(other) = routes.iter().find(|r| r.segments == segments) {
                return Err(RouteError::Duplicate {
                    pattern: pattern.to_owned(),
                    service: service.to_owned(),
                    other_pattern: other.pattern.clone(),
                    other_service: other.service.clone(),
                });
            }
            routes.push(Route {
                pattern: pattern.to_owned(),
                segments,
                service: service.to_owned(),
            });
        }
        let mut root = Node::default();
        for (i, route) in routes.iter().enumerate() {
            root.insert(&route.segments, i);
        }
        Ok(Self { routes, root })
    }

    /// Each route of `service` that can match a path a route of another
    /// service matches too: the more specific one answers those paths, so
    /// one service may take some of another's.
    pub fn overlaps(&self, service: &str) -> Vec<RouteOverlap> {
        let mut found = Vec::new();
        for own in self.routes.iter().filter(|r| r.service == service) {
            for other in self.routes.iter().filter(|r| r.service != service) {
                if can_share_a_path(&own.segments, &other.segments) {
                    let own_wins = specificity(&own.segments, &other.segments).is_gt();
                    found.push(RouteOverlap {
                        pattern: own.pattern.clone(),
                        other_service: other.service.clone(),
                        other_pattern: other.pattern.clone(),
                        winner: if own_wins { service } else { &other.service }.to_owned(),
                    });
                }
            }
        }
        found.sort();
        found
    }

    /// The service owning `path`, if any.
    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        let route = self.routes.get(self.root.find(split(path))?)?;
        Some(RouteMatch {
            service: &route.service,
            pattern: &route.pattern,
        })
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> + Clone {
    path.split('/').filter(|s| !s.is_empty())
}

fn parse_pattern(pattern: &str) -> Result<Vec<Segment>, &'static str> {
    if !pattern.starts_with('/') {
        return Err("it must start with `/`");
    }
    let parts: Vec<&str> = split(pattern).collect();
    let mut segments = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => match name.strip_prefix('*') {
                Some(_) if i + 1 != parts.len() => {
                    return Err("`{*rest}` must be the last segment");
                }
                Some("") => return Err("`{*}` needs a name, e.g. `{*rest}`"),
                Some(_) => Segment::Rest,
                None if name.is_empty() => return Err("`{}` needs a name, e.g. `{id}`"),
                None => Segment::Param,
            },
            None if part.contains(['{', '}']) => {
                return Err("a segment is either literal text or a whole `{param}`");
            }
            None => Segment::Literal((*part).to_owned()),
        };
        segments.push(segment);
    }
    Ok(segments)
}

/// Whether some path matches both patterns: segment by segment, two
/// literals must agree, a `{param}` takes any one segment, and a `{*rest}`
/// takes whatever the other pattern has left (zero segments or more).
fn can_share_a_path(a: &[Segment], b: &[Segment]) -> bool {
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (Some(Segment::Rest), _) | (_, Some(Segment::Rest)) | (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(Segment::Literal(x)), Some(Segment::Literal(y))) if x != y => return false,
            _ => i += 1,
        }
    }
}

/// Orders two patterns by specificity: segment ranks left to right; when
/// one is a prefix of the other, an exact end beats a `{*rest}` that would
/// match nothing more, and otherwise the longer pattern wins.
fn specificity(a: &[Segment], b: &[Segment]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match x.rank().cmp(&y.rank()) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    let shorter = a.len().min(b.len());
    let next_is_rest = |s: &[Segment]| s.get(shorter) == Some(&Segment::Rest);
    if next_is_rest(a) || next_is_rest(b) {
        b.len().cmp(&a.len())
    } else {
        a.len().cmp(&b.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(entries: &[(&str, &str)], service: &str) -> Vec<String> {
        table(entries)
            .overlaps(service)
            .iter()
            .map(|o| {
                format!(
                    "{} {} {} {}",
                    o.pattern, o.other_service, o.other_pattern, o.winner
                )
            })
            .collect()
    }

    #[test]
    fn routes_of_two_services_that_share_paths_are_found_with_the_one_that_wins() {
        let demo = [
            ("products", "/api/products"),
            ("products", "/api/products/{*rest}"),
            ("inventory", "/api/inventory/{*rest}"),
        ];
        let mut taking = demo.to_vec();
        taking.push(("greeter", "/api/products/{id}"));
        assert_eq!(
            overlaps(&taking, "greeter"),
            ["/api/products/{id} products /api/products/{*rest} greeter"]
        );
        let mut under = demo.to_vec();
        under.push(("wide", "/api/{*rest}"));
        assert_eq!(
            overlaps(&under, "wide"),
            [
                "/api/{*rest} inventory /api/inventory/{*rest} inventory",
                "/api/{*rest} products /api/products products",
                "/api/{*rest} products /api/products/{*rest} products",
            ]
        );
        let mut apart = demo.to_vec();
        apart.extend([("orders", "/api/orders/{id}"), ("orders", "/api/ordersx")]);
        assert!(overlaps(&apart, "orders").is_empty());
        assert!(
            overlaps(&[("a", "/x/{id}/y"), ("b", "/x/z/{w}/q")], "a").is_empty(),
            "different lengths without a rest share nothing"
        );
        assert_eq!(
            overlaps(&[("a", "/x/{id}"), ("b", "/{p}/z")], "a"),
            ["/x/{id} b /{p}/z a"],
            "both match /x/z"
        );
    }

    /// Whether `parts` match `segments`, one by one: the definition the
    /// tree must agree with.
    fn matches(segments: &[Segment], parts: &[&str]) -> bool {
        for (i, segment) in segments.iter().enumerate() {
            match segment {
                Segment::Rest => return true,
                Segment::Param if i < parts.len() => {}
                Segment::Literal(text) if parts.get(i) == Some(&text.as_str()) => {}
                _ => return false,
            }
        }
        segments.len() == parts.len()
    }

    /// Every pattern of up to three segments over `a`, `b`, `{p}` and
    /// `{*r}` (last only), and every path of up to four segments over `a`,
    /// `b` and `c`: tables of pseudo-random sets of those patterns route
    /// each path to the first of their routes (most specific first) that
    /// matches it, as a scan of every route did.
    #[test]
    fn the_tree_routes_every_path_to_the_most_specific_matching_pattern() {
        let words = ["a", "b", "{p}", "{*r}"];
        let mut patterns = vec!["/".to_owned()];
        let mut last = vec![String::new()];
        for _ in 0..3 {
            let mut next = Vec::new();
            for prefix in &last {
                for word in words {
                    next.push(format!("{prefix}/{word}"));
                }
            }
            patterns.extend(next.iter().cloned());
            last = next.into_iter().filter(|p| !p.contains('*')).collect();
        }
        let mut paths = vec![Vec::new()];
        let mut level = vec![Vec::new()];
        for _ in 0..4 {
            level = level
                .iter()
                .flat_map(|p: &Vec<&str>| {
                    ["a", "b", "c"].map(|w| p.iter().copied().chain([w]).collect::<Vec<_>>())
                })
                .collect();
            paths.extend(level.iter().cloned());
        }
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..300 {
            let mut entries = Vec::new();
            for (i, pattern) in patterns.iter().enumerate() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                if seed.is_multiple_of(5) {
                    entries.push((format!("s{i}"), pattern.clone()));
                }
            }
            // Patterns that differ only in their parameters' names clash;
            // the generator has one name per kind, so none do.
            let t = RouteTable::build(entries.iter().map(|(s, p)| (s.as_str(), p.as_str())))
                .expect("distinct patterns");
            let mut by_specificity = t.routes.clone();
            by_specificity.sort_by(|a, b| specificity(&b.segments, &a.segments));
            for parts in &paths {
                let path = format!("/{}", parts.join("/"));
                let expected = by_specificity
                    .iter()
                    .find(|r| matches(&r.segments, parts))
                    .map(|r| r.pattern.as_str());
                assert_eq!(
                    t.route(&path).map(|m| m.pattern),
                    expected,
                    "path {path} in {entries:?}"
                );
            }
        }
    }

    fn table(entries: &[(&str, &str)]) -> RouteTable {
        RouteTable::build(entries.iter().copied()).expect("valid routes")
    }

    fn owner<'a>(table: &'a RouteTable, path: &str) -> Option<&'a str> {
        table.route(path).map(|m| m.service)
    }

    #[test]
    fn exact_param_and_rest_patterns_match() {
        let t = table(&[
            ("users", "/api/users"),
            ("users", "/api/users/{id}"),
            ("files", "/static/{*path}"),
        ]);
        assert_eq!(owner(&t, "/api/users"), Some("users"));
        assert_eq!(owner(&t, "/api/users/"), Some("users"));
        assert_eq!(owner(&t, "/api/users/42"), Some("users"));
        assert_eq!(owner(&t, "/api/users/42/orders"), None);
        assert_eq!(owner(&t, "/static/css/site.css"), Some("files"));
        assert_eq!(owner(&t, "/static"), Some("files"));
        assert_eq!(owner(&t, "/nope"), None);
    }

    #[test]
    fn most_specific_pattern_wins_regardless_of_order() {
        let t = table(&[
            ("catchall", "/{*rest}"),
            ("wild", "/api/{*rest}"),
            ("param", "/api/users/{id}"),
            ("login", "/api/users/login"),
        ]);
        assert_eq!(owner(&t, "/api/users/login"), Some("login"));
        assert_eq!(owner(&t, "/api/users/7"), Some("param"));
        assert_eq!(owner(&t, "/api/products"), Some("wild"));
        assert_eq!(owner(&t, "/favicon.ico"), Some("catchall"));
    }

    #[test]
    fn an_exact_route_beats_a_rest_route_that_matches_nothing_more() {
        let t = table(&[
            ("rest", "/api/users/{*rest}"),
            ("exact", "/api/users"),
            ("login", "/api/users/login"),
        ]);
        assert_eq!(owner(&t, "/api/users"), Some("exact"));
        assert_eq!(owner(&t, "/api/users/login"), Some("login"));
        assert_eq!(owner(&t, "/api/users/7"), Some("rest"));
    }

    #[test]
    fn duplicate_routes_are_reported_with_both_owners() {
        let err = RouteTable::build([("a", "/x/{id}"), ("b", "/x/{key}")])
            .expect_err("equivalent patterns must clash");
        let text = err.to_string();
        assert!(text.contains("`a`") && text.contains("`b`"), "{text}");
    }

    #[test]
    fn malformed_patterns_are_rejected() {
        for bad in ["api", "/a/{*rest}/b", "/a/{}", "/a/x{id}", "/a/{*}"] {
            assert!(
                RouteTable::build([("s", bad)]).is_err(),
                "expected `{bad}` to be rejected"
            );
        }
    }
}
