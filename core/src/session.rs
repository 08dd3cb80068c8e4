//! One ICE session as every adapter drives it: the [`Agent`] plus
//! everything around it that router and speaker must do alike.
//!
//! The session sits between the policy ([`decide`]) and an adapter (tokio,
//! embassy, smoltcp, the test network simulator). The adapter owns the
//! sockets, the clock, the DNS resolver and the signaling channel; the
//! session owns every ICE decision, so two adapters never disagree:
//!
//! - **credentials** (ufrag and password, RFC 8839 `ice-char`s) drawn from
//!   the caller's seed, and new ones on [`Session::restart`];
//! - the **policy's decision**: [`decide`] for the peer at the current
//!   [`FallbackStage`], applied to the agent ([`AgentConfig::for_decision`]);
//! - the **offer filter**: host candidates the decision does not offer
//!   ([`Decision::offers`]) still serve as bases of checks but are never
//!   reported as [`Event::LocalCandidate`];
//! - **local preferences** from the interface addresses the adapter reports
//!   ([`Session::handle_interfaces`]): local-network addresses first when
//!   `local_network_priority` is on;
//! - **resolution requests** for STUN server host names as outputs
//!   ([`Session::poll_request`], answered by [`Session::handle_resolved`]):
//!   DNS is I/O, so the adapter does it; host checks never wait for it;
//! - [`PeerKnowledge`] **fed at runtime** from the peer's candidates and
//!   from our own STUN mappings; when it changes the peer's
//!   [`NetworkType`], the session decides again ([`Event::Decided`]), and a
//!   symmetric NAT moves it to [`FallbackStage::Full`] at once (relay);
//! - the **fallback ladder**: when no pair has succeeded within the
//!   decision's [`Decision::widen_after`], or earlier when every pair has
//!   failed ([`Agent::is_failing`]; a stage that queries servers has no
//!   `widen_after` and steps only on this), the session steps to the next
//!   stage that adds candidates, decides again, gathers what the new
//!   decision adds (srflx, and asks for relays), trickles it, reports the
//!   step ([`Event::Widened`]) and records the stage it connected in
//!   ([`Session::connected_stage`]); the agent's failure grace starts again
//!   with the new candidates, and a step that adds nothing is not taken;
//! - **re-announcing** host candidates after an ICE restart, after an
//!   address change, and when a wider decision offers what an earlier one
//!   withheld;
//! - **remote candidates named by a host name** (an mDNS `.local` name, or
//!   DNS): the adapter resolves the name (I/O) while the session holds the
//!   candidate ([`Session::handle_remote_candidate_name`], answered by
//!   [`Session::handle_resolved_candidate`]), and the peer's
//!   end-of-candidates waits until every such candidate is answered;
//! - the **end-of-candidates rule**: [`Event::Gathering`] with
//!   [`GatheringState::Complete`] means "signal end-of-candidates now"; it
//!   comes at once when the decision queries no server, after the gathering
//!   cap otherwise, and again after each widening round (the candidates of a
//!   widened stage trickle after the first end-of-candidates; our agent and
//!   the router accept them).
//!
//! The session owns no socket: a datagram names the local address it
//! arrived on, a transmit names the local address to send from, so one
//! loop (one socket per local address) can drive many sessions; [`demux`]
//! tells which session a datagram belongs to.
//!
//! # Driving a session
//!
//! ```text
//!   adapter                                   Session
//!   -------                                   -------
//!   Session::new(policy, peer, role, seed, now)   decide(), credentials
//!   handle_interfaces(now, &bound addresses) ---> host candidates, gathering
//!   <signal local_credentials() + LocalCandidate events + end-of-candidates>
//!   handle_remote_credentials / handle_remote_candidate /
//!   handle_end_of_remote_candidates(now)       ---> pairs, PeerKnowledge
//!   handle_receive(now, local, remote, bytes)  ---> false: application data
//!   handle_timeout(now) at poll_timeout        ---> checks, ladder
//!   handle_resolved(now, server, &addresses)   ---> srflx gathering
//!   handle_remote_candidate_name(candidate)    ---> PendingCandidate
//!   handle_resolved_candidate(now, p, address) ---> the candidate, held EOC
//!   restart(now) / handle_interfaces(...)      ---> re-announce
//! ```
//!
//! Inputs: [`Session::handle_interfaces`], [`Session::handle_remote_credentials`],
//! [`Session::handle_remote_candidate`], [`Session::handle_end_of_remote_candidates`],
//! [`Session::handle_receive`], [`Session::handle_timeout`],
//! [`Session::handle_resolved`], [`Session::handle_remote_candidate_name`],
//! [`Session::handle_resolved_candidate`], [`Session::restart`].
//!
//! Outputs: [`Session::poll_transmit`] (a datagram with its source and
//! destination), [`Session::poll_request`] (a host name to resolve),
//! [`Session::poll_event`] (what to signal and what happened),
//! [`Session::poll_timeout`] (when to call `handle_timeout`).
//!
//! **The drain rule** (the agent's, extended): after every input call
//! `poll_transmit` until `None`, then `poll_request` until `None`, then
//! `poll_event` until `None`, then `poll_timeout`, and only then wait.
//! Queues have fixed capacities; not draining them loses the oldest.
//! Every request must be answered with [`Session::handle_resolved`] (an
//! empty list when the name did not resolve or the adapter's own DNS
//! timeout passed): gathering starts once all are answered.
//!
//! Every method is allocation-free and never panics on any input.

use core::fmt;
use core::net::{IpAddr, SocketAddr};

use heapless::{Deque, String, Vec};

