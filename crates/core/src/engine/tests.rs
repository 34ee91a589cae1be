//! Unit tests of the engine through its public methods.
//!
//! They pin down single rules with hand-picked cases (including regressions); the property tests
//! in `tests/engine_properties/` check the engine against a reference model at large.

use super::*;
use crate::layout::{LayoutSpec, SeatLayout};
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn seats(list: &[&str]) -> Vec<SeatId> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn user(name: &str) -> UserId {
    name.parse().unwrap()
}

fn req(u: &str, s: &[&str]) -> PendingRequest {
    PendingRequest {
        request_id: RequestId::new_random(),
        user_id: user(u),
        seat_ids: seats(s),
        expires_at: t0() + Duration::minutes(2),
    }
}

fn engine(rows: u16, per_row: u16) -> DecisionEngine {
    DecisionEngine::new(
        Arc::new(SeatLayout::rectangular(rows, per_row, 1000)),
        ShowSnapshot::default(),
        Duration::minutes(5),
    )
}

#[test]
fn earlier_request_wins_and_loser_gets_alternatives() {
    let mut e = engine(3, 10);
    let out = e.decide_batch(
        vec![req("alice", &["B5", "B6"]), req("bob", &["B6", "B7"])],
        t0(),
    );
    assert!(
        matches!(&out.decisions[0], Decision::Granted { seat_ids, .. } if *seat_ids == seats(&["B5", "B6"]))
    );
    match &out.decisions[1] {
        Decision::Rejected {
            unavailable,
            alternatives,
            ..
        } => {
            assert_eq!(unavailable, &seats(&["B6"]));
            // Same row, adjacent, nearest to B6-B7: B7-B8.
            assert_eq!(alternatives, &seats(&["B7", "B8"]));
        }
        other => panic!("expected rejection, got {other:?}"),
    }
    assert_eq!(out.seat_changes.len(), 2);
    assert!(
        out.seat_changes
            .iter()
            .all(|c| c.status == SeatStatus::Held)
    );
}

#[test]
fn multi_seat_request_is_all_or_nothing() {
    let mut e = engine(1, 5);
    e.decide(req("a", &["A3"]), t0());
    let d = e.decide(req("b", &["A2", "A3", "A4"]), t0());
    assert!(matches!(d, Decision::Rejected { .. }));
    assert_eq!(
        e.seat_status(seats(&["A2"])[0], t0()),
        Some(SeatStatus::Available)
    );
    assert_eq!(
        e.seat_status(seats(&["A4"])[0], t0()),
        Some(SeatStatus::Available)
    );
}

#[test]
fn new_hold_releases_the_users_previous_hold() {
    let mut e = engine(1, 6);
    let first = e.decide(req("a", &["A1", "A2"]), t0());
    let Decision::Granted { hold_id: h1, .. } = first else {
        panic!()
    };
    let out = e.decide_batch(vec![req("a", &["A2", "A3"])], t0());
    let Decision::Granted { released, .. } = &out.decisions[0] else {
        panic!("{:?}", out.decisions)
    };
    assert_eq!(*released, Some(h1));
    assert_eq!(
        e.seat_status(seats(&["A1"])[0], t0()),
        Some(SeatStatus::Available)
    );
    // A1 freed, A3 taken; A2 stays held (coalesced: not reported as changed... it is dirty
    // but its final status is HELD).
    let a1 = out
        .seat_changes
        .iter()
        .find(|c| c.seat_id == seats(&["A1"])[0])
        .unwrap();
    assert_eq!(a1.status, SeatStatus::Available);
}

#[test]
fn expired_holds_free_their_seats_by_time() {
    let mut e = engine(1, 2);
    e.decide(req("a", &["A1"]), t0());
    let mut r = req("b", &["A1"]);
    r.expires_at = t0() + Duration::hours(1);
    assert!(matches!(
        e.decide(r.clone(), t0() + Duration::minutes(4)),
        Decision::Rejected { .. }
    ));
    r.request_id = RequestId::new_random();
    assert!(matches!(
        e.decide(r, t0() + Duration::minutes(5)),
        Decision::Granted { .. }
    ));
}

