//! The worker function: decides SQS FIFO batches.
//!
//! A batch holds up to ten messages, possibly of several shows (message groups), each group's
//! in order. Consecutive messages of one show are decided together by the shared
//! [`BatchProcessor`] (one load, one in-memory decision pass, one transaction, then pushes).
//!
//! Failures, the FIFO way:
//! - **Retryable** (a store down, seat races that persisted, a paused show, a pause flag that
//!   cannot be read): stop there, and
//!   report that message and every later one in `batchItemFailures`. Lambda deletes only what
//!   came before; the rest comes back in order after the visibility timeout. Nothing after a
//!   failure is processed, so no show is ever decided out of order.
//! - **Fatal** (a body that is not ours, a request the store does not have, a show that does
//!   not exist, invalid stored data): retrying cannot help and would block the show for good,
//!   so the message is moved to the dead-letter queue at once, with the reason as a message
//!   attribute, and the batch goes on. Its request, if stored and still QUEUED, is ended by the
//!   expirer when its deadline passes (one already moved to PROCESSING is not yet: dead-letter
//!   handling that ends it is the next piece of operations work).
//!
//! Redelivery is harmless: the processor's claim step skips requests that are decided already
//! and re-sends their stored outcome.

use crate::config;
use crate::wiring::{Shared, WiringError};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use booking_app::processor::{BatchProcessor, ProcessError};
use booking_aws::{QueueMessage, SqsDeadLetters};
use booking_core::ports::{CatalogStore, DeadLetter, DeadLetters, QueueCounters, RequestStore};
use booking_core::{BookingRequest, Chain, ShowId};
use std::sync::Arc;

/// The worker function: SQS FIFO batches, partial failures reported the FIFO way.
pub async fn serve() -> Result<(), lambda_runtime::Error> {
    let worker = &*Box::leak(Box::new(Worker::from_env().await?));
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<SqsEvent>| async move {
            Ok::<SqsBatchResponse, lambda_runtime::Error>(worker.handle(event.payload).await)
        },
    ))
    .await
}

pub struct Worker {
    processor: Arc<BatchProcessor>,
    /// Where the pause flag is kept (the store: it survives a Redis flush and a restart).
    catalog: Arc<dyn CatalogStore>,
    requests: Arc<dyn RequestStore>,
    counters: Arc<dyn QueueCounters>,
    dead_letters: Arc<dyn DeadLetters>,
}

/// Why one message could not be decided.
#[derive(Debug)]
enum Failure {
    Retry(String),
    Poison(String),
}

impl Worker {
    pub async fn from_env() -> Result<Self, WiringError> {
        let shared = Shared::from_env().await?;
        let app = shared.app()?.build();
        let dead_letters = SqsDeadLetters::new(
            aws_sdk_sqs::Client::new(&shared.sdk),
            config::required("DEAD_LETTER_QUEUE_URL")?,
        );
        Ok(Self::new(
            app.processor().clone(),
            shared.store.clone(),
            shared.store.clone(),
            shared.mirror.clone(),
            Arc::new(dead_letters),
        ))
    }

    pub fn new(
        processor: Arc<BatchProcessor>,
        catalog: Arc<dyn CatalogStore>,
        requests: Arc<dyn RequestStore>,
        counters: Arc<dyn QueueCounters>,
        dead_letters: Arc<dyn DeadLetters>,
    ) -> Self {
        Self {
            processor,
            catalog,
            requests,
            counters,
            dead_letters,
        }
    }