use crate::agent::drbg::Drbg;
use crate::agent::{
    Agent, AgentConfig, AgentError, ConnectionState, Event as AgentEvent, FailureReason,
    GatheringState, Role, Transmit,
};
use crate::candidate::{AddressFamily, Candidate, CandidateKind, ice_chars_from, local_preference};
use crate::net::Cidr;
use crate::policy::{
    Decision, FallbackStage, IceMode, MappingBehavior, NetworkType, PeerKnowledge, PolicyConfig,
    ServerSet, decide, network_type,
};
use crate::stun::{Class, Message, Method, Repr};
use crate::time::Instant;
use crate::url::{IceServerUrl, Scheme, Target, Transport};

/// Length of the ufrags the session draws (RFC 8839 asks for at least 4).
pub const UFRAG_LEN: usize = 8;
/// Length of the passwords the session draws (RFC 8839 asks for at least 22).
pub const PWD_LEN: usize = 24;
/// Events queued at most between two drains.
pub const EVENT_QUEUE: usize = 32;
/// TURN servers a session takes from the policy at most (the first `turn:`
/// UDP ones any stage of its ladder selects).
pub const MAX_SESSION_TURN_SERVERS: usize = 2;
/// Resolution requests queued at most (one per STUN server the agent can
/// use and one per TURN server the session takes).
pub const REQUEST_QUEUE: usize = crate::agent::MAX_STUN_SERVERS + MAX_SESSION_TURN_SERVERS;
/// STUN servers a session takes from the policy at most (the first ones any
/// stage of its ladder selects); the agent uses at most this many.
pub const MAX_SESSION_SERVERS: usize = crate::agent::MAX_STUN_SERVERS;
/// `local_subnets` entries a session keeps for ranking its own addresses
/// (further entries still count for the decision, which is taken at
/// [`Session::new`], but not for local preferences).
pub const MAX_LOCAL_SUBNETS: usize = 16;
/// Longest STUN server host name (RFC 1035).
pub const MAX_HOST_NAME: usize = 253;
/// Remote candidates whose host names may be resolving at once
/// ([`Session::handle_remote_candidate_name`]).
pub const MAX_PENDING_CANDIDATES: usize = 8;

/// A remote candidate waiting for its host name to resolve
/// ([`Session::handle_remote_candidate_name`]); hand it back with the
/// answer to [`Session::handle_resolved_candidate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PendingCandidate(u32);

/// A STUN or TURN server of the policy: which list, which index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerRef {
    /// `true`: `turn_servers`; `false`: `stun_servers`.
    pub turn: bool,
    /// Index into that list of the [`PolicyConfig`].
    pub index: u8,
}

/// Something the adapter must do for the session (I/O the core cannot do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Request<'a> {
    /// Resolve `name` (from the server's URI) and answer with
    /// [`Session::handle_resolved`]`(now, server, addresses)`; `port` is
    /// the one to put on every address.
    Resolve {
        /// The server the name belongs to.
        server: ServerRef,
        /// The host name to look up.
        name: &'a str,
        /// The port for the resolved addresses.
        port: u16,
    },
}

/// Why the ladder stepped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum WidenReason {
    /// No pair succeeded within the previous decision's `widen_after`.
    NoPairWithin,
    /// An endpoint-dependent (symmetric) NAT was seen: straight to `full`.
    SymmetricNat,
    /// Every pair of the stage failed ([`Agent::is_failing`]) and the next
    /// stage adds candidates: the step a stage that queries servers (and so
    /// has no `widen_after`) takes, and an early one for a stage that has.
    AllPairsFailed,
}

impl fmt::Display for WidenReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WidenReason::NoPairWithin => "no pair succeeded within widen_after",
            WidenReason::SymmetricNat => "symmetric NAT seen",
            WidenReason::AllPairsFailed => "every candidate pair failed",
        })
    }
}

/// What the session tells the adapter. The agent's events keep their names
/// and meaning (host candidates the decision withholds are not reported);
/// the last four are the session's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Event {
    /// A local candidate to signal to the peer (trickle it).
    LocalCandidate(Candidate),
    /// Gathering progressed; `Complete` means: signal end-of-candidates.
    Gathering(GatheringState),
    /// Connectivity progressed.
    Connection(ConnectionState),
    /// A pair was selected: send application data from `local` to `remote`.
    /// [`Session::connected_stage`] records the stage in force.
    Selected {
        /// Our address (the base of the local candidate).
        local: SocketAddr,
        /// The peer's address.
        remote: SocketAddr,
    },
    /// A role conflict switched our role.
    RoleChanged(Role),
    /// The session failed; nothing more happens until a restart.
    Failed(FailureReason),
    /// The decision in force: once after the host candidates of the first
    /// [`Session::handle_interfaces`], then whenever it changes (stage, or
    /// what is known of the peer). The adapter's decision log.
    Decided(Decision),
    /// The ladder stepped to `stage` (a [`Event::Decided`] follows).
    Widened {
        /// The new stage.
        stage: FallbackStage,
        /// Why.
        reason: WidenReason,
    },
    /// The decision asks for relayed candidates from these TURN servers
    /// (indices into `turn_servers`). Relay allocation is not implemented
    /// yet; an adapter logs this. Each server's address follows as
    /// [`Event::RelayServer`] (at once for an IP literal, after a
    /// [`Request::Resolve`] for a host name).
    RelayWanted(ServerSet),
    /// Where a TURN server of [`Event::RelayWanted`] is: `index` into
    /// `turn_servers`, and one address per family its name resolved to
    /// (or its literal address). This is where a relay would be allocated
    /// ([`Session::relay_servers`] lists them all). `turns:` and
    /// `?transport=tcp` servers are not taken (no TLS or TCP here).
    RelayServer {
        /// Index into the policy's `turn_servers`.
        index: u8,
        /// The server's address.
        address: SocketAddr,
    },
    /// The session restarted ICE by itself (the selected pair's local
    /// address went away): signal [`Session::local_credentials`] and the
    /// candidates that follow, as after [`Session::restart`].
    Restarted,
}

