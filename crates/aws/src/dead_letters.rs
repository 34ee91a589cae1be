//! The SQS dead-letter queue as the worker's [`DeadLetters`] port.
//!
//! A message that can never be decided is sent here at once, with the reason as its `failure`
//! attribute, instead of being retried until `MaxReceiveCount` while it blocks its show's message
//! group. The copy keeps the original group (so a redrive replays it in order) and deduplicates
//! on the original message id (a worker that dead-letters, crashes and sees the message again
//! sends one copy).

use crate::describe;
use async_trait::async_trait;
use aws_sdk_sqs::types::MessageAttributeValue;
use booking_core::ports::{DeadLetter, DeadLetters, QueueError};

/// Longest reason kept in the message attribute (SQS allows more; a reason is a sentence).
const MAX_REASON_CHARS: usize = 1_000;

pub struct SqsDeadLetters {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDeadLetters {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl DeadLetters for SqsDeadLetters {
    #[tracing::instrument(skip_all, fields(message_id = %letter.message_id))]
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), QueueError> {
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(truncate(&letter.reason, MAX_REASON_CHARS))
            .build()
            .map_err(|e| QueueError::unavailable("build the failure attribute").caused_by(e))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(letter.body.clone())
            .message_group_id(letter.group.clone().unwrap_or_else(|| "poison".to_owned()))
            .message_deduplication_id(format!("dlq-{}", letter.message_id))
            .message_attributes("failure", attribute)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                QueueError::unavailable(format!("SQS dead-letter send: {}", describe(&e)))
                    .caused_by(e)
            })
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text.to_owned(),
    }
}
