//! ICE between real processes in Linux network namespaces
//! (`scream_ice_tests::netns`): each scenario builds its own lab, runs our
//! peer binary (`src/bin/ice_peer.rs`) on both sides, and checks the
//! connection, the datagrams both ways and the policy decision each side
//! took. The lab's namespaces are removed when the test ends, also on
//! failure.
//!
//! Needs root (or CAP_NET_ADMIN), iproute2, nftables and coturn; without
//! namespace support the tests fail with what is missing, unless
//! `SCREAM_ICE_SKIP_NETNS=1`.
//!
//! `ours_and_aioice_interoperate_on_the_lan` and the benchmark need aioice
//! (`$AIOICE_PYTHON` or `<target>/aioice-venv`, as in the tokio adapter's
//! tests; `SCREAM_ICE_SKIP_PEERS=1` skips the interop test without it).
//!
//! The benchmark (ours vs aioice, about 3 minutes) is ignored by default:
//! `cargo test --release -p scream-ice-tests --test netns -- --ignored --nocapture`
//! (`SCREAM_ICE_NETNS_RUNS` sets the runs per case, default 20; aioice's
//! Python as in the tokio adapter's tests: `$AIOICE_PYTHON` or
//! `<target>/aioice-venv`, created on first use).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use scream_ice_tests::netns::{
    self, Agent, DEAD_STUN, LAN_STUN, Lab, NAT_PUBLIC, NAT2_PUBLIC, PUBLIC_STUN, PeerReport,
    PeerSpec, REMOTE, REMOTE2, ROUTER_LAN, ROUTER_PUBLIC, SPK, SYMNAT_PUBLIC, SYMSPK, median_p95,
    pair,
};

const COUNT: usize = 10;
const LIMIT: Duration = Duration::from_secs(20);

/// A fresh lab, or `None` (test skipped) if namespaces are unavailable and
/// `SCREAM_ICE_SKIP_NETNS=1`.
fn lab() -> Option<Lab> {
    match Lab::new() {
        Ok(l) => Some(l),
        Err(e) if netns::skip_netns() => {
            scream_ice_tests::report_skip(&format!("netns lab: {e}"));
            None
        }
        Err(e) => panic!("{e} (set SCREAM_ICE_SKIP_NETNS=1 to skip the namespace tests)"),
    }
}

fn ours() -> Agent {
    Agent::Ours(PathBuf::from(env!("CARGO_BIN_EXE_ice_peer")))
}

fn ip(a: impl Into<IpAddr>) -> IpAddr {
    a.into()
}

/// The LAN speaker (controlling: it asks the router for a session).
fn lan_speaker(agent: Agent, stun: Option<SocketAddr>) -> PeerSpec {
    PeerSpec {
        agent,
        role: "spk",
        controlling: true,
        hosts: vec![ip(SPK)],
        peer: Some(ip(ROUTER_LAN)),
        stun,
        mode: None,
        count: COUNT,
        more_stun: Vec::new(),
        turn: None,
        local_subnets: Vec::new(),
    }
}

/// The router's session for the LAN speaker, on both its interfaces.
fn router_for_lan(agent: Agent, stun: Option<SocketAddr>) -> PeerSpec {
    PeerSpec {
        agent,
        role: "router",
        controlling: false,
        hosts: vec![ip(ROUTER_LAN), ip(ROUTER_PUBLIC)],
        peer: Some(ip(SPK)),
        stun,
        mode: None,
        count: COUNT,
        more_stun: Vec::new(),
        turn: None,
        local_subnets: Vec::new(),
    }
}

/// The remote speaker behind the NAT, which knows the router's public
/// address.
fn remote_speaker(stun: SocketAddr) -> PeerSpec {
    PeerSpec {
        agent: ours(),
        role: "remote",
        controlling: true,
        hosts: vec![ip(REMOTE)],
        peer: Some(ip(ROUTER_PUBLIC)),
        stun: Some(stun),
        mode: None,
        count: COUNT,
        more_stun: Vec::new(),
        turn: None,
        local_subnets: Vec::new(),
    }
}

/// The router's session for the remote speaker, which it sees at the
/// NAT's public address.
fn router_for_remote(stun: SocketAddr) -> PeerSpec {
    PeerSpec {
        agent: ours(),
        role: "router",
        controlling: false,
        hosts: vec![ip(ROUTER_LAN), ip(ROUTER_PUBLIC)],
        peer: Some(ip(NAT_PUBLIC)),
        stun: Some(stun),
        mode: None,
        count: COUNT,
        more_stun: Vec::new(),
        turn: None,
        local_subnets: Vec::new(),
    }
}

