//! Admission of speaker sessions and where the router may send, on real
//! loopback sockets behind `http_guard::serve`: a flood of POSTs from one
//! client gets at most its cap, a silent third party named as a candidate
//! gets at most the documented check budgets (per session and router-wide),
//! host names are refused with
//! 400, and a speaker token is enforced. (The descriptor count of a
//! concurrent burst is in `admission_fds.rs`, alone in its process.)

mod support;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scream_ice_host::limits::HttpLimits;
use support::{config, fragment, loopback_settings, post, server_with, status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_posts_from_one_client_gets_at_most_its_cap() {
    let (addr, state) = server_with(
        config("server:\n  stun_listen: off\n"),
        loopback_settings(|_| {}),
        HttpLimits::default(),
    )
    .await;
    let mut counts: HashMap<u16, usize> = HashMap::new();
    for i in 0..200 {
        let r = post([127, 0, 0, 5], addr, &fragment(i, &[]), "").await;
        let s = status(&r);
        if s == 429 {
            assert!(r.to_ascii_lowercase().contains("\r\nretry-after: "), "{r}");
        }
        *counts.entry(s).or_default() += 1;
    }
    // The default per-client cap is 4; everything else is 429 (never 503:
    // the router as a whole is not full).
    assert_eq!(counts.get(&201), Some(&4), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&196), "{counts:?}");
    assert_eq!(state.sessions().len(), 4);
    // Another client still gets a session.
    let r = post([127, 0, 0, 6], addr, &fragment(999, &[]), "").await;
    assert_eq!(status(&r), 201, "{r}");
}

/// `n` silent UDP ports on loopback (a "third party" that never answers),
/// as candidate lines, and the threads that count what each source sends
/// them for `listen`.
type Counts = Arc<std::sync::Mutex<HashMap<SocketAddr, usize>>>;

