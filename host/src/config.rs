//! `gateway.toml`: the services a host runs, their routes and grants, and the
//! host's own listeners and limits.
//!
//! Every table rejects unknown keys, so a typo is an error that names the key
//! and its line instead of a setting that silently does nothing.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A whole `gateway.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The public HTTP listener and request limits.
    #[serde(default)]
    pub gateway: GatewaySection,
    /// The admin API listener and its bearer token.
    #[serde(default)]
    pub admin: AdminSection,
    /// Where durable data and the compiled-code cache live.
    #[serde(default)]
    pub data: DataSection,
    /// Engine-wide sizing of the instance pool.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// The services, by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// The directory the file was read from; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[gateway]`: the listener clients talk to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    /// Address to listen on. `listen = "127.0.0.1:8080"`
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes. `max_body_bytes = 33554432`
    pub max_body_bytes: usize,
    /// Wall-clock limit for one request, in milliseconds. `request_timeout_ms = 30000`
    pub request_timeout_ms: u64,
    /// Redeploy a service when its component file changes. `watch = true`
    pub watch: bool,
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 32 * 1024 * 1024,
            request_timeout_ms: 30_000,
            watch: false,
        }
    }
}

/// `[admin]`: the deploy/rollback API, on its own listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Address to listen on. `listen = "127.0.0.1:9090"`
    pub listen: SocketAddr,
    /// Bearer token. Prefer the `BAZAAR_ADMIN_TOKEN` environment variable;
    /// without either, the host generates one and writes it to
    /// `<data dir>/admin.token`. `token = "s3cret"`
    pub token: Option<String>,
    /// Largest component accepted by `PUT /services/{name}`, in bytes.
    /// `max_component_bytes = 268435456`
    pub max_component_bytes: usize,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token: None,
            max_component_bytes: 256 * 1024 * 1024,
        }
    }
}

/// `[data]`: durable state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// Directory for each service's store and the admin token. `dir = "data"`
    pub dir: PathBuf,
    /// Directory for compiled machine code, keyed by component hash; omit to
    /// use `<dir>/cache`. `cache_dir = "/var/cache/bazaar"`
    pub cache_dir: Option<PathBuf>,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data"),
            cache_dir: None,
        }
    }
}

/// `[runtime]`: limits shared by every service on the host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// Instances alive at once across all services (the pool's size). `max_instances = 512`
    pub max_instances: u32,
    /// Largest linear memory one instance may grow to, in MiB. `max_memory_mib = 256`
    pub max_memory_mib: usize,
    /// CPU time one request may spend in guest code, in milliseconds. `cpu_time_limit_ms = 10000`
    pub cpu_time_limit_ms: u64,
    /// Previous versions kept per service for rollback. `keep_versions = 5`
    pub keep_versions: usize,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        Self {
            max_instances: 512,
            max_memory_mib: 256,
            cpu_time_limit_ms: 10_000,
            keep_versions: 5,
        }
    }
}

/// `[services.NAME]`: one service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The component file. `component = "components/target/wasm32-wasip2/release/users.wasm"`
    pub component: PathBuf,
    /// Path patterns this service owns: exact, `{param}` or a trailing `{*rest}`.
    /// `routes = ["/api/users", "/api/users/{*rest}"]`
    pub routes: Vec<String>,
    /// Outbound HTTP authorities (`host` or `host:port`) the service may call.
    /// `allowed_outbound_hosts = ["payments.example.com"]`
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Values served to the service through `wasi:config`. `[services.users.config]`
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
}

/// A `wasi:config` value: written in TOML as a string, number or boolean and
/// handed to the guest as a string.
#[derive(Debug, Clone, Deserialize)]
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

/// Why a `gateway.toml` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}; pass an existing file with --config")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema; the message
    /// carries the line, column and key.
    #[error("{path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's report, with line and key.
        message: String,
    },
    /// The file parses but describes something the host cannot run.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
}

impl GatewayConfig {
    /// Reads and checks a `gateway.toml`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        // Absolute, so paths stay right whatever the working directory later is.
        let absolute = std::path::absolute(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = absolute
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        Self::parse(&text, path, base_dir)
    }

    /// Parses `text` as if read from `path`, resolving relative paths against `base_dir`.
    pub fn parse(text: &str, path: &Path, base_dir: PathBuf) -> Result<Self, ConfigError> {
        let mut config: GatewayConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.base_dir = base_dir;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        for (name, service) in &self.services {
            if !is_valid_service_name(name) {
                return Err(invalid(format!(
                    "service name `{name}` must be 1-64 characters of a-z, 0-9, `-` or `_`"
                )));
            }
            if service.routes.is_empty() {
                return Err(invalid(format!(
                    "service `{name}` has no routes; add e.g. routes = [\"/api/{name}/{{*rest}}\"]"
                )));
            }
        }
        if self.runtime.max_instances == 0 || self.runtime.max_memory_mib == 0 {
            return Err(invalid(
                "[runtime] max_instances and max_memory_mib must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// A path from the file, made absolute against the file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }

    /// The data directory, resolved.
    pub fn data_dir(&self) -> PathBuf {
        self.resolve(&self.data.dir)
    }

    /// The compiled-code cache directory, resolved.
    pub fn cache_dir(&self) -> PathBuf {
        match &self.data.cache_dir {
            Some(dir) => self.resolve(dir),
            None => self.data_dir().join("cache"),
        }
    }
}

/// Service names become directory names and URL segments, so keep them plain.
pub fn is_valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::parse(text, Path::new("gateway.toml"), PathBuf::from("/srv"))
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse("[gateway]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n")
            .expect_err("an unknown key must be rejected");
        let text = err.to_string();
        assert!(text.contains("listen_port"), "expected the key in: {text}");
        assert!(text.contains("line 3"), "expected the line in: {text}");
    }

    #[test]
    fn service_sections_parse_with_config_values() {
        let config = parse(
            r#"
            [services.users]
            component = "users.wasm"
            routes = ["/api/users", "/api/users/{*rest}"]
            [services.users.config]
            greeting = "hi"
            rounds = 3
            "#,
        )
        .expect("valid config");
        let users = &config.services["users"];
        assert_eq!(
            config.resolve(&users.component),
            PathBuf::from("/srv/users.wasm")
        );
        assert_eq!(users.config["rounds"].to_string(), "3");
        assert_eq!(users.config["greeting"].to_string(), "hi");
    }

    #[test]
    fn service_without_routes_is_rejected() {
        let err = parse("[services.users]\ncomponent = \"u.wasm\"\nroutes = []\n")
            .expect_err("no routes must be rejected");
        assert!(err.to_string().contains("users"), "{err}");
    }

    #[test]
    fn bad_service_name_is_rejected() {
        let err = parse("[services.\"Users!\"]\ncomponent = \"u.wasm\"\nroutes = [\"/\"]\n")
            .expect_err("a bad name must be rejected");
        assert!(err.to_string().contains("Users!"), "{err}");
    }
}
