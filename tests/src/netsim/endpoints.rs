//! Small endpoints for building scenarios and testing the simulator: a STUN
//! server and client on the core's codec, and a UDP prober.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use scream_ice_core::stun::{Attribute, Message, MessageBuilder, MessageType, Repr, TransactionId};
use scream_ice_core::time::{Duration, Instant};

use super::sim::{Datagram, Endpoint};

/// A STUN server (RFC 8489 section 6.3 for Binding only): answers every
/// Binding request with XOR-MAPPED-ADDRESS of the source it sees, optional
/// SOFTWARE, and FINGERPRINT. Anything else is ignored. It can be switched
/// down (ignores everything) or made slow (answers `delay` late).
#[derive(Clone, Debug)]
pub struct StunServer {
    software: Option<String>,
    up: bool,
    delay: Duration,
    now: Instant,
    pending: Vec<(Instant, Datagram)>,
    ready: VecDeque<Datagram>,
    answered: u64,
    ignored: u64,
}

impl Default for StunServer {
    fn default() -> Self {
        StunServer::new()
    }
}

impl StunServer {
    /// An up, prompt server without SOFTWARE.
    pub fn new() -> Self {
        StunServer {
            software: None,
            up: true,
            delay: Duration::ZERO,
            now: Instant::ZERO,
            pending: Vec::new(),
            ready: VecDeque::new(),
            answered: 0,
            ignored: 0,
        }
    }

    /// Add SOFTWARE to every answer.
    pub fn with_software(mut self, software: impl Into<String>) -> Self {
        self.software = Some(software.into());
        self
    }

    /// Answer `delay` after each request arrives.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Switch the server on or off. Off, it drops every request (answers
    /// already queued still go out).
    pub fn set_up(&mut self, up: bool) {
        self.up = up;
    }

    /// Whether the server answers.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Change the answer delay (for requests arriving from now on).
    pub fn set_delay(&mut self, delay: Duration) {
        self.delay = delay;
    }

    /// Binding requests answered.
    pub fn answered(&self) -> u64 {
        self.answered
    }

    /// Datagrams ignored (not a Binding request, or the server was down).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    fn answer(&self, local: SocketAddr, remote: SocketAddr, payload: &[u8]) -> Option<Datagram> {
        let msg = Message::new_checked(payload).ok()?;
        let repr = Repr::parse(&msg).ok()?;
        if repr.message_type != MessageType::BINDING_REQUEST {
            return None;
        }
        let mut buf = [0u8; 548];
        let mut b =
            MessageBuilder::new(&mut buf, MessageType::BINDING_SUCCESS, repr.transaction_id);
        b.add(&Attribute::XorMappedAddress(remote));
        if let Some(s) = &self.software {
            b.add(&Attribute::Software(s));
        }
        b.add_fingerprint();
        let len = b.finish().ok()?;
        Some(Datagram {
            from: local,
            to: remote,
            payload: buf[..len].to_vec(),
        })
    }
}

impl Endpoint for StunServer {
    fn handle_receive(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        payload: &[u8],
    ) {
        self.now = now;
        let answer = if self.up {
            self.answer(local, remote, payload)
        } else {
            None
        };
        let Some(d) = answer else {
            self.ignored += 1;
            return;
        };
        self.answered += 1;
        if self.delay == Duration::ZERO {
            self.ready.push_back(d);
        } else {
            self.pending.push((now + self.delay, d));
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].0 <= now {
                let (_, d) = self.pending.remove(i);
                self.ready.push_back(d);
            } else {
                i += 1;
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.ready.pop_front()
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.pending.iter().map(|(t, _)| *t).min()
    }
}

/// One answer a [`StunClient`] got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StunResult {
    /// The server that answered.
    pub server: SocketAddr,
    /// XOR-MAPPED-ADDRESS.
    pub mapped: SocketAddr,
    /// SOFTWARE, if any.
    pub software: Option<String>,
    /// When the answer arrived.
    pub at: Instant,
    /// From the first transmission of the request.
    pub rtt: Duration,
}

#[derive(Clone, Debug)]
struct Transaction {
    server: SocketAddr,
    id: TransactionId,
    first_sent: Instant,
    next: Instant,
    sent: u32,
    done: bool,
}

