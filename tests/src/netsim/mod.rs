//! A deterministic network simulator for sans-IO ICE.
//!
//! Hosts with addresses on segments (LANs, "the internet"), NATs between
//! segments, firewall rules, and a virtual clock. Any sans-IO node (the
//! core's ICE agent, a STUN client or server, a prober) plugs in through the
//! [`Endpoint`] trait and is driven by the sans-IO rule: after every input
//! the simulator drains `poll_transmit`, then reads `poll_timeout`.
//!
//! ```
//! use scream_ice_core::time::{Duration, Instant};
//! use scream_ice_tests::netsim::{NatKind, Sim, StunClient, topologies};
//!
//! let mut sim = Sim::new(42);
//! let topo = topologies::remote_behind_nat(&mut sim, NatKind::Symmetric);
//! let stun = topo.stun.unwrap().addr;
//! sim.set_endpoint(topo.speaker.host, StunClient::new(topo.speaker.addr(5000), &[stun]));
//! let done = sim.run_until(Instant::from_secs(5), |s| {
//!     s.endpoint::<StunClient>(topo.speaker.host).finished()
//! });
//! assert!(done.is_done(), "{}", sim.report());
//! let mapped = sim.endpoint::<StunClient>(topo.speaker.host).mapped_by(stun).unwrap();
//! assert_eq!(Some(mapped.ip()), topo.speaker.public_ip);
//! ```
//!
//! # What is modelled
//!
//! - **Time**: a virtual clock in microseconds ([`scream_ice_core::time`]);
//!   [`Sim::run_until`] jumps from event to event (a datagram arriving, an
//!   endpoint's timer), so a 10-minute consent test runs in milliseconds.
//! - **Determinism**: all randomness (loss, jitter, NAT port choice) comes
//!   from the seed of [`Sim::new`] through SplitMix64 streams (one per
//!   segment and per NAT); events at the same instant run in the order they
//!   were scheduled; all tables are ordered maps. Same seed, same program:
//!   equal [`Trace`]. Print [`Sim::report`] on failure to get the seed and
//!   the trace.
//! - **Segments** carry UDP datagrams between the interfaces on them, with
//!   one-way latency, uniform jitter (which reorders), independent loss,
//!   and an up/down switch that also kills datagrams in flight. A segment
//!   may have a gateway (a NAT's inside) that gets datagrams for addresses
//!   not on the segment.
//! - **Hosts** have any number of IPv4/IPv6 addresses, each on one segment;
//!   addresses can be added and removed mid-run; a host can be switched
//!   down. One endpoint per host gets every datagram for any port of any of
//!   its addresses (no sockets, no port binding).
//! - **NATs** ([`NatConfig`]) between an inside and an outside segment, with
//!   RFC 4787 mapping and filtering behaviours (the four classic
//!   [`NatKind`]s as presets), a mapping timeout refreshed by outbound
//!   traffic only, optional hairpinning, and seeded random port allocation.
//!   NATs chain (carrier-grade NAT behind a home NAT).
//! - **Firewall rules** ([`FirewallRule`]) at a host, by direction and
//!   source/destination address and port.
//! - **Trace**: every send, NAT mapping and translation, delivery, drop
//!   (with its [`DropReason`]), timer and topology change, with its time.
//!
//! # What is not
//!
//! No TCP, no fragmentation or MTU (a datagram of any size crosses), no
//! ICMP (a dropped datagram is silent: no port unreachable), no TTL, no
//! routing beyond "on this segment, else its gateway", no bandwidth or
//! queueing (each datagram's delay is independent of load), no duplication
//! or corruption, no DNS, no DHCP, no IPv6 router advertisements. NATs do
//! not model port preservation, port parity, per-protocol timeouts or
//! inbound refresh. Timers of a down host still fire.

/// `assert!` for simulations: on failure, prints the message, then the seed
/// and the last 60 trace lines ([`Sim::report_tail`]), so the failing run
/// can be replayed with `Sim::new(seed)`.
///
/// ```
/// use scream_ice_tests::{netsim::Sim, sim_assert};
/// let sim = Sim::new(7);
/// sim_assert!(sim, sim.trace().is_empty(), "fresh sim, seed {}", sim.seed());
/// ```
#[macro_export]
macro_rules! sim_assert {
    ($sim:expr, $cond:expr $(,)?) => {
        assert!($cond, "{}\n{}", stringify!($cond), $sim.report_tail(60))
    };
    ($sim:expr, $cond:expr, $($msg:tt)+) => {
        assert!($cond, "{}\n{}", format!($($msg)+), $sim.report_tail(60))
    };
}

mod endpoints;
mod nat;
mod rng;
mod sim;
pub mod topologies;
mod trace;

pub use endpoints::{Prober, Received, StunClient, StunResult, StunServer};
pub use nat::{FilteringBehavior, MappingBehavior, NatConfig, NatKind};
pub use rng::SimRng;
pub use sim::{
    Datagram, Direction, Endpoint, FirewallRule, HostId, LinkConditions, MAX_EVENTS_PER_INSTANT,
    RuleId, RunOutcome, SegmentId, Sim,
};
pub use trace::{DropReason, PayloadSummary, Trace, TraceEntry, TraceEvent};
