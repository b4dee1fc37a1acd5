//! Summaries of samples: median and tail, computed the same way for every system.

use std::time::Duration;

/// The summary of one set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// The median (mean of the two middle samples for an even count).
    pub median: f64,
    /// The tail: the 99th percentile (nearest rank) when lower is better, the 1st percentile
    /// when higher is better (the worst 1 %).
    pub tail: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// Summarises `samples`; `None` when there are none (or any is not finite).
pub fn summarize(samples: &[f64], higher_is_better: bool) -> Option<Summary> {
    if samples.is_empty() || samples.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    let tail = if higher_is_better {
        percentile(&s, 0.01)
    } else {
        percentile(&s, 0.99)
    };
    Some(Summary {
        n,
        median,
        tail,
        min: s[0],
        max: s[n - 1],
        mean: s.iter().sum::<f64>() / n as f64,
    })
}

/// Nearest-rank percentile of sorted samples, `q` in (0, 1].
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

/// Milliseconds as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_tails() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&v, false).unwrap();
        assert_eq!(s.median, 50.5);
        assert_eq!(s.tail, 99.0);
        let s = summarize(&v, true).unwrap();
        assert_eq!(s.tail, 1.0);
        assert_eq!(summarize(&[3.0], false).unwrap().tail, 3.0);
        assert!(summarize(&[], false).is_none());
        assert!(summarize(&[f64::NAN], false).is_none());
    }
}
