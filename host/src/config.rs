//! `gateway.toml`: the services a host runs, their routes and grants, and the
//! host's own listeners and limits.
//!
//! Every table rejects unknown keys, so a typo is an error that names the key
//! and its line instead of a setting that silently does nothing.

mod spec;

pub use spec::{
    Access, ConfigValue, RouteRule, ServiceLimits, ServiceSpec, is_valid_service_name,
    is_valid_topic, parse_rate,
};

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
    /// Retries and dead letters of event delivery.
    #[serde(default)]
    pub events: EventsSection,
    /// Tokens and API keys.
    #[serde(default)]
    pub auth: AuthSection,
    /// Where traces go, and how logs look.
    #[serde(default)]
    pub telemetry: TelemetrySection,
    /// Where service data, events and deployments live: on this host, or
    /// shared by a fleet.
    #[serde(default)]
    pub backend: BackendSection,
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
    /// Wall-clock limit for one request, from arrival to the last byte of
    /// the response body, in milliseconds. `request_timeout_ms = 30000`
    pub request_timeout_ms: u64,
    /// Redeploy a service when the content of its component file changes. `watch = true`
    pub watch: bool,
    /// Time a client has to send a request's headers, and that an idle
    /// keep-alive connection stays open, in milliseconds. `header_read_timeout_ms = 10000`
    pub header_read_timeout_ms: u64,
    /// Connections open at once; more wait in the listen queue. `max_connections = 4096`
    pub max_connections: usize,
    /// Headers one request may carry. `max_headers = 100`
    pub max_headers: usize,
    /// Bytes of one request's head (request line and headers). `max_header_bytes = 16384`
    pub max_header_bytes: usize,
    /// Bytes of a request's path and query. `max_uri_bytes = 8192`
    pub max_uri_bytes: usize,
    /// Threads of their own that serve the gateway's connections, each on
    /// a single-threaded runtime: a connection goes to the thread serving
    /// the fewest and stays there, so its requests never move between
    /// threads. 0 (the default) serves them on the host's shared,
    /// work-stealing runtime, where a core that runs dry takes over ready
    /// connections from one that is busy or descheduled: a steadier tail
    /// under load that competes for the cores, and the streams of one
    /// HTTP/2 connection spread over every core. Threads of their own made
    /// ~5% (16 connections) to ~12% (64) more fresh-instance requests a
    /// second on a 2-core machine, at the cost of that tail. `threads = 0`
    pub threads: usize,
    /// Run those threads under Linux's batch scheduling policy
    /// (`SCHED_BATCH`): a thread woken by a request does not preempt what
    /// runs on its core but waits for that to sleep or use up its time
    /// slice, so a busy host switches between threads about half as often
    /// and serves ~8% more warm requests a second; but under load that
    /// competes for the cores a request can wait up to one time slice
    /// longer (warm hello's p99 went from 0.3 to ~4 ms with the load
    /// generator on the same cores). Off by default: for hosts that value
    /// throughput over the tail. The runtime's blocking threads keep the
    /// default policy. Needs `threads` above 0; Linux with glibc only
    /// (elsewhere a warning). `batch_scheduling = false`
    pub batch_scheduling: bool,
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 32 * 1024 * 1024,
            request_timeout_ms: 30_000,
            watch: false,
            header_read_timeout_ms: 10_000,
            max_connections: 4096,
            max_headers: 100,
            max_header_bytes: 16 * 1024,
            max_uri_bytes: 8 * 1024,
            threads: 0,
            batch_scheduling: false,
        }
    }
}

/// `[telemetry]`: traces and logs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySection {
    /// An OpenTelemetry collector's OTLP/HTTP base URL; spans are exported
    /// there when set. `otlp_endpoint = "http://127.0.0.1:4318"`
    pub otlp_endpoint: Option<String>,
    /// `text` or `json` log lines (`--log-format` overrides it). `log_format = "json"`
    pub log_format: Option<crate::telemetry::LogFormat>,
}

