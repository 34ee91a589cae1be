//! The WebSocket connection registry in DynamoDB.
//!
//! One table. Under the connection's partition key `pk`:
//! - `sk = "CONNECTION"` with `userId` (found by user through the `byUser` index), the
//!   `tokenExpiresAt` of the token it was opened with and an `expiryShard` (found, once that
//!   time has passed, through the sparse `byTokenExpiry` index, so the expirer can close it);
//! - `sk = "SHOW#<showId>"` with `showId`: one per subscription, found through `byShow`.
//!
//! Under `pk = "USER#<userId>"`, `sk = "SLOT#<n>"` for `n` below the per-user cap: the slot a
//! connection of that user occupies. A connection is registered only once a conditional write
//! has claimed a free slot, so the cap is exact even when many connections of one user arrive
//! at the same moment (counting the `byUser` index, which DynamoDB keeps eventually
//! consistent, let simultaneous connections all pass). A slot is free when no connection holds
//! it, or when the lease of the one that did has ended (its token expired, or the registry's
//! TTL passed because its `$disconnect` never arrived): a lost `$disconnect` cannot lock a user
//! out.
//!
//! Every item carries `expiresAt` (epoch seconds), the table's TTL attribute: API Gateway drops a
//! connection after two hours at most, and a `$disconnect` that never arrived must not leave
//! subscribers behind forever. Readers also skip items past their expiry, since DynamoDB deletes
//! expired items lazily, and items whose token has expired: nothing is pushed to such a socket.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use booking_core::ShowId;
use booking_core::UserId;
use booking_core::ports::{ConnectionRegistry, Registration, StoreError, Subscription};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

const CONNECTION_SK: &str = "CONNECTION";
const BY_USER: &str = "byUser";
const BY_SHOW: &str = "byShow";
const BY_TOKEN_EXPIRY: &str = "byTokenExpiry";
/// Partitions of the `byTokenExpiry` index: a flash crowd's connections spread over several
/// index partitions instead of all writing one.
const EXPIRY_SHARDS: u32 = 8;

pub struct DynamoRegistry {
    client: aws_sdk_dynamodb::Client,
    table: String,
    ttl_seconds: i64,
}

fn sdk_error<E, R>(e: aws_sdk_dynamodb::error::SdkError<E, R>) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::unavailable(format!("DynamoDB: {}", crate::describe(&e))).caused_by(e)
}

