//! Private-key work off the event loop (DESIGN-offload.md).
//!
//! An RSA-OAEP decryption costs ~2.5 ms at 2048 bits; run inline it stalls every other
//! peer's records. The peer machines therefore *ask* for it ([`PrivateJob`]) and get the
//! result back as an input, tagged ([`JobTag`]) so the machine can tell whether the result
//! still belongs to the handshake or rotation that asked. The [`PrivatePool`] owned by the
//! behaviour runs the jobs on a few dedicated threads behind a bounded queue: a full queue
//! refuses at once ([`Submit::Busy`]) instead of waiting.
//!
//! The pool knows nothing about sessions: it sees a key and a ciphertext and returns the
//! 32-byte contribution, zeroized on drop.

use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::StreamExt;
use futures::channel::mpsc as fmpsc;
use libp2p::PeerId;
use zeroize::Zeroizing;

use crate::crypto::{CONTRIBUTION_LEN, KeyError, RsaKeyPair};
use crate::wire::{HS_ID_LEN, SESSION_ID_LEN};

/// What a private-key result is for. The machine compares it (and [`JobTag::seq`]) with
/// the state that is waiting; anything else is stale and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// `wrapped_i` of an `AUTH` (we respond) or `wrapped_r` of an `AUTH_OK` (we initiated).
    Handshake { hs_id: [u8; HS_ID_LEN] },
    /// `wrapped_b` of a `REKEY_REPLY` or `wrapped_a` of a `REKEY_COMMIT`.
    Rotation {
        session_id: [u8; SESSION_ID_LEN],
        epoch: u32,
    },
}

/// Names one job: the peer whose machine asked, a number never reused in this process, and
/// what the result is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobTag {
    pub(crate) peer: PeerId,
    pub(crate) seq: u64,
    pub(crate) purpose: Purpose,
}

/// One RSA-OAEP decryption to run off the event loop.
#[derive(Clone)]
pub(crate) struct PrivateJob {
    pub(crate) tag: JobTag,
    /// The key the waiting state holds (a regeneration meanwhile changes nothing).
    pub(crate) key: Arc<RsaKeyPair>,
    pub(crate) wrapped: Vec<u8>,
}

impl std::fmt::Debug for PrivateJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateJob")
            .field("tag", &self.tag)
            .field("wrapped_len", &self.wrapped.len())
            .finish()
    }
}

/// Why a job produced no contribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobError {
    /// The ciphertext does not decrypt under the key (as the inline error was).
    Decrypt,
    /// The queue was full: the job never ran.
    Busy,
}

/// The contribution, or why there is none.
pub(crate) type JobResult = Result<Zeroizing<[u8; CONTRIBUTION_LEN]>, JobError>;

/// Runs a job where it stands: what a worker does, and what the fuzzer's driver and the
/// peer-level tests do to stay deterministic.
pub(crate) fn run(job: &PrivateJob) -> JobResult {
    job.key
        .unwrap_contribution(&job.wrapped)
        .map_err(|_: KeyError| JobError::Decrypt)
}

/// What [`PrivatePool::submit`] did with a job.
#[derive(Debug)]
pub(crate) enum Submit {
    /// Queued; its result comes back from [`PrivatePool::poll`].
    Queued,
    /// The queue is full (or the workers are gone): the job did not run. The caller feeds
    /// `Err(JobError::Busy)` back to the machine under this tag.
    Busy(JobTag),
}

