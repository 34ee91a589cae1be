//! The WebSocket connection registry in DynamoDB.
//!
//! One table, two kinds of item under the connection's partition key `pk`:
//! - `sk = "CONNECTION"` with `userId`: found by user through the `byUser` index;
//! - `sk = "SHOW#<showId>"` with `showId`: one per subscription, found through `byShow`.
//!
//! Every item carries `expiresAt` (epoch seconds), the table's TTL attribute: API Gateway drops a
//! connection after two hours at most, and a `$disconnect` that never arrived must not leave
//! subscribers behind forever. Readers also skip items past their expiry, since DynamoDB deletes
//! expired items lazily.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use booking_core::ShowId;
use booking_core::UserId;
use booking_core::ports::{ConnectionRegistry, StoreError, Subscription};
use chrono::Utc;
use std::collections::HashMap;

const CONNECTION_SK: &str = "CONNECTION";
const BY_USER: &str = "byUser";
const BY_SHOW: &str = "byShow";

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

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// Whether an item is before its `expiresAt` at `now` (epoch seconds): DynamoDB deletes expired
/// items only lazily.
fn is_live(item: &HashMap<String, AttributeValue>, now: i64) -> bool {
    match item.get("expiresAt") {
        Some(AttributeValue::N(n)) => n.parse::<i64>().map_or(true, |t| t > now),
        _ => true,
    }
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

#[async_trait]
impl ConnectionRegistry for DynamoRegistry {
    #[tracing::instrument(skip_all, fields(connection))]
    async fn connect(&self, connection: &str, user: &UserId) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(connection))
            .item("sk", s(CONNECTION_SK))
            .item("userId", s(user.as_str()))
            .item(
                "connectedAt",
                AttributeValue::N(Utc::now().timestamp().to_string()),
            )
            .item("expiresAt", self.expires_at())
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(connection, show_id = %show))]
    async fn subscribe(
        &self,
        connection: &str,
        show: ShowId,
        max: usize,
    ) -> Result<Subscription, StoreError> {
        let registered = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(connection))
            .key("sk", s(CONNECTION_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        if registered.item().is_none() {
            return Ok(Subscription::UnknownConnection);
        }
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
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(connection))
            .item("sk", s(show_sk(show)))
            .item("showId", s(show.to_string()))
            .item("expiresAt", self.expires_at())
            .send()
            .await
            .map_err(sdk_error)?;
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
            .projection_expression("pk, sk")
            .send()
            .await
            .map_err(sdk_error)?;
        for item in items.items() {
            let Some(sk) = item.get("sk").cloned() else {
                continue;
            };
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
}

/// Creates the registry's table as the template declares it (keys `pk`/`sk`, indexes `byUser`
/// and `byShow`, TTL on `expiresAt`): for local emulators and tests.
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
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(index(BY_USER, "userId"))
        .global_secondary_indexes(index(BY_SHOW, "showId"))
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
