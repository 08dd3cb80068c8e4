#![no_main]
//! Stateful: `core::session::Session` (the layer every adapter drives: the
//! policy's decision, the offer filter, the fallback ladder, resolution
//! requests, re-announcing) under test, and a real peer session on a
//! fuzzer-driven wire. The input picks the mode and the local subnets, then
//! a sequence of operations: deliver, drop, duplicate or corrupt a datagram
//! in flight, inject arbitrary bytes, let time pass (or hand an earlier
//! instant), odd remote candidates and credentials, end-of-candidates,
//! restarts of either side, new interface lists, answers to resolution
//! requests (right, wrong or empty), the offer filter on and off.
//!
//! Invariants checked after every operation:
//! - no panic, whatever the order or content of inputs;
//! - outputs bounded: at most `MAX_OUT` transmits, requests and events per
//!   drain, each transmit no longer than `MAX_TRANSMIT_LEN` and sent from
//!   one of the host addresses the session holds;
//! - time never goes backwards: once every due deadline is served, the
//!   next one is later than `now` (else a sans-IO loop would spin);
//! - a selected pair's local address is one of the session's hosts, and
//!   the credentials are always valid ICE credentials (8 and 24 ice-chars).
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use scream_ice_core::agent::{MAX_TRANSMIT_LEN, Role};
use scream_ice_core::candidate::{Candidate, CandidateKind, ComponentId, Foundation, Transport};
use scream_ice_core::net::Cidr;
use scream_ice_core::policy::{IceMode, PeerKnowledge, PolicyConfig, StunServer, TurnServer};
use scream_ice_core::session::{Event, Request, ServerRef, Session};
use scream_ice_core::time::{Duration, Instant};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

type Under = Session<4, 4, 16>;

/// More than any single input can cause.
const MAX_OUT: usize = 64;

#[derive(Arbitrary, Debug)]
enum Op {
    Deliver(u8),
    Drop(u8),
    Duplicate(u8),
    Corrupt {
        index: u8,
        at: u16,
        xor: u8,
    },
    /// Arbitrary bytes from an arbitrary source to one of our addresses.
    Inject {
        from: Addr,
        to: u8,
        bytes: Vec<u8>,
    },
    Advance(u16),
    Rewind(u16),
    Candidate {
        addr: Addr,
        kind: u8,
        priority: u32,
    },
    /// The peer's signalled candidates, again.
    PeerCandidates,
    EndOfCandidates,
    /// Arbitrary remote credentials (most are refused).
    Credentials {
        ufrag: String,
        pwd: String,
    },
    RestartUnder,
    RestartPeer,
    /// Our interface list changes (at most 6 addresses).
    Interfaces(Vec<Addr>),
    /// Answer the oldest request (or a made-up one) with these addresses.
    Resolved {
        made_up: Option<(bool, u8)>,
        addrs: Vec<Addr>,
    },
    OfferFilter(bool),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    V4(u8, u16),
    V6(u8, u16),
}

impl Addr {
    fn socket(self) -> SocketAddr {
        match self {
            Addr::V4(last, port) => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), port)
            }
            Addr::V6(last, port) => SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(last))),
                port,
            ),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    controlling: bool,
    /// 0 auto, 1 local-only, 2 stun-required, 3 full, 4 legacy.
    mode: u8,
    /// `local_subnets: [10.0.0.0/8]` (the peer counts as local).
    local_subnets: bool,
    ops: Vec<Op>,
}

struct InFlight {
    to_under: bool,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

const UNDER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 5000);
const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 6000);

/// Both kinds of STUN server (a name: a resolution request; an address)
/// and a TURN server, so every stage of the ladder has something to do.
const STUN: [StunServer<'static>; 2] = [
    StunServer {
        url: "stun:stun.fuzz.invalid:3478",
        enabled: true,
    },
    StunServer {
        url: "stun:10.0.0.9:3478",
        enabled: true,
    },
];
const TURN: [TurnServer<'static>; 1] = [TurnServer {
    url: "turn:10.0.0.8:3478?transport=udp",
    username: Some("u"),
    credential: Some("p"),
    enabled: true,
}];

fn candidate(addr: SocketAddr, kind: CandidateKind, priority: u32) -> Candidate {
    Candidate {
        foundation: Foundation::new("1").unwrap(),
        component: ComponentId::RTP,
        transport: Transport::Udp,
        priority,
        address: addr,
        kind,
        related_address: None,
        tcp_type: None,
    }
}

