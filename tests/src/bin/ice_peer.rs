//! One scream-ice session (`scream_ice_tokio::Driver`) driven over
//! stdin/stdout, for the network-namespace harness (`tests/tests/netns.rs`).
//! `tests/peers/netns_aioice_peer.py` speaks the same protocol with an
//! aioice agent, so the driver can pair any two of {ours, aioice}.
//!
//! ```text
//! ice_peer --role controlling|controlled --host IP [--host IP ...]
//!          [--peer IP] [--stun IP:PORT ...] [--mode auto|local-only|stun-required|full|legacy]
//!          [--turn IP:PORT] [--local-subnet CIDR ...] [--count N]
//! ```
//!
//! The policy decision comes from the core's `decide` for a peer at
//! `--peer` (nothing known without it) with `--stun` as the configured
//! STUN server; host sockets are bound on exactly the `--host` addresses.
//!
//! Peer to driver (stdout), one line each:
//! ```text
//! decision network=<local|nat|..> stage=<..> stun=<n> eoc_at_once=<bool> fast_path=<bool> pacing_ms=<n>
//! ready                       (waiting for `start`)
//! ufrag <ufrag> / pwd <pwd>
//! cand <candidate-attribute value without "candidate:">
//! eoc                         (end of our candidates)
//! gathered <ms>               (session start to end-of-candidates)
//! connected <ms> <local> <remote>   (session start to the selected pair)
//! stage <stage>               (the stage in force at the selection)
//! decided network=<..> stage=<..> srflx=<bool> relay=<bool>   (the session's decision log)
//! widened <stage> <ms>        (a step of the fallback ladder)
//! relay-wanted                (the session asks for TURN relays)
//! done <data> <echoes>        (all COUNT datagrams and COUNT echoes arrived)
//! error <text>
//! ```
//! Driver to peer (stdin): `start`, then the other side's `ufrag`, `pwd`,
//! `cand`, `eoc`; `go` once both sides are connected (then each side sends
//! COUNT datagrams `d-<i>` and echoes every `d-*` it receives as `echo:d-*`);
//! `quit` (or end of input) ends the process.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Instant;

use scream_ice_tokio::scream_ice_core::agent::{GatheringState, Role};
use scream_ice_tokio::scream_ice_core::net::Cidr;
use scream_ice_tokio::scream_ice_core::policy::{
    FallbackStage, IceMode, PeerKnowledge, PolicyConfig, StunServer, TurnServer, decide,
};
use scream_ice_tokio::{Driver, HostAddresses, Output, SessionConfig, SessionEvent};
use tokio::io::{AsyncBufReadExt, BufReader};