/// `[auth]`: the tokens the gateway verifies and the API keys it accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// The `iss` claim of tokens the host signs and accepts. `issuer = "bazaar"`
    pub issuer: String,
    /// How long a token is valid, in seconds. `token_ttl_s = 3600`
    pub token_ttl_s: u64,
    /// A file holding the signing key (at least 32 bytes); without it, and
    /// without `BAZAAR_JWT_KEY`, the host generates `<data dir>/jwt.key`
    /// with mode 0600. Hosts of one fleet share it. `signing_key_file = "/etc/bazaar/jwt.key"`
    pub signing_key_file: Option<PathBuf>,
    /// API keys for machine clients, by name; routes accept them with
    /// `api_keys = ["NAME"]`. `[auth.api_keys.warehouse]`
    pub api_keys: BTreeMap<String, ApiKeyConfig>,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            issuer: "bazaar".into(),
            token_ttl_s: 3600,
            signing_key_file: None,
            api_keys: BTreeMap::new(),
        }
    }
}

/// `[auth.api_keys.NAME]`: one machine client's key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The environment variable holding the key (at least 32 characters).
    /// `key_env = "WAREHOUSE_API_KEY"`
    pub key_env: Option<String>,
    /// The key itself; prefer `key_env`, so it stays out of the file. `key = "..."`
    pub key: Option<String>,
    /// Roles a request with this key carries. `roles = ["stock-writer"]`
    #[serde(default)]
    pub roles: Vec<String>,
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
    /// Directory for each service's store, deployed components, the
    /// deployment records, the event log and the admin token. `dir = "data"`
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

/// The largest `[runtime] max_memory_mib`: a 32-bit linear memory's 4 GiB,
/// which is also the address space each of the pool's memory slots
/// reserves.
pub const MAX_MEMORY_MIB: usize = 4096;

/// `[runtime]`: limits shared by every service on the host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// Instances alive at once across the services served fresh, and as
    /// many across those keeping warm instances (each kind has a pool this
    /// size). `max_instances = 512`
    pub max_instances: u32,
    /// Largest linear memory one instance may grow to, in MiB, at most
    /// [`MAX_MEMORY_MIB`]. `max_memory_mib = 256`
    pub max_memory_mib: usize,
    /// Time one request may spend running guest code and the host calls it
    /// makes, in milliseconds. `cpu_time_limit_ms = 10000`
    pub cpu_time_limit_ms: u64,
    /// Versions kept per service for rollback, besides the current one. `keep_versions = 5`
    pub keep_versions: usize,
    /// Longest chain of service-to-service calls, counting the first
    /// service. `max_call_depth = 8`
    pub max_call_depth: usize,
    /// Requests and event deliveries one service runs at once, unless its
    /// `[limits]` say otherwise. `max_concurrency = 64`
    pub max_concurrency: u32,
    /// Linear memory all instances together may use, in MiB; a growth past
    /// it fails in the guest instead of getting the host killed. Default:
    /// half the machine's memory. `host_memory_mib = 8192`
    pub host_memory_mib: Option<usize>,
    /// Host-side resources (headers, streams, buckets...) one request may
    /// hold at once. `max_resources = 10000`
    pub max_resources: usize,
    /// Freed instance slots decommitted together: fewer madvise calls per
    /// request, but while a batch fills, new instances take cold slots
    /// (mapped and faulted in afresh) instead of the one just freed, and
    /// the batch's dirty memory stays outside the memory budget. With
    /// tables and the hot part of memory kept resident, 1 measured as fast
    /// or faster. `decommit_batch_size = 1`
    pub decommit_batch_size: usize,
    /// Bytes of each linear memory kept resident when its slot is reused
    /// (zeroed in place instead of unmapped), in KiB. `memory_keep_resident_kib = 1024`
    pub memory_keep_resident_kib: usize,
    /// Bytes of each table kept resident when its slot is reused, in KiB.
    /// A table reset by unmapping comes back as the shared zero page, and
    /// the guest's first call through it then takes a copy-on-write fault
    /// that flushes the TLB of every core. `table_keep_resident_kib = 256`
    pub table_keep_resident_kib: usize,
    /// Reset slots with the kernel's `PAGEMAP_SCAN` (Linux 6.7+) when it
    /// is there, touching only dirtied pages. `pagemap_scan = true`
    pub pagemap_scan: bool,
    /// Bytes of each linear memory kept resident when a slot of a service
    /// with warm instances is reused, in MiB, where `PAGEMAP_SCAN` resets
    /// slots: only the pages the last instance wrote are zeroed, and the
    /// instance taking its place copies its image into pages already
    /// mapped instead of faulting each one in. Elsewhere
    /// `memory_keep_resident_kib` applies, since zeroing this much in full
    /// at every reset would cost more than it saves. A slot freed and not
    /// yet reused holds up to this much. `warm_memory_keep_resident_mib = 32`
    pub warm_memory_keep_resident_mib: usize,
    /// Seconds a warm instance may stay idle before it is dropped, its
    /// pool slot and memory freed (checked once a second); 0 keeps idle
    /// instances until a deploy retires them or a full pool needs their
    /// slot. `warm_idle_timeout_s = 60`
    pub warm_idle_timeout_s: u64,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        Self {
            max_instances: 512,
            max_memory_mib: 256,
            cpu_time_limit_ms: 10_000,
            keep_versions: 5,
            max_call_depth: 8,
            max_concurrency: 64,
            host_memory_mib: None,
            max_resources: 10_000,
            decommit_batch_size: 1,
            memory_keep_resident_kib: 1024,
            table_keep_resident_kib: 256,
            pagemap_scan: true,
            warm_memory_keep_resident_mib: 32,
            warm_idle_timeout_s: 60,
        }
    }
}

