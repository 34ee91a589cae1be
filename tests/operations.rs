//! The operator's view on the real binary, on both backends: queue statistics read from the
//! store (every show listed, traffic or not; the same after a restart) and a pause that survives
//! a crash; `/health` says nothing about demand.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

#[macro_use]
mod support;

use support::*;

on_every_backend!(
    a_pause_and_the_queue_statistics_survive_a_restart,
    a_pause_holds_in_direct_mode_too,
    direct_mode_decides_requests_waiting_from_before_first
);

/// With `QUEUE_BASED_BOOKING=false`, a request that was already waiting for the show (accepted in
/// queue mode before a switch-over, its message still on its way to a worker) is decided before
/// one that arrives later for the same seat: the later one is refused, not the earlier.
async fn direct_mode_decides_requests_waiting_from_before_first(backend: Backend) {
    let mut options = TestAppOptions::on(backend);
    options.config.queue_based = false;
    let server = TestApp::start_with(options).await;
    let c = client();
    let now = booking_core::Clock::now(server.clock.as_ref());
    let early: booking_core::UserId = "early-fan".parse().unwrap();
    let waiting = match server
        .requests()
        .insert_request(booking_core::NewBookingRequest {
            request_id: booking_core::RequestId::new_random(),
            user_id: early.clone(),
            show_id: STUDIO.parse().unwrap(),
            seat_ids: vec!["B3".parse().unwrap()],
            idempotency_key: None,
            created_at: now,
            expires_at: now + chrono::Duration::minutes(2),
            max_open: None,
        })
        .await
        .unwrap()
    {
        booking_core::ports::Inserted::New(request) => request,
        other => panic!("a new request: {other:?}"),
    };

    let (status, refused) = hold(&c, &server, &token("late-fan"), STUDIO, &["B3"]).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("SEATS_UNAVAILABLE")),
        "the seat went to the request that was waiting: {refused}"
    );
    let decided = server
        .requests()
        .get_request(waiting.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decided.status, booking_core::RequestStatus::Success);
    assert_eq!(seat_status(&c, &server, STUDIO).await["B3"], "HELD");
}

/// With `QUEUE_BASED_BOOKING=false` a paused show decides nothing either: its requests are
/// queued (202) and decided once it resumes.
async fn a_pause_holds_in_direct_mode_too(backend: Backend) {
    let mut options = TestAppOptions::on(backend);
    options.config.queue_based = false;
    let server = TestApp::start_with(options).await;
    let c = client();
    let admin = admin_token("operator");
    let fan = token("direct-fan");
    let (status, held) = hold(&c, &server, &fan, STUDIO, &["B1"]).await;
    assert_eq!(status, 201, "decided at once: {held}");

    pause_show(&c, &server, STUDIO, &admin).await;
    let (status, queued) = hold(&c, &server, &fan, STUDIO, &["B2"]).await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["status"], "QUEUED");
    let id = queued["requestId"].as_str().unwrap();
    server.drain().await;
    let (_, r) = get(
        &c,
        &server,
        &format!("/api/v1/booking-requests/{id}"),
        Some(&fan),
    )
    .await;
    assert_eq!(r["status"], "QUEUED", "not decided while paused: {r}");
    resume_show(&c, &server, STUDIO, &admin).await;
    assert_eq!(
        wait_terminal(&c, &server, &fan, id).await["status"],
        "SUCCESS"
    );
}

async fn a_pause_and_the_queue_statistics_survive_a_restart(backend: Backend) {
    let mut server = Server::start_on(backend, &[]).await;
    let c = client();
    let admin = admin_token("operator");
    pause_show(&c, &server, GRAND_HALL, &admin).await;
    let mut accepted = Vec::new();
    for (i, seat) in ["J1", "J2", "J3"].into_iter().enumerate() {
        let fan = token(&format!("fan-{i}"));
        let (status, body) = hold(&c, &server, &fan, GRAND_HALL, &[seat]).await;
        assert_eq!(status, 202, "{body}");
        accepted.push((fan, body["requestId"].as_str().unwrap().to_owned()));
    }

    let before = queue_of(&c, &server, &admin, GRAND_HALL).await;
    assert_eq!(before["paused"], true);
    assert_eq!(before["waiting"], 3, "{before}");
    assert_eq!(before["decided"], 0);
    assert!(before["oldestWaitingAgeSeconds"].as_i64().unwrap() >= 0);
    let quiet = queue_of(&c, &server, &admin, STUDIO).await;
    assert_eq!(
        (quiet["waiting"].as_u64(), quiet["paused"].as_bool()),
        (Some(0), Some(false)),
        "a show without traffic is listed too"
    );
    let (_, health) = get(&c, &server, "/health", None).await;
    assert!(
        health.get("queue").is_none(),
        "demand is not public: {health}"
    );

    server.crash_and_restart();
    let after = queue_of(&c, &server, &admin, GRAND_HALL).await;
    assert_eq!(after["paused"], true, "the pause outlived the crash");
    assert_eq!(after["waiting"], 3, "{after}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for (fan, id) in &accepted {
        let (_, r) = get(
            &c,
            &server,
            &format!("/api/v1/booking-requests/{id}"),
            Some(fan),
        )
        .await;
        assert_eq!(r["status"], "QUEUED", "not decided while paused: {r}");
    }

    resume_show(&c, &server, GRAND_HALL, &admin).await;
    for (fan, id) in &accepted {
        let r = wait_terminal(&c, &server, fan, id).await;
        assert_eq!(r["status"], "SUCCESS", "{r}");
    }
    let done = queue_of(&c, &server, &admin, GRAND_HALL).await;
    assert_eq!(done["paused"], false);
    assert_eq!(
        (done["waiting"].as_u64(), done["inFlight"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(done["decided"], 3, "{done}");
    assert_eq!(done["outcomes"]["success"], 3);
    assert!(done["oldestWaitingAgeSeconds"].is_null());
    assert!(done["decisionsPerSecond"].as_f64().unwrap() > 0.0, "{done}");
    assert!(
        done["meanTimeToDecisionMs"].as_f64().unwrap() > 0.0,
        "{done}"
    );
}
