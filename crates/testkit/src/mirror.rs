//! The contract of the seat-lock mirror and the queue counters, run against every adapter
//! (Redis, process memory). Each case uses fresh show ids, so cases can share one server.

use booking_core::ports::{QueueCounters, SeatLock, SeatMirror};
use booking_core::{HoldId, RequestId, SeatId, SeatStatus, ShowId, UserId};
use chrono::{DateTime, Duration, Utc};

/// Everything a mirror adapter implements.
pub trait MirrorAdapter: SeatMirror + QueueCounters {}
impl<T: SeatMirror + QueueCounters> MirrorAdapter for T {}

fn seats(labels: &[&str]) -> Vec<SeatId> {
    labels.iter().map(|s| s.parse().expect("seat")).collect()
}

fn layout() -> Vec<SeatId> {
    (1..=8)
        .map(|n| format!("A{n}").parse().expect("seat"))
        .collect()
}

fn lock(seat: &str, hold: HoldId, user: &str, expires_at: DateTime<Utc>) -> SeatLock {
    SeatLock {
        seat_id: seat.parse().expect("seat"),
        hold_id: hold,
        user_id: user.parse::<UserId>().expect("user"),
        expires_at,
        status: SeatStatus::Held,
    }
}

fn held(labels: &[&str]) -> Vec<(SeatId, SeatStatus)> {
    seats(labels)
        .into_iter()
        .map(|s| (s, SeatStatus::Held))
        .collect()
}

/// Rebuilds with the current generation (no concurrent apply) and checks it was written.
async fn rebuild<M: MirrorAdapter>(m: &M, show: ShowId, locks: &[SeatLock]) {
    let generation = m.generation(show).await.unwrap();
    assert!(
        m.rebuild(show, &layout(), locks, generation).await.unwrap(),
        "an uncontended rebuild is written"
    );
}

async fn taken<M: MirrorAdapter>(m: &M, show: ShowId) -> Option<Vec<(SeatId, SeatStatus)>> {
    let mut t = m
        .taken_seats(show, &layout(), Utc::now())
        .await
        .expect("mirror answers")?;
    t.sort_by_key(|(seat, _)| *seat);
    Some(t)
}

/// A mirror that was never built is not trusted; after a rebuild it is.
pub async fn cold_until_rebuilt<M: MirrorAdapter>(m: &M) {
    let show = ShowId::new_random();
    assert_eq!(
        taken(m, show).await,
        None,
        "never built: readers must fall back to the store"
    );
    let h = HoldId::new_random();
    let later = Utc::now() + Duration::minutes(5);
    rebuild(m, show, &[lock("A2", h, "u", later)]).await;
    assert_eq!(taken(m, show).await, Some(held(&["A2"])));
}

/// Applied locks appear; a freed seat disappears only if it still names the freed hold.
pub async fn apply_sets_and_frees<M: MirrorAdapter>(m: &M) {
    let show = ShowId::new_random();
    rebuild(m, show, &[]).await;
    let (h1, h2) = (HoldId::new_random(), HoldId::new_random());
    let later = Utc::now() + Duration::minutes(5);
    m.apply(
        show,
        &[lock("A1", h1, "u1", later), lock("A2", h1, "u1", later)],
        &[],
    )
    .await
    .unwrap();
    assert_eq!(taken(m, show).await, Some(held(&["A1", "A2"])));
    // A2 moves to another hold; freeing h1 must not free it.
    m.apply(show, &[lock("A2", h2, "u2", later)], &[])
        .await
        .unwrap();
    m.apply(
        show,
        &[],
        &[(seats(&["A1"])[0], h1), (seats(&["A2"])[0], h1)],
    )
    .await
    .unwrap();
    assert_eq!(taken(m, show).await, Some(held(&["A2"])));
    // Frees are applied before sets: a free and a lock naming the same seat and hold in one call
    // leave the seat locked (applied the other way round, the free would remove the new lock).
    let h3 = HoldId::new_random();
    m.apply(
        show,
        &[lock("A3", h3, "u3", later)],
        &[(seats(&["A3"])[0], h3)],
    )
    .await
    .unwrap();
    assert_eq!(taken(m, show).await, Some(held(&["A2", "A3"])));
}

/// A lock past its expiry is not taken, whatever the mirror's own clock says.
pub async fn expired_locks_are_not_taken<M: MirrorAdapter>(m: &M) {
    let show = ShowId::new_random();
    rebuild(m, show, &[]).await;
    let soon = Utc::now() + Duration::seconds(2);
    m.apply(show, &[lock("A3", HoldId::new_random(), "u", soon)], &[])
        .await
        .unwrap();
    assert_eq!(taken(m, show).await, Some(held(&["A3"])));
    let later = m
        .taken_seats(show, &layout(), soon + Duration::milliseconds(1))
        .await
        .unwrap()
        .unwrap();
    assert!(later.is_empty(), "{later:?}");
    let past = Utc::now() - Duration::seconds(1);
    m.apply(show, &[lock("A4", HoldId::new_random(), "u", past)], &[])
        .await
        .unwrap();
    assert_eq!(taken(m, show).await, Some(held(&["A3"])));
}