#[test]
fn requests_past_their_deadline_expire() {
    let mut e = engine(1, 2);
    let d = e.decide(req("a", &["A1"]), t0() + Duration::minutes(3));
    assert!(matches!(d, Decision::Expired { .. }));
    assert_eq!(e.available_count(t0()), 2);
}

#[test]
fn invalid_requests_are_refused_without_changing_state() {
    let mut spec = LayoutSpec::from(SeatLayout::rectangular(1, 3, 100));
    spec.blocked = seats(&["A3"]);
    let mut e = DecisionEngine::new(
        Arc::new(SeatLayout::new(spec).unwrap()),
        ShowSnapshot::default(),
        Duration::minutes(5),
    );
    for bad in [&["A3"][..], &["A9"], &["A1", "A1"], &[]] {
        assert!(
            matches!(e.decide(req("a", bad), t0()), Decision::Invalid { .. }),
            "{bad:?}"
        );
    }
    assert_eq!(e.available_count(t0()), 2);
}

#[test]
fn alternatives_fall_back_to_scattered_seats_and_to_none() {
    let mut e = engine(2, 3);
    // Take A2 and B2: no row has 2 adjacent... A1 A3 B1 B3 free, none adjacent.
    e.decide(req("x", &["A2"]), t0());
    e.decide(req("y", &["B2"]), t0());
    let Decision::Rejected { alternatives, .. } = e.decide(req("z", &["A2", "A3"]), t0()) else {
        panic!()
    };
    assert_eq!(alternatives.len(), 2);
    assert!(
        alternatives
            .iter()
            .all(|s| e.seat_status(*s, t0()) == Some(SeatStatus::Available))
    );
    let Decision::Rejected { alternatives, .. } =
        e.decide(req("w", &["A1", "A2", "A3", "B1", "B3"]), t0())
    else {
        panic!()
    };
    assert_eq!(alternatives.len(), 0, "only 4 seats free, 5 wanted");
}

#[test]
fn snapshot_state_is_respected() {
    let layout = Arc::new(SeatLayout::rectangular(1, 4, 100));
    let snapshot = ShowSnapshot {
        holds: vec![SnapshotHold {
            hold_id: HoldId::new_random(),
            user_id: user("a"),
            seat_ids: seats(&["A1"]),
            expires_at: t0() + Duration::minutes(1),
        }],
        booked: seats(&["A2"]),
    };
    let mut e = DecisionEngine::new(layout, snapshot, Duration::minutes(5));
    assert!(matches!(
        e.decide(req("b", &["A1"]), t0()),
        Decision::Rejected { .. }
    ));
    assert!(matches!(
        e.decide(req("b", &["A2"]), t0()),
        Decision::Rejected { .. }
    ));
    assert_eq!(
        e.seat_status(seats(&["A2"])[0], t0()),
        Some(SeatStatus::Booked)
    );
    assert!(e.live_hold_of(&user("a"), t0()).is_some());
    assert!(
        e.live_hold_of(&user("a"), t0() + Duration::minutes(1))
            .is_none()
    );
}

#[test]
fn alternatives_never_offer_blocked_seats() {
    // Regression: "no own hold" used to be encoded as u32::MAX, the BLOCKED marker, so for a
    // user without a hold blocked seats counted as free when looking for alternatives.
    let mut spec = LayoutSpec::from(SeatLayout::rectangular(1, 3, 100));
    spec.blocked = seats(&["A2"]);
    let mut e = DecisionEngine::new(
        Arc::new(SeatLayout::new(spec).unwrap()),
        ShowSnapshot {
            holds: vec![],
            booked: seats(&["A3"]),
        },
        Duration::minutes(5),
    );
    let Decision::Rejected { alternatives, .. } = e.decide(req("a", &["A3"]), t0()) else {
        panic!()
    };
    assert_eq!(alternatives, seats(&["A1"]), "A2 is nearer but blocked");
}

#[test]
fn a_seat_listed_twice_in_a_snapshot_hold_is_counted_once() {
    // Regression: the seat was taken twice, so the free count stayed one too low for good.
    let snapshot = ShowSnapshot {
        holds: vec![SnapshotHold {
            hold_id: HoldId::new_random(),
            user_id: user("a"),
            seat_ids: seats(&["A1", "A1"]),
            expires_at: t0() + Duration::minutes(1),
        }],
        booked: vec![],
    };
    let layout = Arc::new(SeatLayout::rectangular(1, 2, 100));
    let mut e = DecisionEngine::new(layout, snapshot, Duration::minutes(5));
    assert_eq!(e.available_count(t0()), 1);
    assert_eq!(e.available_count(t0() + Duration::minutes(1)), 2);
}

