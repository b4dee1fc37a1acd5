//! What a measuring client of any system returns, and the operations every system's client
//! offers, so that one measurement loop drives all three the same way.

use std::time::Duration;

/// How long one message may take before it is counted as lost.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// The outcome of one measured run.
#[derive(Debug, Default, Clone)]
pub struct Run {
    /// Per-message latency (send to delivery receipt), milliseconds.
    pub lat_ms: Vec<f64>,
    /// Messages that failed or never got a receipt.
    pub lost: u64,
    /// Messages delivered (receipt seen).
    pub delivered: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Run {
    /// Delivered messages per second over the run.
    pub fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Adds another run's samples and counts (not its wall time).
    pub fn absorb(&mut self, other: Run) {
        self.lat_ms.extend(other.lat_ms);
        self.lost += other.lost;
        self.delivered += other.delivered;
        self.elapsed += other.elapsed;
    }
}

/// A client connected to one server of its system, able to measure.
pub trait PairClient {
    /// `n` messages of `size` bytes, one at a time: each is sent when the previous one's
    /// receipt arrived.
    async fn rtt(&mut self, n: usize, size: usize) -> Run;

    /// `total` messages of `size` bytes, keeping `window` of them outstanding.
    async fn throughput(&mut self, total: usize, window: usize, size: usize) -> Run;

    /// Messages the server side counted as received so far (for loss accounting).
    fn server_received(&self) -> u64;
}

/// The text of a benchmark message: `size` bytes of ASCII.
pub fn payload(size: usize) -> String {
    "x".repeat(size)
}
