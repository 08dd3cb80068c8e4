//! Two sessions on 127.0.0.1, configured by the policy's decision for a
//! local peer (fast path, no STUN), connect and exchange datagrams.
//!
//! `cargo test -p scream-ice-tokio --test loopback -- --nocapture` prints
//! the time to connected.

mod common;

use std::time::Duration;

use common::{
    Node, both_connected, both_selected, exchange_credentials, exchange_datagrams, loopback_config,
    ms, pump,
};
use scream_ice_tokio::scream_ice_core::agent::{
    ConnectionState, FailureReason, GatheringState, Role,
};
use scream_ice_tokio::scream_ice_core::net::Cidr;
use scream_ice_tokio::scream_ice_core::time::Duration as CoreDuration;
use scream_ice_tokio::{
    Driver, HostAddresses, HostFilter, Output, PortRange, RemoteCandidateError, SessionEvent,
};
use tokio::time::Instant;

/// Start a controlling and a controlled session, signal, connect.
async fn connected_pair() -> (Node, Node, Duration, Duration) {
    let t0 = Instant::now();
    let mut a = Node::start(loopback_config(Role::Controlling)).await;
    let mut b = Node::start(loopback_config(Role::Controlled)).await;
    let started = t0.elapsed();
    exchange_credentials(&mut a, &mut b).await;
    let t1 = Instant::now();
    assert!(
        pump(&mut a, &mut b, t1, Duration::from_secs(5), both_selected).await,
        "not connected within 5 s: a {:?}, b {:?}",
        a.log,
        b.log
    );
    let connected = a.selected_at.max(b.selected_at).unwrap();
    // The Connected state change follows the Selected event.
    assert!(pump(&mut a, &mut b, t1, Duration::from_secs(5), both_connected).await);
    (a, b, started, connected)
}

#[tokio::test]
async fn two_sessions_connect_and_exchange_100_datagrams_each_way() {
    let (mut a, mut b, started, connected) = connected_pair().await;
    println!(
        "loopback: sessions started in {:.2} ms; connected {:.2} ms after credentials",
        ms(started),
        ms(connected)
    );
    assert!(
        connected < Duration::from_millis(500),
        "connect took {connected:?}"
    );

    // Both selected the same path, in opposite directions.
    let (al, ar) = a.selected_pair().unwrap();
    let (bl, br) = b.selected_pair().unwrap();
    assert_eq!((al, ar), (br, bl));
    assert_eq!(a.driver.local_addresses(), [al]);

    // The events a user sees: the host candidate, gathering complete at
    // once (no STUN for a local peer), connected, selected.
    for n in [&a, &b] {
        let evs: Vec<SessionEvent> = n.log.iter().map(|(_, e)| *e).collect();
        assert!(
            evs.iter().any(
                |e| matches!(e, SessionEvent::LocalCandidate(c) if c.address.ip().is_loopback())
            )
        );
        assert!(evs.contains(&SessionEvent::Gathering(GatheringState::Complete)));
        assert!(evs.contains(&SessionEvent::Connection(ConnectionState::Connected)));
        assert_eq!(n.srflx, 0);
    }

    exchange_datagrams(&mut a, &mut b, 100).await;

    // Close one side: the other's sends keep working at the socket level;
    // the closed side's handle is gone and its port is free again.
    let a_addr = a.driver.local_addresses()[0];
    drop(a);
    std::net::UdpSocket::bind(a_addr).expect("port released after close");
    drop(b);
}

#[tokio::test]
async fn send_before_connected_is_refused() {
    let mut a = Node::start(loopback_config(Role::Controlling)).await;
    assert!(matches!(
        a.send(b"too early").await,
        Err(e) if e.kind() == std::io::ErrorKind::NotConnected
    ));
    // The first events come at once: the host candidate, then gathering.
    let first = a.event().await;
    assert!(
        matches!(first, SessionEvent::LocalCandidate(_)),
        "{first:?}"
    );
}

