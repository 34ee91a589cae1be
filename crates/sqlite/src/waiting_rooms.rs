//! `WaitingRoomStore`: each show's waiting room and its places, in two tables
//! (`migrations/sqlite/0007_waiting_rooms.sql`, `0008_waiting_room_pace_and_switch.sql`).
//!
//! Every change is one `BEGIN IMMEDIATE` transaction on the single writer, so a room's joins,
//! ticks and admissions are applied one at a time, as the pure `Room` applies them; a tick is
//! set-based (one statement per rule over the room's places), not a loop over its people.

use crate::SqliteStore;
use crate::codec;
use async_trait::async_trait;
use booking_core::ports::{ListedRoom, RoomRules, RoomSummary, StoreError, WaitingRoomStore};
use booking_core::waiting_room::{
    AdmissionCredit, AdmissionError, AdmissionPace, DemandMeter, Joined, Place, PlaceState,
    PlaceStatus, RoomCounts, RoomPolicy, Tick, admissions_now, pre_queue_ranks,
};
use booking_core::{ShowId, UserId};
use chrono::{DateTime, Duration, Utc};
use sqlx::SqliteConnection;

/// A room's row: its policy, whether its order is drawn or it is armed, its credit, pace,
/// demand and next ticket.
#[derive(sqlx::FromRow)]
struct RoomRow {
    opens_at: i64,
    admit_per_second: i64,
    max_active: Option<i64>,
    admission_ttl_ms: i64,
    shopping_ttl_ms: i64,
    grace_ms: i64,
    switch_on_above: Option<i64>,
    opened_at: Option<i64>,
    armed: bool,
    credit_milli: i64,
    credited_at: Option<i64>,
    pace_since: Option<i64>,
    pace_admitted: i64,
    pace_milli: Option<i64>,
    demand_since: Option<i64>,
    demand_count: i64,
    next_ticket: i64,
}

