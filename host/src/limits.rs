//! Rate limits the router applies to what arrives from the LAN: token
//! buckets, one per source and one for the whole router ([`KeyedLimiter`]),
//! and the numbers, with their defaults, that the `limits:` section of the
//! config file may change ([`Limits`]).
//!
//! The buckets count whole requests in thousandths of a token, refill from
//! elapsed time only (no timer task), and never lose refill to rounding: the
//! clock is advanced by exactly the time the added tokens are worth.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// A sustained rate with a burst allowance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: NonZeroU32,
    /// Bucket size: how many requests may arrive at once after a quiet
    /// period.
    pub burst: NonZeroU32,
}

impl Rate {
    /// `per_second` sustained, `burst` at once. Panics on zero (constants
    /// only; the config file goes through serde's `NonZeroU32`).
    pub const fn new(per_second: u32, burst: u32) -> Rate {
        match (NonZeroU32::new(per_second), NonZeroU32::new(burst)) {
            (Some(per_second), Some(burst)) => Rate { per_second, burst },
            _ => panic!("a rate needs a non-zero rate and burst"),
        }
    }
}

const MILLI: u64 = 1_000;

/// One token bucket; starts full.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    rate: Rate,
    /// Thousandths of a token.
    milli: u64,
    /// The instant up to which refill has been credited.
    credited: Instant,
}

impl TokenBucket {
    /// A full bucket for `rate`.
    pub fn new(rate: Rate, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            milli: u64::from(rate.burst.get()) * MILLI,
            credited: now,
        }
    }

    fn capacity(&self) -> u64 {
        u64::from(self.rate.burst.get()) * MILLI
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.credited);
        let per_second = u64::from(self.rate.per_second.get());
        let room = self.capacity() - self.milli;
        // The time that fills `room`, rounded up: any longer fills it too,
        // and below it `ns * per_second` stays under room * 1e6 + per_second
        // < 2^63 (room <= 2^32 * 1000), so this is u64 arithmetic, no u128
        // division (it runs for every STUN request the responder reads).
        let fill_ns = (room * 1_000_000).div_ceil(per_second);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        if ns >= fill_ns {
            self.milli = self.capacity();
            self.credited = now;
            return;
        }
        // milli-tokens earned = ns * per_second * 1000 / 1e9 (< room)
        let earned = ns * per_second / 1_000_000;
        self.milli += earned;
        // Advance by exactly what `earned` is worth, keeping the rest.
        let worth = earned * 1_000_000 / per_second;
        self.credited += Duration::from_nanos(worth);
    }

    /// Whether a whole token is there at `now` (refilling first).
    fn ready(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.milli >= MILLI
    }

    fn take(&mut self) {
        self.milli -= MILLI;
    }

    /// Take one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let ok = self.ready(now);
        if ok {
            self.take();
        }
        ok
    }

    /// How long until a token is there (zero if one is); for `Retry-After`.
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let missing = MILLI.saturating_sub(self.milli);
        // Rounded up, so waiting this long always finds the token.
        let ns = (u128::from(missing) * 1_000_000).div_ceil(u128::from(self.rate.per_second.get()));
        Duration::from_nanos(ns as u64)
    }

    /// Whether the bucket is full (an idle source: its entry can go).
    fn full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.milli == self.capacity()
    }
}

/// Why a request was not let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limited {
    /// Its source sent too many.
    Source,
    /// The router as a whole is at its rate.
    Global,
}

/// A bucket per key (a source) and one for everything, with a bounded number
/// of keys: when the table is full, idle keys (full buckets) are dropped;
/// if none is idle, a new key is held only to the global bucket, so a flood
/// of spoofed sources costs bounded memory and still meets the global rate.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    per_key: Rate,
    max_keys: usize,
    keys: HashMap<K, TokenBucket>,
    global: TokenBucket,
}

impl<K: Eq + Hash + Copy> KeyedLimiter<K> {
    /// `per_key` for each key, `global` for all of them together, at most
    /// `max_keys` keys remembered.
    pub fn new(per_key: Rate, global: Rate, max_keys: usize, now: Instant) -> KeyedLimiter<K> {
        KeyedLimiter {
            per_key,
            max_keys,
            keys: HashMap::new(),
            global: TokenBucket::new(global, now),
        }
    }

    /// Let one request of `key` through (taking a token from both buckets),
    /// or say which bucket is empty (taking none).
    pub fn check(&mut self, key: K, now: Instant) -> Result<(), Limited> {
        let per_key = self.per_key;
        if self.keys.len() >= self.max_keys && !self.keys.contains_key(&key) {
            self.keys.retain(|_, b| !b.full(now));
        }
        // One hash per request while the table has room.
        let mut bucket = if self.keys.len() < self.max_keys {
            Some(
                self.keys
                    .entry(key)
                    .or_insert_with(|| TokenBucket::new(per_key, now)),
            )
        } else {
            self.keys.get_mut(&key)
        };
        if let Some(b) = bucket.as_deref_mut()
            && !b.ready(now)
        {
            return Err(Limited::Source);
        }
        if !self.global.ready(now) {
            return Err(Limited::Global);
        }
        self.global.take();
        if let Some(b) = bucket {
            b.take();
        }
        Ok(())
    }

