//! A network lab in Linux network namespaces: a LAN with no internet, a
//! "public" segment, and a remote host behind a NAT (nftables masquerade),
//! plus a driver that pairs two ICE peer processes (ours,
//! `src/bin/ice_peer.rs`, or aioice, `peers/netns_aioice_peer.py`) over
//! their stdin/stdout line protocol.
//!
//! ```text
//!        LAN 192.168.77.0/24 (no internet)          public 203.0.113.0/24              inner 10.77.0.0/24
//!  spk .2 ──┐                                  ┌── router eth1 .1
//!           ├─ br0 in `lan` (.3, coturn) ── router eth0 .1 (forwarding off)
//!                                              ├── nat eth1 .2 ═ masquerade ═ nat eth0 .1 ── remote .2
//!                                              ├── nat2 eth1 .4 ═ masquerade ═ nat2 eth0 10.88.0.1 ── remote2 10.88.0.2
//!                                              ├── symnat eth1 .5 ═ masquerade random ═ 10.99.0.1 ── symspk 10.99.0.2
//!                                              └── br0 in `pub` (.3, coturn)
//! ```
//!
//! `nat` and `nat2` map like Linux masquerade does (one mapping per inside
//! address and port while the port is free: endpoint-independent, filtered
//! by conntrack); `symnat` draws a random port for every new flow
//! (`masquerade random`): an endpoint-dependent, "symmetric" NAT.
//!
//! Everything is created by [`Lab::new`] under names unique to this
//! process and lab (`sice-<pid>-<n>-<role>`), and removed when the [`Lab`]
//! drops, also on panic; namespaces left by a killed run (whose process is
//! gone) are removed by the next [`Lab::new`]. All traffic stays inside
//! these namespaces: the addresses exist only on veths created here.
//! "The internet" is 198.51.100.0/24, routed to a gateway that does not
//! exist (the LAN's gateway, the router, does not forward), so a STUN
//! server there is silently unreachable, as on a LAN without internet.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::time::Instant;

/// The LAN speaker's address.
pub const SPK: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
/// The router's LAN address.
pub const ROUTER_LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
/// The LAN switch's own address, where the LAN coturn listens.
pub const LAN_STUN: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 3);
/// The router's public address.
pub const ROUTER_PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The NAT's outside (public) address.
pub const NAT_PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The public switch's own address, where the public coturn listens.
pub const PUBLIC_STUN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 3);
/// The NAT's inside address (the remote speaker's gateway).
pub const NAT_INSIDE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The remote speaker's (private) address behind the NAT.
pub const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The second NAT's outside address (a router behind a NAT).
pub const NAT2_PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 4);
/// The host behind the second NAT.
pub const REMOTE2: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 2);
/// The symmetric NAT's outside address.
pub const SYMNAT_PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
/// The speaker behind the symmetric NAT.
pub const SYMSPK: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
/// A STUN server "on the internet", which nothing in the lab reaches.
pub const DEAD_STUN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 77)), 3478);
/// A public gateway address nobody holds (routes to it go nowhere).
const VOID_GATEWAY: &str = "203.0.113.254";

/// The namespaces of a lab, by role.
pub const ROLES: [&str; 10] = [
    "lan", "router", "spk", "pub", "nat", "remote", "nat2", "remote2", "symnat", "symspk",
];

static LABS: AtomicUsize = AtomicUsize::new(0);

/// Whether namespace tests may be skipped (`SCREAM_ICE_SKIP_NETNS=1`).
pub fn skip_netns() -> bool {
    std::env::var("SCREAM_ICE_SKIP_NETNS").is_ok_and(|v| v == "1")
}

/// Run a command to completion; its stderr in the error.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `ip ARGS`.
fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

/// Remove namespaces of earlier runs whose process is gone
/// (`sice-<pid>-...`).
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("sice-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// A built lab: its namespaces and the coturn servers started in them.
/// Dropping it kills the servers and deletes every namespace.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    servers: Vec<Child>,
    dir: PathBuf,
}