struct Args {
    role: Role,
    hosts: Vec<IpAddr>,
    peer: Option<IpAddr>,
    stun: Vec<SocketAddr>,
    turn: Option<SocketAddr>,
    local_subnets: Vec<Cidr>,
    mode: IceMode,
    count: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut role = None;
    let mut hosts = Vec::new();
    let mut peer = None;
    let mut stun = Vec::new();
    let mut turn = None;
    let mut local_subnets = Vec::new();
    let mut mode = IceMode::Auto;
    let mut count = 10;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--role" => {
                role = Some(match value.as_str() {
                    "controlling" => Role::Controlling,
                    "controlled" => Role::Controlled,
                    _ => return Err(bad(&"expected controlling or controlled")),
                })
            }
            "--host" => hosts.push(value.parse().map_err(|e| bad(&e))?),
            "--peer" => peer = Some(value.parse().map_err(|e| bad(&e))?),
            "--stun" => stun.push(value.parse().map_err(|e| bad(&e))?),
            "--turn" => turn = Some(value.parse().map_err(|e| bad(&e))?),
            "--local-subnet" => local_subnets.push(Cidr::parse(&value).map_err(|e| bad(&e))?),
            "--mode" => mode = IceMode::parse(&value).map_err(|e| bad(&e))?,
            "--count" => count = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let role = role.ok_or("--role is required")?;
    if hosts.is_empty() {
        return Err("at least one --host is required".into());
    }
    Ok(Args {
        role,
        hosts,
        peer,
        stun,
        turn,
        local_subnets,
        mode,
        count,
    })
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The candidate-attribute value without the `candidate:` prefix (what
/// aioice's `Candidate.from_sdp` reads; ours reads both).
fn sdp_value(line: &str) -> &str {
    line.strip_prefix("candidate:").unwrap_or(line)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            println!("error {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("error runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let urls: Vec<String> = args.stun.iter().map(|a| format!("stun:{a}")).collect();
    let servers: Vec<StunServer<'_>> = urls
        .iter()
        .map(|u| StunServer {
            url: u.as_str(),
            enabled: true,
        })
        .collect();
    let turn_url = args.turn.map(|a| format!("turn:{a}"));
    let turns: Vec<TurnServer<'_>> = turn_url
        .iter()
        .map(|u| TurnServer {
            url: u.as_str(),
            username: Some("user"),
            credential: Some("pass"),
            enabled: true,
        })
        .collect();
    let mut policy = PolicyConfig::new(args.mode);
    policy.stun_servers = &servers;
    policy.turn_servers = &turns;
    policy.network_detection.local_subnets = &args.local_subnets;
    policy
        .validate()
        .map_err(|e| format!("policy config: {e}"))?;
    let knowledge = match args.peer {
        Some(p) => PeerKnowledge::with_address(p),
        None => PeerKnowledge::new(),
    };
    let decision = decide(&policy, &knowledge, FallbackStage::LocalOnly);
    println!(
        "decision network={} stage={} stun={} eoc_at_once={} fast_path={} pacing_ms={}",
        decision.network,
        decision.stage,
        decision.stun_servers.iter().count(),
        decision.end_of_candidates_at_once,
        decision.nominate_host_on_first_success,
        decision.pacing.total_micros() / 1000,
    );
    let mut config = SessionConfig::for_peer(args.role, &policy, &knowledge);
    config.hosts = HostAddresses::Explicit(
        args.hosts
            .iter()
            .map(|ip| SocketAddr::new(*ip, 0))
            .collect(),
    );

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    println!("ready");
    loop {
        match stdin.next_line().await {
            Ok(Some(l)) if l.trim() == "start" => break,
            Ok(Some(l)) if l.trim() == "quit" => return Ok(()),
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("stdin: {e}")),
        }
    }

    let t0 = Instant::now();
    let mut session = Driver::start(config)
        .await
        .map_err(|e| format!("session start: {e}"))?;
    let creds = session.local_credentials();
    println!("ufrag {}", creds.ufrag);
    println!("pwd {}", creds.pwd);

    let mut their_ufrag: Option<String> = None;
    let mut stage = FallbackStage::LocalOnly;
    let mut eoc_sent = false;
    let mut connected = false;
    let mut data = 0usize;
    let mut echoes = 0usize;
    let mut done = false;
    enum In {
        Line(std::io::Result<Option<String>>),
        Event(SessionEvent),
        Data(scream_ice_tokio::Datagram),
        Other,
    }
    loop {
        let input = tokio::select! {
            l = stdin.next_line() => In::Line(l),
            o = session.next() => match o {
                Output::Event(e) => In::Event(e),
                Output::Data(d) => In::Data(d),
                _ => In::Other,
            },
        };
        match input {
            In::Line(Err(e)) => return Err(format!("stdin: {e}")),
            In::Line(Ok(None)) => break,
            In::Line(Ok(Some(l))) => {
                let l = l.trim();
                let (word, rest) = l.split_once(' ').unwrap_or((l, ""));
                match word {
                    "ufrag" => their_ufrag = Some(rest.to_owned()),
                    "pwd" => {
                        let ufrag = their_ufrag.as_deref().ok_or("pwd before ufrag")?;
                        session
                            .set_remote_credentials(ufrag, rest)
                            .map_err(|e| format!("remote credentials: {e}"))?;
                    }
                    "cand" => {
                        if let Err(e) = session.add_remote_candidate_line(rest).await {
                            // A candidate we cannot use (e.g. IPv6) is skipped.
                            eprintln!("ice_peer: remote candidate {rest:?} skipped: {e}");
                        }
                    }
                    "eoc" => session.end_of_remote_candidates(),
                    "go" => {
                        for i in 0..args.count {
                            send(&session, format!("d-{i}").as_bytes()).await?;
                        }
                        if args.count == 0 && !done {
                            done = true;
                            println!("done 0 0");
                        }
                    }
                    "quit" => {
                        // The decision log of what was applied so far.
                        while let Some(o) = session.try_next() {
                            let Output::Event(e) = o else { continue };
                            match e {
                                SessionEvent::Decided(d) => println!(
                                    "decided network={} stage={} srflx={} relay={}",
                                    d.network,
                                    d.stage,
                                    d.gathers_srflx(),
                                    d.gathers_relay()
                                ),
                                SessionEvent::RelayWanted(_) => println!("relay-wanted"),
                                _ => {}
                            }
                        }
                        break;
                    }
                    _ => {}
                }
            }
            In::Other => {}
            In::Event(e) => match e {
                SessionEvent::LocalCandidate(c) => {
                    println!("cand {}", sdp_value(&c.to_attribute().to_string()));
                }
                SessionEvent::Gathering(GatheringState::Complete) if !eoc_sent => {
                    eoc_sent = true;
                    println!("eoc");
                    println!("gathered {:.3}", ms(t0.elapsed()));
                }
                SessionEvent::Selected { local, remote } if !connected => {
                    connected = true;
                    println!("connected {:.3} {local} {remote}", ms(t0.elapsed()));
                    println!("stage {stage}");
                }
                SessionEvent::Decided(d) => {
                    stage = d.stage;
                    println!(
                        "decided network={} stage={} srflx={} relay={}",
                        d.network,
                        d.stage,
                        d.gathers_srflx(),
                        d.gathers_relay()
                    );
                }
                SessionEvent::Widened { stage, .. } => {
                    println!("widened {stage} {:.3}", ms(t0.elapsed()));
                }
                SessionEvent::RelayWanted(_) => println!("relay-wanted"),
                SessionEvent::Failed(r) => return Err(format!("ICE failed: {r}")),
                _ => {}
            },
            In::Data(d) => {
                if d.data.starts_with(b"echo:d-") {
                    echoes += 1;
                } else if d.data.starts_with(b"d-") {
                    data += 1;
                    let mut echo = b"echo:".to_vec();
                    echo.extend_from_slice(&d.data);
                    send(&session, &echo).await?;
                }
                if !done && data >= args.count && echoes >= args.count {
                    done = true;
                    println!("done {data} {echoes}");
                }
            }
        }
    }
    drop(session);
    Ok(())
}

/// Send one datagram over the selected pair.
async fn send(session: &Driver, data: &[u8]) -> Result<(), String> {
    let (socket, _, remote) = session
        .selected_path()
        .ok_or("send: no selected candidate pair to send on")?;
    socket
        .send_to(data, remote)
        .await
        .map_err(|e| format!("send to {remote}: {e}"))?;
    Ok(())
}
