//! The sans-IO ICE agent (RFC 8445, full implementation, one component, UDP).
//!
//! The agent sits between the policy (which decides what to gather and how
//! fast to check) and an adapter (tokio, embassy, smoltcp, the test network
//! simulator) that owns the sockets and the clock. It performs no I/O and
//! reads no clock: everything happens through inputs and outputs.
//!
//! # Driving the agent
//!
//! Inputs:
//! - [`Agent::add_host_candidate`], [`Agent::add_stun_server`],
//!   [`Agent::start_gathering`]: local candidates and srflx gathering;
//! - [`Agent::set_remote_credentials`], [`Agent::add_remote_candidate`],
//!   [`Agent::end_of_remote_candidates`]: what signaling brought;
//! - [`Agent::handle_receive`]: a datagram arrived on one of our host
//!   addresses (returns `false` when it is not STUN, i.e. application data);
//! - [`Agent::handle_timeout`]: the deadline from `poll_timeout` passed;
//! - [`Agent::restart`], [`Agent::remove_local_candidate`]: ICE restart and
//!   address changes.
//!
//! Outputs:
//! - [`Agent::poll_transmit`]: a datagram to send, with its source address
//!   (one of our host candidates) and destination;
//! - [`Agent::poll_timeout`]: when to call `handle_timeout` next;
//! - [`Agent::poll_event`]: gathered candidates, state changes, the selected
//!   pair, consent loss, failure with a reason.
//!
//! **The drain rule:** after every input, call `poll_transmit` until it
//! returns `None`, then `poll_event` until `None`, then `poll_timeout`, and
//! only then wait (for a datagram or that deadline). Outputs are queued in
//! fixed-capacity buffers; not draining them loses the oldest.
//!
//! # What it does
//!
//! Both roles, with regular nomination by the controlling agent; checks paced
//! every Ta, retransmitted with an RTO that doubles up to a cap; triggered
//! checks; peer-reflexive candidates learned from checks (remote) and from
//! responses (local); the lowest-priority pairs dropped first when the check
//! list is full; role conflicts resolved with the tie-breaker (487);
//! server-reflexive gathering that runs in parallel and never delays host
//! checks; RFC 7675 consent freshness; ICE restart. The policy's fast path:
//! with [`AgentConfig::nominate_host_on_first_success`], a host-host pair is
//! nominated on its first success instead of waiting for better pairs.
//!
//! The agent answers binding requests itself, so on a LAN the router and the
//! speakers are each other's STUN server: a request with a bad FINGERPRINT is
//! dropped; missing USERNAME or MESSAGE-INTEGRITY gets 400, a wrong USERNAME
//! or MAC 401, unknown comprehension-required attributes 420, a role conflict
//! 487 (RFC 8489 section 9.1.3, RFC 8445 section 7.3.1.1).
//!
//! Tolerant of a lite peer (RFC 8445 section 2.5): nothing here waits for the
//! peer's own checks, and a controlling full agent nominates as usual.

#[cfg(test)]
mod captured;
mod checklist;
#[cfg(feature = "conformance")]
mod conformance;
pub(crate) mod drbg;
#[cfg(test)]
mod tests;

use core::fmt;
use core::net::{IpAddr, SocketAddr};

use heapless::{Deque, String, Vec};

use crate::candidate::{
    AddressFamily, Candidate, CandidateKind, ComponentId, LocalCandidate, Transport,
    TypePreferences, pair_priority_for,
};
use crate::policy::{Decision, NetworkType};
use crate::sdpfrag::{is_valid_pwd, is_valid_ufrag};
use crate::stun::{
    Attribute, AttributeType, Class, ErrorCode, IntegrityKey, Message, MessageBuilder, MessageType,
    Method, Repr, TransactionId, UnknownAttributes,
};
use crate::time::{Duration, Instant};
use checklist::{Pair, PairState, Transaction};
#[cfg(feature = "conformance")]
pub(crate) use conformance::conformance;
use drbg::Drbg;

/// Longest ufrag and password (RFC 8839 section 5.4 allows 256 characters).
pub const MAX_CREDENTIAL_LEN: usize = 256;
/// STUN servers the agent gathers from at most.
pub const MAX_STUN_SERVERS: usize = 4;
/// Outstanding srflx gathering transactions at most.
const MAX_GATHER: usize = 4;
/// Queued outgoing datagrams at most.
const OUT_QUEUE: usize = 8;
/// Queued events at most.
const EVENT_QUEUE: usize = 6;
/// Consent transactions remembered (responses to older ones still count).
const CONSENT_TXS: usize = 4;
/// Largest STUN message the agent writes: a check with a 513-byte USERNAME,
/// PRIORITY, ICE-CONTROLLING, USE-CANDIDATE, MESSAGE-INTEGRITY, FINGERPRINT.
pub const MAX_TRANSMIT_LEN: usize = 20 + 4 + 516 + 8 + 12 + 4 + 24 + 8;

/// Which agent controls nomination (RFC 8445 section 6.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(clippy::exhaustive_enums)] // RFC 8445 has exactly two roles
pub enum Role {
    /// Nominates the pair (the offerer, or the full agent facing a lite one).
    Controlling,
    /// Follows the peer's nomination.
    Controlled,
}

impl Role {
    fn flipped(self) -> Role {
        match self {
            Role::Controlling => Role::Controlled,
            Role::Controlled => Role::Controlling,
        }
    }
}

/// The agent's timing and behaviour. [`AgentConfig::for_decision`] derives it
/// from the policy's [`Decision`], so router and speaker pace and nominate
/// alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct AgentConfig {
    /// Pacing interval Ta between new checks (RFC 8445 section 14.2).
    pub ta: Duration,
    /// Lower bound of the check RTO (RFC 8445 section 14.3 uses 500 ms).
    pub rto_min: Duration,
    /// The RTO doubles per retransmission up to this cap.
    pub rto_max: Duration,
    /// Requests per check transaction before the pair fails. RFC 8489's Rc
    /// is 7; the default here is 20 (about 29 s at the RTO cap) because a
    /// speaker on bad Wi-Fi loses more than 7 in a row too often: with 20 %
    /// loss on each of two segments, a round trip fails 59 % of the time and
    /// 7 tries leave a 2.5 % chance of a false failure.
    pub max_check_transmissions: u8,
    /// Initial RTO of srflx gathering requests.
    pub gather_rto: Duration,
    /// Give up on STUN servers this long after gathering starts; `None`
    /// waits for every transaction (legacy behaviour).
    pub stun_gather_cap: Option<Duration>,
    /// The policy's fast path: nominate a host-host pair on its first
    /// success (controlling agent).
    pub nominate_host_on_first_success: bool,
    /// Regular nomination: after the first valid pair, wait this long for
    /// better pairs before nominating the best valid one (unless no better
    /// pair can still succeed).
    pub nomination_delay: Duration,
    /// Mean interval of consent checks; each is drawn uniformly from 0.8x to
    /// 1.2x of it (RFC 7675 section 5.1: 4 to 6 s for 5 s).
    pub consent_interval: Duration,
    /// Consent expires this long after the last authenticated response
    /// (RFC 7675: 30 s).
    pub consent_timeout: Duration,
    /// Report `Disconnected` after this long without a consent response.
    pub disconnected_after: Duration,
    /// Once both sides finished their candidates and none of our pairs can
    /// still succeed (or there is no pair at all), wait this long for the
    /// peer's own checks before failing: they may arrive later than ours (an
    /// answerer's peer checks only once it has the answer) and teach us a
    /// working peer-reflexive pair.
    pub failure_grace: Duration,
    /// Candidate type preferences (RFC 8445 section 5.1.2.2).
    pub type_preferences: TypePreferences,
    /// SOFTWARE attribute for responses, if any.
    pub software: Option<&'static str>,
    /// Connectivity-check requests (retransmissions included) the agent
    /// sends, over its whole life, toward remote addresses from which it
    /// has never received an authenticated STUN message. Once spent, pairs
    /// toward such addresses fail instead of being checked, so a remote
    /// candidate naming a third party (RFC 8445 section 19.5.1, the "voice
    /// hammer") gets at most this many requests from one agent. Not reset
    /// by an ICE restart. Default `u16::MAX` (no practical limit); the
    /// router sets its own for sessions requested over HTTP.
    pub unanswered_check_budget: u16,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            ta: Duration::from_millis(50),
            rto_min: Duration::from_millis(500),
            rto_max: Duration::from_millis(1_600),
            max_check_transmissions: 20,
            gather_rto: Duration::from_millis(250),
            stun_gather_cap: Some(Duration::from_millis(500)),
            nominate_host_on_first_success: false,
            nomination_delay: Duration::from_millis(500),
            consent_interval: Duration::from_secs(5),
            consent_timeout: Duration::from_secs(30),
            disconnected_after: Duration::from_secs(12),
            failure_grace: Duration::from_secs(10),
            type_preferences: TypePreferences::RFC8445,
            software: None,
            unanswered_check_budget: u16::MAX,
        }
    }
}

