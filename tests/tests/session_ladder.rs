//! The fallback ladder of `core::session` at runtime, in the deterministic
//! network simulator: both ends (router and speaker) are `Session`s driven
//! by the same policy, signaling is instant, each case runs over many seeds.
//!
//! (a) A wrong first guess: both peers sit behind port-restricted NATs on
//!     private addresses that `local_subnets` calls local, so both decide
//!     `local` (no STUN, fast path). No host pair can work; after
//!     `widen_after` both step to `with-stun`, gather srflx through their
//!     NATs, trickle it, and connect over the NATs; the stage is recorded.
//! (b) A right guess: both on one LAN with a STUN server configured and
//!     reachable; they connect on host candidates, the ladder never fires
//!     and nobody sends a single datagram to the STUN server.
//! (c) The wrong guess of (a) with a host timeout longer than the host
//!     checks last: the ladder steps when every host pair has failed, not
//!     at the timeout.
//!
//! Links have jitter (LAN 0-0.4 ms, internet 0-10 ms) and no loss.
//!
//! `cargo test -p scream-ice-tests --test session_ladder -- --nocapture`
//! prints the connect times; `SCENARIO_SEEDS=N` changes the seed count
//! (default 1,000).

use std::net::SocketAddr;
use std::sync::OnceLock;

use scream_ice_core::agent::{GatheringState, Role};
use scream_ice_core::candidate::{Candidate, CandidateKind};
use scream_ice_core::net::Cidr;
use scream_ice_core::policy::{
    FallbackStage, IceMode, NetworkType, PeerKnowledge, PolicyConfig, StunServer,
};
use scream_ice_core::session::{Event, Session, WidenReason};
use scream_ice_core::time::{Duration, Instant};
use scream_ice_tests::netsim::topologies::{self, STUN_PORT, Topology, TopologyParams};
use scream_ice_tests::netsim::{Datagram, Endpoint, NatKind, Sim, TraceEvent};

type IceSession = Session<8, 8, 64>;

const PORT: u16 = 5000;

/// The shared policy: mode auto, one STUN server (the topologies' own at
/// 192.0.2.1), and optionally `local_subnets`.
fn policy(subnets: bool) -> PolicyConfig<'static> {
    static STUN: [StunServer<'static>; 1] = [StunServer {
        url: "stun:192.0.2.1:3478",
        enabled: true,
    }];
    static SUBNETS: OnceLock<[Cidr; 2]> = OnceLock::new();
    let subnets_list = SUBNETS.get_or_init(|| {
        [
            Cidr::parse("10.0.0.0/24").unwrap(),
            Cidr::parse("192.168.1.0/24").unwrap(),
        ]
    });
    let mut p = PolicyConfig::new(IceMode::Auto);
    p.stun_servers = &STUN;
    if subnets {
        p.network_detection.local_subnets = subnets_list;
    }
    p.validate().expect("valid policy");
    p
}

/// A session as a simulator endpoint; events are kept for the test.
struct Node {
    session: IceSession,
    now: Instant,
    outbox: Vec<Candidate>,
    eoc_pending: bool,
    events: Vec<(Instant, Event)>,
    selected_at: Option<Instant>,
}

impl Node {
    fn new(
        peer: SocketAddr,
        host: SocketAddr,
        role: Role,
        seed: u64,
        policy: &PolicyConfig<'_>,
    ) -> Node {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        s[8] = role as u8;
        let mut session = IceSession::new(
            policy,
            PeerKnowledge::with_address(peer.ip()),
            role,
            s,
            Instant::ZERO,
        )
        .expect("session");
        session.handle_interfaces(Instant::ZERO, &[host]);
        let mut n = Node {
            session,
            now: Instant::ZERO,
            outbox: Vec::new(),
            eoc_pending: false,
            events: Vec::new(),
            selected_at: None,
        };
        n.collect();
        n
    }

