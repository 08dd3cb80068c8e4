//! Interop and scenario tests of scream-ice against independent
//! implementations (stun-rs now; coturn, aioice, libnice and network
//! namespaces as the adapters land). The library part holds shared helpers;
//! `netns` builds network-namespace labs and pairs ICE peer processes in them.

pub mod netns;
pub mod netsim;

/// Report a test that skips for a missing peer (only ever under
/// `SCREAM_ICE_SKIP_PEERS=1` / `SCREAM_ICE_SKIP_NETNS=1`): one
/// `SCREAM_ICE_SKIPPED: ...` line written past the harness's output capture,
/// which `.ci/run` counts as skipped instead of passed.
pub fn report_skip(reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "\nSCREAM_ICE_SKIPPED: {reason}");
}

/// The line `ICE restart: audio gap X ms, pair selected again ...` of a
/// `scream-ice connect --sink` report, and its X in milliseconds. Panics
/// with the report when there is none.
pub fn restart_gap(report: &str) -> (f64, &str) {
    const PREFIX: &str = "ICE restart: audio gap ";
    let line = report
        .lines()
        .find(|l| l.starts_with(PREFIX))
        .unwrap_or_else(|| panic!("no restart line\n{report}"));
    let gap = line[PREFIX.len()..]
        .split(' ')
        .next()
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("no gap in {line:?}"));
    (gap, line)
}