/// A rebuild replaces everything the mirror had for the show.
pub async fn rebuild_replaces<M: MirrorAdapter>(m: &M) {
    let show = ShowId::new_random();
    let later = Utc::now() + Duration::minutes(5);
    rebuild(m, show, &[]).await;
    m.apply(show, &[lock("A5", HoldId::new_random(), "u", later)], &[])
        .await
        .unwrap();
    let booked = SeatLock {
        status: SeatStatus::Booked,
        ..lock("A7", HoldId::new_random(), "v", later)
    };
    rebuild(
        m,
        show,
        &[lock("A1", HoldId::new_random(), "u", later), booked],
    )
    .await;
    assert_eq!(
        taken(m, show).await,
        Some(vec![
            (seats(&["A1"])[0], SeatStatus::Held),
            (seats(&["A7"])[0], SeatStatus::Booked)
        ])
    );
}

/// After an invalidation readers fall back to the store until the next rebuild.
pub async fn invalidate_makes_it_cold<M: MirrorAdapter>(m: &M) {
    let show = ShowId::new_random();
    rebuild(m, show, &[]).await;
    m.invalidate(show).await.unwrap();
    assert_eq!(taken(m, show).await, None);
}

/// Shows do not see each other's locks.
pub async fn shows_are_independent<M: MirrorAdapter>(m: &M) {
    let (a, b) = (ShowId::new_random(), ShowId::new_random());
    let later = Utc::now() + Duration::minutes(5);
    rebuild(m, a, &[]).await;
    rebuild(m, b, &[]).await;
    m.apply(a, &[lock("A6", HoldId::new_random(), "u", later)], &[])
        .await
        .unwrap();
    assert_eq!(taken(m, a).await, Some(held(&["A6"])));
    assert_eq!(taken(m, b).await, Some(vec![]));
}

/// A rebuild from state read before an apply must not overwrite that apply.
pub async fn stale_rebuild_is_refused<M: MirrorAdapter>(m: &M) {
    let show = ShowId::new_random();
    let later = Utc::now() + Duration::minutes(5);
    let generation = m.generation(show).await.unwrap();
    // A worker commits and mirrors a hold after the reader loaded its (older) state...
    m.apply(show, &[lock("A8", HoldId::new_random(), "w", later)], &[])
        .await
        .unwrap();
    // ...so the reader's rebuild, which lacks it, is dropped and the mirror stays untrusted.
    assert!(!m.rebuild(show, &layout(), &[], generation).await.unwrap());
    assert_eq!(taken(m, show).await, None);
    rebuild(m, show, &[lock("A8", HoldId::new_random(), "w", later)]).await;
    assert_eq!(taken(m, show).await, Some(held(&["A8"])));
}

/// Tickets count up per show, one per request however often it asks; decided counts add up.
pub async fn queue_counters_count_per_show<M: MirrorAdapter>(m: &M) {
    let (a, b) = (ShowId::new_random(), ShowId::new_random());
    let keep = Utc::now() + Duration::minutes(5);
    let (first, second, third) = (
        RequestId::new_random(),
        RequestId::new_random(),
        RequestId::new_random(),
    );
    assert_eq!(m.ticket_of(a, first).await.unwrap(), None);
    assert_eq!(m.take_ticket(a, first, keep).await.unwrap(), 1);
    assert_eq!(m.take_ticket(a, second, keep).await.unwrap(), 2);
    // A retried enqueue keeps its ticket and counts nothing new.
    assert_eq!(m.take_ticket(a, first, keep).await.unwrap(), 1);
    assert_eq!(m.ticket_of(a, first).await.unwrap(), Some(1));
    assert_eq!(m.ticket_of(a, second).await.unwrap(), Some(2));
    assert_eq!(m.take_ticket(b, third, keep).await.unwrap(), 1);
    assert_eq!(m.decided(a).await.unwrap(), 0);
    m.add_decided(a, 2).await.unwrap();
    m.add_decided(a, 3).await.unwrap();
    assert_eq!(m.decided(a).await.unwrap(), 5);
    assert_eq!(m.decided(b).await.unwrap(), 0);
}

/// Runs every case above, one after another.
pub async fn run_all<M: MirrorAdapter>(m: &M) {
    cold_until_rebuilt(m).await;
    apply_sets_and_frees(m).await;
    expired_locks_are_not_taken(m).await;
    rebuild_replaces(m).await;
    invalidate_makes_it_cold(m).await;
    shows_are_independent(m).await;
    stale_rebuild_is_refused(m).await;
    queue_counters_count_per_show(m).await;
}
