//! The project's tool venvs (`scripts/*-tools.sh`): tests that need a tool from PyPI run its
//! script, which installs it on first use and is quick afterwards, so a test never skips because
//! the tool is missing; it fails, naming the script, when it cannot be installed.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Runs `scripts/<script>` and returns the bin directory it prints last; `what` names the tools
/// in the failure message.
pub fn bin_dir_of(script: &str, what: &str) -> PathBuf {
    let script = crate::aws::workspace_root().join("scripts").join(script);
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {what} come from PyPI; see its output above",
        script.display()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        text.lines()
            .last()
            .expect("the script prints its bin dir")
            .trim(),
    )
}
