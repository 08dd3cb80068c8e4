//! Candidate pairs and their states (RFC 8445 section 6.1.2).

use crate::stun::TransactionId;
use crate::time::{Duration, Instant};

/// The state of a candidate pair (RFC 8445 section 6.1.2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(crate) enum PairState {
    Frozen,
    Waiting,
    InProgress,
    Succeeded,
    Failed,
}

/// One outstanding STUN transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transaction {
    pub id: TransactionId,
    /// When to retransmit or give up.
    pub deadline: Instant,
    /// The current retransmission timeout.
    pub rto: Duration,
    /// Requests sent so far in this transaction.
    pub sent: u8,
    /// Whether this request carries USE-CANDIDATE.
    pub use_candidate: bool,
    /// The role the request claimed.
    pub role: super::Role,
}

/// A local/remote candidate pair. Candidates are referred to by index; the
/// agent renumbers pairs when it removes a candidate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pair {
    pub local: u8,
    pub remote: u8,
    pub priority: u64,
    pub state: PairState,
    /// A check on this pair succeeded (RFC 8445 section 7.2.5.3.2): it is in
    /// the valid list.
    pub valid: bool,
    /// Nominated: selected for data once the agents agree.
    pub nominated: bool,
    /// Controlling: a USE-CANDIDATE check must go out on this pair.
    /// Controlled: the peer nominated it before our own check succeeded.
    pub nominate: bool,
    /// Waiting in the triggered-check queue; `triggered_seq` orders it.
    pub triggered: bool,
    pub triggered_seq: u16,
    pub tx: Option<Transaction>,
}

impl Pair {
    pub fn new(local: u8, remote: u8, priority: u64, state: PairState) -> Pair {
        Pair {
            local,
            remote,
            priority,
            state,
            valid: false,
            nominated: false,
            nominate: false,
            triggered: false,
            triggered_seq: 0,
            tx: None,
        }
    }

    /// Whether checks on this pair may still change its fate.
    pub fn pending(&self) -> bool {
        matches!(
            self.state,
            PairState::Frozen | PairState::Waiting | PairState::InProgress
        ) || self.triggered
    }
}
