//! Tests of the network simulator itself: determinism, link conditions,
//! NAT behaviours, firewall, STUN server, topology changes and the
//! ready-made topologies.

use std::net::{IpAddr, SocketAddr};

use scream_ice_core::time::{Duration, Instant};
use scream_ice_tests::netsim::topologies::{self, STUN_PORT, TopologyParams};
use scream_ice_tests::netsim::{
    Datagram, Direction, DropReason, Endpoint, FirewallRule, HostId, LinkConditions, NatConfig,
    NatKind, Prober, SegmentId, Sim, StunClient, StunServer, Trace, TraceEvent,
};
use scream_ice_tests::sim_assert;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A host with one address on `segment` and `endpoint` attached.
fn place<E: Endpoint + 'static>(
    sim: &mut Sim,
    name: &str,
    seg: SegmentId,
    addr: &str,
    endpoint: E,
) -> HostId {
    let h = sim.add_host(name);
    sim.add_address(h, seg, ip(addr));
    sim.set_endpoint(h, endpoint);
    h
}

// ----- determinism --------------------------------------------------------

fn busy_run(seed: u64) -> Trace {
    let mut sim = Sim::new(seed);
    let params = TopologyParams {
        lan: LinkConditions::lan().with_loss(0.05).with_jitter(ms(1)),
        internet: LinkConditions::internet()
            .with_loss(0.1)
            .with_jitter(ms(10)),
        ..TopologyParams::default()
    };
    let topo =
        topologies::both_behind_nat_with(&mut sim, NatKind::FullCone, NatKind::Symmetric, &params);
    let internet = topo.internet.unwrap();
    let stun = topo.stun.unwrap().addr;
    let echo = place(&mut sim, "echo", internet, "192.0.2.7", Prober::echo());
    let _ = echo;
    sim.set_endpoint(
        topo.router.host,
        StunClient::new(topo.router.addr(4000), &[stun]),
    );
    let mut p = Prober::new();
    for i in 0..200u32 {
        p.send_at(
            Instant::from_millis(u64::from(i)),
            topo.speaker.addr(5000),
            sa("192.0.2.7:7"),
            i.to_be_bytes(),
        );
    }
    sim.set_endpoint(topo.speaker.host, p);
    sim.run_until(Instant::from_secs(10), |_| false);
    sim.trace().clone()
}

#[test]
fn same_seed_same_trace() {
    let a = busy_run(0xC0FFEE);
    let b = busy_run(0xC0FFEE);
    assert!(a.len() > 500, "the run should be busy: {} entries", a.len());
    assert!(a.count_drops(&DropReason::Loss) > 10);
    assert_eq!(a.dump(), b.dump());
    assert!(a == b);
    let c = busy_run(0xC0FFEF);
    assert_ne!(a.dump(), c.dump(), "another seed must give another run");
}

