//! Ready-made networks for the scenario matrix: a router (ScreamRouter)
//! and a speaker placed on the same LAN, behind NATs of any kind, with or
//! without a STUN server on "the internet".
//!
//! Every function builds into a caller's [`Sim`] and returns a
//! [`Topology`] naming the hosts and addresses; the caller attaches the
//! endpoints under test with [`Sim::set_endpoint`]. STUN servers are
//! already attached ([`StunServer`], SOFTWARE from
//! [`TopologyParams::stun_software`]).
//!
//! Addresses: the internet is 192.0.2.0/24 (STUN at .1, public router at
//! .10) and NAT outsides are in 203.0.113.0/24 (router side) and
//! 198.51.100.0/24 (speaker side); the router's LAN is 10.0.0.0/24, the
//! speaker's 192.168.1.0/24 (the shared LAN of `same_lan` too). With
//! [`TopologyParams::ipv6`], LAN hosts also get ULAs (fd00:a::/64,
//! fd00:b::/64), public hosts 2001:db8::/64 and NATs translate IPv6 as well
//! (NAT66; real deployments route IPv6 instead).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use scream_ice_core::time::Duration;

use super::endpoints::StunServer;
use super::nat::{NatConfig, NatKind};
use super::sim::{HostId, LinkConditions, SegmentId, Sim};

/// The STUN port everything here uses.
pub const STUN_PORT: u16 = 3478;

/// Knobs shared by all ready-made topologies.
#[derive(Clone, Debug, PartialEq)]
pub struct TopologyParams {
    /// Conditions of every LAN.
    pub lan: LinkConditions,
    /// Conditions of the internet segment.
    pub internet: LinkConditions,
    /// NAT mapping timeout.
    pub nat_timeout: Duration,
    /// NAT hairpinning.
    pub hairpinning: bool,
    /// Give hosts IPv6 addresses too.
    pub ipv6: bool,
    /// SOFTWARE of the STUN server(s).
    pub stun_software: Option<String>,
}

impl Default for TopologyParams {
    fn default() -> Self {
        TopologyParams {
            lan: LinkConditions::lan(),
            internet: LinkConditions::internet(),
            nat_timeout: Duration::from_secs(120),
            hairpinning: false,
            ipv6: false,
            stun_software: Some("netsim".to_string()),
        }
    }
}

impl TopologyParams {
    /// Defaults with `loss` on every segment.
    pub fn lossy(loss: f64) -> Self {
        let d = TopologyParams::default();
        TopologyParams {
            lan: d.lan.with_loss(loss),
            internet: d.internet.with_loss(loss),
            ..d
        }
    }

    fn nat(&self, kind: NatKind) -> NatConfig {
        NatConfig::new(kind)
            .with_mapping_timeout(self.nat_timeout)
            .with_hairpinning(self.hairpinning)
    }
}

/// One peer (router or speaker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its host.
    pub host: HostId,
    /// The segment it sits on.
    pub segment: SegmentId,
    /// Its addresses, IPv4 first.
    pub addrs: Vec<IpAddr>,
    /// The NAT in front of it (the innermost), if any.
    pub nat: Option<HostId>,
    /// The IPv4 address others see when it talks through its NAT(s).
    pub public_ip: Option<IpAddr>,
}

impl Peer {
    /// Its IPv4 address.
    pub fn ip(&self) -> IpAddr {
        self.addrs[0]
    }

    /// Its IPv4 address with `port`.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip(), port)
    }
}

/// A STUN server placed by a topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StunSite {
    /// Its host (endpoint: [`StunServer`]).
    pub host: HostId,
    /// Where to send Binding requests.
    pub addr: SocketAddr,
}

/// What a ready-made topology built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The router (ScreamRouter).
    pub router: Peer,
    /// The speaker.
    pub speaker: Peer,
    /// The STUN server, if the topology has one.
    pub stun: Option<StunSite>,
    /// The internet segment, if any.
    pub internet: Option<SegmentId>,
    /// Every NAT, innermost first per side.
    pub nats: Vec<HostId>,
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(prefix: u16, sub: u16, host: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(prefix, 0, sub, 0, 0, 0, 0, host))
}

fn internet_v6(host: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, host))
}

struct Builder<'a> {
    sim: &'a mut Sim,
    p: &'a TopologyParams,
}

