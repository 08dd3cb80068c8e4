//! Unit tests of the session: two sessions wired back to back in memory
//! (every datagram delivered at once), and single sessions probed through
//! their outputs.

use core::net::SocketAddr;

use std::vec::Vec as StdVec;

use super::*;
use crate::candidate::{ComponentId, LocalCandidate, Transport, TypePreferences};
use crate::net::Cidr;
use crate::policy::{StunServer, TurnServer};
use crate::time::Duration;

/// One STUN server and one TURN server, at literal test addresses.
const STUN_AT_192: [StunServer<'static>; 1] = [StunServer {
    url: "stun:192.0.2.1",
    enabled: true,
}];
const TURN_AT_192: [TurnServer<'static>; 1] = [TurnServer {
    url: "turn:192.0.2.2",
    username: Some("u"),
    credential: Some("p"),
    enabled: true,
}];

fn cidr(s: &str) -> Cidr {
    Cidr::parse(s).unwrap()
}

/// A candidate as the peer would signal it.
fn remote(kind: CandidateKind, address: &str, related: Option<&str>) -> Candidate {
    let address = sa(address);
    let related = related.map(sa);
    Candidate::local(
        &LocalCandidate {
            kind,
            transport: Transport::Udp,
            tcp_type: None,
            address,
            base: related.unwrap_or(address).ip(),
            related_address: related,
            server: None,
            component: ComponentId::RTP,
            local_preference: 65535,
        },
        &TypePreferences::RFC8445,
    )
}

type S = Session<8, 8, 64>;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A transmit as (from, to, bytes).
type Wire = (SocketAddr, SocketAddr, StdVec<u8>);

fn drain(s: &mut S) -> (StdVec<Wire>, StdVec<Event>) {
    let mut tx = StdVec::new();
    while let Some(t) = s.poll_transmit() {
        tx.push((t.from, t.to, t.bytes.to_vec()));
    }
    let mut ev = StdVec::new();
    while let Some(e) = s.poll_event() {
        ev.push(e);
    }
    (tx, ev)
}

/// A session for the peer at `peer`, seeded with `seed` repeated.
fn session_for(policy: &PolicyConfig<'_>, peer: SocketAddr, role: Role, seed: u8) -> S {
    S::new(
        policy,
        PeerKnowledge::with_address(peer.ip()),
        role,
        [seed; 32],
        Instant::ZERO,
    )
    .unwrap()
}

/// A controlled session on the global address 198.51.100.7:5000 for the
/// peer at 203.0.113.5, its interfaces reported.
fn global_session(policy: &PolicyConfig<'_>) -> S {
    let peer = PeerKnowledge::with_address("203.0.113.5".parse().unwrap());
    let mut s = S::new(policy, peer, Role::Controlled, [1; 32], Instant::ZERO).unwrap();
    s.handle_interfaces(Instant::ZERO, &[sa("198.51.100.7:5000")]);
    s
}

/// The peer's credentials and one host candidate of its at `address`.
fn peer_host(s: &mut S, address: &str) {
    s.handle_remote_credentials("peer", "peerpassword0123456789ab")
        .unwrap();
    s.handle_remote_candidate(Instant::ZERO, remote(CandidateKind::Host, address, None))
        .unwrap();
}

/// The next request is to resolve `name` (port `port`) for server 0 of
/// the STUN (`turn` false) or TURN list; that server.
fn expect_resolve(s: &mut S, turn: bool, name: &str, port: u16) -> ServerRef {
    let server = ServerRef { turn, index: 0 };
    assert_eq!(
        s.poll_request(),
        Some(Request::Resolve { server, name, port })
    );
    server
}

fn candidates(ev: &[Event]) -> StdVec<Candidate> {
    ev.iter()
        .filter_map(|e| match e {
            Event::LocalCandidate(c) => Some(*c),
            _ => None,
        })
        .collect()
}

