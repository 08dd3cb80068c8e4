//! The shared ICE policy: which candidates to gather and offer, from which
//! servers, and how fast to conclude, for one peer.
//!
//! This module sits at the start of every ICE session, before gathering.
//! The router (for each browser or speaker that asks for a session) and each
//! speaker (for the router) build the same borrowed [`PolicyConfig`] from the
//! YAML schema (`webrtc.ice.*`), feed what they know of the peer into a
//! [`PeerKnowledge`], and call [`decide`]. The [`Decision`] tells the adapter
//! which STUN and TURN servers to query, when end-of-candidates may be sent,
//! which host candidates to offer, whether a host pair may be nominated on
//! its first success, and the pacing Ta for the checks. If the session fails,
//! the caller steps the [`FallbackStage`] ladder and decides again, which only
//! ever widens what is gathered. Because both sides run this code, they make
//! the same decision from the same facts; this rustdoc *is* the product's
//! specification of each mode.
//!
//! # Modes
//!
//! Host candidates are always gathered and checked at once: no mode makes them
//! wait for a server. The modes differ in what is gathered besides them
//! ("usable" servers are the enabled ones that pass [`PolicyConfig::validate`];
//! the network type is explained under [`NetworkType`]):
//!
//! | mode | srflx (STUN) | relay (TURN) | end-of-candidates | host fast path |
//! |---|---|---|---|---|
//! | `auto` | unknown or remote peer | remote peer, symmetric NAT | at once if nothing gathered, else after the cap | local peer |
//! | `local-only` | never | never | at once | local peer |
//! | `stun-required` | always | from stage `full` | after the cap | local peer |
//! | `full` | always | always | after the cap | local peer |
//! | `legacy` | always | always | after gathering completes (no cap) | never |
//!
//! - **auto**: a peer on the local network ([`NetworkType::Local`]) gets host
//!   candidates only, end-of-candidates at once, Ta = 5 ms and nomination of
//!   the first host pair that succeeds; if no pair works within
//!   `host_candidate_timeout` the caller widens ([`Decision::widen_after`];
//!   `core::session` also widens as soon as every pair has failed).
//!   An unknown peer gets host candidates at once plus STUN in parallel,
//!   capped by `stun_gather_cap`. A remote peer ([`NetworkType::Nat`]) or
//!   one behind a symmetric NAT ([`NetworkType::SymmetricNat`]) gets STUN
//!   and, if configured, TURN; a peer whose address shows it remote is not
//!   offered private host candidates (until stage full).
//! - **local-only**: never sends a packet to any server, whatever the stage;
//!   the ladder does not widen it. For LAN-only deployments with no internet.
//! - **stun-required**: always STUN (a config without a usable STUN server is
//!   invalid); TURN is added only at stage [`FallbackStage::Full`].
//! - **full**: always STUN and TURN (a config without a usable TURN server is
//!   invalid; a TURN server also yields the server-reflexive candidate, RFC
//!   8656 §7.3, so STUN servers are optional here). Offers every host
//!   candidate.
//! - **legacy**: today's deployments: every usable configured server is
//!   queried, end-of-candidates is sent only once gathering has completed
//!   (each transaction answered or timed out), Ta is 50 ms and nomination is
//!   regular; no fast path, no cap, no fallback ladder. The YAML
//!   `legacy_mode: true` (or `SCREAMROUTER_LEGACY_ICE_MODE=true`) selects it
//!   whatever `mode` says ([`IceMode::resolve`]).
//!
//! Nothing here falls back silently: a mode whose servers are missing is a
//! [`ConfigError`]; [`decide`] assumes a config that passed
//! [`PolicyConfig::validate`] and never invents a server.

use core::fmt;
use core::net::{IpAddr, SocketAddr};
use core::str::FromStr;

use crate::net::{self, AddressClass, Cidr};
use crate::time::Duration;
use crate::url::{self, IceServerUrl, Scheme};

/// How many servers each of `stun_servers` and `turn_servers` may hold:
/// the width of a [`ServerSet`].
pub const MAX_SERVERS: usize = 32;

/// Default `stun_gather_cap`: 500 ms.
///
/// Long enough for one Binding (or Allocate) round trip to any reasonable
/// server; short enough that a slow or unreachable server (the reason this
/// policy exists) delays end-of-candidates by half a second at most. A first
/// request that is lost is retransmitted after 500 ms (RFC 8489 §6.2.1), i.e.
/// outside the cap: a peer that needed that candidate gets it on the next
/// stage of the ladder.
pub const DEFAULT_STUN_GATHER_CAP: Duration = Duration::from_millis(500);

/// Default `host_candidate_timeout`: 1 s.
///
/// A host pair on a LAN answers in milliseconds; one second leaves room for
/// one retransmitted check (the first after 500 ms, RFC 8445 §14) and
/// still lets a peer that was wrongly taken for local reach the next stage
/// well inside the 5 s remote-connection target.
pub const DEFAULT_HOST_CANDIDATE_TIMEOUT: Duration = Duration::from_secs(1);

/// Ta, the pacing of connectivity checks, in the general case: 50 ms, the
/// RFC 8445 §14 default.
pub const TA_DEFAULT: Duration = Duration::from_millis(50);

/// Ta for a peer on the local network with the fast path on: 5 ms, the
/// floor RFC 8445 §14 allows. A LAN carries a handful of checks at this
/// rate with no risk of congestion, and the first host pair is checked
/// within a few milliseconds.
pub const TA_LAN: Duration = Duration::from_millis(5);

// ---------------------------------------------------------------------------
// Mode
// ---------------------------------------------------------------------------

/// The operator's ICE mode (`webrtc.ice.mode`, `SCREAMROUTER_ICE_MODE`).
/// See the [module docs](self) for the exact behaviour of each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum IceMode {
    /// `auto`: servers only for peers that may be remote. The default.
    #[default]
    Auto,
    /// `local-only`: host candidates only, never a server.
    LocalOnly,
    /// `stun-required`: always STUN.
    StunRequired,
    /// `full`: always STUN and TURN.
    Full,
    /// `legacy`: every configured server, as deployments behave today.
    Legacy,
}

impl IceMode {
    /// Every mode, in the order of the config documentation.
    pub const ALL: [IceMode; 5] = [
        IceMode::Auto,
        IceMode::LocalOnly,
        IceMode::StunRequired,
        IceMode::Full,
        IceMode::Legacy,
    ];

    /// Parse the config/env spelling: `auto`, `local-only`, `stun-required`,
    /// `full`, `legacy` (ASCII case-insensitive, no surrounding whitespace).
    /// Never panics.
    pub fn parse(s: &str) -> Result<IceMode, ModeParseError> {
        if s.is_empty() {
            return Err(ModeParseError::Empty);
        }
        IceMode::ALL
            .iter()
            .copied()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or(ModeParseError::Unknown)
    }

    /// The config spelling, which [`IceMode::parse`] reads back.
    pub const fn as_str(self) -> &'static str {
        match self {
            IceMode::Auto => "auto",
            IceMode::LocalOnly => "local-only",
            IceMode::StunRequired => "stun-required",
            IceMode::Full => "full",
            IceMode::Legacy => "legacy",
        }
    }

    /// The mode in force given the YAML `legacy_mode` flag (or
    /// `SCREAMROUTER_LEGACY_ICE_MODE`): `true` selects [`IceMode::Legacy`]
    /// whatever `mode` says, as in the seed's phase-1 template
    /// (`mode: auto` + `legacy_mode: true` keeps today's behaviour).
    ///
    /// This is the legacy path of the API: the `legacy_mode` switch is
    /// deprecated with legacy ICE itself (the seed's phase 4). Callers
    /// that still honour the flag on purpose (the daemon's config, which
    /// warns the operator) allow the lint at that one site.
    #[deprecated(
        since = "0.1.0",
        note = "legacy ICE (legacy_mode: true) is deprecated; run `scream-ice migrate FILE` to move a config to mode auto"
    )]
    pub const fn resolve(self, legacy_mode: bool) -> IceMode {
        if legacy_mode { IceMode::Legacy } else { self }
    }
}

impl FromStr for IceMode {
    type Err = ModeParseError;
    fn from_str(s: &str) -> Result<IceMode, ModeParseError> {
        IceMode::parse(s)
    }
}

impl fmt::Display for IceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an ICE mode string was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ModeParseError {
    /// The string is empty.
    Empty,
    /// Not one of the five mode names.
    Unknown,
}

impl fmt::Display for ModeParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModeParseError::Empty => "empty ICE mode",
            ModeParseError::Unknown => {
                "unknown ICE mode (expected auto, local-only, stun-required, full or legacy)"
            }
        })
    }
}

impl core::error::Error for ModeParseError {}

// ---------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------

/// One `stun_servers[]` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StunServer<'a> {
    /// A `stun:` or `stuns:` URI (RFC 7064).
    pub url: &'a str,
    /// Whether the server may be used. A disabled entry is still validated.
    pub enabled: bool,
}

/// One `turn_servers[]` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TurnServer<'a> {
    /// A `turn:` or `turns:` URI (RFC 7065).
    pub url: &'a str,
    /// The long-term-credential username (RFC 8489 §9.2). Required.
    pub username: Option<&'a str>,
    /// The long-term-credential password. Required.
    pub credential: Option<&'a str>,
    /// Whether the server may be used. A disabled entry is still validated.
    pub enabled: bool,
}

/// `network_detection`: whether and how the peer's address decides that it
/// is on the local network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NetworkDetection<'a> {
    /// When false, no address is taken as evidence of locality or
    /// remoteness: every peer is [`NetworkType::Unknown`] (unless a symmetric
    /// NAT is observed).
    pub enabled: bool,
    /// The subnets that form "our local network". Empty means: any private
    /// RFC 1918 or unique-local address is local. Non-empty narrows that to
    /// these subnets (plus link-local and loopback) and widens it to any
    /// address class they cover, e.g. a LAN in `100.64.0.0/10` or in global
    /// IPv6 space.
    pub local_subnets: &'a [Cidr],
}

/// The policy's view of `webrtc.ice`, borrowed from wherever the host or the
/// firmware keeps its config. Build with [`PolicyConfig::new`] and set the
/// fields; check with [`PolicyConfig::validate`] before use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PolicyConfig<'a> {
    /// `mode`, already [resolved](IceMode::resolve) against `legacy_mode`.
    pub mode: IceMode,
    /// `stun_servers`, at most [`MAX_SERVERS`].
    pub stun_servers: &'a [StunServer<'a>],
    /// `turn_servers`, at most [`MAX_SERVERS`].
    pub turn_servers: &'a [TurnServer<'a>],
    /// `local_network_priority` (`SCREAMROUTER_ENABLE_LOCAL_PRIORITY`): when
    /// true, a peer on the local network gets the fast path (Ta = 5 ms and
    /// nomination of the first host pair that succeeds). Gathering does not
    /// depend on it.
    pub local_network_priority: bool,
    /// `host_candidate_timeout_ms`: how long host candidates alone are given
    /// to produce a working pair before the ladder widens
    /// ([`Decision::widen_after`]).
    pub host_candidate_timeout: Duration,
    /// How long server gathering (STUN Binding and TURN Allocate
    /// transactions) may run before end-of-candidates is sent anyway;
    /// candidates that arrive later are dropped. Default
    /// [`DEFAULT_STUN_GATHER_CAP`]. Not used in `legacy` mode.
    pub stun_gather_cap: Duration,
    /// `network_detection`.
    pub network_detection: NetworkDetection<'a>,
}