#[test]
fn a_seat_in_two_snapshot_holds_stays_taken_until_the_last_one_ends() {
    // Regression: the first claimant kept the seat and freed it when it expired, although
    // the second claim was still live.
    let hold = |u: &str, minutes: i64| SnapshotHold {
        hold_id: HoldId::new_random(),
        user_id: user(u),
        seat_ids: seats(&["A1", if u == "a" { "A2" } else { "A3" }]),
        expires_at: t0() + Duration::minutes(minutes),
    };
    let layout = Arc::new(SeatLayout::rectangular(1, 4, 100));
    let snapshot = ShowSnapshot {
        holds: vec![hold("a", 1), hold("b", 3)],
        booked: vec![],
    };
    let mut e = DecisionEngine::new(layout, snapshot, Duration::minutes(5));
    let at = t0() + Duration::minutes(2);
    assert!(matches!(
        e.decide(req_at("c", &["A1"], at), at),
        Decision::Rejected { .. }
    ));
    // Neither claimant can take it over either, nor free it by moving on.
    assert!(matches!(
        e.decide(req_at("b", &["A1"], at), at),
        Decision::Rejected { .. }
    ));
    assert!(matches!(
        e.decide(req_at("b", &["A4"], at), at),
        Decision::Granted { .. }
    ));
    assert_eq!(e.seat_status(seats(&["A1"])[0], at), Some(SeatStatus::Held));
    let later = t0() + Duration::minutes(3);
    assert!(matches!(
        e.decide(req_at("c", &["A1"], later), later),
        Decision::Granted { .. }
    ));
}

fn req_at(u: &str, s: &[&str], now: DateTime<Utc>) -> PendingRequest {
    PendingRequest {
        expires_at: now + Duration::minutes(2),
        ..req(u, s)
    }
}

/// Re-asking for one's own held seats does not restart their clock: a seat is held at most one
/// hold TTL without a break. Seats new to the basket share the basket's end, and so does a
/// request that swaps every seat (and back again); only a basket started after the last one
/// ended gets a new clock.
#[test]
fn re_asking_for_held_seats_does_not_extend_them() {
    let mut e = engine(1, 6);
    // Requests whose deadline is after `at`.
    let req = |u: &str, s: &[&str], at: DateTime<Utc>| PendingRequest {
        expires_at: at + Duration::minutes(1),
        ..req(u, s)
    };
    let first = e.decide(req("a", &["A1"], t0()), t0());
    let Decision::Granted {
        expires_at: first_end,
        ..
    } = first
    else {
        panic!("{first:?}")
    };
    for minutes in [1, 2, 4] {
        let again = {
            let at = t0() + Duration::minutes(minutes);
            e.decide(req("a", &["A1", "A2"], at), at)
        };
        let Decision::Granted { expires_at, .. } = again else {
            panic!("{again:?}")
        };
        assert_eq!(expires_at, first_end, "renewed at +{minutes} min");
    }
    // Swapping out to another seat and back does not restart it either.
    for (minutes, seats) in [(4, ["A6"]), (4, ["A1"])] {
        let at = t0() + Duration::minutes(minutes);
        let swapped = e.decide(req("a", &seats, at), at);
        let Decision::Granted { expires_at, .. } = swapped else {
            panic!("{swapped:?}")
        };
        assert_eq!(expires_at, first_end, "swapped to {seats:?}");
    }
    // At the basket's end the seats are free for anyone (here: someone else takes A1).
    let other = e.decide(req("b", &["A1"], first_end), first_end);
    assert!(matches!(other, Decision::Granted { .. }), "{other:?}");
    // Seats of a fresh basket get a fresh clock.
    let fresh = e.decide(req("a", &["A5"], first_end), first_end);
    let Decision::Granted { expires_at, .. } = fresh else {
        panic!("{fresh:?}")
    };
    assert_eq!(expires_at, first_end + Duration::minutes(5));
}
