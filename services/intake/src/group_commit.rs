//! Group commit for OpenCase: contacts arriving together are written with one transaction and
//! one commit, each answered only after that commit, so an acknowledged case is as durable as
//! one written alone.
//!
//! No contact waits for a batch to fill: a batch is whatever queued while the previous ones
//! were being written. At a trickle every contact goes alone; in a storm, batches grow with the
//! load and the database's work per contact shrinks.

use std::sync::Arc;

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::IntakeError;
use crate::model::OpenOutcome;
use crate::repo::{IntakeRepository, OpenRequest};

/// How contacts are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitSettings {
    /// Most contacts per transaction; 1 writes every contact on its own.
    pub max_batch: usize,
    /// Transactions written at once: enough to keep the database busy while a batch commits,
    /// few enough to leave the pool's other connections to identification and the workers.
    pub in_flight: usize,
}

impl Default for GroupCommitSettings {
    fn default() -> Self {
        Self { max_batch: 128, in_flight: 2 }
    }
}

/// Batch sizes, for the `/metrics` endpoint.
#[derive(Debug, Clone)]
pub struct GroupCommitMetrics {
    contacts: Histogram,
}

impl GroupCommitMetrics {
    pub fn new(registry: Option<&mut Registry>) -> Self {
        let contacts = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]);
        if let Some(registry) = registry {
            registry.register(
                "group_commit_contacts",
                "Contacts written per OpenCase transaction",
                contacts.clone(),
            );
        }
        Self { contacts }
    }
}

struct Pending {
    request: OpenRequest,
    reply: oneshot::Sender<Result<OpenOutcome, IntakeError>>,
}

/// Hands contacts to the writer task; cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the writer. It stops once every [`GroupCommit`] is dropped and the queue is
    /// empty, so a server that drains its requests first loses nothing.
    pub fn spawn(
        repo: Arc<dyn IntakeRepository>,
        settings: GroupCommitSettings,
        metrics: GroupCommitMetrics,
    ) -> Self {
        let max_batch = settings.max_batch.max(1);
        let sizes = metrics.contacts;
        // Admission control bounds the contacts in flight; this only has to hold them.
        let (queue, mut incoming) = mpsc::channel::<Pending>(max_batch * settings.in_flight.max(1) * 2);
        let writers = Arc::new(Semaphore::new(settings.in_flight.max(1)));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = writers.clone().acquire_owned().await else { return };
                let Some(first) = incoming.recv().await else { return };
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match incoming.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let repo = repo.clone();
                sizes.observe(batch.len() as f64);
                tokio::spawn(async move {
                    let (requests, replies): (Vec<_>, Vec<_>) =
                        batch.into_iter().map(|p| (p.request, p.reply)).unzip();
                    let answers = repo.open_cases(requests).await;
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        // The caller may have given up (deadline, cancellation); the case stays.
                        let _ = reply.send(answer);
                    }
                    drop(permit);
                });
            }
        });
        Self { queue }
    }

    /// Opens one contact with whichever others are waiting.
    pub async fn open(&self, request: OpenRequest) -> Result<OpenOutcome, IntakeError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Pending { request, reply }).await.map_err(|_| IntakeError::ShuttingDown)?;
        answer.await.map_err(|_| IntakeError::ShuttingDown)?
    }
}
