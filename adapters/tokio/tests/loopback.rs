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
use scream_ice_tokio::scream_ice_core::agent::{ConnectionState, GatheringState, Role};
use scream_ice_tokio::{SendError, SessionEvent};
use tokio::time::Instant;

/// Start a controlling and a controlled session, signal, connect.
async fn connected_pair() -> (Node, Node, Duration, Duration) {
    let t0 = Instant::now();
    let mut a = Node::start(loopback_config(Role::Controlling)).await;
    let mut b = Node::start(loopback_config(Role::Controlled)).await;
    let started = t0.elapsed();
    exchange_credentials(&a, &b).await;
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
    let (al, ar) = a.session.selected_pair().unwrap();
    let (bl, br) = b.session.selected_pair().unwrap();
    assert_eq!((al, ar), (br, bl));
    assert_eq!(a.session.local_addresses(), &[al]);

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
    let a_addr = a.session.local_addresses()[0];
    a.session.close().await.unwrap();
    std::net::UdpSocket::bind(a_addr).expect("port released after close");
    b.session.close().await.unwrap();
}

#[tokio::test]
async fn send_before_connected_is_refused() {
    let mut a = Node::start(loopback_config(Role::Controlling)).await;
    assert!(matches!(
        a.session.send(b"too early").await,
        Err(SendError::NotConnected)
    ));
    // The first events come at once: the host candidate, then gathering.
    let first = a.events.recv().await.unwrap();
    assert!(
        matches!(first, SessionEvent::LocalCandidate(_)),
        "{first:?}"
    );
}

#[tokio::test]
async fn restart_reconnects_with_new_credentials() {
    let (mut a, mut b, _, _) = connected_pair().await;
    let old = a.session.local_credentials().clone();
    let new_a = a.session.restart().await.unwrap();
    let new_b = b.session.restart().await.unwrap();
    assert_ne!(old, new_a);
    assert_eq!(a.session.local_credentials(), &new_a);
    assert!(a.session.selected_pair().is_none());
    a.selected_at = None;
    b.selected_at = None;
    exchange_credentials(&a, &b).await;
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
