//! Waiting out other writers: the one retry policy of eventkv, for a write that lost a
//! race to another process (or another store on the same engine). Each retry waits a
//! growing, jittered pause, so that racing writers spread out instead of colliding
//! again; the total wait is bounded, after which the caller gives up with `Contended`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The first pause (before jitter, which adds up to as much again).
const FIRST_PAUSE: Duration = Duration::from_millis(1);
/// The longest single pause (before jitter).
const LONGEST_PAUSE: Duration = Duration::from_millis(50);
/// The most time spent pausing before giving up.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// The pauses between the attempts of one write. Sleeps on a timer that needs no
/// particular runtime (a timer thread; `setTimeout` in the browser).
#[derive(Debug)]
pub struct Backoff {
    pauses: ExponentialBackoff,
    attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// Pauses from 1 ms, doubling up to 50 ms, each plus a random jitter, for at most
    /// [`MAX_WAIT`] in total.
    pub fn new() -> Self {
        let pauses = doubling(FIRST_PAUSE, LONGEST_PAUSE)
            .with_total_delay(Some(MAX_WAIT))
            .build();
        Backoff {
            pauses,
            attempts: 1,
        }
    }

    /// Waits before the next attempt, and returns `true`; returns `false` at once when
    /// the time allowed is spent (give up).
    pub async fn pause(&mut self) -> bool {
        let Some(pause) = self.pauses.next() else {
            return false;
        };
        futures_timer::Delay::new(pause).await;
        self.attempts += 1;
        true
    }

    /// How many attempts were made so far, counting the first.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// Pauses from `first`, doubling up to `longest`, each plus a random jitter, without end
/// (for readers that wait out a failing engine: subscriptions, projections).
pub(crate) fn endless(first: Duration, longest: Duration) -> ExponentialBackoff {
    doubling(first, longest).build()
}

fn doubling(first: Duration, longest: Duration) -> ExponentialBuilder {
    // Seeded from the UUID generator, which has a random source on every target (two
    // browser tabs must not jitter alike).
    let seed = uuid::Uuid::new_v4().as_u64_pair().0;
    ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(longest)
        .with_factor(2.0)
        .with_jitter()
        .with_jitter_seed(seed)
        .without_max_times()
}
