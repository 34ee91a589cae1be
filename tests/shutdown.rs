//! Stopping: SIGTERM while lanes still hold work. Nothing accepted may be left undecided, every
//! requester hears its result before its socket closes with "going away" (1001), and the process
//! exits 0.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

#[macro_use]
mod support;

use std::collections::HashSet;
use std::time::Duration;
use support::*;

/// A burst of accepted requests is still being decided (one per batch) when SIGTERM arrives.
async fn sigterm_decides_what_was_accepted_then_closes_sockets(backend: Backend) {
    let mut server = Server::start_on(
        backend,
        &[("MAX_BATCH", "1"), ("SHUTDOWN_GRACE_SECONDS", "60")],
    )
    .await;
    let c = client();
    let admin = admin_token("ops");
    const USERS: usize = 20;
    const EACH: usize = 10;

    let mut sockets = Vec::new();
    for u in 0..USERS {
        sockets.push(WsClient::connect(&server, &token(&format!("leaving-{u}"))).await);
    }
    // The burst waits behind a pause, so that all of it is still undecided at the signal.
    pause_show(&c, &server, GRAND_HALL, &admin).await;
    let mut accepted: Vec<HashSet<String>> = Vec::with_capacity(USERS);
    for u in 0..USERS {
        let t = token(&format!("leaving-{u}"));
        let mut mine = HashSet::new();
        for k in 0..EACH {
            let seat = format!("{}{}", (b'A' + (u % 20) as u8) as char, k + 1);
            let (status, body) = hold(&c, &server, &t, GRAND_HALL, &[&seat]).await;
            assert_eq!(status, 202, "{body}");
            mine.insert(body["requestId"].as_str().unwrap().to_owned());
        }
        accepted.push(mine);
    }
    // Clients read as real ones do, answering the close frame, while the server stops.
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { ws.until_closed().await }))
        .collect();
    resume_show(&c, &server, GRAND_HALL, &admin).await;
    let signalled_at = chrono::Utc::now();
    let exit = server.terminate(Duration::from_secs(90)).await;
    assert!(exit.success(), "the server exited with {exit:?}");

    for (u, reader) in readers.into_iter().enumerate() {
        let (messages, close) = reader.await.expect("reader");
        assert_eq!(
            close,
            Some(1001),
            "user {u}: closed with {close:?}, not going-away"
        );
        let results: HashSet<String> = messages
            .iter()
            .filter(|m| m["type"] == "BOOKING_RESULT")
            .map(|m| m["requestId"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            results, accepted[u],
            "user {u} did not hear every result before the close"
        );
    }

    let store = server.open_store().await;
    let left = store.pending_requests().await.unwrap();
    assert!(left.is_empty(), "left QUEUED or PROCESSING: {left:?}");
    // The lanes really had work at the signal: some decisions were made after it.
    let mut decided_after = 0;
    for id in accepted.iter().flatten() {
        let stored = store
            .get_request(id.parse().unwrap())
            .await
            .unwrap()
            .expect("an accepted request is stored");
        assert!(stored.status.is_terminal(), "{stored:?}");
        decided_after += usize::from(stored.processed_at.is_some_and(|at| at > signalled_at));
    }
    assert!(
        decided_after > 0,
        "every request was decided before SIGTERM: the test proved nothing"
    );
}

on_every_backend!(sigterm_decides_what_was_accepted_then_closes_sockets);