impl Lab {
    /// Build the whole topology (see the module docs). Fails with a
    /// message naming what is missing (root / CAP_NET_ADMIN, `ip`, `nft`).
    pub fn new() -> Result<Lab, String> {
        remove_stale();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("sice-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
            servers: Vec::new(),
            dir,
        };
        for role in ROLES {
            let ns = lab.ns(role);
            ip(&["netns", "add", &ns]).map_err(|e| {
                format!(
                    "cannot create network namespaces (needs root or CAP_NET_ADMIN, \
                     and iproute2): {e}"
                )
            })?;
            lab.namespaces.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        lab.build()?;
        Ok(lab)
    }

    /// The namespace name of `role` (one of [`ROLES`]).
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// A veth pair: `a_if` in `a`'s namespace, `b_if` in `b`'s.
    fn veth(&self, a: &str, a_if: &str, b: &str, b_if: &str) -> Result<(), String> {
        let (na, nb) = (self.ns(a), self.ns(b));
        ip(&[
            "-n", &na, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &nb,
        ])?;
        ip(&["-n", &na, "link", "set", a_if, "up"])?;
        ip(&["-n", &nb, "link", "set", b_if, "up"])
    }

    fn addr(&self, role: &str, dev: &str, cidr: &str) -> Result<(), String> {
        ip(&["-n", &self.ns(role), "addr", "add", cidr, "dev", dev])
    }

    fn route(&self, role: &str, to: &str, via: &str) -> Result<(), String> {
        ip(&["-n", &self.ns(role), "route", "add", to, "via", via])
    }

    fn bridge(&self, role: &str) -> Result<(), String> {
        let ns = self.ns(role);
        ip(&["-n", &ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &ns, "link", "set", "br0", "up"])
    }

    fn enslave(&self, role: &str, dev: &str) -> Result<(), String> {
        ip(&["-n", &self.ns(role), "link", "set", dev, "master", "br0"])
    }

    fn sysctl(&self, role: &str, setting: &str) -> Result<(), String> {
        run(
            "ip",
            &["netns", "exec", &self.ns(role), "sysctl", "-qw", setting],
        )
    }

    fn build(&self) -> Result<(), String> {
        // The LAN: a bridge in `lan`, with the speaker and the router on it.
        self.bridge("lan")?;
        self.addr("lan", "br0", "192.168.77.3/24")?;
        self.veth("lan", "to-spk", "spk", "eth0")?;
        self.enslave("lan", "to-spk")?;
        self.veth("lan", "to-router", "router", "eth0")?;
        self.enslave("lan", "to-router")?;
        self.addr("spk", "eth0", "192.168.77.2/24")?;
        self.addr("router", "eth0", "192.168.77.1/24")?;
        // The speaker's gateway is the router, which does not forward:
        // no internet on the LAN.
        self.route("spk", "default", "192.168.77.1")?;
        self.route("lan", "default", "192.168.77.1")?;

        // The public segment: a bridge in `pub` with the router and the NAT.
        self.bridge("pub")?;
        self.addr("pub", "br0", "203.0.113.3/24")?;
        self.veth("pub", "to-router", "router", "eth1")?;
        self.enslave("pub", "to-router")?;
        self.veth("pub", "to-nat", "nat", "eth1")?;
        self.enslave("pub", "to-nat")?;
        self.addr("router", "eth1", "203.0.113.1/24")?;
        self.addr("nat", "eth1", "203.0.113.2/24")?;
        for role in ["router", "nat", "pub"] {
            self.route(role, "default", VOID_GATEWAY)?;
        }
        self.sysctl("router", "net.ipv4.ip_forward=0")?;

        // The remote speaker behind the NAT; a second NATed host; a
        // speaker behind a symmetric NAT.
        for (nat, inner, public, inside, host, random) in [
            (
                "nat",
                "remote",
                "203.0.113.2/24",
                "10.77.0.1",
                "10.77.0.2",
                false,
            ),
            (
                "nat2",
                "remote2",
                "203.0.113.4/24",
                "10.88.0.1",
                "10.88.0.2",
                false,
            ),
            (
                "symnat",
                "symspk",
                "203.0.113.5/24",
                "10.99.0.1",
                "10.99.0.2",
                true,
            ),
        ] {
            if nat != "nat" {
                let to = format!("to-{nat}");
                self.veth("pub", &to, nat, "eth1")?;
                self.enslave("pub", &to)?;
                self.addr(nat, "eth1", public)?;
                self.route(nat, "default", VOID_GATEWAY)?;
            }
            self.veth(nat, "eth0", inner, "eth0")?;
            self.addr(nat, "eth0", &format!("{inside}/24"))?;
            self.addr(inner, "eth0", &format!("{host}/24"))?;
            self.route(inner, "default", inside)?;
            self.sysctl(nat, "net.ipv4.ip_forward=1")?;
            self.masquerade(nat, random)?;
        }
        Ok(())
    }

    /// nftables masquerade on `role`'s `eth1`; `random`: a random source
    /// port for every new flow (endpoint-dependent mapping). Unsolicited
    /// packets from outside to the NAT itself are dropped, as a home router
    /// does: otherwise conntrack would keep an entry for such a packet
    /// (a peer's first check, arriving before our own went out) and make
    /// masquerade move our next flow to that peer to another port.
    fn masquerade(&self, role: &str, random: bool) -> Result<(), String> {
        let rules = format!(
            "table ip nat {{\n\
             \tchain postrouting {{\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\toifname \"eth1\" masquerade{}\n\
             \t}}\n\
             }}\n\
             table ip filter {{\n\
             \tchain input {{\n\
             \t\ttype filter hook input priority filter; policy accept;\n\
             \t\tiifname \"eth1\" ct state new drop\n\
             \t}}\n\
             }}\n",
            if random { " random" } else { "" }
        );
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &self.ns(role), "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run nft: {e}"))?;
        if let Some(mut stdin) = nft.stdin.take() {
            stdin
                .write_all(rules.as_bytes())
                .map_err(|e| format!("nft stdin: {e}"))?;
        }
        let out = nft.wait_with_output().map_err(|e| format!("nft: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "nft (Debian package nftables) failed to load the masquerade rule: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Start coturn (`turnserver`: STUN only, no auth, no TLS/DTLS, no CLI)
    /// in `role`'s namespace on `ip`:3478 and wait until it answers a
    /// Binding request (`turnutils_stunclient`). Killed when the lab drops.
    pub fn start_coturn(&mut self, role: &str, ip: Ipv4Addr) -> Result<SocketAddr, String> {
        let dir = self.dir.join(format!("coturn-{role}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let conf = dir.join("turnserver.conf");
        std::fs::write(
            &conf,
            format!(
                "listening-ip={ip}\nlistening-port=3478\nrelay-ip={ip}\n\
                 stun-only\nno-auth\nno-tls\nno-dtls\nno-cli\nno-tcp\n\
                 log-file={log}\npidfile={pid}\nuserdb={db}\n",
                log = dir.join("turnserver.log").display(),
                pid = dir.join("turnserver.pid").display(),
                db = dir.join("turndb").display(),
            ),
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
        let ns = self.ns(role);
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, "turnserver", "-c"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start turnserver (Debian package coturn): {e}"))?;
        self.servers.push(child);
        let addr = SocketAddr::from((ip, 3478));
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Some(c) = self.servers.last_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!(
                    "turnserver exited ({status}); is coturn installed? log: {}",
                    dir.join("turnserver.log").display()
                ));
            }
            let ok = Command::new("ip")
                .args(["netns", "exec", &ns, "timeout", "1"])
                .args(["turnutils_stunclient", "-p", "3478", &ip.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "coturn in {ns} did not answer on {addr} within 10 s (log under {})",
            dir.display()
        ))
    }

    /// Where a lab's scratch files (coturn configs and logs) live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("netns lab cleanup: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Which ICE agent a peer process runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Agent {
    /// Ours: the `ice_peer` binary at this path.
    Ours(PathBuf),
    /// aioice: this Python (with aioice importable) running
    /// `peers/netns_aioice_peer.py`.
    Aioice(PathBuf),
}

impl Agent {
    /// A short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Agent::Ours(_) => "ours",
            Agent::Aioice(_) => "aioice",
        }
    }
}

/// One side of a pairing: the agent, the namespace role it runs in, and
/// its flags.
#[derive(Clone, Debug)]
pub struct PeerSpec {
    /// The agent.
    pub agent: Agent,
    /// The lab role whose namespace it runs in.
    pub role: &'static str,
    /// Controlling (true) or controlled.
    pub controlling: bool,
    /// Host addresses to bind.
    pub hosts: Vec<IpAddr>,
    /// The peer's address as signaling shows it (policy input).
    pub peer: Option<IpAddr>,
    /// The configured STUN server.
    pub stun: Option<SocketAddr>,
    /// Further STUN servers (ours only).
    pub more_stun: Vec<SocketAddr>,
    /// A TURN server to configure (ours only; relays are not allocated
    /// yet, it makes mode `full` valid and is what the session asks for).
    pub turn: Option<SocketAddr>,
    /// `local_subnets` (ours only).
    pub local_subnets: Vec<&'static str>,
    /// The ICE mode (ours only; `auto` if `None`).
    pub mode: Option<&'static str>,
    /// Datagrams to send each way after connecting.
    pub count: usize,
}

impl PeerSpec {
    fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--role".to_owned(),
            if self.controlling {
                "controlling"
            } else {
                "controlled"
            }
            .to_owned(),
            "--count".to_owned(),
            self.count.to_string(),
        ];
        for h in &self.hosts {
            a.push("--host".into());
            a.push(h.to_string());
        }
        if let Some(p) = self.peer {
            a.push("--peer".into());
            a.push(p.to_string());
        }
        if let Some(s) = self.stun {
            a.push("--stun".into());
            a.push(s.to_string());
        }
        if let Some(m) = self.mode {
            a.push("--mode".into());
            a.push(m.into());
        }
        for s in &self.more_stun {
            a.push("--stun".into());
            a.push(s.to_string());
        }
        if let Some(t) = self.turn {
            a.push("--turn".into());
            a.push(t.to_string());
        }
        for n in &self.local_subnets {
            a.push("--local-subnet".into());
            a.push((*n).into());
        }
        a
    }
}

