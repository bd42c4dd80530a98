//! Builds the components once per test process and boots hosts.

use bazaar::config::GatewayConfig;
use bazaar::host::{self, RunningHost};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The admin token every test host uses.
pub const TOKEN: &str = "test-admin-token-0123456789abcdef0123";

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
            // Where the paths below expect them, whatever CARGO_TARGET_DIR says.
            .arg("--target-dir")
            .arg(root.join("components/target"))
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

/// A fresh, empty directory under the system temp dir, removed when the
/// thread that asked for it ends (the test's, once the test is over);
/// `BAZAAR_KEEP_TEST_DIRS=1` keeps it. A test's host stores every
/// component it deploys there: left behind, one run of the suite would
/// leave gigabytes.
pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bazaar-e2e-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    MADE.with(|made| made.0.borrow_mut().push(dir.clone()));
    dir
}

thread_local! {
    /// The directories [`temp_dir`] made on this thread.
    static MADE: TestDirs = const { TestDirs(RefCell::new(Vec::new())) };
}

/// Removes its directories when its thread ends.
struct TestDirs(RefCell<Vec<PathBuf>>);

impl Drop for TestDirs {
    fn drop(&mut self) {
        let dirs = self.0.take();
        if std::env::var_os("BAZAAR_KEEP_TEST_DIRS").is_some() {
            for dir in &dirs {
                eprintln!("kept test directory {}", dir.display());
            }
            return;
        }
        for dir in dirs {
            // A directory the test removed itself is already gone.
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The services most tests run. Argon2 is made cheap through config.
pub const STANDARD_SERVICES: &str = r#"
[services.users]
component = "users.wasm"
routes = ["/api/users", "/api/users/{*rest}"]
publishes = ["user-registered"]
issues_tokens = true
token_roles = ["customer"]
[services.users.config]
argon2_memory_kib = 256
argon2_iterations = 1

[services.products]
component = "products.wasm"
routes = ["/api/products", "/api/products/{*rest}"]

[services.alpha]
component = "testbed.wasm"
routes = ["/alpha/{*rest}"]
calls = ["beta"]
publishes = ["news"]
[services.alpha.config]
greeting = "hello from alpha"
shared_name = "alpha's value"

[services.beta]
component = "testbed.wasm"
routes = ["/beta/{*rest}"]
calls = ["alpha"]
subscribes = ["news"]
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

[events]
max_attempts = 4
retry_initial_ms = 50
retry_max_ms = 400
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
        Self::start_edited(data_dir, services, extra_gateway, |text| text).await
    }

    /// Starts `services` from a gateway file changed by `edit` first.
    pub async fn start_edited(
        data_dir: PathBuf,
        services: &str,
        extra_gateway: &str,
        edit: impl FnOnce(String) -> String,
    ) -> Self {
        let text = edit(gateway_toml(&data_dir, services, extra_gateway));
        let config = GatewayConfig::parse(
            &text,
            Path::new("test-gateway.toml"),
            components_dir().to_path_buf(),
        )
        .expect("test gateway file should parse");
        capture_logs();
        let running = host::start(config).await.expect("host should start");
        running.ready().await;
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

    /// Deploys `bytes` to `service` with admin API query parameters
    /// (`spec`, `expected_version`).
    pub async fn deploy_with(
        &self,
        service: &str,
        bytes: Vec<u8>,
        query: &[(&str, &str)],
    ) -> reqwest::Response {
        self.http
            .put(self.admin_url(&format!("/services/{service}")))
            .query(query)
            .bearer_auth(TOKEN)
            .body(bytes)
            .send()
            .await
            .expect("deploy should get an answer")
    }

    /// Rolls `service` back through the admin API.
    pub async fn rollback(&self, service: &str) -> reqwest::Response {
        self.rollback_with(service, &serde_json::json!({})).await
    }

    /// Rolls `service` back with a body (`to`, `expected_version`).
    pub async fn rollback_with(
        &self,
        service: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .post(self.admin_url(&format!("/services/{service}/rollback")))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await
            .expect("rollback should get an answer")
    }

    /// GET on the admin API with the admin token.
    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.admin_url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("the admin API should answer")
    }

    /// GET on the admin API, as JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        self.admin_get(path)
            .await
            .json()
            .await
            .expect("the admin API answers JSON")
    }

    /// The status of `service` from `GET /services`, if it exists.
    pub async fn status_of(&self, service: &str) -> Option<serde_json::Value> {
        let list = self.admin_json("/services").await;
        list.as_array()
            .expect("list should be an array")
            .iter()
            .find(|s| s["name"] == service)
            .cloned()
    }