impl<'a> PolicyConfig<'a> {
    /// A config in `mode` with the product defaults: no servers, local
    /// network priority on, [`DEFAULT_HOST_CANDIDATE_TIMEOUT`],
    /// [`DEFAULT_STUN_GATHER_CAP`], network detection on with no configured
    /// subnets.
    pub const fn new(mode: IceMode) -> PolicyConfig<'a> {
        PolicyConfig {
            mode,
            stun_servers: &[],
            turn_servers: &[],
            local_network_priority: true,
            host_candidate_timeout: DEFAULT_HOST_CANDIDATE_TIMEOUT,
            stun_gather_cap: DEFAULT_STUN_GATHER_CAP,
            network_detection: NetworkDetection {
                enabled: true,
                local_subnets: &[],
            },
        }
    }

    /// The first problem of [`PolicyConfig::problems`], if any. Never panics.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.problems().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every problem in the config, in order: list sizes, then each STUN
    /// server, each TURN server, then the mode's requirements. Entries are
    /// validated whether or not they are enabled (so flipping `enabled` never
    /// makes a valid config invalid); only enabled, valid entries count
    /// towards a mode's requirement. Never panics, never allocates.
    pub fn problems(&self) -> Problems<'_, 'a> {
        Problems {
            config: self,
            step: 0,
        }
    }

    /// The enabled, valid STUN servers, by index. Never panics.
    pub fn usable_stun_servers(&self) -> ServerSet {
        let mut set = ServerSet::EMPTY;
        for (i, s) in self.stun_servers.iter().enumerate() {
            if s.enabled && stun_entry_problem(s).is_none() {
                set.insert(i);
            }
        }
        set
    }

    /// The enabled, valid TURN servers, by index. Never panics.
    pub fn usable_turn_servers(&self) -> ServerSet {
        let mut set = ServerSet::EMPTY;
        for (i, t) in self.turn_servers.iter().enumerate() {
            if t.enabled && (0..3).all(|k| turn_entry_problem(t, k).is_none()) {
                set.insert(i);
            }
        }
        set
    }

    /// The problem at `step` of the validation sequence; `None` when the
    /// sequence is exhausted.
    fn problem_at(&self, step: usize) -> Option<Option<ConfigError>> {
        let n_stun = self.stun_servers.len();
        let n_turn = self.turn_servers.len();
        let mut s = step;
        if s == 0 {
            return Some(
                (n_stun > MAX_SERVERS).then_some(ConfigError::TooManyServers {
                    list: ServerList::Stun,
                }),
            );
        }
        s -= 1;
        if s == 0 {
            return Some(
                (n_turn > MAX_SERVERS).then_some(ConfigError::TooManyServers {
                    list: ServerList::Turn,
                }),
            );
        }
        s -= 1;
        if s < n_stun {
            return Some(
                self.stun_servers
                    .get(s)
                    .and_then(|e| stun_entry_problem(e).map(|p| p.at(ServerList::Stun, s))),
            );
        }
        s -= n_stun;
        if s < 3 * n_turn {
            let (i, k) = (s / 3, s % 3);
            return Some(
                self.turn_servers
                    .get(i)
                    .and_then(|e| turn_entry_problem(e, k).map(|p| p.at(ServerList::Turn, i))),
            );
        }
        s -= 3 * n_turn;
        if s == 0 {
            return Some(match self.mode {
                IceMode::StunRequired if self.usable_stun_servers().is_empty() => {
                    Some(ConfigError::StunRequiredWithoutStunServer)
                }
                IceMode::Full if self.usable_turn_servers().is_empty() => {
                    Some(ConfigError::FullWithoutTurnServer)
                }
                _ => None,
            });
        }
        None
    }
}

/// Which server list a [`ConfigError`] points into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ServerList {
    /// `stun_servers`.
    Stun,
    /// `turn_servers`.
    Turn,
}

impl ServerList {
    /// The YAML key.
    pub const fn as_str(self) -> &'static str {
        match self {
            ServerList::Stun => "stun_servers",
            ServerList::Turn => "turn_servers",
        }
    }
}

/// A problem in a [`PolicyConfig`]. Each one that concerns a server names
/// the list and the index of the entry ([`ConfigError::server`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// More than [`MAX_SERVERS`] entries in one list.
    TooManyServers {
        /// The list that is too long.
        list: ServerList,
    },
    /// An entry's URL does not parse.
    BadUrl {
        /// The list.
        list: ServerList,
        /// The entry's index.
        index: usize,
        /// Why the URL was rejected.
        error: url::Error,
    },
    /// A `turn:`/`turns:` URL in `stun_servers`, or a `stun:`/`stuns:` URL in
    /// `turn_servers`.
    WrongScheme {
        /// The list.
        list: ServerList,
        /// The entry's index.
        index: usize,
        /// The scheme found.
        scheme: Scheme,
    },
    /// A TURN entry with no (or an empty) `username`.
    TurnWithoutUsername {
        /// The entry's index in `turn_servers`.
        index: usize,
    },
    /// A TURN entry with no (or an empty) `credential`.
    TurnWithoutCredential {
        /// The entry's index in `turn_servers`.
        index: usize,
    },
    /// Mode `stun-required` with no enabled, valid STUN server.
    StunRequiredWithoutStunServer,
    /// Mode `full` with no enabled, valid TURN server. (STUN alone cannot
    /// give relayed candidates, so `full` would silently act as
    /// `stun-required`.)
    FullWithoutTurnServer,
}

impl ConfigError {
    /// The offending entry, if the problem concerns one: its list and index.
    pub const fn server(&self) -> Option<(ServerList, usize)> {
        match *self {
            ConfigError::BadUrl { list, index, .. }
            | ConfigError::WrongScheme { list, index, .. } => Some((list, index)),
            ConfigError::TurnWithoutUsername { index }
            | ConfigError::TurnWithoutCredential { index } => Some((ServerList::Turn, index)),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigError {
    /// `list[index]: reason`, or the reason alone for config-wide problems.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((list, index)) = self.server() {
            write!(f, "{}[{}]: ", list.as_str(), index)?;
        }
        match *self {
            ConfigError::TooManyServers { list } => {
                write!(f, "{}: more than {} entries", list.as_str(), MAX_SERVERS)
            }
            ConfigError::BadUrl { error, .. } => write!(f, "bad URL: {error}"),
            ConfigError::WrongScheme {
                list: ServerList::Stun,
                scheme,
                ..
            } => write!(f, "{scheme}: URL in stun_servers (move it to turn_servers)"),
            ConfigError::WrongScheme { scheme, .. } => {
                write!(f, "{scheme}: URL in turn_servers (move it to stun_servers)")
            }
            ConfigError::TurnWithoutUsername { .. } => f.write_str("TURN server without username"),
            ConfigError::TurnWithoutCredential { .. } => {
                f.write_str("TURN server without credential")
            }
            ConfigError::StunRequiredWithoutStunServer => {
                f.write_str("mode stun-required needs at least one enabled, valid STUN server")
            }
            ConfigError::FullWithoutTurnServer => {
                f.write_str("mode full needs at least one enabled, valid TURN server")
            }
        }
    }
}

impl core::error::Error for ConfigError {}

/// The problems of a [`PolicyConfig`], one [`ConfigError`] each; from
/// [`PolicyConfig::problems`].
#[derive(Clone, Debug)]
pub struct Problems<'c, 'a> {
    config: &'c PolicyConfig<'a>,
    step: usize,
}

impl Iterator for Problems<'_, '_> {
    type Item = ConfigError;
    fn next(&mut self) -> Option<ConfigError> {
        loop {
            let here = self.config.problem_at(self.step)?;
            self.step += 1;
            if here.is_some() {
                return here;
            }
        }
    }
}

/// A problem of one entry, before it knows its list and index.
#[derive(Clone, Copy)]
enum EntryProblem {
    Url(url::Error),
    Scheme(Scheme),
    Username,
    Credential,
}

impl EntryProblem {
    fn at(self, list: ServerList, index: usize) -> ConfigError {
        match self {
            EntryProblem::Url(error) => ConfigError::BadUrl { list, index, error },
            EntryProblem::Scheme(scheme) => ConfigError::WrongScheme {
                list,
                index,
                scheme,
            },
            EntryProblem::Username => ConfigError::TurnWithoutUsername { index },
            EntryProblem::Credential => ConfigError::TurnWithoutCredential { index },
        }
    }
}

fn stun_entry_problem(s: &StunServer<'_>) -> Option<EntryProblem> {
    match IceServerUrl::parse(s.url) {
        Err(e) => Some(EntryProblem::Url(e)),
        Ok(u) if u.scheme().is_turn() => Some(EntryProblem::Scheme(u.scheme())),
        Ok(_) => None,
    }
}

/// Check `k` of a TURN entry: 0 = URL, 1 = username, 2 = credential.
fn turn_entry_problem(t: &TurnServer<'_>, k: usize) -> Option<EntryProblem> {
    match k {
        0 => match IceServerUrl::parse(t.url) {
            Err(e) => Some(EntryProblem::Url(e)),
            Ok(u) if !u.scheme().is_turn() => Some(EntryProblem::Scheme(u.scheme())),
            Ok(_) => None,
        },
        1 => t
            .username
            .is_none_or(str::is_empty)
            .then_some(EntryProblem::Username),
        _ => t
            .credential
            .is_none_or(str::is_empty)
            .then_some(EntryProblem::Credential),
    }
}

// ---------------------------------------------------------------------------
// Server sets
// ---------------------------------------------------------------------------

/// A set of indices into `stun_servers` or `turn_servers` (each below
/// [`MAX_SERVERS`]), as a bitmask: bit `i` is entry `i`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerSet(u32);

impl ServerSet {
    /// No server.
    pub const EMPTY: ServerSet = ServerSet(0);

    /// The set whose bit `i` is entry `i`.
    pub const fn from_bits(bits: u32) -> ServerSet {
        ServerSet(bits)
    }

    /// The bitmask.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Add entry `index`; false (and no change) if `index >= MAX_SERVERS`.
    pub const fn insert(&mut self, index: usize) -> bool {
        if index < MAX_SERVERS {
            self.0 |= 1 << index;
            true
        } else {
            false
        }
    }

