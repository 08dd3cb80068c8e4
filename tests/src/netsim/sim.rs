//! The simulator proper: virtual clock, event queue, routing, link
//! conditions, firewalls, NAT forwarding and the sans-IO drive loop.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use scream_ice_core::time::{Duration, Instant};

use super::nat::{NatConfig, NatTable};
use super::rng::SimRng;
use super::trace::{DropReason, PayloadSummary, Trace, TraceEntry, TraceEvent};

/// A UDP datagram as an endpoint sends it and the network carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Source: one of the sending host's addresses, any port.
    pub from: SocketAddr,
    /// Destination.
    pub to: SocketAddr,
    /// UDP payload.
    pub payload: Vec<u8>,
}

/// Any sans-IO node the simulator can drive: an ICE agent, a STUN client
/// or server, an echo. One endpoint per host; it receives every datagram
/// addressed to any port of any of its host's addresses.
///
/// Drive rule: after every input (`handle_receive` or `handle_timeout`), and
/// once when the endpoint is attached or touched through
/// [`Sim::endpoint_mut`], the simulator calls `poll_transmit` until it
/// returns `None`, then `poll_timeout` once. `handle_timeout` is called at
/// (never before) the instant `poll_timeout` last returned.
///
/// A node with more outputs than these (the ICE agent's `poll_event`) is
/// plugged in through a small wrapper that implements this trait and, in
/// `poll_timeout` (always the last call of a drive), drains the extra
/// outputs into a `Vec` the test reads with [`Sim::endpoint`]:
///
/// ```
/// # use std::net::SocketAddr;
/// # use scream_ice_core::time::Instant;
/// # use scream_ice_tests::netsim::{Datagram, Endpoint};
/// # struct Agent;
/// # impl Agent {
/// #     fn handle_receive(&mut self, _: Instant, _: SocketAddr, _: SocketAddr, _: &[u8]) {}
/// #     fn handle_timeout(&mut self, _: Instant) {}
/// #     fn poll_transmit(&mut self) -> Option<Datagram> { None }
/// #     fn poll_timeout(&mut self) -> Option<Instant> { None }
/// #     fn poll_event(&mut self) -> Option<u32> { None }
/// # }
/// struct AgentNode { agent: Agent, events: Vec<(Instant, u32)>, now: Instant }
///
/// impl Endpoint for AgentNode {
///     fn handle_receive(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, p: &[u8]) {
///         self.now = now;
///         self.agent.handle_receive(now, local, remote, p);
///     }
///     fn handle_timeout(&mut self, now: Instant) {
///         self.now = now;
///         self.agent.handle_timeout(now);
///     }
///     fn poll_transmit(&mut self) -> Option<Datagram> {
///         self.agent.poll_transmit()
///     }
///     fn poll_timeout(&mut self) -> Option<Instant> {
///         while let Some(e) = self.agent.poll_event() {
///             self.events.push((self.now, e));
///         }
///         self.agent.poll_timeout()
///     }
/// }
/// ```
pub trait Endpoint {
    /// A datagram from `remote` arrived on local address `local`.
    fn handle_receive(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        payload: &[u8],
    );
    /// The deadline from `poll_timeout` has come.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send. `from` must be one of the host's addresses
    /// (any port); otherwise the datagram is dropped as
    /// [`DropReason::BadSource`].
    fn poll_transmit(&mut self) -> Option<Datagram>;
    /// When `handle_timeout` should be called next (`None`: no timer). An
    /// instant in the past fires at the current time.
    fn poll_timeout(&mut self) -> Option<Instant>;
}

/// An [`Endpoint`] that can be downcast (blanket-implemented).
trait AnyEndpoint: Endpoint + Any {}
impl<T: Endpoint + Any> AnyEndpoint for T {}

/// A host (end system or NAT), by creation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostId(pub usize);

/// A segment (a LAN, "the internet"), by creation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(pub usize);

/// A firewall rule, by creation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub usize);