/// Which kind of backend a host uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// redb files in the data directory: one host, nothing to run beside it.
    #[default]
    Embedded,
    /// PostgreSQL for data, deployments and secrets, NATS JetStream for
    /// events: any number of hosts share them.
    Fleet,
}

/// `[backend]`: where service data, events and deployments live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendSection {
    /// `embedded` (one host, redb files in the data directory) or `fleet`
    /// (PostgreSQL and NATS JetStream shared by every host). `kind = "fleet"`
    pub kind: BackendKind,
    /// The PostgreSQL database of the fleet; `BAZAAR_POSTGRES_URL`
    /// overrides it, so a password need not be in the file.
    /// `postgres_url = "postgres://bazaar@127.0.0.1:5432/bazaar"`
    pub postgres_url: Option<String>,
    /// The NATS server (with JetStream enabled) of the fleet;
    /// `BAZAAR_NATS_URL` overrides it. `nats_url = "nats://127.0.0.1:4222"`
    pub nats_url: Option<String>,
    /// This host's name in the fleet, shown by `bazaar services`; by
    /// default the machine's name and the gateway port. `host_name = "web-1"`
    pub host_name: Option<String>,
    /// PostgreSQL connections this host keeps at most. `postgres_pool_size = 16`
    pub postgres_pool_size: usize,
    /// How long to wait for a server to answer, connect or hand out a
    /// pooled connection, in milliseconds. `connect_timeout_ms = 5000`
    pub connect_timeout_ms: u64,
    /// How long JetStream waits for a host handling an event before it
    /// gives the event to another host (a live host extends it while the
    /// handler runs), in milliseconds. `event_ack_wait_ms = 30000`
    pub event_ack_wait_ms: u64,
    /// How often a host looks for deploys made on other hosts, in
    /// milliseconds. `poll_ms = 250`
    pub poll_ms: u64,
}

impl Default for BackendSection {
    fn default() -> Self {
        Self {
            kind: BackendKind::Embedded,
            postgres_url: None,
            nats_url: None,
            host_name: None,
            postgres_pool_size: 16,
            connect_timeout_ms: 5_000,
            event_ack_wait_ms: 30_000,
            poll_ms: 250,
        }
    }
}

