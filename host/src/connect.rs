//! `scream-ice connect URL`: a speaker simulator built on the same core
//! and adapter as the real speakers and the daemon.
//!
//! Where it sits: the other end of [`crate::sessions`]. It decides with the
//! core policy for the router's address (mode `auto`; STUN only from
//! `--stun`, and only if the policy wants it), starts a controlling
//! [`Driver`], `POST`s its fragment to `URL/api/ice/sessions`, applies
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
use scream_ice_tokio::{Driver, HostAddresses, HostFilter, Output, SessionConfig, SessionEvent};

use scream_ice_core::signal::{self, Client, HttpUrl};

use crate::client::Reply;
use crate::sessions::write_sdpfrag;

/// Test datagrams start with these four bytes.
pub const PROBE_MAGIC: &[u8; 4] = b"SIEP";

/// How often the interfaces are discovered again when `--bind` is not given.
const INTERFACE_POLL: Duration = Duration::from_millis(250);

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
    /// Play a sink instead of sending test datagrams (`--sink`).
    pub audio: Option<AudioOptions>,
}

/// `connect --sink NAME --wav FILE`: subscribe to a router sink and write
/// what a speaker would play.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AudioOptions {
    /// The sink (`POST /api/ice/sessions?sink=NAME`).
    pub sink: String,
    /// Where the audio goes (a new file per format, see
    /// [`crate::receiver`]).
    pub wav: std::path::PathBuf,
    /// Receive at most this long after the pair is selected.
    pub duration: Duration,
    /// Stop earlier once the stream has stopped this long (and the
    /// buffer has played out).
    pub idle_stop: Duration,
    /// The playout's settings (target latency, drift correction).
    pub playout: scream_ice_core::playout::Config,
    /// Restart ICE (new ufrag/pwd, `PATCH`) this long after the pair is
    /// selected, mid-stream: what the restart costs the audio shows as
    /// [`AudioReport::max_gap`].
    pub restart_after: Option<Duration>,
}

impl AudioOptions {
    /// 10 s at most, stop after 1 s without audio, default playout.
    pub fn new(sink: impl Into<String>, wav: impl Into<std::path::PathBuf>) -> AudioOptions {
        AudioOptions {
            sink: sink.into(),
            wav: wav.into(),
            duration: Duration::from_secs(10),
            idle_stop: Duration::from_secs(1),
            playout: scream_ice_core::playout::Config::default(),
            restart_after: None,
        }
    }
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
            audio: None,
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug)]
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
    /// With `--sink`: what the speaker played and counted.
    pub audio: Option<AudioReport>,
}

/// What the speaker simulator measured while playing a sink.
#[derive(Clone, Debug)]
pub struct AudioReport {
    /// The playout's counters and the files written.
    pub receive: crate::receiver::Report,
    /// The longest time between two datagrams after the first.
    pub max_gap: Duration,
    /// With a restart: the longest time between two datagrams of which
    /// the later one arrived within 1 s after the restart began (the
    /// restart's audio gap), and when the pair was selected again after it.
    pub restart: Option<RestartReport>,
}

/// What an ICE restart mid-stream cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartReport {
    /// The audio gap around it (see [`AudioReport::restart`]).
    pub gap: Duration,
    /// From the restart to the new selected pair (`None`: not seen
    /// before the end).
    pub reselected_after: Option<Duration>,
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

/// The HTTP side: the core's signaling client and the server's address.
/// One TCP connection per request; requests and replies go through
/// `scream_ice_core::signal`, the code the speakers run.
struct Http {
    client: Client,
    addr: SocketAddr,
}

impl Http {
    /// Send the request `write` puts into a buffer; read the whole reply.
    async fn send(
        &self,
        what: &str,
        write: impl Fn(&Client, &mut [u8]) -> Result<usize, signal::SignalError>,
    ) -> Result<Reply, ConnectError> {
        let err = |e: &dyn std::fmt::Display| fail(format_args!("{what}: {e}"));
        let mut req = vec![0u8; 2048];
        let n = match write(&self.client, &mut req) {
            Err(signal::SignalError::InsufficientSize { required }) => {
                req.resize(required, 0);
                write(&self.client, &mut req).map_err(|e| err(&e))?
            }
            r => r.map_err(|e| err(&e))?,
        };
        crate::client::exchange(self.addr, &req[..n], HTTP_TIMEOUT)
            .await
            .map_err(|e| err(&e))
    }
}