/// One session's outputs onto the wire (and its signalled candidates),
/// checking the bounds. Returns the requests it made.
fn drain(
    s: &mut Under,
    wire: &mut Vec<InFlight>,
    to_under: bool,
    signalled: &mut Vec<Candidate>,
    check: bool,
) -> Vec<(ServerRef, u16)> {
    let hosts: Vec<SocketAddr> = s.host_addresses().to_vec();
    let mut n = 0;
    while let Some(t) = s.poll_transmit() {
        n += 1;
        assert!(n <= MAX_OUT, "unbounded transmits");
        assert!(t.bytes.len() <= MAX_TRANSMIT_LEN);
        if check {
            assert!(hosts.contains(&t.from), "sent from {} (not a host)", t.from);
        }
        if wire.len() < 256 {
            wire.push(InFlight {
                to_under,
                from: t.from,
                to: t.to,
                bytes: t.bytes.to_vec(),
            });
        }
    }
    let mut requests = Vec::new();
    while let Some(r) = s.poll_request() {
        assert!(requests.len() < MAX_OUT, "unbounded requests");
        let Request::Resolve { server, name, port } = r else {
            continue;
        };
        assert!(!name.is_empty());
        requests.push((server, port));
    }
    let mut n = 0;
    while let Some(e) = s.poll_event() {
        n += 1;
        assert!(n <= MAX_OUT, "unbounded events");
        match e {
            Event::LocalCandidate(c) if signalled.len() < 32 => signalled.push(c),
            Event::Restarted => signalled.clear(),
            _ => {}
        }
    }
    requests
}

fn credentials_valid(s: &Under) -> bool {
    let (u, p) = s.local_credentials();
    let ice = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    u.len() == 8 && p.len() == 24 && u.chars().all(ice) && p.chars().all(ice)
}