/// One side of the wrong-guess case: behind a NAT on a private address,
/// seeing the peer at its private address, with `local_subnets` listing
/// both private networks (a VPN or a second site): the policy takes the
/// peer for local.
fn natted_peer(role: &'static str, me: Ipv4Addr, peer: Ipv4Addr, stun: SocketAddr) -> PeerSpec {
    PeerSpec {
        agent: ours(),
        role,
        controlling: role == "remote",
        hosts: vec![ip(me)],
        peer: Some(ip(peer)),
        stun: Some(stun),
        mode: None,
        count: COUNT,
        more_stun: Vec::new(),
        turn: None,
        local_subnets: vec!["10.77.0.0/24", "10.88.0.0/24"],
    }
}

fn field<'a>(r: &'a PeerReport, key: &str) -> &'a str {
    r.decision_field(key)
        .unwrap_or_else(|| panic!("no {key} in decision {:?}", r.decision))
}

/// Connected, and every datagram and echo arrived.
fn assert_connected(who: &str, r: &PeerReport) {
    assert!(r.connected_ms.is_some(), "{who} not connected: {r:?}");
    assert_eq!(r.done, Some((COUNT, COUNT)), "{who}: datagrams: {r:?}");
}

/// The host-only fast path for a LAN peer: no STUN, end-of-candidates at
/// once, Ta 5 ms, first-success nomination.
fn assert_lan_fast_path(who: &str, r: &PeerReport) {
    assert_eq!(field(r, "network"), "local", "{who}");
    assert_eq!(field(r, "stun"), "0", "{who}: no STUN for a LAN peer");
    assert_eq!(field(r, "eoc_at_once"), "true", "{who}");
    assert_eq!(field(r, "fast_path"), "true", "{who}");
    assert_eq!(field(r, "pacing_ms"), "5", "{who}");
    assert!(r.candidates_of("srflx").is_empty(), "{who}: {r:?}");
}

fn report(name: &str, spk: &PeerReport, router: &PeerReport) {
    println!(
        "{name}: speaker connected {:?} ms (gathered {:?} ms) via {:?} -> {:?}; \
         router connected {:?} ms via {:?} -> {:?}",
        spk.connected_ms,
        spk.gathered_ms,
        spk.local,
        spk.remote,
        router.connected_ms,
        router.local,
        router.remote
    );
}

/// (a) A LAN with no internet and no STUN server configured: both sides
/// take the host-only fast path and connect over the LAN addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_without_internet_or_stun() {
    let Some(lab) = lab() else { return };
    let (spk, router) = pair(
        &lab,
        &lan_speaker(ours(), None),
        &router_for_lan(ours(), None),
        LIMIT,
    )
    .await
    .unwrap();
    report("LAN, no STUN", &spk, &router);
    assert_connected("speaker", &spk);
    assert_connected("router", &router);
    assert_lan_fast_path("speaker", &spk);
    assert_lan_fast_path("router", &router);
    // The router offers both interfaces; the LAN one ranks first and wins.
    assert!(router.candidates.iter().any(|c| c.contains("192.168.77.1")));
    assert_eq!(spk.remote_ip(), Some(ip(ROUTER_LAN)), "{spk:?}");
    assert_eq!(router.remote_ip(), Some(ip(SPK)), "{router:?}");
    assert!(spk.connected_ms.unwrap() < 1000.0, "{spk:?}");
}