/// Why a session could not be created or restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SessionError {
    /// The agent refused (see [`AgentError`]).
    Agent(AgentError),
    /// [`MAX_PENDING_CANDIDATES`] remote candidates are resolving already.
    TooManyPendingCandidates,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Agent(e) => write!(f, "ICE agent: {e}"),
            SessionError::TooManyPendingCandidates => write!(
                f,
                "{MAX_PENDING_CANDIDATES} remote candidate names are resolving already"
            ),
        }
    }
}

impl core::error::Error for SessionError {}

impl From<AgentError> for SessionError {
    fn from(e: AgentError) -> Self {
        SessionError::Agent(e)
    }
}

/// Where one of the policy's STUN servers is, as the session keeps it.
/// (No allocator to box the name: the session holds at most
/// [`MAX_SESSION_SERVERS`] of these.)
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
enum ServerEntry {
    Address(SocketAddr),
    Name(String<MAX_HOST_NAME>, u16),
}

/// Which decisions a session can be in: one per stage, without and with
/// symmetric-NAT evidence (the only runtime fact that changes what the
/// policy decides for one peer address).
type Decisions = [[Decision; 2]; 3];

const fn stage_index(stage: FallbackStage) -> usize {
    match stage {
        FallbackStage::LocalOnly => 0,
        FallbackStage::WithStun => 1,
        FallbackStage::Full => 2,
    }
}

/// One ICE session: an `Agent<L, R, P>` (`L` local candidates, `R` remote,
/// `P` pairs) and what it took from the policy at [`Session::new`] (the
/// decisions of every stage, its STUN servers, the local subnets): it
/// borrows nothing, so an adapter can keep it in any struct. See the
/// [module documentation](self) for the flow and the drain rule.
pub struct Session<const L: usize, const R: usize, const P: usize> {
    decisions: Decisions,
    local_network_priority: bool,
    local_subnets: Vec<Cidr, MAX_LOCAL_SUBNETS>,
    servers: Vec<(u8, ServerEntry), MAX_SESSION_SERVERS>,
    knowledge: PeerKnowledge,
    decision: Decision,
    agent: Agent<L, R, P>,
    rng: Drbg,
    ufrag: String<UFRAG_LEN>,
    pwd: String<PWD_LEN>,
    /// Host addresses in the order the adapter reported them.
    hosts: Vec<SocketAddr, L>,
    /// Host addresses already announced in this ICE generation.
    announced: Vec<SocketAddr, L>,
    /// STUN servers (policy indices) asked to resolve and not answered.
    pending: Vec<u8, MAX_SESSION_SERVERS>,
    /// STUN servers (policy indices) handed to the agent, or given up.
    used: ServerSet,
    /// TURN servers already asked for.
    relays_wanted: ServerSet,
    widen_at: Option<Instant>,
    connected_stage: Option<FallbackStage>,
    /// Whether the first gathering round may start (interfaces reported).
    started: bool,
    /// Whether host candidates the decision does not offer are withheld.
    offer_filter: bool,
    /// Remote candidates whose names the adapter is resolving (the
    /// candidate's address is a placeholder until then).
    pending_candidates: Vec<(PendingCandidate, Candidate), MAX_PENDING_CANDIDATES>,
    next_pending: u32,
    /// The peer's end-of-candidates came while candidates were pending.
    end_deferred: bool,
    /// TURN servers as the session keeps them (policy indices).
    turn: Vec<(u8, ServerEntry), MAX_SESSION_TURN_SERVERS>,
    /// TURN servers (policy indices) asked to resolve and not answered.
    turn_pending: Vec<u8, MAX_SESSION_TURN_SERVERS>,
    /// Where the wanted TURN servers are (an address per family).
    relay_servers: Vec<(u8, SocketAddr), { 2 * MAX_SESSION_TURN_SERVERS }>,
    /// Requests not polled yet.
    requests: Deque<ServerRef, REQUEST_QUEUE>,
    events: Deque<Event, EVENT_QUEUE>,
}

impl<const L: usize, const R: usize, const P: usize> fmt::Debug for Session<L, R, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("decision", &self.decision)
            .field("agent", &self.agent)
            .field("hosts", &self.hosts)
            .field("connected_stage", &self.connected_stage)
            .finish()
    }
}

