//! The record of a run: every send, forward, delivery, drop, timer and
//! topology change, with its virtual time.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

use scream_ice_core::stun::{Class, Message, MessageType, Method, TransactionId};
use scream_ice_core::time::Instant;

use super::{HostId, RuleId, SegmentId};

/// Why the network discarded a datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The link's loss probability picked it.
    Loss,
    /// A firewall rule matched (its label).
    Firewall {
        /// The rule.
        rule: RuleId,
        /// The rule's label.
        label: String,
    },
    /// A NAT had a mapping for the port but its filtering refused the
    /// sender (RFC 4787 section 5).
    NatFiltered,
    /// A NAT had no live mapping for the destination port (never created or
    /// expired).
    NatNoMapping,
    /// A NAT without hairpinning got a datagram for its own outside address
    /// from the inside.
    NoHairpin,
    /// No interface on the segment owns the destination address and the
    /// segment has no gateway (or the address went away in flight).
    NoRoute,
    /// The segment was down when the datagram was sent or when it arrived.
    LinkDown,
    /// The sending or receiving host was switched down.
    HostDown,
    /// The endpoint sent from an address its host does not own (any more).
    BadSource,
    /// The destination host has no endpoint (or a NAT got a datagram for
    /// itself).
    NoListener,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Loss => f.write_str("loss"),
            DropReason::Firewall { rule, label } => write!(f, "firewall rule {} ({label})", rule.0),
            DropReason::NatFiltered => f.write_str("nat-filtered"),
            DropReason::NatNoMapping => f.write_str("nat-no-mapping"),
            DropReason::NoHairpin => f.write_str("nat-no-hairpin"),
            DropReason::NoRoute => f.write_str("no-route"),
            DropReason::LinkDown => f.write_str("link-down"),
            DropReason::HostDown => f.write_str("host-down"),
            DropReason::BadSource => f.write_str("bad-source"),
            DropReason::NoListener => f.write_str("no-listener"),
        }
    }
}

/// A fingerprint of a payload, enough to tell datagrams apart in a trace
/// without keeping their bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadSummary {
    /// Length in bytes.
    pub len: usize,
    /// FNV-1a of the bytes.
    pub digest: u32,
    /// Type and transaction id when the payload is a STUN message.
    pub stun: Option<(MessageType, TransactionId)>,
}

impl PayloadSummary {
    /// Summarise `payload`.
    pub fn of(payload: &[u8]) -> Self {
        let mut h: u32 = 0x811c_9dc5;
        for &b in payload {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        let stun = Message::new_checked(payload)
            .ok()
            .map(|m| (m.message_type(), m.transaction_id()));
        PayloadSummary {
            len: payload.len(),
            digest: h,
            stun,
        }
    }
}

impl fmt::Display for PayloadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((t, tid)) = self.stun {
            let method = if t.method == Method::BINDING {
                "Binding".to_string()
            } else {
                format!("method-{:#05x}", t.method.value())
            };
            let class = match t.class {
                Class::Request => "request",
                Class::Indication => "indication",
                Class::SuccessResponse => "success",
                Class::ErrorResponse => "error",
            };
            let tid = tid.to_string();
            write!(f, "STUN {method} {class} tid={}.. ", &tid[..8])?;
        }
        write!(f, "len={} #{:08x}", self.len, self.digest)
    }
}

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceEvent {
    /// A host's endpoint (or [`super::Sim::transmit`]) put a datagram on a
    /// segment.
    Send {
        /// The sending host.
        host: HostId,
        /// Source address.
        from: SocketAddr,
        /// Destination address.
        to: SocketAddr,
        /// The payload.
        payload: PayloadSummary,
    },
    /// A NAT translated and forwarded a datagram.
    Forward {
        /// The NAT.
        host: HostId,
        /// Addresses as received.
        from: SocketAddr,
        /// Addresses as received.
        to: SocketAddr,
        /// Source after translation.
        new_from: SocketAddr,
        /// Destination after translation.
        new_to: SocketAddr,
    },
    /// A NAT created a mapping.
    NatMapping {
        /// The NAT.
        host: HostId,
        /// The inside address.
        internal: SocketAddr,
        /// The outside address it maps to.
        external: SocketAddr,
    },
    /// A datagram reached a host's endpoint.
    Deliver {
        /// The receiving host.
        host: HostId,
        /// Source address.
        from: SocketAddr,
        /// Destination address.
        to: SocketAddr,
        /// The payload.
        payload: PayloadSummary,
    },
    /// The network discarded a datagram.
    Drop {
        /// Where it was discarded (sender, NAT, or would-be receiver).
        host: Option<HostId>,
        /// Source address.
        from: SocketAddr,
        /// Destination address.
        to: SocketAddr,
        /// Why.
        reason: DropReason,
        /// The payload.
        payload: PayloadSummary,
    },
    /// A host's endpoint got `handle_timeout`.
    Timer {
        /// The host.
        host: HostId,
    },
    /// A segment went up or down.
    Link {
        /// The segment.
        segment: SegmentId,
        /// New state.
        up: bool,
    },
    /// A host was switched up or down.
    HostState {
        /// The host.
        host: HostId,
        /// New state.
        up: bool,
    },
    /// An address was added to or removed from a host.
    Address {
        /// The host.
        host: HostId,
        /// The address.
        addr: IpAddr,
        /// The segment.
        segment: SegmentId,
        /// Added (`true`) or removed.
        added: bool,
    },
    /// A free-form note from a test ([`super::Sim::note`]).
    Note(String),
}

