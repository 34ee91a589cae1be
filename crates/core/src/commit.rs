//! What committing a decided batch must write, worked out with no I/O: the one definition both
//! store adapters execute.
//!
//! A batch's decisions are meant to be applied one by one, in order: each grant finds its request
//! still undecided, releases the user's previous live hold, inserts its hold and claims its
//! seats, and a seat can only be claimed if nobody holds it. Stores that write a batch in a few
//! bulk statements (PostgreSQL) cannot apply them one by one, and stores that can (SQLite) should
//! not have to re-derive the rules; so [`CommitPlan::new`] resolves what the decisions of one
//! batch do to each other (a user's second grant releasing the hold their first grant made, a
//! seat freed by a release and granted again later in the batch) exactly as one-by-one
//! application would, and leaves to the database only what it alone can check: that requests are
//! still undecided, that no live claim of someone else stands on a seat, that a hold id is new.
//!
//! The adapters then write, inside one transaction and in this order (the order rows are locked
//! in, so that concurrent writers wait for each other instead of deadlocking):
//! 1. every request's outcome ([`CommitPlan::outcomes`], by request id), guarded by "still
//!    undecided" (and, for a grant, "still this user's"); a grant that finds its request decided
//!    means the batch was decided against stale state: [`CommitError::SeatConflict`];
//! 2. the stored holds that grants release ([`CommitPlan::releases`]) and their live claims; a
//!    seat they free must not have been claimed by a grant *before* the releasing one
//!    ([`CommitPlan::check_freed`]);
//! 3. the new holds ([`CommitPlan::new_holds`], by hold id) and one claim per seat
//!    ([`CommitPlan::claims`], by seat), each claim allowed only over an expired one;
//! 4. the claims of holds released again within the batch ([`CommitPlan::released_in_batch`]).

use crate::engine::{BatchOutcome, Decision};
use crate::ids::{HoldId, RequestId, SeatId, UserId};
use crate::model::RequestOutcome;
use crate::ports::CommitError;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};

/// A request's outcome as the commit records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedOutcome {
    pub request_id: RequestId,
    /// Set for grants: the request must still be this user's.
    pub grant_to: Option<UserId>,
    pub outcome: RequestOutcome,
}

/// A hold that existed before the batch, released by one of its grants (the user's new hold
/// replaces it). Released only if it is still HELD and still the user's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub hold_id: HoldId,
    pub user_id: UserId,
}

/// A hold the batch creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHold {
    pub hold_id: HoldId,
    pub request_id: RequestId,
    pub user_id: UserId,
    pub seat_ids: Vec<SeatId>,
    pub expires_at: DateTime<Utc>,
    /// Released again by a later grant of the same batch: it is written RELEASED, ended at the
    /// batch's decision time.
    pub released: bool,
}

/// The claim a seat ends the batch with: the last grant of the batch that took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub seat_id: SeatId,
    pub hold_id: HoldId,
    pub expires_at: DateTime<Utc>,
}

/// Everything one batch commit writes (see the module docs for the order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitPlan {
    /// One per request (a later decision for the same request is a no-op), by request id.
    pub outcomes: Vec<PlannedOutcome>,
    /// How many of the outcomes are grants: every one of them must be written.
    pub grants: usize,
    pub releases: Vec<Release>,
    /// By hold id.
    pub new_holds: Vec<NewHold>,
    /// By seat id.
    pub claims: Vec<Claim>,
    /// New holds released within the batch, whose claims are removed again.
    pub released_in_batch: Vec<HoldId>,
    /// Per claimed seat: the position (among the grants) of the first grant that claims it.
    first_claim: HashMap<SeatId, usize>,
    /// Per stored hold released: the position of the grant that releases it.
    release_position: HashMap<HoldId, usize>,
}