/// What one peer reported during a pairing.
#[derive(Clone, Debug, Default)]
pub struct PeerReport {
    /// The `decision ...` line (ours only), without the word.
    pub decision: Option<String>,
    /// The candidate values it signalled.
    pub candidates: Vec<String>,
    /// Session start to end-of-candidates, ms.
    pub gathered_ms: Option<f64>,
    /// Session start to the selected pair, ms.
    pub connected_ms: Option<f64>,
    /// The selected pair's local address (as the peer printed it).
    pub local: Option<String>,
    /// The selected pair's remote address.
    pub remote: Option<String>,
    /// `done <data> <echoes>`.
    pub done: Option<(usize, usize)>,
    /// The session's decision log (`decided network=.. stage=..`), ours only.
    pub decided: Vec<String>,
    /// The ladder's steps (`widened <stage> <ms>`), ours only.
    pub widened: Vec<(String, f64)>,
    /// Whether the session asked for relays (`relay-wanted`), ours only.
    pub relay_wanted: bool,
    /// The stage in force when the pair was selected, ours only.
    pub stage: Option<String>,
}

impl PeerReport {
    /// The value of `key=` in the decision line.
    pub fn decision_field(&self, key: &str) -> Option<&str> {
        self.decision
            .as_deref()?
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
    }