impl<const L: usize, const R: usize, const P: usize> Session<L, R, P> {
    /// A session for the peer described by `peer` (at least its address),
    /// deciding at [`FallbackStage::LocalOnly`] with `policy` (which must
    /// have passed [`PolicyConfig::validate`]; the session copies what it
    /// needs and keeps no borrow). `seed` must come from a
    /// cryptographically secure source: credentials, transaction ids and
    /// the tie-breaker are drawn from it, and the same seed replays a run.
    /// Nothing is gathered until [`Session::handle_interfaces`].
    pub fn new(
        policy: &PolicyConfig<'_>,
        peer: PeerKnowledge,
        role: Role,
        seed: [u8; 32],
        now: Instant,
    ) -> Result<Self, SessionError> {
        let decisions = all_decisions(policy, &peer);
        let symmetric = symmetric_seen(&peer);
        let decision = decisions[0][usize::from(symmetric)];
        let mut rng = Drbg::new(seed);
        let (ufrag, pwd) = draw_credentials(&mut rng);
        let mut agent_seed = [0u8; 32];
        rng.fill_bytes(&mut agent_seed);
        let agent = Agent::new(
            AgentConfig::for_decision(&decision),
            role,
            &ufrag,
            &pwd,
            agent_seed,
        )?;
        let mut local_subnets = Vec::new();
        for c in policy.network_detection.local_subnets {
            if local_subnets.push(*c).is_err() {
                break;
            }
        }
        let mut s = Session {
            decisions,
            local_network_priority: policy.local_network_priority,
            local_subnets,
            servers: kept_servers(
                &decisions,
                |d| d.stun_servers,
                |i| policy.stun_servers.get(i).map(|s| s.url),
                |u| u.scheme() == Scheme::Stun,
            ),
            turn: kept_servers(
                &decisions,
                |d| d.turn_servers,
                |i| policy.turn_servers.get(i).map(|t| t.url),
                |u| u.scheme() == Scheme::Turn && u.transport() != Some(Transport::Tcp),
            ),
            turn_pending: Vec::new(),
            relay_servers: Vec::new(),
            knowledge: peer,
            decision,
            agent,
            rng,
            ufrag,
            pwd,
            hosts: Vec::new(),
            announced: Vec::new(),
            pending: Vec::new(),
            used: ServerSet::EMPTY,
            relays_wanted: ServerSet::EMPTY,
            widen_at: decision.widen_after.map(|d| now + d),
            connected_stage: None,
            started: false,
            offer_filter: true,
            pending_candidates: Vec::new(),
            next_pending: 0,
            end_deferred: false,
            requests: Deque::new(),
            events: Deque::new(),
        };
        s.adopt_servers();
        if symmetric && decision.stage < FallbackStage::Full {
            s.step_to(now, FallbackStage::Full, WidenReason::SymmetricNat);
        }
        Ok(s)
    }

    // ---------------------------------------------------------------- getters

    /// Our ufrag and password of the current ICE generation: signal them.
    pub fn local_credentials(&self) -> (&str, &str) {
        (&self.ufrag, &self.pwd)
    }

    /// The decision in force.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The stage in force ([`Decision::stage`]).
    pub fn stage(&self) -> FallbackStage {
        self.decision.stage
    }

    /// The stage in force when a pair was first selected in this ICE
    /// generation, if one was.
    pub fn connected_stage(&self) -> Option<FallbackStage> {
        self.connected_stage
    }

    /// What is known of the peer so far.
    pub fn knowledge(&self) -> &PeerKnowledge {
        &self.knowledge
    }

    /// Where the TURN servers asked for so far are ([`Event::RelayServer`]):
    /// `(index into turn_servers, address)`, an address per family.
    pub fn relay_servers(&self) -> &[(u8, SocketAddr)] {
        &self.relay_servers
    }

    /// The agent (read-only: every input goes through the session).
    pub fn agent(&self) -> &Agent<L, R, P> {
        &self.agent
    }

    /// The selected pair as (our address, the peer's), if any.
    pub fn selected_pair(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.agent.selected_pair()
    }

    /// The local candidates signalled so far in this ICE generation (the
    /// [`Event::LocalCandidate`]s: offered host candidates and gathered
    /// server-reflexive ones; never learned peer-reflexive ones), for a
    /// signaling reply that carries them all.
    pub fn signalled_candidates(&self) -> impl Iterator<Item = &Candidate> {
        self.agent.local_candidates().filter(|c| match c.kind {
            CandidateKind::Host => self.announced.contains(&c.address),
            CandidateKind::PeerReflexive => false,
            _ => true,
        })
    }

    /// Whether end-of-candidates is due: gathering of the current round is
    /// complete.
    pub fn gathering_complete(&self) -> bool {
        self.agent.gathering_state() == GatheringState::Complete
    }

    /// The host addresses the adapter reported, in its order.
    pub fn host_addresses(&self) -> &[SocketAddr] {
        &self.hosts
    }

    // ---------------------------------------------------------------- inputs

    /// The adapter's bound host addresses (one per socket), in its order of
    /// preference. The first call adds them as host candidates (local
    /// preferences from [`local_preference`]: local-network addresses first
    /// with `local_network_priority`, then by order within each family) and
    /// starts gathering; later calls report changes: new addresses are
    /// added and announced, vanished ones removed, and when the selected
    /// pair's address vanished the session restarts ICE
    /// ([`Event::Restarted`]). Addresses beyond `L` are ignored.
    pub fn handle_interfaces(&mut self, now: Instant, addresses: &[SocketAddr]) {
        let mut lost_selected = false;
        let selected_local = self.agent.selected_pair().map(|(l, _)| l);
        let mut i = 0;
        while i < self.hosts.len() {
            let a = self.hosts[i];
            if addresses.contains(&a) {
                i += 1;
                continue;
            }
            self.agent.remove_local_candidate(a);
            self.hosts.remove(i);
            self.announced.retain(|x| *x != a);
            lost_selected |= selected_local == Some(a);
        }
        for &a in addresses {
            if self.hosts.contains(&a) || self.hosts.is_full() {
                continue;
            }
            let pref = self.preference_for(a, addresses);
            match self.agent.add_host_candidate(a, pref) {
                Ok(()) => {
                    let _ = self.hosts.push(a);
                }
                Err(e) => warn!("host address skipped: {}", e),
            }
        }
        self.pump();
        if !self.started {
            self.started = true;
            // The decision log's first line, after the host candidates.
            let d = self.decision;
            self.push(Event::Decided(d));
            self.maybe_gather(now);
        } else if lost_selected {
            self.restart_inner(now);
            self.push(Event::Restarted);
        }
        self.pump();
    }

    /// Turn the offer filter off (`false`: every host candidate is
    /// announced) or on again. For peers the policy cannot place, e.g. a
    /// test that offers loopback candidates to an unknown peer. Call it
    /// before [`Session::handle_interfaces`].
    pub fn set_offer_filter(&mut self, on: bool) {
        self.offer_filter = on;
    }