    /// How long `key` must wait for its next token (zero when it has one);
    /// for `Retry-After`.
    pub fn wait(&mut self, key: K, now: Instant) -> Duration {
        let key_wait = self
            .keys
            .get_mut(&key)
            .map_or(Duration::ZERO, |b| b.wait(now));
        key_wait.max(self.global.wait(now))
    }

    /// Keys remembered now (bounded by `max_keys`).
    pub fn keys(&self) -> usize {
        self.keys.len()
    }
}

/// The source key of a STUN or HTTP client: its IPv4 address, or the /64 of
/// its IPv6 address (one host owns a whole /64 under SLAAC and privacy
/// addresses, so a per-address bucket would not hold it).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// The STUN responder's limits (`limits.stun`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StunLimits {
    /// Requests per source (address, or IPv6 /64). A speaker gathering a
    /// server-reflexive candidate sends a handful; a browser a few per
    /// interface. Default 20/s, burst 40.
    pub per_source: Rate,
    /// Requests answered per second by the whole responder, whatever their
    /// sources: what the router may reflect toward a spoofed address.
    /// Default 5,000/s, burst 10,000 (about 2 Mbit/s of answers).
    pub global: Rate,
    /// Sources remembered at once (default 4,096, about 200 KB).
    pub max_sources: usize,
}

impl Default for StunLimits {
    fn default() -> StunLimits {
        StunLimits {
            per_source: Rate::new(20, 40),
            global: Rate::new(5_000, 10_000),
            max_sources: 4_096,
        }
    }
}

/// The HTTP server's limits (`limits.http`), applied by
/// [`crate::http_guard`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// A request's header must be complete this long after the connection
    /// opened or the previous response went out (default 5,000 ms).
    pub header_timeout_ms: NonZeroU32,
    /// A request's body must be complete this long after its header
    /// (default 10,000 ms).
    pub body_timeout_ms: NonZeroU32,
    /// Open connections at most (default 512); more are closed at accept.
    pub max_connections: NonZeroU32,
    /// Open connections per client address (default 32): one client that
    /// opens hundreds cannot take the others' places.
    pub max_connections_per_client: NonZeroU32,
    /// Host names (besides IP literals of the listen address) that the
    /// `Host` header may carry, e.g. `router.local`; anything else is
    /// refused, so a DNS-rebinding page cannot reach the API.
    /// `localhost` is always accepted.
    pub allowed_hosts: Vec<String>,
    /// Origins (`http://router.local:8188`) whose pages may read API
    /// responses (CORS). Empty (the default): no CORS headers at all.
    pub cors_origins: Vec<String>,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        let n = |v| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        HttpLimits {
            header_timeout_ms: n(5_000),
            body_timeout_ms: n(10_000),
            max_connections: n(512),
            max_connections_per_client: n(32),
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
        }
    }
}

/// `limits.sessions.consent_timeout_ms`: 10,000 to 30,000 (RFC 7675
/// section 5.1 lets consent expire after at most 30 s; below 10 s two lost
/// answers in a row would end a healthy session).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u32")]
pub struct ConsentTimeoutMs(u32);

impl ConsentTimeoutMs {
    /// Milliseconds.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for ConsentTimeoutMs {
    type Error = String;
    fn try_from(ms: u32) -> Result<Self, String> {
        if (10_000..=30_000).contains(&ms) {
            Ok(ConsentTimeoutMs(ms))
        } else {
            Err(format!(
                "consent_timeout_ms must be 10000 to 30000 (RFC 7675: at most 30 s), not {ms}"
            ))
        }
    }
}