/// (b) The same LAN with a configured STUN server that cannot be reached
/// (the internet is not there): in mode auto the policy does not query it
/// for a LAN peer at all, so nothing stalls; with the mode forced to
/// stun-required it is queried, and the host pair still connects long
/// before the gathering cap ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_with_unreachable_stun() {
    let Some(lab) = lab() else { return };
    let (spk, router) = pair(
        &lab,
        &lan_speaker(ours(), Some(DEAD_STUN)),
        &router_for_lan(ours(), Some(DEAD_STUN)),
        LIMIT,
    )
    .await
    .unwrap();
    report("LAN, STUN down, auto", &spk, &router);
    assert_connected("speaker", &spk);
    assert_connected("router", &router);
    assert_lan_fast_path("speaker", &spk);
    assert_lan_fast_path("router", &router);
    for r in [&spk, &router] {
        assert!(r.gathered_ms.unwrap() < 100.0, "no wait for STUN: {r:?}");
        assert!(r.connected_ms.unwrap() < 1000.0, "no stall: {r:?}");
    }

    let mut s = lan_speaker(ours(), Some(DEAD_STUN));
    let mut r = router_for_lan(ours(), Some(DEAD_STUN));
    s.mode = Some("stun-required");
    r.mode = Some("stun-required");
    let (spk, router) = pair(&lab, &s, &r, LIMIT).await.unwrap();
    report("LAN, STUN down, stun-required", &spk, &router);
    assert_connected("speaker", &spk);
    assert_connected("router", &router);
    for (who, r) in [("speaker", &spk), ("router", &router)] {
        assert_eq!(field(r, "network"), "local", "{who}");
        assert_eq!(field(r, "stun"), "1", "{who}: STUN queried");
        assert_eq!(field(r, "eoc_at_once"), "false", "{who}");
        assert!(r.candidates_of("srflx").is_empty(), "{who}: {r:?}");
        // End-of-candidates waits for the cap (500 ms), not for the 5 s+
        // of STUN retransmissions; the connection does not wait at all.
        let gathered = r.gathered_ms.unwrap();
        assert!((400.0..2000.0).contains(&gathered), "{who}: {r:?}");
        assert!(r.connected_ms.unwrap() < gathered, "{who}: {r:?}");
    }
}

/// (c) A remote speaker behind a NAT (nftables masquerade) reaches the
/// router's public address; coturn on the public segment gives it its
/// server-reflexive candidate, and the router sees it at the NAT's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_speaker_behind_nat_with_coturn() {
    let Some(mut lab) = lab() else { return };
    let stun = lab.start_coturn("pub", PUBLIC_STUN).unwrap();
    let (spk, router) = pair(&lab, &remote_speaker(stun), &router_for_remote(stun), LIMIT)
        .await
        .unwrap();
    report("remote behind NAT", &spk, &router);
    assert_connected("speaker", &spk);
    assert_connected("router", &router);
    for (who, r) in [("speaker", &spk), ("router", &router)] {
        assert_eq!(field(r, "network"), "nat", "{who}");
        assert_eq!(field(r, "stun"), "1", "{who}");
        assert_eq!(field(r, "eoc_at_once"), "false", "{who}");
        assert_eq!(field(r, "fast_path"), "false", "{who}");
    }
    // The speaker's srflx candidate is the NAT's public address; its
    // private address is withheld from a remote peer.
    let srflx = spk.candidates_of("srflx");
    assert!(
        srflx.iter().any(|c| c.contains(" 203.0.113.2 ")),
        "srflx from coturn through the NAT: {spk:?}"
    );
    assert!(
        !spk.candidates
            .iter()
            .any(|c| c.contains("10.77.0.2 ") && c.contains(" typ host")),
        "private host candidate offered to a remote peer: {spk:?}"
    );
    assert!(
        !router.candidates.iter().any(|c| c.contains("192.168.77.1")),
        "the router's LAN address offered to a remote peer: {router:?}"
    );
    assert_eq!(spk.remote_ip(), Some(ip(ROUTER_PUBLIC)), "{spk:?}");
    assert_eq!(router.remote_ip(), Some(ip(NAT_PUBLIC)), "{router:?}");
}

