//! The worker function: decides SQS FIFO batches.
//!
//! A batch holds up to ten messages, possibly of several shows (message groups), each group's
//! in order. Consecutive messages of one show are decided together by the shared
//! [`BatchProcessor`] (one load, one in-memory decision pass, one transaction, then pushes).
//!
//! Failures, the FIFO way:
//! - **Wait** (a store down, a paused show, a pause flag that cannot be read): stop there, and
//!   report that message and every later one in `batchItemFailures`. Lambda deletes only what
//!   came before; the rest comes back in order after the visibility timeout. Nothing after a
//!   failure is processed, so no show is ever decided out of order.
//! - **The request's own** (seat races that persisted, stored data that cannot be read, a write
//!   the store refuses): the run is decided again one request at a time, so that only the
//!   requests at fault fail. Such a request is retried the same way until its message has been
//!   delivered `MAX_ATTEMPTS` times (even data that looks beyond repair may be repaired
//!   meanwhile); then it is set aside in the store as a dead letter, exactly as the local lanes
//!   do, its message is deleted and its show goes on. The admin API lists, redrives and discards
//!   it the same way on every backend.
//! - **Not ours** (a body that is not a queue message, a request the store does not have or of
//!   another show): there is no request to set aside, so the message is moved to the SQS
//!   dead-letter queue at once, with the reason as a message attribute, and the batch goes on.
//!   SQS's own redrive policy (`MaxReceiveCount`, set above `MAX_ATTEMPTS`) is the backstop for
//!   messages that never reach this code's verdict (a worker that crashes or times out on them).
//!
//! Redelivery is harmless: the processor's claim step skips requests that are decided already
//! and re-sends their stored outcome.

use crate::config;
use crate::wiring::{Shared, TokenKey, WiringError};
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
    crate::serve_events(lambda_runtime::service_fn(
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
    /// Where messages that name no request of ours go (SQS's dead-letter queue).
    dead_letters: Arc<dyn DeadLetters>,
    /// Deliveries of a message whose decision failed before its request is set aside
    /// (`MAX_ATTEMPTS`).
    max_attempts: u32,
}

/// Why one message could not be decided.
#[derive(Debug)]
enum Failure {
    Retry(String),
    Poison(String),
}

impl Worker {
    pub async fn from_env() -> Result<Self, WiringError> {
        let shared = Shared::from_env(TokenKey::NotNeeded).await?;
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
            shared.booking.max_attempts,
        ))
    }

    pub fn new(
        processor: Arc<BatchProcessor>,
        catalog: Arc<dyn CatalogStore>,
        requests: Arc<dyn RequestStore>,
        counters: Arc<dyn QueueCounters>,
        dead_letters: Arc<dyn DeadLetters>,
        max_attempts: u32,
    ) -> Self {
        Self {
            processor,
            catalog,
            requests,
            counters,
            dead_letters,
            max_attempts,
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

    /// Decides one show's consecutive messages; on a failure to retry says where to stop.
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
        // The requests, from the store (the truth), up to the first that cannot be read now.
        // Missing ones are poison.
        let mut requests: Vec<BookingRequest> = Vec::with_capacity(run.len());
        let mut loaded: Vec<(usize, &SqsMessage)> = Vec::with_capacity(run.len());
        let mut stopped = None;
        for (offset, (message, queued)) in run.iter().zip(&parsed).enumerate() {
            match self.load(queued, show).await {
                Ok(request) => {
                    requests.push(request);
                    loaded.push((offset, message));
                }
                Err(Failure::Poison(reason)) => {
                    if let Err(e) = self.dead_letter(message, &reason).await {
                        // It cannot be set aside, so it stays in the queue, and with it every
                        // later message.
                        stopped = Some(Stop {
                            at: offset,
                            reason: e,
                        });
                        break;
                    }
                }
                Err(Failure::Retry(reason)) => {
                    stopped = Some(Stop { at: offset, reason });
                    break;
                }
            }
        }
        // What came before the stop is decided first, or its messages (deleted, since they are
        // not reported) would never be.
        self.decide_loaded(show, &requests, &loaded).await?;
        stopped.map_or(Ok(()), Err)
    }

    /// Decides the loaded requests of a run together; if that fails for a reason that is the
    /// requests' own, decides them one at a time, so that only those at fault are retried or set
    /// aside.
    async fn decide_loaded(
        &self,
        show: ShowId,
        requests: &[BookingRequest],
        loaded: &[(usize, &SqsMessage)],
    ) -> Result<(), Stop> {
        let error = match self.decide(show, requests).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if !error.counts_as_attempt() || requests.len() == 1 {
            return self.after_failure(&requests[0], loaded[0], error).await;
        }
        for (request, &(offset, message)) in requests.iter().zip(loaded) {
            if let Err(e) = self.decide(show, std::slice::from_ref(request)).await {
                self.after_failure(request, (offset, message), e).await?;
            }
        }
        Ok(())
    }

    /// What follows a failed decision of `request`: it is tried again later (its message and
    /// every later one stay queued), or, once its message has been delivered `MAX_ATTEMPTS`
    /// times, it is set aside as a dead letter in the store
    /// (listed, redriven and discarded through the admin API, as locally) and its show goes on.
    /// An outage never sets anything aside: it fails every request alike.
    async fn after_failure(
        &self,
        request: &BookingRequest,
        (offset, message): (usize, &SqsMessage),
        error: ProcessError,
    ) -> Result<(), Stop> {
        let reason = Chain(&error).to_string();
        let attempts = deliveries(message);
        if !error.counts_as_attempt() || attempts < self.max_attempts {
            return Err(Stop { at: offset, reason });
        }
        match self.processor.dead_letter(request, &reason, attempts).await {
            // Set aside, or decided meanwhile by another delivery: either way, done with it.
            Ok(_) => Ok(()),
            Err(e) if e.is_unavailable() => Err(Stop {
                at: offset,
                reason: format!("{reason}; dead letter not recorded: {}", Chain(&e)),
            }),
            // The store will not take it: the SQS dead-letter queue keeps the message instead.
            Err(e) => self
                .dead_letter(
                    message,
                    &format!("{reason}; not recorded as a dead letter: {}", Chain(&e)),
                )
                .await
                .map_err(|reason| Stop { at: offset, reason }),
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

/// How many times SQS has delivered `message`, this delivery included. SQS counts every
/// delivery, those that found the show paused or the store down too, so after a long pause or
/// outage a request may be set aside on its first failure that counts.
fn deliveries(message: &SqsMessage) -> u32 {
    message
        .attributes
        .get(MessageSystemAttributeName::ApproximateReceiveCount.as_str())
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
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