struct StoredRoom {
    policy: RoomPolicy,
    opened: bool,
    armed: bool,
    credit: AdmissionCredit,
    pace: AdmissionPace,
    demand: DemandMeter,
    next_ticket: u64,
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

fn decode_room(row: RoomRow) -> Result<StoredRoom, StoreError> {
    let count = |v: i64, column: &str| {
        u32::try_from(v).map_err(|_| codec::corrupt(format_args!("waiting_rooms.{column}: {v}")))
    };
    let number = |v: i64, column: &str| {
        u64::try_from(v).map_err(|_| codec::corrupt(format_args!("waiting_rooms.{column}: {v}")))
    };
    let time =
        |ms: Option<i64>, column: &str| ms.map(|ms| codec::from_millis(ms, column)).transpose();
    Ok(StoredRoom {
        policy: RoomPolicy {
            opens_at: codec::from_millis(row.opens_at, "waiting_rooms.opens_at")?,
            admit_per_second: count(row.admit_per_second, "admit_per_second")?,
            max_active: row.max_active.map(|m| count(m, "max_active")).transpose()?,
            admission_ttl: Duration::milliseconds(row.admission_ttl_ms),
            shopping_ttl: Duration::milliseconds(row.shopping_ttl_ms),
            grace: Duration::milliseconds(row.grace_ms),
            switch_on_above: row
                .switch_on_above
                .map(|m| count(m, "switch_on_above"))
                .transpose()?,
        },
        opened: row.opened_at.is_some(),
        armed: row.armed,
        credit: AdmissionCredit {
            milli: number(row.credit_milli, "credit_milli")?,
            at: time(row.credited_at, "waiting_rooms.credited_at")?,
        },
        pace: AdmissionPace {
            since: time(row.pace_since, "waiting_rooms.pace_since")?,
            admitted: number(row.pace_admitted, "pace_admitted")?,
            measured_milli: row
                .pace_milli
                .map(|m| number(m, "pace_milli"))
                .transpose()?,
        },
        demand: DemandMeter {
            since: time(row.demand_since, "waiting_rooms.demand_since")?,
            requests: number(row.demand_count, "demand_count")?,
        },
        next_ticket: number(row.next_ticket, "next_ticket")?,
    })
}

async fn load_room(
    conn: &mut SqliteConnection,
    show: ShowId,
) -> Result<Option<StoredRoom>, StoreError> {
    let row: Option<RoomRow> = sqlx::query_as(
        "SELECT opens_at, admit_per_second, max_active, admission_ttl_ms, shopping_ttl_ms, \
             grace_ms, switch_on_above, opened_at, armed, credit_milli, credited_at, pace_since, \
             pace_admitted, pace_milli, demand_since, demand_count, next_ticket \
         FROM waiting_rooms WHERE show_id = ?1",
    )
    .bind(show.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    row.map(decode_room).transpose()
}

/// A place's row.
type PlaceRow = (
    i64,         // ticket
    String,      // user_id
    i64,         // joined_at
    i64,         // last_seen
    Option<i64>, // queue_rank
    String,      // state
    Option<i64>, // admitted_until
    Option<i64>, // shopping_since
);

fn decode_place(row: PlaceRow) -> Result<(Place, Option<i64>), StoreError> {
    let (ticket, user, joined_at, last_seen, rank, state, admitted_until, shopping_since) = row;
    let time = |ms: Option<i64>, column: &str| ms.map(|ms| codec::from_millis(ms, column));
    let state = PlaceState::from_parts(
        &state,
        time(admitted_until, "waiting_room_places.admitted_until").transpose()?,
        time(shopping_since, "waiting_room_places.shopping_since").transpose()?,
    )
    .ok_or_else(|| codec::corrupt(format_args!("waiting_room_places.state: {state}")))?;
    Ok((
        Place {
            ticket: u64::try_from(ticket)
                .map_err(|_| codec::corrupt("waiting_room_places.ticket"))?,
            user: codec::parse(&user, "waiting_room_places.user_id")?,
            joined_at: codec::from_millis(joined_at, "waiting_room_places.joined_at")?,
            last_seen: codec::from_millis(last_seen, "waiting_room_places.last_seen")?,
            state,
        },
        rank,
    ))
}

/// The user's latest place in the room, with its queue rank.
async fn latest_place(
    conn: &mut SqliteConnection,
    show: ShowId,
    user: &UserId,
) -> Result<Option<(Place, Option<i64>)>, StoreError> {
    let row: Option<PlaceRow> = sqlx::query_as(
        "SELECT ticket, user_id, joined_at, last_seen, queue_rank, state, admitted_until, \
             shopping_since \
         FROM waiting_room_places \
         WHERE show_id = ?1 AND user_id = ?2 ORDER BY ticket DESC LIMIT 1",
    )
    .bind(show.to_string())
    .bind(user.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    row.map(decode_place).transpose()
}

/// Tickets a statement's `RETURNING ticket` gave back, in ticket order (the order the pure
/// room reports them in).
fn sorted_tickets(rows: Vec<(i64,)>) -> Vec<u64> {
    let mut tickets: Vec<u64> = rows.into_iter().map(|(t,)| t as u64).collect();
    tickets.sort_unstable();
    tickets
}

fn millis(d: Duration) -> i64 {
    d.num_milliseconds()
}

#[async_trait]
impl WaitingRoomStore for SqliteStore {
    async fn put_room(&self, show: ShowId, policy: &RoomPolicy) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO waiting_rooms (show_id, opens_at, admit_per_second, max_active, \
                 admission_ttl_ms, shopping_ttl_ms, grace_ms, switch_on_above, armed) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8 IS NOT NULL) \
             ON CONFLICT (show_id) DO UPDATE SET opens_at = excluded.opens_at, \
                 admit_per_second = excluded.admit_per_second, max_active = excluded.max_active, \
                 admission_ttl_ms = excluded.admission_ttl_ms, \
                 shopping_ttl_ms = excluded.shopping_ttl_ms, grace_ms = excluded.grace_ms, \
                 switch_on_above = excluded.switch_on_above, \
                 armed = armed AND excluded.armed, \
                 pace_since = NULL, pace_admitted = 0, pace_milli = NULL",
        )
        .bind(show.to_string())
        .bind(codec::millis(policy.opens_at))
        .bind(i64::from(policy.admit_per_second.max(1)))
        .bind(policy.max_active.map(i64::from))
        .bind(millis(policy.admission_ttl))
        .bind(millis(policy.shopping_ttl))
        .bind(millis(policy.grace))
        .bind(policy.switch_on_above.map(i64::from))
        .execute(self.writer())
        .await
        .map_err(codec::store_error)?;
        Ok(())
    }