impl Builder<'_> {
    fn host(&mut self, name: &str, segment: SegmentId, addrs: &[IpAddr]) -> HostId {
        let h = self.sim.add_host(name);
        for (i, &a) in addrs.iter().enumerate() {
            if i == 0 || self.p.ipv6 {
                self.sim.add_address(h, segment, a);
            }
        }
        h
    }

    fn addrs(&self, v4: IpAddr, v6: IpAddr) -> Vec<IpAddr> {
        if self.p.ipv6 { vec![v4, v6] } else { vec![v4] }
    }

    fn internet(&mut self) -> SegmentId {
        self.sim.add_segment("internet", self.p.internet)
    }

    fn stun(&mut self, internet: SegmentId, up: bool) -> StunSite {
        let ip = v4(192, 0, 2, 1);
        let host = self.host("stun", internet, &[ip, internet_v6(1)]);
        let mut server = StunServer::new();
        if let Some(s) = &self.p.stun_software {
            server = server.with_software(s.clone());
        }
        self.sim.set_endpoint(host, server);
        if !up {
            self.sim.set_host_up(host, false);
        }
        StunSite {
            host,
            addr: SocketAddr::new(ip, STUN_PORT),
        }
    }

    /// A LAN `10.0.0.0/24`-style segment behind a NAT of `kind` whose outside
    /// address is `public` on `outside`; returns (lan, nat).
    fn natted_lan(
        &mut self,
        name: &str,
        lan_v4: [u8; 3],
        ula_sub: u16,
        kind: NatKind,
        outside: SegmentId,
        [public, public_v6]: [IpAddr; 2],
    ) -> (SegmentId, HostId) {
        let lan = self.sim.add_segment(format!("{name}-lan"), self.p.lan);
        let inside = self.addrs(
            v4(lan_v4[0], lan_v4[1], lan_v4[2], 1),
            v6(0xfd00, ula_sub, 1),
        );
        let outside_ips = self.addrs(public, public_v6);
        let nat = self.sim.add_nat(
            format!("{name}-nat"),
            self.p.nat(kind),
            lan,
            &inside,
            outside,
            &outside_ips,
        );
        (lan, nat)
    }

    fn peer(
        &mut self,
        name: &str,
        segment: SegmentId,
        addrs: Vec<IpAddr>,
        nat: Option<HostId>,
        public_ip: Option<IpAddr>,
    ) -> Peer {
        let host = self.host(name, segment, &addrs);
        let addrs = self.addrs(addrs[0], *addrs.get(1).unwrap_or(&addrs[0]));
        Peer {
            host,
            segment,
            addrs,
            nat,
            public_ip,
        }
    }
}

/// Router and speaker on one LAN, nothing else (no internet, no STUN).
pub fn same_lan(sim: &mut Sim) -> Topology {
    same_lan_with(sim, &TopologyParams::default())
}

/// [`same_lan`] with explicit parameters.
pub fn same_lan_with(sim: &mut Sim, p: &TopologyParams) -> Topology {
    let mut b = Builder { sim, p };
    let lan = b.sim.add_segment("lan", p.lan);
    let router = b.peer(
        "router",
        lan,
        vec![v4(192, 168, 1, 10), v6(0xfd00, 0xb, 0x10)],
        None,
        None,
    );
    let speaker = b.peer(
        "speaker",
        lan,
        vec![v4(192, 168, 1, 20), v6(0xfd00, 0xb, 0x20)],
        None,
        None,
    );
    Topology {
        router,
        speaker,
        stun: None,
        internet: None,
        nats: Vec::new(),
    }
}

/// Router and speaker on one LAN behind a home NAT (port-restricted cone)
/// to the internet, where a STUN server sits; `server_up: false` switches
/// the STUN host down (requests dropped as `HostDown`).
pub fn same_lan_with_stun(sim: &mut Sim, server_up: bool) -> Topology {
    same_lan_with_stun_with(sim, server_up, &TopologyParams::default())
}

/// [`same_lan_with_stun`] with explicit parameters.
pub fn same_lan_with_stun_with(sim: &mut Sim, server_up: bool, p: &TopologyParams) -> Topology {
    let mut b = Builder { sim, p };
    let internet = b.internet();
    let stun = b.stun(internet, server_up);
    let public = v4(198, 51, 100, 1);
    let (lan, nat) = b.natted_lan(
        "home",
        [192, 168, 1],
        0xb,
        NatKind::PortRestrictedCone,
        internet,
        [public, internet_v6(0x51)],
    );
    let router = b.peer(
        "router",
        lan,
        vec![v4(192, 168, 1, 10), v6(0xfd00, 0xb, 0x10)],
        Some(nat),
        Some(public),
    );
    let speaker = b.peer(
        "speaker",
        lan,
        vec![v4(192, 168, 1, 20), v6(0xfd00, 0xb, 0x20)],
        Some(nat),
        Some(public),
    );
    Topology {
        router,
        speaker,
        stun: Some(stun),
        internet: Some(internet),
        nats: vec![nat],
    }
}

