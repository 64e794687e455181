//! The balance log: every balance change, queryable per account.
//!
//! The engine emits one `BalanceChange` event per change; this store keeps them per
//! account so any balance can be audited (the sum of an account's deltas for an asset is
//! its balance). It is a consumer of events, not part of the replicated state: the
//! command log is the complete, durable record, and replaying it rebuilds this store. In
//! memory it keeps at most `records_per_account_max` records per account (oldest dropped,
//! and counted, beyond that).

use std::collections::{BTreeMap, VecDeque};

use crate::event::{BalanceChange, Event, EventKind};
use crate::types::{AccountId, LogIndex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceRecord {
    pub index: LogIndex,
    pub time_ns: u64,
    pub change: BalanceChange,
}

#[derive(Debug)]
pub struct BalanceLog {
    records_per_account_max: usize,
    accounts: BTreeMap<AccountId, AccountLog>,
}

#[derive(Debug, Default)]
struct AccountLog {
    records: VecDeque<BalanceRecord>,
    dropped: u64,
}

impl BalanceLog {
    pub fn new(records_per_account_max: usize) -> BalanceLog {
        assert!(records_per_account_max > 0);
        BalanceLog { records_per_account_max, accounts: BTreeMap::new() }
    }

    /// Records the event if it is a balance change.
    pub fn record(&mut self, event: &Event) {
        let EventKind::Balance(change) = event.kind else { return };
        let log = self.accounts.entry(change.account).or_default();
        if log.records.len() == self.records_per_account_max {
            log.records.pop_front();
            log.dropped += 1;
        }
        log.records.push_back(BalanceRecord { index: event.index, time_ns: event.time_ns, change });
        debug_assert!(log.records.len() <= self.records_per_account_max);
    }

    pub fn record_all(&mut self, events: &[Event]) {
        for event in events {
            self.record(event);
        }
    }

    /// The account's retained records, oldest first.
    pub fn records(&self, account: AccountId) -> impl Iterator<Item = &BalanceRecord> + '_ {
        self.accounts.get(&account).into_iter().flat_map(|log| log.records.iter())
    }

    /// How many of the account's records were dropped to stay within the bound.
    pub fn dropped(&self, account: AccountId) -> u64 {
        self.accounts.get(&account).map_or(0, |log| log.dropped)
    }
}