#[tokio::test]
async fn restart_reconnects_with_new_credentials() {
    let (mut a, mut b, _, _) = connected_pair().await;
    let old = a.driver.local_credentials();
    a.driver.restart();
    b.driver.restart();
    let (new_a, new_b) = (a.driver.local_credentials(), b.driver.local_credentials());
    assert_ne!(old, new_a);
    assert!(a.selected_pair().is_none());
    a.selected_at = None;
    b.selected_at = None;
    exchange_credentials(&mut a, &mut b).await;
    let t = Instant::now();
    assert!(
        pump(&mut a, &mut b, t, Duration::from_secs(5), both_selected).await,
        "not reconnected after restart: a {:?}",
        a.log
    );
    let _ = new_b;
    exchange_datagrams(&mut a, &mut b, 10).await;
}

/// Connect times over 20 fresh pairs (printed; the assertion is loose
/// because this machine is shared).
#[tokio::test]
async fn connect_time_over_20_pairs() {
    let mut times = Vec::new();
    for _ in 0..20 {
        let (a, b, _, connected) = connected_pair().await;
        times.push(connected);
        drop((a, b));
    }
    times.sort();
    println!(
        "loopback connect over 20 pairs: min {:.2} ms, median {:.2} ms, max {:.2} ms",
        ms(times[0]),
        ms(times[10]),
        ms(times[19])
    );
    assert!(times[10] < Duration::from_millis(100), "{times:?}");
}

/// Both families at once: two host sockets per side (127.0.0.1 and ::1),
/// so the driver serves several sockets and pairs form per family.
#[tokio::test]
async fn dual_stack_loopback_sessions_connect() {
    let config = |role| {
        let mut c = loopback_config(role);
        c.hosts = HostAddresses::Explicit(vec![
            "127.0.0.1:0".parse().unwrap(),
            "[::1]:0".parse().unwrap(),
        ]);
        c
    };
    let mut a = Node::start(config(Role::Controlling)).await;
    let mut b = Node::start(config(Role::Controlled)).await;
    assert_eq!(a.driver.local_addresses().len(), 2);
    exchange_credentials(&mut a, &mut b).await;
    let t = Instant::now();
    assert!(pump(&mut a, &mut b, t, Duration::from_secs(5), both_connected).await);
    let (al, ar) = a.selected_pair().unwrap();
    assert_eq!(al.is_ipv4(), ar.is_ipv4());
    println!(
        "dual stack: selected {al} -> {ar} after {:.2} ms",
        ms(t.elapsed())
    );
    exchange_datagrams(&mut a, &mut b, 20).await;
}

/// Discovery (loopback only, through the filter) and a port range.
#[tokio::test]
async fn discovered_loopback_inside_a_port_range() {
    let range = PortRange::new(42_000, 42_999).unwrap();
    let config = |role| {
        let mut c = loopback_config(role);
        let mut f = HostFilter::new();
        f.include_loopback = true;
        f.allow_cidrs = vec![Cidr::parse("127.0.0.0/8").unwrap()];
        c.hosts = HostAddresses::Discover(f.with_callback(|i| i.name == "lo"));
        c.port_range = Some(range);
        c
    };
    let mut a = Node::start(config(Role::Controlling)).await;
    let mut b = Node::start(config(Role::Controlled)).await;
    for n in [&a, &b] {
        let addrs = n.driver.local_addresses();
        assert!(!addrs.is_empty());
        for addr in addrs {
            assert!(addr.ip().is_loopback(), "{addr}");
            assert!((range.min..=range.max).contains(&addr.port()), "{addr}");
        }
    }
    exchange_credentials(&mut a, &mut b).await;
    let t = Instant::now();
    assert!(pump(&mut a, &mut b, t, Duration::from_secs(5), both_connected).await);
    exchange_datagrams(&mut a, &mut b, 10).await;
}