#[test]
fn same_instant_events_keep_insertion_order() {
    let mut sim = Sim::new(1);
    let lan = sim.add_segment("lan", LinkConditions::lan());
    let rx = place(&mut sim, "rx", lan, "10.0.0.2", Prober::new());
    let mut p = Prober::new();
    for i in 0..50u8 {
        p.send(sa("10.0.0.1:1"), sa("10.0.0.2:2"), vec![i]);
    }
    place(&mut sim, "tx", lan, "10.0.0.1", p);
    sim.advance(ms(10));
    let got: Vec<u8> = sim
        .endpoint::<Prober>(rx)
        .received()
        .iter()
        .map(|r| r.payload[0])
        .collect();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

// ----- link conditions ----------------------------------------------------

fn measure_loss(seed: u64, loss: f64, n: u32) -> f64 {
    let mut sim = Sim::new(seed);
    let lan = sim.add_segment("lossy", LinkConditions::new(ms(5)).with_loss(loss));
    let rx = place(&mut sim, "rx", lan, "10.0.0.2", Prober::new());
    let mut p = Prober::new();
    for i in 0..n {
        p.send_at(
            Instant::from_micros(u64::from(i) * 100),
            sa("10.0.0.1:1"),
            sa("10.0.0.2:2"),
            i.to_be_bytes(),
        );
    }
    place(&mut sim, "tx", lan, "10.0.0.1", p);
    sim.advance(Duration::from_secs(2));
    let received = sim.endpoint::<Prober>(rx).received().len();
    let lost = sim.trace().count_drops(&DropReason::Loss);
    assert_eq!(
        received + lost,
        n as usize,
        "every datagram is either delivered or lost"
    );
    lost as f64 / f64::from(n)
}

#[test]
fn loss_rates_are_as_configured() {
    // 4000 draws: the standard deviation is 0.34 % at 5 % and 0.63 % at 20 %;
    // 1.5 points is more than 2 sigma at 20 %, 4 sigma at 5 %.
    for seed in [1, 2, 3] {
        let five = measure_loss(seed, 0.05, 4000);
        assert!((five - 0.05).abs() < 0.015, "seed {seed}: measured {five}");
        let twenty = measure_loss(seed, 0.20, 4000);
        assert!(
            (twenty - 0.20).abs() < 0.015,
            "seed {seed}: measured {twenty}"
        );
    }
    assert_eq!(measure_loss(1, 0.0, 500), 0.0);
    assert_eq!(measure_loss(1, 1.0, 500), 1.0);
}

/// Sends 200 numbered datagrams 1 ms apart over latency 20 ms and `jitter`;
/// returns (arrival order, one-way delays).
fn jitter_run(jitter: Duration) -> (Vec<u32>, Vec<Duration>) {
    let mut sim = Sim::new(9);
    let lan = sim.add_segment("jittery", LinkConditions::new(ms(20)).with_jitter(jitter));
    let rx = place(&mut sim, "rx", lan, "10.0.0.2", Prober::new());
    let mut p = Prober::new();
    for i in 0..200u32 {
        p.send_at(
            Instant::from_millis(u64::from(i)),
            sa("10.0.0.1:1"),
            sa("10.0.0.2:2"),
            i.to_be_bytes(),
        );
    }
    place(&mut sim, "tx", lan, "10.0.0.1", p);
    sim.advance(Duration::from_secs(1));
    let r = sim.endpoint::<Prober>(rx).received();
    let order = r
        .iter()
        .map(|r| u32::from_be_bytes(r.payload[..4].try_into().unwrap()))
        .collect::<Vec<_>>();
    let delays = r
        .iter()
        .zip(&order)
        .map(|(r, &i)| r.at - Instant::from_millis(u64::from(i)))
        .collect();
    (order, delays)
}

#[test]
fn jitter_delays_within_bounds_and_reorders() {
    let (order, delays) = jitter_run(ms(10));
    assert_eq!(order.len(), 200);
    let inversions = order.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(
        inversions > 20,
        "jitter of 10x the spacing must reorder: {inversions}"
    );
    assert!(
        delays.iter().all(|d| *d >= ms(20) && *d <= ms(30)),
        "{delays:?}"
    );
    assert!(delays.iter().any(|d| *d > ms(28)) && delays.iter().any(|d| *d < ms(22)));

    let (order, delays) = jitter_run(Duration::ZERO);
    assert_eq!(
        order,
        (0..200).collect::<Vec<_>>(),
        "no jitter, no reordering"
    );
    assert!(delays.iter().all(|d| *d == ms(20)));
}

// ----- NAT behaviour ------------------------------------------------------

/// Internet with two STUN servers, a NAT of `kind`, one inside host with a
/// STUN client asking both. Returns the two mapped addresses.
fn mapped_by_two_servers(kind: NatKind) -> (SocketAddr, SocketAddr) {
    let mut sim = Sim::new(7);
    let internet = sim.add_segment("internet", LinkConditions::internet());
    let lan = sim.add_segment("lan", LinkConditions::lan());
    let s1 = sa("192.0.2.1:3478");
    let s2 = sa("192.0.2.2:3478");
    place(&mut sim, "stun1", internet, "192.0.2.1", StunServer::new());
    place(&mut sim, "stun2", internet, "192.0.2.2", StunServer::new());
    sim.add_nat(
        "nat",
        kind,
        lan,
        &[ip("192.168.1.1")],
        internet,
        &[ip("198.51.100.1")],
    );
    let c = place(
        &mut sim,
        "client",
        lan,
        "192.168.1.20",
        StunClient::new(sa("192.168.1.20:5000"), &[s1, s2]),
    );
    let done = sim.run_until(Instant::from_secs(5), |s| {
        s.endpoint::<StunClient>(c).finished()
    });
    sim_assert!(sim, done.is_done(), "{kind:?}: client did not finish");
    let client = sim.endpoint::<StunClient>(c);
    let (m1, m2) = (client.mapped_by(s1).unwrap(), client.mapped_by(s2).unwrap());
    sim_assert!(
        sim,
        m1.ip() == ip("198.51.100.1") && m2.ip() == ip("198.51.100.1"),
        "{kind:?}: {m1} {m2}"
    );
    (m1, m2)
}

#[test]
fn cone_nats_map_independently_of_destination_symmetric_does_not() {
    for kind in [
        NatKind::FullCone,
        NatKind::RestrictedCone,
        NatKind::PortRestrictedCone,
    ] {
        let (a, b) = mapped_by_two_servers(kind);
        assert_eq!(a, b, "{kind:?}");
    }
    let (a, b) = mapped_by_two_servers(NatKind::Symmetric);
    assert_ne!(a, b, "symmetric NAT must map per destination");
}

/// Inside host P contacts S at 192.0.2.1:3478. Then S answers from :3478
/// (exact), S from :3479 (same IP, other port) and T at 192.0.2.99:3478
/// (third party). Returns which of the three reached P.
fn filtering(kind: NatKind) -> [bool; 3] {
    let mut sim = Sim::new(11);
    let internet = sim.add_segment("internet", LinkConditions::internet());
    let lan = sim.add_segment("lan", LinkConditions::lan());
    let s = place(&mut sim, "S", internet, "192.0.2.1", Prober::new());
    let t = place(&mut sim, "T", internet, "192.0.2.99", Prober::new());
    sim.add_nat(
        "nat",
        kind,
        lan,
        &[ip("192.168.1.1")],
        internet,
        &[ip("198.51.100.1")],
    );
    let mut p = Prober::new();
    p.send(
        sa("192.168.1.20:5000"),
        sa("192.0.2.1:3478"),
        b"hello".to_vec(),
    );
    let p = place(&mut sim, "P", lan, "192.168.1.20", p);
    sim.advance(Duration::from_secs(1));
    let mapped = sim.endpoint::<Prober>(s).received()[0].remote;
    assert_eq!(mapped.ip(), ip("198.51.100.1"));
    assert_eq!(
        sim.nat_mappings(HostId(2)),
        vec![(sa("192.168.1.20:5000"), mapped)]
    );
    sim.endpoint_mut::<Prober>(s)
        .send(sa("192.0.2.1:3478"), mapped, b"exact".to_vec());
    sim.endpoint_mut::<Prober>(s)
        .send(sa("192.0.2.1:3479"), mapped, b"same-ip".to_vec());
    sim.endpoint_mut::<Prober>(t)
        .send(sa("192.0.2.99:3478"), mapped, b"third".to_vec());
    sim.advance(Duration::from_secs(1));
    let got = |what: &[u8]| {
        sim.endpoint::<Prober>(p)
            .received()
            .iter()
            .any(|r| r.payload == what)
    };
    let result = [got(b"exact"), got(b"same-ip"), got(b"third")];
    let passed = result.iter().filter(|x| **x).count();
    sim_assert!(
        sim,
        sim.trace().count_drops(&DropReason::NatFiltered) == 3 - passed,
        "{kind:?}: every refused datagram is traced as nat-filtered"
    );
    // What gets through arrives with the sender's real address.
    if result[2] {
        assert_eq!(
            sim.endpoint::<Prober>(p).received().last().unwrap().remote,
            sa("192.0.2.99:3478")
        );
    }
    result
}

#[test]
fn nat_filtering_by_kind() {
    //                                          exact  same-ip third
    assert_eq!(filtering(NatKind::FullCone), [true, true, true]);
    assert_eq!(filtering(NatKind::RestrictedCone), [true, true, false]);
    assert_eq!(filtering(NatKind::PortRestrictedCone), [true, false, false]);
    assert_eq!(filtering(NatKind::Symmetric), [true, false, false]);
}

#[test]
fn unsolicited_datagram_to_unmapped_port_is_dropped() {
    let mut sim = Sim::new(3);
    let topo = topologies::remote_behind_nat(&mut sim, NatKind::FullCone);
    sim.set_endpoint(topo.router.host, Prober::new());
    sim.set_endpoint(topo.speaker.host, Prober::new());
    sim.endpoint_mut::<Prober>(topo.router.host).send(
        topo.router.addr(9),
        SocketAddr::new(topo.speaker.public_ip.unwrap(), 40000),
        b"x".to_vec(),
    );
    sim.advance(Duration::from_secs(1));
    assert_eq!(
        sim.trace().count_drops(&DropReason::NatNoMapping),
        1,
        "{}",
        sim.report()
    );
    assert!(
        sim.endpoint::<Prober>(topo.speaker.host)
            .received()
            .is_empty()
    );
}

/// P contacts S at t=0 (and again at each of `refresh_at`); S answers from
/// the contacted address at `answer_at`. Returns whether P got the answer.
fn answer_after(answer_at: Instant, refresh_at: &[Instant]) -> (bool, Sim) {
    let mut sim = Sim::new(5);
    let internet = sim.add_segment("internet", LinkConditions::new(ms(1)));
    let lan = sim.add_segment("lan", LinkConditions::new(ms(1)));
    let s = place(&mut sim, "S", internet, "192.0.2.1", Prober::new());
    sim.add_nat(
        "nat",
        NatKind::FullCone,
        lan,
        &[ip("192.168.1.1")],
        internet,
        &[ip("198.51.100.1")],
    );
    let mut p = Prober::new();
    let (from, to) = (sa("192.168.1.20:5000"), sa("192.0.2.1:3478"));
    p.send(from, to, b"open".to_vec());
    for &t in refresh_at {
        p.send_at(t, from, to, b"refresh".to_vec());
    }
    let p = place(&mut sim, "P", lan, "192.168.1.20", p);
    sim.advance(Duration::from_secs(1));
    let mapped = sim.endpoint::<Prober>(s).received()[0].remote;
    let mut answer = Prober::new();
    answer.send_at(answer_at, to, mapped, b"answer".to_vec());
    sim.set_endpoint(s, answer);
    sim.run_until(answer_at + Duration::from_secs(1), |_| false);
    let got = sim
        .endpoint::<Prober>(p)
        .received()
        .iter()
        .any(|r| r.payload == b"answer");
    (got, sim)
}

#[test]
fn mappings_expire_after_the_timeout_unless_refreshed() {
    // The mapping was made at t = 1 ms (one LAN hop); it lives 120 s.
    let (got, sim) = answer_after(Instant::from_secs(119), &[]);
    sim_assert!(sim, got, "alive at 119 s");
    let (got, sim) = answer_after(Instant::from_secs(121), &[]);
    sim_assert!(sim, !got, "expired at 121 s");
    assert_eq!(sim.trace().count_drops(&DropReason::NatNoMapping), 1);
    let refresh = [Instant::from_secs(60), Instant::from_secs(150)];
    let (got, sim) = answer_after(Instant::from_secs(260), &refresh);
    sim_assert!(
        sim,
        got,
        "outbound traffic at 60 s and 150 s keeps it alive at 260 s"
    );
    let (got, sim) = answer_after(Instant::from_secs(275), &refresh);
    sim_assert!(sim, !got, "and it dies 120 s after the last refresh");
}

#[test]
fn mapping_timeout_is_configurable() {
    let mut sim = Sim::new(5);
    let internet = sim.add_segment("internet", LinkConditions::new(ms(1)));
    let lan = sim.add_segment("lan", LinkConditions::new(ms(1)));
    place(&mut sim, "S", internet, "192.0.2.1", Prober::new());
    let cfg =
        NatConfig::new(NatKind::PortRestrictedCone).with_mapping_timeout(Duration::from_secs(30));
    let nat = sim.add_nat(
        "nat",
        cfg,
        lan,
        &[ip("192.168.1.1")],
        internet,
        &[ip("198.51.100.1")],
    );
    let mut p = Prober::new();
    p.send(
        sa("192.168.1.20:5000"),
        sa("192.0.2.1:3478"),
        b"open".to_vec(),
    );
    place(&mut sim, "P", lan, "192.168.1.20", p);
    sim.advance(Duration::from_secs(29));
    assert_eq!(sim.nat_mappings(nat).len(), 1);
    sim.advance(Duration::from_secs(2));
    assert!(sim.nat_mappings(nat).is_empty());
}

/// Two hosts behind one NAT; A has a mapping (A contacted S), B sends to
/// A's public address. Returns what A received and the sim.
fn hairpin(hairpinning: bool) -> (Vec<SocketAddr>, Sim) {
    let mut sim = Sim::new(13);
    let internet = sim.add_segment("internet", LinkConditions::internet());
    let lan = sim.add_segment("lan", LinkConditions::lan());
    let s = place(&mut sim, "S", internet, "192.0.2.1", Prober::new());
    let cfg = NatConfig::new(NatKind::FullCone).with_hairpinning(hairpinning);
    sim.add_nat(
        "nat",
        cfg,
        lan,
        &[ip("192.168.1.1")],
        internet,
        &[ip("198.51.100.1")],
    );
    let mut pa = Prober::new();
    pa.send(
        sa("192.168.1.20:5000"),
        sa("192.0.2.1:3478"),
        b"open".to_vec(),
    );
    let a = place(&mut sim, "A", lan, "192.168.1.20", pa);
    let b = place(&mut sim, "B", lan, "192.168.1.30", Prober::new());
    sim.advance(Duration::from_secs(1));
    let mapped = sim.endpoint::<Prober>(s).received()[0].remote;
    sim.endpoint_mut::<Prober>(b)
        .send(sa("192.168.1.30:6000"), mapped, b"hairpin".to_vec());
    sim.advance(Duration::from_secs(1));
    let from = sim
        .endpoint::<Prober>(a)
        .received()
        .iter()
        .map(|r| r.remote)
        .collect();
    (from, sim)
}

#[test]
fn hairpinning_is_off_by_default_and_translates_when_on() {
    let (from, sim) = hairpin(false);
    assert!(from.is_empty());
    assert_eq!(
        sim.trace().count_drops(&DropReason::NoHairpin),
        1,
        "{}",
        sim.report()
    );
    let (from, sim) = hairpin(true);
    sim_assert!(sim, from.len() == 1, "hairpinned datagram delivered");
    assert_eq!(
        from[0].ip(),
        ip("198.51.100.1"),
        "source is B's external mapping (RFC 4787 REQ-9)"
    );
}

#[test]
fn double_nat_chain_maps_through_both() {
    let mut sim = Sim::new(17);
    let topo = topologies::speaker_behind_double_nat(
        &mut sim,
        NatKind::PortRestrictedCone,
        NatKind::Symmetric,
    );
    let stun = topo.stun.unwrap().addr;
    let c = topo.speaker.host;
    sim.set_endpoint(c, StunClient::new(topo.speaker.addr(5000), &[stun]));
    let done = sim.run_until(Instant::from_secs(5), |s| {
        s.endpoint::<StunClient>(c).finished()
    });
    sim_assert!(sim, done.is_done(), "finished");
    let mapped = sim.endpoint::<StunClient>(c).mapped_by(stun).unwrap();
    assert_eq!(Some(mapped.ip()), topo.speaker.public_ip);
    let home = sim.nat_mappings(topo.nats[0]);
    let cgn = sim.nat_mappings(topo.nats[1]);
    assert_eq!(home.len(), 1);
    assert_eq!(home[0].1.ip(), ip("100.64.0.2"));
    assert_eq!(cgn, vec![(home[0].1, mapped)]);
}

// ----- firewall, STUN server, topology changes ----------------------------

#[test]
fn firewall_rule_drops_and_traces_its_label() {
    let mut sim = Sim::new(19);
    let topo = topologies::same_lan(&mut sim);
    let router = topo.router.host;
    sim.set_endpoint(router, Prober::new());
    sim.set_endpoint(topo.speaker.host, Prober::new());
    let rule = sim.add_rule(
        FirewallRule::new(topo.speaker.host, Direction::Outbound)
            .dst(topo.router.addr(9))
            .label("no discard"),
    );
    let send = |sim: &mut Sim, port: u16| {
        sim.endpoint_mut::<Prober>(topo.speaker.host).send(
            topo.speaker.addr(5000),
            topo.router.addr(port),
            vec![port as u8],
        );
    };
    send(&mut sim, 9);
    send(&mut sim, 10);
    sim.advance(ms(100));
    let got: Vec<u16> = sim
        .endpoint::<Prober>(router)
        .received()
        .iter()
        .map(|r| r.local.port())
        .collect();
    assert_eq!(got, vec![10]);
    let drops: Vec<_> = sim.trace().drops().map(|(_, r)| r.clone()).collect();
    assert_eq!(
        drops,
        vec![DropReason::Firewall {
            rule,
            label: "no discard".into()
        }]
    );
    assert!(
        sim.trace()
            .dump()
            .contains("[firewall rule 0 (no discard)]"),
        "{}",
        sim.report()
    );
    // Inbound rules at the receiver work too; removing the first one lifts it.
    assert!(sim.remove_rule(rule));
    sim.add_rule(
        FirewallRule::new(router, Direction::Inbound)
            .src_ip(topo.speaker.ip())
            .dst_port(11),
    );
    send(&mut sim, 9);
    send(&mut sim, 11);
    sim.advance(ms(100));
    let got: Vec<u16> = sim
        .endpoint::<Prober>(router)
        .received()
        .iter()
        .map(|r| r.local.port())
        .collect();
    assert_eq!(got, vec![10, 9]);
    assert_eq!(
        sim.trace().count_drops(&DropReason::Firewall {
            rule,
            label: String::new()
        }),
        2
    );
}

fn stun_client_at_speaker(sim: &mut Sim, topo: &topologies::Topology) -> HostId {
    let stun = topo.stun.unwrap().addr;
    let client = StunClient::new(topo.speaker.addr(5000), &[stun]).with_retransmit(ms(500), 7);
    sim.set_endpoint(topo.speaker.host, client);
    topo.speaker.host
}

#[test]
fn blocking_udp_to_the_stun_server() {
    let mut sim = Sim::new(23);
    let topo = topologies::same_lan_with_stun(&mut sim, true);
    let stun = topo.stun.unwrap();
    sim.add_rule(
        FirewallRule::new(topo.speaker.host, Direction::Outbound)
            .dst(stun.addr)
            .label("block STUN"),
    );
    let c = stun_client_at_speaker(&mut sim, &topo);
    let done = sim.run_until(Instant::from_secs(10), |s| {
        s.endpoint::<StunClient>(c).finished()
    });
    sim_assert!(sim, done.is_done(), "client gives up");
    let client = sim.endpoint::<StunClient>(c);
    assert!(client.results().is_empty());
    assert_eq!(client.requests_sent(), 7);
    assert_eq!(
        sim.trace().count_drops(&DropReason::Firewall {
            rule: scream_ice_tests::netsim::RuleId(0),
            label: String::new()
        }),
        7
    );
    assert_eq!(sim.endpoint::<StunServer>(stun.host).answered(), 0);
}

#[test]
fn stun_server_answers_with_the_mapped_address_and_software() {
    let mut sim = Sim::new(29);
    let topo = topologies::same_lan_with_stun(&mut sim, true);
    let c = stun_client_at_speaker(&mut sim, &topo);
    let done = sim.run_until(Instant::from_secs(10), |s| {
        s.endpoint::<StunClient>(c).finished()
    });
    sim_assert!(sim, done.is_done(), "answered");
    let r = &sim.endpoint::<StunClient>(c).results()[0];
    assert_eq!(Some(r.mapped.ip()), topo.speaker.public_ip);
    assert_eq!(r.software.as_deref(), Some("netsim"));
    // LAN 0.3 ms + internet 15 ms, each way.
    assert_eq!(r.rtt, Duration::from_micros(2 * 15_300));
    assert!(
        sim.trace().dump().contains("STUN Binding success"),
        "{}",
        sim.report()
    );
}

#[test]
fn stun_server_down_gives_no_answer() {
    // Host down: the network drops the requests.
    let mut sim = Sim::new(31);
    let topo = topologies::same_lan_with_stun(&mut sim, false);
    let c = stun_client_at_speaker(&mut sim, &topo);
    sim.run_until(Instant::from_secs(10), |_| false);
    let client = sim.endpoint::<StunClient>(c);
    assert!(client.finished() && client.results().is_empty());
    assert_eq!(
        sim.trace().count_drops(&DropReason::HostDown),
        7,
        "{}",
        sim.report()
    );

    // Server switched off: it receives and ignores.
    let mut sim = Sim::new(31);
    let topo = topologies::same_lan_with_stun(&mut sim, true);
    let stun = topo.stun.unwrap();
    sim.endpoint_mut::<StunServer>(stun.host).set_up(false);
    let c = stun_client_at_speaker(&mut sim, &topo);
    sim.run_until(Instant::from_secs(10), |_| false);
    assert!(sim.endpoint::<StunClient>(c).results().is_empty());
    assert_eq!(sim.endpoint::<StunServer>(stun.host).ignored(), 7);
}

#[test]
fn slow_stun_server_answers_late() {
    let mut sim = Sim::new(37);
    let topo = topologies::same_lan_with_stun(&mut sim, true);
    let stun = topo.stun.unwrap();
    sim.endpoint_mut::<StunServer>(stun.host)
        .set_delay(ms(1200));
    // One send only, so the answer is to the first transmission.
    let client = StunClient::new(topo.speaker.addr(5000), &[stun.addr])
        .with_retransmit(Duration::from_secs(5), 1);
    sim.set_endpoint(topo.speaker.host, client);
    sim.run_until(Instant::from_secs(10), |_| false);
    let r = &sim.endpoint::<StunClient>(topo.speaker.host).results()[0];
    assert_eq!(
        r.rtt,
        Duration::from_micros(2 * 15_300 + 1_200_000),
        "{}",
        sim.report()
    );
}

#[test]
fn timers_fire_at_the_requested_instants() {
    let mut sim = Sim::new(41);
    let topo = topologies::same_lan_with_stun(&mut sim, false);
    let c = stun_client_at_speaker(&mut sim, &topo);
    sim.run_until(Instant::from_secs(10), |_| false);
    let sends: Vec<Instant> = sim
        .trace()
        .entries()
        .iter()
        .filter(|e| matches!(e.event, TraceEvent::Send { host, .. } if host == c))
        .map(|e| e.at)
        .collect();
    let want: Vec<Instant> = (0..7).map(|i| Instant::from_millis(500 * i)).collect();
    assert_eq!(sends, want);
}

#[test]
fn link_down_drops_in_flight_and_new_datagrams() {
    let mut sim = Sim::new(43);
    let p = TopologyParams {
        lan: LinkConditions::new(ms(10)),
        ..TopologyParams::default()
    };
    let topo = topologies::same_lan_with(&mut sim, &p);
    let (r, s) = (topo.router.host, topo.speaker.host);
    sim.set_endpoint(r, Prober::new());
    sim.set_endpoint(s, Prober::new());
    let send = |sim: &mut Sim, tag: &[u8]| {
        sim.endpoint_mut::<Prober>(s)
            .send(topo.speaker.addr(1), topo.router.addr(2), tag.to_vec());
    };
    send(&mut sim, b"in-flight");
    sim.advance(ms(5));
    sim.set_link_up(topo.router.segment, false);
    send(&mut sim, b"while-down");
    sim.advance(ms(50));
    sim.set_link_up(topo.router.segment, true);
    send(&mut sim, b"after");
    sim.advance(ms(50));
    let got: Vec<&[u8]> = sim
        .endpoint::<Prober>(r)
        .received()
        .iter()
        .map(|r| &r.payload[..])
        .collect();
    assert_eq!(got, vec![&b"after"[..]]);
    assert_eq!(
        sim.trace().count_drops(&DropReason::LinkDown),
        2,
        "{}",
        sim.report()
    );
}

#[test]
fn address_changes_mid_run() {
    let mut sim = Sim::new(47);
    let topo = topologies::same_lan(&mut sim);
    let (r, s) = (topo.router.host, topo.speaker.host);
    sim.set_endpoint(r, Prober::new());
    sim.set_endpoint(s, Prober::new());
    let old = topo.router.ip();
    let new = ip("192.168.1.11");
    assert!(sim.remove_address(r, old));
    assert!(!sim.remove_address(r, old));
    sim.endpoint_mut::<Prober>(s).send(
        topo.speaker.addr(1),
        SocketAddr::new(old, 2),
        b"old".to_vec(),
    );
    sim.endpoint_mut::<Prober>(r).send(
        SocketAddr::new(old, 2),
        topo.speaker.addr(1),
        b"from-old".to_vec(),
    );
    sim.advance(ms(10));
    assert_eq!(sim.trace().count_drops(&DropReason::NoRoute), 1);
    assert_eq!(sim.trace().count_drops(&DropReason::BadSource), 1);
    sim.add_address(r, topo.router.segment, new);
    assert_eq!(sim.addresses(r), vec![new]);
    sim.endpoint_mut::<Prober>(s).send(
        topo.speaker.addr(1),
        SocketAddr::new(new, 2),
        b"new".to_vec(),
    );
    sim.advance(ms(10));
    let got = sim.endpoint::<Prober>(r).received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].local, SocketAddr::new(new, 2));
    assert!(
        sim.trace()
            .dump()
            .contains("ADDR    router       + 192.168.1.11 on lan"),
        "{}",
        sim.report()
    );
}