    /// The IP of the selected remote address.
    pub fn remote_ip(&self) -> Option<IpAddr> {
        self.remote
            .as_deref()
            .and_then(|r| r.parse::<SocketAddr>().ok())
            .map(|a| a.ip())
    }

    /// Candidates of `typ` (host, srflx, prflx, relay).
    pub fn candidates_of(&self, typ: &str) -> Vec<&str> {
        let needle = format!(" typ {typ}");
        self.candidates
            .iter()
            .filter(|c| c.contains(&needle))
            .map(String::as_str)
            .collect()
    }
}

/// A running peer process.
struct Proc {
    name: String,
    child: tokio::process::Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    report: PeerReport,
}

impl Proc {
    fn spawn(lab: &Lab, spec: &PeerSpec, tag: &str) -> Result<Proc, String> {
        let ns = lab.ns(spec.role);
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &ns]);
        match &spec.agent {
            Agent::Ours(bin) => {
                cmd.arg(bin);
            }
            Agent::Aioice(python) => {
                cmd.arg(python)
                    .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/netns_aioice_peer.py"));
            }
        }
        cmd.args(spec.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn {} in {ns}: {e}", spec.agent.name()))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        Ok(Proc {
            name: format!("{tag} ({} in {})", spec.agent.name(), spec.role),
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            report: PeerReport::default(),
        })
    }

    async fn send(&mut self, line: &str) -> Result<(), String> {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| format!("{}: write: {e}", self.name))
    }

    async fn next(&mut self) -> Result<String, String> {
        match self.lines.next_line().await {
            Ok(Some(l)) => Ok(l),
            Ok(None) => Err(format!("{} exited early", self.name)),
            Err(e) => Err(format!("{}: read: {e}", self.name)),
        }
    }

    /// Read until `ready`, keeping the decision.
    async fn ready(&mut self) -> Result<(), String> {
        loop {
            let l = self.next().await?;
            if l == "ready" {
                return Ok(());
            }
            if let Some(d) = l.strip_prefix("decision ") {
                self.report.decision = Some(d.to_owned());
            } else if let Some(e) = l.strip_prefix("error ") {
                return Err(format!("{}: {e}", self.name));
            }
        }
    }

    fn connected(&self) -> bool {
        self.report.connected_ms.is_some()
    }

    /// Take one line from this side: record it, and return what to forward
    /// to the other side.
    fn take(&mut self, line: &str) -> Result<Option<String>, String> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let r = &mut self.report;
        match word {
            "ufrag" | "pwd" | "eoc" => return Ok(Some(line.to_owned())),
            "cand" => {
                r.candidates.push(rest.to_owned());
                return Ok(Some(line.to_owned()));
            }
            "gathered" => r.gathered_ms = rest.parse().ok(),
            "connected" => {
                let mut it = rest.split_whitespace();
                r.connected_ms = it.next().and_then(|v| v.parse().ok());
                r.local = it.next().map(str::to_owned);
                r.remote = it.next().map(str::to_owned);
            }
            "done" => {
                let mut it = rest.split_whitespace().filter_map(|v| v.parse().ok());
                r.done = Some((it.next().unwrap_or(0), it.next().unwrap_or(0)));
            }
            "decided" => r.decided.push(rest.to_owned()),
            "widened" => {
                let mut it = rest.split_whitespace();
                let stage = it.next().unwrap_or_default().to_owned();
                r.widened.push((
                    stage,
                    it.next().and_then(|v| v.parse().ok()).unwrap_or(-1.0),
                ));
            }
            "relay-wanted" => r.relay_wanted = true,
            "stage" => r.stage = Some(rest.to_owned()),
            "error" => return Err(format!("{}: {rest}", self.name)),
            _ => {}
        }
        Ok(None)
    }
}