/// Signal `a` and `b` to each other, `a` learning `b` by the host-name
/// candidate `a_line`, and wait until both selected a pair.
async fn connect_by_name(a: &mut Driver, b: &mut Driver, a_line: &str) {
    let (ua, ub) = (a.local_credentials(), b.local_credentials());
    a.set_remote_credentials(&ub.ufrag, &ub.pwd).unwrap();
    b.set_remote_credentials(&ua.ufrag, &ua.pwd).unwrap();
    a.add_remote_candidate_line(a_line)
        .await
        .unwrap_or_else(|e| panic!("{a_line}: {e}"));
    let a_addr = a.local_addresses()[0];
    b.add_remote_candidate_line(&format!(
        "a=candidate:1 1 UDP 2130706431 {} {} typ host",
        a_addr.ip(),
        a_addr.port()
    ))
    .await
    .unwrap();
    let mut selected = (false, false);
    tokio::time::timeout(Duration::from_secs(5), async {
        while selected != (true, true) {
            tokio::select! {
                o = a.next() => if matches!(o, Output::Event(SessionEvent::Selected { .. })) { selected.0 = true },
                o = b.next() => if matches!(o, Output::Event(SessionEvent::Selected { .. })) { selected.1 = true },
            }
        }
    })
    .await
    .expect("connected through the resolved candidate");
}

/// A candidate with a host name is resolved (here `localhost`); one that
/// does not resolve is skipped with an error and the session goes on.
#[tokio::test]
async fn candidate_host_names_are_resolved_or_skipped() {
    let mut ca = loopback_config(Role::Controlling);
    ca.dns_timeout = Duration::from_millis(500);
    let mut a = Driver::start(ca).await.unwrap();
    let mut b = Driver::start(loopback_config(Role::Controlled))
        .await
        .unwrap();
    let bad = a
        .add_remote_candidate_line(
            "candidate:1 1 udp 2130706431 scream-ice-test.invalid 9 typ host",
        )
        .await;
    assert!(
        matches!(bad, Err(RemoteCandidateError::Unresolved { ref name }) if name == "scream-ice-test.invalid"),
        "{bad:?}"
    );
    let b_port = b.local_addresses()[0].port();
    let line = format!("candidate:1 1 udp 2130706431 localhost {b_port} typ host");
    connect_by_name(&mut a, &mut b, &line).await;
    assert_eq!(
        a.session().selected_pair().unwrap().1,
        b.local_addresses()[0]
    );
}

