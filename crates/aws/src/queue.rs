//! The request queue on SQS FIFO.
//!
//! SQS cannot tell a message's place in its group, so queue positions come from per-show
//! counters (Redis): each request takes a ticket on its first enqueue (a retried enqueue gets the
//! same one back, as SQS deduplicates the message itself) and the worker counts what it decided;
//! a request's place is its ticket less what was decided. Pausing a show is a flag in the store
//! that the worker reads before deciding (nothing to do here): a paused show's messages go back
//! to the queue unprocessed, which keeps their order (FIFO blocks the group meanwhile).

use crate::describe;
use async_trait::async_trait;
use booking_core::ports::{QueueCounters, QueueError, QueueTicket, RequestQueue};
use booking_core::{BookingRequest, Chain, RequestId, ShowId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The body of a queued message. The request itself is read from the store, which is the truth;
/// the message only says which request to decide, for which show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueMessage {
    pub request_id: RequestId,
    pub show_id: ShowId,
}

/// The pace the wait estimate assumes: one worker invocation per show at a time, ten requests
/// per batch, a batch in well under 100 ms.
const ASSUMED_DECISIONS_PER_SECOND: u64 = 100;

pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    counters: Arc<dyn QueueCounters>,
}

impl SqsQueue {
    pub fn new(
        client: aws_sdk_sqs::Client,
        queue_url: impl Into<String>,
        counters: Arc<dyn QueueCounters>,
    ) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            counters,
        }
    }

    /// Sends the request's message under `deduplication_id`, then takes (or finds) its ticket.
    async fn send(
        &self,
        request: &BookingRequest,
        deduplication_id: String,
    ) -> Result<QueueTicket, QueueError> {
        let body = serde_json::to_string(&QueueMessage {
            request_id: request.request_id,
            show_id: request.show_id,
        })
        .map_err(|e| QueueError::unavailable("encode the queue message").caused_by(e))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_group_id(request.show_id.to_string())
            .message_deduplication_id(deduplication_id)
            .send()
            .await
            .map_err(|e| {
                QueueError::unavailable(format!("SQS send: {}", describe(&e))).caused_by(e)
            })?;
        // The message is in the queue: from here on a counter failure only costs the estimate.
        // Remembered as long as the request may wait, and a little longer for late polls.
        let keep_until = request.expires_at + chrono::Duration::minutes(10);
        match self
            .counters
            .take_ticket(request.show_id, request.request_id, keep_until)
            .await
        {
            Ok(ticket) => Ok(self.ticket(request.show_id, ticket).await),
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "queue counters unavailable; position unknown");
                Ok(QueueTicket {
                    position: 1,
                    estimated_wait_seconds: 1,
                })
            }
        }
    }

    /// The place of the request holding `ticket` among its show's undecided requests.
    async fn ticket(&self, show: ShowId, ticket: u64) -> QueueTicket {
        let decided = match self.counters.decided(show).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(show_id = %show, error = %Chain(&e), "queue counters unavailable");
                0
            }
        };
        let position = ticket.saturating_sub(decided).max(1);
        QueueTicket {
            position,
            estimated_wait_seconds: position.div_ceil(ASSUMED_DECISIONS_PER_SECOND),
        }
    }
}

#[async_trait]
impl RequestQueue for SqsQueue {
    #[tracing::instrument(skip_all, fields(request_id = %request.request_id, show_id = %request.show_id))]
    async fn enqueue(&self, request: &BookingRequest) -> Result<QueueTicket, QueueError> {
        // A retried enqueue sends the same message again: SQS drops the copy (within its
        // five-minute deduplication window) by the request id.
        self.send(request, request.request_id.to_string()).await
    }

    #[tracing::instrument(skip_all, fields(request_id = %request.request_id, show_id = %request.show_id))]
    async fn requeue(&self, request: &BookingRequest) -> Result<QueueTicket, QueueError> {
        // The first message may have been sent less than five minutes ago: under the request id
        // SQS would drop this one as its duplicate, so it gets an id of its own. Sending it twice
        // is harmless: a request is decided once, and a later delivery re-sends the outcome.
        self.send(
            request,
            format!(
                "{}-redrive-{}",
                request.request_id,
                uuid::Uuid::new_v4().simple()
            ),
        )
        .await
    }

    /// The request's place from the ticket it took; `None` if it never took one (its enqueue
    /// failed, so it may not be in SQS either: the caller enqueues it again) or the counters
    /// cannot be read.
    async fn position(&self, request: &BookingRequest) -> Option<QueueTicket> {
        match self
            .counters
            .ticket_of(request.show_id, request.request_id)
            .await
        {
            Ok(Some(ticket)) => Some(self.ticket(request.show_id, ticket).await),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "queue counters unavailable; position unknown");
                None
            }
        }
    }
}
