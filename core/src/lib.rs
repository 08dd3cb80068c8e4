//! # scream-ice-core
//!
//! The `no_std`, allocation-free heart of scream-ice: everything the
//! ScreamRouter router and its networked speakers must decide *identically*
//! about ICE lives here, so both sides run the same code.
//!
//! The crate performs no I/O, reads no clock and draws no random numbers:
//! time ([`time::Instant`], [`time::Duration`], microseconds) and randomness
//! (transaction ids, seeds) are arguments, and every buffer is either owned
//! by the caller or has a fixed capacity.
//!
//! Layers, bottom up:
//!
//! - [`stun`]: the STUN wire format (RFC 8489, compatible with RFC 5389): a
//!   zero-copy [`stun::Message`] view with typed attributes, a builder that
//!   writes into a caller's buffer, short-term and long-term credentials,
//!   MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT.
//! - [`candidate`]: ICE candidates (RFC 8445 §5.1): kinds, foundations,
//!   candidate and pair priorities with a local preference that can rank
//!   local-network interfaces first, and the zero-copy SDP `candidate`
//!   attribute codec (RFC 8839 §5.1) that browsers speak.
//! - [`sdpfrag`]: `application/trickle-ice-sdpfrag` bodies (RFC 8840): a
//!   zero-copy view and a writer, ufrag/pwd up to 256 characters.
//! - [`net`]: address classes (loopback, link-local, private RFC 1918,
//!   shared CGNAT, unique-local, global) and configured `local_subnets`.
//! - [`url`]: `stun:`/`stuns:` (RFC 7064) and `turn:`/`turns:` (RFC 7065)
//!   server URIs, parsed without copying.
//! - [`policy`]: the ICE mode and the per-peer [`policy::Decision`]: which
//!   candidates to gather and offer, from which servers, when
//!   end-of-candidates may be sent, and the fallback ladder.
//! - [`agent`]: the sans-IO ICE agent (RFC 8445): checks, nomination,
//!   consent, restart.
//! - [`session`]: one ICE session as every adapter drives it: the agent
//!   plus credentials, the offer filter, local preferences, resolution
//!   requests, `PeerKnowledge` at runtime and the fallback ladder.
//! - [`signal`]: the speaker's sans-IO HTTP/1.1 client for the router's
//!   session API (requests into caller buffers, replies via `httparse`).
//! - [`time`]: the crate's own microsecond `Instant` and `Duration`.
//! - [`rollout`]: the migration's feature flags, deterministic client
//!   bucketing, A/B groups, rollout stages and the noise-proof rollback rule.
//! - [`playout`]: the speaker's fixed-capacity jitter buffer: target
//!   latency, reorder, concealment, drift correction, statistics.
//! - [`scream`]: the Scream audio datagram and the RTP framing (RFC 3550)
//!   the router adds on the ICE path, with the format-to-payload-type table.
//!
//! ## Features
//!
//! - `std`: `Instant::from_std`/`Instant::to_std` (against an epoch:
//!   `std::time::Instant` has none). `Duration` converts from and to
//!   `core::time::Duration` (which is `std::time::Duration`), addresses are
//!   `core::net`'s (which `std::net` re-exports) and errors implement
//!   `core::error::Error` (which is `std::error::Error`) without it.
//! - `defmt`: `defmt::Format` on public types; logging through defmt.
//! - `log`: logging through the `log` facade. Mutually exclusive with `defmt`.
//! - `conformance`: the core's vectors and decision tables as a runnable,
//!   `no_std` self-test.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(test, feature = "std"))]
extern crate std;

#[macro_use]
mod fmt;

pub mod agent;
pub mod candidate;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod net;
pub mod playout;
pub mod policy;
pub mod rollout;
pub mod scream;
pub mod sdpfrag;
pub mod session;
pub mod signal;
pub mod stun;
pub mod time;
pub mod url;

pub use time::{Duration, Instant};
