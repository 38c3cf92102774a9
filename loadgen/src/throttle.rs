//! A read-rate limit for slow-consumer connections: a token bucket of
//! bytes, no I/O. The driver ([`crate::client`]) reads at most
//! [`ReadThrottle::allowance`] bytes, reports them with
//! [`ReadThrottle::consume`], and when the allowance is below
//! [`ReadThrottle::min_read`] sleeps until [`ReadThrottle::ready_at`]. The
//! socket's receive buffer then fills, TCP closes its window, and the
//! server sees a client that reads slowly.

/// A byte budget refilled at `bps` bytes per second, holding at most
/// 100 ms of it (and at least 1 KiB).
#[derive(Clone, Debug)]
pub struct ReadThrottle {
    bps: f64,
    burst: f64,
    tokens: f64,
    last_us: u64,
}

impl ReadThrottle {
    /// A full bucket for `bps` bytes per second (≥ 1) at `now_us`.
    #[must_use]
    pub fn new(bps: u64, now_us: u64) -> ReadThrottle {
        let bps = bps.max(1) as f64;
        let burst = (bps / 10.0).max(1024.0);
        ReadThrottle {
            bps,
            burst,
            tokens: burst,
            last_us: now_us,
        }
    }

    /// Smallest read worth waking up for, bytes.
    #[must_use]
    pub fn min_read(&self) -> usize {
        1024.0_f64.min(self.burst) as usize
    }

    fn refill(&mut self, now_us: u64) {
        let dt = now_us.saturating_sub(self.last_us) as f64 / 1e6;
        self.tokens = (self.tokens + dt * self.bps).min(self.burst);
        self.last_us = self.last_us.max(now_us);
    }

    /// Bytes that may be read at `now_us`.
    pub fn allowance(&mut self, now_us: u64) -> usize {
        self.refill(now_us);
        self.tokens.max(0.0) as usize
    }

    /// `n` bytes were read.
    pub fn consume(&mut self, n: usize) {
        self.tokens -= n as f64;
    }

    /// When [`ReadThrottle::min_read`] bytes will be allowed (µs; `now_us`
    /// if they already are).
    #[must_use]
    pub fn ready_at(&self, now_us: u64) -> u64 {
        let elapsed = now_us.saturating_sub(self.last_us) as f64 / 1e6;
        let have = (self.tokens + elapsed * self.bps).min(self.burst);
        let need = self.min_read() as f64 - have;
        if need <= 0.0 {
            now_us
        } else {
            now_us + (need / self.bps * 1e6).ceil() as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_held_to_the_rate_after_the_first_burst() {
        let mut t = ReadThrottle::new(10_000, 0);
        assert_eq!(t.allowance(0), 1024, "100 ms of 10 kB/s, at least 1 KiB");
        t.consume(1024);
        assert_eq!(t.allowance(0), 0);
        assert_eq!(t.ready_at(0), 102_400);
        assert_eq!(t.allowance(51_200), 512);
        t.consume(512);
        // Over one simulated second, reading whatever is allowed every
        // millisecond takes about 10 kB.
        let mut read = 0;
        for ms in 52..=1052u64 {
            let n = t.allowance(ms * 1000);
            t.consume(n);
            read += n;
        }
        assert!((9_900..=10_100).contains(&read), "{read}");
    }

    #[test]
    fn the_bucket_never_holds_more_than_its_burst() {
        let mut t = ReadThrottle::new(1_000_000, 0);
        assert_eq!(t.allowance(60_000_000), 100_000);
        assert_eq!(t.ready_at(60_000_000), 60_000_000);
    }
}