#[test]
fn address_removed_while_datagram_in_flight() {
    let mut sim = Sim::new(53);
    let p = TopologyParams {
        lan: LinkConditions::new(ms(10)),
        ..TopologyParams::default()
    };
    let topo = topologies::same_lan_with(&mut sim, &p);
    sim.set_endpoint(topo.router.host, Prober::new());
    let mut pr = Prober::new();
    pr.send(topo.speaker.addr(1), topo.router.addr(2), b"x".to_vec());
    sim.set_endpoint(topo.speaker.host, pr);
    sim.advance(ms(5));
    sim.remove_address(topo.router.host, topo.router.ip());
    sim.advance(ms(10));
    assert_eq!(sim.trace().count_drops(&DropReason::NoRoute), 1);
}

#[test]
fn hosts_without_endpoint_and_injected_datagrams() {
    let mut sim = Sim::new(59);
    let lan = sim.add_segment("lan", LinkConditions::lan());
    let a = sim.add_host("a");
    sim.add_address(a, lan, ip("10.0.0.1"));
    let b = sim.add_host("b");
    sim.add_address(b, lan, ip("10.0.0.2"));
    sim.transmit(
        a,
        Datagram {
            from: sa("10.0.0.1:1"),
            to: sa("10.0.0.2:2"),
            payload: vec![1],
        },
    );
    sim.transmit(
        a,
        Datagram {
            from: sa("10.0.0.1:1"),
            to: sa("10.0.0.3:2"),
            payload: vec![1],
        },
    );
    sim.advance(ms(10));
    assert_eq!(sim.trace().count_drops(&DropReason::NoListener), 1);
    assert_eq!(sim.trace().count_drops(&DropReason::NoRoute), 1);
}

