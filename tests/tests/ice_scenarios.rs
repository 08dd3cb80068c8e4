//! The scenario matrix: the core's ICE agent on both ends (router and
//! speaker), driven by the policy's decision, over the deterministic network
//! simulator, each scenario over many seeds.
//!
//! `cargo test -p scream-ice-tests --test ice_scenarios -- --nocapture`
//! prints the connect-time table written into docs/BENCHMARKS.md.
//! `SCENARIO_SEEDS=N` changes the number of seeds (default 1,000).

use std::net::{IpAddr, SocketAddr};

use scream_ice_core::agent::{
    Agent, AgentConfig, ConnectionState, Event, FailureReason, GatheringState, Role,
};
use scream_ice_core::candidate::{AddressFamily, Candidate, CandidateKind, local_preference};
use scream_ice_core::policy::{
    Decision, FallbackStage, IceMode, NetworkType, PeerKnowledge, PolicyConfig, StunServer, decide,
};
use scream_ice_core::time::{Duration, Instant};
use scream_ice_tests::netsim::topologies::{self, Topology, TopologyParams};
use scream_ice_tests::netsim::{
    Datagram, Endpoint, LinkConditions, NatKind, Sim, StunServer as SimStun,
};

type IceAgent = Agent<8, 8, 64>;

const PORT: u16 = 5000;
const PWD_ROUTER: &str = "routerpassword0123456789";
const PWD_SPEAKER: &str = "speakerpassword012345678";

/// An ICE agent as a simulator endpoint; events are collected for the test.
struct IceNode {
    agent: IceAgent,
    decision: Decision,
    events: Vec<(Instant, Event)>,
    now: Instant,
    /// Candidates gathered but not yet signalled to the peer.
    outbox: Vec<Candidate>,
    gathering_complete_signalled: bool,
    selected_at: Option<Instant>,
    failed: Option<(Instant, FailureReason)>,
}

impl IceNode {
    fn collect(&mut self) {
        while let Some(e) = self.agent.poll_event() {
            match e {
                Event::LocalCandidate(c) if c.kind == CandidateKind::ServerReflexive => {
                    self.outbox.push(c)
                }
                Event::Selected { .. } => {
                    self.selected_at.get_or_insert(self.now);
                }
                Event::Failed(r) => self.failed = Some((self.now, r)),
                _ => {}
            }
            self.events.push((self.now, e));
        }
    }

    fn pending_signaling(&self) -> bool {
        !self.outbox.is_empty()
            || (self.agent.gathering_state() == GatheringState::Complete
                && !self.gathering_complete_signalled)
    }
}

