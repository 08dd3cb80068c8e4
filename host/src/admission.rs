//! Admission of speaker sessions: who may start one, how many, how often.
//!
//! [`Admission::admit`] runs first in `POST /api/ice/sessions`, before the
//! body is read, any socket is bound or any task is spawned, and in this
//! order:
//!
//! 1. the speaker token, when configured (`Authorization: Bearer ...`,
//!    compared in constant time): 401 without it;
//! 2. the client's POST rate (token bucket, [`SessionLimits::post_rate`]):
//!    429 with `Retry-After`;
//! 3. the per-client cap ([`SessionLimits::per_client`]): 429 with
//!    `Retry-After`;
//! 4. the router-wide cap (`limits.sessions.max`): 503 with
//!    `Retry-After`, the only case that says the router as a whole is full.
//!
//! The two caps are checked and taken under one lock, so a burst of
//! concurrent POSTs can never overshoot either. The place is held by the
//! returned [`Ticket`] and given back when it is dropped: with the session
//! task when the session ends, or at once when the request fails before
//! that.
//!
//! Admission also holds the router-wide budget of connectivity checks
//! toward addresses that never answered ([`Admission::check_budget`],
//! [`SessionLimits::unanswered_check_rate`]), which every session shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use scream_ice_tokio::CheckBudget;
use subtle::ConstantTimeEq;

use crate::limits::{KeyedLimiter, SessionLimits, TokenBucket, source_key};

/// Clients whose POST buckets are remembered at once.
const MAX_RATE_KEYS: usize = 4_096;

/// How long a client over its session cap is told to wait: about the time
/// a session that failed to connect takes to go away.
const CAP_RETRY: Duration = Duration::from_secs(10);

/// Why a session was not admitted; each is one HTTP reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// A speaker token is configured and the request did not carry it.
    Unauthorized,
    /// The client POSTs faster than its rate; try again after this long.
    RateLimited(Duration),
    /// The client holds its cap of sessions.
    ClientFull(u32),
    /// The router holds its cap of sessions.
    RouterFull(usize),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let retry = |d: Duration| d.as_secs().max(1);
        let (status, text, after) = match self {
            Refusal::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "this router needs a speaker token (Authorization: Bearer ...)\n".to_string(),
                None,
            ),
            Refusal::RateLimited(d) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many session requests from this client\n".to_string(),
                Some(retry(d)),
            ),
            Refusal::ClientFull(n) => (
                StatusCode::TOO_MANY_REQUESTS,
                format!("this client already holds {n} ICE sessions (the most allowed)\n"),
                Some(retry(CAP_RETRY)),
            ),
            Refusal::RouterFull(n) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("too many ICE sessions (at most {n})\n"),
                Some(retry(CAP_RETRY)),
            ),
        };
        let mut r = (status, text).into_response();
        let h = r.headers_mut();
        if let Some(secs) = after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            h.insert(RETRY_AFTER, v);
        }
        if self == Refusal::Unauthorized {
            h.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        h.insert(
            axum::http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        r
    }
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    per_client: HashMap<IpAddr, u32>,
}

#[derive(Debug)]
struct Shared {
    held: Mutex<Held>,
    rate: Mutex<KeyedLimiter<IpAddr>>,
    checks: Arc<RouterChecks>,
    limits: SessionLimits,
}

/// [`SessionLimits::unanswered_check_rate`] as one token bucket for all
/// sessions; every check it holds back is counted.
#[derive(Debug)]
struct RouterChecks {
    bucket: Mutex<TokenBucket>,
    held: Counter,
}

impl CheckBudget for RouterChecks {
    fn try_take(&self) -> bool {
        let ok = lock(&self.bucket).try_take(Instant::now());
        if !ok {
            self.held.inc();
        }
        ok
    }
}

/// The admission state of one router; cloning shares it.
#[derive(Clone, Debug)]
pub struct Admission {
    shared: Arc<Shared>,
}

/// One admitted session's place under both caps; dropping it gives the
/// place back.
#[derive(Debug)]
pub struct Ticket {
    shared: Arc<Shared>,
    client: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut held = lock(&self.shared.held);
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                held.per_client.remove(&self.client);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a few integer updates: still consistent
    // after a panic elsewhere.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Admission {
    /// Admission under `limits`; `checks_held` counts the checks the
    /// router-wide budget holds back (a metric's counter, or a fresh one).
    pub fn new(limits: SessionLimits, checks_held: Counter) -> Admission {
        // The router-wide POST rate: every client's burst, at 16 clients'
        // sustained rate; the caps, not this, bound the sessions.
        const CLIENTS: NonZeroU32 = NonZeroU32::new(16).unwrap();
        let per = limits.post_rate;
        let global = crate::limits::Rate {
            per_second: per.per_second.saturating_mul(CLIENTS),
            burst: per.burst.saturating_mul(CLIENTS),
        };
        Admission {
            shared: Arc::new(Shared {
                held: Mutex::default(),
                rate: Mutex::new(KeyedLimiter::new(
                    per,
                    global,
                    MAX_RATE_KEYS,
                    Instant::now(),
                )),
                checks: Arc::new(RouterChecks {
                    bucket: Mutex::new(TokenBucket::new(
                        limits.unanswered_check_rate,
                        Instant::now(),
                    )),
                    held: checks_held,
                }),
                limits,
            }),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &SessionLimits {
        &self.shared.limits
    }

    /// The router-wide budget of checks toward addresses that never
    /// answered: give it to every session
    /// ([`scream_ice_tokio::SessionConfig::check_budget`]).
    pub fn check_budget(&self) -> Arc<dyn CheckBudget> {
        self.shared.checks.clone()
    }

    /// Sessions admitted and not yet ended: (router-wide, this client's).
    pub fn held(&self, client: IpAddr) -> (usize, u32) {
        let held = lock(&self.shared.held);
        let mine = held
            .per_client
            .get(&source_key(client))
            .copied()
            .unwrap_or(0);
        (held.total, mine)
    }

    /// Admit one session for `client` (the policy's client address) whose
    /// request carried `headers`, or say why not (see the module docs for
    /// the order of the checks).
    pub fn admit(&self, client: IpAddr, headers: &HeaderMap) -> Result<Ticket, Refusal> {
        let s = &self.shared;
        if let Some(token) = &s.limits.speaker_token {
            let given = headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
                return Err(Refusal::Unauthorized);
            }
        }
        let key = source_key(client);
        {
            let now = Instant::now();
            let mut rate = lock(&s.rate);
            if rate.check(key, now).is_err() {
                return Err(Refusal::RateLimited(rate.wait(key, now)));
            }
        }
        let mut held = lock(&s.held);
        let mine = held.per_client.get(&key).copied().unwrap_or(0);
        if mine >= s.limits.per_client.get() {
            return Err(Refusal::ClientFull(s.limits.per_client.get()));
        }
        let max = s.limits.max.get() as usize;
        if held.total >= max {
            return Err(Refusal::RouterFull(max));
        }
        held.total += 1;
        *held.per_client.entry(key).or_insert(0) += 1;
        Ok(Ticket {
            shared: s.clone(),
            client: key,
        })
    }
}

/// What `serve` prints about tokens: which endpoints need one.
pub fn token_note(limits: &SessionLimits) -> &'static str {
    if limits.speaker_token.is_some() {
        "POST /api/ice/sessions needs the speaker token (Authorization: Bearer, limits.sessions.speaker_token); no other endpoint needs a token yet"
    } else {
        "no endpoint needs a token yet"
    }
}