// ----- the run loop ---------------------------------------------------------

/// An endpoint whose timer is always now: the simulator must notice.
struct Spinner;

impl Endpoint for Spinner {
    fn handle_receive(&mut self, _: Instant, _: SocketAddr, _: SocketAddr, _: &[u8]) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_transmit(&mut self) -> Option<Datagram> {
        None
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        Some(Instant::ZERO)
    }
}

#[test]
#[should_panic(expected = "an endpoint is spinning")]
fn spinning_endpoint_is_reported() {
    let mut sim = Sim::new(61);
    let h = sim.add_host("spinner");
    sim.set_endpoint(h, Spinner);
    sim.advance(ms(1));
}

#[test]
fn run_until_stops_at_predicate_or_deadline() {
    let mut sim = Sim::new(67);
    let topo = topologies::same_lan(&mut sim);
    sim.set_endpoint(topo.router.host, Prober::echo());
    let mut p = Prober::new();
    p.send_at(
        Instant::from_secs(3),
        topo.speaker.addr(1),
        topo.router.addr(7),
        b"ping".to_vec(),
    );
    sim.set_endpoint(topo.speaker.host, p);
    let s = topo.speaker.host;
    let out = sim.run_until(Instant::from_secs(2), |sim| {
        !sim.endpoint::<Prober>(s).received().is_empty()
    });
    assert!(!out.is_done());
    assert_eq!(sim.now(), Instant::from_secs(2));
    let out = sim.run_until(Instant::from_secs(10), |sim| {
        !sim.endpoint::<Prober>(s).received().is_empty()
    });
    assert!(out.is_done());
    assert_eq!(
        sim.now(),
        Instant::from_micros(3_000_600),
        "two LAN hops of 300 us"
    );
    assert_eq!(sim.endpoint::<Prober>(s).received()[0].payload, b"ping");
}