/// A resolver that answers from a fixed table (port from the table).
#[derive(Debug)]
struct Table(Vec<(&'static str, Vec<std::net::SocketAddr>)>);

impl scream_ice_tokio::Resolver for Table {
    fn resolve(&self, name: &str, _port: u16) -> scream_ice_tokio::resolve::Resolution {
        let addrs = self
            .0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        Box::pin(async move { addrs })
    }
}

/// Refuses port 9 (the application's rule for its peer's candidates).
#[derive(Debug)]
struct NotPort9;

impl scream_ice_tokio::AddressFilter for NotPort9 {
    fn allows(&self, a: std::net::SocketAddr) -> bool {
        a.port() != 9
    }
}

/// What a candidate's host name resolves to passes the session's address
/// filter, in the foreground and in the background: the first allowed
/// address is used, a name with none is refused.
#[tokio::test]
async fn resolved_names_pass_the_address_filter() {
    let mut b = Driver::start(loopback_config(Role::Controlled))
        .await
        .unwrap();
    let b_addr = b.local_addresses()[0];
    let refused: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut ca = loopback_config(Role::Controlling);
    ca.resolver = Some(std::sync::Arc::new(Table(vec![
        ("refused.test", vec![refused]),
        ("both.test", vec![refused, b_addr]),
    ])));
    ca.resolved_filter = Some(std::sync::Arc::new(NotPort9));
    let mut a = Driver::start(ca).await.unwrap();
    let bad = a
        .add_remote_candidate_line("candidate:1 1 udp 2130706431 refused.test 9 typ host")
        .await;
    assert!(
        matches!(bad, Err(RemoteCandidateError::Refused { ref name }) if name == "refused.test"),
        "{bad:?}"
    );
    // In the background (as for mDNS names): skipped, nothing added.
    a.resolve_remote_candidate(
        "candidate:2 1 udp 2130706431 refused.test 9 typ host".into(),
        "refused.test",
        9,
    );
    // both.test has an allowed address: the connection uses it.
    let line = format!(
        "candidate:3 1 udp 2130706431 both.test {} typ host",
        b_addr.port()
    );
    connect_by_name(&mut a, &mut b, &line).await;
    let remotes: Vec<_> = a
        .session()
        .agent()
        .remote_candidates()
        .iter()
        .map(|c| c.address)
        .collect();
    assert!(!remotes.contains(&refused), "{remotes:?}");
    assert_eq!(a.session().selected_pair().unwrap().1, b_addr);
}

/// CPU time of this thread (the current-thread runtime runs both drivers
/// here), from /proc.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm field: state is field 3, utime 14 and stime 15.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Consent freshness runs through the driver's timers: a connected pair
/// stays connected (and idle: no busy loop), and when the peer goes away the
/// pair fails with ConsentLost and sending stops.
#[tokio::test]
async fn consent_keeps_the_pair_and_its_loss_fails_it() {
    let config = |role| {
        let mut c = loopback_config(role);
        c.agent.consent_interval = CoreDuration::from_millis(100);
        c.agent.disconnected_after = CoreDuration::from_millis(600);
        c.agent.consent_timeout = CoreDuration::from_millis(1_200);
        c
    };
    let mut a = Node::start(config(Role::Controlling)).await;
    let mut b = Node::start(config(Role::Controlled)).await;
    exchange_credentials(&mut a, &mut b).await;
    let t = Instant::now();
    assert!(pump(&mut a, &mut b, t, Duration::from_secs(5), both_connected).await);

    // 1.5 s with consent checks every ~100 ms: still connected, no busy loop.
    let cpu0 = thread_cpu();
    let idle = Instant::now();
    assert!(
        !pump(
            &mut a,
            &mut b,
            idle,
            Duration::from_millis(1_500),
            |_, _| false
        )
        .await
    );
    if let (Some(c0), Some(c1)) = (cpu0, thread_cpu()) {
        let used = c1.saturating_sub(c0);
        println!("idle connected pair: {:.0} ms CPU in 1.5 s", ms(used));
        assert!(used < Duration::from_millis(500), "busy loop? {used:?} CPU");
    }
    for n in [&a, &b] {
        assert!(
            !n.log.iter().any(|(_, e)| matches!(
                e,
                SessionEvent::Connection(ConnectionState::Disconnected) | SessionEvent::Failed(_)
            )),
            "{:?}",
            n.log
        );
    }
    exchange_datagrams(&mut a, &mut b, 5).await;

    // The peer goes away: Disconnected, then Failed(ConsentLost).
    drop(b);
    let gone = Instant::now();
    let mut seen = Vec::new();
    let failed_at = loop {
        let e = tokio::time::timeout(Duration::from_secs(5), a.event())
            .await
            .expect("consent loss within 5 s");
        seen.push(e);
        if let SessionEvent::Failed(r) = e {
            assert_eq!(r, FailureReason::ConsentLost);
            break gone.elapsed();
        }
    };
    assert!(seen.contains(&SessionEvent::Connection(ConnectionState::Disconnected)));
    println!("consent lost {:.0} ms after the peer closed", ms(failed_at));
    assert!(matches!(
        a.send(b"anyone?").await,
        Err(e) if e.kind() == std::io::ErrorKind::NotConnected
    ));
}
