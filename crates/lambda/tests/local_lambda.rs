//! The Lambda functions run locally, as deployed: their real binaries under cargo-lambda's
//! runtime emulator, moto for SQS and DynamoDB, real PostgreSQL and Redis, and real WebSocket
//! clients behind a management API.
//!
//! One stack serves every case of this file, one after another (a function instance handles
//! one invocation at a time, as on Lambda).

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

mod support;

use booking_app::demo::{PREMIERE_GRAND_HALL, PREMIERE_STUDIO};
use booking_core::ports::{CatalogStore, ConnectionRegistry, HoldStore, RequestStore};
use booking_core::{OrderId, RequestId, RequestOutcome, RequestStatus, ShowId};
use booking_local::websocket::CONNECTION_ID_HEADER;
use booking_testkit::support::{fresh_user, grant, now, request};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use support::{ADMISSION_SECRET, Stack, load_event, token};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A real WebSocket client of the gateway, and the connection id the gateway gave it.
async fn ws_client(stack: &Stack, user: &str) -> (Socket, String) {
    let url = format!(
        "{}/ws?token={}",
        stack.gateway.url.replace("http://", "ws://"),
        token(user, false)
    );
    let (mut socket, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let id = response
        .headers()
        .get(CONNECTION_ID_HEADER)
        .expect("the gateway names the connection")
        .to_str()
        .unwrap()
        .to_owned();
    // A round trip, so the gateway has registered the connection before anyone pushes to it.
    socket
        .send(Message::Text(r#"{"action":"ping"}"#.into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "pong");
    (socket, id)
}

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a message within 20 s")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}

/// The websocket function's `$connect` for a connection the gateway holds.
fn connect_event(connection: &str, user: &str) -> Value {
    let mut event = load_event("websocket/connect.json");
    event["requestContext"]["connectionId"] = json!(connection);
    event["queryStringParameters"]["token"] = json!(token(user, false));
    event["multiValueQueryStringParameters"]["token"] = json!([token(user, false)]);
    event
}

fn message_event(connection: &str, body: Value) -> Value {
    let mut event = load_event("websocket/default-ping.json");
    event["requestContext"]["connectionId"] = json!(connection);
    event["body"] = json!(body.to_string());
    event
}

async fn post_hold(stack: &Stack, user: &str, seats: &[&str]) -> RequestId {
    post_hold_for(stack, PREMIERE_GRAND_HALL, user, seats).await
}

async fn post_hold_for(stack: &Stack, show: ShowId, user: &str, seats: &[&str]) -> RequestId {
    let response = stack
        .http
        .post(stack.api_url("/api/v1/holds"))
        .bearer_auth(token(user, false))
        .json(&json!({ "showId": show, "seatIds": seats }))
        .send()
        .await
        .expect("POST through the function URL");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "QUEUED");
    body["requestId"].as_str().unwrap().parse().unwrap()
}

/// Runs each case against the one stack, naming it on stderr first: when a case fails or hangs,
/// the captured output says which one it was.
macro_rules! run_cases {
    ($stack:expr; $($case:ident),+ $(,)?) => {
        $(
            eprintln!("[case] {}", stringify!($case));
            $case($stack).await;
        )+
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_functions_work_end_to_end_under_the_lambda_runtime() {
    let stack = Stack::start().await;
    let mut startup: Vec<_> = stack.startup_ms.iter().collect();
    startup.sort_by_key(|(name, _)| **name);
    for (name, ms) in startup {
        eprintln!("[startup] {name}: {ms:.1} ms from process start to first handled invocation");
    }

    run_cases!(
        &stack;
        hold_flows_from_the_api_through_sqs_to_the_worker_and_the_websocket,
        a_purchase_through_the_api_function,
        declines_refunds_expiry_and_other_users_through_the_api_function,
        an_expired_hold_is_pushed_to_its_owner_through_the_gateway,
        redelivery_decides_once_and_resends_the_stored_result,
        gone_connections_are_forgotten,
        websocket_routes_subscribe_and_answer_pings,
        poison_messages_go_to_the_dead_letter_queue_and_the_batch_goes_on,
        a_batch_of_several_shows_is_decided_show_by_show_in_order,
        a_paused_show_keeps_its_messages_queued_in_order,
        direct_mode_decides_in_the_api_function_beside_the_queue,
        an_operator_runs_a_show_through_the_api_function,
        a_waiting_room_lets_people_in_through_the_api_function,
        every_sample_event_is_handled,
        rate_limits_hold_deployed,
        websocket_connections_are_authorized_by_the_identity_provider,
        sockets_are_closed_when_their_token_expires,
        // Last: it reads what the cases above made the functions count.
        metrics_reach_cloudwatch_as_embedded_metric_documents,
    );
}

/// The `$connect` REQUEST authorizer event for `token`.
fn authorizer_event(token: &str) -> Value {
    let mut event = load_event("authorizer/connect.json");
    event["queryStringParameters"]["token"] = json!(token);
    event["multiValueQueryStringParameters"]["token"] = json!([token]);
    event
}

/// `AUTH_MODE=authorizer` on the WebSocket API: the authorizer function accepts the identity
/// provider's RS256 and ES256 tokens for the configured audience, and nothing else (no token
/// signed with the shared key, none for another audience, none expired); the websocket
/// function registers whoever the authorizer's context names and no one it does not.
async fn websocket_connections_are_authorized_by_the_identity_provider(stack: &Stack) {
    let idp = &stack.idp;
    let audience = Stack::AUDIENCE;
    for kid in ["rsa-1", "ec-1"] {
        let token = idp.token(kid, "gina", audience, &["fans"], 600);
        let verdict = stack
            .invoke_authorized("authorizer", &authorizer_event(&token))
            .await;
        assert_eq!(verdict["principalId"], "gina", "{kid}: {verdict}");
        assert_eq!(verdict["policyDocument"]["Statement"][0]["Effect"], "Allow");
        assert_eq!(
            verdict["policyDocument"]["Statement"][0]["Resource"],
            load_event("authorizer/connect.json")["methodArn"]
        );
        assert_eq!(verdict["context"]["userId"], "gina");
        assert_eq!(verdict["context"]["admin"], false);
        let expires = verdict["context"]["tokenExpiresAt"].as_i64().unwrap();
        assert!((expires - now().timestamp() - 600).abs() <= 5, "{verdict}");
    }
    let admin = idp.token("rsa-1", "ops", audience, &["fans", "admin"], 600);
    let verdict = stack
        .invoke_authorized("authorizer", &authorizer_event(&admin))
        .await;
    assert_eq!(verdict["context"]["admin"], true, "{verdict}");

    let refused = [
        ("a token signed with the shared key", token("gina", true)),
        (
            "another audience",
            idp.token("rsa-1", "gina", "someone-else", &[], 600),
        ),
        (
            "an expired token",
            idp.token("ec-1", "gina", audience, &[], -60),
        ),
        (
            "a token living longer than accepted",
            idp.token("rsa-1", "gina", audience, &[], 30 * 86_400),
        ),
        ("no token", String::new()),
    ];
    for (what, token) in refused {
        let verdict = stack
            .invoke_authorized("authorizer", &authorizer_event(&token))
            .await;
        assert_eq!(verdict["errorMessage"], "Unauthorized", "{what}: {verdict}");
    }

    // The websocket function in this mode: the authorizer's context is the only way in.
    let registry = booking_aws::DynamoRegistry::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        stack.resources.table.clone(),
        3_600,
    );
    let allowed = stack
        .invoke_authorized("authorizer", &authorizer_event(&admin))
        .await;
    let mut connect = load_event("websocket/connect-authorized.json");
    let connection = format!("authorized-{}", uuid::Uuid::new_v4().simple());
    connect["requestContext"]["connectionId"] = json!(connection);
    connect["requestContext"]["authorizer"] = allowed["context"].clone();
    connect["requestContext"]["authorizer"]["principalId"] = allowed["principalId"].clone();
    let answer = stack.invoke_authorized("websocket", &connect).await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let ops = "ops".parse().unwrap();
    assert_eq!(registry.connections_of(&ops).await.unwrap(), [connection]);

    // A shared-key token in the query string, with no authorizer context, is nobody.
    let mut bare = connect_event("bare-connection", "mallory");
    bare["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    let answer = stack.invoke_authorized("websocket", &bare).await;
    assert_eq!(answer["statusCode"], 401, "{answer}");
    assert!(
        registry
            .connections_of(&"mallory".parse().unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

/// A socket opened with a token that then expires receives nothing more, and the expirer
/// tells it why (`TOKEN_EXPIRED`) and closes it through the management API.
async fn sockets_are_closed_when_their_token_expires(stack: &Stack) {
    let registry = booking_aws::DynamoRegistry::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        stack.resources.table.clone(),
        3_600,
    );
    // The gateway's own socket lives on a long token; the registry learns a short one.
    let (mut socket, connection) = ws_client(stack, "hana").await;
    let mut connect = load_event("websocket/connect-authorized.json");
    connect["requestContext"]["connectionId"] = json!(connection);
    connect["requestContext"]["authorizer"] = json!({
        "principalId": "hana",
        "userId": "hana",
        "admin": false,
        "tokenExpiresAt": now().timestamp() + 2,
    });
    let answer = stack.invoke_authorized("websocket", &connect).await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let hana = "hana".parse().unwrap();
    assert_eq!(
        registry.connections_of(&hana).await.unwrap(),
        [connection.as_str()]
    );

    let swept = stack
        .invoke("expirer", &load_event("expirer/schedule.json"))
        .await;
    assert_eq!(swept["socketsClosed"], 0, "not expired yet: {swept}");
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    assert!(
        registry.connections_of(&hana).await.unwrap().is_empty(),
        "past its token, a connection is nobody's to push to"
    );
    let swept = stack
        .invoke("expirer", &load_event("expirer/schedule.json"))
        .await;
    assert_eq!(swept["socketsClosed"], 1, "{swept}");
    let farewell = next_json(&mut socket).await;
    assert_eq!(farewell["type"], "ERROR", "{farewell}");
    assert_eq!(farewell["code"], "TOKEN_EXPIRED");
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the gateway closed the socket");
    let swept = stack
        .invoke("expirer", &load_event("expirer/schedule.json"))
        .await;
    assert_eq!(swept["socketsClosed"], 0, "closed once: {swept}");
}

/// The api function limits per user (buckets in the stack's Redis) and per address (the
/// gateway's `sourceIp`, not anything the client sends).
async fn rate_limits_hold_deployed(stack: &Stack) {
    let c = reqwest::Client::new();
    let cancel = stack.api_url(&format!("/api/v1/orders/{}/cancel", OrderId::new_random()));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let answer = c
            .post(&cancel)
            .bearer_auth(token("limited-payer", false))
            .send()
            .await
            .unwrap();
        statuses.push(answer.status().as_u16());
    }
    assert_eq!(statuses, [404, 404, 429], "payments: a burst of two");

    let from = |ip: &str| {
        let mut event = load_event("api/list-movies.json");
        event["requestContext"]["http"]["sourceIp"] = json!(ip);
        event
    };
    let crowded = from("198.51.100.7");
    let mut served = 0;
    let mut refused = None;
    for _ in 0..60 {
        let answer = stack.invoke("api", &crowded).await;
        match answer["statusCode"].as_u64() {
            Some(200) => served += 1,
            Some(429) => {
                refused = Some(answer);
                break;
            }
            other => panic!("unexpected {other:?}: {answer}"),
        }
    }
    let refused = refused.expect("the address was limited");
    // One token an hour: however slowly the invocations run, exactly the burst is served.
    assert_eq!(served, 50, "a burst of 50");
    assert!(
        refused["headers"]["retry-after"].is_string(),
        "Retry-After: {refused}"
    );
    let other = stack.invoke("api", &from("198.51.100.8")).await;
    assert_eq!(
        other["statusCode"], 200,
        "another address has its own bucket"
    );
}

/// The operator's side through the deployed functions: a movie and a show made over the admin
/// API, its queue listed, two requests set aside as dead letters (as the worker does after
/// `MAX_ATTEMPTS` failed deliveries) then one redriven through SQS and decided by the worker and
/// the other discarded, the show cancelled (its hold released, new requests refused), and the
/// expirer reporting nothing left to wind up.
async fn an_operator_runs_a_show_through_the_api_function(stack: &Stack) {
    let admin = token("ops", true);
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = stack
            .http
            .request(method, stack.api_url(&path))
            .bearer_auth(&admin);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.expect("through the function URL");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("JSON"))
        }
    };
    let post = reqwest::Method::POST;
    let (status, movie) = call(
        post.clone(),
        "/api/v1/admin/movies".into(),
        Some(json!({
            "title": "Operator's Cut", "durationMinutes": 95, "language": "en",
            "genres": ["Drama"], "rating": "PG"
        })),
    )
    .await;
    assert_eq!(status, 201, "{movie}");
    let (status, show) = call(
        post.clone(),
        "/api/v1/admin/shows".into(),
        Some(json!({
            "movieId": movie["movieId"],
            "startsAt": (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339(),
            "auditorium": "Screen 9",
            "layout": {
                "categories": [{ "code": "STD", "name": "Standard", "priceCents": 800, "currency": "EUR" }],
                "rows": [{ "row": "A", "seats": 6, "category": "STD" }],
                "blocked": ["A6"]
            }
        })),
    )
    .await;
    assert_eq!(status, 201, "{show}");
    let show_id: ShowId = show["showId"].as_str().unwrap().parse().unwrap();
    let (status, queues) = call(reqwest::Method::GET, "/api/v1/admin/queues".into(), None).await;
    assert_eq!(status, 200, "{queues}");
    assert!(
        queues["shows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["showId"] == show["showId"] && q["waiting"] == 0),
        "a new show is listed before its first request: {queues}"
    );

    let first = post_hold_for(stack, show_id, "quinn", &["A1"]).await;
    let second = post_hold_for(stack, show_id, "rosa", &["A2"]).await;
    let (_, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    assert_eq!(handles.len(), 2);
    for request in [first, second] {
        assert!(
            stack
                .store
                .dead_letter_request(request, "undecidable", 5, now())
                .await
                .unwrap()
        );
    }
    for handle in handles.values() {
        stack
            .sqs()
            .delete_message()
            .queue_url(&stack.resources.queue_url)
            .receipt_handle(handle)
            .send()
            .await
            .unwrap();
    }
    let (status, letters) = call(
        reqwest::Method::GET,
        format!("/api/v1/admin/dead-letters?showId={show_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{letters}");
    let listed: Vec<_> = letters["deadLetters"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {letters}"))
        .iter()
        .map(|d| (d["requestId"].clone(), d["attempts"].clone()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (json!(first.to_string()), json!(5)),
            (json!(second.to_string()), json!(5))
        ]
    );
    let (status, redriven) = call(
        post.clone(),
        format!("/api/v1/admin/dead-letters/{first}/redrive"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{redriven}");
    // Sent again although its first message is still inside SQS's deduplication window.
    let (batch, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    assert_eq!(handles.len(), 1, "{batch}");
    assert!(stack.deliver_to_worker(&batch, &handles).await.is_empty());
    let decided = stack.store.get_request(first).await.unwrap().unwrap();
    assert_eq!(decided.status, RequestStatus::Success);
    let (status, discarded) = call(
        post.clone(),
        format!("/api/v1/admin/dead-letters/{second}/discard"),
        Some(json!({ "reason": "duplicate order" })),
    )
    .await;
    assert_eq!(
        (status, discarded["status"].as_str()),
        (200, Some("FAILED")),
        "{discarded}"
    );

    let (status, cancelled) = call(
        post.clone(),
        format!("/api/v1/admin/shows/{show_id}/cancel"),
        Some(json!({ "reason": "Screen 9 flooded" })),
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["show"]["status"], "CANCELLED");
    assert_eq!(cancelled["woundUp"]["holdsReleased"], 1, "{cancelled}");
    let refused = stack
        .http
        .post(stack.api_url("/api/v1/holds"))
        .bearer_auth(token("quinn", false))
        .json(&json!({ "showId": show_id, "seatIds": ["A3"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "SHOW_CANCELLED", "{body}");
    // A cancellation cut short after its mark (as by a crash) is finished by the expirer.
    let (status, second_show) = call(
        post.clone(),
        "/api/v1/admin/shows".into(),
        Some(json!({
            "movieId": movie["movieId"],
            "startsAt": (chrono::Utc::now() + chrono::Duration::days(4)).to_rfc3339(),
            "auditorium": "Screen 10",
            "layout": {
                "categories": [{ "code": "STD", "name": "Standard", "priceCents": 800, "currency": "EUR" }],
                "rows": [{ "row": "A", "seats": 4, "category": "STD" }],
                "blocked": []
            }
        })),
    )
    .await;
    assert_eq!(status, 201, "{second_show}");
    let second: ShowId = second_show["showId"].as_str().unwrap().parse().unwrap();
    post_hold_for(stack, second, "quinn", &["A1"]).await;
    let (batch, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    assert!(stack.deliver_to_worker(&batch, &handles).await.is_empty());
    stack
        .store
        .cancel_show(second, "crash after the mark", now())
        .await
        .unwrap()
        .expect("the show exists");
    let swept = stack
        .invoke("expirer", &load_event("expirer/schedule.json"))
        .await;
    assert_eq!(swept["woundUp"]["holdsReleased"], 1, "{swept}");
}

/// `QUEUE_BASED_BOOKING=false`: the api function decides a hold at once (201 with the hold, 409
/// with alternatives for the seat taken), while the queue-mode api and the worker go on deciding
/// the same show from SQS: a request queued for the seat the direct one took fails there.
async fn direct_mode_decides_in_the_api_function_beside_the_queue(stack: &Stack) {
    let post = |user: &str, seats: &[&str]| {
        let request = stack
            .http
            .post(stack.direct_api_url("/api/v1/holds"))
            .bearer_auth(token(user, false))
            .json(&json!({ "showId": PREMIERE_STUDIO, "seatIds": seats }))
            .send();
        async move {
            let response = request.await.expect("POST to the direct-mode api function");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, hold) = post("direct-winner", &["F5", "F6"]).await;
    assert_eq!(status, 201, "{hold}");
    assert_eq!(hold["status"], "HELD", "{hold}");
    assert_eq!(hold["seatIds"], json!(["F5", "F6"]));

    let (status, body) = post("direct-loser", &["F6"]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "SEATS_UNAVAILABLE", "{body}");
    assert!(
        !body["error"]["details"]["alternatives"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The queue-mode api beside it: the same seat, queued and decided by the worker, fails.
    let queued = post_hold_for(stack, PREMIERE_STUDIO, "queued-late", &["F5"]).await;
    let (batch, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    let failed = stack.deliver_to_worker(&batch, &handles).await;
    assert!(failed.is_empty(), "{failed:?}");
    let decided = stack.store.get_request(queued).await.unwrap().unwrap();
    assert_eq!(decided.status, RequestStatus::Failed, "{decided:?}");
}

/// POST → FIFO message → worker (as Lambda hands it the batch) → SUCCESS in PostgreSQL → the
/// result pushed through the management API to the user's real WebSocket client.
async fn hold_flows_from_the_api_through_sqs_to_the_worker_and_the_websocket(stack: &Stack) {
    let (mut socket, connection) = ws_client(stack, "alice").await;
    let connected = stack
        .invoke("websocket", &connect_event(&connection, "alice"))
        .await;
    assert_eq!(connected["statusCode"], 200, "{connected}");

    let first = post_hold(stack, "alice", &["D1", "D2"]).await;
    let second = post_hold(stack, "bob", &["D2", "D3"]).await;

    let (batch, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    let records = batch["Records"].as_array().unwrap();
    assert_eq!(
        records.len(),
        2,
        "both requests are in the FIFO queue: {batch}"
    );
    assert_eq!(
        records[0]["attributes"]["MessageGroupId"],
        PREMIERE_GRAND_HALL.to_string()
    );
    let failed = stack.deliver_to_worker(&batch, &handles).await;
    assert!(failed.is_empty(), "nothing failed: {failed:?}");

    let first = stack.store.get_request(first).await.unwrap().unwrap();
    let second = stack.store.get_request(second).await.unwrap().unwrap();
    assert_eq!(first.status, RequestStatus::Success);
    assert_eq!(
        second.status,
        RequestStatus::Failed,
        "D2 went to the earlier request"
    );

    let pushed = next_json(&mut socket).await;
    assert_eq!(pushed["type"], "BOOKING_RESULT", "{pushed}");
    assert_eq!(pushed["requestId"], first.request_id.to_string());
    assert_eq!(pushed["status"], "SUCCESS");

    // The polling path agrees, through the api function.
    let polled: Value = stack
        .http
        .get(stack.api_url(&format!("/api/v1/booking-requests/{}", first.request_id)))
        .bearer_auth(token("alice", false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(polled["status"], "SUCCESS", "{polled}");
    // And another user cannot read it.
    let foreign = stack
        .http
        .get(stack.api_url(&format!("/api/v1/booking-requests/{}", first.request_id)))
        .bearer_auth(token("mallory", false))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 404);
}

/// The purchase through the api function: a hold (decided by the worker) becomes an order, is
/// paid and gets its ticket; ORDER_UPDATED reaches the owner's real socket through the management
/// API; the seat map, read through the api function, shows the seat BOOKED; a retry with the
/// same Idempotency-Key replays; nobody else sees the order.
async fn a_purchase_through_the_api_function(stack: &Stack) {
    let (mut socket, connection) = ws_client(stack, "dora").await;
    stack
        .invoke("websocket", &connect_event(&connection, "dora"))
        .await;
    let request = post_hold(stack, "dora", &["K10", "K11"]).await;
    let (batch, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    assert!(stack.deliver_to_worker(&batch, &handles).await.is_empty());
    assert_eq!(next_json(&mut socket).await["status"], "SUCCESS");
    let Some(RequestOutcome::Granted { hold_id, .. }) = stack
        .store
        .get_request(request)
        .await
        .unwrap()
        .unwrap()
        .outcome
    else {
        panic!("the hold was granted");
    };
    let call = |method: reqwest::Method, path: String, user: &'static str, body: Value| {
        let request = stack
            .http
            .request(method, stack.api_url(&path))
            .bearer_auth(token(user, false))
            .header("Idempotency-Key", format!("{path}-once"));
        async move {
            let response = request
                .json(&body)
                .send()
                .await
                .expect("through the function URL");
            let replayed = response.headers().contains_key("idempotency-replayed");
            let status = response.status().as_u16();
            (
                status,
                replayed,
                response.json::<Value>().await.expect("JSON"),
            )
        }
    };
    let post = reqwest::Method::POST;
    let (status, _, order) = call(
        post.clone(),
        "/api/v1/orders".into(),
        "dora",
        json!({ "holdId": hold_id }),
    )
    .await;
    assert_eq!(
        (status, order["status"].as_str()),
        (201, Some("PAYMENT_PENDING")),
        "{order}"
    );
    let order_id = order["orderId"].as_str().unwrap().to_owned();
    let confirm = format!("/api/v1/orders/{order_id}/confirm-payment");
    let card = json!({ "paymentToken": "tok_visa" });
    let (status, _, paid) = call(post.clone(), confirm.clone(), "dora", card.clone()).await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("CONFIRMED")),
        "{paid}"
    );
    let pushed = next_json(&mut socket).await;
    assert_eq!(pushed["type"], "ORDER_UPDATED", "{pushed}");
    assert_eq!(
        (pushed["orderId"].as_str(), pushed["status"].as_str()),
        (Some(order_id.as_str()), Some("CONFIRMED"))
    );
    assert_eq!(pushed["ticketCode"], paid["ticketCode"]);
    let (status, replayed, again) = call(post, confirm, "dora", card).await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(again["ticketCode"], paid["ticketCode"]);

    let map: Value = stack
        .http
        .get(stack.api_url(&format!("/api/v1/shows/{PREMIERE_GRAND_HALL}/seatmap")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status_of = |seat: &str| {
        map["rows"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["seats"].as_array().unwrap())
            .find(|s| s["seatId"] == seat)
            .map(|s| s["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(status_of("K10").as_deref(), Some("BOOKED"), "{map}");
    assert_eq!(status_of("K11").as_deref(), Some("BOOKED"));
    let (status, _, _) = call(
        reqwest::Method::GET,
        format!("/api/v1/orders/{order_id}"),
        "mallory",
        json!(null),
    )
    .await;
    assert_eq!(status, 404);
}

/// A show's waiting room deployed: the api function keeps it in PostgreSQL, polls move it on
/// (no ticker runs in Lambda), the admission it hands out is signed with the configured key,
/// and `POST /holds` for the show needs it.
async fn a_waiting_room_lets_people_in_through_the_api_function(stack: &Stack) {
    let show = booking_testkit::support::create_show(stack.store.as_ref(), 1, 4)
        .await
        .show_id;
    let room = format!("/api/v1/shows/{show}/waiting-room");
    let admin = token("room-admin", true);
    let response = stack
        .http
        .put(stack.api_url(&format!("/api/v1/admin/shows/{show}/waiting-room")))
        .bearer_auth(&admin)
        .json(&json!({ "admitPerSecond": 5, "maxActive": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let (status, joined) = api_call(stack, stack.api_url(&room), post.clone(), "uma", None).await;
    assert_eq!(status, 201, "{joined}");
    // Polls move the room on: it opens, draws its (one-person) pre-queue and lets Uma in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let place = loop {
        let (status, place) = api_call(stack, stack.api_url(&room), get.clone(), "uma", None).await;
        assert_eq!(status, 200, "{place}");
        if place["state"] == "ADMITTED" {
            break place;
        }
        assert!(std::time::Instant::now() < deadline, "still {place}");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    let hold = |user: &str, admission: Option<&str>| {
        let mut request = stack
            .http
            .post(stack.api_url("/api/v1/holds"))
            .bearer_auth(token(user, false))
            .json(&json!({ "showId": show, "seatIds": ["A1"] }));
        if let Some(admission) = admission {
            request = request.header("Admission-Token", admission);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, refused) = hold("victor", None).await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "ADMISSION_REQUIRED");
    let token_of_uma = place["admissionToken"].as_str().unwrap();
    // Signed with the configured key, which every instance shares, not one of its own.
    let uma: booking_core::UserId = "uma".parse().unwrap();
    booking_app::admission::AdmissionKey::new(ADMISSION_SECRET.as_bytes())
        .unwrap()
        .verify(token_of_uma, &uma, show, chrono::Utc::now())
        .expect("the configured key signed it");
    let (status, refused) = hold("victor", Some(token_of_uma)).await;
    assert_eq!(
        (status, &refused["error"]["details"]["reason"]),
        (403, &json!("OTHER_USER"))
    );
    let (status, accepted) = hold("uma", Some(token_of_uma)).await;
    assert_eq!(status, 202, "{accepted}");
    // Decide it, so that no later case finds it in the queue.
    let (batch, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    assert!(stack.deliver_to_worker(&batch, &handles).await.is_empty());
    let (status, after) = api_call(stack, stack.api_url(&room), get.clone(), "uma", None).await;
    assert_eq!(
        (status, &after["state"]),
        (200, &json!("SHOPPING")),
        "{after}"
    );

    // Wendy waits behind the one shopper the room allows. The expirer, while a room is on,
    // stays as its ticker: it pushes her position, and once Uma leaves, her admission.
    let (mut socket, connection) = ws_client(stack, "wendy").await;
    stack
        .invoke("websocket", &connect_event(&connection, "wendy"))
        .await;
    let (status, joined) = api_call(stack, stack.api_url(&room), post, "wendy", None).await;
    assert_eq!(
        (status, &joined["state"], &joined["position"]),
        (201, &json!("WAITING"), &json!(1)),
        "{joined}"
    );
    let report = stack
        .invoke("expirer", &load_event("expirer/schedule.json"))
        .await;
    assert!(report["roomTicks"].as_u64() > Some(1), "{report}");
    let pushed = next_json(&mut socket).await;
    assert_eq!(
        (&pushed["type"], &pushed["state"], &pushed["position"]),
        (
            &json!("WAITING_ROOM_POSITION"),
            &json!("WAITING"),
            &json!(1)
        ),
        "{pushed}"
    );
    let (status, _) = api_call(
        stack,
        stack.api_url(&room),
        reqwest::Method::DELETE,
        "uma",
        None,
    )
    .await;
    assert_eq!(status, 204);
    stack
        .invoke("expirer", &load_event("expirer/schedule.json"))
        .await;
    let admitted = loop {
        let pushed = next_json(&mut socket).await;
        if pushed["state"] != "WAITING" {
            break pushed;
        }
    };
    assert_eq!(admitted["state"], "ADMITTED", "{admitted}");
    let token_of_wendy = admitted["admissionToken"].as_str().expect("the token");
    let wendy: booking_core::UserId = "wendy".parse().unwrap();
    booking_app::admission::AdmissionKey::new(ADMISSION_SECRET.as_bytes())
        .unwrap()
        .verify(token_of_wendy, &wendy, show, chrono::Utc::now())
        .expect("signed with the shared key");

    // Switched off, the room needs no ticker: the expirer returns after its sweep.
    let response = stack
        .http
        .delete(stack.api_url(&format!("/api/v1/admin/shows/{show}/waiting-room")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let report = stack
        .invoke("expirer", &load_event("expirer/schedule.json"))
        .await;
    assert_eq!(report["roomTicks"], 0, "{report}");
}

/// A hold for `user` on `seats`, through the api function and the worker; returns its hold id.
async fn granted_hold(stack: &Stack, user: &str, seats: &[&str]) -> String {
    let request = post_hold(stack, user, seats).await;
    let (batch, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    assert!(stack.deliver_to_worker(&batch, &handles).await.is_empty());
    match stack
        .store
        .get_request(request)
        .await
        .unwrap()
        .unwrap()
        .outcome
    {
        Some(RequestOutcome::Granted { hold_id, .. }) => hold_id.to_string(),
        other => panic!("{user}'s hold on {seats:?} was not granted: {other:?}"),
    }
}

/// One call to an api function URL: status and JSON body.
async fn api_call(
    stack: &Stack,
    url: String,
    method: reqwest::Method,
    user: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = stack
        .http
        .request(method, url)
        .bearer_auth(token(user, false));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("through the function URL");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The purchase's other paths through the api function under the Lambda runtime: a declined
/// card (402, the order FAILED, its seat free for the next buyer), a cancelled paid order
/// (refunded, its seat free again), another user's order (404 to read, pay or cancel), an
/// unpaid order past its deadline (409 `ORDER_EXPIRED`, its seat free again), and bad input on
/// the order routes (a 4xx with its code, never a 5xx).
async fn declines_refunds_expiry_and_other_users_through_the_api_function(stack: &Stack) {
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let order_for = |user: &'static str, hold: String| {
        api_call(
            stack,
            stack.api_url("/api/v1/orders"),
            reqwest::Method::POST,
            user,
            Some(json!({ "holdId": hold })),
        )
    };

    // Declined: 402, the order FAILED, and the seat goes to the next buyer.
    let hold = granted_hold(stack, "erin", &["L20"]).await;
    let (status, order) = order_for("erin", hold).await;
    assert_eq!(status, 201, "{order}");
    let erins = order["orderId"].as_str().unwrap().to_owned();
    let confirm = |id: &str| stack.api_url(&format!("/api/v1/orders/{id}/confirm-payment"));
    let (status, declined) = api_call(
        stack,
        confirm(&erins),
        post.clone(),
        "erin",
        Some(json!({ "paymentToken": "tok_decline" })),
    )
    .await;
    assert_eq!(status, 402, "{declined}");
    assert_eq!(declined["error"]["code"], "PAYMENT_DECLINED");
    let (_, failed) = api_call(
        stack,
        stack.api_url(&format!("/api/v1/orders/{erins}")),
        get.clone(),
        "erin",
        None,
    )
    .await;
    assert_eq!(failed["status"], "FAILED", "{failed}");

    // Paid, then cancelled: refunded, and the seat is free again.
    let hold = granted_hold(stack, "fern", &["L20"]).await;
    let (status, order) = order_for("fern", hold).await;
    assert_eq!(status, 201, "{order}");
    let ferns = order["orderId"].as_str().unwrap().to_owned();
    let (status, paid) = api_call(
        stack,
        confirm(&ferns),
        post.clone(),
        "fern",
        Some(json!({ "paymentToken": "tok_visa" })),
    )
    .await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("CONFIRMED")),
        "{paid}"
    );

    // Another user's order does not exist for them, whatever they try.
    let order_url = stack.api_url(&format!("/api/v1/orders/{ferns}"));
    let cancel_url = stack.api_url(&format!("/api/v1/orders/{ferns}/cancel"));
    let (status, _) = api_call(stack, order_url.clone(), get.clone(), "mallet", None).await;
    assert_eq!(status, 404);
    let (status, body) = api_call(
        stack,
        confirm(&ferns),
        post.clone(),
        "mallet",
        Some(json!({ "paymentToken": "tok_visa" })),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ORDER_NOT_FOUND")),
        "{body}"
    );
    let (status, body) = api_call(stack, cancel_url.clone(), post.clone(), "mallet", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ORDER_NOT_FOUND")),
        "{body}"
    );

    let (status, cancelled) = api_call(stack, cancel_url, post.clone(), "fern", None).await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("CANCELLED")),
        "{cancelled}"
    );
    let (_, read) = api_call(stack, order_url, get.clone(), "fern", None).await;
    let refunds: Vec<&Value> = read["payments"]
        .as_array()
        .expect("the order's payments")
        .iter()
        .filter(|p| p["kind"] == "REFUND")
        .collect();
    assert_eq!(refunds.len(), 1, "{read}");
    assert_eq!(refunds[0]["status"], "SUCCEEDED", "{read}");
    granted_hold(stack, "gale", &["L20"]).await;

    // Unpaid past its deadline (this api function gives orders 1 s): refused, provider not
    // called, and the seat can be held by someone else.
    let hold = granted_hold(stack, "hale", &["L21"]).await;
    let (status, order) = api_call(
        stack,
        stack.short_api_url("/api/v1/orders"),
        post.clone(),
        "hale",
        Some(json!({ "holdId": hold })),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    let hales = order["orderId"].as_str().unwrap().to_owned();
    let deadline: chrono::DateTime<chrono::Utc> =
        order["expiresAt"].as_str().unwrap().parse().unwrap();
    while chrono::Utc::now() <= deadline + chrono::Duration::milliseconds(100) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, late) = api_call(
        stack,
        stack.short_api_url(&format!("/api/v1/orders/{hales}/confirm-payment")),
        post.clone(),
        "hale",
        Some(json!({ "paymentToken": "tok_visa" })),
    )
    .await;
    assert_eq!(
        (status, late["error"]["code"].as_str()),
        (409, Some("ORDER_EXPIRED")),
        "{late}"
    );
    granted_hold(stack, "ivy", &["L21"]).await;

    // Bad input on the order routes: a 4xx with its code, never a 5xx.
    for (method, path, body) in [
        (
            post.clone(),
            "/api/v1/orders".to_owned(),
            json!({ "holdId": "not-a-uuid" }),
        ),
        (post.clone(), "/api/v1/orders".to_owned(), json!({})),
        (post.clone(), "/api/v1/orders".to_owned(), json!([1, 2, 3])),
        (
            post.clone(),
            "/api/v1/orders".to_owned(),
            json!({ "holdId": "00000000-0000-0000-0000-000000000000" }),
        ),
        (
            get.clone(),
            "/api/v1/orders/not-a-uuid".to_owned(),
            Value::Null,
        ),
        (
            get.clone(),
            "/api/v1/me/orders?limit=-1".to_owned(),
            Value::Null,
        ),
        (
            get.clone(),
            "/api/v1/me/orders?cursor=%27%3B%20DROP%20TABLE%20orders".to_owned(),
            Value::Null,
        ),
        (
            post.clone(),
            format!("/api/v1/orders/{erins}/confirm-payment"),
            json!({ "paymentToken": 42 }),
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (status, answer) =
            api_call(stack, stack.api_url(&path), method.clone(), "hostile", body).await;
        assert!(
            (400..500).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        assert!(
            answer["error"]["code"].is_string(),
            "{method} {path}: {answer}"
        );
    }
}

/// A hold that runs out (decided by the worker whose holds last 1 s) is written down by the
/// expirer, which tells its owner over the API Gateway WebSocket: `HOLD_EXPIRED`.
async fn an_expired_hold_is_pushed_to_its_owner_through_the_gateway(stack: &Stack) {
    let (mut socket, connection) = ws_client(stack, "jade").await;
    stack
        .invoke("websocket", &connect_event(&connection, "jade"))
        .await;
    let request = post_hold(stack, "jade", &["L22"]).await;
    let (batch, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    assert!(
        stack
            .deliver_to_short_hold_worker(&batch, &handles)
            .await
            .is_empty()
    );
    let result = next_json(&mut socket).await;
    assert_eq!(result["status"], "SUCCESS", "{result}");
    let Some(RequestOutcome::Granted {
        hold_id,
        hold_expires_at,
    }) = stack
        .store
        .get_request(request)
        .await
        .unwrap()
        .unwrap()
        .outcome
    else {
        panic!("the hold was granted");
    };
    while chrono::Utc::now() <= hold_expires_at + chrono::Duration::milliseconds(100) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let report = stack
        .invoke("expirer", &load_event("expirer/schedule.json"))
        .await;
    assert!(
        report["holdsExpired"].as_u64().is_some_and(|n| n >= 1),
        "{report}"
    );
    let pushed = next_json(&mut socket).await;
    assert_eq!(pushed["type"], "HOLD_EXPIRED", "{pushed}");
    assert_eq!(pushed["holdId"], hold_id.to_string(), "{pushed}");
    assert_eq!(pushed["seatIds"], json!(["L22"]), "{pushed}");
}

/// The same batch delivered again (a visibility timeout ran out before the delete): nothing is
/// decided twice, and the owner hears the stored result again.
async fn redelivery_decides_once_and_resends_the_stored_result(stack: &Stack) {
    let (mut socket, connection) = ws_client(stack, "carol").await;
    stack
        .invoke("websocket", &connect_event(&connection, "carol"))
        .await;
    let request = post_hold(stack, "carol", &["E5"]).await;
    let (batch, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    let first = stack.invoke("worker", &batch).await;
    assert_eq!(first["batchItemFailures"], json!([]), "{first}");
    let decided = stack.store.get_request(request).await.unwrap().unwrap();
    assert_eq!(next_json(&mut socket).await["status"], "SUCCESS");

    let again = stack.deliver_to_worker(&batch, &handles).await;
    assert!(again.is_empty());
    assert_eq!(
        stack.store.get_request(request).await.unwrap().unwrap(),
        decided,
        "the redelivery changed nothing"
    );
    let resent = next_json(&mut socket).await;
    assert_eq!(resent["requestId"], request.to_string());
    assert_eq!(resent["status"], "SUCCESS");
}

/// A push to a connection the gateway no longer has (410 Gone) removes it from the registry.
async fn gone_connections_are_forgotten(stack: &Stack) {
    let registry = booking_aws::DynamoRegistry::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        stack.resources.table.clone(),
        3_600,
    );
    let (socket, connection) = ws_client(stack, "dave").await;
    stack
        .invoke("websocket", &connect_event(&connection, "dave"))
        .await;
    let dave = "dave".parse().unwrap();
    assert_eq!(
        registry.connections_of(&dave).await.unwrap(),
        vec![connection]
    );
    drop(socket);
    // Until the gateway notices the close, a push may still be accepted: wait for it.
    for _ in 0..100 {
        if stack.gateway.hub.connection_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    post_hold(stack, "dave", &["F1"]).await;
    let (batch, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    assert!(stack.deliver_to_worker(&batch, &handles).await.is_empty());
    assert!(
        registry.connections_of(&dave).await.unwrap().is_empty(),
        "the gone connection was forgotten"
    );
}

/// `$default` messages: subscribe (then seat changes arrive), ping, nonsense; `$disconnect`.
async fn websocket_routes_subscribe_and_answer_pings(stack: &Stack) {
    let (mut watcher, connection) = ws_client(stack, "erin").await;
    stack
        .invoke("websocket", &connect_event(&connection, "erin"))
        .await;

    let subscribe = json!({ "action": "subscribe", "showId": PREMIERE_GRAND_HALL });
    let answer = stack
        .invoke("websocket", &message_event(&connection, subscribe))
        .await;
    assert_eq!(answer["statusCode"], 200);
    let subscribed = next_json(&mut watcher).await;
    assert_eq!(subscribed["type"], "SUBSCRIBED", "{subscribed}");

    stack
        .invoke(
            "websocket",
            &message_event(&connection, json!({ "action": "ping" })),
        )
        .await;
    assert_eq!(next_json(&mut watcher).await["type"], "pong");
    stack
        .invoke(
            "websocket",
            &message_event(&connection, json!({ "action": "dance" })),
        )
        .await;
    assert_eq!(next_json(&mut watcher).await["code"], "INVALID_MESSAGE");

    // A hold by someone else: the subscriber sees the seats change.
    post_hold(stack, "frank", &["G4"]).await;
    let (batch, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    assert!(stack.deliver_to_worker(&batch, &handles).await.is_empty());
    let changed = next_json(&mut watcher).await;
    assert_eq!(changed["type"], "SEATS_CHANGED", "{changed}");
    assert_eq!(changed["seats"][0]["seatId"], "G4");

    let mut disconnect = load_event("websocket/disconnect.json");
    disconnect["requestContext"]["connectionId"] = json!(connection);
    assert_eq!(
        stack.invoke("websocket", &disconnect).await["statusCode"],
        200
    );
    let registry = booking_aws::DynamoRegistry::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        stack.resources.table.clone(),
        3_600,
    );
    assert!(
        !registry
            .subscribers(PREMIERE_GRAND_HALL)
            .await
            .unwrap()
            .contains(&connection)
    );

    // A bad token is refused at $connect.
    let mut bad = connect_event("not-a-connection", "erin");
    bad["queryStringParameters"]["token"] = json!("not.a.token");
    assert_eq!(stack.invoke("websocket", &bad).await["statusCode"], 401);

    // One user holds at most MAX_SOCKETS_PER_USER (default 5) connections; the next is refused.
    let mut statuses = Vec::new();
    for n in 0..6 {
        let answer = stack
            .invoke(
                "websocket",
                &connect_event(&format!("greedy-{n}"), "greedy"),
            )
            .await;
        statuses.push(answer["statusCode"].as_u64().unwrap());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
}

/// A message the worker cannot ever decide goes to the DLQ at once, with its reason, and the
/// messages after it are still decided.
async fn poison_messages_go_to_the_dead_letter_queue_and_the_batch_goes_on(stack: &Stack) {
    let good = post_hold(stack, "gina", &["H1"]).await;
    let (mut batch, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    let mut poison = batch["Records"][0].clone();
    poison["messageId"] = json!("poison-1");
    poison["body"] = json!("{\"not\":\"ours\"}");
    let mut unknown = batch["Records"][0].clone();
    unknown["messageId"] = json!("unknown-request-1");
    unknown["body"] = json!(
        json!({ "requestId": RequestId::new_random(), "showId": PREMIERE_GRAND_HALL }).to_string()
    );
    let records = batch["Records"].as_array_mut().unwrap();
    records.insert(0, poison);
    records.insert(1, unknown);

    let failed = stack.deliver_to_worker(&batch, &handles).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        stack.store.get_request(good).await.unwrap().unwrap().status,
        RequestStatus::Success,
        "the message after the poison ones was decided"
    );
    let received = stack
        .sqs()
        .receive_message()
        .queue_url(&stack.resources.dead_letter_queue_url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    let dead = received.messages();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].body(), Some("{\"not\":\"ours\"}"));
    for message in dead {
        let reason = message.message_attributes().unwrap()["failure"]
            .string_value()
            .unwrap();
        assert!(!reason.is_empty());
    }
}

/// One SQS batch carries several shows' messages, interleaved (FIFO orders each group, not the
/// batch): each show's run is decided in its own arrival order, all in one invocation.
async fn a_batch_of_several_shows_is_decided_show_by_show_in_order(stack: &Stack) {
    let sent = [
        (PREMIERE_GRAND_HALL, "multi-1", "M1"),
        (PREMIERE_STUDIO, "multi-2", "G3"),
        (PREMIERE_GRAND_HALL, "multi-3", "M1"),
        (PREMIERE_STUDIO, "multi-4", "G3"),
        (PREMIERE_GRAND_HALL, "multi-5", "M2"),
    ];
    let mut ids = Vec::new();
    for (show, user, seat) in sent {
        ids.push(post_hold_for(stack, show, user, &[seat]).await);
    }
    let (batch, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    let groups: std::collections::BTreeSet<String> = batch["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["attributes"]["MessageGroupId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        groups.len(),
        2,
        "one batch with both shows' messages: {groups:?}"
    );
    assert_eq!(batch["Records"].as_array().unwrap().len(), sent.len());
    let failed = stack.deliver_to_worker(&batch, &handles).await;
    assert!(failed.is_empty(), "{failed:?}");
    let mut statuses = Vec::new();
    for id in &ids {
        statuses.push(stack.store.get_request(*id).await.unwrap().unwrap().status);
    }
    use RequestStatus::{Failed, Success};
    assert_eq!(
        statuses,
        [Success, Success, Failed, Failed, Success],
        "the earlier request of each show wins its seat"
    );
}

/// While a show is paused its messages are reported failed (they stay queued, in order);
/// resumed, they are decided.
async fn a_paused_show_keeps_its_messages_queued_in_order(stack: &Stack) {
    let admin = token("ops", true);
    let pause = stack
        .http
        .post(stack.api_url(&format!("/api/v1/admin/shows/{PREMIERE_GRAND_HALL}/pause")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(pause.status(), 200);
    let first = post_hold(stack, "hank", &["J1"]).await;
    let second = post_hold(stack, "ivy", &["J2"]).await;
    let (batch, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    let failed = stack.deliver_to_worker(&batch, &handles).await;
    assert_eq!(failed.len(), 2, "both stay queued while paused");
    assert_eq!(
        stack
            .store
            .get_request(first)
            .await
            .unwrap()
            .unwrap()
            .status,
        RequestStatus::Queued
    );

    let resume = stack
        .http
        .post(stack.api_url(&format!("/api/v1/admin/shows/{PREMIERE_GRAND_HALL}/resume")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resume.status(), 200);
    // moto returns failed messages after the visibility timeout; make them visible now.
    for handle in handles.values() {
        stack
            .sqs()
            .change_message_visibility()
            .queue_url(&stack.resources.queue_url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
    let (batch, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    let ids: Vec<&str> = batch["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"].as_str().unwrap())
        .collect();
    assert!(ids[0].contains(&first.to_string()), "order kept: {ids:?}");
    assert!(stack.deliver_to_worker(&batch, &handles).await.is_empty());
    for request in [first, second] {
        assert_eq!(
            stack
                .store
                .get_request(request)
                .await
                .unwrap()
                .unwrap()
                .status,
            RequestStatus::Success
        );
    }
}

/// Every file of `events/` is accepted by its function and handled: the HTTP API events answer
/// with the status their route gives, the others as their function's contract says.
async fn every_sample_event_is_handled(stack: &Stack) {
    let expected_http = [
        ("health", 200),
        ("list-movies", 200),
        ("get-movie", 200),
        ("list-shows", 200),
        ("seat-map", 200),
        ("create-hold", 202),
        // The samples name a request and a hold that this database does not have.
        ("get-booking-request", 404),
        ("get-hold", 404),
        ("release-hold", 404),
        ("admin-queue-stats", 200),
        ("admin-pause-show", 200),
        ("admin-resume-show", 200),
    ];
    let dir = booking_testkit::aws::workspace_root().join("events/api");
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, expected_http.len(), "one expectation per api event");
    for (name, status) in expected_http {
        let answer = stack
            .invoke("api", &load_event(&format!("api/{name}.json")))
            .await;
        assert_eq!(answer["statusCode"], status, "api/{name}.json: {answer}");
    }

    // The sample batch names requests this database does not have: every message is poison,
    // dead-lettered, none left failed (three of the grand hall, one of the studio).
    let answer = stack
        .invoke("worker", &load_event("worker/sqs-fifo-batch.json"))
        .await;
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    let records = load_event("worker/sqs-fifo-batch.json")["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["attributes"]["MessageGroupId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect::<Vec<_>>();
    assert!(
        records.contains(&PREMIERE_STUDIO.to_string()),
        "a multi-show batch"
    );

    for (name, status) in [
        ("connect", 200),
        ("default-subscribe", 200),
        ("default-ping", 200),
        ("disconnect", 200),
    ] {
        let answer = stack
            .invoke("websocket", &load_event(&format!("websocket/{name}.json")))
            .await;
        assert_eq!(
            answer["statusCode"], status,
            "websocket/{name}.json: {answer}"
        );
    }

    // The expirer sweeps what is overdue: a hold and a request left from ten minutes ago.
    let show = stack
        .store
        .get_show(booking_app::demo::MATINEE_LATE)
        .await
        .unwrap()
        .unwrap();
    let long_ago = now() - chrono::Duration::minutes(10);
    let held = request(
        stack.store.as_ref(),
        &show,
        &fresh_user("gone"),
        &["H1"],
        long_ago,
    )
    .await;
    let hold = grant(stack.store.as_ref(), &show, &held, long_ago).await;
    let waited = request(
        stack.store.as_ref(),
        &show,
        &fresh_user("late"),
        &["H2"],
        long_ago,
    )
    .await;
    let answer = stack
        .invoke("expirer", &load_event("expirer/schedule.json"))
        .await;
    assert_eq!(
        (&answer["holdsExpired"], &answer["requestsExpired"]),
        (&json!(1), &json!(1)),
        "{answer}"
    );
    assert_eq!(
        stack.store.get_hold(hold).await.unwrap().unwrap().status,
        booking_core::HoldStatus::Expired
    );
    assert_eq!(
        stack
            .store
            .get_request(waited.request_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        RequestStatus::Expired
    );
    let again = stack
        .invoke("expirer", &load_event("expirer/schedule.json"))
        .await;
    assert_eq!(
        (&again["holdsExpired"], &again["requestsExpired"]),
        (&json!(0), &json!(0)),
        "each is expired once"
    );
}

/// The embedded-metric documents a function printed: JSON lines with an `_aws` member, each
/// checked against the format (every metric and dimension it declares has its value).
fn metric_documents(stack: &Stack, function: &str) -> Vec<Value> {
    let lines = stack.outputs[function].lock().unwrap().clone();
    let documents: Vec<Value> = lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|doc| doc.get("_aws").is_some())
        .collect();
    for doc in &documents {
        assert!(
            doc["_aws"]["Timestamp"].as_u64().unwrap() > 1_600_000_000_000,
            "{doc}"
        );
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "seatbook", "{doc}");
        for dimension in directive["Dimensions"][0].as_array().unwrap() {
            assert!(
                doc[dimension.as_str().unwrap()].is_string(),
                "{dimension} in {doc}"
            );
        }
        assert_eq!(doc["function"], function, "{doc}");
        for metric in directive["Metrics"].as_array().unwrap() {
            let value = &doc[metric["Name"].as_str().unwrap()];
            assert!(value.is_number() || value.is_array(), "{metric} in {doc}");
        }
        assert!(doc["requestId"].is_string(), "{doc}");
    }
    documents
}

/// The sum of `metric` over the documents whose dimensions include `labels`.
fn total(documents: &[Value], metric: &str, labels: &[(&str, &str)]) -> f64 {
    documents
        .iter()
        .filter(|doc| labels.iter().all(|(k, v)| doc[*k] == *v))
        .filter_map(|doc| doc[metric].as_f64())
        .sum()
}

async fn metrics_reach_cloudwatch_as_embedded_metric_documents(stack: &Stack) {
    // A hold through the api function and its decision by the worker, counted where they ran.
    let api_before = total(
        &metric_documents(stack, "api"),
        "seatbook_http_requests_total",
        &[("route", "/api/v1/holds"), ("status", "202")],
    );
    let worker_before = total(
        &metric_documents(stack, "worker"),
        "seatbook_requests_decided_total",
        &[("outcome", "success")],
    );
    let request = post_hold(stack, "metrics-watcher", &["M7"]).await;
    let (batch, handles) = stack.receive_batch(&stack.resources.queue_url).await;
    let failed = stack.deliver_to_worker(&batch, &handles).await;
    assert!(failed.is_empty(), "nothing failed: {failed:?}");
    let decided = stack.store.get_request(request).await.unwrap().unwrap();
    assert_eq!(decided.status, RequestStatus::Success, "{decided:?}");

    let api = metric_documents(stack, "api");
    let held = total(
        &api,
        "seatbook_http_requests_total",
        &[
            ("method", "POST"),
            ("route", "/api/v1/holds"),
            ("status", "202"),
        ],
    );
    assert_eq!(
        held,
        api_before + 1.0,
        "one more 202 for POST /api/v1/holds"
    );
    let timed = api
        .iter()
        .filter(|doc| doc["route"] == "/api/v1/holds")
        .find_map(|doc| {
            doc["seatbook_http_request_duration_seconds"]
                .as_array()
                .cloned()
        })
        .expect("a duration document for /api/v1/holds");
    assert!(timed.iter().all(|s| s.as_f64().unwrap() > 0.0), "{timed:?}");
    let unit = api
        .iter()
        .flat_map(|doc| {
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .clone()
        })
        .find(|m| m["Name"] == "seatbook_http_request_duration_seconds")
        .unwrap();
    assert_eq!(unit["Unit"], "Seconds", "{unit}");

    let worker = metric_documents(stack, "worker");
    let granted = total(
        &worker,
        "seatbook_requests_decided_total",
        &[("outcome", "success")],
    );
    assert!(granted > worker_before, "{worker_before} -> {granted}");
    assert!(
        worker
            .iter()
            .any(|doc| doc["seatbook_decision_batch_size"].is_array()),
        "no batch size in {worker:?}"
    );
    // Each function's first invocation was its cold start, counted once.
    for function in ["api", "worker"] {
        let documents = metric_documents(stack, function);
        assert_eq!(
            total(&documents, "seatbook_cold_starts_total", &[]),
            1.0,
            "{function}"
        );
    }
}