// ----- ready-made topologies ------------------------------------------------

#[test]
fn ready_made_topologies_give_the_expected_mappings() {
    for kind in NatKind::ALL {
        let mut sim = Sim::new(71);
        let topo = topologies::remote_behind_nat(&mut sim, kind);
        let c = stun_client_at_speaker(&mut sim, &topo);
        let done = sim.run_until(Instant::from_secs(5), |s| {
            s.endpoint::<StunClient>(c).finished()
        });
        sim_assert!(sim, done.is_done(), "{kind:?}");
        let m = sim
            .endpoint::<StunClient>(c)
            .mapped_by(topo.stun.unwrap().addr)
            .unwrap();
        assert_eq!(Some(m.ip()), topo.speaker.public_ip);
        assert!(topo.router.nat.is_none() && topo.speaker.nat.is_some());

        for kind_b in NatKind::ALL {
            let mut sim = Sim::new(73);
            let topo = topologies::both_behind_nat(&mut sim, kind, kind_b);
            let stun = topo.stun.unwrap().addr;
            let (r, s) = (topo.router.host, topo.speaker.host);
            sim.set_endpoint(r, StunClient::new(topo.router.addr(4000), &[stun]));
            sim.set_endpoint(s, StunClient::new(topo.speaker.addr(5000), &[stun]));
            let done = sim.run_until(Instant::from_secs(5), |sim| {
                sim.endpoint::<StunClient>(r).finished() && sim.endpoint::<StunClient>(s).finished()
            });
            sim_assert!(sim, done.is_done(), "{kind:?}/{kind_b:?}");
            assert_eq!(
                Some(sim.endpoint::<StunClient>(r).results()[0].mapped.ip()),
                topo.router.public_ip
            );
            assert_eq!(
                Some(sim.endpoint::<StunClient>(s).results()[0].mapped.ip()),
                topo.speaker.public_ip
            );
        }
    }
}

