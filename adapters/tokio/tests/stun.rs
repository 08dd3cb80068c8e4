//! srflx gathering against a real STUN server (coturn, started here) and
//! against an address where nothing listens.
//!
//! `cargo test -p scream-ice-tokio --test stun -- --nocapture` prints the
//! times. The coturn test needs the `turnserver` binary (Debian package
//! `coturn`); without it the test fails, unless `SCREAM_ICE_SKIP_PEERS=1`.

mod common;

use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    Node, both_selected, dead_udp_port, decision_for, exchange_credentials, exchange_datagrams,
    find_program, knowledge, missing_peer, ms, pump,
};
use scream_ice_tokio::scream_ice_core::agent::{GatheringState, Role};
use scream_ice_tokio::scream_ice_core::candidate::CandidateKind;
use scream_ice_tokio::scream_ice_core::policy::{NetworkType, StunServer};
use scream_ice_tokio::scream_ice_core::time::Duration as CoreDuration;
use scream_ice_tokio::{HostAddresses, SessionConfig, SessionEvent};
use tokio::time::Instant;

/// A coturn `turnserver` on 127.0.0.1 in STUN-only mode, killed on drop.
struct Coturn {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Coturn {
    /// Start coturn on a free port and wait until it answers a Binding
    /// request. `None` if the binary is missing.
    fn start() -> Option<Coturn> {
        let bin = find_program("turnserver")?;
        for attempt in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "scream-ice-coturn-{}-{port}-{attempt}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let conf = dir.join("turnserver.conf");
            let mut f = std::fs::File::create(&conf).unwrap();
            write!(
                f,
                "listening-ip=127.0.0.1\nlistening-port={port}\nrelay-ip=127.0.0.1\n\
                 stun-only\nno-auth\nno-tls\nno-dtls\nno-cli\nno-tcp\n\
                 log-file={log}\npidfile={pid}\nuserdb={db}\n",
                log = dir.join("turnserver.log").display(),
                pid = dir.join("turnserver.pid").display(),
                db = dir.join("turndb").display(),
            )
            .unwrap();
            let child = Command::new(&bin)
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn turnserver");
            let mut c = Coturn {
                child,
                dir,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            };
            if c.wait_ready(Duration::from_secs(5)) {
                return Some(c);
            }
            eprintln!("coturn did not answer on port {port}; retrying");
            c.stop();
        }
        panic!(
            "coturn never came up (see the logs under {:?})",
            std::env::temp_dir()
        );
    }

