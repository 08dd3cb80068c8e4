//! Unit tests of the agent: two agents over an ideal in-memory link, the
//! answers to every kind of bad request, role conflicts, consent, restart,
//! gathering. The full network simulator (NATs, loss, seeds) drives the
//! scenario matrix in the `scream-ice-tests` crate.

extern crate std;

use core::net::SocketAddr;
use std::vec::Vec;

use super::*;
use crate::stun::{self, AttributeType};

type TestAgent = Agent<8, 8, 64>;

const ONE_MS: Duration = Duration::from_millis(1);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn agent(role: Role, ufrag: &str, seed: u8) -> TestAgent {
    let c = AgentConfig {
        software: Some("scream-ice test"),
        ..AgentConfig::default()
    };
    Agent::new(c, role, ufrag, "apasswordof22chars+abcd", [seed; 32]).unwrap()
}

fn lan_agent(role: Role, ufrag: &str, seed: u8) -> TestAgent {
    let c = AgentConfig {
        ta: Duration::from_millis(5),
        rto_min: Duration::from_millis(100),
        nominate_host_on_first_success: true,
        ..AgentConfig::default()
    };
    Agent::new(c, role, ufrag, "apasswordof22chars+abcd", [seed; 32]).unwrap()
}

struct Wire {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
    at: Instant,
}

/// Two agents, `a` at `aa`, `b` at `ba`, one-way delay `delay`; `up`
/// decides per datagram whether it is delivered.
struct Pair2 {
    a: TestAgent,
    b: TestAgent,
    now: Instant,
    delay: Duration,
    wire: Vec<Wire>,
    events_a: Vec<Event>,
    events_b: Vec<Event>,
    up: bool,
    /// Emulate a lite `b` (RFC 8445 section 2.5): it answers checks but
    /// never sends its own requests.
    b_lite: bool,
    /// Every datagram sent: (by `b`, a request, [`Transmit::unanswered`]).
    sent: Vec<(bool, bool, bool)>,
    /// A local address whose datagrams, in flight or new, are all lost.
    dead: Option<SocketAddr>,
}

impl Pair2 {
    fn new(a: TestAgent, b: TestAgent) -> Self {
        Pair2 {
            a,
            b,
            now: Instant::ZERO,
            delay: ONE_MS,
            wire: Vec::new(),
            events_a: Vec::new(),
            events_b: Vec::new(),
            up: true,
            b_lite: false,
            sent: Vec::new(),
            dead: None,
        }
    }

    /// `a` at 192.168.1.10:5000 and `b` at 192.168.1.20:6000 on one LAN.
    fn lan(mut a: TestAgent, mut b: TestAgent) -> Self {
        a.add_host_candidate(addr("192.168.1.10:5000"), 65535)
            .unwrap();
        b.add_host_candidate(addr("192.168.1.20:6000"), 65535)
            .unwrap();
        Pair2::new(a, b)
    }

    fn drain(&mut self) {
        for (is_b, agent, events) in [
            (false, &mut self.a, &mut self.events_a),
            (true, &mut self.b, &mut self.events_b),
        ] {
            while let Some(t) = agent.poll_transmit() {
                let request = t.bytes.get(..2) == Some(&[0x00, 0x01]);
                self.sent.push((is_b, request, t.unanswered));
                if self.up && !(is_b && self.b_lite && request) {
                    self.wire.push(Wire {
                        from: t.from,
                        to: t.to,
                        bytes: t.bytes.to_vec(),
                        at: self.now + self.delay,
                    });
                }
            }
            while let Some(e) = agent.poll_event() {
                events.push(e);
            }
        }
    }

    /// Exchange credentials and host candidates, then run until `done` or
    /// `limit` of virtual time.
    fn connect(&mut self) {
        let a_ufrag: std::string::String = self.a.local_ufrag().into();
        let b_ufrag: std::string::String = self.b.local_ufrag().into();
        self.a
            .set_remote_credentials(&b_ufrag, "apasswordof22chars+abcd")
            .unwrap();
        self.b
            .set_remote_credentials(&a_ufrag, "apasswordof22chars+abcd")
            .unwrap();
        for c in self.a.local_candidates().copied().collect::<Vec<_>>() {
            self.b.add_remote_candidate(c).unwrap();
        }
        for c in self.b.local_candidates().copied().collect::<Vec<_>>() {
            self.a.add_remote_candidate(c).unwrap();
        }
        self.a.end_of_remote_candidates();
        self.b.end_of_remote_candidates();
        self.drain();
    }