/// (d) Mixed: the router (LAN and public interfaces, coturn configured)
/// serves a LAN speaker and a remote speaker at the same time; one policy,
/// two decisions: host-only fast path for the LAN speaker, STUN and no
/// private candidates for the remote one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_with_lan_and_remote_speakers() {
    let Some(mut lab) = lab() else { return };
    let stun = lab.start_coturn("pub", PUBLIC_STUN).unwrap();
    let lan_s = lan_speaker(ours(), Some(stun));
    let lan_r = router_for_lan(ours(), Some(stun));
    let rem_s = remote_speaker(stun);
    let rem_r = router_for_remote(stun);
    let (lan, remote) = tokio::join!(
        pair(&lab, &lan_s, &lan_r, LIMIT),
        pair(&lab, &rem_s, &rem_r, LIMIT)
    );
    let (lan_spk, lan_router) = lan.unwrap();
    let (rem_spk, rem_router) = remote.unwrap();
    report("mixed: LAN", &lan_spk, &lan_router);
    report("mixed: remote", &rem_spk, &rem_router);
    for (who, r) in [
        ("LAN speaker", &lan_spk),
        ("router for LAN", &lan_router),
        ("remote speaker", &rem_spk),
        ("router for remote", &rem_router),
    ] {
        assert_connected(who, r);
    }
    assert_lan_fast_path("LAN speaker", &lan_spk);
    assert_lan_fast_path("router for LAN", &lan_router);
    assert_eq!(field(&rem_router, "network"), "nat");
    assert_eq!(field(&rem_router, "stun"), "1");
    assert!(
        lan_router
            .candidates
            .iter()
            .any(|c| c.contains("192.168.77.1"))
    );
    assert!(
        !rem_router
            .candidates
            .iter()
            .any(|c| c.contains("192.168.77.1"))
    );
    assert_eq!(lan_spk.remote_ip(), Some(ip(ROUTER_LAN)));
    assert_eq!(lan_router.remote_ip(), Some(ip(SPK)));
    assert_eq!(rem_spk.remote_ip(), Some(ip(ROUTER_PUBLIC)));
    assert_eq!(rem_router.remote_ip(), Some(ip(NAT_PUBLIC)));
}

/// Ours and aioice on the two LAN hosts, in both roles: the driver pairs
/// any two of {ours, aioice}. Needs aioice like the benchmark (fails
/// without it unless `SCREAM_ICE_SKIP_PEERS=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ours_and_aioice_interoperate_on_the_lan() {
    let Some(python) = aioice_python_or_skip() else {
        return;
    };
    let Some(lab) = lab() else { return };
    let aioice = Agent::Aioice(python);
    let mut router = router_for_lan(aioice.clone(), None);
    router.hosts = vec![ip(ROUTER_LAN)];
    let (spk, router) = pair(&lab, &lan_speaker(ours(), None), &router, LIMIT)
        .await
        .unwrap();
    report("ours (speaker) with aioice (router)", &spk, &router);
    assert_connected("ours", &spk);
    assert_connected("aioice", &router);
    assert_lan_fast_path("ours", &spk);
    assert_eq!(spk.remote_ip(), Some(ip(ROUTER_LAN)));

    let (spk, router) = pair(
        &lab,
        &lan_speaker(aioice, None),
        &router_for_lan(ours(), None),
        LIMIT,
    )
    .await
    .unwrap();
    report("aioice (speaker) with ours (router)", &spk, &router);
    assert_connected("aioice", &spk);
    assert_connected("ours", &router);
    assert_lan_fast_path("ours", &router);
    assert_eq!(router.remote_ip(), Some(ip(SPK)));
}

// ---------------------------------------------------------------------------
// Benchmark: ours vs aioice on the LAN
// ---------------------------------------------------------------------------

