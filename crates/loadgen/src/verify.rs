//! The checks after a run, as pure functions of what the run recorded and what the server says
//! afterwards. A load test that only counts is not enough for a booking system: the numbers are
//! worth nothing if a seat went to two people, a request was decided twice or lost, or a
//! latecomer beat an earlier request to a seat.
//!
//! - **Exactly one terminal state.** Every accepted request got exactly one BOOKING_RESULT, and
//!   polling `GET /api/v1/booking-requests/{id}` says the same status.
//! - **No seat held twice.** Every hold any result named is read back; no seat is in two live
//!   holds, no user has two live holds on the show, every live hold's seats read HELD on the seat
//!   map, and (when the tool started the server, so nobody else is booking) no seat reads HELD
//!   without a live hold of the run behind it.
//! - **Fairness.** Requests are decided in arrival order, and a request fails only if one of its
//!   seats is held at its turn by someone else, which takes a granted request decided (so
//!   arrived) before it. The client cannot see the server's arrival order, but it knows part of
//!   it for certain: a request whose 202 came back before another was sent arrived first. So a
//!   FAILED request whose seats were all free at the start is a proven **violation** when every
//!   request that was ever granted one of its seats was sent only after its own 202 came back:
//!   nothing that could have taken the seat arrived before it. The count must be 0. The report
//!   also says how many failures were **explained** (a seat of theirs was granted to a request
//!   proven earlier) and how many could be neither proven nor explained from the client's view.
//!   A POST that got no answer, or a 5xx (a database that lost the answer to a commit), may
//!   still have been accepted, and may have won a seat without the run knowing: a failure is therefore never called a violation when such a POST, sent
//!   before its 202 came back, asked for one of its seats.
//!
//! With `--deliver-twice` the server pushes a duplicate delivery's stored outcome again (its
//! owner may have missed the first push); repeated results are then allowed, but must agree.
//! Results that disagree are a defect in every run.
//!
//! Results that arrive after the drain, while the checks poll, still count (as pushed after the
//! drain): a request that polling finds decided has had its push sent, and it is waited for.
//! After restarts (`--kill`), a result pushed in the instant before a crash can be lost with the
//! socket it was pushed on; a request with no push even then but a terminal state on polling is
//! counted as lost to a restart, not as a failure. Undecided or wrongly decided ones still fail.

use crate::stats::{LateResults, Outcome, Record};
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

/// What polling said of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    pub status: String,
    pub hold_id: Option<Uuid>,
}

/// A hold as `GET /api/v1/holds/{id}` reads it after the run.
#[derive(Debug, Clone)]
pub struct HoldState {
    pub hold_id: Uuid,
    pub user: u32,
    pub status: String,
    /// Indices into the run's seat list.
    pub seats: Vec<u32>,
}

/// Everything the checks look at.
#[derive(Debug, Default)]
pub struct Evidence<'a> {
    pub records: &'a [Record],
    /// Per record (same index): `None` when not polled (sampling), else the answer or the error.
    pub polled: Vec<Option<Result<Polled, String>>>,
    /// Every hold a result named, read back.
    pub holds: Vec<HoldState>,
    /// Holds that could not be read back: (hold id, error).
    pub hold_errors: Vec<(Uuid, String)>,
    /// Per seat index: AVAILABLE on the seat map before the load.
    pub available_at_start: Vec<bool>,
    /// Per seat index: HELD on the seat map after the run.
    pub held_at_end: Vec<bool>,
    /// The tool started the server: nothing but this run booked on it.
    pub sole_client: bool,
    /// POSTs whose answer never came (or was a 5xx) but which may have been accepted: (seats,
    /// sent).
    pub unanswered: &'a [(Box<[u32]>, u64)],
    /// BOOKING_RESULTs that arrived after the drain, while the checks ran: (outcome, hold).
    pub late: LateResults,
    /// The server was restarted during the run.
    pub restarts: bool,
    /// The server delivered every batch twice (`--deliver-twice`): a request's result may be
    /// pushed again, and then must say the same.
    pub redelivered: bool,
}

