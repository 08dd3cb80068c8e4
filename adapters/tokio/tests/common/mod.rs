//! Helpers shared by the integration tests: two sessions signalling to each
//! other in-process, peer availability checks.

#![allow(dead_code)] // each test binary uses a subset

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use scream_ice_tokio::scream_ice_core::agent::{ConnectionState, GatheringState, Role};
use scream_ice_tokio::scream_ice_core::candidate::CandidateKind;
use scream_ice_tokio::scream_ice_core::policy::{
    Decision, FallbackStage, IceMode, PeerKnowledge, PolicyConfig, StunServer, decide,
};
use scream_ice_tokio::{Datagram, Driver, HostAddresses, Output, SessionConfig, SessionEvent};
use tokio::time::Instant;

/// Whether missing external peers may be skipped (`SCREAM_ICE_SKIP_PEERS=1`).
pub fn skip_peers() -> bool {
    std::env::var("SCREAM_ICE_SKIP_PEERS").is_ok_and(|v| v == "1")
}

/// A required external peer is missing: fail with `what` (which names what
/// to install), or report it skipped when `SCREAM_ICE_SKIP_PEERS=1`.
pub fn missing_peer(what: &str) {
    if skip_peers() {
        report_skip(what);
        return;
    }
    panic!("{what} (set SCREAM_ICE_SKIP_PEERS=1 to skip tests that need external peers)");
}

/// One `SCREAM_ICE_SKIPPED: ...` line past the harness's output capture:
/// `.ci/run` counts it as a skipped test instead of a passed one.
pub fn report_skip(reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "\nSCREAM_ICE_SKIPPED: {reason}");
}

/// The first executable called `name` on PATH, or in /usr/sbin, /usr/bin.
pub fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The policy (mode auto, these STUN servers) and its decision for a peer
/// at `peer` (`None`: nothing known about the peer).
pub fn decision_for<'a>(
    servers: &'a [StunServer<'a>],
    peer: Option<&str>,
) -> (PolicyConfig<'a>, Decision) {
    let mut policy = PolicyConfig::new(IceMode::Auto);
    policy.stun_servers = servers;
    policy.validate().expect("valid policy config");
    let d = decide(&policy, &knowledge(peer), FallbackStage::LocalOnly);
    (policy, d)
}

/// What is known of a peer at `peer` (`None`: nothing).
pub fn knowledge(peer: Option<&str>) -> PeerKnowledge {
    match peer {
        Some(p) => PeerKnowledge::with_address(p.parse().expect("peer ip")),
        None => PeerKnowledge::new(),
    }
}

/// A session config on 127.0.0.1 from the policy's decision for a peer at
/// 127.0.0.1 (local: no STUN, fast path).
pub fn loopback_config(role: Role) -> SessionConfig {
    let (policy, _) = decision_for(&[], Some("127.0.0.1"));
    let mut c = SessionConfig::for_peer(role, &policy, &knowledge(Some("127.0.0.1")));
    c.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse().unwrap()]);
    c
}

/// One session under test, with what happened to it and when (measured
/// from the pair's common start `t0`).
pub struct Node {
    pub driver: Driver,
    /// Application datagrams received while driving for events.
    pub data: VecDeque<Datagram>,
    pub log: Vec<(Duration, SessionEvent)>,
    pub selected_at: Option<Duration>,
    pub gathered_at: Option<Duration>,
    pub srflx: usize,
    pub connected: bool,
}

impl Node {
    pub async fn start(config: SessionConfig) -> Node {
        let driver = Driver::start(config).await.expect("session start");
        Node {
            driver,
            data: VecDeque::new(),
            log: Vec::new(),
            selected_at: None,
            gathered_at: None,
            srflx: 0,
            connected: false,
        }
    }

    pub fn gathering_complete(&self) -> bool {
        self.gathered_at.is_some()
    }

    /// Drive the session until its next event (application datagrams
    /// received meanwhile are queued in `data`).
    pub async fn event(&mut self) -> SessionEvent {
        loop {
            match self.driver.next().await {
                Output::Event(e) => return e,
                Output::Data(d) => self.data.push_back(d),
                _ => {}
            }
        }
    }

    /// Drive the session until its next application datagram (events
    /// meanwhile are logged with no time).
    pub async fn datagram(&mut self) -> Datagram {
        if let Some(d) = self.data.pop_front() {
            return d;
        }
        loop {
            if let Output::Data(d) = self.driver.next().await {
                return d;
            }
        }
    }