fn imports_aioice(python: &Path) -> bool {
    std::process::Command::new(python)
        .args(["-c", "import aioice"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// [`aioice_python`], or `None` (test skipped) when it is missing and
/// `SCREAM_ICE_SKIP_PEERS=1`.
fn aioice_python_or_skip() -> Option<PathBuf> {
    match aioice_python() {
        Ok(p) => Some(p),
        Err(e) if std::env::var("SCREAM_ICE_SKIP_PEERS").is_ok_and(|v| v == "1") => {
            scream_ice_tests::report_skip(&format!("aioice: {e}"));
            None
        }
        Err(e) => panic!("{e} (set SCREAM_ICE_SKIP_PEERS=1 to skip tests that need aioice)"),
    }
}

/// One venv setup at a time (tests of this binary may ask at once).
static VENV: Mutex<()> = Mutex::new(());

/// A Python that imports aioice: `$AIOICE_PYTHON`, or
/// `<target>/aioice-venv/bin/python`, created on first use (`python3 -m
/// venv`, `pip install aioice`); otherwise what to install.
fn aioice_python() -> Result<PathBuf, String> {
    let _guard = VENV.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = std::env::var_os("AIOICE_PYTHON") {
        let p = PathBuf::from(p);
        return if imports_aioice(&p) {
            Ok(p)
        } else {
            Err(format!(
                "AIOICE_PYTHON={} cannot import aioice",
                p.display()
            ))
        };
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap_or(Path::new("target"))
        .to_path_buf();
    let venv = target.join("aioice-venv");
    let python = venv.join("bin").join("python");
    if python.is_file() && imports_aioice(&python) {
        return Ok(python);
    }
    let ok = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && std::process::Command::new(venv.join("bin").join("pip"))
            .args(["install", "-q", "aioice"])
            .status()
            .is_ok_and(|s| s.success());
    if ok && imports_aioice(&python) {
        Ok(python)
    } else {
        Err(format!(
            "no aioice: install python3 and python3-venv (the test then creates {} \
             with aioice from PyPI), or set AIOICE_PYTHON",
            venv.display()
        ))
    }
}

/// The time for a pair to connect: both sides started together, until the
/// later of the two has its selected pair.
fn pair_ms(a: &PeerReport, b: &PeerReport) -> f64 {
    a.connected_ms.unwrap().max(b.connected_ms.unwrap())
}

/// On the LAN (speaker and router's LAN address), for each STUN situation:
/// ours (mode auto, and mode stun-required, which does query the server)
/// vs two aioice agents, `SCREAM_ICE_NETNS_RUNS` runs each, interleaved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark, about 3 minutes: run with --ignored --nocapture"]
async fn bench_connect_time_ours_vs_aioice() {
    let Some(mut lab) = lab() else { return };
    let runs: usize = std::env::var("SCREAM_ICE_NETNS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let python = aioice_python().unwrap();
    let lan_stun = lab.start_coturn("lan", LAN_STUN).unwrap();
    let cases: [(&str, Option<SocketAddr>); 3] = [
        ("STUN reachable (coturn on the LAN)", Some(lan_stun)),
        ("STUN unreachable", Some(DEAD_STUN)),
        ("no STUN configured", None),
    ];
    let spec = |agent: Agent, stun, mode, controlling: bool| {
        let (role, host, peer) = if controlling {
            ("spk", SPK, ROUTER_LAN)
        } else {
            ("router", ROUTER_LAN, SPK)
        };
        PeerSpec {
            agent,
            role,
            controlling,
            hosts: vec![ip(host)],
            peer: Some(ip(peer)),
            stun,
            mode,
            count: 1,
            more_stun: Vec::new(),
            turn: None,
            local_subnets: Vec::new(),
        }
    };
    let mut rows = Vec::new();
    for (case, stun) in cases {
        let variants: Vec<(&str, Agent, Option<&'static str>)> = {
            let mut v = vec![
                ("ours (auto)", ours(), None),
                ("aioice", Agent::Aioice(python.clone()), None),
            ];
            if stun.is_some() {
                v.push(("ours (stun-required)", ours(), Some("stun-required")));
            }
            v
        };
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
        for run in 0..runs {
            for (k, (name, agent, mode)) in variants.iter().enumerate() {
                let a = spec(agent.clone(), stun, *mode, true);
                let b = spec(agent.clone(), stun, *mode, false);
                let (ra, rb) = pair(&lab, &a, &b, Duration::from_secs(30))
                    .await
                    .unwrap_or_else(|e| panic!("{case}, {name}, run {run}: {e}"));
                times[k].push(pair_ms(&ra, &rb));
            }
        }
        for ((name, _, _), t) in variants.iter().zip(&times) {
            let (med, p95) = median_p95(t);
            rows.push((case, *name, med, p95));
        }
    }
    let aioice_of = |case: &str| {
        rows.iter()
            .find(|r| r.0 == case && r.1 == "aioice")
            .map(|r| r.2)
            .unwrap()
    };
    println!("\n| case | agent | median ms | p95 ms | aioice median / this median |");
    println!("|---|---|---|---|---|");
    for (case, name, med, p95) in &rows {
        println!(
            "| {case} | {name} | {med:.2} | {p95:.2} | {:.0}x |",
            aioice_of(case) / med
        );
    }
    println!("\n({runs} runs per row)");
    for (case, name, med, _) in &rows {
        if name.starts_with("ours") {
            assert!(
                *med < 50.0,
                "{case}, {name}: median {med:.2} ms: a stall on the LAN"
            );
        }
    }
}

/// The fallback ladder at runtime over real NATs: the speaker (behind
/// `nat`) and the router (behind `nat2`, nftables masquerade both) see
/// each other's private addresses, which `local_subnets` calls local, so
/// both decide `local`: no STUN, fast path. No host pair can work; after
/// `widen_after` (1 s) both step to `with-stun`, ask coturn, trickle their
/// srflx candidates and connect through both NATs; both record the stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ladder_widens_to_stun_between_two_nats() {
    let Some(mut lab) = lab() else { return };
    let stun = lab.start_coturn("pub", PUBLIC_STUN).unwrap();
    let spk = natted_peer("remote", REMOTE, REMOTE2, stun);
    let router = natted_peer("remote2", REMOTE2, REMOTE, stun);
    let (spk, router) = pair(&lab, &spk, &router, LIMIT).await.unwrap();
    report("ladder: both behind NATs", &spk, &router);
    for (who, r, public) in [
        ("speaker", &spk, NAT_PUBLIC),
        ("router", &router, NAT2_PUBLIC),
    ] {
        assert_connected(who, r);
        assert_eq!(field(r, "network"), "local", "{who}: the wrong guess");
        assert_eq!(field(r, "stun"), "0", "{who}");
        assert!(
            r.decided[0].starts_with("network=local stage=local-only srflx=false"),
            "{who}: {:?}",
            r.decided
        );
        assert_eq!(r.widened.len(), 1, "{who}: {:?}", r.widened);
        assert_eq!(r.widened[0].0, "with-stun", "{who}");
        assert!(
            (1000.0..1500.0).contains(&r.widened[0].1),
            "{who}: widened at {} ms",
            r.widened[0].1
        );
        assert_eq!(r.stage.as_deref(), Some("with-stun"), "{who}");
        let connected = r.connected_ms.unwrap();
        assert!(connected > 1000.0, "{who}: connected at {connected} ms");
        assert!(
            r.candidates_of("srflx")
                .iter()
                .any(|c| c.contains(&format!(" {public} "))),
            "{who}: srflx through its NAT: {r:?}"
        );
    }
    // Each side selected the other's NAT mapping.
    assert_eq!(spk.remote_ip(), Some(ip(NAT2_PUBLIC)), "{spk:?}");
    assert_eq!(router.remote_ip(), Some(ip(NAT_PUBLIC)), "{router:?}");
}

/// PeerKnowledge at runtime: a speaker behind a symmetric NAT (`masquerade
/// random`) gathers from two STUN servers and trickles two srflx
/// candidates of one base; the router's session sees the endpoint-dependent
/// mapping and its decision log says `symmetric-nat`. In mode `full` it asks
/// for relays at once (relay allocation comes with the TURN work). The two
/// still connect (the router is public).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symmetric_nat_speaker_is_seen_by_the_router() {
    let Some(mut lab) = lab() else { return };
    let stun = lab.start_coturn("pub", PUBLIC_STUN).unwrap();
    // A second STUN server, on the router's public address.
    let stun2 = lab.start_coturn("router", ROUTER_PUBLIC).unwrap();
    let spk = PeerSpec {
        agent: ours(),
        role: "symspk",
        controlling: true,
        hosts: vec![ip(SYMSPK)],
        peer: Some(ip(ROUTER_PUBLIC)),
        stun: Some(stun),
        mode: None,
        count: COUNT,
        more_stun: vec![stun2],
        turn: None,
        local_subnets: Vec::new(),
    };
    let router = PeerSpec {
        agent: ours(),
        role: "router",
        controlling: false,
        hosts: vec![ip(ROUTER_PUBLIC)],
        peer: Some(ip(SYMNAT_PUBLIC)),
        stun: Some(stun),
        mode: Some("full"),
        count: COUNT,
        more_stun: Vec::new(),
        turn: Some(stun),
        local_subnets: Vec::new(),
    };
    let (spk, router) = pair(&lab, &spk, &router, LIMIT).await.unwrap();
    report("symmetric NAT speaker", &spk, &router);
    assert_connected("speaker", &spk);
    assert_connected("router", &router);
    let srflx = spk.candidates_of("srflx");
    assert!(
        srflx.len() >= 2
            && srflx
                .iter()
                .all(|c| c.contains(&format!(" {SYMNAT_PUBLIC} "))),
        "two mappings of one base: {srflx:?}"
    );
    assert_eq!(
        router.decided[0],
        "network=nat stage=full srflx=true relay=true"
    );
    assert!(router.relay_wanted, "relay asked for at once: {router:?}");
    assert!(
        router
            .decided
            .iter()
            .any(|d| d.starts_with("network=symmetric-nat stage=full")),
        "the router's decision log: {:?}",
        router.decided
    );
}
