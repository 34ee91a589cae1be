//! `IdempotencyStore`: the keys clients send with their POSTs, and the answers to replay.
//!
//! `claim_key` is one transaction: the key's row is inserted if absent, then locked
//! (`SELECT ... FOR UPDATE`) and decided on, so two attempts with one key, on any two Lambda
//! instances, cannot both claim it: the second waits for the first's commit and sees its lease.

use crate::PgStore;
use crate::codec;
use async_trait::async_trait;
use booking_core::ports::{IdempotencyStore, KeyAttempt, KeyClaim, StoreError, StoredResponse};
use booking_core::{IdempotencyKey, UserId};
use chrono::{DateTime, Utc};

#[async_trait]
impl IdempotencyStore for PgStore {
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
        let mut tx = self.pool().begin().await.map_err(codec::store_error)?;
        // The row is inserted if absent, then read locked. The purge may delete an expired row
        // between the two; the insert is then simply tried again.
        let row = loop {
            // A new row is a new use, claimed at once; `inserted` tells it apart from an old one.
            let inserted = sqlx::query_scalar!(
                "INSERT INTO idempotency_keys \
                     (user_id, idempotency_key, fingerprint, use_id, state, created_at, \
                      lease_until, expires_at) \
                 VALUES ($1, $2, $3, $4, 'IN_FLIGHT', $5, $6, $7) \
                 ON CONFLICT (user_id, idempotency_key) DO NOTHING \
                 RETURNING use_id",
                user.as_str(),
                key.as_str(),
                fingerprint,
                new_use_id,
                now,
                lease_until,
                expires_at
            )
            .fetch_optional(&mut *tx)
            .await
            .map_err(codec::store_error)?;
            if let Some(use_id) = inserted {
                tx.commit().await.map_err(codec::store_error)?;
                return Ok(KeyClaim::Claimed { use_id });
            }
            let row = sqlx::query!(
                "SELECT fingerprint, use_id, state, response_status, response_body, \
                        response_location, lease_until, expires_at \
                 FROM idempotency_keys WHERE user_id = $1 AND idempotency_key = $2 FOR UPDATE",
                user.as_str(),
                key.as_str()
            )
            .fetch_optional(&mut *tx)
            .await
            .map_err(codec::store_error)?;
            if let Some(row) = row {
                break row;
            }
        };
        let claim = if row.expires_at <= now {
            // Kept past its time: a new use of the key.
            sqlx::query!(
                "UPDATE idempotency_keys SET fingerprint = $3, use_id = $4, state = 'IN_FLIGHT', \
                     response_status = NULL, response_body = NULL, response_location = NULL, \
                     created_at = $5, lease_until = $6, expires_at = $7 \
                 WHERE user_id = $1 AND idempotency_key = $2",
                user.as_str(),
                key.as_str(),
                fingerprint,
                new_use_id,
                now,
                lease_until,
                expires_at
            )
            .execute(&mut *tx)
            .await
            .map_err(codec::store_error)?;
            KeyClaim::Claimed {
                use_id: new_use_id.to_owned(),
            }
        } else if row.fingerprint != fingerprint {
            KeyClaim::Reused
        } else if row.state == "DONE" {
            KeyClaim::Done(StoredResponse {
                status: row
                    .response_status
                    .and_then(|s| u16::try_from(s).ok())
                    .ok_or_else(|| codec::corrupt("idempotency_keys.response_status"))?,
                body: row.response_body.unwrap_or_default(),
                location: row.response_location,
            })
        } else if row.lease_until > now {
            KeyClaim::InFlight
        } else {
            sqlx::query!(
                "UPDATE idempotency_keys SET lease_until = $3 \
                 WHERE user_id = $1 AND idempotency_key = $2",
                user.as_str(),
                key.as_str(),
                lease_until
            )
            .execute(&mut *tx)
            .await
            .map_err(codec::store_error)?;
            KeyClaim::Claimed { use_id: row.use_id }
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
        sqlx::query!(
            "UPDATE idempotency_keys SET state = 'DONE', response_status = $4, \
                 response_body = $5, response_location = $6 \
             WHERE user_id = $1 AND idempotency_key = $2 AND use_id = $3",
            user.as_str(),
            key.as_str(),
            use_id,
            i32::from(response.status),
            &response.body,
            response.location.as_deref()
        )
        .execute(self.pool())
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
        sqlx::query!(
            "UPDATE idempotency_keys SET lease_until = $4 \
             WHERE user_id = $1 AND idempotency_key = $2 AND use_id = $3 AND state = 'IN_FLIGHT'",
            user.as_str(),
            key.as_str(),
            use_id,
            now
        )
        .execute(self.pool())
        .await
        .map_err(codec::store_error)?;
        Ok(())
    }

    async fn purge_keys(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query!("DELETE FROM idempotency_keys WHERE expires_at <= $1", now)
            .execute(self.pool())
            .await
            .map_err(codec::store_error)?;
        Ok(done.rows_affected())
    }
}