    fn step(&mut self) -> bool {
        let next_wire = self.wire.iter().map(|w| w.at).min();
        let next = [next_wire, self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        let now = self.now;
        let due: Vec<Wire> = {
            let (due, rest) = self.wire.drain(..).partition(|w| w.at <= now);
            self.wire = rest;
            due
        };
        for w in due {
            if self.dead.is_some_and(|d| d == w.from || d == w.to) {
                continue;
            }
            let a_addrs: Vec<SocketAddr> = self.a.locals.iter().map(|l| l.base()).collect();
            let target = if a_addrs.contains(&w.to) {
                &mut self.a
            } else {
                &mut self.b
            };
            assert!(target.handle_receive(now, w.to, w.from, &w.bytes));
        }
        if self.a.poll_timeout().is_some_and(|t| t <= now) {
            self.a.handle_timeout(now);
        }
        if self.b.poll_timeout().is_some_and(|t| t <= now) {
            self.b.handle_timeout(now);
        }
        self.drain();
        true
    }

    fn run_until(&mut self, limit: Instant, mut done: impl FnMut(&Self) -> bool) -> bool {
        while self.now < limit {
            if done(self) {
                return true;
            }
            if !self.step() {
                return done(self);
            }
        }
        done(self)
    }

    fn both_connected(&self) -> bool {
        self.a.selected_pair().is_some() && self.b.selected_pair().is_some()
    }
}

#[test]
fn two_agents_on_a_lan_connect_within_three_round_trips() {
    let mut net = Pair2::lan(
        lan_agent(Role::Controlling, "aaaa", 1),
        lan_agent(Role::Controlled, "bbbb", 2),
    );
    net.connect();
    assert!(net.run_until(Instant::from_secs(5), Pair2::both_connected));
    // First check at t=0; with 1 ms one-way delay, a round trip is 2 ms.
    // check -> response (1 RTT), Ta, USE-CANDIDATE check -> response (2 RTT).
    assert!(
        net.now <= Instant::from_millis(3 * 2 + 5),
        "connected at {}",
        net.now
    );
    assert_eq!(
        net.a.selected_pair(),
        Some((addr("192.168.1.10:5000"), addr("192.168.1.20:6000")))
    );
    assert_eq!(
        net.b.selected_pair(),
        Some((addr("192.168.1.20:6000"), addr("192.168.1.10:5000")))
    );
    assert!(
        net.events_a
            .contains(&Event::Connection(ConnectionState::Connected))
    );
    assert!(
        net.events_b
            .iter()
            .any(|e| matches!(e, Event::Selected { .. }))
    );
}

#[test]
fn a_lite_peer_that_never_checks_is_still_nominated() {
    let mut net = Pair2::lan(
        agent(Role::Controlling, "aaaa", 30),
        agent(Role::Controlled, "bbbb", 31),
    );
    net.b_lite = true;
    net.connect();
    // Only the full agent's view matters: a lite peer selects what it is
    // told; here the full agent must check, nominate and select on its own.
    assert!(net.run_until(Instant::from_secs(10), |n| n.a.selected_pair().is_some()));
    assert_eq!(
        net.a.selected_pair(),
        Some((addr("192.168.1.10:5000"), addr("192.168.1.20:6000")))
    );
}

#[test]
fn regular_nomination_without_fast_path_picks_the_best_pair() {
    let mut a = agent(Role::Controlling, "aaaa", 3);
    let mut b = agent(Role::Controlled, "bbbb", 4);
    a.add_host_candidate(addr("192.168.1.10:5000"), 65535)
        .unwrap();
    a.add_host_candidate(addr("10.0.0.10:5000"), 65000).unwrap();
    b.add_host_candidate(addr("192.168.1.20:6000"), 65535)
        .unwrap();
    b.add_host_candidate(addr("10.0.0.20:6000"), 65000).unwrap();
    let mut net = Pair2::new(a, b);
    net.connect();
    assert!(net.run_until(Instant::from_secs(10), Pair2::both_connected));
    // All four pairs "work" on this ideal wire; the highest priority wins.
    assert_eq!(
        net.a.selected_pair(),
        Some((addr("192.168.1.10:5000"), addr("192.168.1.20:6000")))
    );
    assert_eq!(
        net.b.selected_pair(),
        Some((addr("192.168.1.20:6000"), addr("192.168.1.10:5000")))
    );
}

#[test]
fn role_conflict_is_resolved_by_the_tie_breaker() {
    let mut a = agent(Role::Controlling, "aaaa", 5);
    let mut b = agent(Role::Controlling, "bbbb", 6);
    a.add_host_candidate(addr("192.168.1.10:5000"), 65535)
        .unwrap();
    b.add_host_candidate(addr("192.168.1.20:6000"), 65535)
        .unwrap();
    let (ta, tb) = (a.tie_breaker(), b.tie_breaker());
    let mut net = Pair2::new(a, b);
    net.connect();
    assert!(net.run_until(Instant::from_secs(10), Pair2::both_connected));
    let (ra, rb) = (net.a.role(), net.b.role());
    assert_ne!(ra, rb, "exactly one controlling agent");
    let winner = if ta > tb { ra } else { rb };
    assert_eq!(
        winner,
        Role::Controlling,
        "the larger tie-breaker keeps control"
    );
    let switched = if ta > tb {
        &net.events_b
    } else {
        &net.events_a
    };
    assert!(switched.contains(&Event::RoleChanged(Role::Controlled)));
}

#[test]
fn both_controlled_also_resolves() {
    let mut net = Pair2::lan(
        agent(Role::Controlled, "aaaa", 7),
        agent(Role::Controlled, "bbbb", 8),
    );
    net.connect();
    assert!(net.run_until(Instant::from_secs(10), Pair2::both_connected));
    assert_ne!(net.a.role(), net.b.role());
}

#[test]
fn no_path_fails_cleanly_with_a_reason() {
    let mut net = Pair2::lan(
        lan_agent(Role::Controlling, "aaaa", 9),
        lan_agent(Role::Controlled, "bbbb", 10),
    );
    net.up = false;
    net.connect();
    let failed = |n: &Pair2| {
        n.events_a
            .contains(&Event::Failed(FailureReason::AllPairsFailed))
    };
    assert!(net.run_until(Instant::from_secs(60), failed));
    assert_eq!(net.a.connection_state(), ConnectionState::Failed);
    // RTO 100, 200, 400, 800 ms, then capped at 1.6 s: the 20th request
    // times out 1.5 + 16 x 1.6 = 27.1 s after the first; then the 10 s
    // failure grace for the peer's own checks.
    assert!(
        net.now >= Instant::from_millis(37_000) && net.now <= Instant::from_millis(37_200),
        "failed at {}",
        net.now
    );
    assert_eq!(net.a.poll_timeout(), None, "a failed agent has no timers");
}

/// A controlling LAN agent with one host candidate, the peer's credentials
/// and no remote candidate yet, gathering started.
fn lone_agent(seed: u8) -> TestAgent {
    let mut a = lan_agent(Role::Controlling, "aaaa", seed);
    a.add_host_candidate(addr("192.168.1.10:5000"), 65535)
        .unwrap();
    a.set_remote_credentials("bbbb", "apasswordof22chars+abcd")
        .unwrap();
    a.start_gathering(Instant::ZERO);
    a
}

#[test]
fn no_pairs_fails_with_no_candidate_pairs() {
    let mut a = lone_agent(11);
    assert!(!a.is_failing(), "the peer has not ended its candidates");
    a.end_of_remote_candidates();
    let early: Vec<Event> = core::iter::from_fn(|| a.poll_event()).collect();
    assert!(
        !early.iter().any(|e| matches!(e, Event::Failed(_))),
        "{early:?}"
    );
    // The peer gets the grace period to reach us with a check first; the
    // agent says it is failing meanwhile (the session's ladder steps on it).
    assert_eq!(a.poll_timeout(), Some(Instant::from_secs(10)));
    assert!(a.is_failing());
    a.handle_timeout(Instant::from_secs(10));
    assert!(!a.is_failing(), "failed, not failing");
    let events: Vec<Event> = core::iter::from_fn(|| a.poll_event()).collect();
    assert!(
        events.contains(&Event::Failed(FailureReason::NoCandidatePairs)),
        "{events:?}"
    );
}

/// A remote candidate that arrives during the failure grace ends it: the
/// new pair can still succeed.
#[test]
fn a_late_candidate_ends_the_failing_state() {
    let mut a = lone_agent(12);
    a.end_of_remote_candidates();
    assert!(a.is_failing());
    a.add_remote_candidate(remote_host("192.168.1.11:5000"))
        .unwrap();
    assert!(!a.is_failing());
    assert_ne!(a.poll_timeout(), Some(Instant::from_secs(10)));
}

/// The nominated pair's path dies between its first success and its
/// nomination: once the nomination check times out, the controlling agent
/// nominates its other pair (valid by then), and both connect over it (before, the
/// dead pair's nomination flag blocked any other, and the agents neither
/// connected nor failed).
#[test]
fn a_failed_nomination_nominates_the_next_valid_pair() {
    let mut a = agent(Role::Controlling, "aaaa", 13);
    let (a1, a2) = (addr("192.168.1.10:5000"), addr("192.168.1.11:5000"));
    a.add_host_candidate(a1, 65535).unwrap();
    a.add_host_candidate(a2, 65000).unwrap();
    let mut b = agent(Role::Controlled, "bbbb", 14);
    b.add_host_candidate(addr("192.168.1.20:6000"), 65535)
        .unwrap();
    let mut net = Pair2::new(a, b);
    net.connect();
    let nominating = |n: &Pair2| n.a.pairs.iter().any(|p| p.nominate);
    assert!(net.run_until(Instant::from_secs(5), nominating));
    let i = net.a.pairs.iter().position(|p| p.nominate).unwrap();
    assert_eq!(net.a.locals[usize::from(net.a.pairs[i].local)].base(), a1);
    net.dead = Some(a1);
    assert!(net.run_until(Instant::from_secs(60), Pair2::both_connected));
    assert_eq!(net.a.selected_pair().map(|(l, _)| l), Some(a2));
    assert!(!net.events_a.iter().any(|e| matches!(e, Event::Failed(_))));
}

#[test]
fn consent_is_lost_when_the_link_dies() {
    let mut net = Pair2::lan(
        lan_agent(Role::Controlling, "aaaa", 12),
        lan_agent(Role::Controlled, "bbbb", 13),
    );
    net.connect();
    assert!(net.run_until(Instant::from_secs(5), Pair2::both_connected));
    // Consent keeps the pair alive for a minute...
    let t = net.now;
    net.run_until(t + Duration::from_secs(60), |_| false);
    assert_eq!(net.a.connection_state(), ConnectionState::Connected);
    // ...then the link dies.
    net.up = false;
    let died = net.now;
    let lost = |n: &Pair2| {
        n.events_a
            .contains(&Event::Failed(FailureReason::ConsentLost))
    };
    assert!(net.run_until(died + Duration::from_secs(40), lost));
    assert!(
        net.events_a
            .contains(&Event::Connection(ConnectionState::Disconnected))
    );
    let after = net.now - died;
    assert!(
        after <= Duration::from_secs(31) && after >= Duration::from_secs(24),
        "lost after {after}"
    );
}

#[test]
fn restart_reconnects_with_new_credentials_after_an_address_change() {
    let mut net = Pair2::lan(
        lan_agent(Role::Controlling, "aaaa", 14),
        lan_agent(Role::Controlled, "bbbb", 15),
    );
    net.connect();
    assert!(net.run_until(Instant::from_secs(5), Pair2::both_connected));
    // The speaker's address changes: drop the old one, add the new, restart.
    net.b.remove_local_candidate(addr("192.168.1.20:6000"));
    net.b
        .add_host_candidate(addr("192.168.1.21:6000"), 65535)
        .unwrap();
    net.b.restart("bbb2", "anotherpassword22charsXY").unwrap();
    net.a.restart("aaa2", "anotherpassword22charsXY").unwrap();
    net.wire.clear();
    for agent in [&mut net.a, &mut net.b] {
        for c in agent.local_candidates() {
            assert_eq!(c.kind, CandidateKind::Host);
        }
    }
    net.b
        .set_remote_credentials("aaa2", "anotherpassword22charsXY")
        .unwrap();
    net.a
        .set_remote_credentials("bbb2", "anotherpassword22charsXY")
        .unwrap();
    for c in net.a.local_candidates().copied().collect::<Vec<_>>() {
        net.b.add_remote_candidate(c).unwrap();
    }
    for c in net.b.local_candidates().copied().collect::<Vec<_>>() {
        net.a.add_remote_candidate(c).unwrap();
    }
    net.drain();
    let t = net.now;
    assert!(net.run_until(t + Duration::from_secs(5), Pair2::both_connected));
    assert_eq!(
        net.a.selected_pair(),
        Some((addr("192.168.1.10:5000"), addr("192.168.1.21:6000")))
    );
}

#[test]
fn gathers_server_reflexive_candidates_without_delaying_checks() {
    let mut a = lan_agent(Role::Controlling, "aaaa", 16);
    a.add_host_candidate(addr("192.168.1.10:5000"), 65535)
        .unwrap();
    let server = addr("203.0.113.1:3478");
    a.add_stun_server(server).unwrap();
    a.set_remote_credentials("bbbb", "apasswordof22chars+abcd")
        .unwrap();
    a.add_remote_candidate(remote_host("192.168.1.20:6000"))
        .unwrap();
    a.start_gathering(Instant::ZERO);
    a.handle_timeout(Instant::ZERO);
    let sent: Vec<(SocketAddr, Vec<u8>)> =
        core::iter::from_fn(|| a.poll_transmit().map(|t| (t.to, t.bytes.to_vec()))).collect();
    assert!(
        sent.iter().any(|(to, _)| *to == server),
        "gathering request sent"
    );
    assert!(
        sent.iter().any(|(to, _)| *to == addr("192.168.1.20:6000")),
        "host check sent at t=0 too"
    );
    // The server answers through a NAT: mapped 198.51.100.5:40000.
    let (_, request) = sent.iter().find(|(to, _)| *to == server).unwrap();
    let mut out = [0u8; 548];
    let Ok(stun::server::Answer::Reply(n)) =
        stun::server::answer(request, addr("198.51.100.5:40000"), None, &mut out)
    else {
        panic!("server did not answer")
    };
    assert!(a.handle_receive(
        Instant::from_millis(20),
        addr("192.168.1.10:5000"),
        server,
        &out[..n]
    ));
    let events: Vec<Event> = core::iter::from_fn(|| a.poll_event()).collect();
    let srflx = events.iter().find_map(|e| match e {
        Event::LocalCandidate(c) if c.kind == CandidateKind::ServerReflexive => Some(*c),
        _ => None,
    });
    let srflx = srflx.expect("srflx candidate");
    assert_eq!(srflx.address, addr("198.51.100.5:40000"));
    assert_eq!(srflx.related_address, Some(addr("192.168.1.10:5000")));
    assert!(events.contains(&Event::Gathering(GatheringState::Complete)));
}

#[test]
fn an_unreachable_stun_server_ends_gathering_at_the_cap() {
    let mut a = agent(Role::Controlling, "aaaa", 17);
    a.add_host_candidate(addr("192.168.1.10:5000"), 65535)
        .unwrap();
    a.add_stun_server(addr("203.0.113.1:3478")).unwrap();
    a.start_gathering(Instant::ZERO);
    let mut now = Instant::ZERO;
    while let Some(t) = a.poll_timeout() {
        now = t;
        a.handle_timeout(now);
        while a.poll_transmit().is_some() {}
        if a.gathering_state() == GatheringState::Complete {
            break;
        }
    }
    assert_eq!(a.gathering_state(), GatheringState::Complete);
    assert_eq!(now, Instant::from_millis(500), "the default cap");
}

fn remote_host(s: &str) -> Candidate {
    Candidate::local(
        &LocalCandidate {
            kind: CandidateKind::Host,
            transport: Transport::Udp,
            tcp_type: None,
            address: addr(s),
            base: addr(s).ip(),
            related_address: None,
            server: None,
            component: ComponentId::RTP,
            local_preference: 65535,
        },
        &TypePreferences::RFC8445,
    )
}

/// Build a request as a peer would, with knobs to break it.
#[allow(clippy::too_many_arguments)]
fn request(
    username: Option<&str>,
    password: Option<&str>,
    priority: Option<u32>,
    controlling: Option<u64>,
    extra: Option<AttributeType>,
    fingerprint: bool,
    buf: &mut [u8],
) -> usize {
    let mut b = MessageBuilder::new(buf, MessageType::BINDING_REQUEST, TransactionId([9; 12]));
    if let Some(u) = username {
        b.add(&Attribute::Username(u));
    }
    if let Some(p) = priority {
        b.add(&Attribute::Priority(p));
    }
    if let Some(t) = controlling {
        b.add(&Attribute::IceControlling(t));
    }
    if let Some(t) = extra {
        b.add(&Attribute::Other {
            typ: t,
            value: b"x",
        });
    }
    if let Some(p) = password {
        b.add_message_integrity(&IntegrityKey::short_term(p.as_bytes()));
    }
    if fingerprint {
        b.add_fingerprint();
    }
    b.finish().unwrap()
}

fn answer_of(a: &mut TestAgent, bytes: &[u8]) -> Option<(MessageType, Option<u16>, bool)> {
    assert!(a.handle_receive(
        Instant::ZERO,
        addr("192.168.1.10:5000"),
        addr("192.168.1.20:6000"),
        bytes
    ));
    let t = a.poll_transmit()?;
    let r = Repr::parse(&Message::new_checked(t.bytes).unwrap()).unwrap();
    let key = IntegrityKey::short_term(b"apasswordof22chars+abcd");
    Some((
        r.message_type,
        r.error_code.map(|e| e.code),
        r.verify_integrity(&key).is_ok(),
    ))
}

#[test]
#[allow(clippy::type_complexity)]
fn bad_requests_get_the_right_answer_or_none() {
    let pw = Some("apasswordof22chars+abcd");
    let user = Some("aaaa:bbbb");
    let mut buf = [0u8; 256];
    let cases: &[(
        &str,
        Option<&str>,
        Option<&str>,
        Option<u32>,
        Option<u64>,
        Option<AttributeType>,
        bool,
        Option<(MessageType, Option<u16>, bool)>,
    )] = &[
        (
            "valid",
            user,
            pw,
            Some(1),
            Some(1),
            None,
            true,
            Some((MessageType::BINDING_SUCCESS, None, true)),
        ),
        (
            "no fingerprint: dropped",
            user,
            pw,
            Some(1),
            Some(1),
            None,
            false,
            None,
        ),
        (
            "no username: 400",
            None,
            pw,
            Some(1),
            Some(1),
            None,
            true,
            Some((MessageType::BINDING_ERROR, Some(400), false)),
        ),
        (
            "no integrity: 400",
            user,
            None,
            Some(1),
            Some(1),
            None,
            true,
            Some((MessageType::BINDING_ERROR, Some(400), false)),
        ),
        (
            "wrong ufrag: 401",
            Some("zzzz:bbbb"),
            pw,
            Some(1),
            Some(1),
            None,
            true,
            Some((MessageType::BINDING_ERROR, Some(401), false)),
        ),
        (
            "wrong password: 401",
            user,
            Some("anotherpassword22charsXY"),
            Some(1),
            Some(1),
            None,
            true,
            Some((MessageType::BINDING_ERROR, Some(401), false)),
        ),
        (
            "unknown attribute: 420",
            user,
            pw,
            Some(1),
            Some(1),
            Some(AttributeType(0x7f00)),
            true,
            Some((MessageType::BINDING_ERROR, Some(420), true)),
        ),
        (
            "no priority: 400",
            user,
            pw,
            None,
            Some(1),
            None,
            true,
            Some((MessageType::BINDING_ERROR, Some(400), true)),
        ),
    ];
    for (name, u, p, prio, ctl, extra, fp, want) in cases {
        // A controlled agent, so ICE-CONTROLLING never conflicts here.
        let mut a = agent(Role::Controlled, "aaaa", 20);
        a.add_host_candidate(addr("192.168.1.10:5000"), 65535)
            .unwrap();
        while a.poll_event().is_some() {}
        let n = request(*u, *p, *prio, *ctl, *extra, *fp, &mut buf);
        assert_eq!(answer_of(&mut a, &buf[..n]), *want, "{name}");
    }
    // A datagram that is not STUN is not consumed.
    let mut a = agent(Role::Controlled, "aaaa", 21);
    assert!(!a.handle_receive(
        Instant::ZERO,
        addr("192.168.1.10:5000"),
        addr("192.168.1.20:6000"),
        b"audio!"
    ));
}

#[test]
fn role_conflict_answers_487_when_we_keep_control() {
    let mut a = agent(Role::Controlling, "aaaa", 22);
    a.add_host_candidate(addr("192.168.1.10:5000"), 65535)
        .unwrap();
    let mut buf = [0u8; 256];
    let n = request(
        Some("aaaa:bbbb"),
        Some("apasswordof22chars+abcd"),
        Some(1),
        Some(0),
        None,
        true,
        &mut buf,
    );
    assert_eq!(
        answer_of(&mut a, &buf[..n]),
        Some((MessageType::BINDING_ERROR, Some(487), true)),
        "our tie-breaker is larger than 0"
    );
    assert_eq!(a.role(), Role::Controlling);
    let n = request(
        Some("aaaa:bbbb"),
        Some("apasswordof22chars+abcd"),
        Some(1),
        Some(u64::MAX),
        None,
        true,
        &mut buf,
    );
    assert_eq!(
        answer_of(&mut a, &buf[..n]).map(|x| x.0),
        Some(MessageType::BINDING_SUCCESS)
    );
    assert_eq!(
        a.role(),
        Role::Controlled,
        "a larger tie-breaker takes control"
    );
}

#[test]
fn learns_peer_reflexive_remote_candidates_and_checks_back() {
    let mut a = agent(Role::Controlled, "aaaa", 23);
    a.add_host_candidate(addr("192.168.1.10:5000"), 65535)
        .unwrap();
    a.set_remote_credentials("bbbb", "apasswordof22chars+abcd")
        .unwrap();
    let mut buf = [0u8; 256];
    let n = request(
        Some("aaaa:bbbb"),
        Some("apasswordof22chars+abcd"),
        Some(0x6e00_01ff),
        Some(1),
        None,
        true,
        &mut buf,
    );
    assert!(a.handle_receive(
        Instant::ZERO,
        addr("192.168.1.10:5000"),
        addr("198.51.100.9:7000"),
        &buf[..n]
    ));
    let prflx = a.remote_candidates()[0];
    assert_eq!(prflx.kind, CandidateKind::PeerReflexive);
    assert_eq!(prflx.priority, 0x6e00_01ff);
    a.handle_timeout(Instant::ZERO);
    let dests: Vec<SocketAddr> = core::iter::from_fn(|| a.poll_transmit().map(|t| t.to)).collect();
    assert_eq!(
        dests,
        [addr("198.51.100.9:7000"), addr("198.51.100.9:7000")],
        "answer, then triggered check"
    );
}

#[test]
fn the_check_list_keeps_the_best_pairs_within_capacity() {
    let mut a: Agent<2, 8, 4> = Agent::new(
        AgentConfig::default(),
        Role::Controlling,
        "aaaa",
        "apasswordof22chars+abcd",
        [1; 32],
    )
    .unwrap();
    a.add_host_candidate(addr("192.168.1.10:5000"), 65535)
        .unwrap();
    for (i, prio) in [10u32, 50, 20, 40, 30, 60].into_iter().enumerate() {
        let mut c = remote_host("192.168.1.20:6000");
        c.address.set_port(6000 + i as u16);
        c.priority = prio;
        a.add_remote_candidate(c).unwrap();
    }
    assert_eq!(a.pair_count(), 4);
    let mut kept: Vec<u32> = a
        .pairs
        .iter()
        .map(|p| a.remotes[usize::from(p.remote)].priority)
        .collect();
    kept.sort_unstable();
    assert_eq!(
        kept,
        [30, 40, 50, 60],
        "the lowest-priority pairs were dropped first"
    );
}

#[test]
fn ram_budget() {
    let speaker = core::mem::size_of::<Agent<8, 8, 64>>();
    let router = core::mem::size_of::<Agent<16, 16, 128>>();
    std::println!("size_of Agent<8, 8, 64> = {speaker} bytes; Agent<16, 16, 128> = {router} bytes");
    assert!(speaker < 8 * 1024, "the speaker's agent must fit in 8 KiB");
}

/// The sizes the RAM budget rests on, as the docs state them (a flat
/// transaction layout in `Pair`, compact remote candidates, 40-byte keys, a
/// 64-byte DRBG): growing one of these is a deliberate act.
#[test]
fn component_sizes_stay_as_documented() {
    use core::mem::size_of;
    assert_eq!(size_of::<Pair>(), 48);
    assert!(
        size_of::<RemoteCandidate>() <= 48,
        "{}",
        size_of::<RemoteCandidate>()
    );
    assert_eq!(size_of::<IntegrityKey>(), 40);
    assert_eq!(size_of::<Drbg>(), 64);
    assert!(size_of::<Candidate>() <= 108);
}

#[test]
fn srflx_is_still_announced_when_a_check_taught_the_same_address_first() {
    let mut a = lan_agent(Role::Controlling, "aaaa", 40);
    a.add_host_candidate(addr("192.168.1.10:5000"), 65535)
        .unwrap();
    let server = addr("203.0.113.1:3478");
    let peer = addr("198.51.100.9:6000");
    let nat = addr("198.51.100.5:40000");
    a.add_stun_server(server).unwrap();
    a.set_remote_credentials("bbbb", "apasswordof22chars+abcd")
        .unwrap();
    a.add_remote_candidate(remote_host("198.51.100.9:6000"))
        .unwrap();
    a.start_gathering(Instant::ZERO);
    a.handle_timeout(Instant::ZERO);
    let sent: Vec<(SocketAddr, Vec<u8>)> =
        core::iter::from_fn(|| a.poll_transmit().map(|t| (t.to, t.bytes.to_vec()))).collect();
    while a.poll_event().is_some() {}
    // The peer answers our check first: we learn 198.51.100.5:40000 as prflx.
    let (_, check) = sent.iter().find(|(to, _)| *to == peer).unwrap();
    let tid = Repr::parse(&Message::new_checked(&check[..]).unwrap())
        .unwrap()
        .transaction_id;
    let mut out = [0u8; 128];
    let mut b = MessageBuilder::new(&mut out, MessageType::BINDING_SUCCESS, tid);
    b.add(&Attribute::XorMappedAddress(nat))
        .add_message_integrity(&IntegrityKey::short_term(b"apasswordof22chars+abcd"))
        .add_fingerprint();
    let n = b.finish().unwrap();
    assert!(a.handle_receive(
        Instant::from_millis(10),
        addr("192.168.1.10:5000"),
        peer,
        &out[..n]
    ));
    assert!(
        a.local_candidates()
            .any(|c| c.kind == CandidateKind::PeerReflexive && c.address == nat)
    );
    // Then the STUN server reports the same mapping: it must be announced.
    let (_, request) = sent.iter().find(|(to, _)| *to == server).unwrap();
    let mut reply = [0u8; 548];
    let Ok(stun::server::Answer::Reply(m)) = stun::server::answer(request, nat, None, &mut reply)
    else {
        panic!("server did not answer")
    };
    assert!(a.handle_receive(
        Instant::from_millis(20),
        addr("192.168.1.10:5000"),
        server,
        &reply[..m]
    ));
    let events: Vec<Event> = core::iter::from_fn(|| a.poll_event()).collect();
    assert!(
        events.iter().any(|e| matches!(e, Event::LocalCandidate(c) if c.kind == CandidateKind::ServerReflexive && c.address == nat)),
        "{events:?}"
    );
    assert_eq!(a.local_candidates().filter(|c| c.address == nat).count(), 1);
}

#[test]
fn an_answerer_whose_own_pairs_failed_waits_for_the_offerers_checks() {
    // Chromium, wildcard-bound, answers our check from another address: the
    // pair fails as non-symmetric (RFC 8445 7.2.5.2.1) before the browser
    // has even received our answer and started its own checks.
    let mut b = agent(Role::Controlled, "bbbb", 41);
    b.add_host_candidate(addr("127.0.0.1:6000"), 65535).unwrap();
    b.set_remote_credentials("aaaa", "apasswordof22chars+abcd")
        .unwrap();
    b.add_remote_candidate(remote_host("192.0.2.2:5000"))
        .unwrap();
    b.end_of_remote_candidates();
    b.start_gathering(Instant::ZERO);
    b.handle_timeout(Instant::ZERO);
    let check = b
        .poll_transmit()
        .map(|t| t.bytes.to_vec())
        .expect("a check");
    let tid = Repr::parse(&Message::new_checked(&check[..]).unwrap())
        .unwrap()
        .transaction_id;
    let mut out = [0u8; 128];
    let mut r = MessageBuilder::new(&mut out, MessageType::BINDING_SUCCESS, tid);
    r.add(&Attribute::XorMappedAddress(addr("127.0.0.1:6000")))
        .add_message_integrity(&IntegrityKey::short_term(b"apasswordof22chars+abcd"))
        .add_fingerprint();
    let n = r.finish().unwrap();
    assert!(b.handle_receive(
        Instant::from_millis(1),
        addr("127.0.0.1:6000"),
        addr("127.0.0.1:5000"),
        &out[..n]
    ));
    let events: Vec<Event> = core::iter::from_fn(|| b.poll_event()).collect();
    assert!(
        !events.iter().any(|e| matches!(e, Event::Failed(_))),
        "{events:?}"
    );
    assert_eq!(
        b.poll_timeout(),
        Some(Instant::from_millis(1) + Duration::from_secs(10))
    );
    // A second later the browser's check arrives (from 127.0.0.1:5000).
    let mut buf = [0u8; 256];
    let n = request(
        Some("bbbb:aaaa"),
        Some("apasswordof22chars+abcd"),
        Some(1),
        Some(1),
        None,
        true,
        &mut buf,
    );
    assert!(b.handle_receive(
        Instant::from_secs(1),
        addr("127.0.0.1:6000"),
        addr("127.0.0.1:5000"),
        &buf[..n]
    ));
    b.handle_timeout(Instant::from_secs(11));
    let events: Vec<Event> = core::iter::from_fn(|| b.poll_event()).collect();
    assert!(
        !events.iter().any(|e| matches!(e, Event::Failed(_))),
        "{events:?}"
    );
    assert!(
        b.remote_candidates()
            .iter()
            .any(|c| c.address == addr("127.0.0.1:5000"))
    );
}

/// RFC 8445 section 19.5.1: a remote candidate naming a silent third
/// party gets at most `unanswered_check_budget` requests from one agent,
/// across an ICE restart too, and then its pairs fail.
#[test]
fn a_silent_remote_address_gets_at_most_the_unanswered_check_budget() {
    let silent = addr("192.0.2.99:9");
    let mut natural = 0;
    for budget in [u16::MAX, 0, 5, 20] {
        let c = AgentConfig {
            unanswered_check_budget: budget,
            ..AgentConfig::default()
        };
        let mut a = TestAgent::new(
            c,
            Role::Controlled,
            "aaaa",
            "apasswordof22chars+abcd",
            [5; 32],
        )
        .unwrap();
        a.add_host_candidate(addr("192.168.1.10:5000"), 65535)
            .unwrap();
        a.set_remote_credentials("bbbb", "bpasswordof22chars+abcd")
            .unwrap();
        let mut remote = *a.local_candidates().next().unwrap();
        remote.address = silent;
        a.add_remote_candidate(remote).unwrap();
        a.start_gathering(Instant::ZERO);
        let mut sent = 0u32;
        let mut now = Instant::ZERO;
        let mut restarted = false;
        while now < Instant::from_secs(120) {
            while let Some(t) = a.poll_transmit() {
                if t.to == silent {
                    assert!(t.unanswered);
                    sent += 1;
                }
            }
            while a.poll_event().is_some() {}
            if !restarted && now >= Instant::from_secs(3) {
                // A restart starts the checks afresh, but not the budget.
                restarted = true;
                a.restart("aaab", "apasswordof22chars+abce").unwrap();
                a.set_remote_credentials("bbbc", "bpasswordof22chars+abce")
                    .unwrap();
                a.add_remote_candidate(remote).unwrap();
            }
            let Some(next) = a.poll_timeout() else { break };
            now = next.max(now + ONE_MS);
            a.handle_timeout(now);
        }
        if budget == u16::MAX {
            // Without a budget: every transaction's 20 requests (a few
            // before the restart, 20 after it).
            natural = sent;
            assert!(natural > 20, "{natural}");
        } else {
            assert_eq!(sent, u32::from(budget).min(natural), "budget {budget}");
        }
    }
}

/// Checks toward an address that has answered (or checked us) are not
/// counted: with a budget of 0 an agent still connects to a peer that
/// checks it first.
#[test]
fn the_budget_spares_addresses_that_answered() {
    let c = AgentConfig {
        ta: Duration::from_millis(5),
        rto_min: Duration::from_millis(100),
        unanswered_check_budget: 0,
        ..AgentConfig::default()
    };
    let a = Agent::new(
        c,
        Role::Controlled,
        "aaaa",
        "apasswordof22chars+abcd",
        [6; 32],
    )
    .unwrap();
    let mut net = Pair2::lan(lan_agent(Role::Controlling, "bbbb", 7), a);
    net.connect();
    assert!(net.run_until(Instant::from_secs(5), Pair2::both_connected));
}

/// `Transmit::unanswered` marks what a router-wide budget may drop: checks
/// toward an address that has not yet sent anything authenticated. Once the
/// peer has answered, its consent checks are not marked, and no response
/// ever is.
#[test]
fn only_checks_toward_silent_addresses_are_marked_unanswered() {
    let mut net = Pair2::lan(
        lan_agent(Role::Controlling, "aaaa", 8),
        lan_agent(Role::Controlled, "bbbb", 9),
    );
    net.connect();
    assert!(net.run_until(Instant::from_secs(5), Pair2::both_connected));
    // The controlling agent's first check goes out before it heard anything.
    assert_eq!(net.sent.first(), Some(&(false, true, true)));
    let connected = net.sent.len();
    net.run_until(Instant::from_secs(60), |_| false);
    let consent = &net.sent[connected..];
    // Consent checks every ~5 s from both sides over 55 s.
    assert!(consent.iter().filter(|m| m.1).count() >= 10, "{consent:?}");
    assert!(consent.iter().all(|m| !m.2), "{consent:?}");
    assert!(net.sent.iter().filter(|m| !m.1).all(|m| !m.2));
}

/// Found by the `agent_session` fuzz target: removing the local candidate
/// of the selected pair left the consent deadline armed in the past, so
/// `poll_timeout` stayed due after every `handle_timeout` (a sans-IO loop
/// would spin). Now the agent goes back to checking the pairs left.
#[test]
fn removing_the_selected_local_candidate_leaves_no_deadline_in_the_past() {
    let mut a = lan_agent(Role::Controlling, "aaaa", 40);
    a.add_host_candidate(addr("10.0.0.10:5000"), 100).unwrap();
    let mut net = Pair2::lan(a, lan_agent(Role::Controlled, "bbbb", 41));
    net.connect();
    assert!(net.run_until(Instant::from_secs(5), Pair2::both_connected));
    let (local, _) = net.a.selected_pair().unwrap();
    net.a.remove_local_candidate(local);
    assert_eq!(net.a.selected_pair(), None);
    assert_eq!(net.a.connection_state(), ConnectionState::Checking);
    let mut now = net.now;
    for _ in 0..100 {
        now += Duration::from_secs(1);
        net.a.handle_timeout(now);
        while net.a.poll_transmit().is_some() {}
        while net.a.poll_event().is_some() {}
        if let Some(t) = net.a.poll_timeout() {
            assert!(t > now, "deadline {t} not after {now}");
        }
    }
}

#[test]
fn a_pair_the_peer_nominated_is_usable_before_our_own_check_returns() {
    // Controlled, with the peer's host candidate signalled: the peer's
    // USE-CANDIDATE check arrives at 7 ms, before our triggered check on
    // the same pair has an answer. No pair is selected yet, but the pair
    // is usable from 7 ms: the peer's own check validated it.
    let mut a = agent(Role::Controlled, "aaaa", 41);
    a.add_host_candidate(addr("192.168.1.10:5000"), 65535)
        .unwrap();
    a.set_remote_credentials("bbbb", "apasswordof22chars+abcd")
        .unwrap();
    a.add_remote_candidate(remote_host("192.168.1.20:6000"))
        .unwrap();
    assert_eq!(a.usable_pair(), None);
    assert_eq!(a.usable_since(), None);
    let mut buf = [0u8; 256];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::BINDING_REQUEST,
        TransactionId([7; 12]),
    );
    b.add(&Attribute::Username("aaaa:bbbb"));
    b.add(&Attribute::Priority(0x6e00_01ff));
    b.add(&Attribute::IceControlling(1));
    b.add(&Attribute::UseCandidate);
    b.add_message_integrity(&IntegrityKey::short_term(b"apasswordof22chars+abcd"));
    b.add_fingerprint();
    let n = b.finish().unwrap();
    let at = Instant::ZERO + Duration::from_millis(7);
    assert!(a.handle_receive(
        at,
        addr("192.168.1.10:5000"),
        addr("192.168.1.20:6000"),
        &buf[..n]
    ));
    assert_eq!(a.selected_pair(), None, "our own check has not returned");
    assert_eq!(
        a.usable_pair(),
        Some((addr("192.168.1.10:5000"), addr("192.168.1.20:6000")))
    );
    assert_eq!(a.usable_since(), Some(at));
    // A restart forgets it.
    a.restart("cccc", "anotherpasswordof22chars").unwrap();
    assert_eq!(a.usable_pair(), None);
    assert_eq!(a.usable_since(), None);
}

