//! The waiting room end to end over HTTP, on both backends, with the app's clock moved by the
//! test (ticks are run by the test, as the ticker would): the pre-queue's fair draw at the
//! opening and arrival order after it, admission tokens on `POST /holds` (missing, another
//! user's, another show's, a forged one), capacity given back at once by a purchase and a
//! departure, unused admissions and unpolled places expiring, one place per user, the admin's
//! view, bad settings, and switching the room off. The binary's own ticker and the room's
//! survival of a kill -9 are in `waiting_room_restart`, below.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

#[macro_use]
mod support;

use booking_core::Clock;
use chrono::Duration;
use serde_json::{Value, json};
use support::*;

const ROOM: &str = "/api/v1/shows/5e0c1a6e-8f1e-4c3a-9b2d-000000000001/waiting-room";
const ADMIN_ROOM: &str = "/api/v1/admin/shows/5e0c1a6e-8f1e-4c3a-9b2d-000000000001/waiting-room";

async fn delete(
    c: &reqwest::Client,
    server: &impl Target,
    path: &str,
    token: &str,
) -> (u16, Value) {
    json_of(
        c.delete(server.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("DELETE"),
    )
    .await
}

/// `POST /holds` for GRAND_HALL with an admission token (or none).
async fn hold_with(
    c: &reqwest::Client,
    server: &impl Target,
    token: &str,
    admission: Option<&str>,
    seat: &str,
) -> (u16, Value) {
    let mut req = c
        .post(server.url("/api/v1/holds"))
        .bearer_auth(token)
        .json(&json!({ "showId": GRAND_HALL, "seatIds": [seat] }));
    if let Some(admission) = admission {
        req = req.header("Admission-Token", admission);
    }
    json_of(req.send().await.expect("POST /holds")).await
}

async fn tick(server: &TestApp) {
    server
        .app
        .waiting_rooms()
        .tick_all()
        .await
        .expect("tick the rooms");
}

async fn place(c: &reqwest::Client, server: &TestApp, token: &str) -> Value {
    let (status, place) = get(c, server, ROOM, Some(token)).await;
    assert_eq!(status, 200, "{place}");
    place
}

async fn waiting_room_end_to_end(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let admin = admin_token("wr-admin");
    let opens_at = server.clock.now() + Duration::seconds(60);

    // No room yet: joining is refused, holds need nothing.
    let (status, body) = post(&c, &server, ROOM, Some(&token("early")), json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("WAITING_ROOM_NOT_FOUND"))
    );

    // Bad settings are refused whole.
    for bad in [
        json!({ "admitPerSecond": 0 }),
        json!({ "admitPerSecond": 5, "graceSeconds": 1 }),
        json!({ "admitPerSecond": 5, "maxActive": 0 }),
    ] {
        let (status, body) = put(&c, &server, ADMIN_ROOM, Some(&admin), bad.clone()).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_WAITING_ROOM");
    }
    let (status, body) = put(
        &c,
        &server,
        ADMIN_ROOM,
        Some(&token("not-admin")),
        json!({ "admitPerSecond": 5 }),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    let (status, room) = put(
        &c,
        &server,
        ADMIN_ROOM,
        Some(&admin),
        json!({ "opensAt": opens_at, "admitPerSecond": 2, "maxActive": 3,
                "admissionTtlSeconds": 30, "graceSeconds": 20 }),
    )
    .await;
    assert_eq!(status, 200, "{room}");
    assert_eq!(room["opened"], false);
    assert_eq!(room["maxActive"], 3);
    assert_eq!(room["shoppingTtlSeconds"], 900, "the default");

    // The room is on: a hold without an admission is refused, and nothing is written.
    let (status, body) = hold_with(&c, &server, &token("early"), None, "A1").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "ADMISSION_REQUIRED");
    assert_eq!(body["error"]["details"]["reason"], "MISSING");
    assert_eq!(server.stored_request_count().await, 0);

    // Eight join the pre-queue (one of them twice: one place per user). Before the opening
    // nobody has a position: the order is not drawn yet.
    let users: Vec<String> = (0..8).map(|i| token(&format!("wr-user-{i}"))).collect();
    for (i, user) in users.iter().enumerate() {
        server.advance(Duration::milliseconds(5));
        let (status, joined) = post(&c, &server, ROOM, Some(user), json!({})).await;
        assert_eq!(status, 201, "{joined}");
        assert_eq!(joined["ticket"], i as u64 + 1);
        assert_eq!(joined["state"], "WAITING");
        assert_eq!(joined["position"], Value::Null);
        assert_eq!(joined["pollWithinSeconds"], 20);
    }
    let (status, again) = post(&c, &server, ROOM, Some(&users[3]), json!({})).await;
    assert_eq!((status, &again["ticket"]), (200, &json!(4)), "{again}");
    tick(&server).await;
    assert_eq!(place(&c, &server, &users[0]).await["position"], Value::Null);

    // The opening draws the order and lets in one second's worth (2).
    server.clock.set(opens_at);
    tick(&server).await;
    let mut admitted = Vec::new();
    let mut positions = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let p = place(&c, &server, user).await;
        match p["state"].as_str().unwrap() {
            "ADMITTED" => admitted.push(i),
            "WAITING" => positions.push((p["position"].as_u64().unwrap(), i)),
            other => panic!("user {i} is {other}: {p}"),
        }
    }
    assert_eq!(admitted.len(), 2, "one second's worth at the opening");
    positions.sort_unstable();
    assert_eq!(
        positions.iter().map(|p| p.0).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>(),
        "the others wait in a drawn order: positions 1..=6"
    );

    // A late arrival queues behind the whole pre-queue.
    let late = token("wr-late");
    let (_, joined) = post(&c, &server, ROOM, Some(&late), json!({})).await;
    assert_eq!(joined["ticket"], 9);
    assert_eq!(place(&c, &server, &late).await["position"], 7);
    assert_eq!(place(&c, &server, &late).await["estimatedWaitSeconds"], 4);

    // The first admitted shops with their token; others' tokens and forged ones are refused.
    let first = &users[admitted[0]];
    let second = &users[admitted[1]];
    let first_token = place(&c, &server, first).await["admissionToken"]
        .as_str()
        .expect("an admitted place carries its token")
        .to_owned();
    let (status, body) = hold_with(&c, &server, second, Some(&first_token), "A1").await;
    assert_eq!(
        (status, &body["error"]["details"]["reason"]),
        (403, &json!("OTHER_USER")),
        "{body}"
    );
    let (status, body) = hold_with(&c, &server, first, Some("not.a.token"), "A1").await;
    assert_eq!(
        (status, &body["error"]["details"]["reason"]),
        (403, &json!("INVALID")),
        "{body}"
    );
    let waiting = &users[positions[0].1];
    let (status, body) = hold_with(&c, &server, waiting, None, "A1").await;
    assert_eq!(
        (status, &body["error"]["details"]["reason"]),
        (403, &json!("MISSING")),
        "{body}"
    );
    let (status, accepted) = hold_with(&c, &server, first, Some(&first_token), "A1").await;
    assert_eq!(status, 202, "{accepted}");
    server.drain().await;
    let result = wait_terminal(&c, &server, first, accepted["requestId"].as_str().unwrap()).await;
    assert_eq!(result["status"], "SUCCESS", "{result}");
    assert_eq!(place(&c, &server, first).await["state"], "SHOPPING");

    // A second later one more comes in: the third active shopper, the cap.
    server.advance(Duration::seconds(1));
    tick(&server).await;
    let room = get(&c, &server, ADMIN_ROOM, Some(&admin)).await.1;
    assert_eq!(
        (room["admitted"].as_u64(), room["shopping"].as_u64()),
        (Some(2), Some(1)),
        "{room}"
    );
    assert_eq!(room["waiting"], 6, "{room}");
    let mut third = None;
    for (i, user) in users.iter().enumerate() {
        let p = place(&c, &server, user).await;
        if p["state"] == "ADMITTED" && !admitted.contains(&i) {
            third = Some((
                user.clone(),
                p["admissionToken"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let third = third.expect("a third user was let in");
    // Full: time alone lets nobody else in (everyone polls, so nobody is given up).
    server.advance(Duration::seconds(1));
    for user in users.iter().chain([&late]) {
        get(&c, &server, ROOM, Some(user)).await;
    }
    tick(&server).await;
    assert_eq!(
        get(&c, &server, ADMIN_ROOM, Some(&admin)).await.1["waiting"],
        6
    );

    // The buyer pays: their capacity is back at once, and the next comes in.
    let hold_id = result["holdId"].as_str().unwrap();
    let order = order(&c, &server, first, hold_id).await;
    let (status, paid) = pay(
        &c,
        &server,
        first,
        order["orderId"].as_str().unwrap(),
        "tok_visa",
    )
    .await;
    assert_eq!(
        (status, &paid["status"]),
        (200, &json!("CONFIRMED")),
        "{paid}"
    );
    assert_eq!(place(&c, &server, first).await["state"], "DONE");
    tick(&server).await;
    let room = get(&c, &server, ADMIN_ROOM, Some(&admin)).await.1;
    assert_eq!(
        (room["done"].as_u64(), room["admitted"].as_u64()),
        (Some(1), Some(3)),
        "{room}"
    );

    // One admitted leaves: their capacity is back at once too.
    let (status, _) = delete(&c, &server, ROOM, second).await;
    assert_eq!(status, 204);
    server.advance(Duration::seconds(1));
    tick(&server).await;
    let room = get(&c, &server, ADMIN_ROOM, Some(&admin)).await.1;
    assert_eq!(
        (room["done"].as_u64(), room["admitted"].as_u64()),
        (Some(2), Some(3)),
        "{room}"
    );
    assert_eq!(room["waiting"], 4, "{room}");

    // Nobody uses their admission (30 s) and only the late arrival keeps polling (within the
    // 20 s grace): the admissions expire, the silent waiting places are given up, and their
    // capacity goes to the late arrival.
    server.advance(Duration::seconds(12));
    get(&c, &server, ROOM, Some(&late)).await;
    server.advance(Duration::seconds(19));
    // Before any tick has marked it, a lapsed admission is over: no token a hold would refuse.
    let lapsed = place(&c, &server, &third.0).await;
    assert_eq!(
        (&lapsed["state"], &lapsed["admissionToken"]),
        (&json!("EXPIRED"), &Value::Null),
        "{lapsed}"
    );
    tick(&server).await;
    let room = get(&c, &server, ADMIN_ROOM, Some(&admin)).await.1;
    assert_eq!(room["expired"], 3, "{room}");
    assert_eq!(room["abandoned"], 3, "{room}");
    assert_eq!(
        (room["waiting"].as_u64(), room["admitted"].as_u64()),
        (Some(0), Some(1)),
        "{room}"
    );
    assert_eq!(
        place(&c, &server, &late).await["state"],
        "ADMITTED",
        "the one who kept polling"
    );

    // An expired admission admits nobody, though its token has not run out; a live one does.
    let (third, third_token) = third;
    let (status, body) = hold_with(&c, &server, &third, Some(&third_token), "A2").await;
    assert_eq!(
        (status, &body["error"]["details"]["reason"]),
        (403, &json!("EXPIRED")),
        "{body}"
    );
    let late_token = place(&c, &server, &late).await["admissionToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = hold_with(&c, &server, &late, Some(&late_token), "A2").await;
    assert_eq!(status, 202, "{body}");
    server.drain().await;

    // The admin switches the room off: anyone may ask for seats again.
    let (status, _) = delete(&c, &server, ADMIN_ROOM, &admin).await;
    assert_eq!(status, 204);
    let (status, body) = hold_with(&c, &server, &token("after"), None, "A3").await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = get(&c, &server, ADMIN_ROOM, Some(&admin)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("WAITING_ROOM_NOT_FOUND"))
    );
}

on_every_backend!(waiting_room_end_to_end);

/// An armed room lets every hold through while demand is under its rate, and switches itself
/// on (opening then) once a burst goes over it; from then on holds need an admission. Its wait
/// estimates follow the pace it measures: the set rate before a first measure, none while the
/// cap on shoppers lets nobody in, and the slower real pace once people leave one by one.
async fn an_armed_room_switches_itself_on_and_estimates_from_its_pace(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let admin = admin_token("wr-admin");
    let (status, room) = put(
        &c,
        &server,
        ADMIN_ROOM,
        Some(&admin),
        json!({ "admitPerSecond": 10, "maxActive": 2, "switchOnAbove": 20 }),
    )
    .await;
    assert_eq!(status, 200, "{room}");
    assert_eq!(
        (&room["armed"], &room["switchOnAbove"]),
        (&json!(true), &json!(20))
    );
    let (status, body) = put(
        &c,
        &server,
        ADMIN_ROOM,
        Some(&admin),
        json!({ "admitPerSecond": 10, "switchOnAbove": 0 }),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("INVALID_WAITING_ROOM"))
    );

    // Under the rate: 15 holds in the first second pass without an admission.
    for i in 1..=15 {
        let (status, body) = hold_with(
            &c,
            &server,
            &token(&format!("calm-{i}")),
            None,
            &format!("A{i}"),
        )
        .await;
        assert_eq!(status, 202, "calm hold {i}: {body}");
    }
    tick(&server).await;
    assert_eq!(
        get(&c, &server, ADMIN_ROOM, Some(&admin)).await.1["armed"],
        true
    );

    // A new window, and a burst of 40: the room switches itself on within it, and the holds
    // after the switch are refused for want of an admission.
    server.advance(Duration::seconds(6));
    let mut statuses = Vec::new();
    for i in 1..=40 {
        let (status, body) = hold_with(
            &c,
            &server,
            &token(&format!("rush-{i}")),
            None,
            &format!("B{i}"),
        )
        .await;
        if status == 403 {
            assert_eq!(body["error"]["code"], "ADMISSION_REQUIRED", "{body}");
        }
        statuses.push(status);
    }
    let passed = statuses.iter().take_while(|&&s| s == 202).count();
    assert!(
        passed <= 21 && statuses[passed..].iter().all(|&s| s == 403),
        "the burst passed until the switch, then was refused: {statuses:?}"
    );
    let switched_at = server.clock.now();
    let room = get(&c, &server, ADMIN_ROOM, Some(&admin)).await.1;
    assert_eq!(room["armed"], false, "{room}");
    let opens_at: chrono::DateTime<chrono::Utc> =
        room["opensAt"].as_str().expect("opensAt").parse().unwrap();
    // At the switch, as the store keeps instants (whole milliseconds or microseconds).
    assert!(
        (opens_at - switched_at).abs() < Duration::milliseconds(1),
        "it opens at the switch, {switched_at}: {room}"
    );

    // Eight join; the opening lets in two (the cap). Before a measure: the set rate.
    let users: Vec<String> = (0..8).map(|i| token(&format!("wr-pace-{i}"))).collect();
    for user in &users {
        let (status, joined) = post(&c, &server, ROOM, Some(user), json!({})).await;
        assert_eq!(status, 201, "{joined}");
        assert!(joined["opensAt"].is_string(), "{joined}");
    }
    tick(&server).await;
    let by_position = |places: &[Value]| {
        let mut waiting: Vec<(u64, usize)> = places
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((p["position"].as_u64()?, i)))
            .collect();
        waiting.sort_unstable();
        waiting
    };
    let mut places = Vec::new();
    for user in &users {
        places.push(place(&c, &server, user).await);
    }
    let waiting = by_position(&places);
    assert_eq!(waiting.len(), 6, "{places:?}");
    let last = &places[waiting[5].1];
    assert_eq!(
        last["estimatedWaitSeconds"], 1,
        "6th at the set 10 a second: {last}"
    );

    // Ten seconds in which nobody finishes: the room measured 0 a second and promises nothing.
    for _ in 0..10 {
        server.advance(Duration::seconds(1));
        tick(&server).await;
    }
    let room = get(&c, &server, ADMIN_ROOM, Some(&admin)).await.1;
    assert_eq!(room["measuredAdmissionsPerSecond"], 0.0, "{room}");
    let stalled = place(&c, &server, &users[waiting[0].1]).await;
    assert_eq!(stalled["position"], 1, "{stalled}");
    assert_eq!(stalled["estimatedWaitSeconds"], Value::Null, "{stalled}");

    // One shopper leaves every 5 s: one admitted per 5 s, 0.2 a second, and the estimate says
    // about 5 s per place ahead.
    let admitted: Vec<usize> = (0..8)
        .filter(|i| places[*i]["position"].is_null())
        .collect();
    let mut leaving = admitted.into_iter().chain(waiting.iter().map(|w| w.1));
    for step in 0..10 {
        if step % 5 == 0 {
            let who = leaving.next().unwrap();
            assert_eq!(delete(&c, &server, ROOM, &users[who]).await.0, 204);
        }
        server.advance(Duration::seconds(1));
        tick(&server).await;
    }
    let room = get(&c, &server, ADMIN_ROOM, Some(&admin)).await.1;
    assert_eq!(room["measuredAdmissionsPerSecond"], 0.2, "{room}");
    let next = waiting[2].1;
    let p = place(&c, &server, &users[next]).await;
    assert_eq!(
        (&p["position"], &p["estimatedWaitSeconds"]),
        (&json!(1), &json!(5)),
        "{p}"
    );
    let p = place(&c, &server, &users[waiting[5].1]).await;
    assert_eq!(
        (&p["position"], &p["estimatedWaitSeconds"]),
        (&json!(4), &json!(20)),
        "{p}"
    );
}

on_every_backend!(an_armed_room_switches_itself_on_and_estimates_from_its_pace);

/// Polls `token`'s place until `done` says yes (the binary's own ticker moves the room).
async fn place_until(
    c: &reqwest::Client,
    server: &Server,
    token: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, place) = get(c, server, ROOM, Some(token)).await;
        assert_eq!(status, 200, "{place}");
        if done(&place) {
            return place;
        }
        assert!(std::time::Instant::now() < deadline, "still {place}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The shipped binary: its ticker opens the room and lets people in by itself, and a kill -9
/// keeps every place, ticket and position, and the admission key (kept in DATA_DIR when none is
/// configured), so an admission handed out before the crash still admits after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_room_restart() {
    let mut server = Server::start(&[]);
    let c = client();
    let admin = admin_token("wr-admin");
    let opens_at = chrono::Utc::now() + Duration::seconds(2);
    let (status, room) = put(
        &c,
        &server,
        ADMIN_ROOM,
        Some(&admin),
        json!({ "opensAt": opens_at, "admitPerSecond": 50, "maxActive": 1,
                "admissionTtlSeconds": 120 }),
    )
    .await;
    assert_eq!(status, 200, "{room}");
    let users: Vec<String> = (0..6).map(|i| token(&format!("wr-restart-{i}"))).collect();
    for user in &users {
        let (status, joined) = post(&c, &server, ROOM, Some(user), json!({})).await;
        assert_eq!(status, 201, "{joined}");
    }
    // The ticker opens the room: one is let in (the cap), the others wait in a drawn order.
    let first = place_until(&c, &server, &users[0], |p| {
        p["state"] != "WAITING" || !p["position"].is_null()
    })
    .await;
    let mut before = Vec::new();
    for user in &users {
        before.push(get(&c, &server, ROOM, Some(user)).await.1);
    }
    let admitted: Vec<usize> = (0..users.len())
        .filter(|&i| before[i]["state"] == "ADMITTED")
        .collect();
    assert_eq!(admitted.len(), 1, "{before:?} ({first})");
    let old_token = before[admitted[0]]["admissionToken"]
        .as_str()
        .unwrap()
        .to_owned();

    server.crash_and_restart();

    for (user, was) in users.iter().zip(&before) {
        let (status, now) = get(&c, &server, ROOM, Some(user)).await;
        assert_eq!(status, 200, "{now}");
        for field in ["ticket", "state", "position"] {
            assert_eq!(
                now[field], was[field],
                "{field} after the restart: {now} (was {was})"
            );
        }
    }
    // The key is kept in DATA_DIR: the admission handed out before the crash still admits.
    let holder = &users[admitted[0]];
    let (status, body) = hold_with(&c, &server, holder, Some(&old_token), "B1").await;
    assert_eq!(status, 202, "{body}");
    let key = std::fs::metadata(server.data_dir.join("admission.key")).expect("the key file");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600,
        "readable by its owner only"
    );

    // The shopper leaves: the ticker lets in the next in line, position 1, at once.
    let (status, _) = delete(&c, &server, ROOM, holder).await;
    assert_eq!(status, 204);
    let next = (0..users.len())
        .find(|&i| before[i]["position"] == 1)
        .expect("someone was first in line");
    let place = place_until(&c, &server, &users[next], |p| p["state"] == "ADMITTED").await;
    let token = place["admissionToken"].as_str().unwrap();
    let (status, body) = hold_with(&c, &server, &users[next], Some(token), "B2").await;
    assert_eq!(status, 202, "{body}");
    let room = get(&c, &server, ADMIN_ROOM, Some(&admin)).await.1;
    assert_eq!(
        (
            room["done"].as_u64(),
            room["shopping"].as_u64(),
            room["waiting"].as_u64()
        ),
        (Some(1), Some(1), Some(4)),
        "{room}"
    );

    // A scrape reads the room from the store: its places by state, its measured pace (none
    // yet: 0), and what the ticker of this process let in since the restart.
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    let show = GRAND_HALL;
    for line in [
        format!("seatbook_waiting_room_places{{show_id=\"{show}\",state=\"WAITING\"}} 4"),
        format!("seatbook_waiting_room_places{{show_id=\"{show}\",state=\"SHOPPING\"}} 1"),
        format!("seatbook_waiting_room_places{{show_id=\"{show}\",state=\"DONE\"}} 1"),
        format!("seatbook_waiting_room_admissions_per_second{{show_id=\"{show}\"}} 0"),
        "seatbook_waiting_room_events_total{event=\"admitted\"} 1".to_owned(),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} in\n{}",
            metrics
                .lines()
                .filter(|l| l.contains("waiting_room"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Joining is limited per user and per address (one machine farming places with many
/// accounts); polling a place is not, since keeping it needs polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_are_limited_per_user_and_per_address() {
    // One token an hour: however slowly the requests run, exactly the burst is served.
    let server = Server::start(&[
        ("RATE_LIMIT_JOINS", "1/h,burst=2"),
        ("RATE_LIMIT_JOINS_PER_IP", "1/h,burst=4"),
    ]);
    let c = client();
    let (status, room) = put(
        &c,
        &server,
        ADMIN_ROOM,
        Some(&admin_token("wr-admin")),
        json!({ "admitPerSecond": 1 }),
    )
    .await;
    assert_eq!(status, 200, "{room}");
    let code = |body: &Value| body["error"]["code"].as_str().map(str::to_owned);
    let farmer = token("wr-farmer");
    for _ in 0..2 {
        let (status, body) = post(&c, &server, ROOM, Some(&farmer), json!({})).await;
        assert!(status == 200 || status == 201, "{body}");
    }
    let (status, body) = post(&c, &server, ROOM, Some(&farmer), json!({})).await;
    assert_eq!(
        (status, code(&body)),
        (429, Some("RATE_LIMITED".into())),
        "per user"
    );
    for i in 0..2 {
        let (status, body) = post(
            &c,
            &server,
            ROOM,
            Some(&token(&format!("wr-sock-{i}"))),
            json!({}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = post(&c, &server, ROOM, Some(&token("wr-sock-3")), json!({})).await;
    assert_eq!(
        (status, code(&body)),
        (429, Some("RATE_LIMITED".into())),
        "per address: {body}"
    );
    for _ in 0..10 {
        let (status, body) = get(&c, &server, ROOM, Some(&farmer)).await;
        assert_eq!(status, 200, "polls are not limited: {body}");
    }
}

/// Over the WebSocket: the binary's ticker tells a waiting user their position (coalesced,
/// every few seconds) and tells whoever it lets in, with the admission token, at once; the
/// pushed token admits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn positions_and_admissions_arrive_over_the_websocket() {
    let server = Server::start(&[]);
    let c = client();
    let (status, room) = put(
        &c,
        &server,
        ADMIN_ROOM,
        Some(&admin_token("wr-admin")),
        json!({ "admitPerSecond": 1, "maxActive": 1 }),
    )
    .await;
    assert_eq!(status, 200, "{room}");
    // Opened (by the ticker) before anyone joins: then arrival order holds, not a draw.
    let deadline = std::time::Instant::now() + WAIT;
    while get(&c, &server, ADMIN_ROOM, Some(&admin_token("wr-admin")))
        .await
        .1["opened"]
        != true
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the room did not open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (alice, bob) = (token("wr-ws-alice"), token("wr-ws-bob"));
    let mut alice_ws = WsClient::connect(&server, &alice).await;
    let mut bob_ws = WsClient::connect(&server, &bob).await;
    let (status, first) = post(&c, &server, ROOM, Some(&alice), json!({})).await;
    assert_eq!(status, 201, "{first}");
    let (status, second) = post(&c, &server, ROOM, Some(&bob), json!({})).await;
    assert_eq!(status, 201, "{second}");

    // Alice came first after the opening: she is let in, and told so with her token (having
    // perhaps heard her position first, if a push came between her join and the next tick).
    let admitted = until_state(&mut alice_ws, "ADMITTED").await;
    assert_eq!(admitted["ticket"], 1);
    let alice_token = admitted["admissionToken"].as_str().unwrap().to_owned();
    // Bob waits behind her (the cap is 1): he hears his position, 1 once she is in.
    let waiting = loop {
        let message = until_state(&mut bob_ws, "WAITING").await;
        if message["position"] == 1 {
            break message;
        }
    };
    assert_eq!(
        (
            waiting["state"].as_str(),
            waiting["position"].as_u64(),
            waiting["ticket"].as_u64()
        ),
        (Some("WAITING"), Some(1), Some(2)),
        "{waiting}"
    );
    let (status, body) = hold_with(&c, &server, &alice, Some(&alice_token), "C1").await;
    assert_eq!(status, 202, "{body}");

    // She leaves: Bob is let in, and hears it with his token, which admits him.
    let (status, _) = delete(&c, &server, ROOM, &alice).await;
    assert_eq!(status, 204);
    let admitted = until_state(&mut bob_ws, "ADMITTED").await;
    let (status, body) =
        hold_with(&c, &server, &bob, admitted["admissionToken"].as_str(), "C2").await;
    assert_eq!(status, 202, "{body}");
}

/// The next WAITING_ROOM_POSITION message in `state`, skipping the others (within [`WAIT`]:
/// the pushes of other states keep coming, so the socket's own timeout would not end it).
async fn until_state(ws: &mut WsClient, state: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let message = ws.next_of("WAITING_ROOM_POSITION").await;
        if message["state"] == state {
            return message;
        }
        assert!(std::time::Instant::now() < deadline, "still {message}");
    }
}

/// A process given no key its peers share (a Lambda instance deployed without
/// AdmissionSecretArn) refuses to switch a room on, rather than hand out admissions the other
/// instances would refuse.
#[tokio::test]
async fn no_room_without_a_shared_admission_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = booking_sqlite::SqliteStore::open(
        &dir.path().join("seatbook.db"),
        booking_sqlite::SqliteOptions::default(),
    )
    .await
    .unwrap();
    booking_app::demo::seed_if_empty(&store, chrono::Utc::now())
        .await
        .unwrap();
    let app = booking_app::App::builder(
        booking_app::Stores::of(std::sync::Arc::new(store)),
        booking_app::BookingConfig::default(),
    )
    .no_shared_admission_key()
    .build();
    let settings = booking_app::waiting_rooms::RoomSettings {
        opens_at: None,
        admit_per_second: 10,
        max_active: None,
        admission_ttl_seconds: None,
        shopping_ttl_seconds: None,
        grace_seconds: None,
        switch_on_above: None,
    };
    let refused = app
        .waiting_rooms()
        .configure(GRAND_HALL, &settings)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "NO_SHARED_ADMISSION_KEY");
    assert_eq!(
        booking_app::error::ApiError::from(refused).status.as_u16(),
        503
    );
}