    fn collect(&mut self) {
        while let Some(e) = self.session.poll_event() {
            match e {
                Event::LocalCandidate(c) => self.outbox.push(c),
                Event::Gathering(GatheringState::Complete) => self.eoc_pending = true,
                Event::Selected { .. } => {
                    self.selected_at.get_or_insert(self.now);
                }
                _ => {}
            }
            self.events.push((self.now, e));
        }
        // No host names in this policy: no request may ever come.
        assert!(self.session.poll_request().is_none());
    }

    fn pending(&self) -> bool {
        !self.outbox.is_empty() || self.eoc_pending
    }

    fn widened(&self) -> Vec<(Instant, FallbackStage, WidenReason)> {
        self.events
            .iter()
            .filter_map(|(t, e)| match e {
                Event::Widened { stage, reason } => Some((*t, *stage, *reason)),
                _ => None,
            })
            .collect()
    }
}

impl Endpoint for Node {
    fn handle_receive(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, p: &[u8]) {
        self.now = now;
        self.session.handle_receive(now, local, remote, p);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.session.handle_timeout(now);
    }
    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.session.poll_transmit().map(|t| Datagram {
            from: t.from,
            to: t.to,
            payload: t.bytes.to_vec(),
        })
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        self.collect();
        self.session.poll_timeout()
    }
}

/// Instant signaling: credentials first, then candidates and
/// end-of-candidates as they appear.
fn signal(sim: &mut Sim, topo: &Topology) {
    let hosts = [topo.router.host, topo.speaker.host];
    for (from, to) in [(hosts[0], hosts[1]), (hosts[1], hosts[0])] {
        let (cands, eoc) = {
            let n = sim.endpoint_mut::<Node>(from);
            n.collect();
            let c: Vec<Candidate> = n.outbox.drain(..).collect();
            (c, std::mem::take(&mut n.eoc_pending))
        };
        let peer = sim.endpoint_mut::<Node>(to);
        let now = peer.now;
        for c in cands {
            let _ = peer.session.handle_remote_candidate(now, c);
        }
        if eoc {
            peer.session.handle_end_of_remote_candidates(now);
        }
    }
}

fn exchange_credentials(router: &mut Node, speaker: &mut Node) {
    let (u, p) = router.session.local_credentials();
    let (u, p) = (u.to_owned(), p.to_owned());
    speaker.session.handle_remote_credentials(&u, &p).unwrap();
    let (u, p) = speaker.session.local_credentials();
    let (u, p) = (u.to_owned(), p.to_owned());
    router.session.handle_remote_credentials(&u, &p).unwrap();
}

struct Run {
    sim: Sim,
    topo: Topology,
    connected_at: Option<Instant>,
}

/// `host_timeout` replaces the policy's `host_candidate_timeout`.
fn run(seed: u64, wrong_guess: bool, host_timeout: Option<Duration>) -> Run {
    let mut sim = Sim::new(seed);
    // Jitter (no loss) so that every seed times the run differently.
    let mut p = TopologyParams::default();
    p.lan = p.lan.with_jitter(Duration::from_micros(400));
    p.internet = p.internet.with_jitter(Duration::from_millis(10));
    let topo = if wrong_guess {
        topologies::both_behind_nat_with(
            &mut sim,
            NatKind::PortRestrictedCone,
            NatKind::PortRestrictedCone,
            &p,
        )
    } else {
        topologies::same_lan_with_stun_with(&mut sim, true, &p)
    };
    // What each side sees of the other: its private address (a VPN or a
    // second site that `local_subnets` lists), in both cases.
    let (r, s) = (topo.router.addr(PORT), topo.speaker.addr(PORT));
    let mut policy = policy(wrong_guess);
    if let Some(t) = host_timeout {
        policy.host_candidate_timeout = t;
    }
    let mut router = Node::new(s, r, Role::Controlled, seed, &policy);
    let mut speaker = Node::new(r, s, Role::Controlling, seed, &policy);
    exchange_credentials(&mut router, &mut speaker);
    sim.set_endpoint(topo.router.host, router);
    sim.set_endpoint(topo.speaker.host, speaker);
    let hosts = [topo.router.host, topo.speaker.host];
    let connected = |sim: &Sim| {
        hosts
            .iter()
            .all(|h| sim.endpoint::<Node>(*h).selected_at.is_some())
    };
    let pending = |sim: &Sim| hosts.iter().any(|h| sim.endpoint::<Node>(*h).pending());
    signal(&mut sim, &topo);
    let deadline = Instant::from_secs(90);
    loop {
        sim.run_until(deadline, |sim| connected(sim) || pending(sim));
        if pending(&sim) && !connected(&sim) && sim.now() < deadline {
            signal(&mut sim, &topo);
            continue;
        }
        break;
    }
    let connected_at = connected(&sim).then(|| {
        hosts
            .iter()
            .filter_map(|h| sim.endpoint::<Node>(*h).selected_at)
            .max()
            .unwrap()
    });
    // Run on a little, so that a ladder step after connecting would show.
    if connected_at.is_some() {
        let t = sim.now();
        sim.run_until(t + Duration::from_secs(3), |_| false);
    }
    Run {
        sim,
        topo,
        connected_at,
    }
}

