//! The seat-selector page: how the server serves it (HTTP tests), and what a person using it sees
//! (browser tests: Debian's Chromium driven by Playwright, one scenario per test, each against a
//! fresh server).
//!
//! The browser scenarios live in `tests/browser/*.mjs`; `scripts/browser-tools.sh` installs
//! Chromium and `playwright-core` on first use and the tests fail, saying why, when it cannot.
//! A failing scenario leaves screenshots of every open page in
//! `target/browser-artifacts/<scenario>/`.

// Each test binary is built with every dev-dependency of the package; this one uses only some.
#![allow(unused_crate_dependencies)]

mod support;

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use support::{Server, Target, client, get, post};

#[tokio::test]
async fn the_page_is_served_at_the_root_with_a_strict_content_security_policy() {
    let server = Server::start(&[]);
    let resp = client().get(server.url("/")).send().await.expect("GET /");
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let html = resp.text().await.expect("body");
    assert!(html.contains("/page/app.js"), "the page loads its script");

    for (file, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let resp = client()
            .get(server.url(&format!("/page/{file}")))
            .send()
            .await
            .expect("GET");
        assert_eq!(resp.status(), 200, "{file}");
        assert_eq!(resp.headers()["content-type"], content_type, "{file}");
        // What is served is what is in the repository, byte for byte.
        let on_disk = std::fs::read_to_string(page_dir().join(file)).expect("page file");
        assert_eq!(resp.text().await.expect("body"), on_disk, "{file}");
    }
}

#[tokio::test]
async fn only_the_page_files_are_served() {
    let server = Server::start(&[]);
    for path in [
        "/page/seatbook.db",
        "/page/..%2FCargo.toml",
        "/page/%2e%2e%2fCargo.toml",
        "/page/index.html.bak",
        "/page/",
    ] {
        let (status, body) = get(&client(), &server, path, None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "NOT_FOUND", "{path}: {body}");
    }
}

#[tokio::test]
async fn the_user_switcher_mints_tokens_the_api_accepts_with_the_development_secret() {
    let server = Server::start(&[]);
    let (status, body) = post(
        &client(),
        &server,
        "/dev/tokens",
        None,
        json!({"userId": "ana"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["userId"], "ana");
    let token = body["token"].as_str().expect("token");
    let (status, orders) = get(&client(), &server, "/api/v1/me/orders", Some(token)).await;
    assert_eq!(status, 200, "the minted token is accepted: {orders}");

    // Not an admin token: the switcher plays users, not operators.
    let (status, _) = get(&client(), &server, "/api/v1/admin/queues", Some(token)).await;
    assert_eq!(status, 403);

    for bad in [json!({"userId": ""}), json!({"userId": 7}), json!({})] {
        let (status, body) = post(&client(), &server, "/dev/tokens", None, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["code"].is_string(), "{bad}: {body}");
    }
}

#[tokio::test]
async fn there_is_no_user_switcher_with_a_real_secret() {
    let server = Server::start(&[("JWT_SECRET", "a-real-secret-of-at-least-thirty-two-bytes")]);
    let (status, body) = post(
        &client(),
        &server,
        "/dev/tokens",
        None,
        json!({"userId": "ana"}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    // The page itself is still served: it asks for a token instead.
    let resp = client().get(server.url("/")).send().await.expect("GET /");
    assert_eq!(resp.status(), 200);
}

#[test]
fn two_users_race_for_one_seat_and_the_loser_sees_the_winner_s_hold_live() {
    browser_scenario("race", &[]);
}

#[test]
fn a_hold_expires_on_screen() {
    browser_scenario(
        "expiry",
        &[("HOLD_TTL_SECONDS", "4"), ("SWEEP_INTERVAL_MS", "200")],
    );
}

#[test]
fn the_full_path_to_a_confirmed_ticket() {
    browser_scenario("purchase", &[]);
}

#[test]
fn a_declined_payment_frees_the_seats() {
    browser_scenario("decline", &[]);
}

#[test]
fn a_crowd_waits_in_the_waiting_room_and_is_let_in_in_turn() {
    // As the binary's waiting-room tests run it (tests/waiting_room.rs): its own ticker, and the
    // join limits out of the way (the harness's default).
    browser_scenario("waiting-room", &[]);
}

fn page_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/local/page")
}

/// Runs `tests/browser/<name>.mjs` against a fresh server started with `env`; the scenario gets
/// the server's address, where to leave screenshots, and an admin token (`ADMIN_TOKEN`) for what
/// an operator does meanwhile.
fn browser_scenario(name: &str, env: &[(&str, &str)]) {
    // One browser at a time: Chromium is the heaviest thing the suite runs on a 2-core machine.
    static ONE_BROWSER: Mutex<()> = Mutex::new(());
    let _one = ONE_BROWSER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    browser_tools();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let artifacts = root.join("target/browser-artifacts").join(name);
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let server = Server::start(env);
    let output = Command::new("node")
        .arg(root.join("tests/browser").join(format!("{name}.mjs")))
        .env("BASE_URL", &server.base)
        .env("ARTIFACTS_DIR", &artifacts)
        .env("ADMIN_TOKEN", support::admin_token("ops"))
        .current_dir(root)
        .output()
        .expect("run node (Node.js is needed for the browser tests)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser scenario {name} failed ({}); screenshots in {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status,
        artifacts.display()
    );
}

/// Installs Chromium and playwright-core once per test run.
fn browser_tools() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let output = Command::new("bash")
            .arg(root.join("scripts/browser-tools.sh"))
            .output()
            .map_err(|e| format!("cannot run scripts/browser-tools.sh: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/browser-tools.sh failed ({}): the browser tests need Debian's chromium \
                 and playwright-core from the npm registry\n{}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(why) = result {
        panic!("{why}");
    }
}