/// A STUN client: from `local`, sends one Binding request to each server,
/// retransmits every `rto` (fixed, not doubled) up to `max_sends` times, and
/// records each answer. It starts at the first `handle_timeout` at or after
/// its start time (time zero by default), as a sans-IO node knows no time
/// before it is told one.
#[derive(Clone, Debug)]
pub struct StunClient {
    local: SocketAddr,
    servers: Vec<SocketAddr>,
    rto: Duration,
    max_sends: u32,
    start: Option<Instant>,
    now: Instant,
    counter: u32,
    salt: [u8; 8],
    transactions: Vec<Transaction>,
    outbox: VecDeque<Datagram>,
    results: Vec<StunResult>,
    stray: u64,
}

impl StunClient {
    /// A client sending from `local` to `servers`, with rto 500 ms and up to
    /// 7 sends (RFC 8489's Rc), starting at time zero.
    pub fn new(local: SocketAddr, servers: &[SocketAddr]) -> Self {
        let mut salt = [0u8; 8];
        let text = local.to_string();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        salt.copy_from_slice(&h.to_be_bytes());
        StunClient {
            local,
            servers: servers.to_vec(),
            rto: Duration::from_millis(500),
            max_sends: 7,
            start: Some(Instant::ZERO),
            now: Instant::ZERO,
            counter: 0,
            salt,
            transactions: Vec::new(),
            outbox: VecDeque::new(),
            results: Vec::new(),
            stray: 0,
        }
    }

    /// Set the retransmission interval and number of sends.
    pub fn with_retransmit(mut self, rto: Duration, max_sends: u32) -> Self {
        self.rto = rto;
        self.max_sends = max_sends.max(1);
        self
    }

    /// Start at `at` instead of time zero.
    pub fn starting_at(mut self, at: Instant) -> Self {
        self.start = Some(at);
        self
    }

    /// Query every server again, as soon as the simulator drives the client.
    pub fn restart(&mut self) {
        self.start = Some(self.now);
    }

    /// Answers so far, in arrival order.
    pub fn results(&self) -> &[StunResult] {
        &self.results
    }

    /// The answer from `server`, if any (the latest).
    pub fn mapped_by(&self, server: SocketAddr) -> Option<SocketAddr> {
        self.results
            .iter()
            .rev()
            .find(|r| r.server == server)
            .map(|r| r.mapped)
    }

    /// Whether every transaction of the current round has an answer or gave up.
    pub fn finished(&self) -> bool {
        self.start.is_none() && self.transactions.iter().all(|t| t.done)
    }

    /// Requests sent (first transmissions and retransmissions).
    pub fn requests_sent(&self) -> u32 {
        self.transactions.iter().map(|t| t.sent).sum()
    }

    /// Datagrams received that matched no transaction.
    pub fn stray(&self) -> u64 {
        self.stray
    }

    fn request(&self, t: &Transaction) -> Datagram {
        let mut buf = [0u8; 64];
        let b = MessageBuilder::new(&mut buf, MessageType::BINDING_REQUEST, t.id);
        let len = b.finish().unwrap_or(20);
        Datagram {
            from: self.local,
            to: t.server,
            payload: buf[..len].to_vec(),
        }
    }
}