impl Endpoint for IceNode {
    fn handle_receive(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        payload: &[u8],
    ) {
        self.now = now;
        self.agent.handle_receive(now, local, remote, payload);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.agent.handle_timeout(now);
    }
    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.agent.poll_transmit().map(|t| Datagram {
            from: t.from,
            to: t.to,
            payload: t.bytes.to_vec(),
        })
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        self.collect();
        self.agent.poll_timeout()
    }
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    SameLan { stun: StunSetup },
    RemoteBehindNat(NatKind),
    BothBehindNat(NatKind, NatKind),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StunSetup {
    Up,
    Down,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Twist {
    Plain,
    RoleConflict,
    LinkDies,
    AddressChange,
}

struct Scenario {
    name: &'static str,
    shape: Shape,
    loss: f64,
    twist: Twist,
    /// Whether a path exists (otherwise a clean failure is required).
    path: bool,
    /// One-way latency of the selected path, for "round trips".
    one_way: Duration,
}

#[derive(Default)]
struct Outcome {
    connected: Vec<Duration>,
    failures: Vec<(u64, String)>,
    clean_failures: usize,
    decision: String,
}

fn lan_one_way() -> Duration {
    LinkConditions::lan().latency
}

fn remote_one_way() -> Duration {
    LinkConditions::lan().latency + LinkConditions::internet().latency
}

fn build(sim: &mut Sim, s: &Scenario) -> Topology {
    let mut p = TopologyParams::lossy(s.loss);
    p.ipv6 = false;
    match s.shape {
        Shape::SameLan { stun } => {
            topologies::same_lan_with_stun_with(sim, stun == StunSetup::Up, &p)
        }
        Shape::RemoteBehindNat(k) => topologies::remote_behind_nat_with(sim, k, &p),
        Shape::BothBehindNat(a, b) => topologies::both_behind_nat_with(sim, a, b, &p),
    }
}

/// The policy decision one side makes about the other.
fn policy_for(peer_address: IpAddr, stun_url: Option<&str>) -> Decision {
    let servers = stun_url.map(|url| [StunServer { url, enabled: true }]);
    let mut config = PolicyConfig::new(IceMode::Auto);
    if let Some(s) = &servers {
        config.stun_servers = s;
    }
    config.validate().expect("valid config");
    decide(
        &config,
        &PeerKnowledge::with_address(peer_address),
        FallbackStage::LocalOnly,
    )
}

#[allow(clippy::too_many_arguments)]
fn node(
    role: Role,
    ufrag: &str,
    pwd: &str,
    seed: u64,
    host: SocketAddr,
    decision: Decision,
    stun: Option<SocketAddr>,
) -> IceNode {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    seed_bytes[8] = ufrag.as_bytes()[0];
    let config = AgentConfig::for_decision(&decision);
    let mut agent = IceAgent::new(config, role, ufrag, pwd, seed_bytes).expect("agent");
    let pref = local_preference(true, true, AddressFamily::of(&host.ip()), 0);
    agent
        .add_host_candidate(host, pref)
        .expect("host candidate");
    if let (true, Some(server)) = (decision.gathers_srflx(), stun) {
        agent.add_stun_server(server).expect("stun server");
    }
    agent.start_gathering(Instant::ZERO);
    let mut n = IceNode {
        agent,
        decision,
        events: Vec::new(),
        now: Instant::ZERO,
        outbox: Vec::new(),
        gathering_complete_signalled: false,
        selected_at: None,
        failed: None,
    };
    n.collect();
    n
}

fn offer(from: &IceNode, to: &mut IceNode) {
    let offered: Vec<Candidate> = from
        .agent
        .local_candidates()
        .filter(|c| c.kind == CandidateKind::Host && from.decision.offers(c.address.ip()))
        .copied()
        .collect();
    for c in offered {
        to.agent.add_remote_candidate(c).expect("remote candidate");
    }
}

/// Move trickled candidates and end-of-candidates between the two nodes
/// (instant signaling).
fn signal(sim: &mut Sim, topo: &Topology) {
    let hosts = [topo.router.host, topo.speaker.host];
    for (from, to) in [(hosts[0], hosts[1]), (hosts[1], hosts[0])] {
        let (cands, complete) = {
            let n = sim.endpoint_mut::<IceNode>(from);
            let c: Vec<Candidate> = n.outbox.drain(..).collect();
            let complete = n.agent.gathering_state() == GatheringState::Complete
                && !n.gathering_complete_signalled;
            if complete {
                n.gathering_complete_signalled = true;
            }
            (c, complete)
        };
        let peer = sim.endpoint_mut::<IceNode>(to);
        for c in cands {
            let _ = peer.agent.add_remote_candidate(c);
        }
        if complete {
            peer.agent.end_of_remote_candidates();
        }
    }
}

fn run_one(s: &Scenario, seed: u64, out: &mut Outcome) {
    let mut sim = Sim::new(seed);
    let topo = build(&mut sim, s);
    if let Some(stun) = topo.stun {
        sim.set_endpoint(stun.host, SimStun::new());
    }
    let stun_url = match s.shape {
        Shape::SameLan {
            stun: StunSetup::None,
        } => None,
        _ => topo.stun.map(|st| format!("stun:{}", st.addr)),
    };
    let stun_addr = topo.stun.map(|st| st.addr);
    // What each side sees of the other: the HTTP peer address.
    let router_sees = topo
        .speaker
        .public_ip
        .filter(|_| !matches!(s.shape, Shape::SameLan { .. }))
        .unwrap_or(topo.speaker.ip());
    let speaker_sees = topo
        .router
        .public_ip
        .filter(|_| !matches!(s.shape, Shape::SameLan { .. }))
        .unwrap_or(topo.router.ip());
    let d_router = policy_for(router_sees, stun_url.as_deref());
    let d_speaker = policy_for(speaker_sees, stun_url.as_deref());
    if out.decision.is_empty() {
        out.decision = format!(
            "speaker: {:?}/srflx={}/fast={}; router: {:?}/srflx={}/fast={}",
            d_speaker.network,
            d_speaker.gathers_srflx(),
            d_speaker.nominate_host_on_first_success,
            d_router.network,
            d_router.gathers_srflx(),
            d_router.nominate_host_on_first_success
        );
    }
    // The speaker posts its offer: it is the controlling agent.
    let speaker_role = Role::Controlling;
    let router_role = if s.twist == Twist::RoleConflict {
        Role::Controlling
    } else {
        Role::Controlled
    };
    let mut router = node(
        router_role,
        "rout",
        PWD_ROUTER,
        seed,
        topo.router.addr(PORT),
        d_router,
        stun_addr,
    );
    let mut speaker = node(
        speaker_role,
        "spkr",
        PWD_SPEAKER,
        seed,
        topo.speaker.addr(PORT),
        d_speaker,
        stun_addr,
    );
    router
        .agent
        .set_remote_credentials("spkr", PWD_SPEAKER)
        .unwrap();
    speaker
        .agent
        .set_remote_credentials("rout", PWD_ROUTER)
        .unwrap();
    offer(&router, &mut speaker);
    offer(&speaker, &mut router);
    sim.set_endpoint(topo.router.host, router);
    sim.set_endpoint(topo.speaker.host, speaker);

    let hosts = [topo.router.host, topo.speaker.host];
    let connected = |sim: &Sim| {
        hosts
            .iter()
            .all(|h| sim.endpoint::<IceNode>(*h).selected_at.is_some())
    };
    let failed = |sim: &Sim| {
        hosts
            .iter()
            .any(|h| sim.endpoint::<IceNode>(*h).failed.is_some())
    };
    let pending = |sim: &Sim| {
        hosts
            .iter()
            .any(|h| sim.endpoint::<IceNode>(*h).pending_signaling())
    };
    let deadline = Instant::from_secs(60);
    loop {
        sim.run_until(deadline, |sim| {
            connected(sim) || failed(sim) || pending(sim)
        });
        if pending(&sim) && !connected(&sim) && !failed(&sim) {
            signal(&mut sim, &topo);
            continue;
        }
        break;
    }
    if !connected(&sim) {
        if !s.path {
            // Let both sides finish: each must end in a failure event.
            loop {
                sim.run_until(Instant::from_secs(120), |sim| {
                    hosts
                        .iter()
                        .all(|h| sim.endpoint::<IceNode>(*h).failed.is_some())
                        || pending(sim)
                });
                if pending(&sim) {
                    signal(&mut sim, &topo);
                    continue;
                }
                break;
            }
            let clean = hosts.iter().all(|h| {
                matches!(
                    sim.endpoint::<IceNode>(*h).failed,
                    Some((_, FailureReason::AllPairsFailed))
                )
            });
            if clean {
                out.clean_failures += 1;
            } else {
                out.failures.push((
                    seed,
                    format!("no clean failure event\n{}", sim.report_tail(40)),
                ));
            }
            return;
        }
        let why = hosts
            .iter()
            .map(|h| format!("{:?}", sim.endpoint::<IceNode>(*h).failed))
            .collect::<Vec<_>>()
            .join(", ");
        out.failures.push((
            seed,
            format!(
                "not connected by {}: {why}\n{}",
                sim.now(),
                sim.report_tail(40)
            ),
        ));
        return;
    }
    if !s.path {
        out.failures
            .push((seed, "connected although no path should exist".into()));
        return;
    }
    let t = hosts
        .iter()
        .filter_map(|h| sim.endpoint::<IceNode>(*h).selected_at)
        .max()
        .expect("connected");
    // Both sides must have selected the same path.
    let (rl, rr) = sim
        .endpoint::<IceNode>(hosts[0])
        .agent
        .selected_pair()
        .unwrap();
    let (sl, sr) = sim
        .endpoint::<IceNode>(hosts[1])
        .agent
        .selected_pair()
        .unwrap();
    if matches!(s.shape, Shape::SameLan { .. }) && !(rl == sr && sl == rr) {
        out.failures.push((
            seed,
            format!("pairs differ: router {rl}->{rr}, speaker {sl}->{sr}"),
        ));
        return;
    }
    match s.twist {
        Twist::Plain | Twist::RoleConflict => {
            if s.twist == Twist::RoleConflict {
                let roles: Vec<Role> = hosts
                    .iter()
                    .map(|h| sim.endpoint::<IceNode>(*h).agent.role())
                    .collect();
                if roles[0] == roles[1] {
                    out.failures
                        .push((seed, "role conflict not resolved".into()));
                    return;
                }
            }
            out.connected.push(t - Instant::ZERO);
        }
        Twist::LinkDies => {
            // Consent keeps the pair for a while; then the LAN dies and both
            // sides must report consent loss within 30 s (+ one interval).
            let t0 = sim.now();
            sim.run_until(t0 + Duration::from_secs(20), |_| false);
            if hosts.iter().any(|h| {
                sim.endpoint::<IceNode>(*h).agent.connection_state() != ConnectionState::Connected
            }) {
                out.failures
                    .push((seed, "lost the connection before the link died".into()));
                return;
            }
            sim.set_link_up(topo.speaker.segment, false);
            let died = sim.now();
            sim.run_until(died + Duration::from_secs(40), |sim| {
                hosts.iter().all(|h| {
                    matches!(
                        sim.endpoint::<IceNode>(*h).failed,
                        Some((_, FailureReason::ConsentLost))
                    )
                })
            });
            let lost: Vec<Option<Instant>> = hosts
                .iter()
                .map(|h| match sim.endpoint::<IceNode>(*h).failed {
                    Some((at, FailureReason::ConsentLost)) => Some(at),
                    _ => None,
                })
                .collect();
            match (lost[0], lost[1]) {
                (Some(a), Some(b)) if a.max(b) - died <= Duration::from_secs(31) => {
                    out.connected.push(a.max(b) - died);
                }
                other => out.failures.push((
                    seed,
                    format!("consent loss not reported in time: {other:?}"),
                )),
            }
        }
        Twist::AddressChange => {
            // The speaker's address changes: the old one disappears, a new
            // one appears; both sides restart ICE and must reconnect.
            let old = topo.speaker.addr(PORT);
            let new_ip: IpAddr = match old.ip() {
                IpAddr::V4(v4) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) + 100)),
                ip => ip,
            };
            let new = SocketAddr::new(new_ip, PORT);
            sim.remove_address(topo.speaker.host, old.ip());
            sim.add_address(topo.speaker.host, topo.speaker.segment, new_ip);
            let restart_at = sim.now();
            {
                let sp = sim.endpoint_mut::<IceNode>(topo.speaker.host);
                sp.agent.remove_local_candidate(old);
                sp.agent.add_host_candidate(new, 65535).unwrap();
                sp.agent
                    .restart("spk2", "speakerpassword2abcdefgh")
                    .unwrap();
                sp.agent
                    .set_remote_credentials("rou2", "routerpassword2abcdefghi")
                    .unwrap();
                sp.agent.start_gathering(restart_at);
                sp.selected_at = None;
                sp.gathering_complete_signalled = false;
            }
            let new_speaker_host = speaker_host(&sim, topo.speaker.host);
            {
                let r = sim.endpoint_mut::<IceNode>(topo.router.host);
                r.agent.restart("rou2", "routerpassword2abcdefghi").unwrap();
                r.agent
                    .set_remote_credentials("spk2", "speakerpassword2abcdefgh")
                    .unwrap();
                r.agent.start_gathering(restart_at);
                r.selected_at = None;
                r.gathering_complete_signalled = false;
                r.agent.add_remote_candidate(new_speaker_host).unwrap();
            }
            let router_host = {
                let r = sim.endpoint::<IceNode>(topo.router.host);
                *r.agent
                    .local_candidates()
                    .find(|c| c.kind == CandidateKind::Host)
                    .unwrap()
            };
            sim.endpoint_mut::<IceNode>(topo.speaker.host)
                .agent
                .add_remote_candidate(router_host)
                .unwrap();
            loop {
                sim.run_until(restart_at + Duration::from_secs(30), |sim| {
                    connected(sim) || pending(sim)
                });
                if pending(&sim) && !connected(&sim) {
                    signal(&mut sim, &topo);
                    continue;
                }
                break;
            }
            if !connected(&sim) {
                out.failures.push((
                    seed,
                    format!("no reconnection after restart\n{}", sim.report_tail(30)),
                ));
                return;
            }
            let sp = sim.endpoint::<IceNode>(topo.speaker.host);
            if sp.agent.selected_pair().map(|p| p.0) != Some(new) {
                out.failures
                    .push((seed, "reconnected on the wrong address".into()));
                return;
            }
            let t = hosts
                .iter()
                .filter_map(|h| sim.endpoint::<IceNode>(*h).selected_at)
                .max()
                .unwrap();
            out.connected.push(t - restart_at);
        }
    }
}

