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
                    "service `{name}`: topic `{topic}` must be 1-128 characters of a-z, 0-9, `-`, `_` or `.`"
                ));
            }
        }
        for entry in &self.allowed_outbound_hosts {
            OutboundRule::parse(entry)
                .map_err(|e| format!("service `{name}`: allowed_outbound_hosts: {e}"))?;
        }
        Ok(())
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
    !topic.is_empty()
        && topic.len() <= 128
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
}