impl std::fmt::Display for ConsentTimeoutMs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Admission of speaker sessions (`limits.sessions`), applied by
/// [`crate::admission`] and the remote-candidate filter
/// ([`crate::candidate_filter`]).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionLimits {
    /// Speaker sessions the router holds at once, all clients together
    /// (default 64); a `POST` beyond it is answered 503.
    pub max: NonZeroU32,
    /// Sessions one client (address, or IPv6 /64) may hold at once
    /// (default 4: a speaker needs one, a restart after a crash a second).
    pub per_client: NonZeroU32,
    /// `POST /api/ice/sessions` per client (default 1/s, burst 8).
    pub post_rate: Rate,
    /// A connected session ends when no media datagram came from its
    /// speaker for this long (default 30,000 ms).
    pub media_timeout_ms: NonZeroU32,
    /// A connected session ends when no consent check of ours was
    /// answered for this long (RFC 7675; default and most 30,000 ms, at
    /// least 10,000: the checks go out every 4 to 6 s). The liveness of a
    /// speaker that plays a sink and so sends no media.
    pub consent_timeout_ms: ConsentTimeoutMs,
    /// When set, `POST /api/ice/sessions` needs `Authorization: Bearer
    /// TOKEN` (for LANs that are not trusted). Default: none.
    pub speaker_token: Option<String>,
    /// Connectivity checks one session may send toward remote addresses
    /// that never answered (default 100; see
    /// `AgentConfig::unanswered_check_budget`). With the per-client cap
    /// this bounds one client at 400 such checks at a time.
    pub unanswered_checks_per_session: u16,
    /// The same checks from all sessions together (default 200/s, burst
    /// 1,000): in any `T` seconds the router sends at most `1,000 + 200·T`
    /// checks toward addresses that never answered, however many clients
    /// ask. A check without a token is held back like a lost datagram (the
    /// agent retransmits it); checks to peers that answered are not counted.
    pub unanswered_check_rate: Rate,
    /// Resolve `.local` candidate names with mDNS (default off): other host
    /// names are always refused with 400, `.local` ones too when off.
    pub mdns_names: bool,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        let n = |v| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        SessionLimits {
            max: n(64),
            per_client: n(4),
            post_rate: Rate::new(1, 8),
            media_timeout_ms: n(30_000),
            consent_timeout_ms: ConsentTimeoutMs(30_000),
            speaker_token: None,
            unanswered_checks_per_session: 100,
            unanswered_check_rate: Rate::new(200, 1_000),
            mdns_names: false,
        }
    }
}

/// Every limit of the `limits:` section, with defaults for what a file
/// leaves out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The STUN responder.
    pub stun: StunLimits,
    /// The HTTP server.
    pub http: HttpLimits,
    /// Speaker sessions.
    pub sessions: SessionLimits,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(Rate::new(10, 5), t0);
        assert_eq!((0..20).filter(|_| b.try_take(t0)).count(), 5);
        // 1 s later: exactly 10 more (and not 11: the burst caps refill at 5).
        let mut taken = 0;
        for ms in 1..=1_000u64 {
            if b.try_take(t0 + Duration::from_millis(ms)) {
                taken += 1;
            }
        }
        assert_eq!(taken, 10);
        let at = t0 + Duration::from_millis(1_000);
        let wait = b.wait(at);
        assert_eq!(wait, Duration::from_millis(100));
        assert!(!b.try_take(at + wait - Duration::from_nanos(1)));
        assert!(b.try_take(at + wait));
    }

    #[test]
    fn refill_is_not_lost_to_rounding_under_a_flood() {
        // Asked every microsecond, a 20/s bucket still refills at 20/s.
        let t0 = Instant::now();
        let mut b = TokenBucket::new(Rate::new(20, 1), t0);
        let mut taken = 0;
        for us in 0..2_000_000u64 {
            if b.try_take(t0 + Duration::from_micros(us)) {
                taken += 1;
            }
        }
        assert!((40..=41).contains(&taken), "{taken}");
    }

    #[test]
    fn keyed_limiter_holds_each_source_and_the_total() {
        let t0 = Instant::now();
        let mut l = KeyedLimiter::new(Rate::new(1, 3), Rate::new(1, 5), 2, t0);
        let (a, b, c) = (1u8, 2u8, 3u8);
        assert_eq!((0..10).filter(|_| l.check(a, t0).is_ok()).count(), 3);
        assert_eq!(l.check(a, t0), Err(Limited::Source));
        assert_eq!((0..10).filter(|_| l.check(b, t0).is_ok()).count(), 2);
        assert_eq!(l.check(b, t0), Err(Limited::Global));
        // The table is full of busy keys: a third key meets only the
        // global bucket, which is empty.
        assert_eq!(l.check(c, t0), Err(Limited::Global));
        assert_eq!(l.keys(), 2);
        // Much later every bucket is full again: idle keys make room.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(l.check(c, later), Ok(()));
        assert!(l.keys() <= 2);
        assert_eq!(l.wait(a, later), Duration::ZERO);
    }

    #[test]
    fn ipv6_sources_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(source_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn limits_section_parses_with_defaults() {
        let l: Limits =
            serde_saphyr::from_str("stun:\n  per_source: {per_second: 5, burst: 6}\n").unwrap();
        assert_eq!(l.stun.per_source, Rate::new(5, 6));
        assert_eq!(l.stun.global, StunLimits::default().global);
        assert!(
            serde_saphyr::from_str::<Limits>("stun:\n  per_source: {per_second: 0, burst: 1}\n")
                .is_err()
        );
        assert!(serde_saphyr::from_str::<Limits>("stun:\n  bogus: 1\n").is_err());
    }
}
