//! Per-client request rate limiting: a token bucket per IPv4 address or IPv6 /64 (one
//! host usually owns a whole /64), in sharded maps with bounded size. Buckets that would
//! be full again are forgotten when a shard grows past its bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

const SHARDS: usize = 16;
const SHARD_SOFT_MAX: usize = 16_384;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    shards: Vec<Mutex<HashMap<u128, Bucket>>>,
}

fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) | (1 << 127),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)) | (1 << 127),
            None => u128::from(v6) & !((1u128 << 64) - 1),
        },
    }
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Takes a token for `ip`; false when the client is over its rate.
    pub fn allow(&self, ip: IpAddr) -> bool {
        self.allow_at(ip, Instant::now())
    }

    fn allow_at(&self, ip: IpAddr, now: Instant) -> bool {
        let k = key(ip);
        let mixed = (k ^ (k >> 64)) as u64;
        let shard =
            &self.shards[(mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % SHARDS];
        // A poisoned shard only means another request panicked mid-update; the bucket
        // data is still plain numbers, so keep using it.
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SHARD_SOFT_MAX && !map.contains_key(&k) {
            let refill = self.burst / self.rate.max(f64::MIN_POSITIVE);
            map.retain(|_, b| now.duration_since(b.last).as_secs_f64() < refill);
        }
        let b = map.entry(k).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_per_client() {
        let rl = RateLimiter::new(10.0, 3.0);
        let t0 = Instant::now();
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        assert!(rl.allow_at(a, t0));
        assert!(rl.allow_at(a, t0));
        assert!(rl.allow_at(a, t0));
        assert!(!rl.allow_at(a, t0), "burst of 3 exhausted");
        assert!(rl.allow_at(b, t0), "another client has its own bucket");
        assert!(
            rl.allow_at(a, t0 + Duration::from_millis(100)),
            "one token per 100 ms"
        );
        assert!(!rl.allow_at(a, t0 + Duration::from_millis(100)));
    }

    #[test]
    fn ipv6_hosts_in_one_slash_64_share_a_bucket() {
        let rl = RateLimiter::new(1.0, 1.0);
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8::1".parse().unwrap_or(IpAddr::from([0u8; 16]));
        let b: IpAddr = "2001:db8::2".parse().unwrap_or(IpAddr::from([0u8; 16]));
        assert!(rl.allow_at(a, t0));
        assert!(!rl.allow_at(b, t0));
    }
}
