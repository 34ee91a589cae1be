//! A throw-away certificate authority for tests of TLS clients: a CA and a server certificate
//! it signs, made with the system's `openssl` in a temporary directory. Tests start real
//! servers (Redis) with the server certificate and connect with the CA as the only trusted root,
//! so what they prove is the client's verification, not a mock's.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestCa {
    dir: tempfile::TempDir,
}

/// Runs the system's `openssl` with `args` in `dir`; panics with its error output if it fails.
pub(crate) fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (Debian: apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// A fresh CA, and a server certificate for `127.0.0.1` only (so a client that checks host
    /// names refuses it under any other name).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=seatbook test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
            d,
        );
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
            d,
        );
        std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write ext");
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                "server.pem",
            ],
            d,
        );
        Self { dir }
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// The CA certificate, PEM.
    pub fn ca_bytes(&self) -> Vec<u8> {
        std::fs::read(self.ca_pem()).expect("read the CA")
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}