    /// Replace the agent's timing and behaviour for the decision in force
    /// (tuning and tests; the policy's is [`AgentConfig::for_decision`]).
    /// A later step of the ladder puts its decision's timing back
    /// ([`AgentConfig::apply_decision`]) and keeps every other field, such
    /// as [`AgentConfig::unanswered_check_budget`] and
    /// [`AgentConfig::consent_timeout`]: the application's limits, which
    /// no stage changes.
    pub fn set_agent_config(&mut self, config: AgentConfig) {
        self.agent.set_config(config);
    }

    /// The peer's ufrag and password, from signaling.
    pub fn handle_remote_credentials(&mut self, ufrag: &str, pwd: &str) -> Result<(), AgentError> {
        let r = self.agent.set_remote_credentials(ufrag, pwd);
        self.pump();
        r
    }

    /// A remote candidate from signaling (host names resolved first). It is
    /// recorded in [`PeerKnowledge`]; if that changes the peer's network
    /// type, the session decides again.
    pub fn handle_remote_candidate(
        &mut self,
        now: Instant,
        candidate: Candidate,
    ) -> Result<(), AgentError> {
        let r = self.agent.add_remote_candidate(candidate);
        if r.is_ok() {
            self.knowledge.add_candidate(
                candidate.kind,
                candidate.address,
                candidate.related_address,
            );
            self.reconsider(now);
        }
        self.pump();
        r
    }

    /// A remote candidate from signaling whose connection address is a
    /// host name the adapter resolves (an mDNS `.local` name, or DNS):
    /// `candidate` is the line's candidate with any address in its place
    /// (kept are the rest: foundation, priority, port, type, related
    /// address). Answer with [`Session::handle_resolved_candidate`]; the
    /// peer's end-of-candidates waits for that answer. Held in this ICE
    /// generation only: [`Session::restart`] drops what is pending.
    pub fn handle_remote_candidate_name(
        &mut self,
        candidate: Candidate,
    ) -> Result<PendingCandidate, SessionError> {
        let p = PendingCandidate(self.next_pending);
        self.pending_candidates
            .push((p, candidate))
            .map_err(|_| SessionError::TooManyPendingCandidates)?;
        self.next_pending = self.next_pending.wrapping_add(1);
        Ok(p)
    }

    /// The answer for a pending candidate: the address its name resolved
    /// to that the adapter accepts, or `None` (it did not resolve, or only
    /// to refused addresses: the candidate is skipped). Then a held
    /// end-of-candidates is applied once nothing is pending. `None` for a
    /// candidate not pending (answered already, or from before a restart);
    /// else what [`Session::handle_remote_candidate`] says, `Ok` for a
    /// skipped one.
    pub fn handle_resolved_candidate(
        &mut self,
        now: Instant,
        pending: PendingCandidate,
        address: Option<IpAddr>,
    ) -> Option<Result<(), AgentError>> {
        let i = self
            .pending_candidates
            .iter()
            .position(|(p, _)| *p == pending)?;
        let (_, mut c) = self.pending_candidates.swap_remove(i);
        let r = match address {
            Some(ip) => {
                c.address.set_ip(ip);
                self.handle_remote_candidate(now, c)
            }
            None => Ok(()),
        };
        if self.pending_candidates.is_empty() && core::mem::take(&mut self.end_deferred) {
            self.agent.end_of_remote_candidates();
        }
        self.pump();
        self.widen_if_failing(now);
        Some(r)
    }

    /// The peer signalled end-of-candidates (held while candidate names
    /// resolve, [`Session::handle_remote_candidate_name`]). If every pair
    /// has failed already, the ladder may step at `now`.
    pub fn handle_end_of_remote_candidates(&mut self, now: Instant) {
        if self.pending_candidates.is_empty() {
            self.agent.end_of_remote_candidates();
        } else {
            self.end_deferred = true;
        }
        self.pump();
        self.widen_if_failing(now);
    }

