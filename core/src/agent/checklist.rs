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
///
/// The outstanding transaction is stored flattened (no `Option<Transaction>`
/// with its padding): 48 bytes a pair instead of 56, which is 512 bytes of
/// a speaker's 64-pair check list.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pair {
    pub priority: u64,
    tx_deadline: Instant,
    tx_id: [u8; 12],
    tx_rto_us: u32,
    pub local: u8,
    pub remote: u8,
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
    /// Requests sent in the outstanding transaction; 0: none outstanding.
    tx_sent: u8,
    tx_use_candidate: bool,
    tx_controlling: bool,
    pub triggered_seq: u16,
}

impl Pair {
    pub fn new(local: u8, remote: u8, priority: u64, state: PairState) -> Pair {
        Pair {
            priority,
            tx_deadline: Instant::ZERO,
            tx_id: [0; 12],
            tx_rto_us: 0,
            local,
            remote,
            state,
            valid: false,
            nominated: false,
            nominate: false,
            triggered: false,
            tx_sent: 0,
            tx_use_candidate: false,
            tx_controlling: false,
            triggered_seq: 0,
        }
    }

    /// The outstanding transaction, if any.
    pub fn tx(&self) -> Option<Transaction> {
        (self.tx_sent > 0).then(|| Transaction {
            id: TransactionId(self.tx_id),
            deadline: self.tx_deadline,
            rto: Duration::from_micros(u64::from(self.tx_rto_us)),
            sent: self.tx_sent,
            use_candidate: self.tx_use_candidate,
            role: if self.tx_controlling {
                super::Role::Controlling
            } else {
                super::Role::Controlled
            },
        })
    }

    /// Replace or clear the outstanding transaction.
    pub fn set_tx(&mut self, tx: Option<Transaction>) {
        match tx {
            Some(tx) => {
                self.tx_id = tx.id.0;
                self.tx_deadline = tx.deadline;
                // RTOs are capped in the seconds; saturate rather than wrap.
                self.tx_rto_us = u32::try_from(tx.rto.total_micros()).unwrap_or(u32::MAX);
                self.tx_sent = tx.sent.max(1);
                self.tx_use_candidate = tx.use_candidate;
                self.tx_controlling = tx.role == super::Role::Controlling;
            }
            None => self.tx_sent = 0,
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
