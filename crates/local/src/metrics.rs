//! `GET /metrics`: the local server's metrics in the Prometheus text format, for a Prometheus (or
//! anything that reads its format) to scrape.
//!
//! Counters and histograms are recorded where things happen (`booking_app::metrics` names them
//! all); the queue gauges are read from the store at each scrape, the same numbers as
//! `GET /api/v1/admin/queues`, so they are right after a restart and agree across processes
//! sharing one database. Like `/health`, the route needs no token: it tells the number of
//! waiting requests and open sockets, no user's data. Keep it off the public internet as you
//! would any scrape target.

use crate::WsHub;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use booking_app::error::ApiError;
use booking_app::metrics as names;
use booking_app::service::BookingService;
use booking_app::waiting_rooms::WaitingRooms;
use booking_core::ShowId;
use booking_core::waiting_room::RoomCounts;
use metrics::gauge;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

/// The process's Prometheus recorder, installed on first use (a process has one recorder).
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), names::DURATION_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(names::BATCH_SIZE.into()),
                    names::BATCH_SIZE_BUCKETS,
                )
            })
            .expect("bucket lists are not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed in this process");
        names::describe();
        handle
    })
}

struct Scrape {
    handle: &'static PrometheusHandle,
    service: Arc<BookingService>,
    rooms: Arc<WaitingRooms>,
    hub: Arc<WsHub>,
    /// Shows given queue gauges at the last scrape: one that is no longer listed has nothing
    /// waiting any more, and its gauges are set to 0 rather than left at their last value.
    shows: Mutex<HashSet<ShowId>>,
    /// Shows given waiting-room gauges at the last scrape, likewise (a room switched off).
    rooms_seen: Mutex<HashSet<ShowId>>,
}

/// `GET /metrics`, reading the queues from `service` and the sockets from `hub`.
pub fn routes(service: Arc<BookingService>, rooms: Arc<WaitingRooms>, hub: Arc<WsHub>) -> Router {
    let scrape = Arc::new(Scrape {
        handle: recorder(),
        service,
        rooms,
        hub,
        shows: Mutex::new(HashSet::new()),
        rooms_seen: Mutex::new(HashSet::new()),
    });
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(scrape)
}

async fn metrics(State(scrape): State<Arc<Scrape>>) -> Response {
    let stats = match scrape.service.queue_stats().await {
        Ok(stats) => stats,
        Err(e) => return ApiError::from(e).into_response(),
    };
    {
        let mut previous = scrape.shows.lock().unwrap_or_else(|p| p.into_inner());
        let current: HashSet<ShowId> = stats.iter().map(|s| s.show_id).collect();
        for gone in previous.difference(&current) {
            set_queue_gauges(*gone, 0, 0, 0, 0);
        }
        for s in &stats {
            set_queue_gauges(
                s.show_id,
                s.waiting,
                s.in_flight,
                s.dead_letters,
                s.oldest_waiting_age_seconds.unwrap_or(0).max(0) as u64,
            );
        }
        *previous = current;
    }
    gauge!(names::WEBSOCKET_CONNECTIONS).set(scrape.hub.connection_count() as f64);
    match scrape.rooms.summaries().await {
        Ok(rooms) => {
            let mut previous = scrape.rooms_seen.lock().unwrap_or_else(|p| p.into_inner());
            let current: HashSet<ShowId> = rooms.iter().map(|(show, _)| *show).collect();
            for gone in previous.difference(&current) {
                set_room_gauges(*gone, RoomCounts::default(), 0.0);
            }
            for (show, room) in rooms {
                let pace = room.pace.measured_milli.unwrap_or(0) as f64 / 1_000.0;
                set_room_gauges(show, room.counts, pace);
            }
            *previous = current;
        }
        // The other metrics are still worth a scrape; the rooms' gauges keep their last values.
        Err(e) => {
            tracing::warn!(error = %booking_core::Chain(&e), "could not read the waiting rooms for /metrics")
        }
    }
    scrape.handle.run_upkeep();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        scrape.handle.render(),
    )
        .into_response()
}

fn set_room_gauges(show: ShowId, c: RoomCounts, pace_per_second: f64) {
    gauge!(names::WAITING_ROOM_PACE, "show_id" => show.to_string()).set(pace_per_second);
    for (state, count) in [
        ("WAITING", c.waiting),
        ("ADMITTED", c.admitted),
        ("SHOPPING", c.shopping),
        ("DONE", c.done),
        ("ABANDONED", c.abandoned),
        ("EXPIRED", c.expired),
    ] {
        gauge!(names::WAITING_ROOM_PLACES, "show_id" => show.to_string(), "state" => state)
            .set(count as f64);
    }
}

fn set_queue_gauges(show: ShowId, waiting: u64, in_flight: u64, dead: u64, oldest_age: u64) {
    let show = show.to_string();
    gauge!(names::QUEUE_WAITING, "show_id" => show.clone()).set(waiting as f64);
    gauge!(names::QUEUE_IN_FLIGHT, "show_id" => show.clone()).set(in_flight as f64);
    gauge!(names::QUEUE_DEAD_LETTERS, "show_id" => show.clone()).set(dead as f64);
    gauge!(names::QUEUE_OLDEST_AGE, "show_id" => show).set(oldest_age as f64);
}