/// Run the simulator, printing progress on `out`. `Ok` once connected and
/// the datagrams were sent (whatever the loss).
pub async fn run(
    opts: &ConnectOptions,
    out: &mut (impl Write + Send),
) -> Result<ConnectReport, ConnectError> {
    let url = HttpUrl::parse(&opts.url).ok_or_else(|| {
        fail(format_args!(
            "bad URL {:?} (expected http://HOST[:PORT][/PATH])",
            opts.url
        ))
    })?;
    let addr = tokio::net::lookup_host((url.host, url.port))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| fail(format_args!("cannot resolve {}", url.host)))?;
    let client = Client::for_url(&url).map_err(fail)?;
    let mut http = Http { client, addr };

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
        // A speaker's address may change (DHCP, Wi-Fi roaming): follow it.
        config.interface_poll = Some(INTERFACE_POLL);
        HostAddresses::Discover(f)
    } else {
        HostAddresses::Explicit(opts.bind.iter().map(|ip| SocketAddr::new(*ip, 0)).collect())
    };
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + opts.timeout);
    let mut session = Driver::start(config)
        .await
        .map_err(|e| fail(format_args!("cannot start the ICE session: {e}")))?;
    let creds = session.local_credentials();

    let mut local: Vec<Candidate> = Vec::new();
    let mut complete = false;
    while let Some(o) = session.try_next() {
        match o {
            Output::Event(SessionEvent::LocalCandidate(c)) => local.push(c),
            Output::Event(SessionEvent::Gathering(g)) => complete = g == GatheringState::Complete,
            _ => {}
        }
    }
    for c in &local {
        let _ = writeln!(out, "local candidate: {}", c.to_attribute());
    }
    let offer = write_sdpfrag(&creds.ufrag, &creds.pwd, &local, complete).map_err(fail)?;

    let collection = format!("{}{}", url.prefix, signal::SESSIONS_PATH);
    let query = opts.audio.as_ref().map(|a| format!("sink={}", a.sink));
    let reply = http
        .send(&format!("POST {collection}"), |c, buf| match &query {
            Some(q) => c.write_post_query(buf, q, offer.as_bytes()),
            None => c.write_post(buf, offer.as_bytes()),
        })
        .await?;
    if reply.status != 201 {
        return Err(fail(format_args!(
            "POST {collection}: {} {}",
            reply.status,
            reply.text().trim()
        )));
    }
    http.client
        .handle_created(&signal::Response {
            status: reply.status,
            location: reply.location.as_deref(),
            etag: reply.etag.as_deref(),
            content_type: None,
            body: &reply.body,
        })
        .map_err(|e| match e {
            signal::SignalError::NoSession => fail("201 without Location"),
            _ => fail(format_args!(
                "Location {:?} is not an absolute path",
                reply.location.as_deref().unwrap_or_default()
            )),
        })?;
    let location = http.client.location().unwrap_or_default().to_string();
    // A 201 without ETag is tolerated: PATCHes then go without If-Match.
    let etag = http.client.etag().unwrap_or("none").to_string();
    let answered = start.elapsed();
    let _ = writeln!(
        out,
        "session: {location} (ETag {etag}), answered {} after the start",
        ms(answered)
    );

    let answer = reply.text();
    // With `?sink=`: the stream's format, once the sink has had audio.
    for l in answer.lines().filter(|l| l.starts_with("a=rtpmap:")) {
        let _ = writeln!(out, "stream format: {l}");
    }
    let frag = SdpFrag::parse(&answer).map_err(|e| fail(format_args!("router's answer: {e}")))?;
    let (Some(ufrag), Some(pwd)) = (frag.ice_ufrag(), frag.ice_pwd()) else {
        return Err(fail("router's answer has no ice-ufrag/ice-pwd"));
    };
    session
        .set_remote_credentials(ufrag, pwd)
        .map_err(|e| fail(format_args!("router's credentials: {e}")))?;
    let mut remote_seen: Vec<String> = Vec::new();
    let mut remote_complete = false;
    apply_remote(
        &mut session,
        &frag,
        &mut remote_seen,
        &mut remote_complete,
        out,
    )
    .await;

    // Trickle until a pair is selected.
    let mut eoc_sent = complete;
    if complete {
        let _ = writeln!(out, "end-of-candidates sent with the offer");
    }
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let selected = loop {
        tokio::select! {
            o = session.next() => match o {
                Output::Event(SessionEvent::LocalCandidate(c)) => {
                    let _ = writeln!(out, "local candidate: {}", c.to_attribute());
                    local.push(c);
                    let body = write_sdpfrag(&creds.ufrag, &creds.pwd, &[c], false).map_err(fail)?;
                    patch(&mut http, &body).await?;
                }
                Output::Event(SessionEvent::Gathering(GatheringState::Complete)) if !eoc_sent => {
                    let body = write_sdpfrag(&creds.ufrag, &creds.pwd, &[], true).map_err(fail)?;
                    patch(&mut http, &body).await?;
                    eoc_sent = true;
                    let _ = writeln!(out, "end-of-candidates sent");
                }
                Output::Event(SessionEvent::Selected { local, remote }) => break (local, remote),
                Output::Event(SessionEvent::Failed(r)) => {
                    return Err(fail(format_args!("ICE failed: {r}")));
                }
                Output::Event(SessionEvent::Connection(ConnectionState::Failed)) => {
                    return Err(fail("ICE failed"));
                }
                _ => {}
            },
            _ = poll.tick(), if !remote_complete => {
                let r = http.send(&format!("GET {location}"), |c, buf| c.write_get(buf)).await?;
                if r.status == 200 {
                    let text = r.text();
                    if let Ok(f) = SdpFrag::parse(&text) {
                        apply_remote(&mut session, &f, &mut remote_seen, &mut remote_complete, out).await;
                    }
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                let _ = http.send(&format!("DELETE {location}"), |c, buf| c.write_delete(buf)).await;
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

    let audio = match &opts.audio {
        Some(a) => {
            let r = play(&mut session, &mut http, a, out).await?;
            for l in r.receive.lines() {
                let _ = writeln!(out, "{l}");
            }
            let _ = writeln!(out, "largest gap between datagrams {}", ms(r.max_gap));
            if let Some(x) = r.restart {
                let _ = writeln!(
                    out,
                    "ICE restart: audio gap {}, pair selected again {}",
                    ms(x.gap),
                    x.reselected_after
                        .map_or("never".to_string(), |d| format!("after {}", ms(d)))
                );
            }
            Some(r)
        }
        None => None,
    };
    let (sent, rtts, lost) = if audio.is_some() {
        (0, Vec::new(), Vec::new())
    } else {
        measure(&mut session, opts).await
    };
    let report = ConnectReport {
        audio,
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
    if report.audio.is_none() {
        let _ = writeln!(
            out,
            "datagrams: {} sent, {} echoed, loss {:.1} %, {rtt}",
            report.sent,
            report.echoed,
            report.loss_percent()
        );
    }
    if !report.lost.is_empty() {
        let first: Vec<String> = report.lost.iter().take(20).map(u32::to_string).collect();
        let more = if report.lost.len() > 20 { ", ..." } else { "" };
        let _ = writeln!(out, "lost sequence numbers: {}{more}", first.join(", "));
    }
    let r = http
        .send(&format!("DELETE {location}"), |c, buf| c.write_delete(buf))
        .await?;
    let _ = writeln!(out, "DELETE {location}: {}", r.status);
    drop(session);
    Ok(report)
}

/// PATCH one trickle fragment (with `If-Match` when the router sent an
/// `ETag`); anything but 204 is an error.
async fn patch(http: &mut Http, body: &str) -> Result<(), ConnectError> {
    patch_expecting(http, body, 204).await.map(|_| ())
}

/// PATCH `body`; a status other than `expected` is an error. Keeps a new
/// `ETag` and returns the reply.
async fn patch_expecting(
    http: &mut Http,
    body: &str,
    expected: u16,
) -> Result<Reply, ConnectError> {
    let location = http.client.location().unwrap_or_default().to_string();
    let r = http
        .send(&format!("PATCH {location}"), |c, buf| {
            c.write_patch(buf, body.as_bytes())
        })
        .await?;
    if r.status != expected {
        return Err(fail(format_args!(
            "PATCH {location}: {} {}",
            r.status,
            r.text().trim()
        )));
    }
    let _ = http.client.handle_patched(&signal::Response {
        status: r.status,
        location: None,
        etag: r.etag.as_deref(),
        content_type: None,
        body: &r.body,
    });
    Ok(r)
}

/// Feed the router's candidates not seen yet, and its end-of-candidates.
async fn apply_remote(
    session: &mut Driver,
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
        session.end_of_remote_candidates();
    }
}

/// Send `count` probes `interval` apart and collect the echoes: (sent,
/// sorted RTTs, lost sequence numbers). Waits for stragglers for max(1 s,
/// 4 x the largest RTT).
async fn measure(session: &mut Driver, opts: &ConnectOptions) -> (u32, Vec<Duration>, Vec<u32>) {
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
                if let Some((socket, _, remote)) = session.selected_path() {
                    let _ = socket.send_to(&p, remote).await;
                }
                next += 1;
                if next == count {
                    let max: Duration = rtts.iter().max().copied().unwrap_or_default();
                    grace_until = Some(tokio::time::Instant::now() + (max * 4).max(Duration::from_secs(1)));
                }
            }
            o = session.next() => {
                let Output::Data(d) = o else { continue };
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

/// Receive the sink's RTP from the selected pair through the playout
/// ([`crate::receiver::Receiver`], ticked every 2 ms at the local clock)
/// until `duration` has passed or the stream has been idle for
/// `idle_stop` and played out.
async fn play(
    session: &mut Driver,
    http: &mut Http,
    a: &AudioOptions,
    out: &mut (impl Write + Send),
) -> Result<AudioReport, ConnectError> {
    let mut rx = crate::receiver::Receiver::new(a.playout, &a.wav);
    let start = tokio::time::Instant::now();
    let end = start + a.duration;
    let mut restart_at = a.restart_after.map(|d| start + d);
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Instant> = None;
    let mut max_gap = Duration::ZERO;
    // When the restart began, and what it cost so far.
    let mut restarted: Option<(Instant, RestartReport)> = None;
    let wav_error = |e: std::io::Error| fail(format_args!("{}: {e}", a.wav.display()));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                rx.tick(crate::sinks::now()).map_err(wav_error)?;
                if last.is_some_and(|t| t.elapsed() >= a.idle_stop) && !rx.is_playing() {
                    break;
                }
            }
            o = session.next() => {
                let d = match o {
                    Output::Data(d) => d,
                    Output::Event(SessionEvent::Selected { .. }) => {
                        if let Some((at, r)) = restarted.as_mut()
                            && r.reselected_after.is_none()
                        {
                            r.reselected_after = Some(at.elapsed());
                        }
                        continue;
                    }
                    Output::Event(SessionEvent::Restarted) => {
                        // Our address went away: the session restarted by
                        // itself; tell the router.
                        let r = RestartReport { gap: Duration::ZERO, reselected_after: None };
                        restarted = Some((Instant::now(), r));
                        let _ = writeln!(out, "address change: now {:?}", session.local_addresses());
                        signal_restart(session, http, out).await?;
                        continue;
                    }
                    _ => continue,
                };
                let now = Instant::now();
                if let Some(t) = last {
                    max_gap = max_gap.max(now - t);
                    if let Some((at, r)) = restarted.as_mut()
                        && now - *at <= Duration::from_secs(1)
                    {
                        r.gap = r.gap.max(now - t);
                    }
                }
                last = Some(now);
                rx.handle_datagram(crate::sinks::now(), &d.data);
            }
            () = tokio::time::sleep_until(restart_at.unwrap_or(end)), if restart_at.is_some() => {
                restart_at = None;
                let r = RestartReport { gap: Duration::ZERO, reselected_after: None };
                restarted = Some((Instant::now(), r));
                session.restart();
                signal_restart(session, http, out).await?;
            }
            () = tokio::time::sleep_until(end) => break,
        }
    }
    let receive = rx.finish().map_err(wav_error)?;
    Ok(AudioReport {
        receive,
        max_gap,
        restart: restarted.map(|(_, r)| r),
    })
}

/// Signal an ICE restart from the speaker's side (RFC 8445 section 9, RFC
/// 9725 section 4.4.2), after `session` restarted (asked to, or by itself
/// when its address went away): `PATCH` the new credentials with the
/// candidates of this generation, apply the router's new fragment from the
/// 200.
async fn signal_restart(
    session: &mut Driver,
    http: &mut Http,
    out: &mut (impl Write + Send),
) -> Result<(), ConnectError> {
    let local: Vec<Candidate> = session.session().signalled_candidates().copied().collect();
    let creds = session.local_credentials();
    let body = write_sdpfrag(&creds.ufrag, &creds.pwd, &local, true).map_err(fail)?;
    let r = patch_expecting(http, &body, 200)
        .await
        .map_err(|e| fail(format_args!("ICE restart: {e}")))?;
    let text = r.text();
    let frag =
        SdpFrag::parse(&text).map_err(|e| fail(format_args!("router's restart answer: {e}")))?;
    let (Some(ufrag), Some(pwd)) = (frag.ice_ufrag(), frag.ice_pwd()) else {
        return Err(fail("router's restart answer has no ice-ufrag/ice-pwd"));
    };
    session
        .set_remote_credentials(ufrag, pwd)
        .map_err(|e| fail(format_args!("router's new credentials: {e}")))?;
    let _ = writeln!(
        out,
        "ICE restart: new ufrag {}, router's {ufrag}",
        creds.ufrag
    );
    let (mut seen, mut complete) = (Vec::new(), false);
    apply_remote(session, &frag, &mut seen, &mut complete, out).await;
    Ok(())
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
            audio: None,
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