    /// A datagram arrived at our address `local` from `remote`. `true`: it
    /// was STUN and the session consumed it; `false`: application data.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
    ) -> bool {
        let stun = self.agent.handle_receive(now, local, remote, bytes);
        if stun {
            self.pump();
            self.reconsider(now);
            self.widen_if_failing(now);
            self.pump();
        }
        stun
    }

    /// The deadline from [`Session::poll_timeout`] passed: the agent's
    /// timers, and the ladder's.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.agent.handle_timeout(now);
        self.pump();
        if self.widen_at.is_some_and(|t| t <= now) {
            self.widen_at = None;
            if !self.agent.has_valid_pair() && !self.agent_failed() {
                self.widen(now, WidenReason::NoPairWithin);
            }
        }
        self.widen_if_failing(now);
        self.pump();
    }

    /// The answer to a [`Request::Resolve`]: the addresses `server`'s name
    /// resolved to (empty when it did not). The first IPv4 and the first
    /// IPv6 address are used. For a STUN server: once every request is
    /// answered, gathering starts (or gathers more, after a widening). For
    /// a TURN server: [`Event::RelayServer`] per address (gathering never
    /// waits for TURN names).
    pub fn handle_resolved(&mut self, now: Instant, server: ServerRef, addresses: &[SocketAddr]) {
        if server.turn {
            let Some(pos) = self.turn_pending.iter().position(|i| *i == server.index) else {
                return;
            };
            self.turn_pending.remove(pos);
            for a in first_per_family(addresses) {
                self.add_relay_server(server.index, a);
            }
            return;
        }
        let Some(pos) = self
            .pending
            .iter()
            .position(|i| !server.turn && *i == server.index)
        else {
            return;
        };
        self.pending.remove(pos);
        for a in first_per_family(addresses) {
            self.add_stun_server(a);
        }
        self.used.insert(usize::from(server.index));
        self.maybe_gather(now);
        self.pump();
        self.widen_if_failing(now);
    }

    /// ICE restart (RFC 8445 section 9): new credentials drawn from the
    /// session's seed ([`Session::local_credentials`]: signal them), remote
    /// state forgotten, the offered host candidates announced again, srflx
    /// gathering started again. The stage is kept.
    pub fn restart(&mut self, now: Instant) {
        self.restart_inner(now);
        self.pump();
    }

    // ---------------------------------------------------------------- outputs

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.agent.poll_transmit()
    }

    /// The next request (a host name to resolve).
    pub fn poll_request(&mut self) -> Option<Request<'_>> {
        let server = self.requests.pop_front()?;
        let list = if server.turn {
            &self.turn[..]
        } else {
            &self.servers[..]
        };
        match list.iter().find(|(i, _)| *i == server.index) {
            Some((_, ServerEntry::Name(name, port))) => Some(Request::Resolve {
                server,
                name,
                port: *port,
            }),
            _ => None,
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.pump();
        self.events.pop_front()
    }

    /// When to call [`Session::handle_timeout`] next; `None`: only an input
    /// can matter.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.agent.poll_timeout(), self.widen_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---------------------------------------------------------------- internals

    fn push(&mut self, e: Event) {
        if self.events.is_full() {
            let _ = self.events.pop_front();
        }
        let _ = self.events.push_back(e);
    }

    fn offers(&self, a: SocketAddr) -> bool {
        !self.offer_filter || self.decision.offers(a.ip())
    }

    fn agent_failed(&self) -> bool {
        self.agent.connection_state() == ConnectionState::Failed
    }

    fn preference_for(&self, a: SocketAddr, all: &[SocketAddr]) -> u16 {
        let before = all.iter().take_while(|x| **x != a).map(|x| x.ip());
        host_local_preference(
            a.ip(),
            before,
            self.local_network_priority,
            &self.local_subnets,
        )
    }

    /// Move the agent's events into the session's queue, applying the offer
    /// filter and feeding the knowledge.
    fn pump(&mut self) {
        while let Some(e) = self.agent.poll_event() {
            let out = match e {
                AgentEvent::LocalCandidate(c) => {
                    if c.kind == CandidateKind::Host {
                        if !self.offers(c.address) {
                            debug!("host candidate withheld by the policy");
                            continue;
                        }
                        if self.announced.contains(&c.address) {
                            continue;
                        }
                        let _ = self.announced.push(c.address);
                    }
                    Event::LocalCandidate(c)
                }
                AgentEvent::Gathering(g) => Event::Gathering(g),
                AgentEvent::Connection(s) => Event::Connection(s),
                AgentEvent::Selected { local, remote } => {
                    self.connected_stage.get_or_insert(self.decision.stage);
                    self.widen_at = None;
                    Event::Selected { local, remote }
                }
                AgentEvent::RoleChanged(r) => Event::RoleChanged(r),
                AgentEvent::Failed(r) => Event::Failed(r),
                AgentEvent::Mapped {
                    server,
                    base,
                    mapped,
                } => {
                    self.knowledge.add_own_mapping(server, base, mapped);
                    continue;
                }
            };
            self.push(out);
        }
    }

    /// Decide again if what is known of the peer changed its network type
    /// (symmetric-NAT evidence: straight to stage `full`, which asks for
    /// relays at once).
    fn reconsider(&mut self, now: Instant) {
        self.pump();
        let d = self.decision_at(self.decision.stage);
        if d.network == self.decision.network {
            return;
        }
        if d.network == NetworkType::SymmetricNat && d.stage < FallbackStage::Full {
            self.step_to(now, FallbackStage::Full, WidenReason::SymmetricNat);
        } else {
            self.apply(now, d);
        }
    }

    /// Every pair failed: step to the next stage now if it adds candidates
    /// (the agent then gathers them before its failure grace runs out; a
    /// stage that adds nothing would only delay the failure report).
    fn widen_if_failing(&mut self, now: Instant) {
        let adds = self.agent.is_failing()
            && self
                .decision
                .stage
                .next()
                .is_some_and(|next| self.adds_candidates(&self.decision_at(next)));
        if adds {
            self.widen(now, WidenReason::AllPairsFailed);
        }
    }

    /// The decision for `stage` with what is known of the peer now.
    fn decision_at(&self, stage: FallbackStage) -> Decision {
        self.decisions[stage_index(stage)][usize::from(symmetric_seen(&self.knowledge))]
    }

    /// Whether `next` gathers a server the decision in force does not, or
    /// offers one of our host candidates that it withholds.
    fn adds_candidates(&self, next: &Decision) -> bool {
        let current = &self.decision;
        !next.stun_servers.is_subset(current.stun_servers)
            || !next.turn_servers.is_subset(current.turn_servers)
            || (self.offer_filter
                && self.agent.local_candidates().any(|c| {
                    c.kind == CandidateKind::Host
                        && !current.offers(c.address.ip())
                        && next.offers(c.address.ip())
                }))
    }

    fn widen(&mut self, now: Instant, reason: WidenReason) {
        if let Some(next) = self.decision.stage.next() {
            self.step_to(now, next, reason);
        }
    }

    fn step_to(&mut self, now: Instant, stage: FallbackStage, reason: WidenReason) {
        let d = self.decision_at(stage);
        if d.stage == self.decision.stage {
            // The mode holds the stage (local-only): nothing to widen to.
            return;
        }
        info!("ICE session widens to stage {}", d.stage.as_str());
        self.push(Event::Widened {
            stage: d.stage,
            reason,
        });
        self.apply(now, d);
    }

    /// Put a new decision in force: announce what it now offers, gather
    /// from the servers it adds, ask for its relays, re-arm the ladder.
    fn apply(&mut self, now: Instant, d: Decision) {
        if d == self.decision {
            return;
        }
        self.decision = d;
        let mut c = *self.agent.config();
        c.apply_decision(&d);
        self.agent.set_config(c);
        self.push(Event::Decided(d));
        self.widen_at = if self.agent.has_valid_pair() {
            None
        } else {
            d.widen_after.map(|w| now + w)
        };
        self.announce_hosts();
        self.adopt_servers();
        self.maybe_gather(now);
    }

    /// Announce the host candidates the decision offers and that were not
    /// announced in this generation.
    fn announce_hosts(&mut self) {
        let mut fresh: Vec<Candidate, L> = Vec::new();
        for c in self.agent.local_candidates() {
            if c.kind == CandidateKind::Host
                && self.offers(c.address)
                && !self.announced.contains(&c.address)
            {
                let _ = fresh.push(*c);
            }
        }
        for c in fresh {
            let _ = self.announced.push(c.address);
            self.push(Event::LocalCandidate(c));
        }
    }

    /// Take the decision's STUN servers not used yet: literal addresses go
    /// to the agent, names become requests. TURN servers are asked for
    /// once ([`Event::RelayWanted`]).
    fn adopt_servers(&mut self) {
        for i in self.decision.stun_servers.iter() {
            if self.used.contains(i) || self.pending.iter().any(|p| usize::from(*p) == i) {
                continue;
            }
            let entry = self
                .servers
                .iter()
                .find(|(x, _)| usize::from(*x) == i)
                .map(|(_, e)| e.clone());
            match entry {
                Some(ServerEntry::Address(a)) => {
                    self.add_stun_server(a);
                    self.used.insert(i);
                }
                Some(ServerEntry::Name(..)) => {
                    let Ok(index) = u8::try_from(i) else { continue };
                    let request = ServerRef { turn: false, index };
                    if self.pending.push(index).is_ok() && self.requests.push_back(request).is_ok()
                    {
                        continue;
                    }
                    self.pending.retain(|p| *p != index);
                    self.used.insert(i);
                }
                // Beyond the session's server capacity, `stuns:` (TLS,
                // not spoken here) or invalid (cannot pass validation).
                None => {
                    self.used.insert(i);
                }
            }
        }
        let turn = self.decision.turn_servers;
        if !turn.is_subset(self.relays_wanted) {
            let before = self.relays_wanted;
            self.relays_wanted = self.relays_wanted.union(turn);
            self.push(Event::RelayWanted(turn));
            for i in turn.iter().filter(|i| !before.contains(*i)) {
                self.adopt_turn_server(i);
            }
        }
    }

    /// Where TURN server `i` is: its literal address now, or a request
    /// for its name. Servers the session did not take (`turns:`, TCP,
    /// beyond [`MAX_SESSION_TURN_SERVERS`]) get nothing.
    fn adopt_turn_server(&mut self, i: usize) {
        let Some((index, entry)) = self.turn.iter().find(|(x, _)| usize::from(*x) == i) else {
            return;
        };
        let index = *index;
        match entry {
            ServerEntry::Address(a) => {
                let a = *a;
                self.add_relay_server(index, a);
            }
            ServerEntry::Name(..) => {
                let request = ServerRef { turn: true, index };
                if self.turn_pending.push(index).is_ok()
                    && self.requests.push_back(request).is_err()
                {
                    self.turn_pending.retain(|p| *p != index);
                }
            }
        }
    }

    fn add_relay_server(&mut self, index: u8, address: SocketAddr) {
        if self.relay_servers.push((index, address)).is_ok() {
            self.push(Event::RelayServer { index, address });
        }
    }

    fn add_stun_server(&mut self, a: SocketAddr) {
        match self.agent.add_stun_server(a) {
            Ok(()) | Err(AgentError::Duplicate) => {}
            Err(e) => warn!("STUN server not used: {}", e),
        }
    }

    /// Start gathering (first round) or gather more (later rounds) once the
    /// interfaces are known and no resolution is outstanding.
    fn maybe_gather(&mut self, now: Instant) {
        if !self.started || !self.pending.is_empty() {
            return;
        }
        match self.agent.gathering_state() {
            GatheringState::New => self.agent.start_gathering(now),
            _ => self.agent.gather_more(now, self.decision.stun_gather_cap),
        }
    }

    fn restart_inner(&mut self, now: Instant) {
        let (ufrag, pwd) = draw_credentials(&mut self.rng);
        if self.agent.restart(&ufrag, &pwd).is_err() {
            return;
        }
        self.ufrag = ufrag;
        self.pwd = pwd;
        self.announced.clear();
        self.pending_candidates.clear();
        self.end_deferred = false;
        self.connected_stage = None;
        self.widen_at = if self.decision.widen_after.is_some() {
            self.decision.widen_after.map(|w| now + w)
        } else {
            None
        };
        self.pump();
        self.announce_hosts();
        if self.pending.is_empty() {
            self.agent.start_gathering(now);
        }
    }
}