/// The environment variable that overrides `[backend] postgres_url`.
pub const POSTGRES_URL_ENV: &str = "BAZAAR_POSTGRES_URL";
/// The environment variable that overrides `[backend] nats_url`.
pub const NATS_URL_ENV: &str = "BAZAAR_NATS_URL";

/// The most threads `[gateway] threads` may ask for.
pub const MAX_GATEWAY_THREADS: usize = 256;

impl BackendSection {
    /// The PostgreSQL URL: `BAZAAR_POSTGRES_URL`, else `postgres_url`.
    pub fn postgres_url(&self) -> Option<String> {
        std::env::var(POSTGRES_URL_ENV)
            .ok()
            .filter(|u| !u.trim().is_empty())
            .or_else(|| self.postgres_url.clone())
    }

    /// The NATS URL: `BAZAAR_NATS_URL`, else `nats_url`.
    pub fn nats_url(&self) -> Option<String> {
        std::env::var(NATS_URL_ENV)
            .ok()
            .filter(|u| !u.trim().is_empty())
            .or_else(|| self.nats_url.clone())
    }
}

/// `[events]`: how delivery retries a subscriber that fails.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSection {
    /// Deliveries of one event before it moves to the dead letters. `max_attempts = 8`
    pub max_attempts: u32,
    /// Wait before the first retry; it doubles with each attempt. `retry_initial_ms = 200`
    pub retry_initial_ms: u64,
    /// Longest wait between two attempts. `retry_max_ms = 60000`
    pub retry_max_ms: u64,
}

impl Default for EventsSection {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            retry_initial_ms: 200,
            retry_max_ms: 60_000,
        }
    }
}

/// `[services.NAME]`: one service: its component file and its [`ServiceSpec`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The component file. `component = "components/target/wasm32-wasip2/release/users.wasm"`
    pub component: PathBuf,
    /// Path patterns this service owns: exact, `{param}` or a trailing `{*rest}`.
    /// `routes = ["/api/users", "/api/users/{*rest}"]`
    #[serde(default)]
    pub routes: Vec<String>,
    /// Services it may call at `http://NAME.internal/...`. `calls = ["inventory"]`
    #[serde(default)]
    pub calls: Vec<String>,
    /// Topics it may publish events to. `publishes = ["order-placed"]`
    #[serde(default)]
    pub publishes: Vec<String>,
    /// Topics whose events it receives. `subscribes = ["user-registered"]`
    #[serde(default)]
    pub subscribes: Vec<String>,
    /// Outside hosts it may call, as `scheme://host[:port]`.
    /// `allowed_outbound_hosts = ["https://payments.example.com"]`
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Values served to the service through `wasi:config`. `[services.users.config]`
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
    /// Who may call its routes unless a rule says otherwise: `public`,
    /// `authenticated` or `role:NAME`. `access = "authenticated"`
    #[serde(default)]
    pub access: Option<String>,
    /// Policies for some routes and methods; the first match applies.
    /// `[[services.users.rules]]`
    #[serde(default)]
    pub rules: Vec<RouteRule>,
    /// May sign tokens through `bazaar:platform/auth`. `issues_tokens = true`
    #[serde(default)]
    pub issues_tokens: bool,
    /// The roles its tokens may carry. `token_roles = ["customer"]`
    #[serde(default)]
    pub token_roles: Vec<String>,
    /// Sandbox limits; unset ones take `[runtime]`'s. `[services.users.limits]`
    #[serde(default)]
    pub limits: ServiceLimits,
    /// Requests and event deliveries one warm instance serves one after
    /// another; unset, each gets a fresh instance. `instance_reuse = 1000`
    #[serde(default)]
    pub instance_reuse: Option<u32>,
}

