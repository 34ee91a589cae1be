//! `WaitingRoomStore`: each show's waiting room and its places, shared by every Lambda instance
//! (`migrations/postgres/0007_waiting_rooms.sql`, `0008_waiting_room_pace_and_switch.sql`).
//!
//! A room's row is its lock: a join and a tick take it (`SELECT ... FOR UPDATE`) before they
//! read what they decide on, so two instances cannot hand out one ticket twice, and a join
//! cannot slip into the pre-queue while the opening draws its order. A first hold locks its
//! place's row, so it and a tick's expiry of that place happen one after the other. A tick is
//! set-based: one statement per rule over the room's places, the opening's ranks bound as two
//! arrays.

use crate::PgStore;
use crate::codec;
use async_trait::async_trait;
use booking_core::ports::{ListedRoom, RoomRules, RoomSummary, StoreError, WaitingRoomStore};
use booking_core::waiting_room::{
    AdmissionCredit, AdmissionError, AdmissionPace, DemandMeter, Joined, Place, PlaceState,
    PlaceStatus, RoomCounts, RoomPolicy, Tick, admissions_now, pre_queue_ranks,
};
use booking_core::{ShowId, UserId};
use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;

struct StoredRoom {
    policy: RoomPolicy,
    opened: bool,
    armed: bool,
    credit: AdmissionCredit,
    pace: AdmissionPace,
    demand: DemandMeter,
    next_ticket: i64,
}

impl StoredRoom {
    fn rules(self) -> RoomRules {
        RoomRules {
            policy: self.policy,
            armed: self.armed,
            pace: self.pace,
        }
    }
}

/// The show's room, locked for the transaction when `for_update`.
async fn load_room(
    conn: &mut PgConnection,
    show: ShowId,
    for_update: bool,
) -> Result<Option<StoredRoom>, StoreError> {
    // Two statements rather than one with a dynamic `FOR UPDATE`: both are checked at compile
    // time, and their rows have the same shape.
    macro_rules! decode {
        ($row:expr) => {
            $row.map(|r| {
                let count = |v: i32, column: &str| {
                    u32::try_from(v)
                        .map_err(|_| codec::corrupt(format_args!("waiting_rooms.{column}: {v}")))
                };
                let number = |v: i64, column: &str| {
                    u64::try_from(v)
                        .map_err(|_| codec::corrupt(format_args!("waiting_rooms.{column}: {v}")))
                };
                Ok::<_, StoreError>(StoredRoom {
                    policy: RoomPolicy {
                        opens_at: r.opens_at,
                        admit_per_second: count(r.admit_per_second, "admit_per_second")?,
                        max_active: r.max_active.map(|m| count(m, "max_active")).transpose()?,
                        admission_ttl: Duration::milliseconds(r.admission_ttl_ms),
                        shopping_ttl: Duration::milliseconds(r.shopping_ttl_ms),
                        grace: Duration::milliseconds(r.grace_ms),
                        switch_on_above: r
                            .switch_on_above
                            .map(|m| count(m, "switch_on_above"))
                            .transpose()?,
                    },
                    opened: r.opened_at.is_some(),
                    armed: r.armed,
                    credit: AdmissionCredit {
                        milli: number(r.credit_milli, "credit_milli")?,
                        at: r.credited_at,
                    },
                    pace: AdmissionPace {
                        since: r.pace_since,
                        admitted: number(r.pace_admitted, "pace_admitted")?,
                        measured_milli: r
                            .pace_milli
                            .map(|m| number(m, "pace_milli"))
                            .transpose()?,
                    },
                    demand: DemandMeter {
                        since: r.demand_since,
                        requests: number(r.demand_count, "demand_count")?,
                    },
                    next_ticket: r.next_ticket,
                })
            })
            .transpose()
        };
    }
    if for_update {
        let row = sqlx::query!(
            "SELECT opens_at, admit_per_second, max_active, admission_ttl_ms, shopping_ttl_ms, \
                 grace_ms, switch_on_above, opened_at, armed, credit_milli, credited_at, \
                 pace_since, pace_admitted, pace_milli, demand_since, demand_count, next_ticket \
             FROM waiting_rooms WHERE show_id = $1 FOR UPDATE",
            show.as_uuid()
        )
        .fetch_optional(&mut *conn)
        .await
        .map_err(codec::store_error)?;
        decode!(row)
    } else {
        let row = sqlx::query!(
            "SELECT opens_at, admit_per_second, max_active, admission_ttl_ms, shopping_ttl_ms, \
                 grace_ms, switch_on_above, opened_at, armed, credit_milli, credited_at, \
                 pace_since, pace_admitted, pace_milli, demand_since, demand_count, next_ticket \
             FROM waiting_rooms WHERE show_id = $1",
            show.as_uuid()
        )
        .fetch_optional(&mut *conn)
        .await
        .map_err(codec::store_error)?;
        decode!(row)
    }
}