/// Router with a public address on the internet (192.0.2.10), speaker on a
/// LAN behind a NAT of `kind` (outside 198.51.100.1), STUN server on the
/// internet.
pub fn remote_behind_nat(sim: &mut Sim, kind: NatKind) -> Topology {
    remote_behind_nat_with(sim, kind, &TopologyParams::default())
}

/// [`remote_behind_nat`] with explicit parameters.
pub fn remote_behind_nat_with(sim: &mut Sim, kind: NatKind, p: &TopologyParams) -> Topology {
    let mut b = Builder { sim, p };
    let internet = b.internet();
    let stun = b.stun(internet, true);
    let router = b.peer(
        "router",
        internet,
        vec![v4(192, 0, 2, 10), internet_v6(0x10)],
        None,
        None,
    );
    let public = v4(198, 51, 100, 1);
    let (lan, nat) = b.natted_lan(
        "speaker",
        [192, 168, 1],
        0xb,
        kind,
        internet,
        [public, internet_v6(0x51)],
    );
    let speaker = b.peer(
        "speaker",
        lan,
        vec![v4(192, 168, 1, 20), v6(0xfd00, 0xb, 0x20)],
        Some(nat),
        Some(public),
    );
    Topology {
        router,
        speaker,
        stun: Some(stun),
        internet: Some(internet),
        nats: vec![nat],
    }
}

/// Router on its LAN behind a NAT of `kind_router` (outside 203.0.113.1),
/// speaker on another LAN behind a NAT of `kind_speaker` (outside
/// 198.51.100.1), STUN server on the internet between them.
pub fn both_behind_nat(sim: &mut Sim, kind_router: NatKind, kind_speaker: NatKind) -> Topology {
    both_behind_nat_with(sim, kind_router, kind_speaker, &TopologyParams::default())
}

/// [`both_behind_nat`] with explicit parameters.
pub fn both_behind_nat_with(
    sim: &mut Sim,
    kind_router: NatKind,
    kind_speaker: NatKind,
    p: &TopologyParams,
) -> Topology {
    let mut b = Builder { sim, p };
    let internet = b.internet();
    let stun = b.stun(internet, true);
    let r_public = v4(203, 0, 113, 1);
    let (r_lan, r_nat) = b.natted_lan(
        "router",
        [10, 0, 0],
        0xa,
        kind_router,
        internet,
        [r_public, internet_v6(0x31)],
    );
    let s_public = v4(198, 51, 100, 1);
    let (s_lan, s_nat) = b.natted_lan(
        "speaker",
        [192, 168, 1],
        0xb,
        kind_speaker,
        internet,
        [s_public, internet_v6(0x51)],
    );
    let router = b.peer(
        "router",
        r_lan,
        vec![v4(10, 0, 0, 10), v6(0xfd00, 0xa, 0x10)],
        Some(r_nat),
        Some(r_public),
    );
    let speaker = b.peer(
        "speaker",
        s_lan,
        vec![v4(192, 168, 1, 20), v6(0xfd00, 0xb, 0x20)],
        Some(s_nat),
        Some(s_public),
    );
    Topology {
        router,
        speaker,
        stun: Some(stun),
        internet: Some(internet),
        nats: vec![r_nat, s_nat],
    }
}

/// Router public on the internet; speaker behind a home NAT of `home` whose
/// outside is a carrier segment (100.64.0.0/10) behind a carrier-grade NAT
/// of `carrier` (outside 198.51.100.1). `Topology::nats` is `[home, cgn]`.
pub fn speaker_behind_double_nat(sim: &mut Sim, home: NatKind, carrier: NatKind) -> Topology {
    let p = TopologyParams::default();
    let mut b = Builder { sim, p: &p };
    let internet = b.internet();
    let stun = b.stun(internet, true);
    let router = b.peer("router", internet, vec![v4(192, 0, 2, 10)], None, None);
    let public = v4(198, 51, 100, 1);
    let (carrier_seg, cgn) = b.natted_lan(
        "carrier",
        [100, 64, 0],
        0xc,
        carrier,
        internet,
        [public, internet_v6(0x51)],
    );
    let (lan, home_nat) = b.natted_lan(
        "home",
        [192, 168, 1],
        0xb,
        home,
        carrier_seg,
        [v4(100, 64, 0, 2), v6(0xfd00, 0xc, 2)],
    );
    let speaker = b.peer(
        "speaker",
        lan,
        vec![v4(192, 168, 1, 20)],
        Some(home_nat),
        Some(public),
    );
    Topology {
        router,
        speaker,
        stun: Some(stun),
        internet: Some(internet),
        nats: vec![home_nat, cgn],
    }
}