/// The checks' findings. `passed()` is the verdict.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub accepted: u64,
    /// Accepted requests with no BOOKING_RESULT (and, after restarts, no decision either).
    pub results_missing: u64,
    /// After restarts: decided requests whose push was lost with the server (none came, not
    /// even after polling found them decided).
    pub results_lost_to_restarts: u64,
    /// Accepted requests whose (first) BOOKING_RESULT came only after the drain, during the
    /// checks: not a defect, but the drain was too short to see them.
    pub results_after_the_drain: u64,
    /// POSTs that got no answer (or a 5xx) but may have been accepted.
    pub unanswered_posts: u64,
    /// Accepted requests with more than one BOOKING_RESULT, all saying the same: a defect,
    /// unless batches were delivered twice on purpose.
    pub results_duplicated: u64,
    /// Accepted requests with BOOKING_RESULTs that disagree (outcome or hold): always a defect.
    pub results_conflicting: u64,
    pub polled: u64,
    pub poll_errors: u64,
    /// Polls still QUEUED or PROCESSING after the drain.
    pub poll_not_terminal: u64,
    /// Polls whose status differs from the pushed one.
    pub poll_disagrees: u64,
    pub holds_read: u64,
    pub hold_read_errors: u64,
    pub live_holds: u64,
    /// Seats in more than one live hold.
    pub seats_held_twice: u64,
    /// Users with more than one live hold on the show.
    pub users_with_two_live_holds: u64,
    /// Seats of live holds that the seat map does not show HELD.
    pub live_seats_not_held_on_map: u64,
    /// Seats the map shows HELD with no live hold of the run (free at the start).
    pub held_on_map_without_hold: u64,
    /// Whether `held_on_map_without_hold` counts against the run (only with a server of our own).
    pub sole_client: bool,
    pub fairness: Fairness,
    /// One line per kind of failure, for the report.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fairness {
    /// FAILED requests whose seats were all AVAILABLE at the start.
    pub failed_checked: u64,
    /// ... of which a seat went to a request proven to have arrived earlier.
    pub explained: u64,
    /// ... of which the client's view can neither prove nor explain the order.
    pub order_unknown: u64,
    /// ... of which every request granted one of their seats arrived later: must be 0.
    pub violations: u64,
}