/// How a segment treats each datagram crossing it. Each crossing draws its
/// own loss and delay: delay is `latency` plus a uniform value in
/// `0..=jitter`, so jitter larger than the spacing of datagrams reorders
/// them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConditions {
    /// One-way base delay.
    pub latency: Duration,
    /// Extra uniform random delay, `0..=jitter`.
    pub jitter: Duration,
    /// Probability in `[0, 1]` that a datagram is lost.
    pub loss: f64,
}

impl LinkConditions {
    /// A perfect link with `latency`.
    pub const fn new(latency: Duration) -> Self {
        LinkConditions {
            latency,
            jitter: Duration::ZERO,
            loss: 0.0,
        }
    }

    /// A quiet LAN: 300 us, no jitter, no loss.
    pub const fn lan() -> Self {
        LinkConditions::new(Duration::from_micros(300))
    }

    /// A quiet internet path segment: 15 ms, no jitter, no loss.
    pub const fn internet() -> Self {
        LinkConditions::new(Duration::from_millis(15))
    }

    /// Set the jitter.
    pub const fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Set the loss probability.
    pub const fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }

    /// Set the latency.
    pub const fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
}

/// Which datagrams a [`FirewallRule`] looks at, relative to its host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Direction {
    /// Arriving at the host (for a NAT: before translation).
    Inbound,
    /// Leaving the host (sent by its endpoint, or forwarded by a NAT after
    /// translation).
    Outbound,
    /// Both.
    Both,
}

/// A rule that drops the datagrams it matches at one host. Unset fields
/// match anything.
///
/// ```
/// # use scream_ice_tests::netsim::{Direction, FirewallRule, HostId};
/// let stun = "192.0.2.1:3478".parse().unwrap();
/// let rule = FirewallRule::new(HostId(0), Direction::Outbound)
///     .dst(stun)
///     .label("block STUN");
/// # let _ = rule;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallRule {
    /// The host where the rule applies.
    pub host: HostId,
    /// Direction.
    pub direction: Direction,
    /// Source IP.
    pub src_ip: Option<IpAddr>,
    /// Source port.
    pub src_port: Option<u16>,
    /// Destination IP.
    pub dst_ip: Option<IpAddr>,
    /// Destination port.
    pub dst_port: Option<u16>,
    /// Shown in the trace's drop reason.
    pub label: String,
}

impl FirewallRule {
    /// A rule at `host` for `direction` that matches everything.
    pub fn new(host: HostId, direction: Direction) -> Self {
        FirewallRule {
            host,
            direction,
            src_ip: None,
            src_port: None,
            dst_ip: None,
            dst_port: None,
            label: String::from("rule"),
        }
    }

    /// Match this source ip:port.
    pub fn src(mut self, addr: SocketAddr) -> Self {
        self.src_ip = Some(addr.ip());
        self.src_port = Some(addr.port());
        self
    }

    /// Match this destination ip:port.
    pub fn dst(mut self, addr: SocketAddr) -> Self {
        self.dst_ip = Some(addr.ip());
        self.dst_port = Some(addr.port());
        self
    }

    /// Match this source IP (any port).
    pub fn src_ip(mut self, ip: IpAddr) -> Self {
        self.src_ip = Some(ip);
        self
    }

    /// Match this destination IP (any port).
    pub fn dst_ip(mut self, ip: IpAddr) -> Self {
        self.dst_ip = Some(ip);
        self
    }

    /// Match this source port.
    pub fn src_port(mut self, port: u16) -> Self {
        self.src_port = Some(port);
        self
    }

    /// Match this destination port.
    pub fn dst_port(mut self, port: u16) -> Self {
        self.dst_port = Some(port);
        self
    }

    /// Name the rule in the trace.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    fn matches(&self, outbound: bool, d: &Datagram) -> bool {
        let dir = match self.direction {
            Direction::Inbound => !outbound,
            Direction::Outbound => outbound,
            Direction::Both => true,
        };
        dir && self.src_ip.is_none_or(|ip| ip == d.from.ip())
            && self.src_port.is_none_or(|p| p == d.from.port())
            && self.dst_ip.is_none_or(|ip| ip == d.to.ip())
            && self.dst_port.is_none_or(|p| p == d.to.port())
    }
}