    /// Send raw Binding requests until one is answered.
    fn wait_ready(&mut self, limit: Duration) -> bool {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let t = std::time::Instant::now();
        let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        req.extend_from_slice(b"scream-ready");
        let mut buf = [0u8; 512];
        while t.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let _ = s.send_to(&req, self.addr);
            if let Ok((n, _)) = s.recv_from(&mut buf)
                && n >= 20
                && buf[..2] == [0x01, 0x01]
                && buf[8..20] == req[8..20]
            {
                return true;
            }
        }
        false
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port free for UDP on 127.0.0.1 (bound, then released).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait for `Gathering(Complete)`; returns the time since `t0` and the
/// srflx candidates seen.
async fn wait_gathered(n: &mut Node, t0: Instant, limit: Duration) -> (Duration, usize) {
    let mut srflx = 0;
    loop {
        let e = tokio::time::timeout_at(t0 + limit, n.event())
            .await
            .expect("gathering did not complete in time");
        match e {
            SessionEvent::LocalCandidate(c) if c.kind == CandidateKind::ServerReflexive => {
                srflx += 1
            }
            SessionEvent::Gathering(GatheringState::Complete) => return (t0.elapsed(), srflx),
            _ => {}
        }
    }
}

#[tokio::test]
async fn srflx_gathering_against_coturn_completes_quickly() {
    let Some(coturn) = Coturn::start() else {
        missing_peer(
            "coturn's `turnserver` binary not found: install it with \
             `apt-get update && apt-get install -y coturn`",
        );
        return;
    };
    // Once with an IP literal, once with a host name the session asks its
    // adapter to resolve (`localhost`, from the hosts file).
    let urls = [
        format!("stun:{}", coturn.addr),
        format!("stun:localhost:{}", coturn.addr.port()),
    ];
    for (i, url) in urls.iter().enumerate() {
        let servers = [StunServer { url, enabled: true }];
        // Nothing known about the peer: the policy gathers srflx from coturn.
        let (policy, d) = decision_for(&servers, None);
        assert!(d.gathers_srflx());
        let mut c = SessionConfig::for_peer(Role::Controlling, &policy, &knowledge(None));
        c.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse().unwrap()]);
        let spec = (i == 1).then_some(());
        // A long cap: completion well before it can only mean that the
        // Binding transaction completed (7 unanswered requests take longer
        // than the cap too).
        let cap = Duration::from_secs(3);
        c.agent.stun_gather_cap = Some(CoreDuration::from_millis(3_000));
        let t0 = Instant::now();
        let mut n = Node::start(c).await;
        let (gathered, srflx) = wait_gathered(&mut n, t0, Duration::from_secs(10)).await;
        println!(
            "coturn ({}): gathering complete {:.2} ms after start, {srflx} srflx \
             (on loopback the mapped address is the base, so none is expected)",
            if spec.is_some() {
                "host name"
            } else {
                "IP literal"
            },
            ms(gathered)
        );
        assert!(
            gathered < cap / 3,
            "gathering took {gathered:?}: the transaction did not complete"
        );
        assert_eq!(srflx, 0);
        drop(n);
    }
    drop(coturn);
}

#[tokio::test]
async fn unreachable_stun_server_never_delays_the_host_connection() {
    let dead = dead_udp_port();
    let url = format!("stun:{dead}");
    let servers = [StunServer {
        url: &url,
        enabled: true,
    }];
    // Nothing known about the peer: host candidates plus capped STUN.
    let (policy, d) = decision_for(&servers, None);
    assert_eq!(d.network, NetworkType::Unknown);
    assert!(d.gathers_srflx());
    let cap: Duration = d.stun_gather_cap.expect("a cap").into();

    let config = |role| {
        let mut c = SessionConfig::for_peer(role, &policy, &knowledge(None));
        c.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse().unwrap()]);
        // Loopback candidates are only offered to a loopback peer; this
        // peer is "unknown" on purpose, so offer them anyway.
        c.offer_filter = false;
        c
    };
    let t0 = Instant::now();
    let mut a = Node::start(config(Role::Controlling)).await;
    let mut b = Node::start(config(Role::Controlled)).await;
    exchange_credentials(&mut a, &mut b).await;
    assert!(
        pump(&mut a, &mut b, t0, Duration::from_secs(5), both_selected).await,
        "not connected: {:?}",
        a.log
    );
    let connected = a.selected_at.max(b.selected_at).unwrap();
    assert!(
        a.gathered_at.is_none() && b.gathered_at.is_none(),
        "gathering finished before the connection: {:?} / {:?}",
        a.gathered_at,
        b.gathered_at
    );
    assert!(
        pump(&mut a, &mut b, t0, Duration::from_secs(5), |a, b| {
            a.gathering_complete() && b.gathering_complete()
        })
        .await
    );
    let gathered = a.gathered_at.max(b.gathered_at).unwrap();
    println!(
        "dead STUN server: connected {:.2} ms after start, gathering complete {:.2} ms (cap {:?})",
        ms(connected),
        ms(gathered),
        cap
    );
    assert!(connected < Duration::from_millis(250), "{connected:?}");
    assert!(
        gathered >= cap,
        "gathering ended before the cap: {gathered:?}"
    );
    assert!(
        gathered < cap + Duration::from_millis(500),
        "gathering overran the cap: {gathered:?}"
    );
    exchange_datagrams(&mut a, &mut b, 20).await;
}