#[test]
fn same_lan_peers_reach_each_other_over_ipv4_and_ipv6() {
    let mut sim = Sim::new(79);
    let p = TopologyParams {
        ipv6: true,
        ..TopologyParams::default()
    };
    let topo = topologies::same_lan_with(&mut sim, &p);
    assert_eq!(topo.router.addrs.len(), 2);
    assert!(topo.router.addrs[1].is_ipv6());
    sim.set_endpoint(topo.router.host, Prober::echo());
    let mut pr = Prober::new();
    for (i, (&from, &to)) in topo
        .speaker
        .addrs
        .iter()
        .zip(&topo.router.addrs)
        .enumerate()
    {
        pr.send(
            SocketAddr::new(from, 1),
            SocketAddr::new(to, 7),
            vec![i as u8],
        );
    }
    sim.set_endpoint(topo.speaker.host, pr);
    sim.advance(ms(10));
    let got = sim.endpoint::<Prober>(topo.speaker.host).received();
    assert_eq!(got.len(), 2, "{}", sim.report());
    assert!(got[1].remote.is_ipv6());
}

#[test]
fn ipv6_through_a_nat_topology() {
    let mut sim = Sim::new(83);
    let p = TopologyParams {
        ipv6: true,
        ..TopologyParams::default()
    };
    let topo = topologies::remote_behind_nat_with(&mut sim, NatKind::PortRestrictedCone, &p);
    let stun_v6 = SocketAddr::new(sim.addresses(topo.stun.unwrap().host)[1], STUN_PORT);
    let c = topo.speaker.host;
    sim.set_endpoint(
        c,
        StunClient::new(SocketAddr::new(topo.speaker.addrs[1], 5000), &[stun_v6]),
    );
    let done = sim.run_until(Instant::from_secs(5), |s| {
        s.endpoint::<StunClient>(c).finished()
    });
    sim_assert!(sim, done.is_done(), "v6 STUN");
    let m = sim.endpoint::<StunClient>(c).mapped_by(stun_v6).unwrap();
    assert!(m.is_ipv6());
    assert_eq!(sim.segment_of(topo.nats[0], m.ip()), topo.internet);
}