/// Why [`Sim::run_until`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunOutcome {
    /// The predicate became true at this time.
    Done(Instant),
    /// The deadline came first; the clock now reads the deadline.
    Deadline,
}

impl RunOutcome {
    /// Whether the predicate was met.
    pub fn is_done(self) -> bool {
        matches!(self, RunOutcome::Done(_))
    }
}

/// How many events may run at one instant before the simulator decides an
/// endpoint is spinning (a timer always in the past, a send storm).
pub const MAX_EVENTS_PER_INSTANT: u64 = 100_000;

#[derive(Debug)]
struct Segment {
    conditions: LinkConditions,
    up: bool,
    gateway: Option<HostId>,
    rng: SimRng,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Interface {
    ip: IpAddr,
    segment: SegmentId,
}

#[derive(Debug)]
struct NatNode {
    inside: SegmentId,
    outside: SegmentId,
    table: NatTable,
}

struct Host {
    interfaces: Vec<Interface>,
    endpoint: Option<Box<dyn AnyEndpoint>>,
    nat: Option<NatNode>,
    up: bool,
    timer: Option<(Instant, u64)>,
    dirty: bool,
}

#[derive(Debug)]
enum Event {
    Arrive {
        host: HostId,
        segment: SegmentId,
        via_gateway: bool,
        datagram: Datagram,
    },
    Timer {
        host: HostId,
    },
}

/// A deterministic network of hosts, segments and NATs on a virtual clock.
///
/// Everything random (loss, jitter, NAT ports) comes from the seed given to
/// [`Sim::new`]; events at the same instant run in the order they were
/// scheduled. The same seed and the same program give the same
/// [`Trace`], bit for bit.
pub struct Sim {
    seed: u64,
    now: Instant,
    seq: u64,
    queue: BTreeMap<(Instant, u64), Event>,
    hosts: Vec<Host>,
    segments: Vec<Segment>,
    rules: BTreeMap<RuleId, FirewallRule>,
    next_rule: usize,
    trace: Trace,
    events_at_now: u64,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .field("hosts", &self.hosts.len())
            .field("segments", &self.segments.len())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// An empty network at time zero.
    pub fn new(seed: u64) -> Self {
        Sim {
            seed,
            now: Instant::ZERO,
            seq: 0,
            queue: BTreeMap::new(),
            hosts: Vec::new(),
            segments: Vec::new(),
            rules: BTreeMap::new(),
            next_rule: 0,
            trace: Trace::default(),
            events_at_now: 0,
        }
    }

    /// The seed this simulation was created with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Everything recorded so far.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The seed, the time and the whole trace, for a failure message.
    pub fn report(&self) -> String {
        format!(
            "netsim seed={:#x} (replay: Sim::new({:#x})) now={}\n{}",
            self.seed,
            self.seed,
            self.now,
            self.trace.dump()
        )
    }

    /// Like [`Sim::report`] with only the last `n` trace lines.
    pub fn report_tail(&self, n: usize) -> String {
        format!(
            "netsim seed={:#x} (replay: Sim::new({:#x})) now={}\n{}",
            self.seed,
            self.seed,
            self.now,
            self.trace.dump_tail(n)
        )
    }

    /// Add a free-form line to the trace.
    pub fn note(&mut self, text: impl Into<String>) {
        self.record(TraceEvent::Note(text.into()));
    }

    fn record(&mut self, event: TraceEvent) {
        self.trace.entries.push(TraceEntry {
            at: self.now,
            event,
        });
    }

    // ----- topology -------------------------------------------------------

    /// Add a segment with `conditions`; it starts up.
    pub fn add_segment(
        &mut self,
        name: impl Into<String>,
        conditions: LinkConditions,
    ) -> SegmentId {
        let id = SegmentId(self.segments.len());
        self.segments.push(Segment {
            conditions,
            up: true,
            gateway: None,
            rng: SimRng::derive(self.seed, 0x5e9_0000 + id.0 as u64),
        });
        self.trace.segment_names.push(name.into());
        id
    }