/// Remove the TURN servers from what an unauthenticated endpoint
/// (`GET /api/ice-config`, `OPTIONS /api/whep/{sink}`) hands out: their
/// credentials are static, so anyone who can reach the API could relay
/// through them. Until TURN credentials are time-limited, only admitted
/// speaker sessions get them (in the `Link` headers of
/// `POST /api/ice/sessions`).
pub fn withhold_static_turn(chosen: &mut crate::http::Chosen) {
    if !chosen.turn.is_empty() {
        tracing::debug!(
            client = %chosen.client,
            "{} TURN servers with static credentials withheld",
            chosen.turn.len()
        );
        chosen.turn.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Rate;

    fn limits(per_client: u32, max: u32) -> SessionLimits {
        SessionLimits {
            max: std::num::NonZeroU32::new(max).unwrap(),
            per_client: std::num::NonZeroU32::new(per_client).unwrap(),
            post_rate: Rate::new(1_000, 1_000),
            ..SessionLimits::default()
        }
    }

    #[test]
    fn caps_are_taken_and_given_back() {
        let a = Admission::new(limits(2, 3), Counter::default());
        let (x, y): (IpAddr, IpAddr) = (
            "192.168.1.20".parse().unwrap(),
            "192.168.1.21".parse().unwrap(),
        );
        let h = HeaderMap::new();
        let t1 = a.admit(x, &h).unwrap();
        let _t2 = a.admit(x, &h).unwrap();
        assert_eq!(a.admit(x, &h).unwrap_err(), Refusal::ClientFull(2));
        let _t3 = a.admit(y, &h).unwrap();
        assert_eq!(a.admit(y, &h).unwrap_err(), Refusal::RouterFull(3));
        drop(t1);
        assert_eq!(a.held(x), (2, 1));
        let _t4 = a.admit(y, &h).unwrap();
        assert_eq!(a.held(y), (3, 2));
    }

    #[test]
    fn post_rate_and_token() {
        let mut l = limits(100, 100);
        l.post_rate = Rate::new(1, 3);
        l.speaker_token = Some("s3cret".into());
        let a = Admission::new(l, Counter::default());
        let x: IpAddr = "192.168.1.20".parse().unwrap();
        assert_eq!(
            a.admit(x, &HeaderMap::new()).unwrap_err(),
            Refusal::Unauthorized
        );
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer wrong"));
        assert_eq!(a.admit(x, &h).unwrap_err(), Refusal::Unauthorized);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
        let held: Vec<Ticket> = (0..3).map(|_| a.admit(x, &h).unwrap()).collect();
        match a.admit(x, &h) {
            Err(Refusal::RateLimited(d)) => assert!(d <= Duration::from_secs(1), "{d:?}"),
            other => panic!("{other:?}"),
        }
        let r = Refusal::RateLimited(Duration::from_millis(300)).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[RETRY_AFTER], "1");
        assert_eq!(
            Refusal::RouterFull(64).into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        drop(held);
    }

    #[test]
    fn concurrent_admissions_never_overshoot() {
        let a = Admission::new(limits(4, 1_000), Counter::default());
        let x: IpAddr = "10.0.0.1".parse().unwrap();
        let admitted: Vec<Ticket> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..64)
                .map(|_| s.spawn(|| a.admit(x, &HeaderMap::new()).ok()))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(admitted.len(), 4);
    }

    #[test]
    fn the_check_budget_is_shared_and_counts_what_it_holds() {
        let mut l = limits(4, 64);
        l.unanswered_check_rate = Rate::new(1, 10);
        let held = Counter::default();
        let a = Admission::new(l, held.clone());
        let (b1, b2) = (a.check_budget(), a.clone().check_budget());
        // One bucket behind both handles: 10 tokens in all, not 10 each.
        let taken = (0..15)
            .filter(|_| b1.try_take())
            .chain((0..15).filter(|_| b2.try_take()))
            .count();
        assert_eq!(taken, 10);
        assert_eq!(held.get(), 20);
    }
}