#[test]
fn credentials_come_from_the_seed_and_change_on_restart() {
    let policy = PolicyConfig::new(IceMode::Auto);
    let peer = PeerKnowledge::with_address("192.168.1.2".parse().unwrap());
    let mut a = S::new(
        &policy,
        peer.clone(),
        Role::Controlling,
        [7; 32],
        Instant::ZERO,
    )
    .unwrap();
    let b = S::new(
        &policy,
        peer.clone(),
        Role::Controlling,
        [7; 32],
        Instant::ZERO,
    )
    .unwrap();
    let c = S::new(&policy, peer, Role::Controlling, [8; 32], Instant::ZERO).unwrap();
    let (u, p) = a.local_credentials();
    assert_eq!((u.len(), p.len()), (UFRAG_LEN, PWD_LEN));
    assert!(crate::sdpfrag::is_valid_ufrag(u) && crate::sdpfrag::is_valid_pwd(p));
    assert_eq!(a.local_credentials(), b.local_credentials());
    assert_ne!(a.local_credentials(), c.local_credentials());
    let before = (std::string::String::from(u), std::string::String::from(p));
    a.handle_interfaces(Instant::ZERO, &[sa("192.168.1.1:5000")]);
    let (_, ev) = drain(&mut a);
    assert_eq!(candidates(&ev).len(), 1);
    a.restart(Instant::from_millis(10));
    let (u2, p2) = a.local_credentials();
    assert_ne!((u2, p2), (before.0.as_str(), before.1.as_str()));
    let (_, ev) = drain(&mut a);
    assert_eq!(
        candidates(&ev).len(),
        1,
        "host candidate announced again: {ev:?}"
    );
}

#[test]
fn the_offer_filter_withholds_private_hosts_from_a_remote_peer() {
    let policy = PolicyConfig::new(IceMode::Auto);
    let peer = PeerKnowledge::with_address("203.0.113.5".parse().unwrap());
    let mut s = S::new(&policy, peer, Role::Controlled, [1; 32], Instant::ZERO).unwrap();
    s.handle_interfaces(
        Instant::ZERO,
        &[sa("192.168.1.1:5000"), sa("198.51.100.7:5000")],
    );
    let (_, ev) = drain(&mut s);
    let offered: StdVec<SocketAddr> = candidates(&ev).iter().map(|c| c.address).collect();
    assert_eq!(offered, [sa("198.51.100.7:5000")]);
    // The withheld address is still a base of checks.
    assert_eq!(s.agent().local_candidates().count(), 2);
}

#[test]
fn local_network_addresses_rank_first() {
    let subnets = [cidr("10.1.0.0/16")];
    let mut policy = PolicyConfig::new(IceMode::LocalOnly);
    policy.network_detection.local_subnets = &subnets;
    let peer = PeerKnowledge::with_address("10.1.2.3".parse().unwrap());
    let mut s = S::new(&policy, peer, Role::Controlled, [1; 32], Instant::ZERO).unwrap();
    // Reported second, but on the configured local network.
    s.handle_interfaces(Instant::ZERO, &[sa("172.16.0.1:5000"), sa("10.1.0.1:5000")]);
    let (_, ev) = drain(&mut s);
    let c = candidates(&ev);
    let prio = |a: &str| c.iter().find(|x| x.address == sa(a)).unwrap().priority;
    assert!(prio("10.1.0.1:5000") > prio("172.16.0.1:5000"));
}