/// Whether our address `ip` is on the local network, by the policy's own
/// rule for a peer's address ([`network_type`]): configured
/// `local_subnets`, loopback, link-local, and private or unique-local space
/// when no subnets are configured. Never panics.
pub fn on_local_network(ip: IpAddr, local_subnets: &[Cidr]) -> bool {
    let mut config = PolicyConfig::new(IceMode::Auto);
    config.network_detection.enabled = true;
    config.network_detection.local_subnets = local_subnets;
    network_type(&config, &PeerKnowledge::with_address(ip)) == NetworkType::Local
}

/// The local preference of host address `ip` when `before` are the host
/// addresses ranked ahead of it: the core's [`local_preference`] with
/// `ip`'s 0-based ordinal among the earlier addresses of its family
/// (saturating at 255) and [`on_local_network`]. Never panics.
pub fn host_local_preference(
    ip: IpAddr,
    before: impl Iterator<Item = IpAddr>,
    local_network_priority: bool,
    local_subnets: &[Cidr],
) -> u16 {
    let family = AddressFamily::of(&ip);
    let ordinal = before.filter(|x| AddressFamily::of(x) == family).count();
    local_preference(
        local_network_priority,
        on_local_network(ip, local_subnets),
        family,
        u8::try_from(ordinal).unwrap_or(u8::MAX),
    )
}

