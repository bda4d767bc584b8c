//! Per-client token buckets for the persistence store API.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets tracked before idle ones are swept; the sweep threshold then
/// grows with the live population so sweeping stays amortised O(1).
const SWEEP_THRESHOLD: usize = 10_000;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
struct Buckets {
    map: HashMap<String, Bucket>,
    sweep_at: usize,
}

/// A token bucket per client: `rate` tokens per second, at most `burst`
/// saved up. The critical section is a hash lookup and a few float
/// operations, so one mutex is cheaper than anything sharded.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    /// `rate_per_second` and `burst` must be at least 1 (the configuration
    /// is validated before).
    pub fn new(rate_per_second: u32, burst: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate_per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                sweep_at: SWEEP_THRESHOLD,
            }),
        }
    }

    /// Takes a token for `client`, or says how long until one is available.
    pub fn check(&self, client: &str) -> Result<(), Duration> {
        self.check_at(client, Instant::now())
    }

    fn check_at(&self, client: &str, now: Instant) -> Result<(), Duration> {
        // A poisoned lock only means another request panicked mid-update of
        // a counter; the counters are still usable.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.map.len() >= buckets.sweep_at {
            self.sweep(&mut buckets, now);
        }
        let bucket = match buckets.map.get_mut(client) {
            Some(b) => b,
            None => buckets.map.entry(client.to_owned()).or_insert(Bucket {
                tokens: self.burst,
                updated: now,
            }),
        };
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }

    /// Drops buckets that have refilled completely: forgetting them changes
    /// nothing, since a new bucket starts full.
    fn sweep(&self, buckets: &mut Buckets, now: Instant) {
        buckets.map.retain(|_, b| {
            let refilled =
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * self.rate;
            refilled < self.burst
        });
        buckets.sweep_at = (buckets.map.len() * 2).max(SWEEP_THRESHOLD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_have_separate_buckets() {
        let limiter = RateLimiter::new(2, 2);
        let t0 = Instant::now();
        assert!(limiter.check_at("a", t0).is_ok());
        assert!(limiter.check_at("a", t0).is_ok());
        let wait = limiter.check_at("a", t0).err();
        assert!(wait.is_some_and(|d| d > Duration::ZERO && d <= Duration::from_millis(500)));
        assert!(limiter.check_at("b", t0).is_ok());
        // Half a second later one token is back.
        assert!(
            limiter
                .check_at("a", t0 + Duration::from_millis(500))
                .is_ok()
        );
        assert!(
            limiter
                .check_at("a", t0 + Duration::from_millis(500))
                .is_err()
        );
    }

    #[test]
    fn idle_buckets_are_swept() {
        let limiter = RateLimiter::new(1000, 1);
        let t0 = Instant::now();
        for i in 0..SWEEP_THRESHOLD {
            assert!(limiter.check_at(&i.to_string(), t0).is_ok());
        }
        assert!(
            limiter
                .check_at("late", t0 + Duration::from_secs(1))
                .is_ok()
        );
        let buckets = limiter
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        assert_eq!(buckets.map.len(), 1);
    }
}