/// The user's latest place in the room, with its queue rank; with `for_update`, its row locked
/// for the transaction (a first hold decides on it), else read as it stands (a poll).
async fn latest_place(
    conn: &mut PgConnection,
    show: ShowId,
    user: &UserId,
    for_update: bool,
) -> Result<Option<(Place, Option<i64>)>, StoreError> {
    // Two statements rather than one with a dynamic `FOR UPDATE`, as in `load_room`.
    macro_rules! decode {
        ($row:expr) => {{
            let Some(r) = $row else {
                return Ok(None);
            };
            let state = PlaceState::from_parts(&r.state, r.admitted_until, r.shopping_since)
                .ok_or_else(|| {
                    codec::corrupt(format_args!("waiting_room_places.state: {}", r.state))
                })?;
            Ok(Some((
                Place {
                    ticket: u64::try_from(r.ticket)
                        .map_err(|_| codec::corrupt("waiting_room_places.ticket"))?,
                    user: codec::parse(&r.user_id, "waiting_room_places.user_id")?,
                    joined_at: r.joined_at,
                    last_seen: r.last_seen,
                    state,
                },
                r.queue_rank,
            )))
        }};
    }
    if for_update {
        let row = sqlx::query!(
            "SELECT ticket, user_id, joined_at, last_seen, queue_rank, state, admitted_until, \
                 shopping_since \
             FROM waiting_room_places \
             WHERE show_id = $1 AND user_id = $2 ORDER BY ticket DESC LIMIT 1 FOR UPDATE",
            show.as_uuid(),
            user.as_str()
        )
        .fetch_optional(&mut *conn)
        .await
        .map_err(codec::store_error)?;
        decode!(row)
    } else {
        let row = sqlx::query!(
            "SELECT ticket, user_id, joined_at, last_seen, queue_rank, state, admitted_until, \
                 shopping_since \
             FROM waiting_room_places \
             WHERE show_id = $1 AND user_id = $2 ORDER BY ticket DESC LIMIT 1",
            show.as_uuid(),
            user.as_str()
        )
        .fetch_optional(&mut *conn)
        .await
        .map_err(codec::store_error)?;
        decode!(row)
    }
}

/// Tickets a statement's `RETURNING ticket` gave back, in ticket order (the order the pure
/// room reports them in).
fn sorted_tickets(tickets: Vec<i64>) -> Vec<u64> {
    let mut tickets: Vec<u64> = tickets.into_iter().map(|t| t as u64).collect();
    tickets.sort_unstable();
    tickets
}

#[async_trait]
impl WaitingRoomStore for PgStore {
    async fn put_room(&self, show: ShowId, policy: &RoomPolicy) -> Result<(), StoreError> {
        sqlx::query!(
            "INSERT INTO waiting_rooms (show_id, opens_at, admit_per_second, max_active, \
                 admission_ttl_ms, shopping_ttl_ms, grace_ms, switch_on_above, armed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8::INTEGER IS NOT NULL) \
             ON CONFLICT (show_id) DO UPDATE SET opens_at = excluded.opens_at, \
                 admit_per_second = excluded.admit_per_second, max_active = excluded.max_active, \
                 admission_ttl_ms = excluded.admission_ttl_ms, \
                 shopping_ttl_ms = excluded.shopping_ttl_ms, grace_ms = excluded.grace_ms, \
                 switch_on_above = excluded.switch_on_above, \
                 armed = waiting_rooms.armed AND excluded.armed, \
                 pace_since = NULL, pace_admitted = 0, pace_milli = NULL",
            show.as_uuid(),
            policy.opens_at,
            i32::try_from(policy.admit_per_second.max(1)).unwrap_or(i32::MAX),
            policy
                .max_active
                .map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
            policy.admission_ttl.num_milliseconds(),
            policy.shopping_ttl.num_milliseconds(),
            policy.grace.num_milliseconds(),
            policy
                .switch_on_above
                .map(|m| i32::try_from(m).unwrap_or(i32::MAX))
        )
        .execute(self.pool())
        .await
        .map_err(codec::store_error)?;
        Ok(())
    }