impl Endpoint for StunClient {
    fn handle_receive(
        &mut self,
        now: Instant,
        _local: SocketAddr,
        remote: SocketAddr,
        payload: &[u8],
    ) {
        self.now = now;
        let parsed = Message::new_checked(payload).ok().and_then(|m| {
            Repr::parse(&m).ok().map(|r| {
                (
                    r.message_type,
                    r.transaction_id,
                    r.xor_mapped_address,
                    r.software.map(str::to_string),
                )
            })
        });
        let Some((ty, id, Some(mapped), software)) = parsed else {
            self.stray += 1;
            return;
        };
        let Some(t) = self
            .transactions
            .iter_mut()
            .find(|t| t.id == id && t.server == remote && !t.done)
        else {
            self.stray += 1;
            return;
        };
        if ty != MessageType::BINDING_SUCCESS {
            self.stray += 1;
            return;
        }
        t.done = true;
        let rtt = now - t.first_sent;
        self.results.push(StunResult {
            server: remote,
            mapped,
            software,
            at: now,
            rtt,
        });
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.start.is_some_and(|s| s <= now) {
            self.start = None;
            self.transactions.clear();
            for server in self.servers.clone() {
                self.counter += 1;
                let mut id = [0u8; 12];
                id[..8].copy_from_slice(&self.salt);
                id[8..].copy_from_slice(&self.counter.to_be_bytes());
                self.transactions.push(Transaction {
                    server,
                    id: TransactionId(id),
                    first_sent: now,
                    next: now,
                    sent: 0,
                    done: false,
                });
            }
        }
        let mut out = Vec::new();
        for t in &mut self.transactions {
            if t.done || t.next > now {
                continue;
            }
            if t.sent >= self.max_sends {
                t.done = true;
                continue;
            }
            t.sent += 1;
            t.next = now + self.rto;
            out.push(t.clone());
        }
        for t in out {
            let d = self.request(&t);
            self.outbox.push_back(d);
        }
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.outbox.pop_front()
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        let next = self
            .transactions
            .iter()
            .filter(|t| !t.done)
            .map(|t| t.next)
            .min();
        match (self.start, next) {
            (Some(s), Some(n)) => Some(s.min(n)),
            (s, n) => s.or(n),
        }
    }
}

/// A datagram a [`Prober`] received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Arrival time.
    pub at: Instant,
    /// The local address it arrived on.
    pub local: SocketAddr,
    /// Its source.
    pub remote: SocketAddr,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// A raw UDP node: sends what it is told (now or at a scheduled time),
/// records everything it receives, and optionally echoes it back.
#[derive(Clone, Debug, Default)]
pub struct Prober {
    outbox: VecDeque<Datagram>,
    scheduled: BTreeMap<(Instant, u64), Datagram>,
    seq: u64,
    received: Vec<Received>,
    echo: bool,
}

impl Prober {
    /// A silent prober.
    pub fn new() -> Self {
        Prober::default()
    }

    /// A prober that echoes every datagram back to its source, from the
    /// address it arrived on.
    pub fn echo() -> Self {
        Prober {
            echo: true,
            ..Prober::default()
        }
    }

    /// Send `payload` from `from` to `to` as soon as the simulator drives
    /// this node (at once from [`super::Sim::set_endpoint`], or at the next
    /// run after [`super::Sim::endpoint_mut`]).
    pub fn send(&mut self, from: SocketAddr, to: SocketAddr, payload: impl Into<Vec<u8>>) {
        self.outbox.push_back(Datagram {
            from,
            to,
            payload: payload.into(),
        });
    }

    /// Send `payload` at time `at` (through the timer).
    pub fn send_at(
        &mut self,
        at: Instant,
        from: SocketAddr,
        to: SocketAddr,
        payload: impl Into<Vec<u8>>,
    ) {
        self.scheduled.insert(
            (at, self.seq),
            Datagram {
                from,
                to,
                payload: payload.into(),
            },
        );
        self.seq += 1;
    }

    /// Everything received, in arrival order.
    pub fn received(&self) -> &[Received] {
        &self.received
    }

    /// What arrived from `remote`.
    pub fn received_from(&self, remote: SocketAddr) -> impl Iterator<Item = &Received> {
        self.received.iter().filter(move |r| r.remote == remote)
    }

    /// Forget what was received.
    pub fn clear(&mut self) {
        self.received.clear();
    }
}

impl Endpoint for Prober {
    fn handle_receive(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        payload: &[u8],
    ) {
        if self.echo {
            self.outbox.push_back(Datagram {
                from: local,
                to: remote,
                payload: payload.to_vec(),
            });
        }
        self.received.push(Received {
            at: now,
            local,
            remote,
            payload: payload.to_vec(),
        });
    }

    fn handle_timeout(&mut self, now: Instant) {
        while self
            .scheduled
            .first_key_value()
            .is_some_and(|(&(t, _), _)| t <= now)
        {
            if let Some((_, d)) = self.scheduled.pop_first() {
                self.outbox.push_back(d);
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.outbox.pop_front()
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.scheduled.first_key_value().map(|(&(t, _), _)| t)
    }
}
