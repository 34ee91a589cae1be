//! The AWS stand-ins tests run against: a private `moto_server` (SQS FIFO, DynamoDB, Secrets
//! Manager) on a free loopback port, and the path of the project's AWS tool venv.
//!
//! The tools come from PyPI through `scripts/aws-tools.sh` (idempotent: quick once installed),
//! which the first test that needs them runs; a test never skips because they are missing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The bin directory of the AWS tool venv (moto_server, cargo-lambda, sam, cfn-lint), installed
/// on first use.
pub fn tools_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        crate::tools::bin_dir_of("aws-tools.sh", "the AWS test tools (moto, cargo-lambda)")
    })
    .clone()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port()
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, what: &str, timeout: Duration) {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within {timeout:?}");
}

/// A child process killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private moto server.
pub struct Moto {
    _process: Process,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Self {
        let bin = tools_bin().join("moto_server");
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let process = Process(child);
        wait_for_port(port, "moto_server", Duration::from_secs(30));
        Self {
            _process: process,
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