impl AgentConfig {
    /// The configuration the policy's decision implies: its pacing, its STUN
    /// cap, its fast path, and on a local network an RTO floor of 100 ms
    /// (LAN round trips are milliseconds; RFC 8445's 500 ms floor would turn
    /// one lost check into half a second of silence).
    pub fn for_decision(decision: &Decision) -> AgentConfig {
        let mut c = AgentConfig::default();
        c.apply_decision(decision);
        c
    }

    /// Put the timing `decision` implies into this config (the fields
    /// [`AgentConfig::for_decision`] sets) and keep every other field: the
    /// limits an application chose (the unanswered-check budget, the
    /// consent timeout, ...) hold at every stage of the ladder.
    pub fn apply_decision(&mut self, decision: &Decision) {
        let d = AgentConfig::default();
        self.ta = decision.pacing;
        self.stun_gather_cap = decision.stun_gather_cap;
        self.nominate_host_on_first_success = decision.nominate_host_on_first_success;
        let local = decision.network == NetworkType::Local;
        self.rto_min = if local {
            Duration::from_millis(100)
        } else {
            d.rto_min
        };
        self.rto_max = if local {
            Duration::from_millis(500)
        } else {
            d.rto_max
        };
        self.nomination_delay = if local {
            Duration::from_millis(100)
        } else {
            d.nomination_delay
        };
    }
}

/// Gathering progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum GatheringState {
    /// Host candidates may be added; no server asked yet.
    New,
    /// STUN servers are being asked.
    Gathering,
    /// Every local candidate is known (signal end-of-candidates).
    Complete,
}

/// Connectivity progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConnectionState {
    /// Checks are running; nothing selected yet.
    Checking,
    /// A pair is selected and has consent.
    Connected,
    /// No consent response for a while; consent not yet lost.
    Disconnected,
    /// Every pair failed, or consent was lost.
    Failed,
}

/// Why the agent gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FailureReason {
    /// Both sides finished their candidates and no pair could be formed.
    NoCandidatePairs,
    /// Every pair's checks failed (no path, e.g. symmetric NAT to symmetric
    /// NAT without a relay).
    AllPairsFailed,
    /// The selected pair lost consent (RFC 7675).
    ConsentLost,
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureReason::NoCandidatePairs => "no candidate pair could be formed",
            FailureReason::AllPairsFailed => "every candidate pair failed its connectivity checks",
            FailureReason::ConsentLost => "the selected pair lost consent",
        })
    }
}

/// Something the application should know; see the drain rule.
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
    Selected {
        /// Our address (the base of the local candidate).
        local: SocketAddr,
        /// The peer's address.
        remote: SocketAddr,
    },
    /// A role conflict switched our role.
    RoleChanged(Role),
    /// The agent failed; nothing more will happen until a restart.
    Failed(FailureReason),
    /// A STUN server answered a gathering request: `server` saw our `base`
    /// as `mapped` (one event per answer, also when the mapping adds no new
    /// candidate). Feeds [`PeerKnowledge::add_own_mapping`], which is how a
    /// symmetric NAT in front of us is detected.
    ///
    /// [`PeerKnowledge::add_own_mapping`]: crate::policy::PeerKnowledge::add_own_mapping
    Mapped {
        /// The STUN server.
        server: SocketAddr,
        /// Our host address the request was sent from.
        base: SocketAddr,
        /// XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS) of the answer.
        mapped: SocketAddr,
    },
}

/// A datagram to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Transmit<'a> {
    /// Send from this local address (one of the host candidates).
    pub from: SocketAddr,
    /// To this address.
    pub to: SocketAddr,
    /// The datagram.
    pub bytes: &'a [u8],
    /// A connectivity check toward an address that has never sent an
    /// authenticated STUN message: the kind RFC 8445 section 19.5.1 bounds.
    /// A router that serves many sessions can bound these across all of
    /// them (the per-session bound is
    /// [`AgentConfig::unanswered_check_budget`]); dropping one is safe, it
    /// is retransmitted like a lost datagram.
    pub unanswered: bool,
}

/// Why a candidate, server or credential was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AgentError {
    /// The fixed capacity for candidates or servers is used up.
    Full,
    /// Only UDP candidates of component 1 are supported.
    Unsupported,
    /// The same address is already known.
    Duplicate,
    /// An ufrag or password that RFC 8839 does not allow (ufrag 4..=256,
    /// password 22..=256 ice-chars).
    BadCredentials,
    /// Unspecified or multicast address.
    BadAddress,
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AgentError::Full => "capacity exhausted",
            AgentError::Unsupported => "only UDP candidates of component 1 are supported",
            AgentError::Duplicate => "address already known",
            AgentError::BadCredentials => "ufrag must be 4..=256 and password 22..=256 ice-chars",
            AgentError::BadAddress => "unspecified or multicast address",
        })
    }
}

impl core::error::Error for AgentError {}

/// A remote candidate as the agent keeps it: what checks and pairing need,
/// in 48 bytes instead of a full [`Candidate`]'s 108.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RemoteCandidate {
    /// Its transport address.
    pub address: SocketAddr,
    /// Its priority (signalled, or from the PRIORITY of a check).
    pub priority: u32,
    /// Host, server-reflexive, peer-reflexive or relayed.
    pub kind: CandidateKind,
    /// 64-bit FNV-1a of the foundation string (only compared for equality).
    foundation: u64,
    /// An authenticated STUN message came from this address (it answers).
    heard: bool,
}

impl From<&Candidate> for RemoteCandidate {
    fn from(c: &Candidate) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in c.foundation.as_str().bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        RemoteCandidate {
            address: c.address,
            priority: c.priority,
            kind: c.kind,
            foundation: h,
            heard: false,
        }
    }
}

/// A local candidate and the local preference it was created with (for
/// the PRIORITY of checks sent from it).
#[derive(Clone, Copy, Debug)]
struct Local {
    candidate: Candidate,
    local_preference: u16,
}

impl Local {
    /// The address it sends from: a host candidate's own address, the
    /// related address (the base) of a reflexive one.
    fn base(&self) -> SocketAddr {
        match self.candidate.kind {
            CandidateKind::Host => self.candidate.address,
            _ => self
                .candidate
                .related_address
                .unwrap_or(self.candidate.address),
        }
    }
}

/// An srflx gathering transaction.
#[derive(Clone, Copy, Debug)]
struct Gather {
    base: SocketAddr,
    /// Index into the agent's STUN servers.
    server: u8,
    local_preference: u16,
    tx: Transaction,
    done: bool,
}

/// What a queued datagram will be; bytes are written at poll time.
#[derive(Clone, Copy, Debug)]
enum OutKind {
    /// A connectivity or consent check; `unanswered`: toward an address
    /// never heard from ([`Transmit::unanswered`]), known when queued.
    Check {
        priority: u32,
        use_candidate: bool,
        unanswered: bool,
    },
    /// A plain Binding request to a STUN server.
    Gather,
    /// A success response carrying XOR-MAPPED-ADDRESS (= destination).
    Success,
    /// An error response; integrity only when the request's was valid.
    Error {
        code: u16,
        signed: bool,
        unknown: [Option<AttributeType>; 4],
    },
}

#[derive(Clone, Copy, Debug)]
struct Outgoing {
    from: SocketAddr,
    to: SocketAddr,
    tid: TransactionId,
    kind: OutKind,
}

