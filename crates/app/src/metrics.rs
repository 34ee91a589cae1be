//! What the system counts for the people who run it: every metric's name, labels and meaning in
//! one place, and the few functions the rest of the app calls to record them.
//!
//! Recording goes through the `metrics` facade, which does nothing until a process installs a
//! recorder: the local server installs a Prometheus one and serves it at `/metrics`
//! (`booking-local`), so the same calls in the Lambda functions cost next to nothing there.
//! Labels are bounded on purpose: routes are [`route_of`](crate::http::route_of) (the router's
//! patterns, `unmatched` for a path no route serves), so that hostile paths cannot make a series
//! each.

use crate::processor::BatchReport;
use crate::sweeper::SweepReport;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, histogram};
use std::time::{Duration, Instant};

/// HTTP requests answered, by `method`, `route` and `status`.
pub const HTTP_REQUESTS: &str = "seatbook_http_requests_total";
/// Time from a request's arrival to its answer, by `method` and `route`.
pub const HTTP_DURATION: &str = "seatbook_http_request_duration_seconds";
/// Booking requests that reached an outcome, by `outcome`: `success`, `failed` (decided by a
/// decider, a show's cancellation included) or `expired` (by the sweep, never decided in time).
pub const REQUESTS_DECIDED: &str = "seatbook_requests_decided_total";
/// Requests decided together in one batch (one store commit).
pub const BATCH_SIZE: &str = "seatbook_decision_batch_size";
/// Time a batch takes: read the show, decide, commit, push the outcomes.
pub const BATCH_DURATION: &str = "seatbook_decision_batch_duration_seconds";
/// Requests refused with 429 `RATE_LIMITED`, by `limit`: `holds`, `orders`, `payments`, `ip`,
/// `joins`, `joins-ip`.
pub const RATE_LIMITED: &str = "seatbook_rate_limited_total";
/// Holds the sweep ended because their time ran out.
pub const HOLDS_EXPIRED: &str = "seatbook_holds_expired_total";
/// Unpaid orders the sweep ended because their time ran out.
pub const ORDERS_EXPIRED: &str = "seatbook_orders_expired_total";
/// Accepted requests waiting to be decided, by `show_id` (read from the store at each scrape).
pub const QUEUE_WAITING: &str = "seatbook_queue_waiting";
/// Requests taken by a decider and not decided yet, by `show_id`.
pub const QUEUE_IN_FLIGHT: &str = "seatbook_queue_in_flight";
/// Requests set aside as dead letters, waiting for an operator, by `show_id`.
pub const QUEUE_DEAD_LETTERS: &str = "seatbook_queue_dead_letters";
/// How long the oldest waiting request of a show has waited, by `show_id`.
pub const QUEUE_OLDEST_AGE: &str = "seatbook_queue_oldest_waiting_age_seconds";
/// Waiting-room places that moved on, by `event`: `admitted` (let in), `abandoned` (not seen
/// within the grace period) or `expired` (an admission unused, or a shopping session, ran out);
/// and `switched_on`: an armed room that demand switched on.
pub const WAITING_ROOM_EVENTS: &str = "seatbook_waiting_room_events_total";
/// Places of a show's waiting room, by `show_id` and `state` (read from the store at each
/// scrape): WAITING, ADMITTED, SHOPPING, DONE (bought or left), ABANDONED, EXPIRED.
pub const WAITING_ROOM_PLACES: &str = "seatbook_waiting_room_places";
/// The admissions per second a show's waiting room measured over its last full window while
/// people waited (what its wait estimates use), by `show_id`; 0 before a first measure.
pub const WAITING_ROOM_PACE: &str = "seatbook_waiting_room_admissions_per_second";
/// Open WebSocket connections.
pub const WEBSOCKET_CONNECTIONS: &str = "seatbook_websocket_connections";

/// Bucket bounds of the duration histograms, in seconds: 100 µs to 10 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Bucket bounds of the batch size histogram (a lane takes at most a few hundred at once).
pub const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0];

/// Registers every metric's help text and unit with the installed recorder.
pub fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time from a request's arrival to its answer"
    );
    describe_counter!(
        REQUESTS_DECIDED,
        "Booking requests that reached an outcome, by outcome (success, failed, expired)"
    );
    describe_histogram!(BATCH_SIZE, "Requests decided together in one batch");
    describe_histogram!(
        BATCH_DURATION,
        Unit::Seconds,
        "Time a decision batch takes: read, decide, commit, push"
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused with 429 RATE_LIMITED, by limit"
    );
    describe_counter!(
        HOLDS_EXPIRED,
        "Holds ended by the sweep when their time ran out"
    );
    describe_counter!(
        ORDERS_EXPIRED,
        "Unpaid orders ended by the sweep when their time ran out"
    );
    describe_gauge!(
        QUEUE_WAITING,
        "Accepted requests waiting to be decided, by show"
    );
    describe_gauge!(
        QUEUE_IN_FLIGHT,
        "Requests taken by a decider, not decided yet, by show"
    );
    describe_gauge!(
        QUEUE_DEAD_LETTERS,
        "Requests set aside as dead letters, by show"
    );
    describe_gauge!(
        QUEUE_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest waiting request, by show"
    );
    describe_gauge!(WEBSOCKET_CONNECTIONS, "Open WebSocket connections");
    describe_counter!(
        WAITING_ROOM_EVENTS,
        "Waiting-room places admitted, abandoned or expired, and rooms switched on, by event"
    );
    describe_gauge!(
        WAITING_ROOM_PLACES,
        "Places of a show's waiting room, by show and state"
    );
    describe_gauge!(
        WAITING_ROOM_PACE,
        "Admissions per second a waiting room measured while people waited, by show"
    );
}

/// Middleware: counts and times every HTTP request by its route pattern and status.
pub async fn record_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = crate::http::route_of(&request).to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    histogram!(HTTP_DURATION, "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed());
    counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status).increment(1);
    response
}

/// A batch that decided something: its size, how long it took, and its outcomes.
pub fn batch_decided(report: &BatchReport, elapsed: Duration) {
    if report.decided == 0 {
        return;
    }
    histogram!(BATCH_SIZE).record(report.decided as f64);
    histogram!(BATCH_DURATION).record(elapsed);
    counter!(REQUESTS_DECIDED, "outcome" => "success").increment(report.granted as u64);
    counter!(REQUESTS_DECIDED, "outcome" => "failed")
        .increment((report.decided - report.granted) as u64);
}

/// What one sweep ended because time ran out.
pub fn swept(report: &SweepReport) {
    counter!(HOLDS_EXPIRED).increment(report.holds_expired as u64);
    counter!(ORDERS_EXPIRED).increment(report.orders_expired as u64);
    counter!(REQUESTS_DECIDED, "outcome" => "expired").increment(report.requests_expired as u64);
}

/// What one tick of a waiting room changed.
pub fn waiting_room_tick(tick: &booking_core::waiting_room::Tick) {
    for (event, count) in [
        ("admitted", tick.admitted.len()),
        ("abandoned", tick.abandoned.len()),
        ("expired", tick.expired.len()),
    ] {
        if count > 0 {
            counter!(WAITING_ROOM_EVENTS, "event" => event).increment(count as u64);
        }
    }
}

/// Demand switched an armed waiting room on.
pub fn waiting_room_switched_on() {
    counter!(WAITING_ROOM_EVENTS, "event" => "switched_on").increment(1);
}

/// A request refused by the rate limit `limit`.
pub fn rate_limited(limit: &'static str) {
    counter!(RATE_LIMITED, "limit" => limit).increment(1);
}
