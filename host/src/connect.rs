//! `scream-ice connect URL`: a speaker simulator built on the same core
//! and adapter as the real speakers and the daemon.
//!
//! Where it sits: the other end of [`crate::sessions`]. It decides with the
//! core policy for the router's address (mode `auto`; STUN only from
//! `--stun`, and only if the policy wants it), starts a controlling
//! [`IceSession`], `POST`s its fragment to `URL/api/ice/sessions`, applies
//! the answer, `PATCH`es candidates gathered later and end-of-candidates,
//! polls `GET` on the session while the router's candidates are not
//! complete, and waits for a selected pair. Then it sends test datagrams
//! (magic, sequence number, send time) that the router echoes, reports
//! loss and round-trip times, and `DELETE`s the session.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use scream_ice_core::agent::{ConnectionState, GatheringState, Role};
use scream_ice_core::candidate::Candidate;
use scream_ice_core::policy::{
    FallbackStage, IceMode, PeerKnowledge, PolicyConfig, StunServer, decide,
};
use scream_ice_core::sdpfrag::SdpFrag;
use scream_ice_tokio::{HostAddresses, HostFilter, IceSession, SessionConfig, SessionEvent};

use crate::client::{BaseUrl, Reply, request};
use crate::sessions::{SDPFRAG, write_sdpfrag};

/// Test datagrams start with these four bytes.
pub const PROBE_MAGIC: &[u8; 4] = b"SIEP";

/// How long one HTTP request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// What `connect` does.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The router's base URL, `http://HOST[:PORT][/PREFIX]`.
    pub url: String,
    /// Test datagrams to send once connected.
    pub count: u32,
    /// Interval between test datagrams.
    pub interval: Duration,
    /// Bind the host sockets on these addresses (empty: discover).
    pub bind: Vec<IpAddr>,
    /// STUN servers the policy may choose from (`stun:` URLs).
    pub stun: Vec<String>,
    /// Give up if no pair is selected this long after the start.
    pub timeout: Duration,
}

impl ConnectOptions {
    /// 10 datagrams 20 ms apart, discovery, no STUN, 10 s to connect.
    pub fn new(url: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            url: url.into(),
            count: 10,
            interval: Duration::from_millis(20),
            bind: Vec::new(),
            stun: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ConnectReport {
    /// From the session's start to the selected pair.
    pub time_to_connected: Duration,
    /// The selected pair (ours, the router's).
    pub selected: (SocketAddr, SocketAddr),
    /// Test datagrams sent.
    pub sent: u32,
    /// Echoes received (each sequence number counted once).
    pub echoed: u32,
    /// Round-trip times of the echoes, sorted.
    pub rtts: Vec<Duration>,
    /// Sequence numbers (from 0) that never came back.
    pub lost: Vec<u32>,
}

impl ConnectReport {
    /// Lost datagrams in percent (0 when none was sent).
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            100.0 * f64::from(self.sent - self.echoed) / f64::from(self.sent)
        }
    }
}

/// Why `connect` failed; one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(pub String);