/// One trace line: when and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    /// Virtual time.
    pub at: Instant,
    /// What happened.
    pub event: TraceEvent,
}

/// Everything that happened in a simulation, in order.
///
/// Two runs of the same program with the same seed produce equal traces
/// (`==`), which is what makes a failing seed replayable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    pub(crate) entries: Vec<TraceEntry>,
    pub(crate) host_names: Vec<String>,
    pub(crate) segment_names: Vec<String>,
}

impl Trace {
    /// All entries, oldest first.
    pub fn entries(&self) -> &[TraceEntry] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The drops, with their reasons.
    pub fn drops(&self) -> impl Iterator<Item = (&TraceEntry, &DropReason)> {
        self.entries.iter().filter_map(|e| match &e.event {
            TraceEvent::Drop { reason, .. } => Some((e, reason)),
            _ => None,
        })
    }

    /// How many drops had a reason equal to `reason`, ignoring firewall
    /// rule labels (any firewall drop counts for any `Firewall` reason).
    pub fn count_drops(&self, reason: &DropReason) -> usize {
        self.drops()
            .filter(|(_, r)| match (r, reason) {
                (DropReason::Firewall { .. }, DropReason::Firewall { .. }) => true,
                _ => *r == reason,
            })
            .count()
    }

    /// How many datagrams were delivered to `host`'s endpoint.
    pub fn count_delivered(&self, host: HostId) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.event, TraceEvent::Deliver { host: h, .. } if h == host))
            .count()
    }

    /// The name of a host, as given to [`super::Sim::add_host`].
    pub fn host_name(&self, host: HostId) -> &str {
        self.host_names.get(host.0).map_or("?", String::as_str)
    }

    /// The name of a segment.
    pub fn segment_name(&self, segment: SegmentId) -> &str {
        self.segment_names
            .get(segment.0)
            .map_or("?", String::as_str)
    }

    /// One line per entry: time, kind, host, addresses, payload summary.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            let _ = writeln!(out, "{}", self.line(e));
        }
        out
    }

    /// The last `n` lines of [`Trace::dump`].
    pub fn dump_tail(&self, n: usize) -> String {
        let mut out = String::new();
        let skip = self.entries.len().saturating_sub(n);
        if skip > 0 {
            let _ = writeln!(out, "... {skip} earlier entries ...");
        }
        for e in &self.entries[skip..] {
            let _ = writeln!(out, "{}", self.line(e));
        }
        out
    }

    fn line(&self, e: &TraceEntry) -> String {
        let h = |id: HostId| self.host_name(id).to_string();
        let what = match &e.event {
            TraceEvent::Send {
                host,
                from,
                to,
                payload,
            } => format!("SEND    {:<12} {from} -> {to} {payload}", h(*host)),
            TraceEvent::Forward {
                host,
                from,
                to,
                new_from,
                new_to,
            } => format!(
                "FORWARD {:<12} {from} -> {to} as {new_from} -> {new_to}",
                h(*host)
            ),
            TraceEvent::NatMapping {
                host,
                internal,
                external,
            } => format!("MAPPING {:<12} {internal} = {external}", h(*host)),
            TraceEvent::Deliver {
                host,
                from,
                to,
                payload,
            } => format!("DELIVER {:<12} {from} -> {to} {payload}", h(*host)),
            TraceEvent::Drop {
                host,
                from,
                to,
                reason,
                payload,
            } => format!(
                "DROP    {:<12} {from} -> {to} {payload} [{reason}]",
                host.map_or_else(|| "-".to_string(), h)
            ),
            TraceEvent::Timer { host } => format!("TIMER   {}", h(*host)),
            TraceEvent::Link { segment, up } => format!(
                "LINK    {} {}",
                self.segment_name(*segment),
                if *up { "up" } else { "down" }
            ),
            TraceEvent::HostState { host, up } => {
                format!("HOST    {} {}", h(*host), if *up { "up" } else { "down" })
            }
            TraceEvent::Address {
                host,
                addr,
                segment,
                added,
            } => format!(
                "ADDR    {:<12} {} {addr} on {}",
                h(*host),
                if *added { "+" } else { "-" },
                self.segment_name(*segment)
            ),
            TraceEvent::Note(s) => format!("NOTE    {s}"),
        };
        format!("{:>14} {what}", e.at.to_string())
    }
}
