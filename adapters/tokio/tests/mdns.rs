//! mDNS candidates (the `mdns` feature): session A hides its private host
//! address behind a `.local` name, session B resolves it over mDNS and
//! connects; a name that does not resolve skips that candidate only.
//!
//! Multicast must not leave the machine, and the default namespace's
//! loopback has no multicast, so each test re-runs itself (this test
//! binary, `--exact`) inside a network namespace it creates and removes:
//! a veth pair `va` 10.78.0.1/24 and `vb` 10.78.0.2/24 (private addresses,
//! so they are obfuscated), one mDNS daemon on each end. Needs root and
//! `ip` (iproute2); `SCREAM_ICE_SKIP_NETNS=1` skips instead of failing when
//! namespaces cannot be created.
//!
//! `cargo test -p scream-ice-tokio --features mdns --test mdns -- --nocapture`

#![cfg(feature = "mdns")]

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use scream_ice_tokio::mdns::is_uuid_mdns_name;
use scream_ice_tokio::mdns_sd::{HostnameResolutionEvent, IfKind, ServiceDaemon};
use scream_ice_tokio::scream_ice_core::agent::Role;
use scream_ice_tokio::scream_ice_core::candidate::CandidateKind;
use scream_ice_tokio::scream_ice_core::time::Duration as CoreDuration;
use scream_ice_tokio::{
    Driver, HostAddresses, MdnsDaemon, MdnsMode, Output, SessionConfig, SessionEvent,
};
use tokio::time::Instant;

const CHILD_ENV: &str = "SCREAM_ICE_MDNS_NETNS";
const A_IP: &str = "10.78.0.1";
const B_IP: &str = "10.78.0.2";

/// Run `ip` with `args`; its stderr in the error.
fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespace; removed on drop (also on panic).
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["netns", "del", &self.0]);
    }
}

fn netns(test: &str) -> Result<Netns, String> {
    let name = format!("sice-mdns-{}-{}", std::process::id(), &test[..6]);
    let _ = run(&["netns", "del", &name]);
    run(&["netns", "add", &name])?;
    let ns = Netns(name);
    let n = ns.0.as_str();
    run(&["-n", n, "link", "set", "lo", "up"])?;
    run(&[
        "-n", n, "link", "add", "va", "type", "veth", "peer", "name", "vb",
    ])?;
    run(&["-n", n, "addr", "add", &format!("{A_IP}/24"), "dev", "va"])?;
    run(&["-n", n, "addr", "add", &format!("{B_IP}/24"), "dev", "vb"])?;
    run(&["-n", n, "link", "set", "va", "up"])?;
    run(&["-n", n, "link", "set", "vb", "up"])?;
    // Both ends are in this namespace, so a packet arriving on one carries
    // a source address local to the namespace: accept it (no "martian").
    for dev in ["all", "default", "va", "vb"] {
        for (key, v) in [("accept_local", "1"), ("rp_filter", "0")] {
            let k = format!("net.ipv4.conf.{dev}.{key}={v}");
            run(&["netns", "exec", n, "sysctl", "-qw", &k])?;
        }
    }
    Ok(ns)
}

/// Inside the namespace: run `body`. Outside: create the namespace and run
/// this test there.
fn in_netns<F: std::future::Future<Output = ()>>(test: &str, body: impl FnOnce() -> F) {
    if std::env::var_os(CHILD_ENV).is_some() {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_test_writer()
            .try_init();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(body());
        return;
    }
    let ns = match netns(test) {
        Ok(ns) => ns,
        Err(e) if std::env::var("SCREAM_ICE_SKIP_NETNS").is_ok_and(|v| v == "1") => {
            // Past the output capture: `.ci/run` counts this line as skipped.
            use std::io::Write;
            let _ = writeln!(
                std::io::stdout().lock(),
                "\nSCREAM_ICE_SKIPPED: cannot create a network namespace: {e}"
            );
            return;
        }
        Err(e) => panic!(
            "cannot create a network namespace (needs root and iproute2; \
             SCREAM_ICE_SKIP_NETNS=1 skips): {e}"
        ),
    };
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{test} failed inside {}", ns.0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{test} did not run inside {}",
        ns.0
    );
}

/// An mDNS daemon on one interface only.
fn daemon_on(interface: &str) -> MdnsDaemon {
    let d = ServiceDaemon::new().unwrap();
    d.disable_interface(IfKind::All).unwrap();
    d.enable_interface(interface).unwrap();
    MdnsDaemon::from_daemon(d)
}

