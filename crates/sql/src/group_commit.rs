//! Group commit: making requests durable at the rate a flash sale sends them.
//!
//! A request must be on disk before the client is answered 202, and on disk means a flushed
//! commit (an fsync in SQLite, a WAL flush in PostgreSQL): a few milliseconds. One commit per
//! request would cap intake at a few hundred per second, exactly when a premiere opens. Instead
//! every caller hands its request to one task over a channel; the task takes everything that is
//! waiting (up to the group limit), writes it with one commit through the adapter's writer (a
//! function of the group), and only then answers each caller. Under load a group fills up while the
//! previous one is being written, so the cost of a commit is shared by hundreds of requests;
//! with no load a group is a single request and adds no delay.
//!
//! If a caller gives up (its future is dropped) after handing over its request, the request is
//! still written: the same as a crash between commit and response, which idempotency keys and
//! polling already cover.

use booking_core::ports::StoreError;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// What a writer answers for one group: the outer error means nothing was committed (every
/// caller of the group gets it); an inner error is that item's own problem (it left nothing
/// behind, and the rest of the group committed). One answer per item, in order.
pub type GroupAnswers<A> = Result<Vec<Result<A, StoreError>>, StoreError>;

/// Counters of an intake, for benchmarks and operations: `requests / groups` is the average
/// number of requests that shared one commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntakeStats {
    /// Commits made by the intake.
    pub groups: u64,
    /// Requests written (new, or found to repeat an earlier one) by those commits.
    pub requests: u64,
}

/// The live counters behind [`IntakeStats`]; shared by an adapter's grouped and direct intakes.
#[derive(Debug, Default)]
pub struct IntakeCounters {
    groups: AtomicU64,
    requests: AtomicU64,
}

impl IntakeCounters {
    pub fn snapshot(&self) -> IntakeStats {
        IntakeStats {
            groups: self.groups.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    /// Counts one commit of `requests` requests.
    pub fn record(&self, requests: usize) {
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(requests as u64, Ordering::Relaxed);
    }
}

struct Job<I, A> {
    item: I,
    reply: oneshot::Sender<Result<A, StoreError>>,
}

/// The handle callers submit to; cheap to clone. The writer task ends when the last handle is
/// dropped.
pub struct GroupCommit<I, A> {
    jobs: mpsc::Sender<Job<I, A>>,
}

impl<I, A> Clone for GroupCommit<I, A> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<I: Send + 'static, A: Send + 'static> GroupCommit<I, A> {
    /// Starts the writer task (inside a Tokio runtime). At most `max_group` items share a
    /// commit, which bounds how long one commit holds the database; up to eight groups may wait
    /// for the writer before callers are slowed down (back-pressure).
    /// `write` writes one group with one commit: the adapter's part.
    pub fn spawn<W, F>(write: W, max_group: usize, counters: Arc<IntakeCounters>) -> Self
    where
        W: FnMut(Vec<I>) -> F + Send + 'static,
        F: Future<Output = GroupAnswers<A>> + Send + 'static,
    {
        let max_group = max_group.max(1);
        let (jobs, rx) = mpsc::channel(8 * max_group);
        tokio::spawn(run(write, rx, max_group, counters));
        Self { jobs }
    }

    /// Hands `item` to the writer and waits for its commit.
    pub async fn submit(&self, item: I) -> Result<A, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { item, reply })
            .await
            .map_err(|_| StoreError::unavailable("the request writer has stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::unavailable("the request writer stopped mid-commit"))?
    }

    /// Whether the writer task has stopped (it then answers nothing).
    pub fn is_closed(&self) -> bool {
        self.jobs.is_closed()
    }
}

async fn run<I, A, W, F>(
    mut write: W,
    mut jobs: mpsc::Receiver<Job<I, A>>,
    max_group: usize,
    counters: Arc<IntakeCounters>,
) where
    W: FnMut(Vec<I>) -> F,
    F: Future<Output = GroupAnswers<A>>,
{
    let mut group: Vec<Job<I, A>> = Vec::with_capacity(max_group);
    while jobs.recv_many(&mut group, max_group).await > 0 {
        let size = group.len();
        let mut items = Vec::with_capacity(size);
        let mut replies = Vec::with_capacity(size);
        for job in group.drain(..) {
            items.push(job.item);
            replies.push(job.reply);
        }
        match write(items).await {
            Ok(answers) => {
                tracing::trace!(size, "request group committed");
                counters.record(size);
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // A caller that went away no longer needs its answer.
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                tracing::warn!(size, error = %booking_core::Chain(&e), "request group not committed");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Groups = Arc<Mutex<Vec<Vec<u32>>>>;

    /// A writer that records each group it is given; item 0 is refused on its own; the group
    /// `[99]` fails whole.
    fn recorder(groups: Groups) -> impl FnMut(Vec<u32>) -> std::future::Ready<GroupAnswers<u32>> {
        move |group: Vec<u32>| {
            groups.lock().unwrap().push(group.clone());
            std::future::ready(if group == [99] {
                Err(StoreError::unavailable("disk full"))
            } else {
                Ok(group
                    .iter()
                    .map(|&i| {
                        if i == 0 {
                            Err(StoreError::corrupt("item 0 is refused"))
                        } else {
                            Ok(i * 10)
                        }
                    })
                    .collect())
            })
        }
    }

    /// On one thread, everything submitted before the writer runs is in its first group: the
    /// writer task cannot run until the submitters wait.
    #[tokio::test(flavor = "current_thread")]
    async fn waiting_items_share_one_commit_and_an_item_fails_alone() {
        let groups = Arc::new(Mutex::new(Vec::new()));
        let counters = Arc::new(IntakeCounters::default());
        let intake = GroupCommit::spawn(recorder(groups.clone()), 512, counters.clone());
        let (a, b, c) = tokio::join!(intake.submit(1), intake.submit(0), intake.submit(2));
        assert_eq!(a.unwrap(), 10);
        assert!(!b.unwrap_err().is_unavailable(), "its own error");
        assert_eq!(c.unwrap(), 20, "committed with the refused one");
        assert_eq!(*groups.lock().unwrap(), vec![vec![1, 0, 2]]);
        assert_eq!(
            counters.snapshot(),
            IntakeStats {
                groups: 1,
                requests: 3
            }
        );

        let failed = intake.submit(99).await.unwrap_err();
        assert!(failed.is_unavailable());
        assert_eq!(
            counters.snapshot().groups,
            1,
            "a failed group is not counted"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn groups_are_bounded() {
        let groups = Arc::new(Mutex::new(Vec::new()));
        let intake = GroupCommit::spawn(
            recorder(groups.clone()),
            2,
            Arc::new(IntakeCounters::default()),
        );
        let (a, b, c) = tokio::join!(intake.submit(1), intake.submit(2), intake.submit(3));
        assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (10, 20, 30));
        assert_eq!(*groups.lock().unwrap(), vec![vec![1, 2], vec![3]]);
    }
}