impl ServiceConfig {
    /// Everything but the component file.
    pub fn spec(&self) -> ServiceSpec {
        ServiceSpec {
            routes: self.routes.clone(),
            calls: self.calls.clone(),
            publishes: self.publishes.clone(),
            subscribes: self.subscribes.clone(),
            allowed_outbound_hosts: self.allowed_outbound_hosts.clone(),
            config: self.config.clone(),
            access: self.access.clone(),
            rules: self.rules.clone(),
            issues_tokens: self.issues_tokens,
            token_roles: self.token_roles.clone(),
            limits: self.limits.clone(),
            instance_reuse: self.instance_reuse,
        }
    }
}

/// Why a `gateway.toml` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    // The I/O error is part of the message, not a source, so a chain
    // printed with `{:#}` says it once.
    #[error("cannot read {path}: {error}; pass an existing file with --config")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
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
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        // Absolute, so paths stay right whatever the working directory later is.
        let absolute = std::path::absolute(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
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
            service.spec().validate(name).map_err(invalid)?;
        }
        let runtime = &self.runtime;
        if runtime.max_instances == 0 || runtime.max_memory_mib == 0 {
            return Err(invalid(
                "[runtime] max_instances and max_memory_mib must be at least 1".into(),
            ));
        }
        if runtime.max_memory_mib > MAX_MEMORY_MIB {
            return Err(invalid(format!(
                "[runtime] max_memory_mib is at most {MAX_MEMORY_MIB}: a 32-bit linear memory \
                 holds 4 GiB"
            )));
        }
        if runtime.keep_versions == 0 {
            return Err(invalid(
                "[runtime] keep_versions must be at least 1, or rollback has nothing to return to"
                    .into(),
            ));
        }
        if runtime.max_call_depth == 0 {
            return Err(invalid(
                "[runtime] max_call_depth must be at least 1".into(),
            ));
        }
        if self.gateway.request_timeout_ms == 0 || self.gateway.max_body_bytes == 0 {
            return Err(invalid(
                "[gateway] request_timeout_ms and max_body_bytes must be at least 1".into(),
            ));
        }
        if runtime.max_concurrency == 0 || runtime.max_resources == 0 {
            return Err(invalid(
                "[runtime] max_concurrency and max_resources must be at least 1".into(),
            ));
        }
        let gateway = &self.gateway;
        if gateway.header_read_timeout_ms == 0
            || gateway.max_connections == 0
            || gateway.max_headers == 0
            || gateway.max_uri_bytes == 0
        {
            return Err(invalid(
                "[gateway] header_read_timeout_ms, max_connections, max_headers and max_uri_bytes must be at least 1".into(),
            ));
        }
        if gateway.threads > MAX_GATEWAY_THREADS {
            return Err(invalid(format!(
                "[gateway] threads must be at most {MAX_GATEWAY_THREADS}"
            )));
        }
        if gateway.batch_scheduling && gateway.threads == 0 {
            return Err(invalid(
                "[gateway] batch_scheduling applies only to the gateway's own threads: set threads above 0 too".into(),
            ));
        }
        if gateway.max_header_bytes < 8192 {
            return Err(invalid(
                "[gateway] max_header_bytes must be at least 8192".into(),
            ));
        }
        for (name, key) in &self.auth.api_keys {
            if key.key.is_some() == key.key_env.is_some() {
                return Err(invalid(format!(
                    "[auth.api_keys.{name}] needs exactly one of `key_env` or `key`"
                )));
            }
        }
        for (name, service) in &self.services {
            for rule in &service.rules {
                if let Some(unknown) = rule
                    .api_keys
                    .iter()
                    .find(|k| !self.auth.api_keys.contains_key(*k))
                {
                    return Err(invalid(format!(
                        "service `{name}` accepts API key `{unknown}`, which [auth.api_keys] does not define"
                    )));
                }
            }
        }
        let backend = &self.backend;
        if backend.kind == BackendKind::Fleet {
            if backend.postgres_url().is_none() || backend.nats_url().is_none() {
                return Err(invalid(format!(
                    "[backend] kind = \"fleet\" needs `postgres_url` (or ${POSTGRES_URL_ENV}) and `nats_url` (or ${NATS_URL_ENV})"
                )));
            }
            if backend.postgres_pool_size == 0
                || backend.connect_timeout_ms == 0
                || backend.event_ack_wait_ms < 1000
                || backend.poll_ms == 0
            {
                return Err(invalid(
                    "[backend] postgres_pool_size, connect_timeout_ms and poll_ms must be at least 1, and event_ack_wait_ms at least 1000".into(),
                ));
            }
        }
        if self.events.max_attempts == 0 {
            return Err(invalid("[events] max_attempts must be at least 1".into()));
        }
        if self.admin.listen == self.gateway.listen && self.gateway.listen.port() != 0 {
            return Err(invalid(format!(
                "[admin] listen and [gateway] listen are both {}; give the admin API its own port",
                self.gateway.listen
            )));
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
    fn service_sections_parse_with_config_values_and_grants() {
        let config = parse(
            r#"
            [services.users]
            component = "users.wasm"
            routes = ["/api/users", "/api/users/{*rest}"]
            calls = ["mailer"]
            publishes = ["user-registered"]
            allowed_outbound_hosts = ["https://id.example.com"]
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
        let spec = users.spec();
        assert_eq!(spec.config["rounds"].to_string(), "3");
        assert_eq!(spec.calls, ["mailer"]);
        assert_eq!(spec.publishes, ["user-registered"]);
    }

    #[test]
    fn service_without_routes_or_subscriptions_is_rejected() {
        let err = parse("[services.users]\ncomponent = \"u.wasm\"\nroutes = []\n")
            .expect_err("no routes must be rejected");
        assert!(err.to_string().contains("users"), "{err}");
    }

    #[test]
    fn a_subscriber_needs_no_routes() {
        parse("[services.mail]\ncomponent = \"m.wasm\"\nsubscribes = [\"user-registered\"]\n")
            .expect("a subscriber-only service is valid");
    }

    #[test]
    fn bad_service_name_is_rejected() {
        let err = parse("[services.\"Users!\"]\ncomponent = \"u.wasm\"\nroutes = [\"/\"]\n")
            .expect_err("a bad name must be rejected");
        assert!(err.to_string().contains("Users!"), "{err}");
    }

    #[test]
    fn a_bare_outbound_host_is_rejected_with_the_form_to_use() {
        let err = parse(
            "[services.s]\ncomponent = \"s.wasm\"\nroutes = [\"/s\"]\nallowed_outbound_hosts = [\"example.com\"]\n",
        )
        .expect_err("a host without a scheme must be rejected");
        assert!(err.to_string().contains("https://example.com"), "{err}");
    }

    #[test]
    fn a_memory_past_four_gib_is_rejected() {
        parse("[runtime]\nmax_memory_mib = 4096\n").expect("4 GiB");
        let err = parse("[runtime]\nmax_memory_mib = 8192\n").expect_err("8 GiB");
        assert!(err.to_string().contains("at most 4096"), "{err}");
    }

    #[test]
    fn zero_keep_versions_is_rejected() {
        let err = parse("[runtime]\nkeep_versions = 0\n").expect_err("keep_versions = 0");
        assert!(err.to_string().contains("keep_versions"), "{err}");
    }

    #[test]
    fn gateway_threads_default_to_the_shared_runtime_and_are_bounded() {
        let unset = parse("").expect("no [gateway] threads");
        assert_eq!(unset.gateway.threads, 0);
        let own = parse("[gateway]\nthreads = 2\nbatch_scheduling = true\n")
            .expect("threads = 2 with batch scheduling");
        assert_eq!(own.gateway.threads, 2);
        let err = parse("[gateway]\nbatch_scheduling = true\n")
            .expect_err("batch scheduling on the shared runtime");
        assert!(err.to_string().contains("threads above 0"), "{err}");
        let err = parse("[gateway]\nthreads = 100000\n").expect_err("threads = 100000");
        assert!(err.to_string().contains("threads"), "{err}");
    }
}
