//! Repeated timings: warm-up, then samples until enough time and count; median, min, max.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Timings of one case, in milliseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Stats {
    /// The median sample.
    pub median_ms: f64,
    /// The fastest sample.
    pub min_ms: f64,
    /// The slowest sample.
    pub max_ms: f64,
    /// How many samples were taken.
    pub samples: usize,
}

/// How long and how often to sample.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    min_samples: usize,
    max_samples: usize,
    min_time: Duration,
}

impl Budget {
    /// Few samples for `--quick`, enough for a stable median otherwise.
    pub fn new(quick: bool) -> Self {
        if quick {
            Budget {
                min_samples: 3,
                max_samples: 5,
                min_time: Duration::from_millis(20),
            }
        } else {
            Budget {
                min_samples: 10,
                max_samples: 200,
                min_time: Duration::from_millis(1500),
            }
        }
    }
}

/// Runs `work` once to warm up, then times it repeatedly.
pub async fn sample<F, Fut>(budget: Budget, mut work: F) -> anyhow::Result<Stats>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    work().await?;
    let started = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < budget.max_samples
        && (samples.len() < budget.min_samples || started.elapsed() < budget.min_time)
    {
        let start = Instant::now();
        work().await?;
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(Stats::of(&mut samples))
}

impl Stats {
    /// The statistics of `samples` (milliseconds); all zero for no samples.
    pub fn of(samples: &mut [f64]) -> Self {
        samples.sort_by(f64::total_cmp);
        let median = match samples.len() {
            0 => 0.0,
            n if n % 2 == 1 => samples[n / 2],
            n => f64::midpoint(samples[n / 2 - 1], samples[n / 2]),
        };
        Stats {
            median_ms: median,
            min_ms: samples.first().copied().unwrap_or(0.0),
            max_ms: samples.last().copied().unwrap_or(0.0),
            samples: samples.len(),
        }
    }
}

/// The value at `share` (0 to 1) of `sorted`, an ascending list; 0 for an empty one.
pub fn percentile(sorted: &[f64], share: f64) -> f64 {
    let last = sorted.len().saturating_sub(1);
    sorted
        .get((last as f64 * share).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// A duration in milliseconds, printed with a unit that keeps 3 significant digits.
pub fn format_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else if ms >= 1.0 {
        format!("{ms:.2} ms")
    } else if ms >= 0.1 {
        format!("{:.0} µs", ms * 1000.0)
    } else {
        format!("{:.1} µs", ms * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let stats = Stats::of(&mut [5.0, 1.0, 3.0, 9.0]);
        assert_eq!(
            (stats.median_ms, stats.min_ms, stats.max_ms, stats.samples),
            (4.0, 1.0, 9.0, 4)
        );
        assert!((Stats::of(&mut [2.0, 7.0, 1.0]).median_ms - 2.0).abs() < f64::EPSILON);
    }

    #[test]
    fn durations_keep_their_unit() {
        assert_eq!(format_ms(0.0123), "12.3 µs");
        assert_eq!(format_ms(0.45), "450 µs");
        assert_eq!(format_ms(2.345), "2.35 ms");
        assert_eq!(format_ms(17.41), "17.4 ms");
        assert_eq!(format_ms(1234.0), "1.23 s");
    }
}
