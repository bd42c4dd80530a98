//! Builds the components once per test process and boots hosts.

use bazaar::config::GatewayConfig;
use bazaar::host::{self, RunningHost};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The admin token every test host uses.
pub const TOKEN: &str = "test-admin-token";

/// The release directory of the built components, building them on first use.
pub fn components_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let manifest = root.join("components/Cargo.toml");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(&manifest)
            .status()
            .expect("cargo should run to build the components");
        assert!(status.success(), "building components/ failed");
        root.join("components/target/wasm32-wasip2/release")
    })
}

/// The path of a built component, e.g. `wasm("users")`.
pub fn wasm(name: &str) -> PathBuf {
    components_dir().join(format!("{name}.wasm"))
}

/// The bytes of a built component.
pub fn wasm_bytes(name: &str) -> Vec<u8> {
    std::fs::read(wasm(name)).expect("built component should be readable")
}

/// `bytes` with a custom section appended: the same behaviour, a new content
/// hash, so a deploy of it is observably a new version.
pub fn with_custom_section(bytes: &[u8], label: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"bazaar-test";
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(label.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bazaar-e2e-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The services most tests run. Argon2 is made cheap through config.
pub const STANDARD_SERVICES: &str = r#"
[services.users]
component = "users.wasm"
routes = ["/api/users", "/api/users/{*rest}"]
[services.users.config]
argon2_memory_kib = 256
argon2_iterations = 1

[services.products]
component = "products.wasm"
routes = ["/api/products", "/api/products/{*rest}"]

[services.alpha]
component = "testbed.wasm"
routes = ["/alpha/{*rest}"]
[services.alpha.config]
greeting = "hello from alpha"
shared_name = "alpha's value"

[services.beta]
component = "testbed.wasm"
routes = ["/beta/{*rest}"]
[services.beta.config]
shared_name = "beta's value"
"#;

/// The text of a gateway file on ephemeral ports with data in `data_dir`.
pub fn gateway_toml(data_dir: &Path, services: &str, extra_gateway: &str) -> String {
    format!(
        r#"
[gateway]
listen = "127.0.0.1:0"
request_timeout_ms = 10000
{extra_gateway}

[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"

[data]
dir = "{data}"
cache_dir = "{cache}"

[runtime]
max_instances = 64
cpu_time_limit_ms = 1000
{services}
"#,
        data = data_dir.display(),
        cache = shared_cache_dir().display(),
    )
}

/// Compiled code is shared by all tests so each component compiles once.
fn shared_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("bazaar-code-cache")
}

/// A host running in this process, and a client for it.
pub struct TestHost {
    /// The host.
    pub running: RunningHost,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// A client.
    pub http: reqwest::Client,
}

impl TestHost {
    /// Starts the standard services with a fresh data directory.
    pub async fn start() -> Self {
        Self::start_with(STANDARD_SERVICES, "").await
    }

    /// Starts `services` with a fresh data directory.
    pub async fn start_with(services: &str, extra_gateway: &str) -> Self {
        Self::start_in(temp_dir(), services, extra_gateway).await
    }

    /// Starts `services` with data in `data_dir` (which may hold earlier data).
    pub async fn start_in(data_dir: PathBuf, services: &str, extra_gateway: &str) -> Self {
        let text = gateway_toml(&data_dir, services, extra_gateway);
        let config = GatewayConfig::parse(
            &text,
            Path::new("test-gateway.toml"),
            components_dir().to_path_buf(),
        )
        .expect("test gateway file should parse");
        let running = host::start(config).await.expect("host should start");
        Self {
            running,
            data_dir,
            http: reqwest::Client::new(),
        }
    }

    /// A URL on the gateway.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.gateway_addr)
    }

    /// A URL on the admin API.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.admin_addr)
    }

    /// GET on the gateway.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("GET should get an answer")
    }

    /// A JSON request on the gateway.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .request(method, self.url(path))
            .json(body)
            .send()
            .await
            .expect("request should get an answer")
    }

    /// Deploys `bytes` to `service` through the admin API.
    pub async fn deploy(&self, service: &str, bytes: Vec<u8>) -> reqwest::Response {
        self.http
            .put(self.admin_url(&format!("/services/{service}")))
            .bearer_auth(TOKEN)
            .body(bytes)
            .send()
            .await
            .expect("deploy should get an answer")
    }

    /// Rolls `service` back through the admin API.
    pub async fn rollback(&self, service: &str) -> reqwest::Response {
        self.http
            .post(self.admin_url(&format!("/services/{service}/rollback")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("rollback should get an answer")
    }

    /// The version `service` is serving, from the admin API.
    pub async fn version_of(&self, service: &str) -> Option<String> {
        let list: serde_json::Value = self
            .http
            .get(self.admin_url("/services"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("list should answer")
            .json()
            .await
            .expect("list should be JSON");
        list.as_array()
            .expect("list should be an array")
            .iter()
            .find(|s| s["name"] == service)
            .and_then(|s| s["version"].as_str().map(str::to_owned))
    }

    /// Stops the host, keeping its data directory.
    pub async fn stop(self) -> PathBuf {
        self.running.shutdown().await;
        self.data_dir
    }
}

/// The `x-bazaar-version` header of a response.
pub fn version_header(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-bazaar-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The content hash the host gives `bytes`.
pub fn hash(bytes: &[u8]) -> String {
    bazaar::loader::content_hash(bytes)
}