    async fn remove_room(&self, show: ShowId) -> Result<bool, StoreError> {
        // The places go with the room (ON DELETE CASCADE).
        let removed = sqlx::query!(
            "DELETE FROM waiting_rooms WHERE show_id = $1",
            show.as_uuid()
        )
        .execute(self.pool())
        .await
        .map_err(codec::store_error)?
        .rows_affected();
        Ok(removed > 0)
    }

    async fn room(&self, show: ShowId) -> Result<Option<RoomSummary>, StoreError> {
        let mut conn = self.pool().acquire().await.map_err(codec::store_error)?;
        let Some(room) = load_room(&mut conn, show, false).await? else {
            return Ok(None);
        };
        let rows = sqlx::query!(
            r#"SELECT state, COUNT(*) AS "count!" FROM waiting_room_places
               WHERE show_id = $1 GROUP BY state"#,
            show.as_uuid()
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(codec::store_error)?;
        let mut counts = RoomCounts::default();
        for row in rows {
            if !counts.add_named(&row.state, row.count as u64) {
                return Err(codec::corrupt(format_args!(
                    "waiting_room_places.state: {}",
                    row.state
                )));
            }
        }
        Ok(Some(RoomSummary {
            policy: room.policy,
            opened: room.opened,
            armed: room.armed,
            pace: room.pace,
            counts,
        }))
    }

    async fn room_rules(&self, show: ShowId) -> Result<Option<RoomRules>, StoreError> {
        let mut conn = self.pool().acquire().await.map_err(codec::store_error)?;
        Ok(load_room(&mut conn, show, false)
            .await?
            .map(StoredRoom::rules))
    }

    async fn rooms(&self) -> Result<Vec<ListedRoom>, StoreError> {
        let rows = sqlx::query!(
            "SELECT show_id, CASE WHEN armed THEN switch_on_above END AS armed_above \
             FROM waiting_rooms"
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        Ok(rows
            .into_iter()
            .map(|r| ListedRoom {
                show: ShowId::from_uuid(r.show_id),
                armed_above: r.armed_above.map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
            })
            .collect())
    }

    async fn record_demand(
        &self,
        show: ShowId,
        requests: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await.map_err(codec::store_error)?;
        let Some(mut room) = load_room(&mut tx, show, true).await? else {
            return Ok(false);
        };
        let Some(per_second) = room.policy.switch_on_above.filter(|_| room.armed) else {
            return Ok(false);
        };
        let over = room.demand.record(now, requests, per_second);
        // Switched on: it opens now, and its next tick draws the order of whoever joined.
        sqlx::query!(
            "UPDATE waiting_rooms SET demand_since = $2, demand_count = $3, armed = NOT $4, \
                 opens_at = CASE WHEN $4 THEN $5 ELSE opens_at END \
             WHERE show_id = $1",
            show.as_uuid(),
            room.demand.since,
            room.demand.requests as i64,
            over,
            now
        )
        .execute(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        tx.commit().await.map_err(codec::store_error)?;
        Ok(over)
    }

    #[tracing::instrument(skip_all, fields(%show))]
    async fn join_room(
        &self,
        show: ShowId,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<Joined>, StoreError> {
        let mut tx = self.pool().begin().await.map_err(codec::store_error)?;
        let Some(room) = load_room(&mut tx, show, true).await? else {
            return Ok(None);
        };
        let live = sqlx::query_scalar!(
            "UPDATE waiting_room_places SET last_seen = $3 \
             WHERE show_id = $1 AND user_id = $2 AND state IN ('WAITING', 'ADMITTED', 'SHOPPING') \
             RETURNING ticket",
            show.as_uuid(),
            user.as_str(),
            now
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        let joined = if let Some(ticket) = live {
            Joined {
                ticket: ticket as u64,
                created: false,
            }
        } else {
            let ticket = room.next_ticket;
            // Before the opening the order is not known: the opening draws the pre-queue's.
            let rank = room.opened.then_some(ticket);
            sqlx::query!(
                "INSERT INTO waiting_room_places \
                     (show_id, ticket, user_id, joined_at, last_seen, queue_rank, state) \
                 VALUES ($1, $2, $3, $4, $4, $5, 'WAITING')",
                show.as_uuid(),
                ticket,
                user.as_str(),
                now,
                rank
            )
            .execute(&mut *tx)
            .await
            .map_err(codec::store_error)?;
            sqlx::query!(
                "UPDATE waiting_rooms SET next_ticket = $2 WHERE show_id = $1",
                show.as_uuid(),
                ticket + 1
            )
            .execute(&mut *tx)
            .await
            .map_err(codec::store_error)?;
            Joined {
                ticket: ticket as u64,
                created: true,
            }
        };
        tx.commit().await.map_err(codec::store_error)?;
        Ok(Some(joined))
    }

    async fn place(
        &self,
        show: ShowId,
        user: &UserId,
        seen_at: Option<DateTime<Utc>>,
    ) -> Result<Option<PlaceStatus>, StoreError> {
        // The sign of life is one statement of its own, and the reads take no lock: a poll
        // holds no row while it counts who is ahead of it.
        if let Some(now) = seen_at {
            sqlx::query!(
                "UPDATE waiting_room_places SET last_seen = $3 WHERE show_id = $1 AND ticket = \
                     (SELECT MAX(ticket) FROM waiting_room_places \
                      WHERE show_id = $1 AND user_id = $2)",
                show.as_uuid(),
                user.as_str(),
                now
            )
            .execute(self.pool())
            .await
            .map_err(codec::store_error)?;
        }
        let mut conn = self.pool().acquire().await.map_err(codec::store_error)?;
        let Some((place, rank)) = latest_place(&mut conn, show, user, false).await? else {
            return Ok(None);
        };
        let position = match (place.state, rank) {
            (PlaceState::Waiting, Some(rank)) => {
                let ahead = sqlx::query_scalar!(
                    r#"SELECT COUNT(*) AS "count!" FROM waiting_room_places
                       WHERE show_id = $1 AND state = 'WAITING' AND queue_rank < $2"#,
                    show.as_uuid(),
                    rank
                )
                .fetch_one(&mut *conn)
                .await
                .map_err(codec::store_error)?;
                Some(ahead as u64 + 1)
            }
            _ => None,
        };
        Ok(Some(PlaceStatus { place, position }))
    }

    async fn waiting_places(&self, show: ShowId) -> Result<Vec<(UserId, u64)>, StoreError> {
        let rows = sqlx::query!(
            "SELECT user_id, ticket FROM waiting_room_places \
             WHERE show_id = $1 AND state = 'WAITING' AND queue_rank IS NOT NULL \
             ORDER BY queue_rank",
            show.as_uuid()
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    codec::parse(&r.user_id, "waiting_room_places.user_id")?,
                    r.ticket as u64,
                ))
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(%show))]
    async fn tick_room(
        &self,
        show: ShowId,
        now: DateTime<Utc>,
        seed: [u8; 32],
    ) -> Result<Tick, StoreError> {
        let mut tx = self.pool().begin().await.map_err(codec::store_error)?;
        let Some(mut room) = load_room(&mut tx, show, true).await? else {
            return Ok(Tick::default());
        };
        if !room.opened {
            if room.armed || now < room.policy.opens_at {
                return Ok(Tick::default());
            }
            // The opening: the pre-queue's order is drawn once, and whoever waited in it
            // counts as seen at the opening.
            let ranks: Vec<i64> = pre_queue_ranks(room.next_ticket as u64 - 1, seed)
                .into_iter()
                .map(|r| r as i64)
                .collect();
            let tickets: Vec<i64> = (1..=ranks.len() as i64).collect();
            sqlx::query!(
                "UPDATE waiting_room_places p SET queue_rank = r.queue_rank, \
                     last_seen = GREATEST(p.last_seen, $4) \
                 FROM UNNEST($2::BIGINT[], $3::BIGINT[]) AS r (ticket, queue_rank) \
                 WHERE p.show_id = $1 AND p.ticket = r.ticket",
                show.as_uuid(),
                &tickets,
                &ranks,
                now
            )
            .execute(&mut *tx)
            .await
            .map_err(codec::store_error)?;
            sqlx::query!(
                "UPDATE waiting_rooms SET opened_at = $2 WHERE show_id = $1",
                show.as_uuid(),
                now
            )
            .execute(&mut *tx)
            .await
            .map_err(codec::store_error)?;
            room.opened = true;
            room.credit = AdmissionCredit::at_opening(room.policy.admit_per_second, now);
        }

        let abandoned = sqlx::query_scalar!(
            "UPDATE waiting_room_places SET state = 'ABANDONED' \
             WHERE show_id = $1 AND state = 'WAITING' AND last_seen < $2 RETURNING ticket",
            show.as_uuid(),
            now - room.policy.grace
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        let expired = sqlx::query_scalar!(
            "UPDATE waiting_room_places SET state = 'EXPIRED' \
             WHERE show_id = $1 AND ((state = 'ADMITTED' AND admitted_until <= $2) \
                 OR (state = 'SHOPPING' AND shopping_since <= $3)) RETURNING ticket",
            show.as_uuid(),
            now,
            now - room.policy.shopping_ttl
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(codec::store_error)?;

        room.credit.earn(room.policy.admit_per_second, now);
        let active = sqlx::query_scalar!(
            r#"SELECT COUNT(*) AS "count!" FROM waiting_room_places
               WHERE show_id = $1 AND state IN ('ADMITTED', 'SHOPPING')"#,
            show.as_uuid()
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        let count = admissions_now(&room.credit, room.policy.max_active, active as u64);
        let expires_at = now + room.policy.admission_ttl;
        let mut admitted = if count > 0 {
            sqlx::query!(
                r#"UPDATE waiting_room_places SET state = 'ADMITTED', admitted_until = $3
                   WHERE show_id = $1 AND state = 'WAITING' AND ticket IN (
                       SELECT ticket FROM waiting_room_places
                       WHERE show_id = $1 AND state = 'WAITING' AND queue_rank IS NOT NULL
                       ORDER BY queue_rank LIMIT $2)
                   RETURNING queue_rank AS "queue_rank!", ticket, user_id"#,
                show.as_uuid(),
                count as i64,
                expires_at
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(codec::store_error)?
            .into_iter()
            .map(|r| (r.queue_rank, r.ticket, r.user_id))
            .collect()
        } else {
            Vec::new()
        };
        admitted.sort_unstable();
        room.credit.spend(admitted.len() as u64);
        let still_waiting = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM waiting_room_places
                   WHERE show_id = $1 AND state = 'WAITING' AND queue_rank IS NOT NULL)
               AS "still_waiting!""#,
            show.as_uuid()
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        room.pace.record(now, admitted.len() as u64, still_waiting);
        sqlx::query!(
            "UPDATE waiting_rooms SET credit_milli = $2, credited_at = $3, pace_since = $4, \
                 pace_admitted = $5, pace_milli = $6 WHERE show_id = $1",
            show.as_uuid(),
            room.credit.milli as i64,
            room.credit.at,
            room.pace.since,
            room.pace.admitted as i64,
            room.pace.measured_milli.map(|m| m as i64)
        )
        .execute(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        tx.commit().await.map_err(codec::store_error)?;

        let expires_at = PgStore::stored_instant(expires_at);
        Ok(Tick {
            admitted: admitted
                .into_iter()
                .map(|(_, ticket, user)| {
                    Ok((
                        ticket as u64,
                        codec::parse(&user, "waiting_room_places.user_id")?,
                        expires_at,
                    ))
                })
                .collect::<Result<_, StoreError>>()?,
            abandoned: sorted_tickets(abandoned),
            expired: sorted_tickets(expired),
        })
    }

    async fn start_shopping(
        &self,
        show: ShowId,
        user: &UserId,
        ticket: u64,
        now: DateTime<Utc>,
    ) -> Result<Result<(), AdmissionError>, StoreError> {
        let mut tx = self.pool().begin().await.map_err(codec::store_error)?;
        let Some(StoredRoom { policy, .. }) = load_room(&mut tx, show, false).await? else {
            return Ok(Err(AdmissionError::NoPlace));
        };
        let Some((place, _)) = latest_place(&mut tx, show, user, true).await? else {
            return Ok(Err(AdmissionError::NoPlace));
        };
        // A token of an earlier place, which has ended, admits nobody.
        let verdict = if place.ticket != ticket {
            Err(AdmissionError::Expired)
        } else {
            place
                .state
                .start_shopping(now, policy.shopping_ttl)
                .map(|shopping| shopping.is_some())
        };
        if verdict == Ok(true) {
            sqlx::query!(
                "UPDATE waiting_room_places SET state = 'SHOPPING', shopping_since = $3 \
                 WHERE show_id = $1 AND ticket = $2",
                show.as_uuid(),
                ticket as i64,
                now
            )
            .execute(&mut *tx)
            .await
            .map_err(codec::store_error)?;
        }
        tx.commit().await.map_err(codec::store_error)?;
        Ok(verdict.map(|_| ()))
    }

    async fn finish_place(&self, show: ShowId, user: &UserId) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE waiting_room_places SET state = 'DONE' WHERE show_id = $1 AND user_id = $2 \
                 AND state IN ('WAITING', 'ADMITTED', 'SHOPPING')",
            show.as_uuid(),
            user.as_str()
        )
        .execute(self.pool())
        .await
        .map_err(codec::store_error)?;
        Ok(done.rows_affected() > 0)
    }
}