#[test]
fn lossy_topology_still_converges_with_retransmissions() {
    let mut sim = Sim::new(89);
    let topo = topologies::remote_behind_nat_with(
        &mut sim,
        NatKind::Symmetric,
        &TopologyParams::lossy(0.2),
    );
    let c = stun_client_at_speaker(&mut sim, &topo);
    let done = sim.run_until(Instant::from_secs(10), |s| {
        !s.endpoint::<StunClient>(c).results().is_empty()
    });
    sim_assert!(
        sim,
        done.is_done(),
        "one of 7 tries gets through 4 lossy hops"
    );
}

#[test]
fn expired_mapping_is_replaced_by_a_new_one() {
    let mut sim = Sim::new(97);
    let topo = topologies::remote_behind_nat(&mut sim, NatKind::PortRestrictedCone);
    let stun = topo.stun.unwrap().addr;
    let c = stun_client_at_speaker(&mut sim, &topo);
    sim.run_until(Instant::from_secs(5), |s| {
        s.endpoint::<StunClient>(c).finished()
    });
    let first = sim.endpoint::<StunClient>(c).mapped_by(stun).unwrap();
    sim.advance(Duration::from_secs(200));
    assert!(sim.nat_mappings(topo.nats[0]).is_empty());
    sim.endpoint_mut::<StunClient>(c).restart();
    let before = sim.endpoint::<StunClient>(c).results().len();
    sim.run_until(sim.now() + Duration::from_secs(5), |s| {
        s.endpoint::<StunClient>(c).results().len() > before
    });
    let second = sim.endpoint::<StunClient>(c).mapped_by(stun).unwrap();
    sim_assert!(sim, first != second, "a new mapping gets a new random port");
    let mappings = sim
        .trace()
        .entries()
        .iter()
        .filter(|e| matches!(e.event, TraceEvent::NatMapping { .. }))
        .count();
    assert_eq!(mappings, 2);
}