fn config(role: Role, ip: &str, mdns: MdnsMode, daemon: MdnsDaemon) -> SessionConfig {
    let mut c = SessionConfig::new(role);
    c.hosts = HostAddresses::Explicit(vec![format!("{ip}:0").parse().unwrap()]);
    c.mdns = mdns;
    c.mdns_daemon = Some(daemon);
    c.dns_timeout = Duration::from_secs(3);
    c
}

/// The host candidates reported so far (after start they are queued).
fn host_candidates(d: &mut Driver) -> Vec<scream_ice_tokio::scream_ice_core::candidate::Candidate> {
    let mut out = Vec::new();
    while let Some(o) = d.try_next() {
        if let Output::Event(SessionEvent::LocalCandidate(c)) = o
            && c.kind == CandidateKind::Host
        {
            out.push(c);
        }
    }
    out
}

/// Which side an output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// Drive `a` and `b` together (each answers the other's checks) for at
/// most `within`, logging every output, until `stop` holds for one:
/// returns it (`None` if `within` passed).
async fn drive(
    a: &mut Driver,
    b: &mut Driver,
    within: Duration,
    log: &mut Vec<(Side, Output)>,
    stop: impl Fn(Side, &Output) -> bool,
) -> Option<Output> {
    let deadline = Instant::now() + within;
    loop {
        let (side, o) = tokio::select! {
            o = a.next() => (Side::A, o),
            o = b.next() => (Side::B, o),
            () = tokio::time::sleep_until(deadline) => return None,
        };
        log.push((side, o.clone()));
        if stop(side, &o) {
            return Some(o);
        }
    }
}

/// Drive both until `side` selects a pair (within `within`).
async fn selected(
    a: &mut Driver,
    b: &mut Driver,
    side: Side,
    within: Duration,
    log: &mut Vec<(Side, Output)>,
) -> Option<(SocketAddr, SocketAddr)> {
    let stop =
        |s, o: &Output| s == side && matches!(o, Output::Event(SessionEvent::Selected { .. }));
    match drive(a, b, within, log, stop).await? {
        Output::Event(SessionEvent::Selected { local, remote }) => Some((local, remote)),
        _ => None,
    }
}

/// Drive both until `side` receives an application datagram.
async fn datagram(
    a: &mut Driver,
    b: &mut Driver,
    side: Side,
    log: &mut Vec<(Side, Output)>,
) -> Vec<u8> {
    let stop = |s, o: &Output| s == side && matches!(o, Output::Data(_));
    match drive(a, b, Duration::from_secs(2), log, stop).await {
        Some(Output::Data(d)) => d.data,
        o => panic!("no datagram within 2 s: {o:?}"),
    }
}

/// Send over the selected pair.
async fn send(d: &Driver, data: &[u8]) {
    let (socket, _, remote) = d.selected_path().expect("a selected pair");
    socket.send_to(data, remote).await.unwrap();
}