#[test]
fn host_names_become_requests_and_gathering_waits_for_the_answer() {
    let servers = [StunServer {
        url: "stun:stun.example.org:3479",
        enabled: true,
    }];
    let mut policy = PolicyConfig::new(IceMode::StunRequired);
    policy.stun_servers = &servers;
    let mut s = global_session(&policy);
    let server = expect_resolve(&mut s, false, "stun.example.org", 3479);
    assert_eq!(s.poll_request(), None);
    let (tx, _) = drain(&mut s);
    assert!(tx.is_empty());
    assert_eq!(s.agent().gathering_state(), GatheringState::New);
    // A stale or unknown answer changes nothing.
    s.handle_resolved(
        Instant::ZERO,
        ServerRef {
            turn: false,
            index: 3,
        },
        &[],
    );
    assert_eq!(s.agent().gathering_state(), GatheringState::New);
    s.handle_resolved(Instant::from_millis(3), server, &[sa("192.0.2.1:3479")]);
    let (tx, _) = drain(&mut s);
    assert_eq!(tx.len(), 1);
    assert_eq!(
        (tx[0].0, tx[0].1),
        (sa("198.51.100.7:5000"), sa("192.0.2.1:3479"))
    );
}

#[test]
fn an_unresolved_name_lets_gathering_complete_without_it() {
    let servers = [StunServer {
        url: "stun:nowhere.example",
        enabled: true,
    }];
    let mut policy = PolicyConfig::new(IceMode::StunRequired);
    policy.stun_servers = &servers;
    let mut s = global_session(&policy);
    let Some(Request::Resolve { server, .. }) = s.poll_request() else {
        panic!("no request");
    };
    s.handle_resolved(Instant::from_millis(1), server, &[]);
    let (tx, ev) = drain(&mut s);
    assert!(tx.is_empty());
    assert!(ev.contains(&Event::Gathering(GatheringState::Complete)));
}

/// The wrong first guess in one session: a peer that `local_subnets`
/// calls local never answers, so after `widen_after` the session steps to
/// `with-stun` and asks the STUN server.
#[test]
fn the_ladder_widens_after_widen_after_without_a_valid_pair() {
    let subnets = [cidr("10.0.0.0/8")];
    let servers = [StunServer {
        url: "stun:192.0.2.1",
        enabled: true,
    }];
    let mut policy = PolicyConfig::new(IceMode::Auto);
    policy.stun_servers = &servers;
    policy.network_detection.local_subnets = &subnets;
    let peer = PeerKnowledge::with_address("10.9.0.2".parse().unwrap());
    let mut s = S::new(&policy, peer, Role::Controlling, [1; 32], Instant::ZERO).unwrap();
    assert_eq!(s.decision().network, NetworkType::Local);
    assert_eq!(s.decision().widen_after, Some(Duration::from_secs(1)));
    s.handle_interfaces(Instant::ZERO, &[sa("10.1.0.1:5000")]);
    peer_host(&mut s, "10.9.0.2:6000");
    // A limit the application set: the ladder step keeps it.
    let mut c = *s.agent().config();
    c.unanswered_check_budget = 6;
    c.consent_timeout = Duration::from_secs(20);
    s.set_agent_config(c);
    let (tx, ev) = drain(&mut s);
    assert!(ev.contains(&Event::Gathering(GatheringState::Complete)));
    let stun = sa("192.0.2.1:3478");
    let silent = sa("10.9.0.2:6000");
    let mut now = Instant::ZERO;
    let mut widened_at = None;
    let mut asked_at = None;
    let mut checks = tx.iter().filter(|t| t.1 == silent).count();
    while now < Instant::from_secs(3) {
        // Once the budget is spent the pair fails and nothing is due.
        let Some(next) = s.poll_timeout() else { break };
        now = next.max(now);
        s.handle_timeout(now);
        let (tx, ev) = drain(&mut s);
        if ev.iter().any(|e| {
            matches!(
                e,
                Event::Widened {
                    stage: FallbackStage::WithStun,
                    reason: WidenReason::NoPairWithin
                }
            )
        }) {
            widened_at.get_or_insert(now);
        }
        if tx.iter().any(|t| t.1 == stun) {
            asked_at.get_or_insert(now);
        }
        checks += tx.iter().filter(|t| t.1 == silent).count();
    }
    // 4 checks before the step at 1 s; without the budget 9 by 3 s.
    assert_eq!(s.agent().config().unanswered_check_budget, 6);
    assert_eq!(s.agent().config().consent_timeout, Duration::from_secs(20));
    assert_eq!(checks, 6, "checks toward the silent peer across the step");
    assert_eq!(widened_at, Some(Instant::from_secs(1)));
    assert_eq!(asked_at, Some(Instant::from_secs(1)));
    assert_eq!(s.stage(), FallbackStage::WithStun);
    assert!(!s.decision().nominate_host_on_first_success);
}