/// Whether a conditional write was refused because its condition did not hold (as opposed to
/// DynamoDB failing).
fn condition_failed<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Whether an item is before its `expiresAt` and its `tokenExpiresAt` at `now` (epoch seconds):
/// DynamoDB deletes expired items only lazily, and a connection whose token has expired is
/// closed, not served.
fn is_live(item: &HashMap<String, AttributeValue>, now: i64) -> bool {
    ["expiresAt", "tokenExpiresAt"]
        .iter()
        .all(|name| number(item, name).is_none_or(|t| t > now))
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

fn user_pk(user: &str) -> String {
    format!("USER#{user}")
}

fn slot_sk(slot: usize) -> String {
    format!("SLOT#{slot}")
}

/// The `byTokenExpiry` partition a connection is indexed under.
fn expiry_shard(connection: &str) -> String {
    let sum = connection
        .bytes()
        .fold(0u32, |sum, b| sum.wrapping_add(u32::from(b)));
    format!("S{}", sum % EXPIRY_SHARDS)
}

fn show_sk(show: ShowId) -> String {
    format!("SHOW#{show}")
}

impl DynamoRegistry {
    /// `ttl_seconds`: how long a connection is remembered without being refreshed.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        ttl_seconds: i64,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            ttl_seconds,
        }
    }

    /// The same table, remembering what it writes for `ttl_seconds` instead.
    pub fn with_ttl(&self, ttl_seconds: i64) -> Self {
        Self::new(self.client.clone(), self.table.clone(), ttl_seconds)
    }

    fn expires_at(&self) -> AttributeValue {
        AttributeValue::N((Utc::now().timestamp() + self.ttl_seconds).to_string())
    }

    /// Connection ids of the live items an index query returns.
    async fn query_index(
        &self,
        index: &str,
        key: &str,
        value: String,
    ) -> Result<Vec<String>, StoreError> {
        let now = Utc::now().timestamp();
        let mut found = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression("#k = :v")
                .expression_attribute_names("#k", key)
                .expression_attribute_values(":v", s(value.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            for item in page.items() {
                if let (true, Some(AttributeValue::S(id))) = (is_live(item, now), item.get("pk")) {
                    found.push(id.clone());
                }
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        found.sort();
        found.dedup();
        Ok(found)
    }
}

impl DynamoRegistry {
    /// Claims the first free one of the user's `max` slots for `connection` until `lease_end`;
    /// `None` when every slot is taken.
    async fn claim_slot(
        &self,
        connection: &str,
        user: &UserId,
        max: usize,
        now: i64,
        lease_end: i64,
    ) -> Result<Option<usize>, StoreError> {
        for slot in 0..max {
            let claimed = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(user_pk(user.as_str())))
                .item("sk", s(slot_sk(slot)))
                .item("connection", s(connection))
                .item("expiresAt", n(lease_end))
                .condition_expression(
                    "attribute_not_exists(pk) OR expiresAt <= :now OR #connection = :connection",
                )
                .expression_attribute_names("#connection", "connection")
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":connection", s(connection))
                .send()
                .await;
            match claimed {
                Ok(_) => return Ok(Some(slot)),
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(sdk_error(e)),
            }
        }
        Ok(None)
    }

    /// The connection's own item, read consistently, if it is registered and live.
    async fn live_connection(
        &self,
        connection: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(connection))
            .key("sk", s(CONNECTION_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        let now = Utc::now().timestamp();
        Ok(found.item.filter(|item| is_live(item, now)))
    }
}

#[async_trait]
impl ConnectionRegistry for DynamoRegistry {
    #[tracing::instrument(skip_all, fields(connection))]
    async fn connect(
        &self,
        connection: &str,
        user: &UserId,
        token_expires_at: DateTime<Utc>,
        max_per_user: usize,
    ) -> Result<Registration, StoreError> {
        let now = Utc::now().timestamp();
        let until = token_expires_at.timestamp();
        let Some(slot) = self
            .claim_slot(
                connection,
                user,
                max_per_user,
                now,
                (now + self.ttl_seconds).min(until),
            )
            .await?
        else {
            return Ok(Registration::TooMany);
        };
        let recorded = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(connection))
            .item("sk", s(CONNECTION_SK))
            .item("userId", s(user.as_str()))
            .item("slot", n(slot as i64))
            .item("connectedAt", n(now))
            .item("tokenExpiresAt", n(until))
            .item("expiryShard", s(expiry_shard(connection)))
            .item("expiresAt", self.expires_at())
            .send()
            .await;
        if let Err(e) = recorded {
            // The connection is refused (503): give its slot back now rather than when the
            // lease ends, or the user would be one connection short until then.
            if let Err(release) = self
                .release_slot(connection, user.as_str(), slot as i64)
                .await
            {
                tracing::warn!(connection, error = %booking_core::Chain(&release), "slot kept until its lease ends");
            }
            return Err(sdk_error(e));
        }
        Ok(Registration::Registered)
    }

    #[tracing::instrument(skip_all, fields(connection, show_id = %show))]
    async fn subscribe(
        &self,
        connection: &str,
        show: ShowId,
        max: usize,
    ) -> Result<Subscription, StoreError> {
        let Some(registered) = self.live_connection(connection).await? else {
            return Ok(Subscription::UnknownConnection);
        };
        // The connection's own items, read consistently: its subscriptions so far. Counted, then
        // written: subscribes of one connection handled at the same moment (API Gateway runs
        // `$default` invocations in parallel) can pass the cap together.
        let watched = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :show)")
            .expression_attribute_values(":pk", s(connection))
            .expression_attribute_values(":show", s("SHOW#"))
            .projection_expression("sk, expiresAt")
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        let now = Utc::now().timestamp();
        let live: Vec<&String> = watched
            .items()
            .iter()
            .filter(|item| is_live(item, now))
            .filter_map(|item| match item.get("sk") {
                Some(AttributeValue::S(sk)) => Some(sk),
                _ => None,
            })
            .collect();
        let this_show = show_sk(show);
        if !live.contains(&&this_show) && live.len() >= max {
            return Ok(Subscription::TooMany);
        }
        let mut subscription = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(connection))
            .item("sk", s(show_sk(show)))
            .item("showId", s(show.to_string()))
            .item("expiresAt", self.expires_at());
        // The subscription ends with the connection's token: nothing is pushed past it.
        if let Some(until) = registered.get("tokenExpiresAt") {
            subscription = subscription.item("tokenExpiresAt", until.clone());
        }
        subscription.send().await.map_err(sdk_error)?;
        Ok(Subscription::Subscribed)
    }

    async fn unsubscribe(&self, connection: &str, show: ShowId) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(connection))
            .key("sk", s(show_sk(show)))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(connection))]
    async fn disconnect(&self, connection: &str) -> Result<(), StoreError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(connection))
            .projection_expression("pk, sk, userId, #slot")
            .expression_attribute_names("#slot", "slot")
            .send()
            .await
            .map_err(sdk_error)?;
        for item in items.items() {
            let Some(sk) = item.get("sk").cloned() else {
                continue;
            };
            if let (Some(AttributeValue::S(user)), Some(slot)) =
                (item.get("userId"), number(item, "slot"))
            {
                self.release_slot(connection, user, slot).await?;
            }
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(connection))
                .key("sk", sk)
                .send()
                .await
                .map_err(sdk_error)?;
        }
        Ok(())
    }

    async fn connections_of(&self, user: &UserId) -> Result<Vec<String>, StoreError> {
        self.query_index(BY_USER, "userId", user.as_str().to_owned())
            .await
    }

    async fn subscribers(&self, show: ShowId) -> Result<Vec<String>, StoreError> {
        self.query_index(BY_SHOW, "showId", show.to_string()).await
    }

    async fn token_expired(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        for shard in 0..EXPIRY_SHARDS {
            if found.len() >= limit {
                break;
            }
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(BY_TOKEN_EXPIRY)
                .key_condition_expression("expiryShard = :shard AND tokenExpiresAt <= :now")
                .expression_attribute_values(":shard", s(format!("S{shard}")))
                .expression_attribute_values(":now", n(now.timestamp()))
                .limit(i32::try_from(limit - found.len()).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(sdk_error)?;
            found.extend(page.items().iter().filter_map(|item| match item.get("pk") {
                Some(AttributeValue::S(id)) => Some(id.clone()),
                _ => None,
            }));
        }
        Ok(found)
    }
}