#[test]
fn nat_switched_down_cuts_the_path_and_link_conditions_change_mid_run() {
    let mut sim = Sim::new(101);
    let topo = topologies::remote_behind_nat(&mut sim, NatKind::FullCone);
    let stun = topo.stun.unwrap().addr;
    let nat = topo.nats[0];
    sim.set_host_up(nat, false);
    let c = topo.speaker.host;
    sim.set_endpoint(
        c,
        StunClient::new(topo.speaker.addr(5000), &[stun]).with_retransmit(ms(500), 1),
    );
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.trace().count_drops(&DropReason::HostDown), 1);
    assert!(sim.endpoint::<StunClient>(c).results().is_empty());

    sim.set_host_up(nat, true);
    let internet = topo.internet.unwrap();
    sim.set_link(internet, LinkConditions::new(ms(100)));
    assert_eq!(sim.link(internet).latency, ms(100));
    sim.endpoint_mut::<StunClient>(c).restart();
    sim.advance(Duration::from_secs(1));
    let r = &sim.endpoint::<StunClient>(c).results()[0];
    assert_eq!(
        r.rtt,
        Duration::from_micros(2 * 100_300),
        "{}",
        sim.report()
    );
}

#[test]
fn endpoints_can_be_taken_back() {
    let mut sim = Sim::new(103);
    let topo = topologies::same_lan_with_stun(&mut sim, false);
    let c = stun_client_at_speaker(&mut sim, &topo);
    sim.advance(ms(700));
    assert!(
        sim.take_endpoint::<Prober>(c).is_none(),
        "wrong type leaves it in place"
    );
    let client = sim.take_endpoint::<StunClient>(c).expect("a STUN client");
    assert_eq!(client.requests_sent(), 2);
    assert!(sim.try_endpoint::<StunClient>(c).is_none());
    assert_eq!(sim.next_event_time(), None, "its timer went with it");
    sim.advance(Duration::from_secs(10));
    assert_eq!(sim.trace().count_drops(&DropReason::HostDown), 2);
}
