//! Real PostgreSQL and NATS servers for fleet tests, each in a temporary
//! directory on a loopback port. `scripts/test` installs them from
//! Debian's packages (`postgresql`, `nats-server`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "fleet tests need PostgreSQL and nats-server: `sudo apt-get install -y postgresql nats-server` (scripts/test installs them)";

/// A free loopback port (released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status();
}

fn stop(child: &mut Child, signal_name: &str) {
    signal(child, signal_name);
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The user the servers run as: `postgres` when the tests run as root
/// (PostgreSQL refuses to run as root), else whoever runs the tests.
fn server_user() -> Option<(u32, u32)> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn as_server_user(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    if let Some((uid, gid)) = server_user() {
        command.uid(uid).gid(gid);
    }
    command
}

/// A directory the server user may write.
fn server_dir(label: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("bazaar-{label}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("server dir");
    if let Some((uid, gid)) = server_user() {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown server dir");
    }
    dir
}

fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|p| p.join("postgres").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

/// A PostgreSQL server of its own.
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

impl Postgres {
    /// Creates a cluster (user `bazaar`, trust auth on loopback) and starts it.
    pub fn start() -> Self {
        let bin = postgres_bin();
        let dir = server_dir("pg");
        let status = as_server_user(
            Command::new(bin.join("initdb"))
                .arg("-D")
                .arg(dir.join("data"))
                .args(["-U", "bazaar", "--auth=trust", "-E", "UTF8", "--no-sync"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .status()
        .expect("initdb should run");
        assert!(status.success(), "initdb failed in {}", dir.display());
        let mut pg = Self {
            bin,
            dir,
            port: free_port(),
            child: None,
        };
        pg.launch();
        pg
    }

    fn launch(&mut self) {
        let log = self.dir.join("postgres.log");
        let child = as_server_user(
            Command::new(self.bin.join("postgres"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-p", &self.port.to_string()])
                .arg("-k")
                .arg(&self.dir)
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=on",
                    "-c",
                    "synchronous_commit=on",
                    "-c",
                    "max_connections=200",
                ])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("pg log")),
        )
        .spawn()
        .expect("postgres should start");
        self.child = Some(child);
        wait_for_port(self.port, "PostgreSQL", &log);
        // Accepting TCP is not yet accepting queries.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "bazaar",
                ])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "PostgreSQL never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL hosts connect with.
    pub fn url(&self) -> String {
        format!("postgres://bazaar@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: sessions are cut, committed data
    /// stays) and starts it again on the same port.
    pub fn restart(&mut self, down_for: Duration) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, "INT");
        }
        std::thread::sleep(down_for);
        self.launch();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, "INT");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A NATS server with JetStream, of its own.
pub struct Nats {
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

fn nats_bin() -> PathBuf {
    ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

impl Nats {
    /// Starts a JetStream server whose data lives in a temporary directory.
    pub fn start() -> Self {
        let dir = server_dir("nats");
        let port = free_port();
        let config = format!(
            "listen: 127.0.0.1:{port}\nmax_payload: 8MB\njetstream {{\n  store_dir: \"{}\"\n}}\n",
            dir.join("js").display()
        );
        std::fs::write(dir.join("nats.conf"), config).expect("nats config");
        let mut nats = Self {
            dir,
            port,
            child: None,
        };
        nats.launch();
        nats
    }

    fn launch(&mut self) {
        let log = self.dir.join("nats.log");
        let child = Command::new(nats_bin())
            .arg("-c")
            .arg(self.dir.join("nats.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("nats log"))
            .spawn()
            .expect("nats-server should start");
        self.child = Some(child);
        wait_for_port(self.port, "NATS", &log);
    }

    /// The URL hosts connect with.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (it writes out what it holds) and starts it again.
    pub fn restart(&mut self, down_for: Duration) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, "TERM");
        }
        std::thread::sleep(down_for);
        self.launch();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, "TERM");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