/// A full ICE agent for one component over UDP, with fixed capacities:
/// `L` local candidates, `R` remote candidates, `P` candidate pairs.
///
/// See the [module documentation](self) for the drain rule. Every method
/// is allocation-free and never panics on any input.
pub struct Agent<const L: usize, const R: usize, const P: usize> {
    config: AgentConfig,
    role: Role,
    tie_breaker: u64,
    rng: Drbg,
    now: Instant,

    local_ufrag: String<MAX_CREDENTIAL_LEN>,
    local_key: IntegrityKey,
    remote_ufrag: String<MAX_CREDENTIAL_LEN>,
    remote_key: Option<IntegrityKey>,

    locals: Vec<Local, L>,
    remotes: Vec<RemoteCandidate, R>,
    pairs: Vec<Pair, P>,
    triggered_seq: u16,
    /// Checks sent so far toward addresses never heard from
    /// ([`AgentConfig::unanswered_check_budget`]).
    unanswered_checks: u16,
    remote_ended: bool,

    stun_servers: Vec<SocketAddr, MAX_STUN_SERVERS>,
    gathers: Vec<Gather, MAX_GATHER>,
    gathering: GatheringState,
    gather_deadline: Option<Instant>,

    next_check_at: Option<Instant>,
    last_check_at: Option<Instant>,
    nominate_at: Option<Instant>,

    state: ConnectionState,
    selected: Option<usize>,
    /// When a pair first became usable ([`Agent::usable_pair`]) since the
    /// start or the last restart.
    usable_since: Option<Instant>,
    consent_txs: Deque<TransactionId, CONSENT_TXS>,
    next_consent_at: Option<Instant>,
    last_consent: Instant,
    failed: bool,
    /// Fail at this time unless a pair can succeed again by then.
    fail_deadline: Option<Instant>,

    out: Deque<Outgoing, OUT_QUEUE>,
    events: Deque<Event, EVENT_QUEUE>,
    buf: [u8; MAX_TRANSMIT_LEN],
}

impl<const L: usize, const R: usize, const P: usize> fmt::Debug for Agent<L, R, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("gathering", &self.gathering)
            .field("locals", &self.locals.len())
            .field("remotes", &self.remotes.len())
            .field("pairs", &self.pairs.len())
            .field("selected", &self.selected_pair())
            .finish()
    }
}

impl<const L: usize, const R: usize, const P: usize> Agent<L, R, P> {
    /// A new agent with our ufrag and password. `seed` must come from a
    /// cryptographically secure source: transaction ids and the tie-breaker
    /// are drawn from it (and the same seed replays a run exactly).
    pub fn new(
        config: AgentConfig,
        role: Role,
        local_ufrag: &str,
        local_pwd: &str,
        seed: [u8; 32],
    ) -> Result<Self, AgentError> {
        if !is_valid_ufrag(local_ufrag) || !is_valid_pwd(local_pwd) {
            return Err(AgentError::BadCredentials);
        }
        let mut rng = Drbg::new(seed);
        let tie_breaker = rng.next_u64();
        Ok(Agent {
            config,
            role,
            tie_breaker,
            rng,
            now: Instant::ZERO,
            local_ufrag: String::try_from(local_ufrag).map_err(|_| AgentError::BadCredentials)?,
            local_key: IntegrityKey::short_term(local_pwd.as_bytes()),
            remote_ufrag: String::new(),
            remote_key: None,
            locals: Vec::new(),
            remotes: Vec::new(),
            pairs: Vec::new(),
            triggered_seq: 0,
            unanswered_checks: 0,
            remote_ended: false,
            stun_servers: Vec::new(),
            gathers: Vec::new(),
            gathering: GatheringState::New,
            gather_deadline: None,
            next_check_at: None,
            last_check_at: None,
            nominate_at: None,
            state: ConnectionState::Checking,
            selected: None,
            usable_since: None,
            consent_txs: Deque::new(),
            next_consent_at: None,
            last_consent: Instant::ZERO,
            failed: false,
            fail_deadline: None,
            out: Deque::new(),
            events: Deque::new(),
            buf: [0; MAX_TRANSMIT_LEN],
        })
    }

    // ---------------------------------------------------------------- getters

    /// Our current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Our tie-breaker (RFC 8445 section 7.1.1).
    pub fn tie_breaker(&self) -> u64 {
        self.tie_breaker
    }

    /// Our ufrag.
    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    /// The connection state.
    pub fn connection_state(&self) -> ConnectionState {
        self.state
    }

    /// The gathering state.
    pub fn gathering_state(&self) -> GatheringState {
        self.gathering
    }

    /// The selected pair as (our base address, the peer's address).
    pub fn selected_pair(&self) -> Option<(SocketAddr, SocketAddr)> {
        let p = self.pairs.get(self.selected?)?;
        Some((self.local(p).base(), self.remote(p).address))
    }

    /// Our local candidates (host, srflx, learned prflx).
    pub fn local_candidates(&self) -> impl Iterator<Item = &Candidate> {
        self.locals.iter().map(|l| &l.candidate)
    }

    /// The remote candidates (signalled and learned prflx).
    pub fn remote_candidates(&self) -> &[RemoteCandidate] {
        &self.remotes
    }

    /// Whether the peer's end-of-candidates is in force (this generation).
    pub fn remote_candidates_ended(&self) -> bool {
        self.remote_ended
    }

    /// Number of candidate pairs in the check list.
    pub fn pair_count(&self) -> usize {
        self.pairs.len()
    }

    /// The configuration in force.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Replace the configuration (a wider stage of the fallback ladder has
    /// other pacing and no fast path). Timers already armed keep their
    /// deadlines; everything scheduled later uses the new values.
    pub fn set_config(&mut self, config: AgentConfig) {
        self.config = config;
    }

    /// Whether a connectivity check on some pair has succeeded (the valid
    /// list is not empty). The fallback ladder widens only while this is
    /// false.
    pub fn has_valid_pair(&self) -> bool {
        self.pairs.iter().any(|p| p.valid)
    }

    /// Nothing can succeed any more: no pair is selected, valid or still to
    /// be checked, and both sides ended their candidates. The agent reports
    /// [`Event::Failed`] at the end of [`AgentConfig::failure_grace`] unless
    /// a new candidate (ours or the peer's) or a check from the peer comes
    /// first. The fallback ladder widens on this.
    pub fn is_failing(&self) -> bool {
        !self.failed && self.fail_deadline.is_some()
    }

    /// The pair data can flow on, as (our base address, the peer's
    /// address): the selected pair; before a selection, the
    /// highest-priority pair that is valid (our check on it succeeded) or,
    /// when we are controlled, that the peer nominated (it sent
    /// USE-CANDIDATE, which an agent does only on a pair its own check
    /// validated, and we answered it). `None` when neither end has a
    /// working pair. An outcome record uses this when a session ends
    /// between the peer's selection and ours.
    pub fn usable_pair(&self) -> Option<(SocketAddr, SocketAddr)> {
        if let Some(selected) = self.selected_pair() {
            return Some(selected);
        }
        let controlled = self.role == Role::Controlled;
        let p = self
            .pairs
            .iter()
            .filter(|p| p.valid || (controlled && p.nominate))
            .max_by_key(|p| p.priority)?;
        Some((self.local(p).base(), self.remote(p).address))
    }

    /// When a pair first became usable (see [`Agent::usable_pair`]) since
    /// the agent started or last restarted.
    pub fn usable_since(&self) -> Option<Instant> {
        self.usable_since
    }

    // ---------------------------------------------------------------- inputs

