//! The node's RSA key pair and its regeneration (SPEC.md §7.2).
//!
//! Generating a 2048-bit key takes ~20-250 ms (3072-bit: ~100-450 ms), so it never runs on
//! the event loop: a dedicated thread generates it and hands it over through a channel the
//! behaviour polls. The node starts without a key; handshakes that arrive before it exists
//! wait for it (bounded) instead of failing.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures::channel::oneshot;
use futures_timer::Delay;

use crate::crypto::{KeyError, RsaKeyPair};

/// What happened to the key ring.
#[derive(Debug)]
pub(crate) enum KeyRingEvent {
    /// A new key pair is in use.
    Ready(Arc<RsaKeyPair>),
    /// Generation failed (it is retried at the next scheduled time).
    Failed(KeyError),
}

/// Wait before retrying a failed generation.
const RETRY_AFTER: Duration = Duration::from_secs(1);

pub(crate) struct KeyRing {
    bits: usize,
    regenerate_every: Option<Duration>,
    current: Option<Arc<RsaKeyPair>>,
    generating: Option<oneshot::Receiver<Result<RsaKeyPair, KeyError>>>,
    timer: Option<Delay>,
    generation: u64,
}

impl KeyRing {
    /// A key ring that starts generating at once (unless `initial` is given).
    pub(crate) fn new(
        bits: usize,
        regenerate_every: Option<Duration>,
        initial: Option<Arc<RsaKeyPair>>,
    ) -> Self {
        let mut ring = KeyRing {
            bits,
            regenerate_every,
            current: None,
            generating: None,
            timer: None,
            generation: 0,
        };
        match initial {
            Some(key) => {
                ring.current = Some(key);
                ring.timer = regenerate_every.map(Delay::new);
            }
            None => ring.spawn(),
        }
        ring
    }

    pub(crate) fn current(&self) -> Option<&Arc<RsaKeyPair>> {
        self.current.as_ref()
    }

    /// Starts a regeneration now (unless one is running).
    pub(crate) fn regenerate(&mut self) {
        if self.generating.is_none() {
            self.spawn();
        }
    }

    fn spawn(&mut self) {
        let (tx, rx) = oneshot::channel();
        let bits = self.bits;
        let spawned = std::thread::Builder::new()
            .name("noctua-rsa-keygen".into())
            .spawn(move || {
                let _ = tx.send(RsaKeyPair::generate(bits));
            });
        match spawned {
            Ok(_) => self.generating = Some(rx),
            Err(e) => {
                tracing::warn!("cannot start the RSA key generation thread: {e}; retrying later");
                self.timer = Some(Delay::new(RETRY_AFTER));
            }
        }
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<KeyRingEvent> {
        if let Some(rx) = self.generating.as_mut()
            && let Poll::Ready(result) = rx.poll_unpin(cx)
        {
            self.generating = None;
            self.timer = self.regenerate_every.map(Delay::new);
            match result {
                Ok(Ok(key)) => {
                    if self.current.is_some() {
                        self.generation += 1;
                    }
                    let key = Arc::new(key.with_generation(self.generation));
                    // The previous key is dropped (and zeroized) as soon as no handshake
                    // or rotation in progress holds it.
                    self.current = Some(key.clone());
                    return Poll::Ready(KeyRingEvent::Ready(key));
                }
                Ok(Err(e)) => {
                    self.timer = Some(Delay::new(RETRY_AFTER));
                    return Poll::Ready(KeyRingEvent::Failed(e));
                }
                Err(oneshot::Canceled) => {
                    self.timer = Some(Delay::new(RETRY_AFTER));
                    return Poll::Ready(KeyRingEvent::Failed(KeyError::Generation));
                }
            }
        }
        if let Some(timer) = self.timer.as_mut()
            && timer.poll_unpin(cx).is_ready()
        {
            self.timer = None;
            self.regenerate();
            // Register interest in the new generation's result.
            return self.poll(cx);
        }
        Poll::Pending
    }
}