/// Two sessions on one LAN, wired back to back: they connect on host
/// candidates, nobody ever asks the STUN server, the ladder never fires.
#[test]
fn a_right_guess_connects_and_never_widens() {
    let servers = [StunServer {
        url: "stun:192.0.2.1",
        enabled: true,
    }];
    let mut policy = PolicyConfig::new(IceMode::Auto);
    policy.stun_servers = &servers;
    let (a_addr, b_addr) = (sa("192.168.1.2:5000"), sa("192.168.1.3:5000"));
    let mut a = session_for(&policy, b_addr, Role::Controlling, 1);
    let mut b = session_for(&policy, a_addr, Role::Controlled, 2);
    a.handle_interfaces(Instant::ZERO, &[a_addr]);
    b.handle_interfaces(Instant::ZERO, &[b_addr]);
    let (ua, pa) = a.local_credentials();
    let (ua, pa) = (std::string::String::from(ua), std::string::String::from(pa));
    let (ub, pb) = b.local_credentials();
    let (ub, pb) = (std::string::String::from(ub), std::string::String::from(pb));
    a.handle_remote_credentials(&ub, &pb).unwrap();
    b.handle_remote_credentials(&ua, &pa).unwrap();
    let (_, ea) = drain(&mut a);
    let (_, eb) = drain(&mut b);
    for c in candidates(&ea) {
        b.handle_remote_candidate(Instant::ZERO, c).unwrap();
    }
    for c in candidates(&eb) {
        a.handle_remote_candidate(Instant::ZERO, c).unwrap();
    }
    let mut now = Instant::ZERO;
    let mut events = StdVec::new();
    let mut wire: StdVec<Wire> = StdVec::new();
    for _ in 0..10_000 {
        loop {
            let (ta, ea) = drain(&mut a);
            let (tb, eb) = drain(&mut b);
            events.extend(ea.into_iter().chain(eb));
            if ta.is_empty() && tb.is_empty() {
                break;
            }
            wire.extend(ta.iter().cloned().chain(tb.iter().cloned()));
            for (from, to, bytes) in ta.into_iter().chain(tb) {
                if to == b_addr {
                    b.handle_receive(now, to, from, &bytes);
                } else if to == a_addr {
                    a.handle_receive(now, to, from, &bytes);
                }
            }
        }
        if a.selected_pair().is_some() && b.selected_pair().is_some() {
            break;
        }
        let Some(t) = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
        else {
            break;
        };
        now = t.max(now);
        if now > Instant::from_secs(5) {
            break;
        }
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    assert_eq!(a.selected_pair(), Some((a_addr, b_addr)));
    assert_eq!(b.selected_pair(), Some((b_addr, a_addr)));
    assert_eq!(a.connected_stage(), Some(FallbackStage::LocalOnly));
    assert!(now < Instant::from_millis(100), "connected at {now}");
    assert!(!wire.iter().any(|w| w.1.ip() == sa("192.0.2.1:1").ip()));
    assert!(!events.iter().any(|e| matches!(e, Event::Widened { .. })));
    // Long after widen_after: still nothing.
    a.handle_timeout(Instant::from_secs(2));
    let (tx, ev) = drain(&mut a);
    assert!(!tx.iter().any(|w| w.1.ip() == sa("192.0.2.1:1").ip()));
    assert!(!ev.iter().any(|e| matches!(e, Event::Widened { .. })));
}

/// A session in `mode` for a remote peer that signals two srflx
/// candidates of one base (a symmetric NAT): the events after them.
fn symmetric_peer_events(mode: IceMode) -> StdVec<Event> {
    let (stun, turn) = (STUN_AT_192, TURN_AT_192);
    let mut policy = PolicyConfig::new(mode);
    policy.stun_servers = &stun;
    policy.turn_servers = &turn;
    let mut s = global_session(&policy);
    let (_, ev) = drain(&mut s);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Decided(d) if d.network == NetworkType::Nat))
    );
    for port in [40_000, 40_001] {
        let c = remote(
            CandidateKind::ServerReflexive,
            &std::format!("203.0.113.5:{port}"),
            Some("10.0.0.2:4000"),
        );
        s.handle_remote_candidate(Instant::from_millis(5), c)
            .unwrap();
    }
    assert_eq!(s.decision().network.as_str(), "symmetric-nat");
    assert_eq!(s.stage(), FallbackStage::Full);
    drain(&mut s).1
}