    /// Add a host candidate: one of our interface addresses, with the local
    /// preference the policy gave it. Announced as [`Event::LocalCandidate`];
    /// paired with every remote candidate of the same family.
    pub fn add_host_candidate(
        &mut self,
        address: SocketAddr,
        local_preference: u16,
    ) -> Result<(), AgentError> {
        if address.ip().is_unspecified() || address.ip().is_multicast() || address.port() == 0 {
            return Err(AgentError::BadAddress);
        }
        if self.locals.iter().any(|l| l.candidate.address == address) {
            return Err(AgentError::Duplicate);
        }
        let candidate = Candidate::local(
            &LocalCandidate {
                kind: CandidateKind::Host,
                transport: Transport::Udp,
                tcp_type: None,
                address,
                base: address.ip(),
                related_address: None,
                server: None,
                component: ComponentId::RTP,
                local_preference,
            },
            &self.config.type_preferences,
        );
        self.locals
            .push(Local {
                candidate,
                local_preference,
            })
            .map_err(|_| AgentError::Full)?;
        let li = self.locals.len() - 1;
        self.push_event(Event::LocalCandidate(candidate));
        for ri in 0..self.remotes.len() {
            self.add_pair(li, ri);
        }
        self.schedule_check();
        Ok(())
    }

    /// Remove a local address (its interface went away): its candidates and
    /// pairs are dropped. A selected pair on it is lost; call
    /// [`Agent::restart`] to reconnect over the remaining addresses.
    pub fn remove_local_candidate(&mut self, address: SocketAddr) {
        while let Some(i) = self
            .locals
            .iter()
            .position(|l| l.base() == address || l.candidate.address == address)
        {
            self.locals.remove(i);
            self.remove_pairs_where(|p| usize::from(p.local) == i);
            for p in self.pairs.iter_mut() {
                if usize::from(p.local) > i {
                    p.local -= 1;
                }
            }
        }
        self.gathers.retain(|g| g.base != address);
    }

    /// Add a STUN server (an address the adapter resolved) for srflx
    /// gathering. Only used when gathering starts after it.
    pub fn add_stun_server(&mut self, server: SocketAddr) -> Result<(), AgentError> {
        if self.stun_servers.contains(&server) {
            return Err(AgentError::Duplicate);
        }
        self.stun_servers.push(server).map_err(|_| AgentError::Full)
    }

    /// Start gathering server-reflexive candidates: one Binding request per
    /// (host candidate, STUN server) of the same family, all at once, capped
    /// by [`AgentConfig::stun_gather_cap`]. With no server, gathering
    /// completes at once. Host checks never wait for this.
    pub fn start_gathering(&mut self, now: Instant) {
        self.advance(now);
        if self.gathering != GatheringState::New {
            return;
        }
        self.gather_round(now);
    }

    /// Gather again after gathering completed: ask every (host candidate,
    /// STUN server) pair not asked yet, e.g. servers added since, with a new
    /// cap of `cap` from now ([`Event::Gathering`] goes to `Gathering`, then
    /// `Complete` again). This is the fallback ladder's widening step; it
    /// does nothing while a round is still running.
    pub fn gather_more(&mut self, now: Instant, cap: Option<Duration>) {
        self.advance(now);
        if self.gathering == GatheringState::Gathering {
            return;
        }
        self.config.stun_gather_cap = cap;
        self.gather_round(now);
    }

    fn gather_round(&mut self, now: Instant) {
        let mut asked = false;
        for li in 0..self.locals.len() {
            let l = self.locals[li];
            if l.candidate.kind != CandidateKind::Host {
                continue;
            }
            for (si, &server) in self.stun_servers.clone().iter().enumerate() {
                if server.is_ipv4() != l.base().is_ipv4()
                    || self
                        .gathers
                        .iter()
                        .any(|g| g.base == l.base() && usize::from(g.server) == si)
                {
                    continue;
                }
                let tx = Transaction {
                    id: self.new_tid(),
                    deadline: now + self.config.gather_rto,
                    rto: self.config.gather_rto,
                    sent: 1,
                    use_candidate: false,
                    role: self.role,
                };
                if self
                    .gathers
                    .push(Gather {
                        base: l.base(),
                        server: si as u8,
                        local_preference: l.local_preference,
                        tx,
                        done: false,
                    })
                    .is_ok()
                {
                    asked = true;
                    self.queue(Outgoing {
                        from: l.base(),
                        to: server,
                        tid: tx.id,
                        kind: OutKind::Gather,
                    });
                }
            }
        }
        if asked {
            // New candidates may come: the failure grace starts again once
            // nothing can succeed with them either.
            self.fail_deadline = None;
        }
        self.set_gathering(GatheringState::Gathering);
        self.gather_deadline = self.config.stun_gather_cap.map(|cap| now + cap);
        self.check_gathering_done();
    }

    /// The peer's ufrag and password, from signaling. Checks start once
    /// these and a remote candidate are known.
    pub fn set_remote_credentials(&mut self, ufrag: &str, pwd: &str) -> Result<(), AgentError> {
        if !is_valid_ufrag(ufrag) || !is_valid_pwd(pwd) {
            return Err(AgentError::BadCredentials);
        }
        self.remote_ufrag = String::try_from(ufrag).map_err(|_| AgentError::BadCredentials)?;
        self.remote_key = Some(IntegrityKey::short_term(pwd.as_bytes()));
        self.schedule_check();
        Ok(())
    }

    /// A remote candidate from signaling (an mDNS name must be resolved
    /// first). Duplicates of a learned peer-reflexive candidate replace it.
    pub fn add_remote_candidate(&mut self, candidate: Candidate) -> Result<(), AgentError> {
        if candidate.transport != Transport::Udp || candidate.component != ComponentId::RTP {
            return Err(AgentError::Unsupported);
        }
        let ip = candidate.address.ip();
        if ip.is_unspecified() || ip.is_multicast() || candidate.address.port() == 0 {
            return Err(AgentError::BadAddress);
        }
        if let Some(existing) = self
            .remotes
            .iter_mut()
            .find(|r| r.address == candidate.address)
        {
            if existing.kind == CandidateKind::PeerReflexive {
                // RFC 8445 section 7.3.1.3: the signalled candidate replaces the
                // learned one; pairs keep their state.
                *existing = RemoteCandidate::from(&candidate);
                return Ok(());
            }
            return Err(AgentError::Duplicate);
        }
        self.remotes
            .push(RemoteCandidate::from(&candidate))
            .map_err(|_| AgentError::Full)?;
        let ri = self.remotes.len() - 1;
        for li in 0..self.locals.len() {
            self.add_pair(li, ri);
        }
        self.schedule_check();
        Ok(())
    }

    /// The peer signalled end-of-candidates: once every pair has failed the
    /// agent may now report failure.
    pub fn end_of_remote_candidates(&mut self) {
        self.remote_ended = true;
        self.check_failure();
    }

    /// ICE restart (RFC 8445 section 9) with new local credentials: remote
    /// credentials, candidates and pairs are forgotten, host candidates are
    /// kept (signal [`Agent::local_candidates`] again with the new ufrag),
    /// srflx gathering may be started again.
    pub fn restart(&mut self, local_ufrag: &str, local_pwd: &str) -> Result<(), AgentError> {
        if !is_valid_ufrag(local_ufrag) || !is_valid_pwd(local_pwd) {
            return Err(AgentError::BadCredentials);
        }
        self.local_ufrag = String::try_from(local_ufrag).map_err(|_| AgentError::BadCredentials)?;
        self.local_key = IntegrityKey::short_term(local_pwd.as_bytes());
        self.remote_ufrag.clear();
        self.remote_key = None;
        self.remotes.clear();
        self.pairs.clear();
        self.locals
            .retain(|l| l.candidate.kind == CandidateKind::Host);
        self.gathers.clear();
        self.gathering = GatheringState::New;
        self.gather_deadline = None;
        self.remote_ended = false;
        self.next_check_at = None;
        self.nominate_at = None;
        self.selected = None;
        self.usable_since = None;
        self.consent_txs.clear();
        self.next_consent_at = None;
        self.failed = false;
        self.fail_deadline = None;
        self.out.clear();
        self.set_state(ConnectionState::Checking);
        Ok(())
    }

