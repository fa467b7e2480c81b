//! [`Timestamp`]: wall-clock time in microseconds, safe to read on wasm32.

use web_time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time. In the browser it comes from `Date.now()`.
    pub fn now() -> Self {
        let micros = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
        };
        Timestamp(micros)
    }

    /// The time `micros` microseconds after the Unix epoch.
    pub fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// Microseconds since the Unix epoch.
    pub fn as_micros(self) -> i64 {
        self.0
    }

    /// The same instant as a [`SystemTime`], when the platform can hold it: browsers
    /// (wasm32) hold no instant before the Unix epoch, and no platform holds every `i64`.
    pub fn to_system_time(self) -> Option<SystemTime> {
        let magnitude = Duration::from_micros(self.0.unsigned_abs());
        if self.0 >= 0 {
            UNIX_EPOCH.checked_add(magnitude)
        } else {
            UNIX_EPOCH.checked_sub(magnitude)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_stored_timestamp_converts_without_panicking() {
        for micros in [i64::MIN, -1, 0, 1, i64::MAX] {
            let time = Timestamp::from_micros(micros).to_system_time();
            if micros >= 0 {
                assert!(time.is_some(), "{micros}");
            }
        }
        let before = Timestamp::from_micros(-1_000_000).to_system_time();
        #[cfg(not(target_arch = "wasm32"))]
        assert_eq!(before, UNIX_EPOCH.checked_sub(Duration::from_secs(1)));
        #[cfg(target_arch = "wasm32")]
        assert_eq!(before, None);
    }
}