fuzz_target!(|input: Input| {
    let mode = match input.mode % 5 {
        0 => IceMode::Auto,
        1 => IceMode::LocalOnly,
        2 => IceMode::StunRequired,
        3 => IceMode::Full,
        _ => IceMode::Legacy,
    };
    let subnets = [Cidr::parse("10.0.0.0/8").unwrap()];
    let mut policy = PolicyConfig::new(mode);
    policy.stun_servers = &STUN;
    policy.turn_servers = &TURN;
    if input.local_subnets {
        policy.network_detection.local_subnets = &subnets;
    }
    let (role, peer_role) = if input.controlling {
        (Role::Controlling, Role::Controlled)
    } else {
        (Role::Controlled, Role::Controlling)
    };
    let mut now = Instant::ZERO;
    let peer_of = |a: SocketAddr| PeerKnowledge::with_address(a.ip());
    let Ok(mut a) = Under::new(&policy, peer_of(PEER), role, [7; 32], now) else {
        return;
    };
    let Ok(mut b) = Under::new(&policy, peer_of(UNDER), peer_role, [9; 32], now) else {
        return;
    };
    let mut wire: Vec<InFlight> = Vec::new();
    let (mut a_signalled, mut b_signalled) = (Vec::new(), Vec::new());
    let mut pending: Vec<(ServerRef, u16)> = Vec::new();
    a.handle_interfaces(now, &[UNDER]);
    b.handle_interfaces(now, &[PEER]);
    let exchange = |a: &mut Under, b: &mut Under| {
        let (u, p) = a.local_credentials();
        let (u, p) = (u.to_string(), p.to_string());
        let _ = b.handle_remote_credentials(&u, &p);
    };
    exchange(&mut a, &mut b);
    exchange(&mut b, &mut a);
    let mut restarts = 0u32;

    for op in input.ops.into_iter().take(512) {
        match op {
            Op::Deliver(i) | Op::Duplicate(i) | Op::Corrupt { index: i, .. }
                if !wire.is_empty() =>
            {
                let i = usize::from(i) % wire.len();
                let mut d = match op {
                    Op::Duplicate(_) => InFlight {
                        to_under: wire[i].to_under,
                        from: wire[i].from,
                        to: wire[i].to,
                        bytes: wire[i].bytes.clone(),
                    },
                    _ => wire.remove(i),
                };
                if let Op::Corrupt { at, xor, .. } = op
                    && !d.bytes.is_empty()
                {
                    let at = usize::from(at) % d.bytes.len();
                    d.bytes[at] ^= xor;
                }
                if d.to_under {
                    a.handle_receive(now, d.to, d.from, &d.bytes);
                } else {
                    b.handle_receive(now, d.to, d.from, &d.bytes);
                }
            }
            Op::Drop(i) if !wire.is_empty() => {
                let i = usize::from(i) % wire.len();
                wire.remove(i);
            }
            Op::Inject { from, to, bytes } => {
                let hosts = a.host_addresses();
                let to = hosts
                    .get(usize::from(to) % hosts.len().max(1))
                    .copied()
                    .unwrap_or(UNDER);
                a.handle_receive(now, to, from.socket(), &bytes);
            }
            Op::Advance(ms) => {
                now = now + Duration::from_millis(u64::from(ms));
                a.handle_timeout(now);
                b.handle_timeout(now);
            }
            Op::Rewind(ms) => {
                let earlier =
                    Instant::from_millis(now.total_millis().saturating_sub(u64::from(ms)));
                a.handle_timeout(earlier);
            }
            Op::Candidate {
                addr,
                kind,
                priority,
            } => {
                let kind = match kind % 4 {
                    0 => CandidateKind::Host,
                    1 => CandidateKind::ServerReflexive,
                    2 => CandidateKind::PeerReflexive,
                    _ => CandidateKind::Relayed,
                };
                let _ = a.handle_remote_candidate(now, candidate(addr.socket(), kind, priority));
            }
            Op::PeerCandidates => {
                for c in b_signalled.clone() {
                    let _ = a.handle_remote_candidate(now, c);
                }
            }
            Op::EndOfCandidates => a.handle_end_of_remote_candidates(now),
            Op::Credentials { ufrag, pwd } => {
                let _ = a.handle_remote_credentials(&ufrag, &pwd);
            }
            Op::RestartUnder | Op::RestartPeer if restarts < 8 => {
                restarts += 1;
                if matches!(op, Op::RestartUnder) {
                    a.restart(now);
                    exchange(&mut a, &mut b);
                } else {
                    b.restart(now);
                    exchange(&mut b, &mut a);
                }
            }
            Op::Interfaces(list) => {
                let list: Vec<SocketAddr> = list.into_iter().take(6).map(Addr::socket).collect();
                a.handle_interfaces(now, &list);
            }
            Op::Resolved { made_up, addrs } => {
                let addrs: Vec<SocketAddr> = addrs.into_iter().take(8).map(Addr::socket).collect();
                let server = match made_up {
                    Some((turn, index)) => Some(ServerRef { turn, index }),
                    None if !pending.is_empty() => Some(pending.remove(0).0),
                    None => None,
                };
                if let Some(server) = server {
                    a.handle_resolved(now, server, &addrs);
                }
            }
            Op::OfferFilter(on) => a.set_offer_filter(on),
            _ => {}
        }
        pending.extend(drain(&mut a, &mut wire, false, &mut a_signalled, true));
        pending.truncate(MAX_OUT);
        let before = b_signalled.len();
        drain(&mut b, &mut wire, true, &mut b_signalled, false);
        // The peer trickles what it gathers; ours reach it likewise.
        for c in b_signalled[before.min(b_signalled.len())..].to_vec() {
            let _ = a.handle_remote_candidate(now, c);
        }
        for c in a_signalled.drain(..) {
            let _ = b.handle_remote_candidate(now, c);
        }

        // Serving every due deadline leaves the next one in the future.
        for _ in 0..MAX_OUT {
            match a.poll_timeout() {
                Some(t) if t <= now => {
                    a.handle_timeout(now);
                    pending.extend(drain(&mut a, &mut wire, false, &mut a_signalled, true));
                    pending.truncate(MAX_OUT);
                }
                _ => break,
            }
        }
        if let Some(t) = a.poll_timeout() {
            assert!(
                t > now,
                "deadline {t:?} not after {now:?} once served: {a:?}"
            );
        }
        if let Some((local, _)) = a.selected_pair() {
            assert!(
                a.host_addresses().contains(&local),
                "selected {local} is not a host: {a:?}"
            );
        }
        assert!(credentials_valid(&a), "{:?}", a.local_credentials());
    }
});
