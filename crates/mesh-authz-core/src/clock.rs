//! The one place that reads the wall clock. The check core takes `now` (unix seconds) as an
//! input; hosts read it from a [`Clock`], so tests and a second host can drive time.

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn unix_now(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_now(&self) -> i64 {
        unix_now()
    }
}

/// Seconds since the Unix epoch by the system clock (0 if the clock is before it).
#[allow(clippy::disallowed_methods)] // the blessed place
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
