//! `IdempotencyStore`: the keys clients send with their POSTs, and the answers to replay.
//!
//! `claim_key` reads and writes the key's row in one `BEGIN IMMEDIATE` transaction on the single
//! writer, so two attempts with one key cannot both claim it.

use crate::SqliteStore;
use crate::codec;
use async_trait::async_trait;
use booking_core::ports::{IdempotencyStore, KeyAttempt, KeyClaim, StoreError, StoredResponse};
use booking_core::{IdempotencyKey, UserId};
use chrono::{DateTime, Utc};

#[async_trait]
impl IdempotencyStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(user = %attempt.user))]
    async fn claim_key(&self, attempt: &KeyAttempt<'_>) -> Result<KeyClaim, StoreError> {
        let KeyAttempt {
            user,
            key,
            fingerprint,
            new_use_id,
            now,
            lease_until,
            expires_at,
        } = *attempt;
        let mut tx = self
            .writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(codec::store_error)?;
        type Row = (
            String,
            String,
            String,
            Option<i64>,
            Option<Vec<u8>>,
            Option<String>,
            i64,
            i64,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT fingerprint, use_id, state, response_status, response_body, \
                    response_location, lease_until, expires_at \
             FROM idempotency_keys WHERE user_id = ?1 AND idempotency_key = ?2",
        )
        .bind(user.as_str())
        .bind(key.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        let now_ms = codec::millis(now);
        let claim = match row {
            Some((_, _, _, _, _, _, _, kept_until)) if kept_until > now_ms => {
                let (stored_fingerprint, use_id, state, status, body, location, lease, _) =
                    row.expect("matched Some");
                if stored_fingerprint != fingerprint {
                    KeyClaim::Reused
                } else if state == "DONE" {
                    KeyClaim::Done(StoredResponse {
                        status: status
                            .and_then(|s| u16::try_from(s).ok())
                            .ok_or_else(|| codec::corrupt("idempotency_keys.response_status"))?,
                        body: body.unwrap_or_default(),
                        location,
                    })
                } else if lease > now_ms {
                    KeyClaim::InFlight
                } else {
                    sqlx::query(
                        "UPDATE idempotency_keys SET lease_until = ?3 \
                         WHERE user_id = ?1 AND idempotency_key = ?2",
                    )
                    .bind(user.as_str())
                    .bind(key.as_str())
                    .bind(codec::millis(lease_until))
                    .execute(&mut *tx)
                    .await
                    .map_err(codec::store_error)?;
                    KeyClaim::Claimed { use_id }
                }
            }
            // Unknown, or kept past its time: a new use of the key.
            _ => {
                let use_id = new_use_id.to_owned();
                sqlx::query(
                    "INSERT INTO idempotency_keys \
                         (user_id, idempotency_key, fingerprint, use_id, state, response_status, \
                          response_body, response_location, created_at, lease_until, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, 'IN_FLIGHT', NULL, NULL, NULL, ?5, ?6, ?7) \
                     ON CONFLICT (user_id, idempotency_key) DO UPDATE SET \
                         fingerprint = excluded.fingerprint, use_id = excluded.use_id, \
                         state = 'IN_FLIGHT', response_status = NULL, response_body = NULL, \
                         response_location = NULL, created_at = excluded.created_at, \
                         lease_until = excluded.lease_until, expires_at = excluded.expires_at",
                )
                .bind(user.as_str())
                .bind(key.as_str())
                .bind(fingerprint)
                .bind(&use_id)
                .bind(now_ms)
                .bind(codec::millis(lease_until))
                .bind(codec::millis(expires_at))
                .execute(&mut *tx)
                .await
                .map_err(codec::store_error)?;
                KeyClaim::Claimed { use_id }
            }
        };
        tx.commit().await.map_err(codec::store_error)?;
        Ok(claim)
    }

    async fn complete_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        use_id: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE idempotency_keys SET state = 'DONE', response_status = ?4, \
                 response_body = ?5, response_location = ?6 \
             WHERE user_id = ?1 AND idempotency_key = ?2 AND use_id = ?3",
        )
        .bind(user.as_str())
        .bind(key.as_str())
        .bind(use_id)
        .bind(i64::from(response.status))
        .bind(&response.body)
        .bind(response.location.as_deref())
        .execute(self.writer())
        .await
        .map_err(codec::store_error)?;
        Ok(())
    }

    async fn release_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        use_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE idempotency_keys SET lease_until = ?4 \
             WHERE user_id = ?1 AND idempotency_key = ?2 AND use_id = ?3 AND state = 'IN_FLIGHT'",
        )
        .bind(user.as_str())
        .bind(key.as_str())
        .bind(use_id)
        .bind(codec::millis(now))
        .execute(self.writer())
        .await
        .map_err(codec::store_error)?;
        Ok(())
    }

    async fn purge_keys(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= ?1")
            .bind(codec::millis(now))
            .execute(self.writer())
            .await
            .map_err(codec::store_error)?;
        Ok(done.rows_affected())
    }
}