impl DynamoRegistry {
    /// Frees the user's slot `slot` if `connection` still holds it (a later connection may have
    /// claimed it after this one's lease ended).
    async fn release_slot(
        &self,
        connection: &str,
        user: &str,
        slot: i64,
    ) -> Result<(), StoreError> {
        let released = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(user_pk(user)))
            .key(
                "sk",
                s(slot_sk(usize::try_from(slot).unwrap_or(usize::MAX))),
            )
            .condition_expression("#connection = :connection")
            .expression_attribute_names("#connection", "connection")
            .expression_attribute_values(":connection", s(connection))
            .send()
            .await;
        match released {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(sdk_error(e)),
        }
    }
}

/// Creates the registry's table as the template declares it (keys `pk`/`sk`, indexes `byUser`,
/// `byShow` and `byTokenExpiry`, TTL on `expiresAt`): for local emulators and tests.
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), StoreError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("complete attribute definition")
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("complete key schema")
    };
    let index = |name: &str, attribute: &str| {
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(attribute, KeyType::Hash))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .expect("complete index")
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .attribute_definitions(attribute("userId"))
        .attribute_definitions(attribute("showId"))
        .attribute_definitions(attribute("expiryShard"))
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("tokenExpiresAt")
                .attribute_type(ScalarAttributeType::N)
                .build()
                .expect("complete attribute definition"),
        )
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(index(BY_USER, "userId"))
        .global_secondary_indexes(index(BY_SHOW, "showId"))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(BY_TOKEN_EXPIRY)
                .key_schema(key("expiryShard", KeyType::Hash))
                .key_schema(key("tokenExpiresAt", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()
                .expect("complete index"),
        )
        .send()
        .await
        .map_err(sdk_error)?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expiresAt")
                .enabled(true)
                .build()
                .expect("complete TTL specification"),
        )
        .send()
        .await
        .map_err(sdk_error)?;
    Ok(())
}
