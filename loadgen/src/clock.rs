//! The run clock: microseconds since the Unix epoch, read from a monotonic
//! clock.
//!
//! Each payload carries its scheduled send time and the receiver subtracts
//! it from its own reading, possibly in another thread or worker process of
//! the same host. A [`Clock`] samples the wall clock once and advances with
//! [`Instant`] from there: readings never go backwards (NTP steps do not
//! produce negative latencies) and processes on one host agree to within the
//! accuracy of that one wall-clock sample (microseconds). Loadgen processes
//! on different hosts would need synchronised clocks; they are not supported.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Monotonic microseconds since the Unix epoch. Cheap to copy and to read.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
    base_unix_us: u64,
}

impl Clock {
    /// A clock anchored at the current wall-clock time.
    #[must_use]
    pub fn new() -> Clock {
        let base = Instant::now();
        let base_unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Clock { base, base_unix_us }
    }

    /// Now, in µs since the Unix epoch.
    #[must_use]
    pub fn now_us(&self) -> u64 {
        self.base_unix_us + self.base.elapsed().as_micros() as u64
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}
