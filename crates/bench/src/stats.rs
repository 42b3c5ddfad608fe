//! Latency percentiles over every recorded sample (no histogram: runs are short enough to keep
//! them all).

use std::time::Duration;

use serde::Serialize;

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest sample.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

/// The nearest-rank percentile (`quantile` in 0..=1) of ascending `sorted` samples: the
/// smallest sample that at least that fraction of samples does not exceed.
pub fn percentile(sorted: &[Duration], quantile: f64) -> Option<Duration> {
    debug_assert!((0.0..=1.0).contains(&quantile), "quantile {quantile}");
    debug_assert!(sorted.windows(2).all(|pair| pair[0] <= pair[1]));
    if sorted.is_empty() {
        return None;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Median of the samples (mean of the two middle ones for an even count).
pub fn median(samples: &[Duration]) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        length if length % 2 == 1 => Some(sorted[middle]),
        _ => Some((sorted[middle - 1] + sorted[middle]) / 2),
    }
}

fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Summarises the samples; `None` when there are none.
pub fn summarize(samples: &[Duration]) -> Option<LatencySummary> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let total: Duration = sorted.iter().sum();
    Some(LatencySummary {
        count: sorted.len(),
        p50_ms: milliseconds(percentile(&sorted, 0.50)?),
        p90_ms: milliseconds(percentile(&sorted, 0.90)?),
        p99_ms: milliseconds(percentile(&sorted, 0.99)?),
        max_ms: milliseconds(*sorted.last()?),
        mean_ms: milliseconds(total) / sorted.len() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_hundred() {
        let samples = millis(1..=100);
        assert_eq!(percentile(&samples, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&samples, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&samples, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&samples, 0.0), Some(Duration::from_millis(1)));
    }

    #[test]
    fn a_single_sample_is_every_percentile() {
        let summary = summarize(&millis([7])).expect("one sample");
        assert_eq!(summary.count, 1);
        assert_eq!(summary.p50_ms, 7.0);
        assert_eq!(summary.p99_ms, 7.0);
        assert_eq!(summary.max_ms, 7.0);
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(summarize(&[]), None);
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn summary_does_not_depend_on_sample_order() {
        let summary = summarize(&millis([30, 10, 20])).expect("samples");
        assert_eq!(summary.p50_ms, 20.0);
        assert_eq!(summary.max_ms, 30.0);
        assert_eq!(summary.mean_ms, 20.0);
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(
            median(&millis([40, 10, 20, 30])),
            Some(Duration::from_millis(25))
        );
        assert_eq!(median(&millis([5, 1, 3])), Some(Duration::from_millis(3)));
    }
}
