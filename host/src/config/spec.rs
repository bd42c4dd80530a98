//! What a service is and may do, apart from its code: the part of a
//! `[services.NAME]` section that a live `bazaar deploy` can also carry.

use crate::capability::outbound::OutboundRule;
use crate::router::RouteTable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Routes, grants and config of one service.
///
/// Services in `gateway.toml` take theirs from the file; a service added live
/// with `bazaar deploy NAME FILE --route ...` carries one with the deploy, and
/// the host keeps it in its deployment records. Without grants a service may
/// call nothing, publish nothing and reach no outside host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSpec {
    /// Path patterns it owns. `routes = ["/api/reviews", "/api/reviews/{*rest}"]`
    pub routes: Vec<String>,
    /// Services it may call at `http://NAME.internal/...`. `calls = ["orders"]`
    pub calls: Vec<String>,
    /// Topics it may publish to. `publishes = ["review-posted"]`
    pub publishes: Vec<String>,
    /// Topics it receives. `subscribes = ["order-placed"]`
    pub subscribes: Vec<String>,
    /// Outside hosts it may call. `allowed_outbound_hosts = ["https://api.example.com"]`
    pub allowed_outbound_hosts: Vec<String>,
    /// Its `wasi:config` values. `[config]`
    pub config: BTreeMap<String, ConfigValue>,
    /// Who may call its routes unless a rule says otherwise: `public`,
    /// `authenticated` (any valid token or API key) or `role:NAME`.
    /// `access = "authenticated"`
    pub access: Option<String>,
    /// Policies for some of its routes and methods; the first that matches
    /// a request applies. `[[rules]]`
    pub rules: Vec<RouteRule>,
    /// May sign tokens through `bazaar:platform/auth`. `issues_tokens = true`
    pub issues_tokens: bool,
    /// The roles its tokens may carry. `token_roles = ["customer"]`
    pub token_roles: Vec<String>,
    /// Its sandbox limits; unset ones take `[runtime]`'s. `[limits]`
    pub limits: ServiceLimits,
    /// Serve up to this many requests and event deliveries, one after
    /// another, with one instance (warm instances) instead of a fresh one
    /// each; see the
    /// README for what may carry over between them. `instance_reuse = 1000`
    pub instance_reuse: Option<u32>,
}

/// A policy for some routes and methods of a service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteRule {
    /// Route patterns of the service it covers; all when empty.
    /// `routes = ["/api/users/login"]`
    pub routes: Vec<String>,
    /// Methods it covers; all when empty. `methods = ["POST", "PUT"]`
    pub methods: Vec<String>,
    /// Who may call: `public`, `authenticated` or `role:NAME`.
    /// `access = "role:admin"`
    pub access: Option<String>,
    /// Names of `[auth.api_keys]` accepted as well as tokens.
    /// `api_keys = ["warehouse"]`
    pub api_keys: Vec<String>,
    /// Requests per client (token subject, API key, or IP address), as
    /// `N/s`, `N/min` or `N/h`; a client may burst up to N.
    /// `rate_limit = "10/min"`
    pub rate_limit: Option<String>,
    /// Wall-clock limit of one request, in milliseconds. `timeout_ms = 2000`
    pub timeout_ms: Option<u64>,
    /// Cross-origin requests from these origins are allowed (`*` for any);
    /// the gateway answers their preflights. `cors_origins = ["https://shop.example"]`
    pub cors_origins: Vec<String>,
}

/// A service's sandbox limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceLimits {
    /// Requests and event deliveries running at once; more wait briefly,
    /// then get 503. `max_concurrency = 64`
    pub max_concurrency: Option<u32>,
    /// All memories of one instance together, in MiB. `memory_mib = 64`
    pub memory_mib: Option<usize>,
    /// CPU time one request may spend running, in milliseconds. `cpu_time_ms = 2000`
    pub cpu_time_ms: Option<u64>,
    /// Wall-clock limit of one request, in milliseconds. `timeout_ms = 10000`
    pub timeout_ms: Option<u64>,
}

/// Who may call a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// Any caller with a valid token or accepted API key.
    Authenticated,
    /// A caller whose token or API key carries this role.
    Role(String),
}

impl Access {
    /// Parses `public`, `authenticated` or `role:NAME`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "public" => Ok(Self::Public),
            "authenticated" => Ok(Self::Authenticated),
            other => match other.strip_prefix("role:") {
                Some(role) if is_valid_topic(role) => Ok(Self::Role(role.to_owned())),
                _ => Err(format!(
                    "access `{text}` must be `public`, `authenticated` or `role:NAME`"
                )),
            },
        }
    }
}

/// Parses a rate like `10/s`, `60/min` or `1000/h` into (count, period).
pub fn parse_rate(text: &str) -> Result<(u32, std::time::Duration), String> {
    let invalid = || format!("rate_limit `{text}` must look like `10/s`, `60/min` or `1000/h`");
    let (count, unit) = text.split_once('/').ok_or_else(invalid)?;
    let count: u32 = count.trim().parse().map_err(|_| invalid())?;
    let seconds = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "min" | "m" | "minute" => 60,
        "h" | "hour" => 3600,
        _ => return Err(invalid()),
    };
    if count == 0 {
        return Err(invalid());
    }
    Ok((count, std::time::Duration::from_secs(seconds)))
}

/// A `wasi:config` value: written in TOML as a string, number or boolean and
/// handed to the guest as a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    /// `key = "text"`
    String(String),
    /// `key = 42`
    Integer(i64),
    /// `key = 1.5`
    Float(f64),
    /// `key = true`
    Boolean(bool),
}