    /// Change a segment's conditions; applies to datagrams sent from now on.
    pub fn set_link(&mut self, segment: SegmentId, conditions: LinkConditions) {
        self.segments[segment.0].conditions = conditions;
    }

    /// A segment's conditions.
    pub fn link(&self, segment: SegmentId) -> LinkConditions {
        self.segments[segment.0].conditions
    }

    /// Take a segment down or bring it back. While down, datagrams sent on
    /// it and datagrams in flight on it when they would arrive are dropped
    /// as [`DropReason::LinkDown`].
    pub fn set_link_up(&mut self, segment: SegmentId, up: bool) {
        if self.segments[segment.0].up != up {
            self.segments[segment.0].up = up;
            self.record(TraceEvent::Link { segment, up });
        }
    }

    /// Whether a segment is up.
    pub fn is_link_up(&self, segment: SegmentId) -> bool {
        self.segments[segment.0].up
    }

    /// Add a host with no address and no endpoint.
    pub fn add_host(&mut self, name: impl Into<String>) -> HostId {
        let id = HostId(self.hosts.len());
        self.hosts.push(Host {
            interfaces: Vec::new(),
            endpoint: None,
            nat: None,
            up: true,
            timer: None,
            dirty: false,
        });
        self.trace.host_names.push(name.into());
        id
    }

    /// Give `host` the address `ip` on `segment` (traced). Works mid-run.
    pub fn add_address(&mut self, host: HostId, segment: SegmentId, ip: IpAddr) {
        let iface = Interface { ip, segment };
        if !self.hosts[host.0].interfaces.contains(&iface) {
            self.hosts[host.0].interfaces.push(iface);
            self.record(TraceEvent::Address {
                host,
                addr: ip,
                segment,
                added: true,
            });
        }
    }

    /// Take `ip` away from `host` (traced). Datagrams in flight to it are
    /// then dropped as [`DropReason::NoRoute`]; sends from it as
    /// [`DropReason::BadSource`]. Returns whether the host had it.
    pub fn remove_address(&mut self, host: HostId, ip: IpAddr) -> bool {
        let ifaces = &mut self.hosts[host.0].interfaces;
        let Some(pos) = ifaces.iter().position(|i| i.ip == ip) else {
            return false;
        };
        let iface = ifaces.remove(pos);
        self.record(TraceEvent::Address {
            host,
            addr: ip,
            segment: iface.segment,
            added: false,
        });
        true
    }

    /// A host's addresses, in the order they were added.
    pub fn addresses(&self, host: HostId) -> Vec<IpAddr> {
        self.hosts[host.0].interfaces.iter().map(|i| i.ip).collect()
    }

    /// The segment `host` reaches through address `ip`, if it has it.
    pub fn segment_of(&self, host: HostId, ip: IpAddr) -> Option<SegmentId> {
        self.hosts[host.0]
            .interfaces
            .iter()
            .find(|i| i.ip == ip)
            .map(|i| i.segment)
    }

    /// Switch a host off the network or back on. A down host drops what it
    /// sends and what reaches it ([`DropReason::HostDown`]); its endpoint's
    /// timers still fire.
    pub fn set_host_up(&mut self, host: HostId, up: bool) {
        if self.hosts[host.0].up != up {
            self.hosts[host.0].up = up;
            self.record(TraceEvent::HostState { host, up });
        }
    }

    /// Whether a host is up.
    pub fn is_host_up(&self, host: HostId) -> bool {
        self.hosts[host.0].up
    }

    /// Make `gateway` the default route of `segment`: datagrams for an IP no
    /// interface on the segment owns go to it. [`Sim::add_nat`] does this for
    /// its inside segment.
    pub fn set_gateway(&mut self, segment: SegmentId, gateway: Option<HostId>) {
        self.segments[segment.0].gateway = gateway;
    }

