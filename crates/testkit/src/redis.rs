//! A private `redis-server` on a free loopback port, for tests that flush, stop or restart Redis
//! without disturbing the machine's shared instance (other tests use it at the same time).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct PrivateRedis {
    child: Option<Child>,
    pub port: u16,
    /// Certificate, key and CA when the server speaks TLS only.
    tls: Option<[std::path::PathBuf; 3]>,
}

impl PrivateRedis {
    /// Starts a server; panics with how to install Redis if `redis-server` is missing.
    pub fn start() -> Self {
        let mut server = Self::on_free_port();
        server.restart();
        server
    }

    /// A server that speaks TLS only, with `ca`'s server certificate (for `127.0.0.1`).
    pub fn start_tls(ca: &crate::tls::TestCa) -> Self {
        let mut server = Self::on_free_port();
        server.tls = Some([ca.server_cert(), ca.server_key(), ca.ca_pem()]);
        server.restart();
        server
    }

    fn on_free_port() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        Self {
            child: None,
            port,
            tls: None,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills the server (an outage); `restart` brings an empty one back on the same port.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &port]),
            Some([cert, key, ca]) => command
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(ca),
        };
        let child = command
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                // DEBUG SLEEP freezes the server for `freeze`; only from loopback.
                "--enable-debug-command",
                "local",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed: run `bash scripts/ensure-services.sh`");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("private redis-server did not start on port {}", self.port);
    }

    /// FLUSHALL through redis-cli.
    pub fn flush(&self) {
        let status = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "FLUSHALL"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli must be installed: run `bash scripts/ensure-services.sh`");
        assert!(status.success(), "FLUSHALL failed");
    }

    /// Makes the server stop answering for `seconds` while it keeps its connections open (an
    /// overloaded or paused instance, not a dead one): `DEBUG SLEEP` sent through redis-cli. The
    /// returned child exits when the server answers again.
    pub fn freeze(&self, seconds: u32) -> std::process::Child {
        Command::new("redis-cli")
            .args([
                "-p",
                &self.port.to_string(),
                "DEBUG",
                "SLEEP",
                &seconds.to_string(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-cli must be installed: run `bash scripts/ensure-services.sh`")
    }

    /// Runs one command through redis-cli and returns its raw answer.
    pub fn command(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--raw"])
            .args(args)
            .output()
            .expect("redis-cli must be installed: run `bash scripts/ensure-services.sh`");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The value of one key through redis-cli (`None` if absent).
    pub fn get(&self, key: &str) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--raw", "GET", key])
            .output()
            .expect("redis-cli must be installed: run `bash scripts/ensure-services.sh`");
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (!text.is_empty()).then_some(text)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