    /// Handles one SQS event; the response names the messages to keep in the queue.
    #[tracing::instrument(skip_all, fields(messages = event.records.len()))]
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let messages = &event.records;
        let mut response = SqsBatchResponse::default();
        let mut i = 0;
        while i < messages.len() {
            // The run of consecutive messages of one show (a poison message is a run of one).
            let run = match parse(&messages[i]) {
                Ok(first) => {
                    let mut end = i + 1;
                    while end < messages.len()
                        && parse(&messages[end]).is_ok_and(|m| m.show_id == first.show_id)
                    {
                        end += 1;
                    }
                    end
                }
                Err(reason) => {
                    if let Err(e) = self.dead_letter(&messages[i], &reason).await {
                        fail_from(&mut response, messages, i, &e);
                        return response;
                    }
                    i += 1;
                    continue;
                }
            };
            if let Err(stop) = self.decide_run(&messages[i..run]).await {
                fail_from(&mut response, messages, i + stop.at, &stop.reason);
                return response;
            }
            i = run;
        }
        response
    }

    /// Decides one show's consecutive messages; on a retryable failure says where to stop.
    async fn decide_run(&self, run: &[SqsMessage]) -> Result<(), Stop> {
        let parsed: Vec<QueueMessage> = run
            .iter()
            .map(|m| parse(m).expect("parsed before"))
            .collect();
        let show = parsed[0].show_id;
        match self.catalog.is_paused(show).await {
            Ok(false) => {}
            Ok(true) => {
                return Err(Stop {
                    at: 0,
                    reason: format!("show {show} is paused"),
                });
            }
            // The pause flag cannot be read: deciding anyway could override an operator's pause.
            Err(e) => {
                return Err(Stop {
                    at: 0,
                    reason: format!("pause flag unavailable: {e}"),
                });
            }
        }
        // The requests, from the store (the truth). Missing ones are poison.
        let mut requests: Vec<BookingRequest> = Vec::with_capacity(run.len());
        let mut loaded: Vec<(usize, &SqsMessage)> = Vec::with_capacity(run.len());
        for (offset, (message, queued)) in run.iter().zip(&parsed).enumerate() {
            match self.load(queued, show).await {
                Ok(request) => {
                    requests.push(request);
                    loaded.push((offset, message));
                }
                Err(Failure::Poison(reason)) => {
                    if let Err(e) = self.dead_letter(message, &reason).await {
                        // It cannot be set aside, so it stays in the queue, and with it every
                        // later message; what came before it is decided first, or its messages
                        // (deleted, since they are not reported) would never be.
                        self.decide(show, &requests).await.map_err(|e| Stop {
                            at: 0,
                            reason: Chain(&e).to_string(),
                        })?;
                        return Err(Stop {
                            at: offset,
                            reason: e,
                        });
                    }
                }
                Err(Failure::Retry(reason)) => {
                    // Decide what came before this message, then stop here.
                    self.decide(show, &requests).await.map_err(|e| Stop {
                        at: 0,
                        reason: Chain(&e).to_string(),
                    })?;
                    return Err(Stop { at: offset, reason });
                }
            }
        }
        match self.decide(show, &requests).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_retryable() => Err(Stop {
                at: 0,
                reason: Chain(&e).to_string(),
            }),
            Err(e) => {
                let reason = Chain(&e).to_string();
                tracing::error!(show_id = %show, %reason, "batch cannot be decided; dead-lettering it");
                // The messages already dead-lettered above are not sent again.
                for (offset, message) in loaded {
                    self.dead_letter(message, &reason).await.map_err(|e| Stop {
                        at: offset,
                        reason: e,
                    })?;
                }
                Ok(())
            }
        }
    }

    /// Decides one show's requests and counts them for queue positions.
    async fn decide(&self, show: ShowId, requests: &[BookingRequest]) -> Result<(), ProcessError> {
        if requests.is_empty() {
            return Ok(());
        }
        let report = self.processor.process(show, requests).await?;
        if report.decided > 0
            && let Err(e) = self.counters.add_decided(show, report.decided as u64).await
        {
            tracing::warn!(show_id = %show, error = %Chain(&e), "decided counter not updated");
        }
        Ok(())
    }

    async fn load(&self, queued: &QueueMessage, show: ShowId) -> Result<BookingRequest, Failure> {
        match self.requests.get_request(queued.request_id).await {
            Ok(Some(request)) if request.show_id == show => Ok(request),
            Ok(Some(_)) => Err(Failure::Poison(format!(
                "request {} does not belong to show {show}",
                queued.request_id
            ))),
            Ok(None) => Err(Failure::Poison(format!(
                "request {} is not in the store",
                queued.request_id
            ))),
            Err(e) if e.is_unavailable() => Err(Failure::Retry(Chain(&e).to_string())),
            Err(e) => Err(Failure::Poison(Chain(&e).to_string())),
        }
    }

    /// Moves a message to the dead-letter queue, with why.
    async fn dead_letter(&self, message: &SqsMessage, reason: &str) -> Result<(), String> {
        let letter = DeadLetter {
            message_id: message.message_id.clone().unwrap_or_default(),
            group: message
                .attributes
                .get(MessageSystemAttributeName::MessageGroupId.as_str())
                .cloned(),
            body: message.body.clone().unwrap_or_default(),
            reason: reason.to_owned(),
        };
        tracing::error!(message_id = %letter.message_id, %reason, "poison message: moving it to the dead-letter queue");
        self.dead_letters
            .dead_letter(&letter)
            .await
            .map_err(|e| Chain(&e).to_string())
    }
}

struct Stop {
    /// Offset in the run of the first message not done.
    at: usize,
    reason: String,
}

/// A message body this worker understands, or why not.
fn parse(message: &SqsMessage) -> Result<QueueMessage, String> {
    let body = message.body.as_deref().unwrap_or_default();
    serde_json::from_str(body).map_err(|e| format!("unreadable message body: {e}"))
}

/// Reports messages `from..` as failed (they stay in the queue, in order).
fn fail_from(response: &mut SqsBatchResponse, messages: &[SqsMessage], from: usize, reason: &str) {
    tracing::warn!(
        failed = messages.len() - from,
        %reason,
        "stopping the batch; the rest stays queued"
    );
    for message in &messages[from..] {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = message.message_id.clone().unwrap_or_default();
        response.batch_item_failures.push(failure);
    }
}