    /// Add a NAT between `inside` (addresses `inside_ips`, and it becomes
    /// that segment's gateway) and `outside` (addresses `outside_ips`; it
    /// translates to the one of the destination's address family). NATs can
    /// be chained by putting one's outside on another's inside segment.
    pub fn add_nat(
        &mut self,
        name: impl Into<String>,
        config: impl Into<NatConfig>,
        inside: SegmentId,
        inside_ips: &[IpAddr],
        outside: SegmentId,
        outside_ips: &[IpAddr],
    ) -> HostId {
        let id = self.add_host(name);
        for &ip in inside_ips {
            self.add_address(id, inside, ip);
        }
        for &ip in outside_ips {
            self.add_address(id, outside, ip);
        }
        let rng = SimRng::derive(self.seed, 0x4a7_0000 + id.0 as u64);
        self.hosts[id.0].nat = Some(NatNode {
            inside,
            outside,
            table: NatTable::new(config.into(), rng),
        });
        self.set_gateway(inside, Some(id));
        id
    }

    /// A NAT's live mappings as (inside, outside) address pairs.
    ///
    /// # Panics
    /// If `nat` is not a NAT.
    pub fn nat_mappings(&self, nat: HostId) -> Vec<(SocketAddr, SocketAddr)> {
        self.nat_node(nat).table.mappings(self.now)
    }

    /// A NAT's configuration.
    ///
    /// # Panics
    /// If `nat` is not a NAT.
    pub fn nat_config(&self, nat: HostId) -> &NatConfig {
        &self.nat_node(nat).table.config
    }

    /// Change a NAT's configuration (existing mappings stay).
    ///
    /// # Panics
    /// If `nat` is not a NAT.
    pub fn set_nat_config(&mut self, nat: HostId, config: impl Into<NatConfig>) {
        let node = self.hosts[nat.0].nat.as_mut().expect("not a NAT");
        node.table.config = config.into();
    }

    fn nat_node(&self, nat: HostId) -> &NatNode {
        self.hosts[nat.0].nat.as_ref().expect("not a NAT")
    }

    /// Add a firewall rule; it applies from now on.
    pub fn add_rule(&mut self, rule: FirewallRule) -> RuleId {
        let id = RuleId(self.next_rule);
        self.next_rule += 1;
        self.note(format!(
            "firewall rule {} added at {}: {}",
            id.0,
            self.trace.host_name(rule.host),
            rule.label
        ));
        self.rules.insert(id, rule);
        id
    }

    /// Remove a firewall rule. Returns whether it existed.
    pub fn remove_rule(&mut self, id: RuleId) -> bool {
        let existed = self.rules.remove(&id).is_some();
        if existed {
            self.note(format!("firewall rule {} removed", id.0));
        }
        existed
    }

    fn firewall(&self, host: HostId, outbound: bool, d: &Datagram) -> Option<DropReason> {
        self.rules
            .iter()
            .find(|(_, r)| r.host == host && r.matches(outbound, d))
            .map(|(id, r)| DropReason::Firewall {
                rule: *id,
                label: r.label.clone(),
            })
    }

    // ----- endpoints ------------------------------------------------------

    /// Attach `endpoint` to `host` (replacing any other) and drive it once:
    /// its first datagrams leave now and its timer is armed.
    pub fn set_endpoint<E: Endpoint + Any>(&mut self, host: HostId, endpoint: E) {
        self.hosts[host.0].endpoint = Some(Box::new(endpoint));
        self.drive(host);
    }

    /// Detach and return `host`'s endpoint if it is an `E` (its timer is
    /// cancelled); otherwise leave it in place and return `None`.
    pub fn take_endpoint<E: Endpoint + Any>(&mut self, host: HostId) -> Option<E> {
        self.try_endpoint::<E>(host)?;
        let h = &mut self.hosts[host.0];
        let any: Box<dyn Any> = h.endpoint.take()?;
        if let Some(key) = h.timer.take() {
            self.queue.remove(&key);
        }
        any.downcast::<E>().ok().map(|e| *e)
    }

    /// `host`'s endpoint if it is an `E`.
    pub fn try_endpoint<E: Endpoint + Any>(&self, host: HostId) -> Option<&E> {
        let ep = self.hosts.get(host.0)?.endpoint.as_deref()?;
        let any: &dyn Any = ep;
        any.downcast_ref::<E>()
    }

