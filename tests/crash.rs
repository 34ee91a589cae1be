//! Crash safety: every request answered 202 reaches exactly one terminal state across kill -9
//! and restart, and no seat ends up in two live holds.

#[macro_use]
mod support;

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::*;

/// Checks that the live holds of `show` never share a seat and match the seat map.
async fn assert_no_seat_held_twice(
    c: &reqwest::Client,
    server: &Server,
    show: &str,
    decided: &[(String, Value)],
) {
    let mut held: HashSet<String> = HashSet::new();
    for (t, r) in decided {
        if r["status"] != "SUCCESS" {
            continue;
        }
        let (_, h) = get(
            c,
            server,
            &format!("/api/v1/holds/{}", r["holdId"].as_str().unwrap()),
            Some(t),
        )
        .await;
        if h["status"] == "HELD" {
            for s in h["seatIds"].as_array().unwrap() {
                assert!(
                    held.insert(s.as_str().unwrap().to_owned()),
                    "seat {s} is in two live holds"
                );
            }
        }
    }
    let map = seat_status(c, server, show).await;
    let held_in_map: HashSet<String> = map
        .into_iter()
        .filter(|(_, s)| s == "HELD")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(held_in_map, held, "seat map and live holds disagree");
}

/// Requests accepted while their show was paused are all decided after a kill -9 and restart.
async fn queued_requests_survive_kill_and_restart(backend: Backend) {
    let mut server = Server::start_on(backend, &[]).await;
    let c = client();
    pause_show(&c, &server, STUDIO, &admin_token("ops")).await;
    let mut accepted = Vec::new();
    for i in 0..40 {
        let t = token(&format!("u{i}"));
        let seats = [format!("C{}", i % 6 + 1), format!("C{}", i % 6 + 2)];
        let (status, r) = hold(&c, &server, &t, STUDIO, &[&seats[0], &seats[1]]).await;
        assert_eq!(status, 202);
        accepted.push((t, r["requestId"].as_str().unwrap().to_owned()));
    }
    for (t, id) in &accepted[..3] {
        let (_, r) = get(
            &c,
            &server,
            &format!("/api/v1/booking-requests/{id}"),
            Some(t),
        )
        .await;
        assert_eq!(r["status"], "QUEUED");
    }

    server.crash_and_restart();

    let mut decided = Vec::new();
    for (t, id) in &accepted {
        decided.push((t.clone(), wait_terminal(&c, &server, t, id).await));
    }
    // Arrival order: the very first request (C1, C2) was granted.
    assert_eq!(decided[0].1["status"], "SUCCESS");
    assert_no_seat_held_twice(&c, &server, STUDIO, &decided).await;
}

/// kill -9 in the middle of a burst: whatever was answered 202 is decided after restart.
async fn kill_during_a_burst_loses_nothing_accepted(backend: Backend) {
    let mut server = Server::start_on(backend, &[]).await;
    let c = client();
    const N: usize = 400;
    let answered = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..N {
        let (c, answered, tx) = (c.clone(), answered.clone(), tx.clone());
        let url = server.url("/api/v1/holds");
        tokio::spawn(async move {
            let t = token(&format!("burst-{i}"));
            // 1-3 seats among 24 contested ones.
            let seats: Vec<String> = (0..(i % 3 + 1))
                .map(|k| format!("K{}", (i * 7 + k) % 24 + 1))
                .collect();
            if let Ok(resp) = c
                .post(url)
                .bearer_auth(&t)
                .json(&json!({"showId": GRAND_HALL, "seatIds": seats}))
                .send()
                .await
            {
                let (status, body) = json_of(resp).await;
                if status == 202 {
                    answered.fetch_add(1, Ordering::SeqCst);
                    let _ = tx.send((t, body["requestId"].as_str().unwrap().to_owned()));
                }
            }
        });
    }
    drop(tx);
    while answered.load(Ordering::SeqCst) < N / 2 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    server.crash_and_restart();
    let mut accepted = Vec::new();
    while let Some(x) = rx.recv().await {
        accepted.push(x);
    }
    assert!(accepted.len() >= N / 2);

    let mut decided = Vec::new();
    let mut per_status: HashMap<String, usize> = HashMap::new();
    for (t, id) in &accepted {
        let r = wait_terminal(&c, &server, t, id).await;
        *per_status
            .entry(r["status"].as_str().unwrap().to_owned())
            .or_default() += 1;
        decided.push((t.clone(), r));
    }
    assert!(
        per_status.get("SUCCESS").copied().unwrap_or(0) >= 1,
        "{per_status:?}"
    );
    assert_no_seat_held_twice(&c, &server, GRAND_HALL, &decided).await;
}

on_every_backend!(
    queued_requests_survive_kill_and_restart,
    kill_during_a_burst_loses_nothing_accepted,
);
