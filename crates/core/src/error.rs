//! How the ports report a failure of the outside world, and how a failure is printed.
//!
//! A port error says three things: what kind of failure it is (the only part callers branch on:
//! worth retrying or not), what the adapter was doing (`context`: "insert request 42", "Redis
//! apply"), and the underlying error itself (`source`: the driver's or SDK's error, kept whole, so
//! the log shows the SQLSTATE, the socket error or the service code behind it). The cause is kept
//! behind an `Arc` so that one failure can be handed to every caller that shared it (a group
//! commit answers hundreds of callers with the same error).
//!
//! Errors are logged once, where they are handled (the HTTP mapping, a lane's retry loop, the
//! worker's batch loop, `main`), with [`Chain`], which prints the error and every cause.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// An underlying error, shared.
pub type Cause = Arc<dyn Error + Send + Sync + 'static>;

/// A failure of one port: its kind `K`, what was being done, and why.
#[derive(Clone)]
pub struct PortError<K> {
    kind: K,
    context: String,
    source: Option<Cause>,
}

impl<K: Copy> PortError<K> {
    /// A failure of kind `kind` while doing `context`.
    pub fn new(kind: K, context: impl Into<String>) -> Self {
        Self {
            kind,
            context: context.into(),
            source: None,
        }
    }

    /// The same failure, caused by `source`.
    pub fn caused_by(mut self, source: impl Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The same failure, caused by an error that is already shared.
    pub fn caused_by_shared(mut self, source: Cause) -> Self {
        self.source = Some(source);
        self
    }

    pub fn kind(&self) -> K {
        self.kind
    }

    /// What the adapter was doing when it failed.
    pub fn context(&self) -> &str {
        &self.context
    }
}

/// Two failures are the same when their kind and context are: causes are not compared (driver
/// errors seldom can be), so tests can say which failure they expect.
impl<K: PartialEq> PartialEq for PortError<K> {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.context == other.context
    }
}

impl<K: fmt::Display> fmt::Display for PortError<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.context)
    }
}

impl<K: fmt::Debug> fmt::Debug for PortError<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PortError");
        d.field("kind", &self.kind).field("context", &self.context);
        if let Some(source) = &self.source {
            d.field("source", &Chain(source.as_ref()).to_string());
        }
        d.finish()
    }
}

impl<K: fmt::Debug + fmt::Display> Error for PortError<K> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// What went wrong with a store (the request, hold and catalog stores, the connection registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFailure {
    /// The store could not be reached or gave up (I/O, a closed pool, a timeout, a lost race
    /// that the database rolled back): worth retrying.
    Unavailable,
    /// What is stored, or what was about to be written, is invalid (a row that does not decode,
    /// a constraint that refuses it, a schema that does not match): retrying cannot help.
    Corrupt,
}

impl fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unavailable => "store unavailable",
            Self::Corrupt => "stored data is invalid",
        })
    }
}

/// A failure of a store.
pub type StoreError = PortError<StoreFailure>;

impl StoreError {
    pub fn unavailable(context: impl Into<String>) -> Self {
        Self::new(StoreFailure::Unavailable, context)
    }

    pub fn corrupt(context: impl Into<String>) -> Self {
        Self::new(StoreFailure::Corrupt, context)
    }

    /// Whether retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        self.kind == StoreFailure::Unavailable
    }
}

/// A failure of the seat mirror or the queue counters (Redis deployed): never fatal, since the
/// store is the truth, so there is one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorFailure {
    Unavailable,
}

impl fmt::Display for MirrorFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("seat mirror unavailable")
    }
}

/// A failure of the seat mirror or the queue counters.
pub type MirrorError = PortError<MirrorFailure>;

impl MirrorError {
    pub fn unavailable(context: impl Into<String>) -> Self {
        Self::new(MirrorFailure::Unavailable, context)
    }
}

/// A failure of the request queue: the request could not be handed on (or a pause not
/// recorded); worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFailure {
    Unavailable,
}

impl fmt::Display for QueueFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue unavailable")
    }
}

/// A failure of the request queue.
pub type QueueError = PortError<QueueFailure>;

impl QueueError {
    pub fn unavailable(context: impl Into<String>) -> Self {
        Self::new(QueueFailure::Unavailable, context)
    }
}

/// A failure of the payment provider: it could not be reached, failed, or did not answer in
/// time. The outcome of the call is unknown (the money may or may not have moved), so the caller
/// keeps the payment PENDING and sends it again with the same idempotency key, or asks the
/// provider later what became of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentFailure {
    Unavailable,
}

impl fmt::Display for PaymentFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("payment provider unavailable")
    }
}

/// A failure of the payment provider.
pub type PaymentError = PortError<PaymentFailure>;

impl PaymentError {
    pub fn unavailable(context: impl Into<String>) -> Self {
        Self::new(PaymentFailure::Unavailable, context)
    }
}

/// Displays an error followed by each of its causes: `a: b: c`.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Refused;

    #[derive(Debug, thiserror::Error)]
    #[error("pool timed out")]
    struct Timeout(#[source] Refused);

    #[test]
    fn the_chain_names_every_cause_and_the_kind_decides() {
        let e = StoreError::unavailable("insert request r1").caused_by(Timeout(Refused));
        assert!(e.is_unavailable());
        assert_eq!(e.context(), "insert request r1");
        assert_eq!(e.to_string(), "store unavailable: insert request r1");
        assert_eq!(
            Chain(&e).to_string(),
            "store unavailable: insert request r1: pool timed out: connection refused"
        );
        // Shared: every caller of a group gets the same cause.
        let copy = e.clone();
        assert_eq!(Chain(&copy).to_string(), Chain(&e).to_string());
        assert!(!StoreError::corrupt("row 3").is_unavailable());
        assert_eq!(
            QueueError::unavailable("send").to_string(),
            "queue unavailable: send"
        );
        assert_eq!(
            MirrorError::unavailable("apply").to_string(),
            "seat mirror unavailable: apply"
        );
    }
}
