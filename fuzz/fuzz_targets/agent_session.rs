#![no_main]
//! Stateful: the agent under test (controlling or controlled) and a real
//! peer agent on a fuzzer-driven wire. The input is a sequence of
//! operations: deliver, drop, duplicate or corrupt a datagram in flight,
//! inject arbitrary bytes, let time pass (or hand an earlier instant),
//! trickle remote candidates (valid or odd), end candidates, restart either
//! side, add and remove local addresses.
//!
//! Invariants checked after every operation:
//! - no panic, whatever the order or content of inputs;
//! - outputs bounded: at most `MAX_OUT` transmits and events per operation,
//!   each transmit no longer than `MAX_TRANSMIT_LEN`, sent from one of our
//!   own addresses;
//! - time never goes backwards: after `handle_timeout(now)` the next
//!   deadline is later than `now` (else a sans-IO loop would spin), and the
//!   agent's timers never point before a deadline it already served;
//! - a selected pair names one of our addresses.
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use scream_ice_core::agent::{Agent, AgentConfig, MAX_TRANSMIT_LEN, Role};
use scream_ice_core::candidate::{Candidate, CandidateKind, ComponentId, Foundation, Transport};
use scream_ice_core::time::{Duration, Instant};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

type Under = Agent<4, 4, 16>;

/// More than any single input can cause: every pair's check, every
/// candidate's event, a restart's events.
const MAX_OUT: usize = 64;

#[derive(Arbitrary, Debug)]
enum Op {
    /// Deliver the datagram at this index of the wire.
    Deliver(u8),
    /// Lose it.
    Drop(u8),
    /// Deliver a copy and keep it in flight.
    Duplicate(u8),
    /// Flip bits in it, then deliver.
    Corrupt {
        index: u8,
        at: u16,
        xor: u8,
    },
    /// Arbitrary bytes from an arbitrary source to the agent under test.
    Inject {
        from: Addr,
        bytes: Vec<u8>,
    },
    /// Let time pass and serve both agents' timers.
    Advance(u16),
    /// Hand the agent an instant before the last one (a misbehaving clock).
    Rewind(u16),
    /// A remote candidate for the agent under test.
    Candidate {
        addr: Addr,
        kind: u8,
        priority: u32,
        component: u8,
    },
    /// The peer's real host candidate, again (duplicate trickle).
    PeerCandidate,
    EndOfCandidates,
    RestartUnder,
    RestartPeer,
    AddLocal(Addr),
    RemoveLocal(Addr),
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
    nominate_host_on_first_success: bool,
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

fn config(nominate: bool) -> AgentConfig {
    let mut c = AgentConfig::default();
    c.nominate_host_on_first_success = nominate;
    c
}

fn host(addr: SocketAddr) -> Candidate {
    Candidate {
        foundation: Foundation::new("1").unwrap(),
        component: ComponentId::RTP,
        transport: Transport::Udp,
        priority: 2_130_706_431,
        address: addr,
        kind: CandidateKind::Host,
        related_address: None,
        tcp_type: None,
    }
}

/// Drain an agent's outputs onto the wire, checking the bounds.
fn drain<const L: usize, const R: usize, const P: usize>(
    agent: &mut Agent<L, R, P>,
    wire: &mut Vec<InFlight>,
    to_under: bool,
    ours: &[SocketAddr],
    under: bool,
) {
    let mut transmits = 0;
    while let Some(t) = agent.poll_transmit() {
        transmits += 1;
        assert!(transmits <= MAX_OUT, "unbounded transmits");
        assert!(t.bytes.len() <= MAX_TRANSMIT_LEN);
        if under {
            assert!(ours.contains(&t.from), "sent from {} (not ours)", t.from);
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
    let mut events = 0;
    while agent.poll_event().is_some() {
        events += 1;
        assert!(events <= MAX_OUT, "unbounded events");
    }
}

fuzz_target!(|input: Input| {
    let (role, peer_role) = if input.controlling {
        (Role::Controlling, Role::Controlled)
    } else {
        (Role::Controlled, Role::Controlling)
    };
    let cfg = config(input.nominate_host_on_first_success);
    let Ok(mut a) = Under::new(cfg, role, "uuuu", "underpasswordof22chars", [7; 32]) else {
        return;
    };
    let Ok(mut b) = Under::new(cfg, peer_role, "pppp", "peerpasswordof22chars+", [9; 32]) else {
        return;
    };
    let mut ours = vec![UNDER];
    let _ = a.add_host_candidate(UNDER, 65535);
    let _ = b.add_host_candidate(PEER, 65535);
    let _ = a.set_remote_credentials("pppp", "peerpasswordof22chars+");
    let _ = b.set_remote_credentials("uuuu", "underpasswordof22chars");
    let _ = a.add_remote_candidate(host(PEER));
    let _ = b.add_remote_candidate(host(UNDER));
    let mut now = Instant::ZERO;
    a.start_gathering(now);
    b.start_gathering(now);
    let mut wire: Vec<InFlight> = Vec::new();
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
            Op::Inject { from, bytes } => {
                a.handle_receive(now, UNDER, from.socket(), &bytes);
            }
            Op::Advance(ms) => {
                now = now + Duration::from_millis(u64::from(ms));
                for agent in [&mut a, &mut b] {
                    agent.handle_timeout(now);
                }
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
                component,
            } => {
                let mut c = host(addr.socket());
                c.kind = match kind % 4 {
                    0 => CandidateKind::Host,
                    1 => CandidateKind::ServerReflexive,
                    2 => CandidateKind::PeerReflexive,
                    _ => CandidateKind::Relayed,
                };
                c.priority = priority;
                if let Some(id) = ComponentId::new(u16::from(component)) {
                    c.component = id;
                }
                let _ = a.add_remote_candidate(c);
            }
            Op::PeerCandidate => {
                let _ = a.add_remote_candidate(host(PEER));
            }
            Op::EndOfCandidates => a.end_of_remote_candidates(),
            Op::RestartUnder | Op::RestartPeer if restarts < 8 => {
                restarts += 1;
                let (ufrag, pwd) = (
                    if restarts % 2 == 0 { "uuu2" } else { "uuu1" },
                    if restarts % 2 == 0 {
                        "underpasswordof22chars2"
                    } else {
                        "underpasswordof22chars1"
                    },
                );
                if matches!(op, Op::RestartUnder) {
                    let _ = a.restart(ufrag, pwd);
                    let _ = b.set_remote_credentials(ufrag, pwd);
                } else {
                    let _ = b.restart(ufrag, pwd);
                    let _ = a.set_remote_credentials(ufrag, pwd);
                }
            }
            Op::AddLocal(addr) => {
                let addr = addr.socket();
                if a.add_host_candidate(addr, 100).is_ok() && !ours.contains(&addr) {
                    ours.push(addr);
                }
            }
            Op::RemoveLocal(addr) => a.remove_local_candidate(addr.socket()),
            _ => {}
        }
        drain(&mut a, &mut wire, false, &ours, true);
        drain(&mut b, &mut wire, true, &[], false);

        // Serving every due deadline leaves the next one in the future.
        for _ in 0..MAX_OUT {
            match a.poll_timeout() {
                Some(t) if t <= now => {
                    a.handle_timeout(now);
                    drain(&mut a, &mut wire, false, &ours, true);
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
            assert!(ours.contains(&local), "selected {local} is not ours");
        }
    }
});