    /// `host`'s endpoint.
    ///
    /// # Panics
    /// If the host has no endpoint of type `E`.
    pub fn endpoint<E: Endpoint + Any>(&self, host: HostId) -> &E {
        self.try_endpoint(host).unwrap_or_else(|| {
            panic!(
                "host {} has no endpoint of type {}",
                self.trace.host_name(host),
                std::any::type_name::<E>()
            )
        })
    }

    /// `host`'s endpoint, mutably. The host is driven (transmits drained,
    /// timer re-read) at the start of the next run or step.
    ///
    /// # Panics
    /// If the host has no endpoint of type `E`.
    pub fn endpoint_mut<E: Endpoint + Any>(&mut self, host: HostId) -> &mut E {
        let name = self.trace.host_name(host).to_string();
        let h = &mut self.hosts[host.0];
        h.dirty = true;
        let ep = h.endpoint.as_deref_mut();
        let any: Option<&mut dyn Any> = ep.map(|e| e as &mut dyn Any);
        any.and_then(|a| a.downcast_mut::<E>()).unwrap_or_else(|| {
            panic!(
                "host {name} has no endpoint of type {}",
                std::any::type_name::<E>()
            )
        })
    }

    /// Send `datagram` from `host` now, as if its endpoint had: useful for
    /// hosts without an endpoint and for injecting stray traffic.
    pub fn transmit(&mut self, host: HostId, datagram: Datagram) {
        self.send_from(host, datagram);
    }

    fn drive(&mut self, host: HostId) {
        let mut out = Vec::new();
        let timeout = {
            let Some(ep) = self.hosts[host.0].endpoint.as_mut() else {
                return;
            };
            while let Some(d) = ep.poll_transmit() {
                out.push(d);
                assert!(
                    out.len() <= MAX_EVENTS_PER_INSTANT as usize,
                    "endpoint on host {} never stops transmitting",
                    self.trace.host_name(host)
                );
            }
            ep.poll_timeout()
        };
        for d in out {
            self.send_from(host, d);
        }
        self.arm_timer(host, timeout);
    }

    fn arm_timer(&mut self, host: HostId, at: Option<Instant>) {
        let at = at.map(|t| t.max(self.now));
        let current = self.hosts[host.0].timer;
        if current.map(|(t, _)| t) == at {
            return;
        }
        if let Some(key) = current {
            self.queue.remove(&key);
        }
        let key = at.map(|t| self.schedule(t, Event::Timer { host }));
        self.hosts[host.0].timer = key;
    }

    fn schedule(&mut self, at: Instant, event: Event) -> (Instant, u64) {
        let key = (at, self.seq);
        self.seq += 1;
        self.queue.insert(key, event);
        key
    }

    fn flush_dirty(&mut self) {
        for i in 0..self.hosts.len() {
            if std::mem::take(&mut self.hosts[i].dirty) {
                self.drive(HostId(i));
            }
        }
    }

    // ----- the run loop ---------------------------------------------------

    /// When the next event is due, if any.
    pub fn next_event_time(&self) -> Option<Instant> {
        self.queue.first_key_value().map(|(&(t, _), _)| t)
    }

    /// Run one event (after driving endpoints touched since the last run).
    /// Returns `false` when nothing is queued.
    pub fn step(&mut self) -> bool {
        self.flush_dirty();
        let Some(((at, _), event)) = self.queue.pop_first() else {
            return false;
        };
        if at == self.now {
            self.events_at_now += 1;
            if self.events_at_now > MAX_EVENTS_PER_INSTANT {
                panic!(
                    "more than {MAX_EVENTS_PER_INSTANT} events at {at}: an endpoint is spinning\n{}",
                    self.report_tail(40)
                );
            }
        } else {
            self.events_at_now = 0;
        }
        self.now = self.now.max(at);
        match event {
            Event::Timer { host } => {
                self.hosts[host.0].timer = None;
                self.record(TraceEvent::Timer { host });
                if let Some(ep) = self.hosts[host.0].endpoint.as_mut() {
                    ep.handle_timeout(self.now);
                }
                self.drive(host);
            }
            Event::Arrive {
                host,
                segment,
                via_gateway,
                datagram,
            } => self.arrive(host, segment, via_gateway, datagram),
        }
        true
    }