    /// A datagram arrived at our address `local` from `remote`. Returns
    /// `true` when it was STUN and the agent consumed it; `false` when it is
    /// something else (application data, to be handled by the caller).
    /// STUN that arrives on an address which is not the base of one of our
    /// candidates (say, one just removed) is consumed and has no effect.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
    ) -> bool {
        self.advance(now);
        let Ok(message) = Message::new_checked(bytes) else {
            return false;
        };
        let Ok(repr) = Repr::parse(&message) else {
            // STUN with malformed attributes: its FINGERPRINT cannot be
            // trusted to say it is ours, so it is dropped without an answer.
            return true;
        };
        if !self.locals.iter().any(|l| l.base() == local) {
            // Not one of our addresses (any more): an answer would name a
            // source we do not hold, and a check there pairs nothing.
            return true;
        }
        match repr.message_type.class {
            Class::Request if repr.message_type.method == Method::BINDING => {
                self.on_request(local, remote, &repr);
            }
            Class::SuccessResponse | Class::ErrorResponse => self.on_response(local, remote, &repr),
            // Binding indications are keepalives (RFC 8445 section 11).
            _ => {}
        }
        self.check_failure();
        true
    }

    /// Advance timers: retransmit, pace the next check, nominate, check
    /// consent, end gathering.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.gather_timers(now);
        self.check_timers(now);
        if self.next_check_at.is_some_and(|t| t <= now) {
            self.next_check_at = None;
            self.send_next_check(now);
        }
        if self.nominate_at.is_some_and(|t| t <= now) {
            self.nominate_at = None;
            self.nominate_best();
        }
        self.consent_timers(now);
        self.check_failure();
    }

    // ---------------------------------------------------------------- outputs

    /// The next datagram to send, written into the agent's buffer.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        loop {
            let o = self.out.pop_front()?;
            if let Some(len) = self.write(&o) {
                let unanswered = matches!(
                    o.kind,
                    OutKind::Check {
                        unanswered: true,
                        ..
                    }
                );
                return Some(Transmit {
                    from: o.from,
                    to: o.to,
                    bytes: &self.buf[..len],
                    unanswered,
                });
            }
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`Agent::handle_timeout`] next (possibly now or in the
    /// past: then call it at once). `None`: only a new input can matter.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        at(self.next_check_at);
        at(self.nominate_at);
        at(self.next_consent_at);
        if !self.failed {
            at(self.fail_deadline);
        }
        if self.selected.is_some() && !self.failed {
            if self.state == ConnectionState::Connected {
                at(Some(self.last_consent + self.config.disconnected_after));
            }
            at(Some(self.last_consent + self.config.consent_timeout));
        }
        if self.gathering == GatheringState::Gathering {
            at(self.gather_deadline);
            for g in self.gathers.iter().filter(|g| !g.done) {
                at(Some(g.tx.deadline));
            }
        }
        for p in &self.pairs {
            if p.state == PairState::InProgress {
                at(p.tx().map(|tx| tx.deadline));
            }
        }
        t
    }

    // ---------------------------------------------------------------- internals

    fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    fn new_tid(&mut self) -> TransactionId {
        let mut id = [0u8; 12];
        self.rng.fill_bytes(&mut id);
        TransactionId(id)
    }

    fn local(&self, p: &Pair) -> &Local {
        &self.locals[usize::from(p.local)]
    }

    fn remote(&self, p: &Pair) -> &RemoteCandidate {
        &self.remotes[usize::from(p.remote)]
    }

    fn push_event(&mut self, e: Event) {
        if self.events.is_full() {
            let _ = self.events.pop_front();
            warn!("agent event queue full: oldest event dropped (drain after every input)");
        }
        let _ = self.events.push_back(e);
    }

    fn queue(&mut self, o: Outgoing) {
        if self.out.is_full() {
            let _ = self.out.pop_front();
            warn!("agent transmit queue full: oldest datagram dropped (drain after every input)");
        }
        let _ = self.out.push_back(o);
    }

    fn set_state(&mut self, s: ConnectionState) {
        if self.state != s {
            self.state = s;
            self.push_event(Event::Connection(s));
        }
    }

    fn set_gathering(&mut self, s: GatheringState) {
        if self.gathering != s {
            self.gathering = s;
            self.push_event(Event::Gathering(s));
        }
    }

    fn pair_prio(&self, li: usize, ri: usize) -> u64 {
        pair_priority_for(
            self.locals[li].candidate.priority,
            self.remotes[ri].priority,
            self.role == Role::Controlling,
        )
    }

    fn same_foundation(&self, a: &Pair, b: &Pair) -> bool {
        self.local(a).candidate.foundation == self.local(b).candidate.foundation
            && self.remote(a).foundation == self.remote(b).foundation
    }

    /// Pair local `li` with remote `ri` if they can talk (RFC 8445 section
    /// 6.1.2.2), keeping the list within capacity (section 6.1.2.5).
    fn add_pair(&mut self, li: usize, ri: usize) -> Option<usize> {
        let l = &self.locals[li];
        let r = &self.remotes[ri];
        // Server-reflexive candidates are represented by their base (section
        // 6.1.2.4): only host (and later relayed) candidates are paired.
        if l.candidate.kind != CandidateKind::Host
            || AddressFamily::of(&l.base().ip()) != AddressFamily::of(&r.address.ip())
        {
            return None;
        }
        // IPv6 link-local only talks to link-local.
        if is_v6_link_local(l.base().ip()) != is_v6_link_local(r.address.ip()) {
            return None;
        }
        if let Some(i) = self
            .pairs
            .iter()
            .position(|p| usize::from(p.local) == li && usize::from(p.remote) == ri)
        {
            return Some(i);
        }
        let priority = self.pair_prio(li, ri);
        let (Ok(local), Ok(remote)) = (u8::try_from(li), u8::try_from(ri)) else {
            return None;
        };
        let mut pair = Pair::new(local, remote, priority, PairState::Frozen);
        if self.pairs.is_full() {
            // Drop the lowest-priority pair that has not made progress, if
            // the new one is better.
            let victim = self
                .pairs
                .iter()
                .enumerate()
                .filter(|(i, p)| {
                    matches!(
                        p.state,
                        PairState::Frozen | PairState::Waiting | PairState::Failed
                    ) && Some(*i) != self.selected
                        && !p.valid
                })
                .min_by_key(|(_, p)| p.priority)
                .map(|(i, p)| (i, p.priority));
            match victim {
                Some((i, prio)) if prio < priority => {
                    self.pairs.swap_remove(i);
                    if self.selected == Some(self.pairs.len()) {
                        self.selected = Some(i);
                    }
                }
                _ => return None,
            }
        }
        // Waiting unless another pair of the same foundation is already
        // being checked (section 6.1.2.6).
        let busy = self.pairs.iter().any(|p| {
            matches!(p.state, PairState::Waiting | PairState::InProgress)
                && self.same_foundation(p, &pair)
        });
        if !busy {
            pair.state = PairState::Waiting;
        }
        let _ = self.pairs.push(pair);
        self.fail_deadline = None;
        Some(self.pairs.len() - 1)
    }

    fn remove_pairs_where(&mut self, mut f: impl FnMut(&Pair) -> bool) {
        let selected = self
            .selected
            .and_then(|i| self.pairs.get(i))
            .map(|p| (p.local, p.remote));
        self.pairs.retain(|p| !f(p));
        self.selected = selected.and_then(|(l, r)| {
            self.pairs
                .iter()
                .position(|p| p.local == l && p.remote == r)
        });
        if selected.is_some() && self.selected.is_none() {
            // The selected pair went with its candidate: no consent to keep
            // (a consent deadline left armed would stay in the past, and
            // `poll_timeout` would ask for a timeout forever), and the
            // remaining pairs are checked again.
            self.next_consent_at = None;
            self.consent_txs.clear();
            if !self.failed {
                self.set_state(ConnectionState::Checking);
            }
            self.schedule_check();
        }
    }

    /// Arm the pacing timer if there is work and it is not armed.
    fn schedule_check(&mut self) {
        if self.next_check_at.is_some()
            || self.remote_key.is_none()
            || self.failed
            || self.selected.is_some()
        {
            return;
        }
        let work = self
            .pairs
            .iter()
            .any(|p| p.triggered || matches!(p.state, PairState::Waiting | PairState::Frozen));
        if work {
            let earliest = self.last_check_at.map_or(self.now, |t| t + self.config.ta);
            self.next_check_at = Some(earliest.max(self.now));
        }
    }

    /// One paced check: the oldest triggered check, else the best Waiting
    /// pair, else unfreeze the best Frozen pair (RFC 8445 section 6.1.4.2).
    fn send_next_check(&mut self, now: Instant) {
        if self.remote_key.is_none() || self.selected.is_some() {
            return;
        }
        let pick = self
            .pairs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.triggered)
            .min_by_key(|(_, p)| p.triggered_seq)
            .map(|(i, _)| i)
            .or_else(|| best(&self.pairs, |p| p.state == PairState::Waiting))
            .or_else(|| best(&self.pairs, |p| p.state == PairState::Frozen));
        if let Some(i) = pick {
            self.pairs[i].triggered = false;
            self.start_check(i, now);
            self.last_check_at = Some(now);
        }
        self.schedule_check();
    }

    fn rto(&self) -> Duration {
        let busy = self
            .pairs
            .iter()
            .filter(|p| matches!(p.state, PairState::Waiting | PairState::InProgress))
            .count() as u64;
        self.config
            .ta
            .saturating_mul(busy)
            .max(self.config.rto_min)
            .min(self.config.rto_max)
    }

    fn start_check(&mut self, i: usize, now: Instant) {
        let use_candidate = self.role == Role::Controlling && self.pairs[i].nominate;
        let rto = self.rto();
        let id = self.new_tid();
        let p = &mut self.pairs[i];
        p.state = PairState::InProgress;
        p.set_tx(Some(Transaction {
            id,
            deadline: now + rto,
            rto,
            sent: 1,
            use_candidate,
            role: self.role,
        }));
        self.send_check(i);
    }

    /// Send pair `i`'s outstanding check, unless its remote address has
    /// never answered and the budget for such checks is spent: then the
    /// pair fails instead.
    fn send_check(&mut self, i: usize) {
        let Some(tx) = self.pairs[i].tx() else { return };
        if !self.remote(&self.pairs[i]).heard {
            if self.unanswered_checks >= self.config.unanswered_check_budget {
                self.fail_pair(i);
                debug!("pair failed: unanswered-check budget spent");
                return;
            }
            self.unanswered_checks += 1;
        }
        self.queue_check(i, tx.id, tx.use_candidate);
    }

    /// An authenticated STUN message came from `address`: checks toward it
    /// no longer count against the unanswered-check budget.
    fn mark_heard(&mut self, address: SocketAddr) {
        for r in self.remotes.iter_mut().filter(|r| r.address == address) {
            r.heard = true;
        }
    }

    /// Queue a Binding request on pair `i`: a connectivity check, or a
    /// consent check on the selected pair.
    fn queue_check(&mut self, i: usize, tid: TransactionId, use_candidate: bool) {
        let p = self.pairs[i];
        let l = *self.local(&p);
        // PRIORITY: what a peer-reflexive candidate learned from this check
        // would get (RFC 8445 section 7.1.1).
        let priority = self.config.type_preferences.priority(
            CandidateKind::PeerReflexive,
            l.local_preference,
            l.candidate.component,
        );
        let remote = self.remote(&p);
        let (to, unanswered) = (remote.address, !remote.heard);
        self.queue(Outgoing {
            from: l.base(),
            to,
            tid,
            kind: OutKind::Check {
                priority,
                use_candidate,
                unanswered,
            },
        });
    }

    fn check_timers(&mut self, now: Instant) {
        for i in 0..self.pairs.len() {
            let p = self.pairs[i];
            let Some(mut tx) = p.tx() else { continue };
            if p.state != PairState::InProgress || tx.deadline > now {
                continue;
            }
            if tx.sent >= self.config.max_check_transmissions {
                self.fail_pair(i);
                debug!("pair check timed out");
                continue;
            }
            tx.sent += 1;
            tx.rto = (tx.rto + tx.rto).min(self.config.rto_max);
            tx.deadline = now + tx.rto;
            self.pairs[i].set_tx(Some(tx));
            self.send_check(i);
        }
    }

    fn gather_timers(&mut self, now: Instant) {
        if self.gathering != GatheringState::Gathering {
            return;
        }
        if self.gather_deadline.is_some_and(|d| d <= now) {
            for g in self.gathers.iter_mut() {
                g.done = true;
            }
        }
        for gi in 0..self.gathers.len() {
            let g = self.gathers[gi];
            if g.done || g.tx.deadline > now {
                continue;
            }
            // RFC 8489 section 6.2.1: Rc = 7 requests.
            if g.tx.sent >= 7 {
                self.gathers[gi].done = true;
                continue;
            }
            let Some(&server) = self.stun_servers.get(usize::from(g.server)) else {
                self.gathers[gi].done = true;
                continue;
            };
            let rto = g.tx.rto + g.tx.rto;
            let gm = &mut self.gathers[gi];
            gm.tx.sent += 1;
            gm.tx.rto = rto;
            gm.tx.deadline = now + rto;
            self.queue(Outgoing {
                from: g.base,
                to: server,
                tid: g.tx.id,
                kind: OutKind::Gather,
            });
        }
        self.check_gathering_done();
    }

    fn check_gathering_done(&mut self) {
        if self.gathering == GatheringState::Gathering && self.gathers.iter().all(|g| g.done) {
            self.set_gathering(GatheringState::Complete);
        }
    }

    fn consent_timers(&mut self, now: Instant) {
        let Some(sel) = self.selected else { return };
        if self.failed {
            return;
        }
        if now >= self.last_consent + self.config.consent_timeout {
            self.fail(FailureReason::ConsentLost);
            return;
        }
        if now >= self.last_consent + self.config.disconnected_after {
            self.set_state(ConnectionState::Disconnected);
        }
        if self.next_consent_at.is_some_and(|t| t <= now) {
            let id = self.new_tid();
            if self.consent_txs.is_full() {
                let _ = self.consent_txs.pop_front();
            }
            let _ = self.consent_txs.push_back(id);
            self.queue_check(sel, id, false);
            self.next_consent_at = Some(now + self.consent_jitter());
        }
    }

    fn consent_jitter(&mut self) -> Duration {
        // Uniform in [0.8, 1.2) x interval (RFC 7675 section 5.1).
        let base = self.config.consent_interval.total_micros();
        let spread = base / 5;
        let r = if spread == 0 {
            0
        } else {
            self.rng.next_u64() % (2 * spread)
        };
        Duration::from_micros(base - spread + r)
    }

    fn fail(&mut self, reason: FailureReason) {
        if self.failed {
            return;
        }
        self.failed = true;
        self.fail_deadline = None;
        self.next_check_at = None;
        self.nominate_at = None;
        self.next_consent_at = None;
        for p in self.pairs.iter_mut() {
            p.set_tx(None);
            p.triggered = false;
        }
        self.set_state(ConnectionState::Failed);
        self.push_event(Event::Failed(reason));
    }

    /// RFC 8445 section 8.1.2 / 7.2.5.3.3: fail when nothing can succeed.
    fn check_failure(&mut self) {
        if self.failed
            || self.selected.is_some()
            || !self.remote_ended
            || self.gathering == GatheringState::Gathering
        {
            return;
        }
        if self.pairs.iter().any(|p| p.pending() || p.valid) {
            self.fail_deadline = None;
            return;
        }
        // Nothing of ours can succeed; the peer may still reach us, so give
        // it time before failing.
        match self.fail_deadline {
            None => self.fail_deadline = Some(self.now + self.config.failure_grace),
            Some(t) if self.now >= t => self.fail(if self.pairs.is_empty() {
                FailureReason::NoCandidatePairs
            } else {
                FailureReason::AllPairsFailed
            }),
            Some(_) => {}
        }
    }

    fn trigger(&mut self, i: usize) {
        let p = &mut self.pairs[i];
        if !p.triggered {
            p.triggered = true;
            p.triggered_seq = self.triggered_seq;
            self.triggered_seq = self.triggered_seq.wrapping_add(1);
        }
        if matches!(p.state, PairState::Frozen | PairState::Failed) {
            p.state = PairState::Waiting;
        }
        self.schedule_check();
    }

    // -------------------------------------------------------- incoming requests

    fn on_request(&mut self, local: SocketAddr, remote: SocketAddr, repr: &Repr<'_>) {
        let tid = repr.transaction_id;
        let error = |code: u16, signed: bool| OutKind::Error {
            code,
            signed,
            unknown: [None; 4],
        };
        // ICE requests carry FINGERPRINT (RFC 8445 section 7.2.2); anything
        // else on this port is not ours to answer.
        if repr.verify_fingerprint().is_err() {
            return;
        }
        let reply = |kind| Outgoing {
            from: local,
            to: remote,
            tid,
            kind,
        };
        let (Some(username), true) = (repr.username, repr.has_integrity()) else {
            self.queue(reply(error(400, false)));
            return;
        };
        // USERNAME is "our-ufrag:their-ufrag" (RFC 8445 section 7.2.2).
        let ours = username.split(':').next().unwrap_or("");
        if ours != self.local_ufrag.as_str() || !username.contains(':') {
            self.queue(reply(error(401, false)));
            return;
        }
        if repr.verify_integrity(&self.local_key).is_err() {
            self.queue(reply(error(401, false)));
            return;
        }
        self.mark_heard(remote);
        if !repr.unknown_required.is_empty() {
            let mut unknown = [None; 4];
            for (slot, t) in unknown.iter_mut().zip(repr.unknown_required.iter()) {
                *slot = Some(*t);
            }
            self.queue(reply(OutKind::Error {
                code: 420,
                signed: true,
                unknown,
            }));
            return;
        }
        let Some(priority) = repr.priority else {
            self.queue(reply(error(400, true)));
            return;
        };
        // Role conflict (RFC 8445 section 7.3.1.1).
        match (self.role, repr.ice_controlling, repr.ice_controlled) {
            (Role::Controlling, Some(theirs), _) => {
                if self.tie_breaker >= theirs {
                    self.queue(reply(error(487, true)));
                    return;
                }
                self.switch_role();
            }
            (Role::Controlled, _, Some(theirs)) => {
                if self.tie_breaker >= theirs {
                    self.switch_role();
                } else {
                    self.queue(reply(error(487, true)));
                    return;
                }
            }
            _ => {}
        }
        self.queue(reply(OutKind::Success));
        if self.failed {
            return;
        }

        // The pair this request arrived on (section 7.3.1.3/7.3.1.4).
        let Some(li) = self
            .locals
            .iter()
            .position(|l| l.base() == local && l.candidate.kind == CandidateKind::Host)
        else {
            return;
        };
        let ri = match self.remotes.iter().position(|r| r.address == remote) {
            Some(ri) => ri,
            None => {
                // A peer-reflexive remote candidate.
                // Its foundation is "arbitrary and unique" (section 7.3.1.3).
                let c = RemoteCandidate {
                    address: remote,
                    priority,
                    kind: CandidateKind::PeerReflexive,
                    foundation: self.rng.next_u64(),
                    heard: true,
                };
                if self.remotes.push(c).is_err() {
                    return;
                }
                self.remotes.len() - 1
            }
        };
        let Some(pi) = self.add_pair(li, ri) else {
            return;
        };
        if repr.use_candidate && self.role == Role::Controlled {
            if self.pairs[pi].valid {
                self.pairs[pi].nominated = true;
                self.select_best_nominated();
                return;
            }
            self.pairs[pi].nominate = true;
            self.usable_since.get_or_insert(self.now);
        }
        match self.pairs[pi].state {
            PairState::Succeeded => {}
            _ => self.trigger(pi),
        }
    }

    fn switch_role(&mut self) {
        self.role = self.role.flipped();
        for i in 0..self.pairs.len() {
            let (li, ri) = (
                usize::from(self.pairs[i].local),
                usize::from(self.pairs[i].remote),
            );
            self.pairs[i].priority = self.pair_prio(li, ri);
            self.pairs[i].nominate = false;
        }
        self.push_event(Event::RoleChanged(self.role));
    }

    // ------------------------------------------------------- incoming responses

    fn on_response(&mut self, local: SocketAddr, remote: SocketAddr, repr: &Repr<'_>) {
        let tid = repr.transaction_id;
        if let Some(gi) = self.gathers.iter().position(|g| {
            g.tx.id == tid
                && !g.done
                && self.stun_servers.get(usize::from(g.server)) == Some(&remote)
                && g.base == local
        }) {
            self.on_gather_response(gi, repr);
            return;
        }
        let Some(key) = &self.remote_key else { return };
        if self.consent_txs.iter().any(|t| *t == tid) {
            let authentic = repr.message_type.class == Class::SuccessResponse
                && repr.verify_integrity(key).is_ok();
            if let (true, Some(sel)) = (authentic, self.selected) {
                let p = self.pairs[sel];
                if self.local(&p).base() == local && self.remote(&p).address == remote {
                    self.last_consent = self.now;
                    if self.state == ConnectionState::Disconnected {
                        self.set_state(ConnectionState::Connected);
                    }
                }
            }
            return;
        }
        let Some(i) = self.pairs.iter().position(|p| {
            p.state == PairState::InProgress && p.tx().is_some_and(|tx| tx.id == tid)
        }) else {
            return;
        };
        // Responses must be authentic (section 7.2.5.2.3 via RFC 8489 9.1.4);
        // an unauthenticated one is dropped as if never received.
        if repr.verify_integrity(key).is_err() {
            return;
        }
        self.mark_heard(remote);
        let Some(tx) = self.pairs[i].tx() else { return };
        let p = self.pairs[i];
        // Non-symmetric transport addresses fail the pair (section 7.2.5.2.1).
        if self.local(&p).base() != local || self.remote(&p).address != remote {
            self.fail_pair(i);
            return;
        }
        if repr.message_type.class == Class::ErrorResponse {
            let code = repr.error_code.map_or(0, |e| e.code);
            self.pairs[i].set_tx(None);
            if code == ErrorCode::ROLE_CONFLICT {
                // Section 7.2.5.1: switch role only if it is still the one
                // the request claimed, then check the pair again.
                if tx.role == self.role {
                    self.switch_role();
                }
                self.pairs[i].state = PairState::Waiting;
                self.trigger(i);
            } else {
                self.fail_pair(i);
            }
            return;
        }
        // Success (section 7.2.5.3).
        self.pairs[i].state = PairState::Succeeded;
        self.pairs[i].set_tx(None);
        self.pairs[i].valid = true;
        self.usable_since.get_or_insert(self.now);
        if let Some(mapped) = repr.xor_mapped_address {
            self.learn_local_prflx(local, mapped);
        }
        // Unfreeze pairs of the same foundation (section 7.2.5.3.3).
        for j in 0..self.pairs.len() {
            if self.pairs[j].state == PairState::Frozen && self.same_foundation(&self.pairs[j], &p)
            {
                self.pairs[j].state = PairState::Waiting;
            }
        }
        self.schedule_check();
        match self.role {
            Role::Controlling => {
                if tx.use_candidate {
                    self.pairs[i].nominated = true;
                    self.select_best_nominated();
                } else if self.config.nominate_host_on_first_success
                    && self.local(&p).candidate.kind == CandidateKind::Host
                    && matches!(
                        self.remote(&p).kind,
                        CandidateKind::Host | CandidateKind::PeerReflexive
                    )
                    && !self.pairs.iter().any(|q| q.nominate || q.nominated)
                {
                    // The fast path: nominate this pair now, outside the Ta
                    // pacing (one extra request, sent at once, so that two
                    // LAN peers connect in two round trips).
                    self.nominate_at = None;
                    self.pairs[i].nominate = true;
                    self.start_check(i, self.now);
                } else if self.nominate_at.is_none()
                    && !self.pairs.iter().any(|q| q.nominate || q.nominated)
                {
                    self.nominate_at = Some(self.now + self.config.nomination_delay);
                    self.maybe_nominate_early();
                } else {
                    self.maybe_nominate_early();
                }
            }
            Role::Controlled => {
                if self.pairs[i].nominate {
                    self.pairs[i].nominated = true;
                    self.select_best_nominated();
                }
            }
        }
    }

    fn on_gather_response(&mut self, gi: usize, repr: &Repr<'_>) {
        self.gathers[gi].done = true;
        let g = self.gathers[gi];
        let mapped = repr.xor_mapped_address.or(repr.mapped_address);
        if let (Class::SuccessResponse, Some(mapped), Some(&server)) = (
            repr.message_type.class,
            mapped,
            self.stun_servers.get(usize::from(g.server)),
        ) {
            self.push_event(Event::Mapped {
                server,
                base: g.base,
                mapped,
            });
        }
        if let (Class::SuccessResponse, Some(mapped)) = (repr.message_type.class, mapped) {
            // A mapping equal to the base means no NAT: nothing new to offer.
            // A peer-reflexive candidate learned earlier from a check at the
            // same address is upgraded in place (pairs refer to locals by
            // index): the peer must still be told of it.
            let known = self
                .locals
                .iter()
                .position(|l| l.candidate.address == mapped);
            let slot = match known {
                Some(i) if self.locals[i].candidate.kind == CandidateKind::PeerReflexive => {
                    Some(Some(i))
                }
                None if mapped != g.base => Some(None),
                _ => None,
            };
            if let Some(slot) = slot {
                let candidate = Candidate::local(
                    &LocalCandidate {
                        kind: CandidateKind::ServerReflexive,
                        transport: Transport::Udp,
                        tcp_type: None,
                        address: mapped,
                        base: g.base.ip(),
                        related_address: Some(g.base),
                        server: self.stun_servers.get(usize::from(g.server)).map(|s| s.ip()),
                        component: ComponentId::RTP,
                        local_preference: g.local_preference,
                    },
                    &self.config.type_preferences,
                );
                let local = Local {
                    candidate,
                    local_preference: g.local_preference,
                };
                let stored = match slot {
                    Some(i) => {
                        self.locals[i] = local;
                        true
                    }
                    None => self.locals.push(local).is_ok(),
                };
                if stored {
                    self.push_event(Event::LocalCandidate(candidate));
                }
            }
        }
        self.check_gathering_done();
    }

    /// A mapped address that matches no local candidate is a local
    /// peer-reflexive candidate (section 7.2.5.3.1); it is not signalled.
    fn learn_local_prflx(&mut self, base: SocketAddr, mapped: SocketAddr) {
        if self.locals.iter().any(|l| l.candidate.address == mapped) {
            return;
        }
        let Some(host) = self.locals.iter().find(|l| l.base() == base).copied() else {
            return;
        };
        let candidate = Candidate::local(
            &LocalCandidate {
                kind: CandidateKind::PeerReflexive,
                transport: Transport::Udp,
                tcp_type: None,
                address: mapped,
                base: base.ip(),
                related_address: Some(base),
                server: None,
                component: ComponentId::RTP,
                local_preference: host.local_preference,
            },
            &self.config.type_preferences,
        );
        let _ = self.locals.push(Local {
            candidate,
            local_preference: host.local_preference,
        });
    }

    /// Pair `i`'s check failed. A failed nomination (or the check
    /// triggered by the peer's) also takes the pair off the valid list —
    /// its path no longer answers — and lets another valid pair be
    /// nominated at once: otherwise a pair that died between its first
    /// success and its nomination would block nomination for good, and the
    /// agent would neither connect nor fail.
    fn fail_pair(&mut self, i: usize) {
        let p = &mut self.pairs[i];
        p.state = PairState::Failed;
        p.set_tx(None);
        if p.nominate {
            p.nominate = false;
            p.valid = false;
            if self.role == Role::Controlling
                && !self.pairs.iter().any(|q| q.nominate || q.nominated)
            {
                self.nominate_at = Some(self.now);
            }
        }
    }

    /// Controlling: mark pair `i` for a USE-CANDIDATE check, sent at once.
    fn nominate(&mut self, i: usize) {
        self.nominate_at = None;
        self.pairs[i].nominate = true;
        self.trigger(i);
    }

    /// Nominate before the timer when no better pair can still succeed.
    fn maybe_nominate_early(&mut self) {
        if self.pairs.iter().any(|q| q.nominate || q.nominated) {
            return;
        }
        let Some(best_valid) = best(&self.pairs, |p| p.valid) else {
            return;
        };
        let prio = self.pairs[best_valid].priority;
        if !self.pairs.iter().any(|q| q.priority > prio && q.pending()) {
            self.nominate(best_valid);
        }
    }

    fn nominate_best(&mut self) {
        if self.role != Role::Controlling || self.pairs.iter().any(|q| q.nominate || q.nominated) {
            return;
        }
        if let Some(i) = best(&self.pairs, |p| p.valid) {
            self.nominate(i);
        }
    }

    fn select_best_nominated(&mut self) {
        let Some(i) = best(&self.pairs, |p| p.nominated && p.valid) else {
            return;
        };
        if self.selected == Some(i) {
            return;
        }
        self.selected = Some(i);
        self.last_consent = self.now;
        let when = self.now + self.consent_jitter();
        self.next_consent_at = Some(when);
        let p = self.pairs[i];
        let (local, remote) = (self.local(&p).base(), self.remote(&p).address);
        self.push_event(Event::Selected { local, remote });
        self.set_state(ConnectionState::Connected);
        info!("ICE selected a pair");
    }

    // ---------------------------------------------------------------- writing

    fn write(&mut self, o: &Outgoing) -> Option<usize> {
        let software = self.config.software;
        let role = self.role;
        let tie_breaker = self.tie_breaker;
        let mut b;
        match o.kind {
            OutKind::Check {
                priority,
                use_candidate,
                ..
            } => {
                let key = self.remote_key.as_ref()?;
                b = MessageBuilder::new(&mut self.buf, MessageType::BINDING_REQUEST, o.tid);
                // USERNAME = their-ufrag ":" our-ufrag, written in two parts
                // would need a copy; build it in a stack buffer instead.
                let mut name = [0u8; 2 * MAX_CREDENTIAL_LEN + 1];
                let (r, l) = (self.remote_ufrag.as_bytes(), self.local_ufrag.as_bytes());
                name[..r.len()].copy_from_slice(r);
                name[r.len()] = b':';
                name[r.len() + 1..r.len() + 1 + l.len()].copy_from_slice(l);
                let username = core::str::from_utf8(&name[..r.len() + 1 + l.len()]).ok()?;
                b.add(&Attribute::Username(username))
                    .add(&Attribute::Priority(priority));
                b.add(&match role {
                    Role::Controlling => Attribute::IceControlling(tie_breaker),
                    Role::Controlled => Attribute::IceControlled(tie_breaker),
                });
                if use_candidate {
                    b.add(&Attribute::UseCandidate);
                }
                b.add_message_integrity(key).add_fingerprint();
            }
            OutKind::Gather => {
                b = MessageBuilder::new(&mut self.buf, MessageType::BINDING_REQUEST, o.tid);
                b.add_fingerprint();
            }
            OutKind::Success => {
                b = MessageBuilder::new(&mut self.buf, MessageType::BINDING_SUCCESS, o.tid);
                b.add(&Attribute::XorMappedAddress(o.to));
                if let Some(s) = software {
                    b.add(&Attribute::Software(s));
                }
                b.add_message_integrity(&self.local_key).add_fingerprint();
            }
            OutKind::Error {
                code,
                signed,
                unknown,
            } => {
                b = MessageBuilder::new(&mut self.buf, MessageType::BINDING_ERROR, o.tid);
                b.add(&Attribute::ErrorCode(ErrorCode::new(code, reason(code))));
                let mut list = [AttributeType(0); 4];
                let mut n = 0;
                for t in unknown.iter().flatten() {
                    list[n] = *t;
                    n += 1;
                }
                if n > 0 {
                    b.add(&Attribute::UnknownAttributes(UnknownAttributes::new(
                        &list[..n],
                    )));
                }
                if let Some(s) = software {
                    b.add(&Attribute::Software(s));
                }
                if signed {
                    b.add_message_integrity(&self.local_key);
                }
                b.add_fingerprint();
            }
        }
        b.finish().ok()
    }
}

/// The index of the highest-priority pair matching `f`.
fn best(pairs: &[Pair], f: impl Fn(&Pair) -> bool) -> Option<usize> {
    pairs
        .iter()
        .enumerate()
        .filter(|(_, p)| f(p))
        .max_by_key(|(_, p)| p.priority)
        .map(|(i, _)| i)
}

fn is_v6_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthenticated",
        420 => "Unknown Attribute",
        487 => "Role Conflict",
        _ => "Error",
    }
}