    /// Whether entry `index` is in the set.
    pub const fn contains(self, index: usize) -> bool {
        index < MAX_SERVERS && self.0 & (1 << index) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The number of entries.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The entries of both sets.
    pub const fn union(self, other: ServerSet) -> ServerSet {
        ServerSet(self.0 | other.0)
    }

    /// Whether every entry of `self` is in `other`.
    pub const fn is_subset(self, other: ServerSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// The indices, ascending.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_SERVERS).filter(move |&i| self.contains(i))
    }
}

// ---------------------------------------------------------------------------
// What is known of the peer
// ---------------------------------------------------------------------------

pub use crate::candidate::CandidateKind;

/// One bit per candidate kind, for the set of kinds a peer has offered.
const fn kind_bit(kind: CandidateKind) -> u8 {
    match kind {
        CandidateKind::Host => 1,
        CandidateKind::ServerReflexive => 2,
        CandidateKind::PeerReflexive => 4,
        CandidateKind::Relayed => 8,
    }
}

/// How a NAT maps one internal address to external ones (RFC 4787 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MappingBehavior {
    /// Not enough observations.
    Unknown,
    /// Two servers saw the same mapped address and port for one base
    /// ("endpoint-independent mapping": srflx candidates work).
    EndpointIndependent,
    /// One base was seen with two different mapped addresses or ports: a
    /// "symmetric" NAT; the srflx candidate will not work for the peer, a
    /// relay may be needed.
    EndpointDependent,
}

/// How many peer candidate addresses (of each of host and srflx) are kept.
/// Later ones are counted but not stored.
pub const PEER_ADDRESS_CAPACITY: usize = 8;

/// How many of our own STUN mappings are kept for comparison.
pub const OWN_MAPPING_CAPACITY: usize = 4;

/// What is known on one session: the peer's transport address and
/// candidates as they arrive, and our own server-reflexive mappings.
/// Fixed capacity; feeding it never fails and never panics.
///
/// Which facts count for [`decide`]:
///
/// - The **peer address** ([`PeerKnowledge::set_address`]) decides whether
///   the peer is local: give the address its packets actually came from
///   (the HTTP client address of its session request, or the router's
///   address as a speaker connected to it). A candidate's address is weaker
///   evidence: a remote browser's host candidates are addresses of *its* LAN,
///   which may even coincide with ours, so candidates never make a peer local.
/// - The peer's **srflx candidates** with their related addresses show its
///   NAT: one base mapped to two different srflx addresses is a symmetric NAT.
/// - **Our own mappings** ([`PeerKnowledge::add_own_mapping`]): one local
///   base mapped to different addresses by two STUN servers shows that we
///   are behind a symmetric NAT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerKnowledge {
    address: Option<IpAddr>,
    host: heapless::Vec<IpAddr, PEER_ADDRESS_CAPACITY>,
    srflx: heapless::Vec<(SocketAddr, Option<SocketAddr>), PEER_ADDRESS_CAPACITY>,
    own: heapless::Vec<(SocketAddr, SocketAddr, SocketAddr), OWN_MAPPING_CAPACITY>,
    kinds_seen: u8,
    candidates: u32,
    peer_endpoint_dependent: bool,
    own_independent: bool,
    own_dependent: bool,
}

#[cfg(feature = "defmt")]
impl defmt::Format for PeerKnowledge {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self.address {
            Some(a) => defmt::write!(
                f,
                "PeerKnowledge {{ address: {}, candidates: {}, own mapping: {} }}",
                net::DefmtIp(a),
                self.candidates,
                self.own_mapping()
            ),
            None => defmt::write!(
                f,
                "PeerKnowledge {{ address: none, candidates: {}, own mapping: {} }}",
                self.candidates,
                self.own_mapping()
            ),
        }
    }
}

impl PeerKnowledge {
    /// Nothing known yet.
    pub const fn new() -> PeerKnowledge {
        PeerKnowledge {
            address: None,
            host: heapless::Vec::new(),
            srflx: heapless::Vec::new(),
            own: heapless::Vec::new(),
            kinds_seen: 0,
            candidates: 0,
            peer_endpoint_dependent: false,
            own_independent: false,
            own_dependent: false,
        }
    }

    /// Knowing only the peer's transport address (IPv4-mapped IPv6 is stored
    /// as IPv4).
    pub const fn with_address(address: IpAddr) -> PeerKnowledge {
        let mut k = PeerKnowledge::new();
        k.address = Some(net::canonical(address));
        k
    }

    /// Set (or replace) the peer's transport address. IPv4-mapped IPv6 is
    /// stored as IPv4.
    pub fn set_address(&mut self, address: IpAddr) {
        self.address = Some(net::canonical(address));
    }

    /// The peer's transport address, if known.
    pub const fn address(&self) -> Option<IpAddr> {
        self.address
    }

    /// Record one of the peer's candidates: its type, its address and, for
    /// srflx/prflx/relay, its related address (`raddr`/`rport`). Duplicates
    /// are harmless. Never panics.
    pub fn add_candidate(
        &mut self,
        kind: CandidateKind,
        address: SocketAddr,
        related: Option<SocketAddr>,
    ) {
        self.candidates = self.candidates.saturating_add(1);
        self.kinds_seen |= kind_bit(kind);
        let address = canonical_socket(address);
        let related = related.map(canonical_socket);
        match kind {
            CandidateKind::Host => {
                if !self.host.contains(&address.ip()) {
                    let _ = self.host.push(address.ip());
                }
            }
            CandidateKind::ServerReflexive => {
                if let Some(base) = related {
                    let differs = self
                        .srflx
                        .iter()
                        .any(|&(a, r)| r == Some(base) && a != address);
                    self.peer_endpoint_dependent |= differs;
                }
                if !self.srflx.contains(&(address, related)) {
                    let _ = self.srflx.push((address, related));
                }
            }
            CandidateKind::PeerReflexive | CandidateKind::Relayed => {}
        }
    }

    /// Record one of our own STUN results: `server` answered a Binding
    /// request sent from local `base` with XOR-MAPPED-ADDRESS `mapped`.
    /// Never panics.
    pub fn add_own_mapping(&mut self, server: SocketAddr, base: SocketAddr, mapped: SocketAddr) {
        let (server, base, mapped) = (
            canonical_socket(server),
            canonical_socket(base),
            canonical_socket(mapped),
        );
        for &(s, b, m) in self.own.iter() {
            if b != base {
                continue;
            }
            if m != mapped {
                self.own_dependent = true;
            } else if s != server {
                self.own_independent = true;
            }
        }
        if !self.own.contains(&(server, base, mapped)) {
            let _ = self.own.push((server, base, mapped));
        }
    }

    /// How many candidates have been recorded (saturating).
    pub const fn candidate_count(&self) -> u32 {
        self.candidates
    }

    /// Whether a candidate of `kind` has been recorded.
    pub const fn has_candidate_kind(&self, kind: CandidateKind) -> bool {
        self.kinds_seen & kind_bit(kind) != 0
    }

    /// Whether the peer is behind a NAT, from its candidates:
    /// `Some(true)` if one of its srflx addresses is none of its host
    /// addresses, `Some(false)` if every srflx address is also a host
    /// address (a public host), `None` without srflx candidates.
    pub fn peer_behind_nat(&self) -> Option<bool> {
        if self.srflx.is_empty() {
            return None;
        }
        Some(self.srflx.iter().any(|(a, _)| !self.host.contains(&a.ip())))
    }

    /// The peer's NAT mapping, from its srflx candidates: endpoint-dependent
    /// if one base appears with two different srflx addresses, otherwise
    /// unknown (the peer's servers are not known, so independence cannot be
    /// shown).
    pub const fn peer_mapping(&self) -> MappingBehavior {
        if self.peer_endpoint_dependent {
            MappingBehavior::EndpointDependent
        } else {
            MappingBehavior::Unknown
        }
    }

    /// Our own NAT mapping, from [`PeerKnowledge::add_own_mapping`]:
    /// endpoint-dependent as soon as one base was seen with two different
    /// mapped addresses (this wins over any other observation),
    /// endpoint-independent if two different servers saw the same mapping,
    /// otherwise unknown.
    pub const fn own_mapping(&self) -> MappingBehavior {
        if self.own_dependent {
            MappingBehavior::EndpointDependent
        } else if self.own_independent {
            MappingBehavior::EndpointIndependent
        } else {
            MappingBehavior::Unknown
        }
    }

    fn symmetric_nat_seen(&self) -> bool {
        self.own_dependent || self.peer_endpoint_dependent
    }
}

fn canonical_socket(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(net::canonical(a.ip()), a.port())
}

// ---------------------------------------------------------------------------
// Decision
// ---------------------------------------------------------------------------

/// Where the peer is, as far as the policy can tell.
///
/// With `network_detection.enabled`, the peer address ([`PeerKnowledge`])
/// decides, in this order:
///
/// 1. In a configured `local_subnets` entry: **Local**, whatever its class.
/// 2. Loopback or link-local (`169.254/16`, `fe80::/10`): **Local**. Such a
///    packet cannot have crossed a router.
/// 3. Private RFC 1918 or unique-local `fc00::/7`: **Local** when no
///    `local_subnets` are configured; **Unknown** when they are (another
///    private network: a VPN, a second site or a NATed inner LAN, neither
///    proven local nor proven remote).
/// 4. Shared CGNAT `100.64/10`: **remote** (Nat). It is the ISP side of a
///    carrier-grade NAT: a client seen from it has crossed at least the
///    ISP's NAT, and our host candidates cannot reach it. Taking a peer for
///    remote only costs a capped, parallel STUN query (host candidates are
///    still checked at once); taking a remote peer for local costs a
///    `host_candidate_timeout`. An overlay VPN in that space (Tailscale)
///    is made local by listing `100.64.0.0/10` in `local_subnets`.
/// 5. Global, documentation or benchmarking space: **remote** (Nat). On an
///    IPv6 LAN with global addresses, list the LAN prefix in
///    `local_subnets`; otherwise LAN peers are taken for remote and still
///    connect over host pairs, just without the fast path.
/// 6. Unspecified, multicast, broadcast or reserved, or no address at all:
///    **Unknown**.
///
/// A remote or unknown peer becomes **SymmetricNat** once an
/// endpoint-dependent mapping has been seen, ours or the peer's
/// ([`MappingBehavior`]). Without `network_detection.enabled`, every peer is
/// Unknown (or SymmetricNat).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum NetworkType {
    /// The peer is on our local network.
    Local,
    /// The peer is remote: the path crosses a router boundary, usually a
    /// NAT, and server-reflexive candidates are needed.
    Nat,
    /// The path crosses an endpoint-dependent ("symmetric") NAT: a relay may
    /// be needed.
    SymmetricNat,
    /// Nothing proves either way.
    Unknown,
}

impl NetworkType {
    /// True for [`NetworkType::Nat`] and [`NetworkType::SymmetricNat`].
    pub const fn is_remote(self) -> bool {
        matches!(self, NetworkType::Nat | NetworkType::SymmetricNat)
    }

    /// A short lowercase name for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            NetworkType::Local => "local",
            NetworkType::Nat => "nat",
            NetworkType::SymmetricNat => "symmetric-nat",
            NetworkType::Unknown => "unknown",
        }
    }
}

impl fmt::Display for NetworkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fallback ladder: `local-only -> with-stun -> full`. Each stage is a
/// floor on what is gathered: at [`FallbackStage::LocalOnly`] (the first
/// attempt) gathering follows the mode and the network type alone; at
/// [`FallbackStage::WithStun`] STUN is added; at [`FallbackStage::Full`]
/// STUN and TURN are added and every host candidate is offered. Any stage
/// above the first also turns the host fast path off (a failure has shown
/// the peer is not as local as it looked).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FallbackStage {
    /// The first attempt.
    #[default]
    LocalOnly,
    /// After one failure: STUN for every peer.
    WithStun,
    /// After two failures: STUN and TURN for every peer.
    Full,
}

impl FallbackStage {
    /// The stage to try after a failure at this one, or `None` at the top.
    /// [`decide`] at the next stage never gathers less (see the module's
    /// tests).
    pub const fn next(self) -> Option<FallbackStage> {
        match self {
            FallbackStage::LocalOnly => Some(FallbackStage::WithStun),
            FallbackStage::WithStun => Some(FallbackStage::Full),
            FallbackStage::Full => None,
        }
    }

    /// A short lowercase name for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            FallbackStage::LocalOnly => "local-only",
            FallbackStage::WithStun => "with-stun",
            FallbackStage::Full => "full",
        }
    }
}