    async fn remove_room(&self, show: ShowId) -> Result<bool, StoreError> {
        let mut tx = self
            .writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(codec::store_error)?;
        sqlx::query("DELETE FROM waiting_room_places WHERE show_id = ?1")
            .bind(show.to_string())
            .execute(&mut *tx)
            .await
            .map_err(codec::store_error)?;
        let removed = sqlx::query("DELETE FROM waiting_rooms WHERE show_id = ?1")
            .bind(show.to_string())
            .execute(&mut *tx)
            .await
            .map_err(codec::store_error)?
            .rows_affected();
        tx.commit().await.map_err(codec::store_error)?;
        Ok(removed > 0)
    }

    async fn room(&self, show: ShowId) -> Result<Option<RoomSummary>, StoreError> {
        let mut conn = self.readers().acquire().await.map_err(codec::store_error)?;
        let Some(room) = load_room(&mut conn, show).await? else {
            return Ok(None);
        };
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM waiting_room_places WHERE show_id = ?1 GROUP BY state",
        )
        .bind(show.to_string())
        .fetch_all(&mut *conn)
        .await
        .map_err(codec::store_error)?;
        let mut counts = RoomCounts::default();
        for (state, count) in rows {
            if !counts.add_named(&state, count as u64) {
                return Err(codec::corrupt(format_args!(
                    "waiting_room_places.state: {state}"
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
        let mut conn = self.readers().acquire().await.map_err(codec::store_error)?;
        Ok(load_room(&mut conn, show).await?.map(StoredRoom::rules))
    }

    async fn rooms(&self) -> Result<Vec<ListedRoom>, StoreError> {
        let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
            "SELECT show_id, CASE WHEN armed THEN switch_on_above END FROM waiting_rooms",
        )
        .fetch_all(self.readers())
        .await
        .map_err(codec::store_error)?;
        rows.iter()
            .map(|(show, armed_above)| {
                Ok(ListedRoom {
                    show: codec::parse(show, "waiting_rooms.show_id")?,
                    armed_above: armed_above.map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
                })
            })
            .collect()
    }

    async fn record_demand(
        &self,
        show: ShowId,
        requests: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self
            .writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(codec::store_error)?;
        let Some(mut room) = load_room(&mut tx, show).await? else {
            return Ok(false);
        };
        let Some(per_second) = room.policy.switch_on_above.filter(|_| room.armed) else {
            return Ok(false);
        };
        let over = room.demand.record(now, requests, per_second);
        // Switched on: it opens now, and its next tick draws the order of whoever joined.
        sqlx::query(
            "UPDATE waiting_rooms SET demand_since = ?2, demand_count = ?3, \
                 armed = NOT ?4, opens_at = CASE WHEN ?4 THEN ?5 ELSE opens_at END \
             WHERE show_id = ?1",
        )
        .bind(show.to_string())
        .bind(room.demand.since.map(codec::millis))
        .bind(room.demand.requests as i64)
        .bind(over)
        .bind(codec::millis(now))
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
        let mut tx = self
            .writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(codec::store_error)?;
        let Some(room) = load_room(&mut tx, show).await? else {
            return Ok(None);
        };
        let live: Option<(i64,)> = sqlx::query_as(
            "SELECT ticket FROM waiting_room_places WHERE show_id = ?1 AND user_id = ?2 \
                 AND state IN ('WAITING', 'ADMITTED', 'SHOPPING')",
        )
        .bind(show.to_string())
        .bind(user.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        let joined = if let Some((ticket,)) = live {
            sqlx::query(
                "UPDATE waiting_room_places SET last_seen = ?3 WHERE show_id = ?1 AND ticket = ?2",
            )
            .bind(show.to_string())
            .bind(ticket)
            .bind(codec::millis(now))
            .execute(&mut *tx)
            .await
            .map_err(codec::store_error)?;
            Joined {
                ticket: ticket as u64,
                created: false,
            }
        } else {
            let ticket = room.next_ticket as i64;
            // Before the opening the order is not known: the opening draws the pre-queue's.
            let rank = room.opened.then_some(ticket);
            sqlx::query(
                "INSERT INTO waiting_room_places \
                     (show_id, ticket, user_id, joined_at, last_seen, queue_rank, state) \
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5, 'WAITING')",
            )
            .bind(show.to_string())
            .bind(ticket)
            .bind(user.as_str())
            .bind(codec::millis(now))
            .bind(rank)
            .execute(&mut *tx)
            .await
            .map_err(codec::store_error)?;
            sqlx::query("UPDATE waiting_rooms SET next_ticket = ?2 WHERE show_id = ?1")
                .bind(show.to_string())
                .bind(ticket + 1)
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
        let mut conn = match seen_at {
            Some(_) => self.writer().acquire().await,
            None => self.readers().acquire().await,
        }
        .map_err(codec::store_error)?;
        if let Some(now) = seen_at {
            sqlx::query(
                "UPDATE waiting_room_places SET last_seen = ?3 WHERE show_id = ?1 AND ticket = \
                     (SELECT MAX(ticket) FROM waiting_room_places \
                      WHERE show_id = ?1 AND user_id = ?2)",
            )
            .bind(show.to_string())
            .bind(user.as_str())
            .bind(codec::millis(now))
            .execute(&mut *conn)
            .await
            .map_err(codec::store_error)?;
        }
        let Some((place, rank)) = latest_place(&mut conn, show, user).await? else {
            return Ok(None);
        };
        let position = match (place.state, rank) {
            (PlaceState::Waiting, Some(rank)) => {
                let (ahead,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM waiting_room_places \
                     WHERE show_id = ?1 AND state = 'WAITING' AND queue_rank < ?2",
                )
                .bind(show.to_string())
                .bind(rank)
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
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT user_id, ticket FROM waiting_room_places \
             WHERE show_id = ?1 AND state = 'WAITING' AND queue_rank IS NOT NULL \
             ORDER BY queue_rank",
        )
        .bind(show.to_string())
        .fetch_all(self.readers())
        .await
        .map_err(codec::store_error)?;
        rows.into_iter()
            .map(|(user, ticket)| {
                Ok((
                    codec::parse(&user, "waiting_room_places.user_id")?,
                    ticket as u64,
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
        let mut tx = self
            .writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(codec::store_error)?;
        let Some(mut room) = load_room(&mut tx, show).await? else {
            return Ok(Tick::default());
        };
        let show_id = show.to_string();
        let now_ms = codec::millis(now);
        if !room.opened {
            if room.armed || now < room.policy.opens_at {
                return Ok(Tick::default());
            }
            // The opening: the pre-queue's order is drawn once, and whoever waited in it
            // counts as seen at the opening.
            let ranks = pre_queue_ranks(room.next_ticket - 1, seed);
            for (index, rank) in ranks.iter().enumerate() {
                sqlx::query(
                    "UPDATE waiting_room_places SET queue_rank = ?3 \
                     WHERE show_id = ?1 AND ticket = ?2",
                )
                .bind(&show_id)
                .bind(index as i64 + 1)
                .bind(*rank as i64)
                .execute(&mut *tx)
                .await
                .map_err(codec::store_error)?;
            }
            sqlx::query(
                "UPDATE waiting_room_places SET last_seen = MAX(last_seen, ?2) WHERE show_id = ?1",
            )
            .bind(&show_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(codec::store_error)?;
            sqlx::query("UPDATE waiting_rooms SET opened_at = ?2 WHERE show_id = ?1")
                .bind(&show_id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(codec::store_error)?;
            room.opened = true;
            room.credit = AdmissionCredit::at_opening(room.policy.admit_per_second, now);
        }

        let abandoned: Vec<(i64,)> = sqlx::query_as(
            "UPDATE waiting_room_places SET state = 'ABANDONED' \
             WHERE show_id = ?1 AND state = 'WAITING' AND last_seen < ?2 RETURNING ticket",
        )
        .bind(&show_id)
        .bind(codec::millis(now - room.policy.grace))
        .fetch_all(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        let expired: Vec<(i64,)> = sqlx::query_as(
            "UPDATE waiting_room_places SET state = 'EXPIRED' \
             WHERE show_id = ?1 AND ((state = 'ADMITTED' AND admitted_until <= ?2) \
                 OR (state = 'SHOPPING' AND shopping_since <= ?3)) RETURNING ticket",
        )
        .bind(&show_id)
        .bind(now_ms)
        .bind(codec::millis(now - room.policy.shopping_ttl))
        .fetch_all(&mut *tx)
        .await
        .map_err(codec::store_error)?;

        room.credit.earn(room.policy.admit_per_second, now);
        let (active,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM waiting_room_places \
             WHERE show_id = ?1 AND state IN ('ADMITTED', 'SHOPPING')",
        )
        .bind(&show_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        let count = admissions_now(&room.credit, room.policy.max_active, active as u64);
        let expires_at = now + room.policy.admission_ttl;
        let mut admitted: Vec<(i64, i64, String)> = if count > 0 {
            sqlx::query_as(
                "UPDATE waiting_room_places SET state = 'ADMITTED', admitted_until = ?3 \
                 WHERE show_id = ?1 AND state = 'WAITING' AND ticket IN ( \
                     SELECT ticket FROM waiting_room_places \
                     WHERE show_id = ?1 AND state = 'WAITING' AND queue_rank IS NOT NULL \
                     ORDER BY queue_rank LIMIT ?2) \
                 RETURNING queue_rank, ticket, user_id",
            )
            .bind(&show_id)
            .bind(count as i64)
            .bind(codec::millis(expires_at))
            .fetch_all(&mut *tx)
            .await
            .map_err(codec::store_error)?
        } else {
            Vec::new()
        };
        admitted.sort_unstable();
        room.credit.spend(admitted.len() as u64);
        let (still_waiting,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM waiting_room_places \
                 WHERE show_id = ?1 AND state = 'WAITING' AND queue_rank IS NOT NULL)",
        )
        .bind(&show_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        room.pace.record(now, admitted.len() as u64, still_waiting);
        sqlx::query(
            "UPDATE waiting_rooms SET credit_milli = ?2, credited_at = ?3, pace_since = ?4, \
                 pace_admitted = ?5, pace_milli = ?6 WHERE show_id = ?1",
        )
        .bind(&show_id)
        .bind(room.credit.milli as i64)
        .bind(room.credit.at.map(codec::millis))
        .bind(room.pace.since.map(codec::millis))
        .bind(room.pace.admitted as i64)
        .bind(room.pace.measured_milli.map(|m| m as i64))
        .execute(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        tx.commit().await.map_err(codec::store_error)?;

        let expires_at = codec::truncate_millis(expires_at);
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
        let mut tx = self
            .writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(codec::store_error)?;
        let Some(StoredRoom { policy, .. }) = load_room(&mut tx, show).await? else {
            return Ok(Err(AdmissionError::NoPlace));
        };
        let Some((place, _)) = latest_place(&mut tx, show, user).await? else {
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
            sqlx::query(
                "UPDATE waiting_room_places SET state = 'SHOPPING', shopping_since = ?3 \
                 WHERE show_id = ?1 AND ticket = ?2",
            )
            .bind(show.to_string())
            .bind(ticket as i64)
            .bind(codec::millis(now))
            .execute(&mut *tx)
            .await
            .map_err(codec::store_error)?;
        }
        tx.commit().await.map_err(codec::store_error)?;
        Ok(verdict.map(|_| ()))
    }

    async fn finish_place(&self, show: ShowId, user: &UserId) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE waiting_room_places SET state = 'DONE' WHERE show_id = ?1 AND user_id = ?2 \
                 AND state IN ('WAITING', 'ADMITTED', 'SHOPPING')",
        )
        .bind(show.to_string())
        .bind(user.as_str())
        .execute(self.writer())
        .await
        .map_err(codec::store_error)?;
        Ok(done.rows_affected() > 0)
    }
}