/// A few worker threads behind a bounded queue; results come back through `poll`.
pub(crate) struct PrivatePool {
    jobs: Option<SyncSender<PrivateJob>>,
    results: fmpsc::UnboundedReceiver<(JobTag, JobResult)>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl PrivatePool {
    /// `threads` workers (at least 1) sharing a queue of `capacity` jobs (at least 1).
    ///
    /// Results are bounded in practice by `capacity + threads`: a job is either queued,
    /// running, or its result waits in `poll`.
    pub(crate) fn new(threads: usize, capacity: usize) -> Self {
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<PrivateJob>(capacity.max(1));
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let (results_tx, results) = fmpsc::unbounded();
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let rx = jobs_rx.clone();
            let tx = results_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("noctua-rsa-{i}"))
                .spawn(move || {
                    loop {
                        // Hold the lock only to take a job, never while running it.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let result = run(&job);
                        if tx.unbounded_send((job.tag, result)).is_err() {
                            return;
                        }
                    }
                });
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(e) => tracing::warn!("cannot start an RSA worker thread: {e}"),
            }
        }
        PrivatePool {
            // No worker at all: every submit answers Busy rather than queueing forever.
            jobs: (!workers.is_empty()).then_some(jobs_tx),
            results,
            workers,
        }
    }

    /// The default size for this machine: one or two workers, leaving a core to the loop.
    pub(crate) fn default_threads() -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores.saturating_sub(1).clamp(1, 2)
    }

    /// Queues a job without blocking.
    pub(crate) fn submit(&self, job: PrivateJob) -> Submit {
        let Some(jobs) = &self.jobs else {
            return Submit::Busy(job.tag);
        };
        match jobs.try_send(job) {
            Ok(()) => Submit::Queued,
            Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
                Submit::Busy(job.tag)
            }
        }
    }

    /// The next finished job, if any; registers the waker otherwise.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<(JobTag, JobResult)> {
        match self.results.poll_next_unpin(cx) {
            Poll::Ready(Some(done)) => Poll::Ready(done),
            // All workers gone: nothing will ever come.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for PrivatePool {
    fn drop(&mut self) {
        // Closing the queue ends each worker after its current job.
        self.jobs = None;
        self.results.close();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::test_key;
    use futures::task::noop_waker;
    use std::time::{Duration, Instant};

    fn tag(seq: u64) -> JobTag {
        JobTag {
            peer: PeerId::random(),
            seq,
            purpose: Purpose::Handshake {
                hs_id: [7; HS_ID_LEN],
            },
        }
    }

    fn wait(pool: &mut PrivatePool) -> (JobTag, JobResult) {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Poll::Ready(done) = pool.poll(&mut cx) {
                return done;
            }
            assert!(Instant::now() < deadline, "no result");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_job_comes_back_with_its_tag_and_contribution() {
        let key = test_key(0);
        let k = [9u8; CONTRIBUTION_LEN];
        let wrapped = crate::crypto::PeerPublicKey::parse(key.public_der())
            .unwrap()
            .wrap_contribution(&k)
            .unwrap();
        let mut pool = PrivatePool::new(1, 4);
        let t = tag(1);
        assert!(matches!(
            pool.submit(PrivateJob {
                tag: t,
                key: key.clone(),
                wrapped
            }),
            Submit::Queued
        ));
        let (got, result) = wait(&mut pool);
        assert_eq!(got, t);
        assert_eq!(*result.unwrap(), k);
    }

    #[test]
    fn garbage_reports_decrypt_error() {
        let key = test_key(0);
        let mut pool = PrivatePool::new(1, 4);
        let wrapped = vec![1u8; key.bits() / 8];
        assert!(matches!(
            pool.submit(PrivateJob {
                tag: tag(2),
                key,
                wrapped
            }),
            Submit::Queued
        ));
        assert_eq!(wait(&mut pool).1.unwrap_err(), JobError::Decrypt);
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let key = test_key(0);
        let pool = PrivatePool::new(1, 1);
        // One worker, one slot: of many jobs submitted back to back, at most two are
        // accepted (one running, one queued); the rest are refused without blocking.
        let mut busy = 0;
        for seq in 0..16 {
            let job = PrivateJob {
                tag: tag(seq),
                key: key.clone(),
                wrapped: vec![1u8; key.bits() / 8],
            };
            if let Submit::Busy(t) = pool.submit(job) {
                assert_eq!(t.seq, seq);
                busy += 1;
            }
        }
        assert!(busy >= 14, "only {busy} refused");
    }

    #[test]
    fn dropping_the_pool_stops_its_workers() {
        let pool = PrivatePool::new(2, 4);
        drop(pool); // joins: would hang if a worker never saw the queue close
    }
}