impl fmt::Display for FallbackStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do for one peer: the output of [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Decision {
    /// Where the peer is ([`NetworkType`]).
    pub network: NetworkType,
    /// The stage in force: the requested stage raised to the mode's floor
    /// (`stun-required`: with-stun; `full` and `legacy`: full) and held at
    /// `local-only` in mode `local-only`.
    pub stage: FallbackStage,
    /// The STUN servers to send Binding requests to (srflx candidates), as
    /// indices into `stun_servers`.
    pub stun_servers: ServerSet,
    /// The TURN servers to allocate on (relayed candidates, and srflx as a
    /// side effect, RFC 8656 §7.3), as indices into `turn_servers`.
    pub turn_servers: ServerSet,
    /// How long server gathering may run before end-of-candidates is sent
    /// regardless: zero when no server is queried, `None` (no cap: wait for
    /// every transaction to complete or time out) in `legacy` mode.
    pub stun_gather_cap: Option<Duration>,
    /// Whether end-of-candidates (RFC 8838) may be signalled as soon as
    /// the host candidates are out: true exactly when no server is queried,
    /// outside `legacy` mode.
    pub end_of_candidates_at_once: bool,
    /// Whether host candidates with private, link-local, unique-local or
    /// shared-CGNAT addresses are offered. False only for a peer whose
    /// address shows it remote (rules 4 and 5 of [`NetworkType`]; NAT
    /// evidence alone does not count) below stage full in modes `auto` and
    /// `stun-required`: it cannot reach them, and they reveal the LAN's
    /// layout. A withheld candidate
    /// still serves as the base of our checks, so the peer can learn it as
    /// peer-reflexive if it turns out to be reachable after all.
    pub offer_private_host_candidates: bool,
    /// Whether loopback host candidates are offered: only to a peer whose
    /// own address is loopback (router and simulator on one machine).
    /// RFC 8445 §5.1.1.1 excludes loopback otherwise.
    pub offer_loopback_host_candidates: bool,
    /// Whether the controlling agent may nominate a host-host pair on its
    /// first successful check (the fast path): a local peer, local network
    /// priority on, first stage, any mode but `legacy`.
    pub nominate_host_on_first_success: bool,
    /// The pacing interval Ta for connectivity checks: [`TA_LAN`] with the
    /// fast path, [`TA_DEFAULT`] otherwise.
    pub pacing: Duration,
    /// If no pair has succeeded after this long, step the ladder
    /// ([`FallbackStage::next`]) and decide again. Set to
    /// `host_candidate_timeout` exactly when this decision queries no server
    /// but a later stage would; otherwise `None` (widen on ICE failure, if
    /// at all).
    pub widen_after: Option<Duration>,
}

impl Decision {
    /// Whether server-reflexive candidates are gathered through STUN.
    pub const fn gathers_srflx(&self) -> bool {
        !self.stun_servers.is_empty()
    }

    /// Whether relayed candidates are gathered through TURN.
    pub const fn gathers_relay(&self) -> bool {
        !self.turn_servers.is_empty()
    }

    /// Whether a host candidate on local address `local` is offered to this
    /// peer. Never for unspecified, multicast, broadcast or reserved
    /// addresses, nor for IPv4-mapped IPv6 addresses (RFC 8445 §5.1.1.1:
    /// gather the IPv4 address itself); loopback per
    /// [`Decision::offer_loopback_host_candidates`]; private, link-local,
    /// unique-local and shared-CGNAT per
    /// [`Decision::offer_private_host_candidates`]; global (and documentation
    /// or benchmarking) addresses always. Never panics.
    pub const fn offers(&self, local: IpAddr) -> bool {
        if let IpAddr::V6(v6) = local
            && v6.to_ipv4_mapped().is_some()
        {
            return false;
        }
        match net::classify(local) {
            AddressClass::Loopback => self.offer_loopback_host_candidates,
            AddressClass::LinkLocal
            | AddressClass::Private
            | AddressClass::UniqueLocal
            | AddressClass::SharedCgnat => self.offer_private_host_candidates,
            AddressClass::Global | AddressClass::Documentation | AddressClass::Benchmarking => true,
            AddressClass::Unspecified
            | AddressClass::Multicast
            | AddressClass::Broadcast
            | AddressClass::Reserved => false,
        }
    }
}

/// Decide what to do for one peer. Pure: the same config, knowledge and
/// stage give the same [`Decision`] on the router and on every speaker.
/// Assumes `config` passed [`PolicyConfig::validate`] (invalid or disabled
/// servers are never selected). Never panics, never allocates.
pub fn decide(config: &PolicyConfig<'_>, peer: &PeerKnowledge, stage: FallbackStage) -> Decision {
    let located = locate(config, peer);
    let network = with_nat_evidence(located, peer);
    let stun = config.usable_stun_servers();
    let turn = config.usable_turn_servers();
    let mode = config.mode;
    let in_force = stage_in_force(mode, stage);
    let (stun_servers, turn_servers) = gather(mode, network, in_force, stun, turn);
    let queries_nothing = stun_servers.is_empty() && turn_servers.is_empty();
    let legacy = matches!(mode, IceMode::Legacy);

    let stun_gather_cap = if legacy {
        None
    } else if queries_nothing {
        Some(Duration::ZERO)
    } else {
        Some(config.stun_gather_cap)
    };
    let fast_path = !legacy
        && matches!(network, NetworkType::Local)
        && config.local_network_priority
        && matches!(stage, FallbackStage::LocalOnly);
    let offer_private = !(located.is_remote()
        && matches!(mode, IceMode::Auto | IceMode::StunRequired)
        && !matches!(in_force, FallbackStage::Full));
    let offer_loopback = matches!(
        peer.address().map(net::classify),
        Some(AddressClass::Loopback)
    );
    let widen_after = if queries_nothing && !legacy {
        let top = stage_in_force(mode, FallbackStage::Full);
        let (s, t) = gather(mode, network, top, stun, turn);
        (!(s.is_empty() && t.is_empty())).then_some(config.host_candidate_timeout)
    } else {
        None
    };

    Decision {
        network,
        stage: in_force,
        stun_servers,
        turn_servers,
        stun_gather_cap,
        end_of_candidates_at_once: queries_nothing && !legacy,
        offer_private_host_candidates: offer_private,
        offer_loopback_host_candidates: offer_loopback,
        nominate_host_on_first_success: fast_path,
        pacing: if fast_path { TA_LAN } else { TA_DEFAULT },
        widen_after,
    }
}

/// The [`NetworkType`] of the peer, per the rules documented there (the
/// `network` of [`decide`]'s result). Never panics.
pub fn network_type(config: &PolicyConfig<'_>, peer: &PeerKnowledge) -> NetworkType {
    with_nat_evidence(locate(config, peer), peer)
}

/// Where the peer's address puts it: Local, Nat (remote) or Unknown, before
/// any NAT-mapping evidence.
fn locate(config: &PolicyConfig<'_>, peer: &PeerKnowledge) -> NetworkType {
    let detection = &config.network_detection;
    match peer.address() {
        Some(a) if detection.enabled => {
            if net::in_local_subnets(a, detection.local_subnets) {
                NetworkType::Local
            } else {
                match net::classify(a) {
                    AddressClass::Loopback | AddressClass::LinkLocal => NetworkType::Local,
                    AddressClass::Private | AddressClass::UniqueLocal => {
                        if detection.local_subnets.is_empty() {
                            NetworkType::Local
                        } else {
                            NetworkType::Unknown
                        }
                    }
                    AddressClass::SharedCgnat
                    | AddressClass::Global
                    | AddressClass::Documentation
                    | AddressClass::Benchmarking => NetworkType::Nat,
                    AddressClass::Unspecified
                    | AddressClass::Multicast
                    | AddressClass::Broadcast
                    | AddressClass::Reserved => NetworkType::Unknown,
                }
            }
        }
        _ => NetworkType::Unknown,
    }
}

/// A remote or unknown peer becomes SymmetricNat once an endpoint-dependent
/// mapping has been seen.
fn with_nat_evidence(located: NetworkType, peer: &PeerKnowledge) -> NetworkType {
    match located {
        NetworkType::Local => NetworkType::Local,
        _ if peer.symmetric_nat_seen() => NetworkType::SymmetricNat,
        other => other,
    }
}

/// The requested stage raised to the mode's floor and held at its ceiling.
const fn stage_in_force(mode: IceMode, stage: FallbackStage) -> FallbackStage {
    match mode {
        IceMode::Auto => stage,
        IceMode::LocalOnly => FallbackStage::LocalOnly,
        IceMode::StunRequired => match stage {
            FallbackStage::Full => FallbackStage::Full,
            _ => FallbackStage::WithStun,
        },
        IceMode::Full | IceMode::Legacy => FallbackStage::Full,
    }
}

/// The servers to query: (STUN, TURN).
const fn gather(
    mode: IceMode,
    network: NetworkType,
    stage: FallbackStage,
    stun: ServerSet,
    turn: ServerSet,
) -> (ServerSet, ServerSet) {
    const NONE: ServerSet = ServerSet::EMPTY;
    // What the network type asks for (auto mode only).
    let (net_stun, net_turn) = match (mode, network) {
        (IceMode::Auto, NetworkType::Local) => (false, false),
        (IceMode::Auto, NetworkType::Unknown) => (true, false),
        (IceMode::Auto, _) => (true, true),
        _ => (false, false),
    };
    if matches!(mode, IceMode::LocalOnly) {
        return (NONE, NONE);
    }
    let stage_stun = !matches!(stage, FallbackStage::LocalOnly);
    let stage_turn = matches!(stage, FallbackStage::Full);
    (
        if net_stun || stage_stun { stun } else { NONE },
        if net_turn || stage_turn { turn } else { NONE },
    )
}

// ---------------------------------------------------------------------------
// Conformance
// ---------------------------------------------------------------------------

/// The compact decision table shared by the unit tests and the conformance
/// run: for each mode and peer, the network type, the servers queried, and
/// the flags (`E` = end-of-candidates at once, `P` = private offered, `F` =
/// fast path, `W` = widen after the host timeout).
#[cfg(any(test, feature = "conformance"))]
mod table {
    use super::*;

    pub(super) const STUN: &[StunServer<'static>] = &[
        StunServer {
            url: "stun:stun1.example.org",
            enabled: true,
        },
        StunServer {
            url: "stun:stun2.example.org:3479",
            enabled: false,
        },
        StunServer {
            url: "stuns:stun3.example.org",
            enabled: true,
        },
    ];
    pub(super) const TURN: &[TurnServer<'static>] = &[TurnServer {
        url: "turn:turn.example.org?transport=udp",
        username: Some("speaker"),
        credential: Some("secret"),
        enabled: true,
    }];

    /// `(name, mode, servers configured, peer address, stage) -> (network,
    /// stun bits, turn bits, flags)`. All with `local_subnets` empty.
    pub(super) type Row = (
        &'static str,
        IceMode,
        bool,
        Option<[u8; 4]>,
        FallbackStage,
        NetworkType,
        u32,
        u32,
        &'static str,
    );

    #[rustfmt::skip]
    pub(super) const ROWS: &[Row] = {
        use FallbackStage::{Full as SF, LocalOnly as S1, WithStun as S2};
        use IceMode::*;
        use NetworkType::{Local as L, Nat as N, Unknown as U};
        const LAN: Option<[u8; 4]> = Some([192, 168, 1, 20]);
        const WAN: Option<[u8; 4]> = Some([81, 2, 69, 160]);
        const CGN: Option<[u8; 4]> = Some([100, 64, 1, 2]);
        &[
            ("policy: auto lan", Auto, true, LAN, S1, L, 0, 0, "EPFW"),
            ("policy: auto lan no servers", Auto, false, LAN, S1, L, 0, 0, "EPF"),
            ("policy: auto lan with-stun", Auto, true, LAN, S2, L, 0b101, 0, "P"),
            ("policy: auto lan full", Auto, true, LAN, SF, L, 0b101, 1, "P"),
            ("policy: auto unknown", Auto, true, None, S1, U, 0b101, 0, "P"),
            ("policy: auto unknown no servers", Auto, false, None, S1, U, 0, 0, "EP"),
            ("policy: auto wan", Auto, true, WAN, S1, N, 0b101, 1, ""),
            ("policy: auto wan full", Auto, true, WAN, SF, N, 0b101, 1, "P"),
            ("policy: auto cgnat", Auto, true, CGN, S1, N, 0b101, 1, ""),
            ("policy: local-only wan", LocalOnly, true, WAN, SF, N, 0, 0, "EP"),
            ("policy: local-only lan", LocalOnly, true, LAN, S1, L, 0, 0, "EPF"),
            ("policy: stun-required lan", StunRequired, true, LAN, S1, L, 0b101, 0, "PF"),
            ("policy: stun-required wan", StunRequired, true, WAN, S1, N, 0b101, 0, ""),
            ("policy: stun-required wan full", StunRequired, true, WAN, SF, N, 0b101, 1, "P"),
            ("policy: full lan", Full, true, LAN, S1, L, 0b101, 1, "PF"),
            ("policy: full wan", Full, true, WAN, S1, N, 0b101, 1, "P"),
            ("policy: legacy lan", Legacy, true, LAN, S1, L, 0b101, 1, "P"),
            ("policy: legacy wan", Legacy, true, WAN, S1, N, 0b101, 1, "P"),
        ]
    };

    /// Whether `row` holds for [`decide`].
    pub(super) fn row_holds(row: &Row) -> bool {
        let &(_, mode, servers, addr, stage, network, stun, turn, flags) = row;
        let mut config = PolicyConfig::new(mode);
        if servers {
            config.stun_servers = STUN;
            config.turn_servers = TURN;
        }
        let peer = match addr {
            Some(o) => PeerKnowledge::with_address(IpAddr::from(o)),
            None => PeerKnowledge::new(),
        };
        let d = decide(&config, &peer, stage);
        let has = |c: char| flags.contains(c);
        let queries = stun != 0 || turn != 0;
        d.network == network
            && d.stun_servers.bits() == stun
            && d.turn_servers.bits() == turn
            && d.end_of_candidates_at_once == has('E')
            && d.offer_private_host_candidates == has('P')
            && d.nominate_host_on_first_success == has('F')
            && d.pacing == if has('F') { TA_LAN } else { TA_DEFAULT }
            && d.widen_after == has('W').then_some(DEFAULT_HOST_CANDIDATE_TIMEOUT)
            && d.stun_gather_cap
                == match (mode, queries) {
                    (IceMode::Legacy, _) => None,
                    (_, false) => Some(Duration::ZERO),
                    (_, true) => Some(DEFAULT_STUN_GATHER_CAP),
                }
    }
}

