//! A service's route policies, compiled once per spec: who may call each
//! route and method, how often per client, how long a request may take,
//! and which origins may call it from a browser.
//!
//! The first `[[rules]]` entry matching a request's route pattern and
//! method applies; a request no rule matches gets the service's `access`.

use crate::auth::Identity;
use crate::config::{Access, RouteRule, ServiceSpec, parse_rate};
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};
use http::Method;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// A per-client token bucket.
pub type Limiter = DefaultKeyedRateLimiter<String>;

/// The compiled policies of one service.
pub struct RoutePolicy {
    rules: Vec<CompiledRule>,
    default_access: Access,
}

struct CompiledRule {
    routes: Vec<String>,
    methods: Vec<Method>,
    decision: Decision,
}

/// What applies to one request.
#[derive(Clone)]
pub struct Decision {
    /// Who may call.
    pub access: Access,
    /// API keys accepted besides tokens.
    pub api_keys: Vec<String>,
    /// Requests per client, if limited.
    pub limiter: Option<Arc<Limiter>>,
    /// Wall-clock limit, if the rule sets one.
    pub timeout: Option<Duration>,
    /// Origins allowed to call from a browser.
    pub cors_origins: Vec<String>,
}

/// Why a caller may not proceed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No credentials, or bad ones.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the role.
    #[error("{0}")]
    Forbidden(String),
    /// Over the rate limit; retry after this long.
    #[error("too many requests; retry in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
}

impl RoutePolicy {
    /// Compiles the rules of `spec`.
    pub fn compile(spec: &ServiceSpec) -> Result<Self, String> {
        let default_access = spec.default_access();
        let rules = spec
            .rules
            .iter()
            .map(|rule| compile_rule(rule, &default_access))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            rules,
            default_access,
        })
    }

    /// The policy of a request to route `pattern` with `method`.
    pub fn decide(&self, pattern: &str, method: &Method) -> Decision {
        // HEAD is GET without a body, and so is its policy.
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.rules
            .iter()
            .find(|r| {
                (r.routes.is_empty() || r.routes.iter().any(|p| p == pattern))
                    && (r.methods.is_empty() || r.methods.contains(method))
            })
            .map_or_else(
                || Decision {
                    access: self.default_access.clone(),
                    api_keys: Vec::new(),
                    limiter: None,
                    timeout: None,
                    cors_origins: Vec::new(),
                },
                |r| r.decision.clone(),
            )
    }

    /// Forgets rate-limit state of clients that are back to a full bucket.
    pub fn prune(&self) {
        for rule in &self.rules {
            if let Some(limiter) = &rule.decision.limiter {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    }
}

impl Decision {
    /// Checks `identity` (if any) against the access rule.
    pub fn admit(&self, identity: Option<&Identity>) -> Result<(), Refusal> {
        match (&self.access, identity) {
            (Access::Public, _) => Ok(()),
            (_, None) => Err(Refusal::Unauthenticated(
                "this route needs a token: log in and send `Authorization: Bearer <token>`".into(),
            )),
            (Access::Authenticated, Some(_)) => Ok(()),
            (Access::Role(role), Some(who)) if who.has_role(role) => Ok(()),
            (Access::Role(role), Some(_)) => Err(Refusal::Forbidden(format!(
                "this route needs the `{role}` role"
            ))),
        }
    }

    /// Takes one request from the bucket of the client `client()` names,
    /// asked for only when the route has a rate limit.
    pub fn take(&self, client: impl FnOnce() -> String) -> Result<(), Refusal> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&client()).map_err(|not_until| {
            Refusal::RateLimited(not_until.wait_time_from(limiter.clock().now()))
        })
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, if allowed.
    pub fn allowed_origin<'a>(&self, origin: &'a str) -> Option<&'a str> {
        self.cors_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
            .then_some(origin)
    }
}

fn compile_rule(rule: &RouteRule, default_access: &Access) -> Result<CompiledRule, String> {
    let methods = rule
        .methods
        .iter()
        .map(|m| Method::from_bytes(m.as_bytes()).map_err(|e| format!("method `{m}`: {e}")))
        .collect::<Result<_, _>>()?;
    let access = match &rule.access {
        Some(text) => Access::parse(text)?,
        None => default_access.clone(),
    };
    let limiter = rule
        .rate_limit
        .as_deref()
        .map(|rate| -> Result<Arc<Limiter>, String> {
            let (count, period) = parse_rate(rate)?;
            let burst = NonZeroU32::new(count).ok_or("a rate needs a count")?;
            let quota = Quota::with_period(period / count)
                .ok_or("the rate is too fast")?
                .allow_burst(burst);
            Ok(Arc::new(Limiter::keyed(quota)))
        })
        .transpose()?;
    Ok(CompiledRule {
        routes: rule.routes.clone(),
        methods,
        decision: Decision {
            access,
            api_keys: rule.api_keys.clone(),
            limiter,
            timeout: rule.timeout_ms.map(Duration::from_millis),
            cors_origins: rule.cors_origins.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(toml: &str) -> RoutePolicy {
        let spec: ServiceSpec = toml::from_str(toml).expect("valid spec");
        RoutePolicy::compile(&spec).expect("valid rules")
    }

    fn user(roles: &[&str]) -> Identity {
        Identity {
            subject: "u".into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            api_key: None,
        }
    }

    #[test]
    fn the_first_matching_rule_decides_and_the_service_default_covers_the_rest() {
        let p = policy(
            r#"
            routes = ["/p", "/p/{*rest}"]
            [[rules]]
            methods = ["POST", "PUT"]
            access = "role:admin"
            [[rules]]
            routes = ["/p/{*rest}"]
            access = "authenticated"
            "#,
        );
        let write = p.decide("/p", &Method::POST);
        assert_eq!(
            write.admit(Some(&user(&[]))),
            Err(Refusal::Forbidden(
                "this route needs the `admin` role".into()
            ))
        );
        assert!(write.admit(Some(&user(&["admin"]))).is_ok());
        assert!(matches!(
            write.admit(None),
            Err(Refusal::Unauthenticated(_))
        ));
        assert!(p.decide("/p/{*rest}", &Method::GET).admit(None).is_err());
        assert!(
            p.decide("/p", &Method::GET).admit(None).is_ok(),
            "public by default"
        );
        assert!(p.decide("/p", &Method::HEAD).admit(None).is_ok());
    }

    #[test]
    fn a_rate_limit_is_per_client_and_says_when_to_retry() {
        let p = policy("routes = [\"/r\"]\n[[rules]]\nrate_limit = \"2/min\"\n");
        let d = p.decide("/r", &Method::POST);
        assert!(d.take(|| "a".into()).is_ok() && d.take(|| "a".into()).is_ok());
        match d.take(|| "a".into()) {
            Err(Refusal::RateLimited(wait)) => assert!(wait > Duration::from_secs(20)),
            other => panic!("the third request should be limited: {other:?}"),
        }
        assert!(
            d.take(|| "b".into()).is_ok(),
            "another client has its own bucket"
        );
    }

    #[test]
    fn cors_origins_are_matched() {
        let p = policy("routes = [\"/c\"]\n[[rules]]\ncors_origins = [\"https://shop.example\"]\n");
        let d = p.decide("/c", &Method::GET);
        assert_eq!(
            d.allowed_origin("https://shop.example"),
            Some("https://shop.example")
        );
        assert_eq!(d.allowed_origin("https://evil.example"), None);
    }
}