/// Run one pairing of `a` and `b` in `lab`: start both, wait until both
/// are ready, send `start` to both at once, relay their signaling, send
/// `go` once both are connected, and `quit` once both received every
/// datagram and echo and both ended gathering (which may come after
/// connecting). Fails if that does not happen within `limit`.
pub async fn pair(
    lab: &Lab,
    a: &PeerSpec,
    b: &PeerSpec,
    limit: Duration,
) -> Result<(PeerReport, PeerReport), String> {
    let mut pa = Proc::spawn(lab, a, "A")?;
    let mut pb = Proc::spawn(lab, b, "B")?;
    let ready = async {
        pa.ready().await?;
        pb.ready().await
    };
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .map_err(|_| "peers not ready within 30 s".to_owned())??;
    pa.send("start").await?;
    pb.send("start").await?;
    let deadline = Instant::now() + limit;
    let mut go_sent = false;
    loop {
        let finished = |r: &PeerReport| r.done.is_some() && r.gathered_ms.is_some();
        if finished(&pa.report) && finished(&pb.report) {
            break;
        }
        let (from_a, line) = tokio::select! {
            l = pa.next() => (true, l?),
            l = pb.next() => (false, l?),
            () = tokio::time::sleep_until(deadline) => {
                return Err(format!(
                    "pairing timed out after {limit:?}: A {:?}, B {:?}",
                    pa.report, pb.report
                ));
            }
        };
        let (me, other) = if from_a {
            (&mut pa, &mut pb)
        } else {
            (&mut pb, &mut pa)
        };
        if let Some(fwd) = me.take(&line)? {
            other.send(&fwd).await?;
        }
        if !go_sent && pa.connected() && pb.connected() {
            go_sent = true;
            pa.send("go").await?;
            pb.send("go").await?;
        }
    }
    for p in [&mut pa, &mut pb] {
        let _ = p.send("quit").await;
    }
    // What each side prints until it exits still counts (its decision
    // log of the last candidates).
    for p in [&mut pa, &mut pb] {
        let rest = async {
            while let Ok(Some(l)) = p.lines.next_line().await {
                let _ = p.take(&l);
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), rest).await;
    }
    for p in [&mut pa, &mut pb] {
        match tokio::time::timeout(Duration::from_secs(5), p.child.wait()).await {
            Ok(Ok(s)) if s.success() => {}
            Ok(Ok(s)) => return Err(format!("{} exited with {s}", p.name)),
            Ok(Err(e)) => return Err(format!("{}: wait: {e}", p.name)),
            Err(_) => {
                let _ = p.child.kill().await;
                return Err(format!("{} did not exit after quit", p.name));
            }
        }
    }
    Ok((pa.report, pb.report))
}

/// Median and 95th percentile (nearest rank) of `v`.
pub fn median_p95(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let rank = |q: f64| {
        let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
        s[i]
    };
    let median = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    (median, rank(0.95))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p95() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(median_p95(&v), (10.5, 19.0));
        assert_eq!(median_p95(&[3.0, 1.0, 2.0]), (2.0, 3.0));
        assert!(median_p95(&[]).0.is_nan());
    }

    #[test]
    fn decision_fields() {
        let r = PeerReport {
            decision: Some("network=local stage=local-only stun=0".into()),
            remote: Some("192.168.77.1:5000".into()),
            candidates: vec!["1 1 UDP 2130706431 192.168.77.2 5000 typ host".into()],
            ..PeerReport::default()
        };
        assert_eq!(r.decision_field("network"), Some("local"));
        assert_eq!(r.decision_field("stun"), Some("0"));
        assert_eq!(r.decision_field("stage"), Some("local-only"));
        assert_eq!(r.decision_field("nope"), None);
        assert_eq!(r.remote_ip(), Some(IpAddr::V4(ROUTER_LAN)));
        assert_eq!(r.candidates_of("host").len(), 1);
        assert!(r.candidates_of("srflx").is_empty());
    }
}