impl CommitPlan {
    /// Resolves the batch in decision order. Refuses ([`CommitError::SeatConflict`]) what
    /// applying it one decision at a time would refuse without even asking the database: a
    /// request decided twice with a grant among the decisions, a hold id granted twice, a seat
    /// granted while an earlier grant of the batch still holds it.
    pub fn new(batch: &BatchOutcome) -> Result<Self, CommitError> {
        let mut plan = CommitPlan::default();
        let mut outcomes: BTreeMap<RequestId, PlannedOutcome> = BTreeMap::new();
        let mut new_holds: Vec<NewHold> = Vec::new();
        let mut hold_index: HashMap<HoldId, usize> = HashMap::new();
        // Seat → index (in `new_holds`) of the live new hold that has it.
        let mut owner: HashMap<SeatId, usize> = HashMap::new();
        let mut last_claim: BTreeMap<SeatId, usize> = BTreeMap::new();

        for decision in &batch.decisions {
            let request_id = decision.request_id();
            if outcomes.contains_key(&request_id) {
                // Applied in order, a later decision for a decided request is a no-op, except a
                // grant, whose guard fails.
                if matches!(decision, Decision::Granted { .. }) {
                    return Err(CommitError::SeatConflict);
                }
                continue;
            }
            let mut grant_to = None;
            if let Decision::Granted {
                user_id,
                hold_id,
                seat_ids,
                expires_at,
                released,
                ..
            } = decision
            {
                let position = new_holds.len();
                if let Some(previous) = released {
                    match hold_index.get(previous) {
                        // The user's hold from earlier in this batch: released here, its seats
                        // free for the rest of the batch.
                        Some(&i) if !new_holds[i].released && new_holds[i].user_id == *user_id => {
                            new_holds[i].released = true;
                            owner.retain(|_, o| *o != i);
                        }
                        // Already released in this batch, or another user's: a no-op.
                        Some(_) => {}
                        None => {
                            if plan.release_position.insert(*previous, position).is_none() {
                                plan.releases.push(Release {
                                    hold_id: *previous,
                                    user_id: user_id.clone(),
                                });
                            }
                        }
                    }
                }
                if hold_index.insert(*hold_id, position).is_some() {
                    // Inserting the same hold twice: the second insert fails.
                    return Err(CommitError::SeatConflict);
                }
                for seat in seat_ids {
                    if owner.insert(*seat, position).is_some() {
                        return Err(CommitError::SeatConflict);
                    }
                    last_claim.insert(*seat, position);
                    plan.first_claim.entry(*seat).or_insert(position);
                }
                new_holds.push(NewHold {
                    hold_id: *hold_id,
                    request_id,
                    user_id: user_id.clone(),
                    seat_ids: seat_ids.clone(),
                    expires_at: *expires_at,
                    released: false,
                });
                plan.grants += 1;
                grant_to = Some(user_id.clone());
            }
            outcomes.insert(
                request_id,
                PlannedOutcome {
                    request_id,
                    grant_to,
                    outcome: decision.outcome(),
                },
            );
        }

        plan.outcomes = outcomes.into_values().collect();
        for (seat, i) in last_claim {
            plan.claims.push(Claim {
                seat_id: seat,
                hold_id: new_holds[i].hold_id,
                expires_at: new_holds[i].expires_at,
            });
        }
        new_holds.sort_by_key(|h| h.hold_id);
        plan.released_in_batch = new_holds
            .iter()
            .filter(|h| h.released)
            .map(|h| h.hold_id)
            .collect();
        plan.new_holds = new_holds;
        Ok(plan)
    }