fn speaker_host(sim: &Sim, host: scream_ice_tests::netsim::HostId) -> Candidate {
    *sim.endpoint::<IceNode>(host)
        .agent
        .local_candidates()
        .find(|c| c.kind == CandidateKind::Host)
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.total_micros() as f64 / 1000.0
}

fn scenarios() -> Vec<Scenario> {
    use NatKind::*;
    let lan = |name, stun, loss| Scenario {
        name,
        shape: Shape::SameLan { stun },
        loss,
        twist: Twist::Plain,
        path: true,
        one_way: lan_one_way(),
    };
    let remote = |name, kind, loss| Scenario {
        name,
        shape: Shape::RemoteBehindNat(kind),
        loss,
        twist: Twist::Plain,
        path: true,
        one_way: remote_one_way(),
    };
    vec![
        lan("same LAN, STUN reachable", StunSetup::Up, 0.0),
        lan("same LAN, STUN server down", StunSetup::Down, 0.0),
        lan("same LAN, no STUN configured", StunSetup::None, 0.0),
        lan("same LAN, 5% loss", StunSetup::Up, 0.05),
        lan("same LAN, 20% loss", StunSetup::Up, 0.20),
        remote("remote speaker behind full-cone NAT", FullCone, 0.0),
        remote(
            "remote speaker behind restricted-cone NAT",
            RestrictedCone,
            0.0,
        ),
        remote(
            "remote speaker behind port-restricted NAT",
            PortRestrictedCone,
            0.0,
        ),
        remote("remote speaker behind symmetric NAT", Symmetric, 0.0),
        remote(
            "remote speaker, port-restricted, 5% loss",
            PortRestrictedCone,
            0.05,
        ),
        remote(
            "remote speaker, port-restricted, 20% loss",
            PortRestrictedCone,
            0.20,
        ),
        Scenario {
            name: "both behind port-restricted NATs",
            shape: Shape::BothBehindNat(PortRestrictedCone, PortRestrictedCone),
            loss: 0.0,
            twist: Twist::Plain,
            path: true,
            one_way: Duration::from_micros(600) + LinkConditions::internet().latency,
        },
        Scenario {
            name: "symmetric to symmetric, no TURN (must fail cleanly)",
            shape: Shape::BothBehindNat(Symmetric, Symmetric),
            loss: 0.0,
            twist: Twist::Plain,
            path: false,
            one_way: Duration::ZERO,
        },
        Scenario {
            name: "role conflict (both controlling), same LAN",
            twist: Twist::RoleConflict,
            ..lan("", StunSetup::Up, 0.0)
        },
        Scenario {
            name: "consent loss when the LAN dies (time to report)",
            twist: Twist::LinkDies,
            ..lan("", StunSetup::Up, 0.0)
        },
        Scenario {
            name: "ICE restart after the speaker's address changes (time to reconnect)",
            twist: Twist::AddressChange,
            ..lan("", StunSetup::Up, 0.0)
        },
    ]
}