fn seeds() -> u64 {
    std::env::var("SCENARIO_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `times` of `what` ("connected", ...): count, median, p99, max.
fn print_times(name: &str, what: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{name}: {} {what}, median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        times.len(),
        percentile(&times, 0.5).total_micros() as f64 / 1000.0,
        percentile(&times, 0.99).total_micros() as f64 / 1000.0,
        times.last().unwrap().total_micros() as f64 / 1000.0,
    );
}

#[test]
fn a_wrong_first_guess_widens_to_stun_and_connects_through_the_nats() {
    let widen_after = policy(true).host_candidate_timeout;
    let mut times = Vec::new();
    for seed in 0..seeds() {
        let r = run(seed, true, None);
        let Run {
            sim,
            topo,
            connected_at,
        } = &r;
        let t = connected_at.unwrap_or_else(|| {
            for h in [topo.router.host, topo.speaker.host] {
                let n = sim.endpoint::<Node>(h);
                eprintln!("{:?}\n{:#?}", n.session, n.events);
            }
            panic!("not connected\n{}", sim.report_tail(10))
        });
        // Connected after widen_after, plus the srflx gathering and checks.
        scream_ice_tests::sim_assert!(
            sim,
            t - Instant::ZERO > widen_after
                && t - Instant::ZERO < widen_after + Duration::from_secs(2),
            "seed {seed}: connected at {t}"
        );
        for (host, peer_public) in [
            (topo.router.host, topo.speaker.public_ip.unwrap()),
            (topo.speaker.host, topo.router.public_ip.unwrap()),
        ] {
            let n = sim.endpoint::<Node>(host);
            let first = n.session.decision();
            // The first decision was `local` (the wrong guess).
            let decided: Vec<NetworkType> = n
                .events
                .iter()
                .filter_map(|(_, e)| match e {
                    Event::Decided(d) => Some(d.network),
                    _ => None,
                })
                .collect();
            scream_ice_tests::sim_assert!(sim, decided[0] == NetworkType::Local, "seed {seed}");
            // Exactly one step, at widen_after, to with-stun.
            let steps = n.widened();
            scream_ice_tests::sim_assert!(
                sim,
                steps
                    == [(
                        Instant::ZERO + widen_after,
                        FallbackStage::WithStun,
                        WidenReason::NoPairWithin
                    )],
                "seed {seed}: steps {steps:?}"
            );
            scream_ice_tests::sim_assert!(sim, first.stage == FallbackStage::WithStun);
            scream_ice_tests::sim_assert!(
                sim,
                n.session.connected_stage() == Some(FallbackStage::WithStun),
                "seed {seed}: stage {:?}",
                n.session.connected_stage()
            );
            // Our own srflx candidate was gathered and trickled.
            scream_ice_tests::sim_assert!(
                sim,
                n.events.iter().any(|(at, e)| matches!(
                    e,
                    Event::LocalCandidate(c) if c.kind == CandidateKind::ServerReflexive
                ) && *at >= Instant::ZERO + widen_after),
                "seed {seed}: no srflx trickled"
            );
            // The selected path crosses the NATs: the peer's public address.
            let (_, remote) = n.session.selected_pair().unwrap();
            scream_ice_tests::sim_assert!(
                sim,
                remote.ip() == peer_public,
                "seed {seed}: selected remote {remote}"
            );
        }
        times.push(t - Instant::ZERO);
    }
    print_times("(a) wrong guess, port-restricted NATs", "connected", times);
}

#[test]
fn a_right_guess_never_widens_and_never_asks_stun() {
    let mut times = Vec::new();
    for seed in 0..seeds() {
        let r = run(seed, false, None);
        let Run {
            sim,
            topo,
            connected_at,
        } = &r;
        let t = connected_at.unwrap_or_else(|| panic!("not connected\n{}", sim.report_tail(60)));
        let stun = topo.stun.unwrap().addr;
        assert_eq!(stun.port(), STUN_PORT);
        let asked = sim
            .trace()
            .entries()
            .iter()
            .any(|e| matches!(&e.event, TraceEvent::Send { to, .. } if *to == stun));
        scream_ice_tests::sim_assert!(
            sim,
            !asked,
            "seed {seed}: a datagram went to the STUN server"
        );
        for host in [topo.router.host, topo.speaker.host] {
            let n = sim.endpoint::<Node>(host);
            scream_ice_tests::sim_assert!(sim, n.widened().is_empty(), "seed {seed}: widened");
            scream_ice_tests::sim_assert!(sim, n.session.decision().network == NetworkType::Local);
            scream_ice_tests::sim_assert!(
                sim,
                n.session.connected_stage() == Some(FallbackStage::LocalOnly)
            );
        }
        times.push(t - Instant::ZERO);
    }
    print_times("(b) right guess, one LAN", "connected", times);
}

/// (c) The wrong guess of (a) with a `host_candidate_timeout` longer than
/// the host checks can take: the ladder does not wait for it. Once every
/// host pair has failed (20 unanswered transmissions at the LAN timers,
/// about 9.2 s) both ends step to `with-stun` at once and connect over the
/// NATs, long before the timeout would have fired (without the step the
/// agents report failure 10 s later and never connect).
#[test]
fn a_failed_stage_widens_before_its_timeout() {
    let host_timeout = Duration::from_secs(80);
    let mut times = Vec::new();
    let mut steps_at = Vec::new();
    for seed in 0..seeds() {
        let r = run(seed, true, Some(host_timeout));
        let Run {
            sim,
            topo,
            connected_at,
        } = &r;
        let t = connected_at
            .unwrap_or_else(|| panic!("seed {seed}: not connected\n{}", sim.report_tail(10)));
        scream_ice_tests::sim_assert!(
            sim,
            t - Instant::ZERO < host_timeout,
            "seed {seed}: connected at {t}, not before the host timeout"
        );
        for host in [topo.router.host, topo.speaker.host] {
            let n = sim.endpoint::<Node>(host);
            let steps = n.widened();
            scream_ice_tests::sim_assert!(
                sim,
                steps.len() == 1
                    && steps[0].1 == FallbackStage::WithStun
                    && steps[0].2 == WidenReason::AllPairsFailed
                    && steps[0].0 < Instant::ZERO + host_timeout,
                "seed {seed}: steps {steps:?}"
            );
            steps_at.push(steps[0].0 - Instant::ZERO);
            // Connected within 2 s of the step (srflx gathering and checks).
            scream_ice_tests::sim_assert!(
                sim,
                t - steps[0].0 < Duration::from_secs(2),
                "seed {seed}: step at {}, connected at {t}",
                steps[0].0
            );
            scream_ice_tests::sim_assert!(
                sim,
                n.session.connected_stage() == Some(FallbackStage::WithStun)
            );
            scream_ice_tests::sim_assert!(
                sim,
                !n.events.iter().any(|(_, e)| matches!(e, Event::Failed(_))),
                "seed {seed}: failed"
            );
        }
        times.push(t - Instant::ZERO);
    }
    let name = "(c) wrong guess, host timeout 80 s, every host pair failed";
    print_times(name, "connected", times);
    print_times(name, "ends stepped", steps_at);
}
