//! The request queue on SQS FIFO.
//!
//! SQS cannot tell a message's place in its group, so queue positions come from per-show
//! counters (Redis): a ticket is taken on enqueue and the worker counts what it decided. Pausing
//! a show is a flag the worker reads before deciding: a paused show's messages go back to the
//! queue unprocessed, which keeps their order (FIFO blocks the group meanwhile).

use crate::describe;
use async_trait::async_trait;
use booking_core::ports::{LaneStats, QueueCounters, QueueError, QueueTicket, RequestQueue};
use booking_core::{BookingRequest, RequestId, ShowId};
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

    async fn ticket(&self, show: ShowId, ticket: u64) -> QueueTicket {
        let decided = match self.counters.decided(show).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(show_id = %show, error = %e, "queue counters unavailable");
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
        let body = serde_json::to_string(&QueueMessage {
            request_id: request.request_id,
            show_id: request.show_id,
        })
        .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_group_id(request.show_id.to_string())
            .message_deduplication_id(request.request_id.to_string())
            .send()
            .await
            .map_err(|e| QueueError::Unavailable(describe(&e)))?;
        // The message is in the queue: from here on a counter failure only costs the estimate.
        match self.counters.take_ticket(request.show_id).await {
            Ok(ticket) => Ok(self.ticket(request.show_id, ticket).await),
            Err(e) => {
                tracing::warn!(error = %e, "queue counters unavailable; position unknown");
                Ok(QueueTicket {
                    position: 1,
                    estimated_wait_seconds: 1,
                })
            }
        }
    }

    /// SQS cannot say where one message stands; polling clients get the status without it.
    async fn position(&self, _request: &BookingRequest) -> Option<QueueTicket> {
        None
    }

    async fn stats(&self) -> Vec<LaneStats> {
        let shows = match self.counters.known_shows().await {
            Ok(shows) => shows,
            Err(e) => {
                tracing::warn!(error = %e, "queue counters unavailable; no statistics");
                return Vec::new();
            }
        };
        let mut stats = Vec::with_capacity(shows.len());
        for show in shows {
            let tickets = self.counters.tickets(show).await.unwrap_or(0);
            let decided = self.counters.decided(show).await.unwrap_or(0);
            stats.push(LaneStats {
                show_id: show,
                waiting: tickets.saturating_sub(decided),
                decided,
                paused: self.counters.is_paused(show).await.unwrap_or(false),
                decisions_per_second: 0.0,
            });
        }
        stats
    }

    async fn pause(&self, show: ShowId) {
        if let Err(e) = self.counters.set_paused(show, true).await {
            tracing::error!(show_id = %show, error = %e, "could not pause the show");
        }
    }

    async fn resume(&self, show: ShowId) {
        if let Err(e) = self.counters.set_paused(show, false).await {
            tracing::error!(show_id = %show, error = %e, "could not resume the show");
        }
    }
}
