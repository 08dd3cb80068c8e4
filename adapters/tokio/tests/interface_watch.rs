//! `SessionConfig::interface_poll`: a session whose host address goes away
//! mid-session binds the new address, restarts ICE and is connected again;
//! and `UdpMux::rescan`: the shared sockets follow the addresses.
//!
//! The test runs itself again inside a fresh network namespace (`unshare
//! --net`, root), where it owns a veth interface `d0` and may add and
//! delete addresses: session A discovers its addresses on `d0`, session B
//! has a fixed one on `d1`, they connect, then A's address is replaced.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use scream_ice_tokio::scream_ice_core::agent::Role;
use scream_ice_tokio::{
    Driver, HostAddresses, HostFilter, MuxChange, Output, SessionConfig, SessionEvent, UdpMux,
};

const INNER: &str = "SCREAM_ICE_INTERFACE_WATCH_INNER";

fn ip(args: &str) {
    let out = Command::new("ip")
        .args(args.split(' '))
        .output()
        .expect("ip");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `inner` inside a fresh network namespace: the test runs itself
/// again under `unshare --net` (root) with [`INNER`] set, and the outer
/// run asserts the inner one passed and printed `marker`.
fn in_namespace<F: std::future::Future<Output = ()>>(test: &str, marker: &str, inner: F) {
    if std::env::var_os(INNER).is_some() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(inner);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .arg("--net")
        .arg(&exe)
        .args(["--exact", test, "--nocapture"])
        .env(INNER, "1")
        .output();
    let skip = std::env::var("SCREAM_ICE_SKIP_NETNS").is_ok_and(|v| v == "1");
    // The marker `.ci/run` counts as a skip, written past the harness's
    // capture (as scream_ice_tests::report_skip does).
    let report_skip = |why: String| {
        use std::io::Write;
        let _ = writeln!(std::io::stdout().lock(), "\nSCREAM_ICE_SKIPPED: {why}");
    };
    let out = match out {
        Ok(o) => o,
        Err(e) if skip => {
            report_skip(format!("cannot run unshare: {e}"));
            return;
        }
        Err(e) => panic!("cannot run unshare (set SCREAM_ICE_SKIP_NETNS=1 to skip): {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && skip && stderr.contains("unshare failed") {
        report_skip(format!("no network namespace: {}", stderr.trim()));
        return;
    }
    print!("{stdout}");
    assert!(
        out.status.success(),
        "inside the namespace:\n{stdout}\n{stderr}"
    );
    // The inner run really ran (and was not filtered out).
    assert!(stdout.contains(marker), "{stdout}");
}

#[test]
fn a_session_follows_its_address_changing() {
    in_namespace(
        "a_session_follows_its_address_changing",
        "interface watch:",
        inside(),
    );
}

/// `UdpMux::rescan`: an address that appears after the mux was bound gets
/// a shared socket, and a session started after uses it and connects; an
/// address that goes away has its socket dropped.
#[test]
fn a_shared_port_follows_the_addresses() {
    in_namespace(
        "a_shared_port_follows_the_addresses",
        "mux rescan:",
        mux_inside(),
    );
}

/// Drive both drivers until `done` says so or `limit` passes; every event
/// goes to `on_a` / `on_b`.
async fn drive(
    a: &mut Driver,
    b: &mut Driver,
    limit: Duration,
    mut on: impl FnMut(bool, SessionEvent) -> bool,
) -> bool {
    tokio::time::timeout(limit, async {
        loop {
            let (is_b, o) = tokio::select! {
                o = a.next() => (false, o),
                o = b.next() => (true, o),
            };
            if let Output::Event(e) = o
                && on(is_b, e)
            {
                return;
            }
        }
    })
    .await
    .is_ok()
}

/// The local address of the pair `a` selects within 5 s, if it does.
async fn selected_by_a(a: &mut Driver, b: &mut Driver) -> Option<SocketAddr> {
    let mut on = None;
    drive(a, b, Duration::from_secs(5), |is_b, e| {
        if let SessionEvent::Selected { local, .. } = e
            && !is_b
        {
            on = Some(local);
        }
        on.is_some()
    })
    .await;
    on
}

/// The filter that discovers only `d0`'s addresses.
fn d0() -> HostFilter {
    let mut filter = HostFilter::new();
    filter.allow_interfaces = vec!["d0".into()];
    filter
}

/// Start `a` from `ca` and a controlled `b` on the fixed address `b_at`,
/// drop their start-up outputs, and signal each to the other.
async fn start_and_signal(ca: SessionConfig, b_at: &str) -> (Driver, Driver) {
    let mut cb = SessionConfig::new(Role::Controlled);
    cb.hosts = HostAddresses::Explicit(vec![b_at.parse().unwrap()]);
    let mut a = Driver::start(ca).await.unwrap();
    let mut b = Driver::start(cb).await.unwrap();
    while a.try_next().is_some() {}
    while b.try_next().is_some() {}
    signal(&mut a, &mut b);
    (a, b)
}

/// Each side's credentials and candidates to the other.
fn signal(a: &mut Driver, b: &mut Driver) {
    let (ca, cb) = (a.local_credentials(), b.local_credentials());
    a.set_remote_credentials(&cb.ufrag, &cb.pwd).unwrap();
    b.set_remote_credentials(&ca.ufrag, &ca.pwd).unwrap();
    let of_a: Vec<_> = a.session().signalled_candidates().copied().collect();
    let of_b: Vec<_> = b.session().signalled_candidates().copied().collect();
    for c in of_a {
        b.add_remote_candidate(c).unwrap();
    }
    for c in of_b {
        a.add_remote_candidate(c).unwrap();
    }
}

/// Loopback up, and a veth pair `d0`/`d1`, both up.
fn veth() {
    ip("link set lo up");
    ip("link add d0 type veth peer name d1");
    ip("link set d1 up");
    ip("link set d0 up");
}

async fn inside() {
    veth();
    // Three subnets: deleting an interface's primary address also deletes
    // the secondaries of its subnet.
    ip("addr add 10.77.0.1/24 dev d0");
    ip("addr add 10.77.1.9/24 dev d1");

    let mut ca = SessionConfig::new(Role::Controlling);
    ca.hosts = HostAddresses::Discover(d0());
    ca.interface_poll = Some(Duration::from_millis(200));
    let (mut a, mut b) = start_and_signal(ca, "10.77.1.9:0").await;
    assert_eq!(a.local_addresses().len(), 1);
    assert_eq!(a.local_addresses()[0].ip().to_string(), "10.77.0.1");
    let mut selected = (false, false);
    assert!(
        drive(&mut a, &mut b, Duration::from_secs(5), |is_b, e| {
            if matches!(e, SessionEvent::Selected { .. }) {
                if is_b {
                    selected.1 = true
                } else {
                    selected.0 = true
                }
            }
            selected == (true, true)
        })
        .await,
        "first connection"
    );

    // The address goes away and another comes.
    ip("addr add 10.77.2.3/24 dev d0");
    ip("addr del 10.77.0.1/24 dev d0");
    let changed = Instant::now();
    let mut new_candidate = None;
    let mut restarted = false;
    assert!(
        drive(&mut a, &mut b, Duration::from_secs(5), |is_b, e| {
            match e {
                SessionEvent::LocalCandidate(c) if !is_b => new_candidate = Some(c.address),
                SessionEvent::Restarted if !is_b => restarted = true,
                _ => {}
            }
            restarted
        })
        .await,
        "no restart after the address went away"
    );
    let noticed = changed.elapsed();
    let local: Vec<SocketAddr> = a.local_addresses();
    assert_eq!(local.len(), 1, "{local:?}");
    assert_eq!(local[0].ip().to_string(), "10.77.2.3");
    // The peer restarts too, both signal again.
    b.restart();
    signal(&mut a, &mut b);
    let on = selected_by_a(&mut a, &mut b).await;
    assert!(on.is_some(), "not connected again");
    let again = changed.elapsed();
    assert_eq!(on, Some(local[0]));
    println!(
        "interface watch: address change noticed after {noticed:?} (poll 200 ms), new candidate {new_candidate:?}, selected again after {again:?}"
    );
}

async fn mux_inside() {
    veth();
    ip("addr add 10.78.0.1/24 dev d0");
    ip("addr add 10.78.1.9/24 dev d1");
    let mux = UdpMux::bind_discovered(&d0(), 0).await.unwrap();
    let first = mux.local_addresses();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].ip().to_string(), "10.78.0.1");
    assert_eq!(mux.rescan().await.unwrap(), MuxChange::default());

    ip("addr add 10.78.2.3/24 dev d0");
    let change = mux.rescan().await.unwrap();
    assert_eq!(change.removed, Vec::<SocketAddr>::new());
    assert_eq!(change.added.len(), 1, "{change:?}");
    let added = change.added[0];
    assert_eq!(added.ip().to_string(), "10.78.2.3");
    assert_eq!(mux.local_addresses().len(), 2);

    let mut ca = SessionConfig::new(Role::Controlling);
    ca.hosts = HostAddresses::Explicit(vec![SocketAddr::new(added.ip(), 0)]);
    ca.mux = Some(mux.clone());
    let (mut a, mut b) = start_and_signal(ca, "10.78.1.9:0").await;
    assert_eq!(a.local_addresses(), vec![added]);
    let started = Instant::now();
    let on = selected_by_a(&mut a, &mut b).await;
    assert!(on.is_some(), "no connection over the rescanned address");
    let connected = started.elapsed();
    assert_eq!(on, Some(added));
    assert!(mux.stats().routed > 0, "{:?}", mux.stats());

    ip("addr del 10.78.0.1/24 dev d0");
    let change = mux.rescan().await.unwrap();
    assert_eq!(change.removed, first);
    assert!(change.added.is_empty(), "{change:?}");
    assert_eq!(mux.local_addresses(), vec![added]);

    // The same on its own: follow_interfaces rescans every 50 ms.
    mux.follow_interfaces(Duration::from_millis(50));
    ip("addr add 10.78.3.4/24 dev d0");
    let appeared = Instant::now();
    let bound = loop {
        let now: Vec<SocketAddr> = mux.local_addresses();
        if let Some(a) = now.iter().find(|a| a.ip().to_string() == "10.78.3.4") {
            break *a;
        }
        assert!(
            appeared.elapsed() < Duration::from_secs(2),
            "follow_interfaces did not bind 10.78.3.4: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let followed = appeared.elapsed();
    println!(
        "mux rescan: bound {added} after the start, a session connected over it in {connected:?}, dropped {} when its address went; follow_interfaces (50 ms) bound {bound} after {followed:?}",
        first[0]
    );
}
