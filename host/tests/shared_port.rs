//! `server.ice_port`: every speaker session of the built `scream-ice serve`
//! on one UDP socket per local address. Through real sessions (each
//! speaker POSTs `?sink=living` and connects over ICE), in one run, with
//! and without the shared port:
//!
//! - every speaker gets every datagram the sink ingested, in order;
//! - with the shared port the daemon's socket count does not grow with the
//!   speakers, and the relay sends each datagram to all of them in one
//!   `sendmmsg` (`scream_ice_sink_sendmmsg_calls_total` equals the
//!   datagrams); with a socket per session it takes one call per speaker;
//! - the daemon's CPU time per forwarded message is printed for both.
//!
//! `SHARED_SPEAKERS` (default 100) and `SHARED_SECONDS` (of audio, default
//! 2). The figures in docs/BENCHMARKS.md:
//! `SHARED_SPEAKERS=1000 SHARED_SECONDS=10 cargo test --release -p scream-ice-host --test shared_port -- --nocapture`

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use scream_ice_core::scream::ScreamFormat;
use scream_ice_core::scream::rtp::Header;
use scream_ice_host::scream_cli::{Pacer, default_mask, tone};
use scream_ice_tokio::Output;
use support::{
    Daemon, all_connected, clock_ticks_per_second, connect_speaker, cpu_ticks, fd_targets,
    many_speakers_config, metric, temp_dir,
};
use tokio::sync::{Semaphore, watch};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

/// What one run measured.
#[derive(Debug)]
struct Run {
    /// Scream datagrams the sender sent.
    sent: f64,
    /// Scream datagrams the sink ingested.
    datagrams: f64,
    /// RTP messages the relay sent, over all speakers.
    messages: f64,
    /// `sendmmsg` calls.
    calls: f64,
    /// Datagrams sent that some speaker did not get, over all of them.
    lost: u64,
    /// Speakers that saw a sequence number out of order.
    out_of_order: usize,
    /// The daemon's sockets with every speaker connected, minus before.
    socket_growth: usize,
    /// Daemon CPU time while the audio flowed, per message sent.
    cpu_ns_per_message: f64,
    /// How long after the sender's last datagram the relay had forwarded
    /// it (to within a 50 ms poll).
    behind: Duration,
}

