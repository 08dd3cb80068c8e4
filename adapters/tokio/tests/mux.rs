//! Sessions sharing one UDP socket ([`UdpMux`]): each connects to its own
//! peer through the one port, gets only its own datagrams, follows an ICE
//! restart's new ufrag, gets its own STUN responses when sessions share a
//! server, and nothing from a stranger reaches any of them.

mod common;

use std::time::Duration;

use common::{
    Node, both_selected, decision_for, exchange_credentials, exchange_datagrams, knowledge,
    loopback_config, pump,
};
use scream_ice_tokio::scream_ice_core::agent::{GatheringState, Role};
use scream_ice_tokio::scream_ice_core::policy::StunServer;
use scream_ice_tokio::scream_ice_core::stun::{
    Attribute, Class, Message, MessageBuilder, MessageType, Method, TransactionId,
};
use scream_ice_tokio::scream_ice_core::time::Duration as CoreDuration;
use scream_ice_tokio::{HostAddresses, SessionConfig, SessionEvent, UdpMux};
use tokio::time::Instant;

/// A router-side (controlled) session on `mux`.
async fn on_mux(mux: &UdpMux) -> Node {
    let mut c = loopback_config(Role::Controlled);
    c.mux = Some(mux.clone());
    Node::start(c).await
}

/// Signal and connect `a` (own socket) with `b` (on the mux).
async fn connect(a: &mut Node, b: &mut Node) {
    exchange_credentials(a, b).await;
    let t = Instant::now();
    assert!(
        pump(a, b, t, Duration::from_secs(5), both_selected).await,
        "not connected within 5 s: a {:?}, b {:?}",
        a.log,
        b.log
    );
}

async fn loopback_mux() -> UdpMux {
    UdpMux::bind(&["127.0.0.1:0".parse().unwrap()])
        .await
        .expect("mux bind")
}

#[tokio::test]
async fn ten_sessions_share_one_port_and_get_only_their_own_datagrams() {
    let mux = loopback_mux().await;
    let port = mux.local_addresses()[0];
    let mut pairs = Vec::new();
    for _ in 0..10 {
        let mut speaker = Node::start(loopback_config(Role::Controlling)).await;
        let mut router = on_mux(&mux).await;
        connect(&mut speaker, &mut router).await;
        pairs.push((speaker, router));
    }
    assert_eq!(mux.sessions(), 10);
    for (speaker, router) in &mut pairs {
        assert_eq!(
            router.driver.local_addresses(),
            [port],
            "no socket of its own"
        );
        let (local, remote) = router.selected_pair().unwrap();
        assert_eq!(local, port);
        assert_eq!(remote, speaker.driver.local_addresses()[0]);
        // Each datagram carries its pair in the text: a misrouted one fails
        // the source address check inside.
        exchange_datagrams(speaker, router, 5).await;
    }
    let stats = mux.stats();
    assert_eq!(stats.unrouted, 0, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert!(stats.routed >= 10 * 5, "{stats:?}");
    drop(pairs);
    assert_eq!(mux.sessions(), 0, "dropped sessions leave the table");
}

#[tokio::test]
async fn a_restart_on_the_mux_routes_by_the_new_ufrag() {
    let mux = loopback_mux().await;
    let mut speaker = Node::start(loopback_config(Role::Controlling)).await;
    let mut router = on_mux(&mux).await;
    connect(&mut speaker, &mut router).await;
    let old = router.driver.local_credentials();
    speaker.driver.restart();
    router.driver.restart();
    assert_ne!(router.driver.local_credentials(), old);
    speaker.selected_at = None;
    router.selected_at = None;
    connect(&mut speaker, &mut router).await;
    exchange_datagrams(&mut speaker, &mut router, 5).await;
    assert_eq!(mux.stats().unrouted, 0, "{:?}", mux.stats());
}

#[tokio::test]
async fn strangers_reach_no_session() {
    let mux = loopback_mux().await;
    let port = mux.local_addresses()[0];
    let mut speaker = Node::start(loopback_config(Role::Controlling)).await;
    let mut router = on_mux(&mux).await;
    connect(&mut speaker, &mut router).await;
    let before = mux.stats().unrouted;

    // Media from an address the session never sent to, and a check for a
    // ufrag no session has.
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    stranger.send_to(b"\x80\x60not yours", port).await.unwrap();
    let mut buf = [0u8; 128];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId([7; 12]),
    );
    b.add(&Attribute::Username("nobodyxx:peer"))
        .add_fingerprint();
    let n = b.finish().unwrap();
    stranger.send_to(&buf[..n], port).await.unwrap();

    let got = tokio::time::timeout(Duration::from_millis(300), router.datagram()).await;
    assert!(
        got.is_err(),
        "a stranger's datagram reached the session: {got:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while mux.stats().unrouted < before + 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mux.stats().unrouted, before + 2, "{:?}", mux.stats());
    // The session itself is unaffected.
    exchange_datagrams(&mut speaker, &mut router, 3).await;
}

#[tokio::test]
async fn a_session_uses_only_the_mux_addresses_its_hosts_name() {
    let mux = loopback_mux().await;
    let mut c = loopback_config(Role::Controlled);
    c.mux = Some(mux.clone());
    c.hosts = HostAddresses::Explicit(vec!["127.0.0.2:0".parse().unwrap()]);
    let err = scream_ice_tokio::Driver::start(c).await.unwrap_err();
    assert!(
        matches!(err, scream_ice_tokio::StartError::NoHostCandidates),
        "{err}"
    );
    assert_eq!(mux.sessions(), 0);
}

/// A STUN Binding responder on 127.0.0.1 (the mapped address is the
/// sender's), answering until the test's runtime ends.
async fn stun_responder() -> std::net::SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        let mut out = [0u8; 128];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            let Ok(m) = Message::new_checked(&buf[..n]) else {
                continue;
            };
            let mut b = MessageBuilder::new(
                &mut out,
                MessageType::new(Method::BINDING, Class::SuccessResponse),
                m.transaction_id(),
            );
            b.add(&Attribute::XorMappedAddress(from)).add_fingerprint();
            let len = b.finish().unwrap();
            let _ = socket.send_to(&out[..len], from).await;
        }
    });
    addr
}

/// Five sessions on one shared socket ask one STUN server at once: each
/// gets its own response (routed by transaction ID, not by the server's
/// address, which all five share), so each gathering completes as soon as
/// the server answered rather than at the gather cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_asking_one_stun_server_each_get_their_answer() {
    let mux = loopback_mux().await;
    let server = format!("stun:{}", stun_responder().await);
    let servers = [StunServer {
        url: &server,
        enabled: true,
    }];
    let (policy, d) = decision_for(&servers, None);
    assert!(d.gathers_srflx());
    let cap = Duration::from_secs(3);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let mut c = SessionConfig::for_peer(Role::Controlled, &policy, &knowledge(None));
        c.hosts = HostAddresses::Explicit(vec!["127.0.0.1:0".parse().unwrap()]);
        c.agent.stun_gather_cap = Some(CoreDuration::from_millis(3_000));
        c.mux = Some(mux.clone());
        let mut n = Node::start(c).await;
        tasks.spawn(async move {
            let t0 = Instant::now();
            loop {
                if let SessionEvent::Gathering(GatheringState::Complete) = n.event().await {
                    return t0.elapsed();
                }
            }
        });
    }
    while let Some(t) = tasks.join_next().await {
        let gathered = t.unwrap();
        assert!(
            gathered < cap / 3,
            "gathering took {gathered:?}: a Binding response went to another session"
        );
    }
    assert_eq!(mux.stats().unrouted, 0, "{:?}", mux.stats());
}