/// Mode auto: the symmetric NAT moves the session to `full` at once.
#[test]
fn a_symmetric_nat_in_the_peers_candidates_asks_for_relay_at_once() {
    let ev = symmetric_peer_events(IceMode::Auto);
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::Widened {
                stage: FallbackStage::Full,
                reason: WidenReason::SymmetricNat
            }
        )),
        "{ev:?}"
    );
}

/// Mode full: already at `full` (relays asked for at the start, see
/// below); the decision log reports the symmetric NAT.
#[test]
fn full_mode_reports_a_symmetric_nat_from_the_peers_candidates() {
    let ev = symmetric_peer_events(IceMode::Full);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Decided(d) if d.network == NetworkType::SymmetricNat)),
        "{ev:?}"
    );
    assert!(!ev.iter().any(|e| matches!(e, Event::Widened { .. })));
}

#[test]
fn full_mode_asks_for_relay_at_once() {
    let turn = TURN_AT_192;
    let mut policy = PolicyConfig::new(IceMode::Full);
    policy.turn_servers = &turn;
    let peer = PeerKnowledge::with_address("203.0.113.5".parse().unwrap());
    let mut s = S::new(&policy, peer, Role::Controlled, [1; 32], Instant::ZERO).unwrap();
    let (_, ev) = drain(&mut s);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::RelayWanted(set) if set.contains(0))),
        "{ev:?}"
    );
}

#[test]
fn losing_the_selected_address_restarts_and_reannounces() {
    let policy = PolicyConfig::new(IceMode::Auto);
    let (a_addr, b_addr) = (sa("192.168.1.2:5000"), sa("192.168.1.3:5000"));
    let mut a = session_for(&policy, b_addr, Role::Controlling, 1);
    a.handle_interfaces(Instant::ZERO, &[a_addr, sa("192.168.2.2:5000")]);
    let (_, ev) = drain(&mut a);
    assert_eq!(candidates(&ev).len(), 2);
    let before = std::string::String::from(a.local_credentials().0);
    // Nothing selected: losing an address just drops it.
    a.handle_interfaces(Instant::from_millis(1), &[a_addr]);
    let (_, ev) = drain(&mut a);
    assert!(!ev.contains(&Event::Restarted));
    assert_eq!(a.local_credentials().0, before);
    assert_eq!(a.host_addresses(), &[a_addr]);
    // A new address is announced.
    a.handle_interfaces(Instant::from_millis(2), &[a_addr, sa("192.168.3.2:5000")]);
    let (_, ev) = drain(&mut a);
    assert_eq!(
        candidates(&ev)
            .iter()
            .map(|c| c.address)
            .collect::<StdVec<_>>(),
        [sa("192.168.3.2:5000")]
    );
}