impl Verification {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

pub(crate) fn terminal(status: &str) -> bool {
    matches!(status, "SUCCESS" | "FAILED" | "EXPIRED")
}

/// Runs every check.
pub fn check(e: &Evidence<'_>) -> Verification {
    let mut v = Verification {
        accepted: e.records.len() as u64,
        unanswered_posts: e.unanswered.len() as u64,
        sole_client: e.sole_client,
        ..Verification::default()
    };
    exactly_once(e, &mut v);
    holds(e, &mut v);
    v.fairness = fairness(e);
    let f = &v.fairness;
    let mut problems = Vec::new();
    let mut flag = |n: u64, what: &str| {
        if n > 0 {
            problems.push(format!("{n} {what}"));
        }
    };
    flag(v.results_missing, "accepted requests got no BOOKING_RESULT");
    if !e.redelivered {
        flag(
            v.results_duplicated,
            "accepted requests got more than one BOOKING_RESULT",
        );
    }
    flag(
        v.results_conflicting,
        "accepted requests got BOOKING_RESULTs that disagree",
    );
    flag(v.poll_errors, "polls failed");
    flag(
        v.poll_not_terminal,
        "requests were still undecided after the drain",
    );
    flag(v.poll_disagrees, "polls disagree with the pushed result");
    flag(v.hold_read_errors, "holds could not be read back");
    flag(v.seats_held_twice, "seats are in two live holds");
    flag(
        v.users_with_two_live_holds,
        "users have two live holds on the show",
    );
    flag(
        v.live_seats_not_held_on_map,
        "seats of live holds do not read HELD on the seat map",
    );
    if e.sole_client {
        flag(
            v.held_on_map_without_hold,
            "seats read HELD without a live hold behind them",
        );
    }
    flag(
        f.violations,
        "FAILED requests lost their seats to later requests (fairness)",
    );
    v.problems = problems;
    v
}

pub(crate) fn exactly_once(e: &Evidence<'_>, v: &mut Verification) {
    for (i, r) in e.records.iter().enumerate() {
        let polled = e.polled.get(i).and_then(Option::as_ref);
        let late = e.late.get(&r.id).map(Vec::as_slice).unwrap_or_default();
        let first = r
            .pushed
            .map(|p| (p.outcome, p.hold_id))
            .or_else(|| late.first().copied());
        if r.pushes == 0 && !late.is_empty() {
            v.results_after_the_drain += 1;
        }
        match r.pushes as usize + late.len() {
            0 if e.restarts && matches!(polled, Some(Ok(p)) if terminal(&p.status)) => {
                v.results_lost_to_restarts += 1
            }
            0 => v.results_missing += 1,
            1 => {}
            _ => v.results_duplicated += 1,
        }
        if r.pushes_disagreeing > 0 || late.iter().any(|&l| Some(l) != first) {
            v.results_conflicting += 1;
        }
        let Some(polled) = polled else {
            continue;
        };
        v.polled += 1;
        match polled {
            Err(_) => v.poll_errors += 1,
            Ok(p) if !terminal(&p.status) => v.poll_not_terminal += 1,
            Ok(p) => {
                if let Some((outcome, hold_id)) = first
                    && (outcome.name() != p.status || hold_id != p.hold_id)
                {
                    v.poll_disagrees += 1;
                }
            }
        }
    }
}

fn holds(e: &Evidence<'_>, v: &mut Verification) {
    v.holds_read = e.holds.len() as u64;
    v.hold_read_errors = e.hold_errors.len() as u64;
    let seats = e.available_at_start.len().max(e.held_at_end.len());
    let mut holders = vec![0u32; seats];
    let mut live_per_user: HashMap<u32, u32> = HashMap::new();
    for h in e.holds.iter().filter(|h| h.status == "HELD") {
        v.live_holds += 1;
        *live_per_user.entry(h.user).or_default() += 1;
        for &s in &h.seats {
            if let Some(n) = holders.get_mut(s as usize) {
                *n += 1;
            }
            if !e.held_at_end.get(s as usize).copied().unwrap_or(false) {
                v.live_seats_not_held_on_map += 1;
            }
        }
    }
    v.seats_held_twice = holders.iter().filter(|&&n| n > 1).count() as u64;
    v.users_with_two_live_holds = live_per_user.values().filter(|&&n| n > 1).count() as u64;
    // A seat an unanswered POST asked for may be held by the request the run never heard of.
    let mut maybe_unknown_holder = vec![false; seats];
    for (asked, _) in e.unanswered {
        for &s in asked.iter() {
            if let Some(m) = maybe_unknown_holder.get_mut(s as usize) {
                *m = true;
            }
        }
    }
    v.held_on_map_without_hold = (0..seats)
        .filter(|&s| {
            e.held_at_end.get(s).copied().unwrap_or(false)
                && e.available_at_start.get(s).copied().unwrap_or(false)
                && holders[s] == 0
                && !maybe_unknown_holder[s]
        })
        .count() as u64;
}

/// The final status of a record: pushed, else polled.
fn status_of(e: &Evidence<'_>, i: usize) -> Option<Outcome> {
    if let Some(p) = &e.records[i].pushed {
        return Some(p.outcome);
    }
    if let Some(&(outcome, _)) = e.late.get(&e.records[i].id).and_then(|l| l.first()) {
        return Some(outcome);
    }
    match e.polled.get(i).and_then(Option::as_ref) {
        Some(Ok(p)) => Some(Outcome::parse(&p.status)),
        _ => None,
    }
}

pub(crate) fn fairness(e: &Evidence<'_>) -> Fairness {
    let seats = e.available_at_start.len();
    // Per seat: the earliest send and the earliest 202 among the requests granted it.
    let mut first_winner_sent = vec![u64::MAX; seats];
    let mut first_winner_answered = vec![u64::MAX; seats];
    let status: Vec<Option<Outcome>> = (0..e.records.len()).map(|i| status_of(e, i)).collect();
    for (r, s) in e.records.iter().zip(&status) {
        if *s == Some(Outcome::Success) {
            for &seat in r.seats.iter() {
                let k = seat as usize;
                if k < seats {
                    first_winner_sent[k] = first_winner_sent[k].min(r.sent_ns);
                    first_winner_answered[k] = first_winner_answered[k].min(r.answered_ns);
                }
            }
        }
    }
    // Per seat: the earliest send among the unanswered POSTs that asked for it.
    let mut first_unanswered_sent = vec![u64::MAX; seats];
    for (asked, sent) in e.unanswered {
        for &seat in asked.iter() {
            if let Some(t) = first_unanswered_sent.get_mut(seat as usize) {
                *t = (*t).min(*sent);
            }
        }
    }
    let mut f = Fairness::default();
    for (r, s) in e.records.iter().zip(&status) {
        let all_free_at_start = r.seats.iter().all(|&seat| {
            e.available_at_start
                .get(seat as usize)
                .copied()
                .unwrap_or(false)
        });
        if *s != Some(Outcome::Failed) || !all_free_at_start {
            continue;
        }
        f.failed_checked += 1;
        let seat_ix = || r.seats.iter().map(|&seat| seat as usize);
        if seat_ix().any(|k| first_winner_answered[k] < r.sent_ns) {
            f.explained += 1;
        } else if seat_ix().all(|k| {
            first_winner_sent[k] > r.answered_ns && first_unanswered_sent[k] > r.answered_ns
        }) {
            f.violations += 1;
        } else {
            f.order_unknown += 1;
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Pushed;

    fn record(user: u32, seats: &[u32], sent: u64, answered: u64, outcome: Outcome) -> Record {
        Record {
            id: Uuid::new_v4(),
            user,
            seats: seats.into(),
            sent_ns: sent,
            answered_ns: answered,
            pushed: Some(Pushed {
                outcome,
                hold_id: (outcome == Outcome::Success).then(Uuid::new_v4),
                received_ns: answered + 1,
            }),
            pushes: 1,
            pushes_disagreeing: 0,
        }
    }

    fn evidence(records: &[Record]) -> Evidence<'_> {
        Evidence {
            records,
            available_at_start: vec![true; 4],
            held_at_end: vec![false; 4],
            sole_client: true,
            ..Evidence::default()
        }
    }

    fn live(r: &Record) -> HoldState {
        HoldState {
            hold_id: r.pushed.unwrap().hold_id.unwrap(),
            user: r.user,
            status: "HELD".into(),
            seats: r.seats.to_vec(),
        }
    }

    #[test]
    fn an_earlier_request_that_failed_while_its_seat_was_free_is_a_violation() {
        // 0 is answered at 10 before 1 is sent at 20, asks for seat 0 and fails; 1 gets it.
        let rs = [
            record(0, &[0], 0, 10, Outcome::Failed),
            record(1, &[0], 20, 30, Outcome::Success),
        ];
        let mut e = evidence(&rs);
        e.holds = vec![live(&rs[1])];
        e.held_at_end[0] = true;
        let v = check(&e);
        assert_eq!(v.fairness.violations, 1);
        assert!(!v.passed(), "{v:?}");
        // The same failure after the winner's 202 came back is explained, and passes.
        let rs = [
            record(1, &[0], 0, 10, Outcome::Success),
            record(0, &[0], 20, 30, Outcome::Failed),
        ];
        let mut e = evidence(&rs);
        e.holds = vec![live(&rs[0])];
        e.held_at_end[0] = true;
        let v = check(&e);
        assert_eq!((v.fairness.explained, v.fairness.violations), (1, 0));
        assert!(v.passed(), "{:?}", v.problems);
    }

    #[test]
    fn overlapping_requests_prove_nothing_either_way() {
        let rs = [
            record(0, &[0], 0, 30, Outcome::Failed),
            record(1, &[0], 10, 20, Outcome::Success),
        ];
        let mut e = evidence(&rs);
        e.holds = vec![live(&rs[1])];
        e.held_at_end[0] = true;
        let f = check(&e).fairness;
        assert_eq!((f.failed_checked, f.order_unknown, f.violations), (1, 1, 0));
    }

    #[test]
    fn a_failure_with_no_winner_at_all_is_a_violation_unless_an_unanswered_post_may_have_won() {
        let rs = [record(0, &[2, 3], 0, 10, Outcome::Failed)];
        let mut e = evidence(&rs);
        assert_eq!(check(&e).fairness.violations, 1);
        assert!(!check(&e).passed());
        // An unanswered POST for seat 3, sent before the 202: it may have been accepted and won.
        let unanswered = [(Box::from([3u32]), 5u64)];
        e.unanswered = &unanswered;
        let v = check(&e);
        assert_eq!((v.fairness.violations, v.fairness.order_unknown), (0, 1));
        assert!(v.passed(), "{:?}", v.problems);
        // One sent only after the 202 came back explains nothing.
        let late = [(Box::from([3u32]), 11u64)];
        e.unanswered = &late;
        assert_eq!(check(&e).fairness.violations, 1);
        // Seats not free at the start are not judged.
        e.available_at_start[3] = false;
        assert_eq!(check(&e).fairness.failed_checked, 0);
    }

    #[test]
    fn after_restarts_a_lost_push_is_allowed_when_polling_finds_the_request_decided() {
        let mut rs = [record(0, &[0], 0, 10, Outcome::Failed)];
        rs[0].pushes = 0;
        rs[0].pushed = None;
        let mut e = evidence(&rs);
        e.available_at_start = vec![false; 4];
        e.polled = vec![Some(Ok(Polled {
            status: "FAILED".into(),
            hold_id: None,
        }))];
        assert_eq!(
            check(&e).results_missing,
            1,
            "without restarts it is a defect"
        );
        e.restarts = true;
        let v = check(&e);
        assert_eq!((v.results_missing, v.results_lost_to_restarts), (0, 1));
        assert!(v.passed());
        // A push that came during the checks was late, not lost.
        e.late = HashMap::from([(rs[0].id, vec![(Outcome::Failed, None)])]);
        let v = check(&e);
        assert_eq!(
            (
                v.results_lost_to_restarts,
                v.results_after_the_drain,
                v.results_missing
            ),
            (0, 1, 0)
        );
        assert!(v.passed());
        // ... and one that says otherwise than polling is a disagreement.
        e.late = HashMap::from([(rs[0].id, vec![(Outcome::Success, None)])]);
        assert_eq!(check(&e).poll_disagrees, 1);
        e.late.clear();
        // Still undecided after the drain is a defect, restarts or not.
        e.polled = vec![Some(Ok(Polled {
            status: "QUEUED".into(),
            hold_id: None,
        }))];
        assert!(!check(&e).passed());
    }

    #[test]
    fn repeated_results_pass_only_when_batches_were_delivered_twice_and_never_when_they_disagree() {
        let mut rs = [record(0, &[0], 0, 10, Outcome::Failed)];
        rs[0].pushes = 2;
        let mut e = evidence(&rs);
        e.available_at_start = vec![false; 4];
        let v = check(&e);
        assert_eq!((v.results_duplicated, v.results_conflicting), (1, 0));
        assert!(
            !v.passed(),
            "a repeat without duplicate deliveries is a defect"
        );
        e.redelivered = true;
        assert!(check(&e).passed(), "an agreeing repeat of a redelivery");
        rs[0].pushes_disagreeing = 1;
        let mut e = evidence(&rs);
        e.available_at_start = vec![false; 4];
        e.redelivered = true;
        let v = check(&e);
        assert_eq!(v.results_conflicting, 1);
        assert!(
            !v.passed(),
            "results that disagree are a defect in every run"
        );
    }

    #[test]
    fn a_held_seat_that_an_unanswered_post_asked_for_is_not_judged() {
        let rs: [Record; 0] = [];
        let mut e = evidence(&rs);
        e.held_at_end[2] = true;
        assert_eq!(check(&e).held_on_map_without_hold, 1);
        let unanswered = [(Box::from([2u32]), 0u64)];
        e.unanswered = &unanswered;
        assert_eq!(check(&e).held_on_map_without_hold, 0);
    }

    #[test]
    fn a_seat_in_two_live_holds_and_a_map_that_disagrees_are_found() {
        let rs = [
            record(0, &[1], 0, 10, Outcome::Success),
            record(1, &[1], 20, 30, Outcome::Success),
        ];
        let mut e = evidence(&rs);
        e.holds = vec![live(&rs[0]), live(&rs[1])];
        e.held_at_end[1] = true;
        let v = check(&e);
        assert_eq!(v.seats_held_twice, 1);
        assert!(!v.passed());

        // One live hold whose seat the map shows AVAILABLE, and a HELD seat nobody holds.
        let rs = [record(0, &[1], 0, 10, Outcome::Success)];
        let mut e = evidence(&rs);
        e.holds = vec![live(&rs[0])];
        e.held_at_end[2] = true;
        let v = check(&e);
        assert_eq!(
            (v.live_seats_not_held_on_map, v.held_on_map_without_hold),
            (1, 1)
        );
        assert_eq!(v.problems.len(), 2, "{:?}", v.problems);
        // Against a server others use too, a HELD seat without a hold of ours is not ours to judge.
        e.sole_client = false;
        assert_eq!(check(&e).problems.len(), 1);
    }

    #[test]
    fn a_user_with_two_live_holds_is_found() {
        let rs = [
            record(0, &[0], 0, 10, Outcome::Success),
            record(0, &[1], 20, 30, Outcome::Success),
        ];
        let mut e = evidence(&rs);
        e.holds = vec![live(&rs[0]), live(&rs[1])];
        e.held_at_end[0] = true;
        e.held_at_end[1] = true;
        assert_eq!(check(&e).users_with_two_live_holds, 1);
        // The first replaced by the second: RELEASED, as the server records it.
        e.holds[0].status = "RELEASED".into();
        e.held_at_end[0] = false;
        assert!(check(&e).passed());
    }

    #[test]
    fn missing_duplicate_and_disagreeing_results_are_found() {
        let mut rs = [
            record(0, &[0], 0, 10, Outcome::Failed),
            record(1, &[1], 0, 10, Outcome::Failed),
            record(2, &[2], 0, 10, Outcome::Failed),
            record(3, &[3], 0, 10, Outcome::Failed),
        ];
        rs[0].pushes = 0;
        rs[0].pushed = None;
        rs[1].pushes = 2;
        let mut e = evidence(&rs);
        e.available_at_start = vec![false; 4]; // fairness out of the way here
        let polled = |status: &str| {
            Some(Ok(Polled {
                status: status.into(),
                hold_id: None,
            }))
        };
        e.polled = vec![
            polled("FAILED"),
            polled("FAILED"),
            polled("SUCCESS"),
            polled("QUEUED"),
        ];
        let v = check(&e);
        assert_eq!(
            (
                v.results_missing,
                v.results_duplicated,
                v.poll_disagrees,
                v.poll_not_terminal
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(v.problems.len(), 4, "{:?}", v.problems);
    }
}