    /// Checks the seats that releasing the stored holds freed (`(seat, hold)` pairs): such a
    /// seat was, for the grants before the releasing one, still the previous hold's, so a grant
    /// before it that claims the seat would have met a live claim.
    pub fn check_freed(&self, freed: &[(SeatId, HoldId)]) -> Result<(), CommitError> {
        for (seat, hold) in freed {
            if let (Some(claimed_at), Some(released_at)) =
                (self.first_claim.get(seat), self.release_position.get(hold))
                && claimed_at < released_at
            {
                return Err(CommitError::SeatConflict);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn seats(labels: &[&str]) -> Vec<SeatId> {
        labels.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn grant(user: &str, labels: &[&str], released: Option<HoldId>) -> Decision {
        let request_id = RequestId::new_random();
        Decision::Granted {
            request_id,
            user_id: user.parse().unwrap(),
            hold_id: HoldId::for_request(request_id),
            seat_ids: seats(labels),
            expires_at: t0() + Duration::minutes(5),
            released,
        }
    }

    fn plan(decisions: Vec<Decision>) -> Result<CommitPlan, CommitError> {
        CommitPlan::new(&BatchOutcome {
            decisions,
            seat_changes: vec![],
        })
    }

    #[test]
    fn a_second_grant_of_one_user_releases_the_first_within_the_batch() {
        let first = grant("a", &["A1", "A2"], None);
        let Decision::Granted { hold_id: h1, .. } = &first else {
            unreachable!()
        };
        let second = grant("a", &["A2", "A3"], Some(*h1));
        let p = plan(vec![first.clone(), second]).unwrap();
        assert_eq!(p.grants, 2);
        assert!(p.releases.is_empty(), "nothing stored is released");
        assert_eq!(p.released_in_batch, vec![*h1]);
        let released: Vec<bool> = p.new_holds.iter().map(|h| h.released).collect();
        assert_eq!(released.iter().filter(|r| **r).count(), 1);
        // A2 ends with the second hold; A1 was claimed only by the released one.
        let by_seat: HashMap<SeatId, HoldId> =
            p.claims.iter().map(|c| (c.seat_id, c.hold_id)).collect();
        assert_eq!(by_seat.len(), 3);
        assert_ne!(by_seat[&seats(&["A2"])[0]], *h1);
        assert!(
            p.outcomes
                .windows(2)
                .all(|w| w[0].request_id < w[1].request_id)
        );
    }

    #[test]
    fn a_seat_granted_twice_in_one_batch_is_a_conflict() {
        assert_eq!(
            plan(vec![grant("a", &["A1"], None), grant("b", &["A1"], None)]),
            Err(CommitError::SeatConflict)
        );
    }

    #[test]
    fn a_seat_claimed_before_its_stored_hold_is_released_is_a_conflict() {
        let stored = HoldId::new_random();
        let early = grant("b", &["A1"], None);
        let release = grant("a", &["A5"], Some(stored));
        let p = plan(vec![early.clone(), release.clone()]).unwrap();
        assert_eq!(
            p.check_freed(&[(seats(&["A1"])[0], stored)]),
            Err(CommitError::SeatConflict)
        );
        // The other way round the release came first: fine.
        let p = plan(vec![release, early]).unwrap();
        assert_eq!(p.check_freed(&[(seats(&["A1"])[0], stored)]), Ok(()));
    }

    #[test]
    fn only_the_first_decision_for_a_request_counts() {
        let request_id = RequestId::new_random();
        let expired = Decision::Expired { request_id };
        let invalid = Decision::Invalid {
            request_id,
            reason: "again".into(),
        };
        let p = plan(vec![expired, invalid]).unwrap();
        assert_eq!(p.outcomes.len(), 1);
        assert!(matches!(
            p.outcomes[0].outcome,
            RequestOutcome::Expired { .. }
        ));
        let Decision::Granted { request_id, .. } = grant("a", &["A1"], None) else {
            unreachable!()
        };
        let again = Decision::Granted {
            request_id,
            user_id: "a".parse().unwrap(),
            hold_id: HoldId::new_random(),
            seat_ids: seats(&["A2"]),
            expires_at: t0(),
            released: None,
        };
        assert_eq!(
            plan(vec![Decision::Expired { request_id }, again]),
            Err(CommitError::SeatConflict),
            "a grant for a request decided earlier in the batch"
        );
    }
}