#[test]
fn demux_routes_requests_by_ufrag() {
    use crate::stun::{MessageBuilder, MessageType, TransactionId};
    let mut buf = [0u8; 128];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId([1; 12]),
    );
    b.add(&crate::stun::Attribute::Username("abcd:wxyz"));
    let n = b.finish().unwrap();
    assert_eq!(demux(&buf[..n]), Demux::Request { ufrag: "abcd" });
    assert_eq!(demux(b"\x80\x60hello rtp"), Demux::Data);
    assert_eq!(demux(&[]), Demux::Data);
}

#[test]
fn local_preference_per_family_and_locality() {
    let addrs: StdVec<core::net::IpAddr> = ["192.168.1.5", "2001:db8::1", "203.0.113.9", "fd00::1"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let prefs = |on: bool| -> StdVec<u16> {
        addrs
            .iter()
            .enumerate()
            .map(|(i, a)| host_local_preference(*a, addrs[..i].iter().copied(), on, &[]))
            .collect()
    };
    // IPv4 #0 on the LAN, IPv6 #0 global (documentation space is remote),
    // IPv4 #1 global, IPv6 #1 unique-local.
    let p = prefs(true);
    assert_eq!(p, [65534, 32767, 32764, 65533]);
    assert_eq!(prefs(false), [65534, 65535, 65532, 65533]);
    let mut s = p.clone();
    s.sort();
    s.dedup();
    assert_eq!(s.len(), 4, "distinct values");
}

#[test]
fn configured_subnets_decide_locality() {
    let lan = [cidr("2001:db8::/64")];
    assert!(on_local_network("2001:db8::1".parse().unwrap(), &lan));
    assert!(!on_local_network("192.168.1.1".parse().unwrap(), &lan));
    assert!(on_local_network("192.168.1.1".parse().unwrap(), &[]));
    assert!(on_local_network("127.0.0.1".parse().unwrap(), &[]));
    assert!(!on_local_network("8.8.8.8".parse().unwrap(), &[]));
}

#[test]
fn named_remote_candidates_hold_end_of_candidates_until_answered() {
    let policy = PolicyConfig::new(IceMode::Auto);
    let mut s = session_for(&policy, sa("192.168.1.20:9"), Role::Controlled, 7);
    s.handle_interfaces(Instant::ZERO, &[sa("192.168.1.10:5000")]);
    s.handle_remote_credentials("peerufrag", "peerpasswordpeerpassword")
        .unwrap();
    // Two `.local` candidates: their lines' candidates with a placeholder
    // address; the session holds them and the end-of-candidates.
    let named = remote(CandidateKind::Host, "0.0.0.0:6000", None);
    let a = s.handle_remote_candidate_name(named).unwrap();
    let b = s.handle_remote_candidate_name(named).unwrap();
    assert_ne!(a, b);
    s.handle_end_of_remote_candidates(Instant::ZERO);
    assert!(
        !s.agent().remote_candidates_ended(),
        "held while names resolve"
    );
    // One does not resolve: skipped, the other still holds the end.
    assert_eq!(
        s.handle_resolved_candidate(Instant::ZERO, a, None),
        Some(Ok(()))
    );
    assert!(!s.agent().remote_candidates_ended());
    assert!(s.agent().remote_candidates().is_empty());
    // The other resolves: added with its port and kind, and the end of
    // candidates applies.
    let ip: core::net::IpAddr = "192.168.1.20".parse().unwrap();
    assert_eq!(
        s.handle_resolved_candidate(Instant::ZERO, b, Some(ip)),
        Some(Ok(()))
    );
    assert!(s.agent().remote_candidates_ended());
    let r = s.agent().remote_candidates();
    assert_eq!((r.len(), r[0].address), (1, sa("192.168.1.20:6000")));
    // Answered already: nothing happens.
    assert_eq!(
        s.handle_resolved_candidate(Instant::ZERO, b, Some(ip)),
        None
    );
    // Without pending names the end applies at once.
    s.restart(Instant::ZERO);
    s.handle_remote_credentials("peerufra2", "peerpasswordpeerpasswor2")
        .unwrap();
    s.handle_end_of_remote_candidates(Instant::ZERO);
    assert!(s.agent().remote_candidates_ended());
}

#[test]
fn a_restart_drops_pending_names_and_the_capacity_is_bounded() {
    let policy = PolicyConfig::new(IceMode::Auto);
    let mut s = session_for(&policy, sa("192.168.1.20:9"), Role::Controlled, 8);
    s.handle_interfaces(Instant::ZERO, &[sa("192.168.1.10:5000")]);
    let named = remote(CandidateKind::Host, "0.0.0.0:6000", None);
    let mut held = StdVec::new();
    for _ in 0..MAX_PENDING_CANDIDATES {
        held.push(s.handle_remote_candidate_name(named).unwrap());
    }
    assert_eq!(
        s.handle_remote_candidate_name(named),
        Err(SessionError::TooManyPendingCandidates)
    );
    s.handle_end_of_remote_candidates(Instant::ZERO);
    s.restart(Instant::ZERO);
    // The old generation's names are gone: their answers do nothing, and
    // the new generation's end-of-candidates is not held by them.
    let ip: core::net::IpAddr = "192.168.1.20".parse().unwrap();
    assert_eq!(
        s.handle_resolved_candidate(Instant::ZERO, held[0], Some(ip)),
        None
    );
    s.handle_remote_credentials("peerufrag", "peerpasswordpeerpassword")
        .unwrap();
    s.handle_end_of_remote_candidates(Instant::ZERO);
    assert!(s.agent().remote_candidates_ended());
    assert!(s.handle_remote_candidate_name(named).is_ok());
}

/// A stage that queries servers has no `widen_after`: once every pair of
/// it has failed, the session steps to `full` if that adds relays (and asks
/// for them), and does not step when `full` adds nothing. Either way the
/// agent reports failure one grace period later when nothing new arrives.
#[test]
fn every_pair_failed_steps_to_full_only_when_it_adds_relays() {
    let (stun, turn) = (STUN_AT_192, TURN_AT_192);
    for with_turn in [true, false] {
        let mut policy = PolicyConfig::new(IceMode::StunRequired);
        policy.stun_servers = &stun;
        if with_turn {
            policy.turn_servers = &turn;
        }
        let mut s = session_for(&policy, sa("203.0.113.5:6000"), Role::Controlling, 3);
        assert_eq!(s.stage(), FallbackStage::WithStun);
        assert_eq!(s.decision().widen_after, None);
        s.handle_interfaces(Instant::ZERO, &[sa("198.51.100.7:5000")]);
        peer_host(&mut s, "203.0.113.5:6000");
        s.handle_end_of_remote_candidates(Instant::ZERO);
        let mut c = *s.agent().config();
        c.unanswered_check_budget = 3;
        s.set_agent_config(c);
        let mut events: StdVec<(Instant, Event)> = StdVec::new();
        let mut failing_at = None;
        let mut now = Instant::ZERO;
        loop {
            let (_, ev) = drain(&mut s);
            events.extend(ev.into_iter().map(|e| (now, e)));
            if s.agent().is_failing() {
                failing_at.get_or_insert(now);
            }
            let Some(next) = s.poll_timeout() else { break };
            if next > Instant::from_secs(60) {
                break;
            }
            now = next.max(now);
            s.handle_timeout(now);
        }
        let widened: StdVec<_> = events
            .iter()
            .filter_map(|(t, e)| match e {
                Event::Widened { stage, reason } => Some((*t, *stage, *reason)),
                _ => None,
            })
            .collect();
        let failed: StdVec<Instant> = events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Failed(FailureReason::AllPairsFailed)))
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(failed.len(), 1, "with_turn {with_turn}: {events:?}");
        if with_turn {
            assert_eq!(widened.len(), 1, "{events:?}");
            let (at, stage, reason) = widened[0];
            assert_eq!(
                (stage, reason),
                (FallbackStage::Full, WidenReason::AllPairsFailed)
            );
            // The step comes when nothing can succeed (after the srflx
            // gathering cap and the three checks), not on a timer.
            assert!(at > Instant::ZERO && at < Instant::from_secs(5), "{at}");
            assert!(
                events
                    .iter()
                    .any(|(t, e)| *t == at
                        && matches!(e, Event::RelayWanted(set) if set.contains(0))),
                "{events:?}"
            );
            assert_eq!(s.stage(), FallbackStage::Full);
            // No relay came (TURN allocation is not implemented here):
            // failure one grace period after the step.
            assert_eq!(failed[0], at + Duration::from_secs(10));
        } else {
            assert!(widened.is_empty(), "{widened:?}");
            assert_eq!(s.stage(), FallbackStage::WithStun);
            assert_eq!(
                Some(failed[0]),
                failing_at.map(|t| t + Duration::from_secs(10))
            );
        }
    }
}