#[cfg(feature = "conformance")]
pub(crate) fn conformance(report: &mut crate::conformance::Report) {
    for row in table::ROWS {
        report.check(row.0, table::row_holds(row));
    }
    for (name, text, expect) in [
        ("policy: mode auto", "auto", Ok(IceMode::Auto)),
        (
            "policy: mode local-only",
            "local-only",
            Ok(IceMode::LocalOnly),
        ),
        (
            "policy: mode stun-required",
            "stun-required",
            Ok(IceMode::StunRequired),
        ),
        ("policy: mode full", "full", Ok(IceMode::Full)),
        ("policy: mode legacy", "legacy", Ok(IceMode::Legacy)),
        (
            "policy: mode smart rejected",
            "smart",
            Err(ModeParseError::Unknown),
        ),
        (
            "policy: mode empty rejected",
            "",
            Err(ModeParseError::Empty),
        ),
    ] {
        report.check(name, IceMode::parse(text) == expect);
    }
    let mut config = PolicyConfig::new(IceMode::StunRequired);
    report.check(
        "policy: stun-required without server is invalid",
        config.validate() == Err(ConfigError::StunRequiredWithoutStunServer),
    );
    config.mode = IceMode::Full;
    config.stun_servers = table::STUN;
    report.check(
        "policy: full without turn server is invalid",
        config.validate() == Err(ConfigError::FullWithoutTurnServer),
    );
    config.turn_servers = table::TURN;
    report.check("policy: table config is valid", config.validate() == Ok(()));
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::table::{STUN, TURN};
    use super::*;
    use FallbackStage::{Full as SF, LocalOnly as S1, WithStun as S2};
    use IceMode::*;
    use NetworkType::{Local as L, Nat as N, SymmetricNat as SN, Unknown as U};
    use core::net::{Ipv4Addr, Ipv6Addr};
    use proptest::prelude::*;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sock(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A Decision written out: network, stage in force, STUN bits, TURN bits,
    /// gather cap (ms), end-of-candidates at once, private offered, fast
    /// path, Ta (ms), widen after (ms). Loopback is never offered here.
    #[allow(clippy::too_many_arguments)]
    const fn d(
        network: NetworkType,
        stage: FallbackStage,
        stun: u32,
        turn: u32,
        cap_ms: Option<u64>,
        eoc: bool,
        private: bool,
        fast: bool,
        ta_ms: u64,
        widen_ms: Option<u64>,
    ) -> Decision {
        Decision {
            network,
            stage,
            stun_servers: ServerSet::from_bits(stun),
            turn_servers: ServerSet::from_bits(turn),
            stun_gather_cap: match cap_ms {
                Some(ms) => Some(Duration::from_millis(ms)),
                None => None,
            },
            end_of_candidates_at_once: eoc,
            offer_private_host_candidates: private,
            offer_loopback_host_candidates: false,
            nominate_host_on_first_success: fast,
            pacing: Duration::from_millis(ta_ms),
            widen_after: match widen_ms {
                Some(ms) => Some(Duration::from_millis(ms)),
                None => None,
            },
        }
    }

    /// A network situation: configured subnets and the peer's address.
    type Situation = (&'static str, bool, Option<&'static str>);
    // (name, local_subnets configured?, peer address)
    const SAME: Situation = ("same subnet", true, Some("192.168.1.20"));
    const OTHER: Situation = ("private peer, other subnet", true, Some("10.0.0.5"));
    const PRIV: Situation = (
        "private peer, no subnets configured",
        false,
        Some("10.0.0.5"),
    );
    const CGNAT: Situation = ("cgnat peer", false, Some("100.64.1.2"));
    const WAN: Situation = ("global peer", false, Some("81.2.69.160"));
    const NOADDR: Situation = ("unknown peer", false, None);
    const ULA: Situation = ("ipv6 ula peer", false, Some("fd12:3456::5"));
    const LINKLOCAL: Situation = ("ipv6 link-local peer", true, Some("fe80::1"));
    const SRV: bool = true;
    const NO: bool = false;

    fn subnets() -> &'static [Cidr] {
        static SUBNETS: std::sync::OnceLock<[Cidr; 2]> = std::sync::OnceLock::new();
        SUBNETS.get_or_init(|| {
            [
                Cidr::parse("192.168.1.0/24").unwrap(),
                Cidr::parse("fd00:1::/64").unwrap(),
            ]
        })
    }

    fn config(mode: IceMode, servers: bool, with_subnets: bool) -> PolicyConfig<'static> {
        let mut c = PolicyConfig::new(mode);
        if servers {
            c.stun_servers = STUN;
            c.turn_servers = TURN;
        }
        if with_subnets {
            c.network_detection.local_subnets = subnets();
        }
        c
    }

    fn peer(addr: Option<&str>) -> PeerKnowledge {
        match addr {
            Some(a) => PeerKnowledge::with_address(ip(a)),
            None => PeerKnowledge::new(),
        }
    }

    /// Every mode x network situation x (servers configured or not), first
    /// stage, with the full expected Decision.
    #[rustfmt::skip]
    const MATRIX: &[(IceMode, Situation, bool, Decision)] = &[
        // mode, situation, servers, d(network, stage, stun, turn, cap ms, eoc at once, private, fast, Ta ms, widen ms)
        // Auto, servers configured
        (Auto, SAME, SRV, d(L, S1, 0, 0, Some(0), true, true, true, 5, Some(1000))),
        (Auto, OTHER, SRV, d(U, S1, 0b101, 0, Some(500), false, true, false, 50, None)),
        (Auto, PRIV, SRV, d(L, S1, 0, 0, Some(0), true, true, true, 5, Some(1000))),
        (Auto, CGNAT, SRV, d(N, S1, 0b101, 1, Some(500), false, false, false, 50, None)),
        (Auto, WAN, SRV, d(N, S1, 0b101, 1, Some(500), false, false, false, 50, None)),
        (Auto, NOADDR, SRV, d(U, S1, 0b101, 0, Some(500), false, true, false, 50, None)),
        (Auto, ULA, SRV, d(L, S1, 0, 0, Some(0), true, true, true, 5, Some(1000))),
        (Auto, LINKLOCAL, SRV, d(L, S1, 0, 0, Some(0), true, true, true, 5, Some(1000))),
        // Auto, servers none
        (Auto, SAME, NO, d(L, S1, 0, 0, Some(0), true, true, true, 5, None)),
        (Auto, OTHER, NO, d(U, S1, 0, 0, Some(0), true, true, false, 50, None)),
        (Auto, PRIV, NO, d(L, S1, 0, 0, Some(0), true, true, true, 5, None)),
        (Auto, CGNAT, NO, d(N, S1, 0, 0, Some(0), true, false, false, 50, None)),
        (Auto, WAN, NO, d(N, S1, 0, 0, Some(0), true, false, false, 50, None)),
        (Auto, NOADDR, NO, d(U, S1, 0, 0, Some(0), true, true, false, 50, None)),
        (Auto, ULA, NO, d(L, S1, 0, 0, Some(0), true, true, true, 5, None)),
        (Auto, LINKLOCAL, NO, d(L, S1, 0, 0, Some(0), true, true, true, 5, None)),
        // LocalOnly, servers configured
        (LocalOnly, SAME, SRV, d(L, S1, 0, 0, Some(0), true, true, true, 5, None)),
        (LocalOnly, OTHER, SRV, d(U, S1, 0, 0, Some(0), true, true, false, 50, None)),
        (LocalOnly, PRIV, SRV, d(L, S1, 0, 0, Some(0), true, true, true, 5, None)),
        (LocalOnly, CGNAT, SRV, d(N, S1, 0, 0, Some(0), true, true, false, 50, None)),
        (LocalOnly, WAN, SRV, d(N, S1, 0, 0, Some(0), true, true, false, 50, None)),
        (LocalOnly, NOADDR, SRV, d(U, S1, 0, 0, Some(0), true, true, false, 50, None)),
        (LocalOnly, ULA, SRV, d(L, S1, 0, 0, Some(0), true, true, true, 5, None)),
        (LocalOnly, LINKLOCAL, SRV, d(L, S1, 0, 0, Some(0), true, true, true, 5, None)),
        // LocalOnly, servers none
        (LocalOnly, SAME, NO, d(L, S1, 0, 0, Some(0), true, true, true, 5, None)),
        (LocalOnly, OTHER, NO, d(U, S1, 0, 0, Some(0), true, true, false, 50, None)),
        (LocalOnly, PRIV, NO, d(L, S1, 0, 0, Some(0), true, true, true, 5, None)),
        (LocalOnly, CGNAT, NO, d(N, S1, 0, 0, Some(0), true, true, false, 50, None)),
        (LocalOnly, WAN, NO, d(N, S1, 0, 0, Some(0), true, true, false, 50, None)),
        (LocalOnly, NOADDR, NO, d(U, S1, 0, 0, Some(0), true, true, false, 50, None)),
        (LocalOnly, ULA, NO, d(L, S1, 0, 0, Some(0), true, true, true, 5, None)),
        (LocalOnly, LINKLOCAL, NO, d(L, S1, 0, 0, Some(0), true, true, true, 5, None)),
        // StunRequired, servers configured
        (StunRequired, SAME, SRV, d(L, S2, 0b101, 0, Some(500), false, true, true, 5, None)),
        (StunRequired, OTHER, SRV, d(U, S2, 0b101, 0, Some(500), false, true, false, 50, None)),
        (StunRequired, PRIV, SRV, d(L, S2, 0b101, 0, Some(500), false, true, true, 5, None)),
        (StunRequired, CGNAT, SRV, d(N, S2, 0b101, 0, Some(500), false, false, false, 50, None)),
        (StunRequired, WAN, SRV, d(N, S2, 0b101, 0, Some(500), false, false, false, 50, None)),
        (StunRequired, NOADDR, SRV, d(U, S2, 0b101, 0, Some(500), false, true, false, 50, None)),
        (StunRequired, ULA, SRV, d(L, S2, 0b101, 0, Some(500), false, true, true, 5, None)),
        (StunRequired, LINKLOCAL, SRV, d(L, S2, 0b101, 0, Some(500), false, true, true, 5, None)),
        // StunRequired, servers none
        (StunRequired, SAME, NO, d(L, S2, 0, 0, Some(0), true, true, true, 5, None)),
        (StunRequired, OTHER, NO, d(U, S2, 0, 0, Some(0), true, true, false, 50, None)),
        (StunRequired, PRIV, NO, d(L, S2, 0, 0, Some(0), true, true, true, 5, None)),
        (StunRequired, CGNAT, NO, d(N, S2, 0, 0, Some(0), true, false, false, 50, None)),
        (StunRequired, WAN, NO, d(N, S2, 0, 0, Some(0), true, false, false, 50, None)),
        (StunRequired, NOADDR, NO, d(U, S2, 0, 0, Some(0), true, true, false, 50, None)),
        (StunRequired, ULA, NO, d(L, S2, 0, 0, Some(0), true, true, true, 5, None)),
        (StunRequired, LINKLOCAL, NO, d(L, S2, 0, 0, Some(0), true, true, true, 5, None)),
        // Full, servers configured
        (Full, SAME, SRV, d(L, SF, 0b101, 1, Some(500), false, true, true, 5, None)),
        (Full, OTHER, SRV, d(U, SF, 0b101, 1, Some(500), false, true, false, 50, None)),
        (Full, PRIV, SRV, d(L, SF, 0b101, 1, Some(500), false, true, true, 5, None)),
        (Full, CGNAT, SRV, d(N, SF, 0b101, 1, Some(500), false, true, false, 50, None)),
        (Full, WAN, SRV, d(N, SF, 0b101, 1, Some(500), false, true, false, 50, None)),
        (Full, NOADDR, SRV, d(U, SF, 0b101, 1, Some(500), false, true, false, 50, None)),
        (Full, ULA, SRV, d(L, SF, 0b101, 1, Some(500), false, true, true, 5, None)),
        (Full, LINKLOCAL, SRV, d(L, SF, 0b101, 1, Some(500), false, true, true, 5, None)),
        // Full, servers none
        (Full, SAME, NO, d(L, SF, 0, 0, Some(0), true, true, true, 5, None)),
        (Full, OTHER, NO, d(U, SF, 0, 0, Some(0), true, true, false, 50, None)),
        (Full, PRIV, NO, d(L, SF, 0, 0, Some(0), true, true, true, 5, None)),
        (Full, CGNAT, NO, d(N, SF, 0, 0, Some(0), true, true, false, 50, None)),
        (Full, WAN, NO, d(N, SF, 0, 0, Some(0), true, true, false, 50, None)),
        (Full, NOADDR, NO, d(U, SF, 0, 0, Some(0), true, true, false, 50, None)),
        (Full, ULA, NO, d(L, SF, 0, 0, Some(0), true, true, true, 5, None)),
        (Full, LINKLOCAL, NO, d(L, SF, 0, 0, Some(0), true, true, true, 5, None)),
        // Legacy, servers configured
        (Legacy, SAME, SRV, d(L, SF, 0b101, 1, None, false, true, false, 50, None)),
        (Legacy, OTHER, SRV, d(U, SF, 0b101, 1, None, false, true, false, 50, None)),
        (Legacy, PRIV, SRV, d(L, SF, 0b101, 1, None, false, true, false, 50, None)),
        (Legacy, CGNAT, SRV, d(N, SF, 0b101, 1, None, false, true, false, 50, None)),
        (Legacy, WAN, SRV, d(N, SF, 0b101, 1, None, false, true, false, 50, None)),
        (Legacy, NOADDR, SRV, d(U, SF, 0b101, 1, None, false, true, false, 50, None)),
        (Legacy, ULA, SRV, d(L, SF, 0b101, 1, None, false, true, false, 50, None)),
        (Legacy, LINKLOCAL, SRV, d(L, SF, 0b101, 1, None, false, true, false, 50, None)),
        // Legacy, servers none
        (Legacy, SAME, NO, d(L, SF, 0, 0, None, false, true, false, 50, None)),
        (Legacy, OTHER, NO, d(U, SF, 0, 0, None, false, true, false, 50, None)),
        (Legacy, PRIV, NO, d(L, SF, 0, 0, None, false, true, false, 50, None)),
        (Legacy, CGNAT, NO, d(N, SF, 0, 0, None, false, true, false, 50, None)),
        (Legacy, WAN, NO, d(N, SF, 0, 0, None, false, true, false, 50, None)),
        (Legacy, NOADDR, NO, d(U, SF, 0, 0, None, false, true, false, 50, None)),
        (Legacy, ULA, NO, d(L, SF, 0, 0, None, false, true, false, 50, None)),
        (Legacy, LINKLOCAL, NO, d(L, SF, 0, 0, None, false, true, false, 50, None)),
    ];

    #[test]
    fn every_mode_and_situation_first_stage() {
        let rows = MATRIX;
        assert_eq!(rows.len(), 5 * 2 * 8);
        for &(mode, (name, with_subnets, addr), servers, expect) in rows {
            let c = config(mode, servers, with_subnets);
            let got = decide(&c, &peer(addr), S1);
            assert_eq!(got, expect, "{mode} / {name} / servers: {servers}");
        }
    }

    #[test]
    fn compact_table_holds() {
        for row in table::ROWS {
            assert!(table::row_holds(row), "{}", row.0);
        }
    }

    #[cfg(feature = "conformance")]
    #[test]
    fn conformance_cases_pass() {
        let mut report = crate::conformance::Report::default();
        conformance(&mut report);
        assert_eq!(report.first_failure, None);
        assert_eq!(report.passed as usize, table::ROWS.len() + 7 + 3);
    }

    #[test]
    fn ladder_steps() {
        assert_eq!(S1.next(), Some(S2));
        assert_eq!(S2.next(), Some(SF));
        assert_eq!(SF.next(), None);
        assert_eq!(FallbackStage::default(), S1);
        assert!(S1 < S2 && S2 < SF);
        assert_eq!(SF.to_string(), "full");
    }

    #[test]
    fn ladder_widens_auto_lan_peer() {
        let c = config(Auto, SRV, true);
        let p = peer(SAME.2);
        assert_eq!(
            decide(&c, &p, S1),
            d(L, S1, 0, 0, Some(0), true, true, true, 5, Some(1000))
        );
        assert_eq!(
            decide(&c, &p, S2),
            d(L, S2, 0b101, 0, Some(500), false, true, false, 50, None)
        );
        assert_eq!(
            decide(&c, &p, SF),
            d(L, SF, 0b101, 1, Some(500), false, true, false, 50, None)
        );
    }

    #[test]
    fn ladder_widens_auto_remote_peer() {
        let c = config(Auto, SRV, false);
        let p = peer(WAN.2);
        assert_eq!(
            decide(&c, &p, S2),
            d(N, S2, 0b101, 1, Some(500), false, false, false, 50, None)
        );
        assert_eq!(
            decide(&c, &p, SF),
            d(N, SF, 0b101, 1, Some(500), false, true, false, 50, None)
        );
    }

    #[test]
    fn ladder_stun_required_adds_turn_at_full() {
        let c = config(StunRequired, SRV, false);
        let p = peer(WAN.2);
        assert_eq!(
            decide(&c, &p, S2),
            d(N, S2, 0b101, 0, Some(500), false, false, false, 50, None)
        );
        assert_eq!(
            decide(&c, &p, SF),
            d(N, SF, 0b101, 1, Some(500), false, true, false, 50, None)
        );
    }

    #[test]
    fn ladder_never_widens_local_only_or_legacy() {
        for mode in [LocalOnly, Legacy] {
            let c = config(mode, SRV, false);
            let p = peer(WAN.2);
            let first = decide(&c, &p, S1);
            assert_eq!(decide(&c, &p, S2), first, "{mode}");
            assert_eq!(decide(&c, &p, SF), first, "{mode}");
            assert_eq!(first.widen_after, None);
        }
    }

    #[test]
    fn widen_after_counts_turn_only_configs() {
        // No STUN server, one TURN server: a local peer gathers nothing at
        // first, and the ladder would add TURN at stage full.
        let mut c = PolicyConfig::new(Auto);
        c.turn_servers = TURN;
        c.host_candidate_timeout = Duration::from_millis(750);
        let lan = peer(Some("192.168.7.7"));
        assert_eq!(
            decide(&c, &lan, S1),
            d(L, S1, 0, 0, Some(0), true, true, true, 5, Some(750))
        );
        // WithStun adds nothing (no STUN server): still host only.
        assert_eq!(
            decide(&c, &lan, S2),
            d(L, S2, 0, 0, Some(0), true, true, false, 50, Some(750))
        );
        assert_eq!(
            decide(&c, &lan, SF),
            d(L, SF, 0, 1, Some(500), false, true, false, 50, None)
        );
        // An unknown peer: STUN-less, so nothing at first either.
        assert_eq!(
            decide(&c, &PeerKnowledge::new(), S1),
            d(U, S1, 0, 0, Some(0), true, true, false, 50, Some(750))
        );
    }

    #[test]
    fn stun_only_config_remote_peer() {
        let mut c = PolicyConfig::new(Auto);
        c.stun_servers = STUN;
        c.stun_gather_cap = Duration::from_millis(300);
        assert_eq!(
            decide(&c, &peer(WAN.2), S1),
            d(N, S1, 0b101, 0, Some(300), false, false, false, 50, None)
        );
    }

    #[test]
    fn detection_disabled_makes_every_peer_unknown() {
        let mut c = config(Auto, SRV, true);
        c.network_detection.enabled = false;
        for s in [SAME, OTHER, PRIV, CGNAT, WAN, NOADDR, ULA, LINKLOCAL] {
            assert_eq!(
                decide(&c, &peer(s.2), S1),
                d(U, S1, 0b101, 0, Some(500), false, true, false, 50, None),
                "{}",
                s.0
            );
        }
    }

    #[test]
    fn local_subnets_widen_locality_to_any_class() {
        // A LAN in CGNAT space (an overlay VPN) and in global IPv6 space.
        let subnets = [
            Cidr::parse("100.64.0.0/10").unwrap(),
            Cidr::parse("2001:db8:1::/64").unwrap(),
        ];
        let mut c = config(Auto, SRV, false);
        c.network_detection.local_subnets = &subnets;
        for a in ["100.100.1.1", "2001:db8:1::9", "::ffff:100.64.0.1"] {
            assert_eq!(decide(&c, &peer(Some(a)), S1).network, L, "{a}");
        }
        assert_eq!(decide(&c, &peer(Some("2001:db8:2::9")), S1).network, N);
        // Configured subnets narrow private space: 10/8 is no longer local.
        assert_eq!(decide(&c, &peer(Some("10.1.1.1")), S1).network, U);
        // Link-local stays local.
        assert_eq!(decide(&c, &peer(Some("169.254.3.3")), S1).network, L);
    }

    #[test]
    fn odd_peer_addresses_are_unknown() {
        let c = config(Auto, SRV, false);
        for a in [
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
            "240.0.0.1",
            "fec0::1",
        ] {
            assert_eq!(decide(&c, &peer(Some(a)), S1).network, U, "{a}");
        }
        for a in ["192.0.2.1", "198.18.0.1", "2001:db8::1"] {
            assert_eq!(decide(&c, &peer(Some(a)), S1).network, N, "{a}");
        }
    }

    #[test]
    fn loopback_peer() {
        let c = config(Auto, SRV, false);
        for a in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let got = decide(&c, &peer(Some(a)), S1);
            let mut expect = d(L, S1, 0, 0, Some(0), true, true, true, 5, Some(1000));
            expect.offer_loopback_host_candidates = true;
            assert_eq!(got, expect, "{a}");
            assert!(got.offers(ip("127.0.0.1")));
            assert!(got.offers(ip("::1")));
        }
        let lan = decide(&c, &peer(SAME.2), S1);
        assert!(!lan.offers(ip("127.0.0.1")));
    }

    #[test]
    fn local_network_priority_off_disables_fast_path_only() {
        let mut c = config(Auto, SRV, true);
        c.local_network_priority = false;
        assert_eq!(
            decide(&c, &peer(SAME.2), S1),
            d(L, S1, 0, 0, Some(0), true, true, false, 50, Some(1000))
        );
    }

    #[test]
    fn symmetric_nat_from_own_mappings() {
        let c = config(Auto, SRV, false);
        let mut p = peer(WAN.2);
        let base = sock("192.168.1.2:50000");
        p.add_own_mapping(sock("198.51.100.1:3478"), base, sock("203.0.113.5:61000"));
        assert_eq!(p.own_mapping(), MappingBehavior::Unknown);
        // The same server again proves nothing.
        p.add_own_mapping(sock("198.51.100.1:3478"), base, sock("203.0.113.5:61000"));
        assert_eq!(p.own_mapping(), MappingBehavior::Unknown);
        assert_eq!(decide(&c, &p, S1).network, N);
        // A second server, a different port: endpoint-dependent.
        p.add_own_mapping(sock("198.51.100.2:3478"), base, sock("203.0.113.5:61001"));
        assert_eq!(p.own_mapping(), MappingBehavior::EndpointDependent);
        assert_eq!(
            decide(&c, &p, S1),
            d(SN, S1, 0b101, 1, Some(500), false, false, false, 50, None)
        );
        // An unknown peer with our symmetric NAT: relay too, but private
        // candidates are still offered (it may be on the LAN).
        let mut u = PeerKnowledge::new();
        u.add_own_mapping(sock("198.51.100.1:3478"), base, sock("203.0.113.5:61000"));
        u.add_own_mapping(sock("198.51.100.2:3478"), base, sock("203.0.113.5:61001"));
        assert_eq!(
            decide(&c, &u, S1),
            d(SN, S1, 0b101, 1, Some(500), false, true, false, 50, None)
        );
        // A local peer stays local: our NAT is not on the path.
        let mut lan = peer(Some("192.168.1.9"));
        lan.add_own_mapping(sock("198.51.100.1:3478"), base, sock("203.0.113.5:61000"));
        lan.add_own_mapping(sock("198.51.100.2:3478"), base, sock("203.0.113.5:61001"));
        assert_eq!(decide(&c, &lan, S1).network, L);
    }

    #[test]
    fn endpoint_independent_own_mapping() {
        let mut p = PeerKnowledge::new();
        let base = sock("10.0.0.2:40000");
        p.add_own_mapping(sock("198.51.100.1:3478"), base, sock("203.0.113.5:40000"));
        p.add_own_mapping(sock("198.51.100.2:19302"), base, sock("203.0.113.5:40000"));
        assert_eq!(p.own_mapping(), MappingBehavior::EndpointIndependent);
        // Another base is not compared with the first.
        p.add_own_mapping(
            sock("198.51.100.2:19302"),
            sock("10.0.0.2:40001"),
            sock("203.0.113.5:7"),
        );
        assert_eq!(p.own_mapping(), MappingBehavior::EndpointIndependent);
        // Dependence wins once seen.
        p.add_own_mapping(sock("198.51.100.3:3478"), base, sock("203.0.113.6:40000"));
        assert_eq!(p.own_mapping(), MappingBehavior::EndpointDependent);
    }

    #[test]
    fn symmetric_nat_from_peer_candidates() {
        let c = config(Auto, SRV, false);
        let mut p = PeerKnowledge::new();
        let base = sock("192.168.0.10:5000");
        p.add_candidate(CandidateKind::Host, base, None);
        p.add_candidate(
            CandidateKind::ServerReflexive,
            sock("81.2.69.160:6000"),
            Some(base),
        );
        assert_eq!(p.peer_behind_nat(), Some(true));
        assert_eq!(p.peer_mapping(), MappingBehavior::Unknown);
        assert_eq!(
            decide(&c, &p, S1).network,
            U,
            "candidates never locate a peer"
        );
        p.add_candidate(
            CandidateKind::ServerReflexive,
            sock("81.2.69.160:6001"),
            Some(base),
        );
        assert_eq!(p.peer_mapping(), MappingBehavior::EndpointDependent);
        assert_eq!(
            decide(&c, &p, S1),
            d(SN, S1, 0b101, 1, Some(500), false, true, false, 50, None)
        );
    }

    #[test]
    fn peer_knowledge_accumulates() {
        let mut p = PeerKnowledge::new();
        assert_eq!(p.address(), None);
        assert_eq!(p.peer_behind_nat(), None);
        p.set_address(ip("::ffff:192.168.1.4"));
        assert_eq!(p.address(), Some(ip("192.168.1.4")));
        assert_eq!(
            p.address(),
            PeerKnowledge::with_address(ip("::ffff:192.168.1.4")).address()
        );
        p.add_candidate(CandidateKind::Host, sock("81.2.69.160:9"), None);
        p.add_candidate(
            CandidateKind::ServerReflexive,
            sock("81.2.69.160:9"),
            Some(sock("81.2.69.160:9")),
        );
        assert_eq!(p.peer_behind_nat(), Some(false), "public host");
        p.add_candidate(CandidateKind::Relayed, sock("198.51.100.9:3478"), None);
        assert!(p.has_candidate_kind(CandidateKind::Relayed));
        assert!(!p.has_candidate_kind(CandidateKind::PeerReflexive));
        assert_eq!(p.candidate_count(), 3);
        // Far more candidates than the capacity: counted, never a panic.
        for i in 0..200u16 {
            p.add_candidate(
                CandidateKind::Host,
                SocketAddr::new(IpAddr::V4(Ipv4Addr::from_bits(u32::from(i))), i),
                None,
            );
            p.add_candidate(
                CandidateKind::ServerReflexive,
                sock("81.2.69.161:1"),
                Some(SocketAddr::new(ip("10.0.0.1"), i)),
            );
            p.add_own_mapping(
                sock("1.1.1.1:1"),
                SocketAddr::new(ip("10.0.0.1"), i),
                sock("2.2.2.2:2"),
            );
        }
        assert_eq!(p.candidate_count(), 403);
    }

    #[test]
    fn offers_by_address_class() {
        let c = config(Auto, SRV, false);
        let remote = decide(&c, &peer(WAN.2), S1);
        let local = decide(&c, &peer(PRIV.2), S1);
        for (a, to_remote, to_local) in [
            ("192.168.1.2", false, true),
            ("10.1.2.3", false, true),
            ("169.254.1.1", false, true),
            ("fe80::1", false, true),
            ("fd00::1", false, true),
            ("100.64.0.1", false, true),
            ("81.2.69.160", true, true),
            ("2a01:4f8::1", true, true),
            ("127.0.0.1", false, false),
            ("::1", false, false),
            ("0.0.0.0", false, false),
            ("::", false, false),
            ("224.0.0.1", false, false),
            ("255.255.255.255", false, false),
            ("fec0::1", false, false),
            ("::ffff:81.2.69.160", false, false),
            ("::ffff:192.168.1.2", false, false),
        ] {
            assert_eq!(remote.offers(ip(a)), to_remote, "{a} to remote");
            assert_eq!(local.offers(ip(a)), to_local, "{a} to local");
        }
        assert!(remote.gathers_srflx() && remote.gathers_relay());
        assert!(!local.gathers_srflx() && !local.gathers_relay());
    }

    #[test]
    fn mode_parse_and_display() {
        for m in IceMode::ALL {
            assert_eq!(IceMode::parse(m.as_str()), Ok(m));
            assert_eq!(m.to_string().parse::<IceMode>(), Ok(m));
        }
        assert_eq!(IceMode::parse("AUTO"), Ok(Auto));
        assert_eq!(IceMode::parse("Local-Only"), Ok(LocalOnly));
        assert_eq!(IceMode::parse(""), Err(ModeParseError::Empty));
        for bad in ["smart", "local_only", " auto", "auto ", "stun", "fulll"] {
            assert_eq!(IceMode::parse(bad), Err(ModeParseError::Unknown), "{bad}");
        }
        assert!(
            ModeParseError::Unknown
                .to_string()
                .contains("stun-required")
        );
        assert_eq!(IceMode::default(), Auto);
        // The deprecated legacy switch still does what it says.
        #[allow(deprecated)]
        let resolved = [Auto.resolve(true), Full.resolve(true), Full.resolve(false)];
        assert_eq!(resolved, [Legacy, Legacy, Full]);
    }

    #[test]
    fn server_set() {
        let mut s = ServerSet::EMPTY;
        assert!(s.is_empty());
        assert!(s.insert(0) && s.insert(31));
        assert!(!s.insert(32));
        assert!(s.contains(31) && !s.contains(1) && !s.contains(usize::MAX));
        assert_eq!(s.len(), 2);
        assert_eq!(s.iter().collect::<Vec<_>>(), [0, 31]);
        assert!(ServerSet::from_bits(1).is_subset(s));
        assert!(!s.is_subset(ServerSet::from_bits(1)));
        assert_eq!(
            ServerSet::from_bits(2)
                .union(ServerSet::from_bits(4))
                .bits(),
            6
        );
    }

    // --- validation -------------------------------------------------------

    fn problems(c: &PolicyConfig<'_>) -> Vec<ConfigError> {
        c.problems().collect()
    }

    #[test]
    fn valid_configs() {
        assert_eq!(PolicyConfig::new(Auto).validate(), Ok(()));
        assert_eq!(PolicyConfig::new(LocalOnly).validate(), Ok(()));
        assert_eq!(PolicyConfig::new(Legacy).validate(), Ok(()));
        for m in IceMode::ALL {
            assert_eq!(config(m, SRV, true).validate(), Ok(()), "{m}");
        }
        // full with TURN only is valid (TURN gives srflx too).
        let mut c = PolicyConfig::new(Full);
        c.turn_servers = TURN;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn stun_required_without_stun_server() {
        let c = PolicyConfig::new(StunRequired);
        assert_eq!(problems(&c), [ConfigError::StunRequiredWithoutStunServer]);
        // Only a disabled server: still an error.
        let disabled = [StunServer {
            url: "stun:a.example",
            enabled: false,
        }];
        let mut c = PolicyConfig::new(StunRequired);
        c.stun_servers = &disabled;
        assert_eq!(problems(&c), [ConfigError::StunRequiredWithoutStunServer]);
        // Only a broken server: both problems are reported.
        let broken = [StunServer {
            url: "stun://a.example",
            enabled: true,
        }];
        c.stun_servers = &broken;
        assert_eq!(
            problems(&c),
            [
                ConfigError::BadUrl {
                    list: ServerList::Stun,
                    index: 0,
                    error: url::Error::AuthoritySlashes
                },
                ConfigError::StunRequiredWithoutStunServer
            ]
        );
        // A TURN server does not satisfy stun-required.
        let mut c = PolicyConfig::new(StunRequired);
        c.turn_servers = TURN;
        assert_eq!(
            c.validate(),
            Err(ConfigError::StunRequiredWithoutStunServer)
        );
    }

    #[test]
    fn full_without_turn_server() {
        let c = PolicyConfig::new(Full);
        assert_eq!(problems(&c), [ConfigError::FullWithoutTurnServer]);
        let mut c = PolicyConfig::new(Full);
        c.stun_servers = STUN;
        assert_eq!(problems(&c), [ConfigError::FullWithoutTurnServer]);
        let disabled = [TurnServer {
            enabled: false,
            ..TURN[0]
        }];
        c.turn_servers = &disabled;
        assert_eq!(problems(&c), [ConfigError::FullWithoutTurnServer]);
    }

    #[test]
    fn turn_credentials() {
        let turn = [
            TurnServer {
                username: None,
                ..TURN[0]
            },
            TurnServer {
                credential: Some(""),
                ..TURN[0]
            },
            TurnServer {
                username: Some(""),
                credential: None,
                enabled: false,
                ..TURN[0]
            },
            TURN[0],
        ];
        let mut c = PolicyConfig::new(Auto);
        c.turn_servers = &turn;
        assert_eq!(
            problems(&c),
            [
                ConfigError::TurnWithoutUsername { index: 0 },
                ConfigError::TurnWithoutCredential { index: 1 },
                ConfigError::TurnWithoutUsername { index: 2 },
                ConfigError::TurnWithoutCredential { index: 2 },
            ]
        );
        assert_eq!(c.usable_turn_servers(), ServerSet::from_bits(0b1000));
    }

    #[test]
    fn bad_urls_and_wrong_schemes() {
        let stun = [
            StunServer {
                url: "stun:ok.example",
                enabled: true,
            },
            StunServer {
                url: "turn:relay.example",
                enabled: true,
            },
            StunServer {
                url: "stun:bad host",
                enabled: false,
            },
            StunServer {
                url: "",
                enabled: true,
            },
        ];
        let turn = [
            TurnServer {
                url: "stuns:x.example",
                ..TURN[0]
            },
            TurnServer {
                url: "turn:x.example:0",
                ..TURN[0]
            },
            TurnServer {
                url: "turn:u@x.example",
                username: None,
                ..TURN[0]
            },
        ];
        let mut c = PolicyConfig::new(Auto);
        c.stun_servers = &stun;
        c.turn_servers = &turn;
        let all = problems(&c);
        assert_eq!(
            all,
            [
                ConfigError::WrongScheme {
                    list: ServerList::Stun,
                    index: 1,
                    scheme: Scheme::Turn
                },
                ConfigError::BadUrl {
                    list: ServerList::Stun,
                    index: 2,
                    error: url::Error::BadHostName
                },
                ConfigError::BadUrl {
                    list: ServerList::Stun,
                    index: 3,
                    error: url::Error::Empty
                },
                ConfigError::WrongScheme {
                    list: ServerList::Turn,
                    index: 0,
                    scheme: Scheme::Stuns
                },
                ConfigError::BadUrl {
                    list: ServerList::Turn,
                    index: 1,
                    error: url::Error::PortZero
                },
                ConfigError::BadUrl {
                    list: ServerList::Turn,
                    index: 2,
                    error: url::Error::Userinfo
                },
                ConfigError::TurnWithoutUsername { index: 2 },
            ]
        );
        assert_eq!(c.validate(), Err(all[0]));
        assert_eq!(all[0].server(), Some((ServerList::Stun, 1)));
        assert_eq!(all[6].server(), Some((ServerList::Turn, 2)));
        assert_eq!(ConfigError::FullWithoutTurnServer.server(), None);
        // Invalid servers are never selected.
        assert_eq!(c.usable_stun_servers(), ServerSet::from_bits(1));
        assert_eq!(c.usable_turn_servers(), ServerSet::EMPTY);
        assert_eq!(
            decide(&c, &peer(WAN.2), S1).stun_servers,
            ServerSet::from_bits(1)
        );
    }

    #[test]
    fn too_many_servers() {
        let stun = [StunServer {
            url: "stun:a.example",
            enabled: true,
        }; MAX_SERVERS + 1];
        let turn = [TURN[0]; MAX_SERVERS + 1];
        let mut c = PolicyConfig::new(Auto);
        c.stun_servers = &stun;
        c.turn_servers = &turn;
        assert_eq!(
            problems(&c),
            [
                ConfigError::TooManyServers {
                    list: ServerList::Stun
                },
                ConfigError::TooManyServers {
                    list: ServerList::Turn
                },
            ]
        );
        // The first MAX_SERVERS are still addressable; the extra one is not.
        assert_eq!(c.usable_stun_servers().len(), MAX_SERVERS);
        c.stun_servers = &stun[..MAX_SERVERS];
        c.turn_servers = &turn[..MAX_SERVERS];
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn config_error_display() {
        let e = ConfigError::BadUrl {
            list: ServerList::Stun,
            index: 2,
            error: url::Error::AuthoritySlashes,
        };
        let s = e.to_string();
        assert!(s.starts_with("stun_servers[2]: bad URL: "), "{s}");
        assert!(s.contains("RFC 7064"), "{s}");
        assert_eq!(
            ConfigError::WrongScheme {
                list: ServerList::Stun,
                index: 0,
                scheme: Scheme::Turns
            }
            .to_string(),
            "stun_servers[0]: turns: URL in stun_servers (move it to turn_servers)"
        );
        assert_eq!(
            ConfigError::TurnWithoutCredential { index: 4 }.to_string(),
            "turn_servers[4]: TURN server without credential"
        );
        assert_eq!(
            ConfigError::TooManyServers {
                list: ServerList::Turn
            }
            .to_string(),
            "turn_servers: more than 32 entries"
        );
        assert!(
            ConfigError::StunRequiredWithoutStunServer
                .to_string()
                .contains("stun-required")
        );
        assert!(
            ConfigError::FullWithoutTurnServer
                .to_string()
                .contains("TURN")
        );
    }

    // --- properties -------------------------------------------------------

    fn any_addr() -> impl Strategy<Value = Option<IpAddr>> {
        prop_oneof![
            Just(None),
            any::<u32>().prop_map(|b| Some(IpAddr::V4(Ipv4Addr::from_bits(b)))),
            any::<u128>().prop_map(|b| Some(IpAddr::V6(Ipv6Addr::from_bits(b)))),
            prop::sample::select(vec![
                "192.168.1.20",
                "10.0.0.5",
                "100.64.1.2",
                "81.2.69.160",
                "fd12::5",
                "fe80::1",
                "127.0.0.1",
            ])
            .prop_map(|s| Some(ip(s))),
        ]
    }

    fn any_stage() -> impl Strategy<Value = FallbackStage> {
        prop::sample::select(vec![S1, S2, SF])
    }

    proptest! {
        #[test]
        fn decide_never_panics_and_ladder_only_widens(
            mode in prop::sample::select(IceMode::ALL.to_vec()),
            servers: bool,
            with_subnets: bool,
            detection: bool,
            priority: bool,
            addr in any_addr(),
            own_ports in prop::collection::vec(any::<u16>(), 0..4),
            stage in any_stage(),
        ) {
            let mut c = config(mode, servers, with_subnets);
            c.network_detection.enabled = detection;
            c.local_network_priority = priority;
            let mut p = PeerKnowledge::new();
            if let Some(a) = addr {
                p.set_address(a);
            }
            for (i, port) in own_ports.iter().enumerate() {
                p.add_own_mapping(
                    SocketAddr::new(ip("198.51.100.1"), 3478 + i as u16),
                    sock("10.0.0.2:5000"),
                    SocketAddr::new(ip("203.0.113.1"), *port),
                );
            }
            let now = decide(&c, &p, stage);
            prop_assert!(now.stage >= stage || mode == LocalOnly);
            prop_assert!(now.stun_servers.is_subset(c.usable_stun_servers()));
            prop_assert!(now.turn_servers.is_subset(c.usable_turn_servers()));
            prop_assert_eq!(
                now.end_of_candidates_at_once,
                mode != Legacy && !now.gathers_srflx() && !now.gathers_relay()
            );
            if now.nominate_host_on_first_success {
                prop_assert_eq!(now.network, L);
                prop_assert_eq!(now.pacing, TA_LAN);
            } else {
                prop_assert_eq!(now.pacing, TA_DEFAULT);
            }
            if mode == LocalOnly {
                prop_assert!(!now.gathers_srflx() && !now.gathers_relay());
            }
            if let Some(next) = stage.next() {
                let wider = decide(&c, &p, next);
                prop_assert!(now.stun_servers.is_subset(wider.stun_servers));
                prop_assert!(now.turn_servers.is_subset(wider.turn_servers));
                prop_assert!(!now.offer_private_host_candidates || wider.offer_private_host_candidates);
                prop_assert_eq!(now.network, wider.network);
            }
        }

        #[test]
        fn validate_never_panics(
            mode in prop::sample::select(IceMode::ALL.to_vec()),
            urls in prop::collection::vec("\\PC{0,24}", 0..6),
            creds in prop::collection::vec(prop::option::of("[a-z]{0,3}"), 0..6),
            enabled in prop::collection::vec(any::<bool>(), 6),
        ) {
            let stun: Vec<StunServer<'_>> = urls
                .iter()
                .zip(&enabled)
                .map(|(u, &e)| StunServer { url: u, enabled: e })
                .collect();
            let turn: Vec<TurnServer<'_>> = urls
                .iter()
                .zip(&creds)
                .zip(&enabled)
                .map(|((u, c), &e)| TurnServer {
                    url: u,
                    username: c.as_deref(),
                    credential: c.as_deref(),
                    enabled: e,
                })
                .collect();
            let mut c = PolicyConfig::new(mode);
            c.stun_servers = &stun;
            c.turn_servers = &turn;
            let all: Vec<_> = c.problems().collect();
            prop_assert_eq!(c.validate().err(), all.first().copied());
            prop_assert!(all.len() <= 2 + stun.len() + 3 * turn.len() + 1);
            for e in &all {
                if let Some((list, i)) = e.server() {
                    let n = match list { ServerList::Stun => stun.len(), ServerList::Turn => turn.len() };
                    prop_assert!(i < n);
                }
            }
            let _ = decide(&c, &PeerKnowledge::new(), S1);
        }
    }
}