    /// Send one datagram over the selected pair.
    pub async fn send(&self, data: &[u8]) -> std::io::Result<usize> {
        send_selected(&self.driver, data).await
    }

    /// The selected pair as (our address, the peer's).
    pub fn selected_pair(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.driver.session().selected_pair()
    }
}

/// Exchange credentials, then relay trickled candidates and
/// end-of-candidates between `a` and `b` (instant signaling) until `done`
/// holds or `limit` passes (since `t0`). Returns whether `done` held.
pub async fn pump(
    a: &mut Node,
    b: &mut Node,
    t0: Instant,
    limit: Duration,
    done: impl Fn(&Node, &Node) -> bool,
) -> bool {
    enum From {
        A(SessionEvent),
        B(SessionEvent),
        Timeout,
    }
    let deadline = t0 + limit;
    while !done(a, b) {
        let got = tokio::select! {
            e = a.event() => From::A(e),
            e = b.event() => From::B(e),
            () = tokio::time::sleep_until(deadline) => From::Timeout,
        };
        let (me, peer, e) = match got {
            From::A(e) => (&mut *a, &mut *b, e),
            From::B(e) => (&mut *b, &mut *a, e),
            From::Timeout => return false,
        };
        let at = t0.elapsed();
        me.log.push((at, e));
        match e {
            SessionEvent::LocalCandidate(c) => {
                if c.kind == CandidateKind::ServerReflexive {
                    me.srflx += 1;
                }
                let line = c.to_attribute().to_string();
                peer.driver
                    .add_remote_candidate_line(&line)
                    .await
                    .expect("remote candidate");
            }
            SessionEvent::Gathering(GatheringState::Complete) => {
                me.gathered_at.get_or_insert(at);
                peer.driver.end_of_remote_candidates();
            }
            SessionEvent::Selected { .. } => {
                me.selected_at.get_or_insert(at);
            }
            SessionEvent::Connection(ConnectionState::Connected) => me.connected = true,
            SessionEvent::Failed(r) => panic!("ICE failed: {r}"),
            _ => {}
        }
    }
    true
}

/// Give each side the other's credentials.
pub async fn exchange_credentials(a: &mut Node, b: &mut Node) {
    let ca = a.driver.local_credentials();
    let cb = b.driver.local_credentials();
    a.driver.set_remote_credentials(&cb.ufrag, &cb.pwd).unwrap();
    b.driver.set_remote_credentials(&ca.ufrag, &ca.pwd).unwrap();
}

pub fn both_selected(a: &Node, b: &Node) -> bool {
    a.selected_at.is_some() && b.selected_at.is_some()
}

pub fn both_connected(a: &Node, b: &Node) -> bool {
    both_selected(a, b) && a.connected && b.connected
}

/// Send `n` datagrams each way and check every one arrives (order free).
pub async fn exchange_datagrams(a: &mut Node, b: &mut Node, n: usize) {
    for i in 0..n {
        a.send(format!("a-{i}").as_bytes()).await.unwrap();
        b.send(format!("b-{i}").as_bytes()).await.unwrap();
    }
    let (pa, pb) = (a.selected_pair().unwrap(), b.selected_pair().unwrap());
    for (node, prefix, from) in [(&mut *b, "a-", pa.0), (&mut *a, "b-", pb.0)] {
        let mut seen = vec![false; n];
        for _ in 0..n {
            let d = tokio::time::timeout(Duration::from_secs(5), node.datagram())
                .await
                .expect("datagram within 5 s");
            assert_eq!(d.from, from, "datagram from the selected remote");
            let s = String::from_utf8(d.data).unwrap();
            let i: usize = s.strip_prefix(prefix).unwrap().parse().unwrap();
            assert!(!seen[i], "duplicate {s}");
            seen[i] = true;
        }
        assert!(seen.iter().all(|&x| x));
    }
}

/// Send one datagram over the driver's selected pair (`NotConnected` if
/// none is selected).
pub async fn send_selected(driver: &Driver, data: &[u8]) -> std::io::Result<usize> {
    let Some((socket, _, remote)) = driver.selected_path() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotConnected,
            "no selected pair",
        ));
    };
    socket.send_to(data, remote).await
}

/// A UDP port on 127.0.0.1 where nothing listens (bound, then released).
pub fn dead_udp_port() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