/// Whether an endpoint-dependent mapping was seen, ours or the peer's.
fn symmetric_seen(k: &PeerKnowledge) -> bool {
    k.own_mapping() == MappingBehavior::EndpointDependent
        || k.peer_mapping() == MappingBehavior::EndpointDependent
}

/// The decision of every stage for this peer, without and with
/// symmetric-NAT evidence. [`decide`] depends on the knowledge only
/// through the peer's address and that evidence, so these are all the
/// decisions the session can ever need.
fn all_decisions(policy: &PolicyConfig<'_>, peer: &PeerKnowledge) -> Decisions {
    let plain = match peer.address() {
        Some(a) => PeerKnowledge::with_address(a),
        None => PeerKnowledge::new(),
    };
    // One base seen at two mappings: endpoint-dependent.
    let mut symmetric = plain.clone();
    let (s1, s2, base) = (
        SocketAddr::from(([192, 0, 2, 1], 3478)),
        SocketAddr::from(([192, 0, 2, 2], 3478)),
        SocketAddr::from(([10, 0, 0, 1], 1)),
    );
    symmetric.add_own_mapping(s1, base, SocketAddr::from(([198, 51, 100, 1], 1)));
    symmetric.add_own_mapping(s2, base, SocketAddr::from(([198, 51, 100, 1], 2)));
    let stages = [
        FallbackStage::LocalOnly,
        FallbackStage::WithStun,
        FallbackStage::Full,
    ];
    stages.map(|st| [decide(policy, &plain, st), decide(policy, &symmetric, st)])
}

/// The servers of one of the policy's lists that any of `decisions`
/// selects (`set` picks that list's [`ServerSet`], `url` an entry's URI),
/// first ones first, as the session keeps them: literal addresses, or
/// names to resolve. URIs this agent does not speak (`speaks` says no:
/// `stuns:`, `turns:`, TURN over TCP) are left out.
fn kept_servers<'p, const N: usize>(
    decisions: &Decisions,
    set: impl Fn(&Decision) -> ServerSet,
    url: impl Fn(usize) -> Option<&'p str>,
    speaks: impl Fn(&IceServerUrl<'_>) -> bool,
) -> Vec<(u8, ServerEntry), N> {
    let mut all = ServerSet::EMPTY;
    for d in decisions.iter().flatten() {
        all = all.union(set(d));
    }
    let mut out = Vec::new();
    for i in all.iter() {
        let Ok(index) = u8::try_from(i) else { break };
        let entry = url(i)
            .and_then(|u| IceServerUrl::parse(u).ok())
            .filter(|u| speaks(u))
            .and_then(|u| server_entry(u.target()));
        if let Some(e) = entry
            && out.push((index, e)).is_err()
        {
            break;
        }
    }
    out
}

/// The first IPv4 and the first IPv6 address of `addresses`, in that order.
fn first_per_family(addresses: &[SocketAddr]) -> impl Iterator<Item = SocketAddr> + '_ {
    [true, false]
        .into_iter()
        .filter_map(|v4| addresses.iter().find(|a| a.is_ipv4() == v4).copied())
}

fn server_entry(target: Target<'_>) -> Option<ServerEntry> {
    match target {
        Target::Address(a) => Some(ServerEntry::Address(a)),
        Target::Name { name, port } => String::try_from(name)
            .ok()
            .map(|n| ServerEntry::Name(n, port)),
    }
}

fn draw_credentials(rng: &mut Drbg) -> (String<UFRAG_LEN>, String<PWD_LEN>) {
    let mut u = [0u8; UFRAG_LEN];
    let mut p = [0u8; PWD_LEN];
    rng.fill_bytes(&mut u);
    rng.fill_bytes(&mut p);
    let ufrag = String::try_from(ice_chars_from(&mut u)).unwrap_or_default();
    let pwd = String::try_from(ice_chars_from(&mut p)).unwrap_or_default();
    (ufrag, pwd)
}

/// Where a datagram arriving on a shared socket belongs ([`demux`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Demux<'a> {
    /// A Binding request for the session whose local ufrag is `ufrag` (the
    /// USERNAME's part before the colon, RFC 8445 section 7.2.2): route by
    /// it, since the sender may be a peer-reflexive address never seen.
    Request {
        /// Our ufrag, as the peer wrote it.
        ufrag: &'a str,
    },
    /// Other STUN (responses, indications): route by the remote address,
    /// or offer it to every session of that local address (each agent
    /// consumes only its own transactions).
    Stun,
    /// Not STUN: media or application data, route by the remote address
    /// of the selected pair.
    Data,
}

/// Which session a datagram on a socket shared by many sessions belongs to
/// (the router's single port per local address, like an SFU). Never panics.
pub fn demux(bytes: &[u8]) -> Demux<'_> {
    let Ok(message) = Message::new_checked(bytes) else {
        return Demux::Data;
    };
    let Ok(repr) = Repr::parse(&message) else {
        return Demux::Stun;
    };
    let ufrag = repr
        .username
        .and_then(|u| u.split_once(':'))
        .map(|(ours, _)| ours);
    match ufrag {
        Some(ufrag)
            if repr.message_type.class == Class::Request
                && repr.message_type.method == Method::BINDING =>
        {
            Demux::Request { ufrag }
        }
        _ => Demux::Stun,
    }
}

#[cfg(test)]
mod tests;