fn fail(m: impl std::fmt::Display) -> ConnectError {
    ConnectError(m.to_string())
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// The HTTP side: the base URL and the server's address.
struct Http {
    base: BaseUrl,
    addr: SocketAddr,
}

impl Http {
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply, ConnectError> {
        request(
            self.addr,
            &self.base.authority(),
            method,
            path,
            headers,
            body,
            HTTP_TIMEOUT,
        )
        .await
        .map_err(|e| fail(format_args!("{method} {path}: {e}")))
    }
}

/// Run the simulator, printing progress on `out`. `Ok` once connected and
/// the datagrams were sent (whatever the loss).
pub async fn run(
    opts: &ConnectOptions,
    out: &mut (impl Write + Send),
) -> Result<ConnectReport, ConnectError> {
    let base = BaseUrl::parse(&opts.url).map_err(fail)?;
    let addr = base.resolve().await.map_err(fail)?;
    let http = Http { base, addr };

    // The decision for the router's address.
    let stun: Vec<StunServer<'_>> = opts
        .stun
        .iter()
        .map(|url| StunServer { url, enabled: true })
        .collect();
    let mut policy = PolicyConfig::new(IceMode::Auto);
    policy.stun_servers = &stun;
    policy
        .validate()
        .map_err(|e| fail(format_args!("--stun: {e}")))?;
    let peer = PeerKnowledge::with_address(addr.ip());
    let decision = decide(&policy, &peer, FallbackStage::LocalOnly);
    let _ = writeln!(
        out,
        "decision: router {addr}, network {}, stage {}, STUN {}",
        decision.network,
        decision.stage,
        if decision.gathers_srflx() {
            format!("yes ({} servers)", decision.stun_servers.iter().count())
        } else {
            "no".to_string()
        }
    );

    let mut config = SessionConfig::for_peer(Role::Controlling, &policy, &peer);
    config.hosts = if opts.bind.is_empty() {
        let mut f = HostFilter::new();
        f.include_loopback = decision.offer_loopback_host_candidates;
        HostAddresses::Discover(f)
    } else {
        HostAddresses::Explicit(opts.bind.iter().map(|ip| SocketAddr::new(*ip, 0)).collect())
    };
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + opts.timeout);
    let (mut session, mut events) = IceSession::start(config)
        .await
        .map_err(|e| fail(format_args!("cannot start the ICE session: {e}")))?;
    let creds = session.local_credentials().clone();

    let mut local: Vec<Candidate> = Vec::new();
    let mut complete = false;
    while let Some(e) = events.try_recv() {
        match e {
            SessionEvent::LocalCandidate(c) => local.push(c),
            SessionEvent::Gathering(g) => complete = g == GatheringState::Complete,
            _ => {}
        }
    }
    for c in &local {
        let _ = writeln!(out, "local candidate: {}", c.to_attribute());
    }
    let offer = write_sdpfrag(&creds.ufrag, &creds.pwd, &local, complete).map_err(fail)?;

    let collection = format!("{}/api/ice/sessions", http.base.prefix);
    let reply = http
        .send(
            "POST",
            &collection,
            &[("Content-Type", SDPFRAG)],
            offer.as_bytes(),
        )
        .await?;
    if reply.status != 201 {
        return Err(fail(format_args!(
            "POST {collection}: {} {}",
            reply.status,
            reply.text().trim()
        )));
    }
    let location = reply
        .header("location")
        .ok_or_else(|| fail("201 without Location"))?
        .to_string();
    let location = if location.starts_with('/') {
        location
    } else {
        return Err(fail(format_args!(
            "Location {location:?} is not an absolute path"
        )));
    };
    let etag = reply
        .header("etag")
        .ok_or_else(|| fail("201 without ETag"))?
        .to_string();
    let answered = start.elapsed();
    let _ = writeln!(
        out,
        "session: {location} (ETag {etag}), answered {} after the start",
        ms(answered)
    );

    let answer = reply.text();
    let frag = SdpFrag::parse(&answer).map_err(|e| fail(format_args!("router's answer: {e}")))?;
    let (Some(ufrag), Some(pwd)) = (frag.ice_ufrag(), frag.ice_pwd()) else {
        return Err(fail("router's answer has no ice-ufrag/ice-pwd"));
    };
    session
        .set_remote_credentials(ufrag, pwd)
        .await
        .map_err(|e| fail(format_args!("router's credentials: {e}")))?;
    let mut remote_seen: Vec<String> = Vec::new();
    let mut remote_complete = false;
    apply_remote(&session, &frag, &mut remote_seen, &mut remote_complete, out).await;

    // Trickle until a pair is selected.
    let mut eoc_sent = complete;
    if complete {
        let _ = writeln!(out, "end-of-candidates sent with the offer");
    }
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let selected = loop {
        tokio::select! {
            e = events.recv() => match e {
                Some(SessionEvent::LocalCandidate(c)) => {
                    let _ = writeln!(out, "local candidate: {}", c.to_attribute());
                    let body = write_sdpfrag(&creds.ufrag, &creds.pwd, &[c], false).map_err(fail)?;
                    patch(&http, &location, &etag, &body).await?;
                }
                Some(SessionEvent::Gathering(GatheringState::Complete)) if !eoc_sent => {
                    let body = write_sdpfrag(&creds.ufrag, &creds.pwd, &[], true).map_err(fail)?;
                    patch(&http, &location, &etag, &body).await?;
                    eoc_sent = true;
                    let _ = writeln!(out, "end-of-candidates sent");
                }
                Some(SessionEvent::Selected { local, remote }) => break (local, remote),
                Some(SessionEvent::Failed(r)) => {
                    return Err(fail(format_args!("ICE failed: {r}")));
                }
                Some(SessionEvent::Connection(ConnectionState::Failed)) => {
                    return Err(fail("ICE failed"));
                }
                Some(_) => {}
                None => return Err(fail("the ICE session ended")),
            },
            _ = poll.tick(), if !remote_complete => {
                let r = http.send("GET", &location, &[], b"").await?;
                if r.status == 200 {
                    let text = r.text();
                    if let Ok(f) = SdpFrag::parse(&text) {
                        apply_remote(&session, &f, &mut remote_seen, &mut remote_complete, out).await;
                    }
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                let _ = http.send("DELETE", &location, &[], b"").await;
                return Err(fail(format_args!("not connected within {}", ms(opts.timeout))));
            }
        }
    };
    let time_to_connected = start.elapsed();
    let _ = writeln!(
        out,
        "connected in {} ({} after the answer; selected pair {} -> {})",
        ms(time_to_connected),
        ms(time_to_connected.saturating_sub(answered)),
        selected.0,
        selected.1
    );
    let _ = out.flush();

    let (sent, rtts, lost) = measure(&mut session, opts).await;
    let report = ConnectReport {
        time_to_connected,
        selected,
        sent,
        echoed: u32::try_from(rtts.len()).unwrap_or(u32::MAX),
        rtts,
        lost,
    };
    let rtt = if report.rtts.is_empty() {
        "no echo".to_string()
    } else {
        format!(
            "rtt min {} median {} max {}",
            ms(report.rtts[0]),
            ms(report.rtts[report.rtts.len() / 2]),
            ms(report.rtts[report.rtts.len() - 1])
        )
    };
    let _ = writeln!(
        out,
        "datagrams: {} sent, {} echoed, loss {:.1} %, {rtt}",
        report.sent,
        report.echoed,
        report.loss_percent()
    );
    if !report.lost.is_empty() {
        let first: Vec<String> = report.lost.iter().take(20).map(u32::to_string).collect();
        let more = if report.lost.len() > 20 { ", ..." } else { "" };
        let _ = writeln!(out, "lost sequence numbers: {}{more}", first.join(", "));
    }
    let r = http.send("DELETE", &location, &[], b"").await?;
    let _ = writeln!(out, "DELETE {location}: {}", r.status);
    let _ = session.close().await;
    Ok(report)
}

/// PATCH one trickle fragment; anything but 204 is an error.
async fn patch(http: &Http, location: &str, etag: &str, body: &str) -> Result<(), ConnectError> {
    let r = http
        .send(
            "PATCH",
            location,
            &[("Content-Type", SDPFRAG), ("If-Match", etag)],
            body.as_bytes(),
        )
        .await?;
    if r.status != 204 {
        return Err(fail(format_args!(
            "PATCH {location}: {} {}",
            r.status,
            r.text().trim()
        )));
    }
    Ok(())
}

/// Feed the router's candidates not seen yet, and its end-of-candidates.
async fn apply_remote(
    session: &IceSession,
    frag: &SdpFrag<'_>,
    seen: &mut Vec<String>,
    complete: &mut bool,
    out: &mut (impl Write + Send),
) {
    for c in frag.candidates() {
        let line = c.to_string();
        if seen.contains(&line) {
            continue;
        }
        let _ = writeln!(out, "remote candidate: {line}");
        if let Err(e) = session.add_remote_candidate_line(&line).await {
            let _ = writeln!(out, "remote candidate skipped: {e}");
        }
        seen.push(line);
    }
    if frag.end_of_candidates() && !*complete {
        *complete = true;
        let _ = writeln!(out, "remote end-of-candidates");
        let _ = session.end_of_remote_candidates().await;
    }
}

/// Send `count` probes `interval` apart and collect the echoes: (sent,
/// sorted RTTs, lost sequence numbers). Waits for stragglers for max(1 s,
/// 4 x the largest RTT).
async fn measure(
    session: &mut IceSession,
    opts: &ConnectOptions,
) -> (u32, Vec<Duration>, Vec<u32>) {
    let epoch = Instant::now();
    let count = opts.count;
    let mut echoed = vec![false; usize::try_from(count).unwrap_or(0)];
    let mut rtts = Vec::new();
    let mut next = 0u32;
    let mut tick = tokio::time::interval(opts.interval.max(Duration::from_micros(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut grace_until: Option<tokio::time::Instant> = None;
    loop {
        if next >= count && rtts.len() == echoed.len() {
            break;
        }
        let grace = grace_until.unwrap_or_else(|| tokio::time::Instant::now() + opts.timeout);
        tokio::select! {
            _ = tick.tick(), if next < count => {
                let mut p = Vec::with_capacity(16);
                p.extend_from_slice(PROBE_MAGIC);
                p.extend_from_slice(&next.to_be_bytes());
                let micros = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
                p.extend_from_slice(&micros.to_be_bytes());
                let _ = session.send(&p).await;
                next += 1;
                if next == count {
                    let max: Duration = rtts.iter().max().copied().unwrap_or_default();
                    grace_until = Some(tokio::time::Instant::now() + (max * 4).max(Duration::from_secs(1)));
                }
            }
            d = session.recv() => {
                let Some(d) = d else { break };
                if let Some((seq, sent)) = parse_probe(&d.data) {
                    let now = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
                    if let Some(slot) = usize::try_from(seq).ok().and_then(|i| echoed.get_mut(i))
                        && !*slot
                    {
                        *slot = true;
                        rtts.push(Duration::from_micros(now.saturating_sub(sent)));
                    }
                }
            }
            () = tokio::time::sleep_until(grace), if grace_until.is_some() => break,
        }
    }
    rtts.sort();
    let lost = (0..next)
        .filter(|&i| {
            !usize::try_from(i)
                .ok()
                .and_then(|i| echoed.get(i))
                .is_some_and(|e| *e)
        })
        .collect();
    (next, rtts, lost)
}

/// (sequence number, send time in µs) of a probe.
fn parse_probe(d: &[u8]) -> Option<(u32, u64)> {
    let rest = d.strip_prefix(PROBE_MAGIC)?;
    let seq = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let ts = u64::from_be_bytes(rest.get(4..12)?.try_into().ok()?);
    Some((seq, ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse() {
        let mut p = PROBE_MAGIC.to_vec();
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend_from_slice(&1234u64.to_be_bytes());
        assert_eq!(parse_probe(&p), Some((7, 1234)));
        assert_eq!(parse_probe(&p[..10]), None);
        assert_eq!(parse_probe(b"XXXX00000000000000"), None);
        assert_eq!(parse_probe(b""), None);
    }

    #[test]
    fn loss() {
        let mut r = ConnectReport {
            time_to_connected: Duration::ZERO,
            selected: (
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            ),
            sent: 4,
            echoed: 3,
            rtts: vec![],
            lost: vec![3],
        };
        assert_eq!(r.loss_percent(), 25.0);
        r.sent = 0;
        r.echoed = 0;
        assert_eq!(r.loss_percent(), 0.0);
    }
}