/// Speaker `i`: connect, then count the sink's RTP datagrams until `stop`.
async fn speaker(
    http: SocketAddr,
    i: usize,
    setup: Arc<Semaphore>,
    connected: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> Result<(u64, bool), String> {
    let permit = setup.acquire_owned().await.unwrap();
    let (mut d, _) = connect_speaker(http, "/api/ice/sessions?sink=living", i).await?;
    drop(permit);
    connected.fetch_add(1, Ordering::SeqCst);
    let (mut got, mut ordered, mut last) = (0u64, true, None::<u16>);
    loop {
        tokio::select! {
            o = d.next() => if let Output::Data(x) = o
                && let Ok((h, _)) = Header::parse(&x.data)
            {
                got += 1;
                ordered &= last.is_none_or(|l| h.sequence == l.wrapping_add(1));
                last = Some(h.sequence);
            },
            _ = stop.changed() => break,
        }
    }
    Ok((got, ordered))
}

fn sockets(pid: u32) -> usize {
    fd_targets(pid)
        .iter()
        .filter(|t| t.starts_with("socket:"))
        .count()
}

async fn run(shared: bool, speakers: usize, seconds: f64) -> Run {
    let dir = temp_dir(if shared {
        "scream_ice_shared"
    } else {
        "scream_ice_per_session"
    });
    let sink_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = many_speakers_config(
        &dir,
        speakers,
        if shared {
            "  ice_port: 0\n"
        } else {
            "  ice_port: per-session\n"
        },
        &format!("sinks:\n  - name: living\n    listen: \"127.0.0.1:{sink_port}\"\n"),
    );
    let daemon = Daemon::start(&cfg);
    let pid = daemon.pid();
    let idle_sockets = sockets(pid);

    let setup = Arc::new(Semaphore::new(32));
    let connected = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks: Vec<_> = (0..speakers)
        .map(|i| {
            tokio::spawn(speaker(
                daemon.http,
                i,
                setup.clone(),
                connected.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    let limit = Duration::from_secs(60 + speakers as u64 / 10);
    let tasks = all_connected(tasks, &connected, speakers, limit, &stop_tx).await;
    let socket_growth = sockets(pid).saturating_sub(idle_sockets);

    // The audio: paced like the Scream driver, from a thread (the pacer
    // sleeps between datagrams).
    let format = ScreamFormat::new(48_000, 16, 2, default_mask(2)).unwrap();
    let pcm = tone(&format, 440.0, seconds);
    let sink: SocketAddr = format!("127.0.0.1:{sink_port}").parse().unwrap();
    let cpu0 = cpu_ticks(pid);
    let sent = tokio::task::spawn_blocking(move || {
        let mut p = Pacer::new(sink, 0.0).unwrap();
        p.send(&format, &pcm).unwrap();
        p.sent
    })
    .await
    .unwrap();
    // Until the relay has forwarded the last datagram it ingested (a
    // relay that cannot keep up falls behind the sender, and its socket
    // drops what overflows): the count stops moving for 500 ms.
    let value = |m: &str, name: &str| {
        metric(m, &format!("scream_ice_{name}{{sink=\"living\"}}"))
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{m}"))
    };
    let settle = std::time::Instant::now();
    let (mut last, mut still) = (-1.0, std::time::Instant::now());
    let behind = loop {
        let n = value(&daemon.metrics().await, "sink_datagrams_total");
        if n >= sent as f64 {
            break settle.elapsed();
        }
        if n != last {
            (last, still) = (n, std::time::Instant::now());
        } else if still.elapsed() > Duration::from_millis(500) {
            break still - settle;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = (cpu_ticks(pid) - cpu0) as f64 / clock_ticks_per_second();
    let m = daemon.metrics().await;
    let _ = stop_tx.send(true);
    let mut lost = 0;
    let mut out_of_order = 0;
    for t in tasks {
        let (got, ordered) = t.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        lost += sent.saturating_sub(got);
        out_of_order += usize::from(!ordered);
    }
    daemon.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let messages = value(&m, "sink_messages_total");
    let routed = metric(&m, "scream_ice_mux_datagrams_total{result=\"routed\"}");
    if shared {
        // Every speaker's checks and consent came in through the mux.
        assert!(routed.is_some_and(|r| r >= speakers as f64), "{m}");
    } else {
        assert_eq!(routed, None, "no shared sockets, no mux counters: {m}");
    }
    Run {
        sent: sent as f64,
        datagrams: value(&m, "sink_datagrams_total"),
        messages,
        calls: value(&m, "sink_sendmmsg_calls_total"),
        behind,
        lost,
        out_of_order,
        socket_growth,
        cpu_ns_per_message: cpu * 1e9 / messages.max(1.0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speakers_on_one_shared_port_share_each_sendmmsg() {
    let speakers = env_or("SHARED_SPEAKERS", 100) as usize;
    let seconds = env_or("SHARED_SECONDS", 2) as f64;
    let own = run(false, speakers, seconds).await;
    let shared = run(true, speakers, seconds).await;
    for (name, r) in [
        ("per-session sockets", &own),
        ("ice_port (shared)", &shared),
    ] {
        println!(
            "{name}: {speakers} speakers, {} datagrams sent, {} ingested, {} messages, {} sendmmsg calls \
             ({:.2} per datagram), {} lost at the speakers, {} sockets more with all connected, \
             {:.0} ns daemon CPU per message, relay done {:.0} ms after the sender",
            r.sent,
            r.datagrams,
            r.messages,
            r.calls,
            r.calls / r.datagrams,
            r.lost,
            r.socket_growth,
            r.cpu_ns_per_message,
            r.behind.as_secs_f64() * 1e3
        );
    }
    for r in [&own, &shared] {
        assert_eq!(r.out_of_order, 0, "{r:?}");
        assert_eq!(r.messages, r.datagrams * speakers as f64, "{r:?}");
    }
    // The shared socket keeps up, whatever the number of speakers; a
    // socket per session is held to it at the default 100 (at 1,000 on
    // the 2-core build machine its relay falls behind and the sink's
    // socket overflows: measured in docs/BENCHMARKS.md, not asserted).
    assert_eq!(
        (shared.datagrams, shared.lost),
        (shared.sent, 0),
        "{shared:?}"
    );
    if speakers <= 100 {
        assert_eq!((own.datagrams, own.lost), (own.sent, 0), "{own:?}");
    }
    // A socket per session: one sendmmsg per speaker and datagram.
    assert_eq!(own.calls, own.datagrams * speakers as f64, "{own:?}");
    assert!(own.socket_growth >= speakers, "{own:?}");
    // One socket for all: one call per datagram (up to 1,024 speakers),
    // and no socket per speaker.
    let batches = speakers.div_ceil(scream_ice_host::relay::BATCH) as f64;
    assert_eq!(shared.calls, shared.datagrams * batches, "{shared:?}");
    assert!(shared.socket_growth < 8, "{shared:?}");
}