fn silent_ports(
    n: usize,
    listen: Duration,
) -> (Vec<String>, Counts, Vec<std::thread::JoinHandle<()>>) {
    let silent: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let candidates: Vec<String> = silent
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "candidate:{i} 1 udp 2130706431 127.0.0.1 {} typ host",
                s.local_addr().unwrap().port()
            )
        })
        .collect();
    let received: Counts = Arc::default();
    let end = Instant::now() + listen;
    let readers = silent
        .into_iter()
        .map(|s| {
            let received = received.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut buf = [0u8; 1500];
                while Instant::now() < end {
                    if let Ok((_, from)) = s.recv_from(&mut buf) {
                        *received.lock().unwrap().entry(from).or_default() += 1;
                    }
                }
            })
        })
        .collect();
    (candidates, received, readers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_third_party_gets_at_most_the_check_budget() {
    let (candidates, received, readers) = silent_ports(12, Duration::from_secs(14));
    let (addr, _state) = server_with(
        config("server:\n  stun_listen: off\n"),
        loopback_settings(|s| s.connect_timeout = Duration::from_secs(12)),
        HttpLimits::default(),
    )
    .await;
    // The client takes every session it may (4) and names the silent
    // ports in each; the fifth POST is refused.
    for i in 0..5 {
        let r = post([127, 0, 0, 7], addr, &fragment(i, &candidates), "").await;
        assert_eq!(status(&r), if i < 4 { 201 } else { 429 }, "{r}");
    }
    for r in readers {
        r.join().unwrap();
    }
    let received = received.lock().unwrap();
    let total: usize = received.values().sum();
    // Each session has one host socket, so one source per session.
    assert_eq!(received.len(), 4, "{received:?}");
    for (from, n) in received.iter() {
        assert!(
            *n <= 100,
            "{from} sent {n} checks to the silent ports (budget 100)"
        );
    }
    assert!(total <= 400, "{total} checks in all (4 sessions x 100)");
    println!("silent third party: {total} checks from 4 sessions: {received:?}");
}

/// The router-wide budget: 8 clients with 4 sessions each could send
/// 32 x 100 checks to the silent ports by their per-session budgets; the
/// router's bucket (here 20/s, burst 100) lets at most `100 + 20 T` through
/// in `T` seconds, and what it holds back is counted in the metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_wide_check_budget_bounds_all_sessions_together() {
    let t0 = Instant::now();
    let (addr, state) = server_with(
        config(
            "server:\n  stun_listen: off\nlimits:\n  sessions:\n    unanswered_check_rate:\n      per_second: 20\n      burst: 100\n",
        ),
        loopback_settings(|s| s.connect_timeout = Duration::from_secs(12)),
        HttpLimits::default(),
    )
    .await;
    let (candidates, received, readers) = silent_ports(12, Duration::from_secs(14));
    for client in 0..8u8 {
        for i in 0..4 {
            let n = usize::from(client) * 4 + i;
            let r = post(
                [127, 0, 1, 10 + client],
                addr,
                &fragment(n, &candidates),
                "",
            )
            .await;
            assert_eq!(status(&r), 201, "{r}");
        }
    }
    for r in readers {
        r.join().unwrap();
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let received = received.lock().unwrap();
    let total: usize = received.values().sum();
    let held = state.hub().metrics.checks_held().get();
    let bound = 100.0 + 20.0 * elapsed;
    println!(
        "router-wide budget: {total} checks from {} sessions in {elapsed:.1} s (bound {bound:.0}), {held} held back",
        received.len()
    );
    assert!((total as f64) <= bound, "{total} checks > {bound:.0}");
    // The bucket was what bounded them: its burst was spent and more
    // checks were asked for than it let through.
    assert!(total >= 100, "{total}");
    assert!(held > total as u64, "held {held}, sent {total}");
    // A held check still counts against its session's own budget.
    assert!(total as u64 + held <= 32 * 100, "{total} + {held}");
}

/// Answers `.local` names from a table filled in once the test knows the
/// addresses.
#[derive(Debug, Default)]
struct Table(std::sync::Mutex<Vec<(String, SocketAddr)>>);

impl scream_ice_tokio::Resolver for Table {
    fn resolve(&self, name: &str, _port: u16) -> scream_ice_tokio::resolve::Resolution {
        let a: Vec<SocketAddr> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .collect();
        Box::pin(async move { a })
    }
}

/// With `mdns_names` on, what a `.local` name resolves to is checked like
/// a literal address: a name that resolves to the router's own HTTP port
/// gets no check, one that resolves to an address the client could own
/// does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_local_names_are_checked_like_addresses() {
    let table = Arc::new(Table::default());
    // A UDP socket on the port the config names as the router's HTTP
    // port (the filter refuses the router's own ports), and one on a port
    // the loopback client could own.
    let router_port = UdpSocket::bind("127.0.0.1:0").unwrap();
    let own = router_port.local_addr().unwrap();
    let allowed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (addr, _state) = server_with(
        config(&format!(
            "server:\n  http_listen: \"{own}\"\n  stun_listen: off\nlimits:\n  sessions:\n    mdns_names: true\n"
        )),
        loopback_settings(|s| s.resolver = Some(table.clone())),
        HttpLimits::default(),
    )
    .await;
    *table.0.lock().unwrap() = vec![
        ("aaaaaaaa-0000-4000-8000-000000000001.local".into(), own),
        (
            "aaaaaaaa-0000-4000-8000-000000000002.local".into(),
            allowed.local_addr().unwrap(),
        ),
    ];
    let candidates = [
        format!(
            "candidate:1 1 udp 2130706431 aaaaaaaa-0000-4000-8000-000000000001.local {} typ host",
            own.port()
        ),
        format!(
            "candidate:2 1 udp 2130706431 aaaaaaaa-0000-4000-8000-000000000002.local {} typ host",
            allowed.local_addr().unwrap().port()
        ),
    ];
    let r = post([127, 0, 0, 9], addr, &fragment(1, &candidates), "").await;
    assert_eq!(status(&r), 201, "{r}");
    let (to_router_port, to_allowed) = (count_for(router_port, 3), count_for(allowed, 3));
    let (to_router_port, to_allowed) = (to_router_port.join().unwrap(), to_allowed.join().unwrap());
    println!(
        "resolved names: {to_allowed} checks to the allowed address, {to_router_port} to the router's port"
    );
    assert_eq!(to_router_port, 0);
    assert!(to_allowed > 0);
}