impl std::fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::String(s) => f.write_str(s),
            Self::Integer(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Boolean(b) => write!(f, "{b}"),
        }
    }
}

impl ServiceSpec {
    /// Checks the spec of service `name`; the error says what to change.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        if !is_valid_service_name(name) {
            return Err(format!(
                "service name `{name}` must be 1-64 characters of a-z, 0-9, `-` or `_`"
            ));
        }
        if self.routes.is_empty() && self.subscribes.is_empty() {
            return Err(format!(
                "service `{name}` has no routes and no subscriptions; add e.g. routes = [\"/api/{name}/{{*rest}}\"]"
            ));
        }
        RouteTable::build(self.routes.iter().map(|r| (name, r.as_str())))
            .map_err(|e| e.to_string())?;
        for callee in &self.calls {
            if !is_valid_service_name(callee) {
                return Err(format!(
                    "service `{name}`: `calls` names `{callee}`, which is not a valid service name"
                ));
            }
        }
        for topic in self.publishes.iter().chain(&self.subscribes) {
            if !is_valid_topic(topic) {
                return Err(format!(
                    "service `{name}`: topic `{topic}` must be 1-128 characters of a-z, 0-9, `-`, `_` or `.`, with no empty word between dots"
                ));
            }
        }
        for entry in &self.allowed_outbound_hosts {
            OutboundRule::parse(entry)
                .map_err(|e| format!("service `{name}`: allowed_outbound_hosts: {e}"))?;
        }
        if let Some(access) = &self.access {
            Access::parse(access).map_err(|e| format!("service `{name}`: {e}"))?;
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let at = |e: String| format!("service `{name}`, rule {}: {e}", i + 1);
            for route in &rule.routes {
                if !self.routes.contains(route) {
                    return Err(at(format!(
                        "`{route}` is not one of the service's routes; name one of {:?}",
                        self.routes
                    )));
                }
            }
            for method in &rule.methods {
                if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(at(format!(
                        "method `{method}` must be upper case, e.g. `POST`"
                    )));
                }
            }
            if let Some(access) = &rule.access {
                Access::parse(access).map_err(at)?;
            }
            if let Some(rate) = &rule.rate_limit {
                parse_rate(rate).map_err(at)?;
            }
            if rule.timeout_ms == Some(0) {
                return Err(at("timeout_ms must be at least 1".into()));
            }
        }
        let limits = &self.limits;
        if limits.max_concurrency == Some(0)
            || limits.memory_mib == Some(0)
            || limits.cpu_time_ms == Some(0)
            || limits.timeout_ms == Some(0)
        {
            return Err(format!(
                "service `{name}`: [limits] values must be at least 1"
            ));
        }
        if self.instance_reuse == Some(0) {
            return Err(format!(
                "service `{name}`: instance_reuse must be at least 1 (or left out for a fresh instance per request)"
            ));
        }
        if !self.issues_tokens && !self.token_roles.is_empty() {
            return Err(format!(
                "service `{name}`: token_roles needs issues_tokens = true"
            ));
        }
        Ok(())
    }

    /// Its default access.
    pub fn default_access(&self) -> Access {
        self.access
            .as_deref()
            .and_then(|a| Access::parse(a).ok())
            .unwrap_or(Access::Public)
    }

    /// Config values as the strings a guest reads.
    pub fn config_strings(&self) -> BTreeMap<String, String> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect()
    }
}

/// Service names become directory names and host names, so keep them plain.
pub fn is_valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Topic names appear in URLs and log lines, so keep them plain.
pub fn is_valid_topic(topic: &str) -> bool {
    // Dots separate words (`orders.placed`), never empty ones: a topic is
    // also a NATS subject on a fleet.
    !topic.is_empty()
        && topic.len() <= 128
        && topic.split('.').all(|word| !word.is_empty())
        && topic.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_round_trips_through_toml_and_json() {
        let text = "routes = [\"/r\"]\ncalls = [\"orders\"]\n[config]\nlimit = 5\n";
        let spec: ServiceSpec = toml::from_str(text).expect("valid spec");
        spec.validate("reviews").expect("valid");
        let json = serde_json::to_string(&spec).expect("serializes");
        let back: ServiceSpec = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, spec);
        assert_eq!(back.config_strings()["limit"], "5");
    }

    #[test]
    fn an_unknown_spec_key_is_rejected() {
        let err = toml::from_str::<ServiceSpec>("rutes = [\"/r\"]\n").expect_err("typo");
        assert!(err.to_string().contains("rutes"), "{err}");
    }

    #[test]
    fn bad_topics_and_callees_are_named() {
        let mut spec = ServiceSpec {
            routes: vec!["/r".into()],
            publishes: vec!["Bad Topic".into()],
            ..ServiceSpec::default()
        };
        assert!(spec.validate("s").unwrap_err().contains("Bad Topic"));
        spec.publishes.clear();
        spec.calls = vec!["Nope!".into()];
        assert!(spec.validate("s").unwrap_err().contains("Nope!"));
    }

    #[test]
    fn topics_have_no_empty_words() {
        assert!(is_valid_topic("orders.placed"));
        assert!(is_valid_topic("order-placed_v2"));
        for bad in [".orders", "orders.", "orders..placed", "", "a*b", "a>b"] {
            assert!(!is_valid_topic(bad), "{bad:?}");
        }
    }
}