    /// Run events until `done(self)` holds (checked before the first event
    /// and after each one) or the next event is later than `deadline`; in
    /// the second case the clock is set to `deadline`.
    pub fn run_until(
        &mut self,
        deadline: Instant,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> RunOutcome {
        self.flush_dirty();
        if done(self) {
            return RunOutcome::Done(self.now);
        }
        while self.next_event_time().is_some_and(|t| t <= deadline) {
            self.step();
            if done(self) {
                return RunOutcome::Done(self.now);
            }
        }
        self.now = self.now.max(deadline);
        RunOutcome::Deadline
    }

    /// [`Sim::run_until`] with a deadline `duration` from now.
    pub fn run_for(&mut self, duration: Duration, done: impl FnMut(&Sim) -> bool) -> RunOutcome {
        let deadline = self.now + duration;
        self.run_until(deadline, done)
    }

    /// Run every event up to `now + duration`, with no early stop.
    pub fn advance(&mut self, duration: Duration) {
        self.run_for(duration, |_| false);
    }

    // ----- datagram paths -------------------------------------------------

    fn drop_datagram(&mut self, host: Option<HostId>, d: &Datagram, reason: DropReason) {
        self.record(TraceEvent::Drop {
            host,
            from: d.from,
            to: d.to,
            reason,
            payload: PayloadSummary::of(&d.payload),
        });
    }

    fn send_from(&mut self, host: HostId, d: Datagram) {
        self.record(TraceEvent::Send {
            host,
            from: d.from,
            to: d.to,
            payload: PayloadSummary::of(&d.payload),
        });
        if !self.hosts[host.0].up {
            return self.drop_datagram(Some(host), &d, DropReason::HostDown);
        }
        let Some(segment) = self.segment_of(host, d.from.ip()) else {
            return self.drop_datagram(Some(host), &d, DropReason::BadSource);
        };
        self.forward(host, segment, d);
    }

    /// Outbound firewall at `host`, then onto `segment`.
    fn forward(&mut self, host: HostId, segment: SegmentId, d: Datagram) {
        if let Some(reason) = self.firewall(host, true, &d) {
            return self.drop_datagram(Some(host), &d, reason);
        }
        let seg = &self.segments[segment.0];
        if !seg.up {
            return self.drop_datagram(Some(host), &d, DropReason::LinkDown);
        }
        let direct = self.hosts.iter().position(|h| {
            h.interfaces
                .iter()
                .any(|i| i.segment == segment && i.ip == d.to.ip())
        });
        let (target, via_gateway) = match (direct, seg.gateway) {
            (Some(t), _) => (HostId(t), false),
            (None, Some(g)) if g != host => (g, true),
            _ => return self.drop_datagram(Some(host), &d, DropReason::NoRoute),
        };
        let seg = &mut self.segments[segment.0];
        let c = seg.conditions;
        let lost = seg.rng.chance(c.loss);
        let extra = seg.rng.range_inclusive(0, c.jitter.total_micros());
        if lost {
            return self.drop_datagram(Some(host), &d, DropReason::Loss);
        }
        let at = self.now + c.latency + Duration::from_micros(extra);
        self.schedule(
            at,
            Event::Arrive {
                host: target,
                segment,
                via_gateway,
                datagram: d,
            },
        );
    }

    fn arrive(&mut self, host: HostId, segment: SegmentId, via_gateway: bool, d: Datagram) {
        if !self.segments[segment.0].up {
            return self.drop_datagram(Some(host), &d, DropReason::LinkDown);
        }
        let h = &self.hosts[host.0];
        let still_there = if via_gateway {
            self.segments[segment.0].gateway == Some(host)
                && h.interfaces.iter().any(|i| i.segment == segment)
        } else {
            h.interfaces
                .iter()
                .any(|i| i.segment == segment && i.ip == d.to.ip())
        };
        if !still_there {
            return self.drop_datagram(Some(host), &d, DropReason::NoRoute);
        }
        if !h.up {
            return self.drop_datagram(Some(host), &d, DropReason::HostDown);
        }
        if let Some(reason) = self.firewall(host, false, &d) {
            return self.drop_datagram(Some(host), &d, reason);
        }
        if self.hosts[host.0].nat.is_some() {
            return self.nat_arrive(host, segment, d);
        }
        if self.hosts[host.0].endpoint.is_none() {
            return self.drop_datagram(Some(host), &d, DropReason::NoListener);
        }
        self.record(TraceEvent::Deliver {
            host,
            from: d.from,
            to: d.to,
            payload: PayloadSummary::of(&d.payload),
        });
        if let Some(ep) = self.hosts[host.0].endpoint.as_mut() {
            ep.handle_receive(self.now, d.to, d.from, &d.payload);
        }
        self.drive(host);
    }

    fn nat_ip(&self, nat: HostId, segment: SegmentId, like: IpAddr) -> Option<IpAddr> {
        self.hosts[nat.0]
            .interfaces
            .iter()
            .find(|i| i.segment == segment && i.ip.is_ipv4() == like.is_ipv4())
            .map(|i| i.ip)
    }

    fn owns(&self, host: HostId, segment: SegmentId, ip: IpAddr) -> bool {
        self.hosts[host.0]
            .interfaces
            .iter()
            .any(|i| i.segment == segment && i.ip == ip)
    }

    fn nat_arrive(&mut self, nat: HostId, segment: SegmentId, d: Datagram) {
        let now = self.now;
        let Some(node) = self.hosts[nat.0].nat.as_ref() else {
            return;
        };
        let (inside, outside) = (node.inside, node.outside);
        if segment == inside {
            if self.owns(nat, inside, d.to.ip()) {
                return self.drop_datagram(Some(nat), &d, DropReason::NoListener);
            }
            let Some(ext_ip) = self.nat_ip(nat, outside, d.to.ip()) else {
                return self.drop_datagram(Some(nat), &d, DropReason::NoRoute);
            };
            let hairpin = self.owns(nat, outside, d.to.ip());
            let node = self.hosts[nat.0].nat.as_mut().expect("checked above");
            if hairpin && !node.table.config.hairpinning {
                return self.drop_datagram(Some(nat), &d, DropReason::NoHairpin);
            }
            let Some((new_from, created)) = node.table.outbound(now, d.from, d.to, ext_ip) else {
                return self.drop_datagram(Some(nat), &d, DropReason::NoRoute);
            };
            if created {
                self.record(TraceEvent::NatMapping {
                    host: nat,
                    internal: d.from,
                    external: new_from,
                });
            }
            let (new_to, out_segment) = if hairpin {
                let node = self.hosts[nat.0].nat.as_mut().expect("checked above");
                match node.table.inbound(now, d.to, new_from) {
                    Ok(internal) => (internal, inside),
                    Err(reason) => return self.drop_datagram(Some(nat), &d, reason),
                }
            } else {
                (d.to, outside)
            };
            self.translate(nat, out_segment, d, new_from, new_to);
        } else if segment == outside {
            if !self.owns(nat, outside, d.to.ip()) {
                return self.drop_datagram(Some(nat), &d, DropReason::NoRoute);
            }
            let node = self.hosts[nat.0].nat.as_mut().expect("checked above");
            match node.table.inbound(now, d.to, d.from) {
                Ok(internal) => {
                    let from = d.from;
                    self.translate(nat, inside, d, from, internal)
                }
                Err(reason) => self.drop_datagram(Some(nat), &d, reason),
            }
        } else {
            self.drop_datagram(Some(nat), &d, DropReason::NoRoute);
        }
    }

    fn translate(
        &mut self,
        nat: HostId,
        segment: SegmentId,
        d: Datagram,
        new_from: SocketAddr,
        new_to: SocketAddr,
    ) {
        self.record(TraceEvent::Forward {
            host: nat,
            from: d.from,
            to: d.to,
            new_from,
            new_to,
        });
        let d = Datagram {
            from: new_from,
            to: new_to,
            payload: d.payload,
        };
        self.forward(nat, segment, d);
    }
}