/// The router's HTTP port as bound (the config says port 0) is one of its
/// own ports: a candidate naming it gets no check, one next to it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_port_of_a_port_0_listener_is_protected_too() {
    let (addr, _state) = server_with(
        config("server:\n  http_listen: \"127.0.0.1:0\"\n  stun_listen: off\n"),
        loopback_settings(|_| {}),
        HttpLimits::default(),
    )
    .await;
    // UDP on the number of the TCP port the HTTP server got.
    let router_port = UdpSocket::bind(addr).unwrap();
    let allowed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let candidates = [
        format!(
            "candidate:1 1 udp 2130706431 127.0.0.1 {} typ host",
            addr.port()
        ),
        format!(
            "candidate:2 1 udp 2130706431 127.0.0.1 {} typ host",
            allowed.local_addr().unwrap().port()
        ),
    ];
    let r = post([127, 0, 0, 9], addr, &fragment(1, &candidates), "").await;
    assert_eq!(status(&r), 201, "{r}");
    let (to_router_port, to_allowed) = (count_for(router_port, 2), count_for(allowed, 2));
    let (to_router_port, to_allowed) = (to_router_port.join().unwrap(), to_allowed.join().unwrap());
    assert_eq!(
        to_router_port, 0,
        "checks sent to the router's own HTTP port"
    );
    assert!(to_allowed > 0);
}

/// Datagrams `s` receives in the next `seconds`, counted on a thread.
fn count_for(s: UdpSocket, seconds: u64) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let end = Instant::now() + Duration::from_secs(seconds);
        let mut n = 0;
        let mut buf = [0u8; 1500];
        while Instant::now() < end {
            if s.recv_from(&mut buf).is_ok() {
                n += 1;
            }
        }
        n
    })
}

#[tokio::test]
async fn host_names_are_refused_with_400() {
    let (addr, state) = server_with(
        config("server:\n  stun_listen: off\n"),
        loopback_settings(|_| {}),
        HttpLimits::default(),
    )
    .await;
    for name in ["victim.example.com", "speaker.local"] {
        let c = format!("candidate:1 1 udp 2130706431 {name} 5000 typ host");
        let r = post([127, 0, 0, 8], addr, &fragment(1, &[c]), "").await;
        assert_eq!(status(&r), 400, "{name}: {r}");
    }
    assert_eq!(state.sessions().len(), 0);
}

#[tokio::test]
async fn a_configured_speaker_token_is_required() {
    let (addr, _state) = server_with(
        config(
            "server:\n  stun_listen: off\nlimits:\n  sessions:\n    speaker_token: s3cret-token\n",
        ),
        loopback_settings(|_| {}),
        HttpLimits::default(),
    )
    .await;
    let r = post([127, 0, 0, 9], addr, &fragment(1, &[]), "").await;
    assert_eq!(status(&r), 401, "{r}");
    let r = post(
        [127, 0, 0, 9],
        addr,
        &fragment(2, &[]),
        "Authorization: Bearer wrong\r\n",
    )
    .await;
    assert_eq!(status(&r), 401, "{r}");
    let r = post(
        [127, 0, 0, 9],
        addr,
        &fragment(3, &[]),
        "Authorization: Bearer s3cret-token\r\n",
    )
    .await;
    assert_eq!(status(&r), 201, "{r}");
}
