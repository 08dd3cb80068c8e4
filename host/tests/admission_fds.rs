//! A burst of 150 concurrent session POSTs never binds more UDP sockets
//! than the router cap allows: the process's UDP descriptors are sampled
//! during the burst. Alone in its test binary, so no other test's sockets
//! are counted.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use scream_ice_host::limits::HttpLimits;
use support::{config, fragment, loopback_settings, post, server_with, status};

/// UDP sockets this process holds: descriptors in /proc/self/fd whose
/// socket inode is in /proc/self/net/udp or udp6.
fn udp_sockets() -> usize {
    let mut inodes = HashSet::new();
    for table in ["/proc/self/net/udp", "/proc/self/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            if let Some(inode) = line.split_whitespace().nth(9) {
                inodes.insert(inode.to_string());
            }
        }
    }
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .filter(|i| inodes.contains(i))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_burst_never_binds_more_sockets_than_the_cap() {
    const CAP: usize = 20;
    let (addr, state) = server_with(
        config(
            "server:\n  stun_listen: off\nlimits:\n  sessions:\n    max: 20\n    per_client: 50\n    post_rate: {per_second: 1000, burst: 1000}\n",
        ),
        loopback_settings(|_| {}),
        HttpLimits::default(),
    )
    .await;
    let baseline = udp_sockets();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(baseline));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(udp_sockets(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // 150 POSTs at once from 15 clients.
    let tasks: Vec<_> = (0..150)
        .map(|i| {
            tokio::spawn(async move {
                let from = [127, 0, 2, 1 + (i % 15) as u8];
                status(&post(from, addr, &fragment(i, &[]), "").await)
            })
        })
        .collect();
    let mut counts: HashMap<u16, usize> = HashMap::new();
    for t in tasks {
        *counts.entry(t.await.unwrap()).or_default() += 1;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    assert_eq!(counts.get(&201), Some(&CAP), "{counts:?}");
    assert_eq!(counts.get(&503), Some(&(150 - CAP)), "{counts:?}");
    assert_eq!(state.sessions().len(), CAP);
    // One host socket per session (bound on 127.0.0.1 only), never more.
    assert!(
        peak <= baseline + CAP,
        "{peak} UDP sockets at the peak, {baseline} before, cap {CAP}"
    );
    assert_eq!(udp_sockets(), baseline + CAP);
}