#[test]
fn scenario_matrix() {
    let seeds: u64 = std::env::var("SCENARIO_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    let mut table = String::new();
    table.push_str(&format!(
        "| scenario ({seeds} seeds each) | connected | median ms | p99 ms | max ms | median RTTs | p99 RTTs |\n|---|---:|---:|---:|---:|---:|---:|\n"
    ));
    let mut problems = Vec::new();
    let mut decisions = String::new();
    for s in scenarios() {
        let mut out = Outcome::default();
        for seed in 1..=seeds {
            run_one(&s, seed, &mut out);
        }
        decisions.push_str(&format!("{}: {}\n", s.name, out.decision));
        let mut times = out.connected.clone();
        times.sort();
        let rtt = s.one_way + s.one_way;
        let rtts = |d: Duration| {
            if rtt == Duration::ZERO {
                0.0
            } else {
                ms(d) / ms(rtt)
            }
        };
        if s.path {
            table.push_str(&format!(
                "| {} | {}/{} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} |\n",
                s.name,
                times.len(),
                seeds,
                ms(percentile(&times, 0.5)),
                ms(percentile(&times, 0.99)),
                ms(*times.last().unwrap_or(&Duration::ZERO)),
                rtts(percentile(&times, 0.5)),
                rtts(percentile(&times, 0.99)),
            ));
        } else {
            table.push_str(&format!(
                "| {} | clean failure events: {}/{} | | | | | |\n",
                s.name, out.clean_failures, seeds
            ));
        }
        if let Some((seed, why)) = out.failures.first() {
            problems.push(format!(
                "{}: {} failures; first: seed {seed}: {why}",
                s.name,
                out.failures.len()
            ));
        }
        // LAN goal: within 3 round trips of the first check, never waiting on STUN.
        if matches!(s.shape, Shape::SameLan { .. }) && s.loss == 0.0 && s.twist == Twist::Plain {
            let worst = times.last().copied().unwrap_or(Duration::ZERO);
            if rtts(worst) > 3.0 {
                problems.push(format!(
                    "{}: worst connect {} = {:.1} RTTs > 3",
                    s.name,
                    worst,
                    rtts(worst)
                ));
            }
        }
    }
    println!("{decisions}");
    println!("{table}");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn lan_decision_uses_the_fast_path_and_no_stun() {
    let d = policy_for("192.168.1.20".parse().unwrap(), Some("stun:192.0.2.1:3478"));
    assert_eq!(d.network, NetworkType::Local);
    assert!(!d.gathers_srflx(), "no STUN for a peer on the LAN");
    assert!(d.nominate_host_on_first_success);
}
