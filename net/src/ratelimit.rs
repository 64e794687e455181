//! Token bucket rate limiter with time passed in.
//!
//! Integer arithmetic only: the bucket counts "nano-tokens" (10^-9 of a message), and
//! refills at `rate_per_sec` tokens per second = `rate_per_sec` nano-tokens per
//! nanosecond, so no rounding ever builds up.

/// Nano-tokens in one token (one message).
const NANO: u64 = 1_000_000_000;

/// Largest configurable rate and burst: keeps `burst * NANO` far from u64 overflow.
pub const RATE_MAX: u32 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained messages per second.
    pub rate_per_sec: u32,
    /// Messages that may arrive at once after a quiet period.
    pub burst: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    /// Current content, in nano-tokens, at most `burst * NANO`.
    nano_tokens: u64,
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket at time `now_ns`.
    pub fn new(limit: RateLimit, now_ns: u64) -> TokenBucket {
        assert!(limit.rate_per_sec >= 1 && limit.rate_per_sec <= RATE_MAX);
        assert!(limit.burst >= 1 && limit.burst <= RATE_MAX);
        TokenBucket { limit, nano_tokens: limit.burst as u64 * NANO, last_ns: now_ns }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one token if there is one. Time that goes backwards counts as no time.
    pub fn try_take(&mut self, now_ns: u64) -> bool {
        self.refill(now_ns);
        if self.nano_tokens >= NANO {
            self.nano_tokens -= NANO;
            true
        } else {
            false
        }
    }

    /// Whole tokens available at `now_ns`.
    pub fn available(&mut self, now_ns: u64) -> u64 {
        self.refill(now_ns);
        self.nano_tokens / NANO
    }

    fn refill(&mut self, now_ns: u64) {
        let capacity = self.limit.burst as u64 * NANO;
        let elapsed_ns = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        let added = elapsed_ns.saturating_mul(self.limit.rate_per_sec as u64);
        self.nano_tokens = self.nano_tokens.saturating_add(added).min(capacity);
        debug_assert!(self.nano_tokens <= capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let mut bucket = TokenBucket::new(RateLimit { rate_per_sec: 10, burst: 3 }, 0);
        assert!(bucket.try_take(0));
        assert!(bucket.try_take(0));
        assert!(bucket.try_take(0));
        assert!(!bucket.try_take(0));
        // One token per 100 ms.
        assert!(!bucket.try_take(99_999_999));
        assert!(bucket.try_take(100_000_000));
        assert!(!bucket.try_take(100_000_000));
        // A long pause refills only up to the burst.
        assert_eq!(bucket.available(1_000_000_000_000), 3);
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let mut bucket = TokenBucket::new(RateLimit { rate_per_sec: 1, burst: 1 }, 5_000_000_000);
        assert!(bucket.try_take(5_000_000_000));
        assert!(!bucket.try_take(0));
        assert!(!bucket.try_take(5_999_999_999));
        assert!(bucket.try_take(6_000_000_000));
    }

    #[test]
    fn long_run_rate_is_exact() {
        // Over 10 s at 7/s with burst 2, polling every millisecond: the 2 tokens it starts
        // with, then exactly 70 more. (With burst 1 the bucket would sit full between a
        // token's arrival and the next poll, and what arrives meanwhile is rightly lost.)
        let mut bucket = TokenBucket::new(RateLimit { rate_per_sec: 7, burst: 2 }, 0);
        let taken = (0..=10_000u64).filter(|ms| bucket.try_take(ms * 1_000_000)).count();
        assert_eq!(taken, 72);
    }
}