#[test]
fn obfuscated_host_candidate_resolves_over_mdns_and_connects() {
    in_netns(
        "obfuscated_host_candidate_resolves_over_mdns_and_connects",
        || async {
            let mut a = Driver::start(config(
                Role::Controlled,
                A_IP,
                MdnsMode::Obfuscate,
                daemon_on("va"),
            ))
            .await
            .unwrap();
            // B gives up on "no pairs" after 100 ms, far less than the
            // name takes to resolve: end-of-candidates must wait for it.
            let mut bcfg = config(Role::Controlling, B_IP, MdnsMode::Off, daemon_on("vb"));
            bcfg.agent.failure_grace = CoreDuration::from_millis(100);
            let mut b = Driver::start(bcfg).await.unwrap();
            let mut log = Vec::new();
            let a_addr = a.local_addresses()[0];

            // A's one name, for its private address.
            let names = a.mdns_names().to_vec();
            assert_eq!(names.len(), 1, "{names:?}");
            assert_eq!(names[0].0, a_addr.ip());
            assert!(is_uuid_mdns_name(&names[0].1), "{names:?}");
            assert!(b.mdns_names().is_empty());

            // A's candidate line carries the name, never the address.
            let a_hosts = host_candidates(&mut a);
            assert_eq!(a_hosts.len(), 1);
            let line = a.local_candidate_line(&a_hosts[0]);
            println!("A signals: a={line}");
            assert!(line.contains(&format!(" {} ", names[0].1)), "{line}");
            assert!(!line.contains(A_IP), "{line}");

            // Signaling, one way only for candidates: B learns A's address
            // only through mDNS (A learns B's as peer-reflexive from B's
            // checks). B is controlling, so B nominates.
            let ac = a.local_credentials();
            let bc = b.local_credentials();
            a.set_remote_credentials(&bc.ufrag, &bc.pwd).unwrap();
            b.set_remote_credentials(&ac.ufrag, &ac.pwd).unwrap();
            let t0 = Instant::now();
            b.add_remote_candidate_line(&format!("a={line}"))
                .await
                .unwrap();
            // At once: the agent must not fail while the name resolves.
            b.end_of_remote_candidates();
            let (local, remote) =
                selected(&mut a, &mut b, Side::B, Duration::from_secs(10), &mut log)
                    .await
                    .expect("B selected no pair within 10 s");
            println!(
                "mDNS: B resolved A's name and selected {local} -> {remote} in {:.0} ms",
                t0.elapsed().as_secs_f64() * 1e3
            );
            assert_eq!(remote, a_addr);
            assert_eq!(local.ip(), B_IP.parse::<IpAddr>().unwrap());
            let a_selected = log.iter().any(|(s, o)| {
                *s == Side::A && matches!(o, Output::Event(SessionEvent::Selected { .. }))
            });
            assert!(
                a_selected
                    || selected(&mut a, &mut b, Side::A, Duration::from_secs(5), &mut log)
                        .await
                        .is_some()
            );

            // Data flows.
            send(&b, b"over mdns").await;
            let d = datagram(&mut a, &mut b, Side::A, &mut log).await;
            assert_eq!(d, b"over mdns");
            let name = format!("{}.", names[0].1);
            drop(a);
            drop(b);

            // Closing A unregistered its name: nobody answers for it any
            // more. (A fresh querier: B's daemon still has the A record in
            // its cache; mdns-sd's goodbye does not flush host records.)
            tokio::time::sleep(Duration::from_millis(300)).await;
            let fresh = daemon_on("vb");
            let rx = fresh.daemon().resolve_hostname(&name, Some(1500)).unwrap();
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut timed_out = false;
            while let Ok(Ok(e)) = tokio::time::timeout_at(deadline, rx.recv_async()).await {
                assert!(
                    !matches!(e, HostnameResolutionEvent::AddressesFound(..)),
                    "{name} still resolves after close: {e:?}"
                );
                if matches!(e, HostnameResolutionEvent::SearchTimeout(_)) {
                    timed_out = true;
                    break;
                }
            }
            assert!(timed_out, "no answer and no SearchTimeout for {name}");
        },
    );
}

#[test]
fn unresolvable_local_name_skips_the_candidate_only() {
    in_netns(
        "unresolvable_local_name_skips_the_candidate_only",
        || async {
            // A does not obfuscate: its candidate goes out with the IP.
            let mut a = Driver::start(config(
                Role::Controlled,
                A_IP,
                MdnsMode::Off,
                daemon_on("va"),
            ))
            .await
            .unwrap();
            let mut bcfg = config(Role::Controlling, B_IP, MdnsMode::Off, daemon_on("vb"));
            bcfg.dns_timeout = Duration::from_millis(1500);
            let mut b = Driver::start(bcfg).await.unwrap();
            let mut log = Vec::new();
            let ac = a.local_credentials();
            let bc = b.local_credentials();
            a.set_remote_credentials(&bc.ufrag, &bc.pwd).unwrap();
            b.set_remote_credentials(&ac.ufrag, &ac.pwd).unwrap();

            // A name nobody answers for: accepted (resolution runs in the
            // background), then skipped.
            let t0 = Instant::now();
            b.add_remote_candidate_line(
                "candidate:9 1 udp 2122260223 0f0e0d0c-0b0a-4908-8706-050403020100.local 9 typ host",
            )
            .await
            .unwrap();
            assert!(
                t0.elapsed() < Duration::from_millis(200),
                "the caller waited for mDNS: {:?}",
                t0.elapsed()
            );
            // The real candidate, by IP.
            let a_hosts = host_candidates(&mut a);
            let line = a.local_candidate_line(&a_hosts[0]);
            assert!(line.contains(A_IP), "{line}");
            b.add_remote_candidate_line(&line).await.unwrap();
            b.end_of_remote_candidates();
            let (_, remote) = selected(&mut a, &mut b, Side::B, Duration::from_secs(5), &mut log)
                .await
                .expect("not connected");
            assert_eq!(remote, a.local_addresses()[0]);

            // After the name has timed out the session is still up.
            drive(
                &mut a,
                &mut b,
                Duration::from_millis(2500),
                &mut log,
                |_, _| false,
            )
            .await;
            assert!(b.session().selected_pair().is_some());
            send(&b, b"still here").await;
            let d = datagram(&mut a, &mut b, Side::A, &mut log).await;
            assert_eq!(d, b"still here");
            for (side, o) in &log {
                if *side == Side::B {
                    assert!(
                        !matches!(o, Output::Event(SessionEvent::Failed(_))),
                        "{o:?}"
                    );
                }
            }
            drop(a);
            drop(b);
        },
    );
}