    /// The version `service` is serving, from the admin API.
    pub async fn version_of(&self, service: &str) -> Option<String> {
        self.status_of(service)
            .await
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

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The `bazaar` binary serving a gateway file, with its log in a file.
pub struct BinaryHost {
    /// The process.
    pub child: std::process::Child,
    /// The gateway's base URL.
    pub url: String,
    /// The admin API's base URL.
    pub admin_url: String,
    /// Where its stderr goes.
    pub log: PathBuf,
    /// Its stdout line saying how start-up ended, when it was waited for.
    pub started: String,
}

impl BinaryHost {
    /// Starts `bazaar serve --config config`, logging to `log`, and waits
    /// until every service is loaded.
    pub fn spawn(config: &Path, log: &Path) -> Self {
        Self::start(config, log, true)
    }

    /// Like [`Self::spawn`], but returns as soon as the listeners are open.
    pub fn spawn_listening(config: &Path, log: &Path) -> Self {
        Self::start(config, log, false)
    }

    /// Like [`Self::spawn`], with `args` before `serve` (e.g. `--log-format json`).
    pub fn spawn_with(config: &Path, log: &Path, args: &[&str]) -> Self {
        Self::start_with_args(config, log, true, args, "info")
    }

    /// Like [`Self::spawn`], with `RUST_LOG` set to `filter` instead of `info`.
    pub fn spawn_filtered(config: &Path, log: &Path, filter: &str) -> Self {
        Self::start_with_args(config, log, true, &[], filter)
    }

    /// Like [`Self::spawn`], with the process's address space capped at
    /// `bytes` (`prlimit --as`, as `ulimit -v` in a container would).
    pub fn spawn_in_address_space(config: &Path, log: &Path, bytes: u64) -> Self {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--as={bytes}"))
            .arg(env!("CARGO_BIN_EXE_bazaar"));
        Self::start_command(command, config, log, true, &[], "info")
    }

    fn start(config: &Path, log: &Path, wait_for_services: bool) -> Self {
        Self::start_with_args(config, log, wait_for_services, &[], "info")
    }

    fn start_with_args(
        config: &Path,
        log: &Path,
        wait_for_services: bool,
        args: &[&str],
        filter: &str,
    ) -> Self {
        let command = Command::new(env!("CARGO_BIN_EXE_bazaar"));
        Self::start_command(command, config, log, wait_for_services, args, filter)
    }

    fn start_command(
        mut command: Command,
        config: &Path,
        log: &Path,
        wait_for_services: bool,
        args: &[&str],
        filter: &str,
    ) -> Self {
        use std::io::BufRead as _;
        let mut child = command
            .args(args)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", filter)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("the bazaar binary should start");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let (mut url, mut admin_url, mut loaded) = (None, None, !wait_for_services);
        let mut started = String::new();
        while url.is_none() || admin_url.is_none() || !loaded {
            let line = lines
                .next()
                .unwrap_or_else(|| {
                    panic!(
                        "host exited early: {}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    )
                })
                .expect("stdout line");
            if let Some(found) = line.strip_prefix("bazaar: gateway listening on ") {
                url = Some(found.to_owned());
            }
            if let Some(found) = line.strip_prefix("bazaar: admin API listening on ") {
                admin_url = Some(found.to_owned());
            }
            if line == "bazaar: every service is loaded"
                || line.starts_with("bazaar: start-up finished, but")
            {
                loaded = true;
                started = line;
            }
        }
        Self {
            child,
            url: url.unwrap_or_default(),
            admin_url: admin_url.unwrap_or_default(),
            log: log.to_owned(),
            started,
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for BinaryHost {
    /// A host a failed test leaves behind does not outlive the test.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway file for the binary in `dir`, with absolute component paths,
/// data in `dir/data` and a fixed admin port, returning its path.
pub fn binary_config(dir: &Path, services: &str) -> PathBuf {
    let services = services.replace(
        "component = \"",
        &format!("component = \"{}/", components_dir().display()),
    );
    let config = dir.join("gateway.toml");
    std::fs::write(&config, gateway_toml(&dir.join("data"), &services, "")).expect("config");
    config
}

/// Everything the in-process hosts of this test binary logged so far.
pub fn logs() -> String {
    let buffer = log_buffer().lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&buffer).into_owned()
}

fn log_buffer() -> &'static std::sync::Mutex<Vec<u8>> {
    static BUFFER: OnceLock<std::sync::Mutex<Vec<u8>>> = OnceLock::new();
    BUFFER.get_or_init(|| std::sync::Mutex::new(Vec::new()))
}

/// Sends the host's `tracing` output to [`logs`], once per process.
fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        struct Capture;
        impl std::io::Write for Capture {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                log_buffer()
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,cranelift=warn,wasmtime=warn",
            ))
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
    });
}

/// Sends a request to `addr` over a raw connection: `head` (its request
/// line and headers, each ending in CRLF), then `body` with
/// `Transfer-Encoding: chunked` in chunks of `chunk` bytes, so no length is
/// declared up front; the raw answer, read until the server closes.
pub fn send_chunked(addr: std::net::SocketAddr, head: &str, body: &[u8], chunk: usize) -> String {
    let mut request =
        format!("{head}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").into_bytes();
    for piece in body.chunks(chunk) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    send_raw(addr, &request)
}

/// Sends `request`, bytes as they are, on a new connection; the raw
/// answer, read until the server closes.
pub fn send_raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Run alone, in a process of its own, by
/// `test_directories_are_removed_when_their_test_ends`.
#[test]
fn makes_a_test_directory() {
    let dir = temp_dir();
    std::fs::write(dir.join("data"), b"until the test ends").unwrap();
    println!("made {}", dir.display());
}

#[test]
fn test_directories_are_removed_when_their_test_ends() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "support::makes_a_test_directory", "--nocapture"])
        .env_remove("BAZAAR_KEEP_TEST_DIRS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let made = stdout
        .lines()
        .find_map(|line| line.split_once("made ").map(|(_, dir)| dir.trim()))
        .unwrap_or_else(|| panic!("the test ran and said where: {stdout}"));
    assert!(!Path::new(made).exists(), "{made} outlived its test");
}