#[test]
fn stun_on_an_address_that_is_not_ours_is_consumed_without_an_answer() {
    // Found by the ice_session fuzz target: after the interface list
    // emptied, a check still in flight to the old address was answered
    // from it.
    let mut a = agent(Role::Controlled, "aaaa", 43);
    a.add_host_candidate(addr("192.168.1.10:5000"), 65535)
        .unwrap();
    a.set_remote_credentials("bbbb", "apasswordof22chars+abcd")
        .unwrap();
    let mut buf = [0u8; 256];
    let n = request(
        Some("aaaa:bbbb"),
        Some("apasswordof22chars+abcd"),
        Some(0x6e00_01ff),
        Some(1),
        None,
        true,
        &mut buf,
    );
    let from = addr("192.168.1.20:6000");
    assert!(a.handle_receive(Instant::ZERO, addr("192.168.1.11:5000"), from, &buf[..n]));
    assert!(
        a.poll_transmit().is_none(),
        "answered on a stranger's address"
    );
    assert!(a.remote_candidates().is_empty());
    a.remove_local_candidate(addr("192.168.1.10:5000"));
    assert!(a.handle_receive(Instant::ZERO, addr("192.168.1.10:5000"), from, &buf[..n]));
    assert!(a.poll_transmit().is_none(), "answered on a removed address");
    // Still ours: answered.
    a.add_host_candidate(addr("192.168.1.10:5000"), 65535)
        .unwrap();
    assert!(a.handle_receive(Instant::ZERO, addr("192.168.1.10:5000"), from, &buf[..n]));
    assert_eq!(a.poll_transmit().unwrap().from, addr("192.168.1.10:5000"));
}