/// TURN servers of a decision become `RelayServer` addresses: a literal at
/// once, a host name through a request (gathering never waits for it), and
/// `turns:` and TCP servers not at all.
#[test]
fn turn_server_names_are_resolved_when_relays_are_wanted() {
    let turn = [
        TurnServer {
            url: "turn:turn.example.org",
            username: Some("u"),
            credential: Some("p"),
            enabled: true,
        },
        TurnServer {
            url: "turn:192.0.2.2:3479?transport=udp",
            username: Some("u"),
            credential: Some("p"),
            enabled: true,
        },
        TurnServer {
            url: "turns:turn.example.org",
            username: Some("u"),
            credential: Some("p"),
            enabled: true,
        },
        TurnServer {
            url: "turn:turn.example.org?transport=tcp",
            username: Some("u"),
            credential: Some("p"),
            enabled: true,
        },
    ];
    let mut policy = PolicyConfig::new(IceMode::Full);
    policy.turn_servers = &turn;
    policy.validate().unwrap();
    let mut s = global_session(&policy);
    let named = expect_resolve(&mut s, true, "turn.example.org", 3478);
    assert_eq!(s.poll_request(), None, "turns: and TCP are not asked for");
    let (_, ev) = drain(&mut s);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::RelayWanted(set) if set.contains(0) && set.contains(1))),
        "{ev:?}"
    );
    let literal = (1, sa("192.0.2.2:3479"));
    assert!(ev.contains(&Event::RelayServer {
        index: 1,
        address: literal.1
    }));
    assert_eq!(s.relay_servers(), &[literal]);
    // Gathering did not wait for the TURN name.
    assert!(
        ev.contains(&Event::Gathering(GatheringState::Complete)),
        "{ev:?}"
    );
    // A stale answer (a server not pending) changes nothing.
    s.handle_resolved(
        Instant::ZERO,
        ServerRef {
            turn: true,
            index: 2,
        },
        &[sa("192.0.2.9:3478")],
    );
    assert_eq!(s.relay_servers(), &[literal]);
    // The answer: one address per family is kept, in that order.
    let (v4, v6) = (sa("192.0.2.3:3478"), sa("[2001:db8::3]:3478"));
    s.handle_resolved(
        Instant::from_millis(4),
        named,
        &[v6, v4, sa("192.0.2.4:3478")],
    );
    let (_, ev) = drain(&mut s);
    assert_eq!(
        ev,
        [
            Event::RelayServer {
                index: 0,
                address: v4
            },
            Event::RelayServer {
                index: 0,
                address: v6
            },
        ]
    );
    assert_eq!(s.relay_servers(), &[literal, (0, v4), (0, v6)]);
    // Answered once: a second answer is stale.
    s.handle_resolved(Instant::from_millis(5), named, &[v4]);
    assert_eq!(s.relay_servers().len(), 3);
}
