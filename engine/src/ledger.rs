//! Ledger commands: deposits, withdrawals (request, then complete or cancel) and
//! transfers. Each carries a transaction id; the outcome is stored, so a repeated id
//! returns the original outcome and changes nothing.

use crate::command::{Command, CommandKind};
use crate::event::*;
use crate::exchange::{Exchange, Out, TxOutcome, TxRecord};
use crate::types::*;

/// What the idempotency check found for a new ledger command.
enum TxCheck {
    /// A fresh id: go on.
    New,
    /// Answered already (a replay of the stored outcome, or a reject that is not stored).
    Answered,
}

fn reject(
    command: CommandKind,
    account: AccountId,
    tx: TxId,
    reason: RejectReason,
    duplicate: bool,
) -> EventKind {
    EventKind::Rejected(Rejected {
        command,
        account,
        order_id: 0,
        client_order_id: 0,
        tx,
        reason,
        duplicate,
        shortfall: None,
    })
}

fn command_of(kind: LedgerKind) -> CommandKind {
    match kind {
        LedgerKind::Deposit => CommandKind::Deposit,
        LedgerKind::WithdrawRequest => CommandKind::WithdrawRequest,
        LedgerKind::WithdrawComplete => CommandKind::WithdrawComplete,
        LedgerKind::WithdrawCancel => CommandKind::WithdrawCancel,
        LedgerKind::Transfer => CommandKind::Transfer,
    }
}

impl Exchange {
    /// The checks every new ledger transaction starts with (README, "Ledger").
    fn tx_check(&self, record: &TxRecord, out: &mut Out) -> TxCheck {
        let command = command_of(record.kind);
        if record.tx == 0 {
            out.push(reject(command, record.account, 0, RejectReason::InvalidTxId, false));
            return TxCheck::Answered;
        }
        if let Some(&at) = self.tx_index.get(&record.tx) {
            let stored = *self.txs.get(at as usize);
            if stored.kind != record.kind {
                out.push(reject(
                    command,
                    record.account,
                    record.tx,
                    RejectReason::TxIdConflict,
                    false,
                ));
            } else if !same_params(&stored, record) {
                out.push(reject(
                    command,
                    record.account,
                    record.tx,
                    RejectReason::TxIdReusedWithDifferentParams,
                    false,
                ));
            } else {
                out.push(stored_outcome(&stored));
            }
            return TxCheck::Answered;
        }
        if self.txs.len() >= self.limits.transactions_max as usize {
            out.push(reject(
                command,
                record.account,
                record.tx,
                RejectReason::TransactionsLimit,
                false,
            ));
            return TxCheck::Answered;
        }
        TxCheck::New
    }

    /// Stores the transaction's outcome and emits it.
    fn tx_finish(
        &mut self,
        mut record: TxRecord,
        outcome: Result<TxOutcome, RejectReason>,
        shortfall: Option<Shortfall>,
        out: &mut Out,
    ) {
        assert!(shortfall.is_none() || outcome == Err(RejectReason::InsufficientFunds));
        assert!(self.txs.len() < self.limits.transactions_max as usize);
        record.outcome = match outcome {
            Ok(applied) => applied,
            Err(reason) => TxOutcome::Rejected(reason),
        };
        let previous = self.tx_index.insert(record.tx, self.txs.len() as u32);
        assert!(previous.is_none());
        self.txs.push(record);
        let mut event = stored_outcome(&record);
        // A first answer is never a duplicate, and only it knows the balance it fell short of.
        match &mut event {
            EventKind::Rejected(r) => {
                r.duplicate = false;
                r.shortfall = shortfall;
            }
            EventKind::Ledger(l) => l.duplicate = false,
            _ => unreachable!("ledger outcome is a reject or a ledger event"),
        }
        out.push(event);
    }

    /// Amount and asset checks shared by deposits, withdrawals and transfers.
    fn check_amount(&self, asset: AssetId, amount: u64) -> Result<(), RejectReason> {
        if self.asset_ref(asset).is_none() {
            return Err(RejectReason::UnknownAsset);
        }
        if amount == 0 || amount > self.limits.supply_max {
            return Err(RejectReason::InvalidAmount);
        }
        Ok(())
    }

    pub(crate) fn deposit(
        &mut self,
        tx: TxId,
        account: AccountId,
        asset: AssetId,
        amount: u64,
        out: &mut Out,
    ) {
        let record = TxRecord {
            tx,
            kind: LedgerKind::Deposit,
            account,
            counterparty: 0,
            asset,
            amount,
            outcome: TxOutcome::Applied,
        };
        if let TxCheck::Answered = self.tx_check(&record, out) {
            return;
        }
        let outcome = self.check_amount(asset, amount).and_then(|()| {
            let supply = self.asset_ref(asset).map_or(0, |a| a.supply);
            if supply as u128 + amount as u128 > self.limits.supply_max as u128 {
                return Err(RejectReason::SupplyLimit);
            }
            if !self.account_creatable(account) {
                return Err(RejectReason::AccountsLimit);
            }
            Ok(())
        });
        if let Err(reason) = outcome {
            self.tx_finish(record, Err(reason), None, out);
            return;
        }
        let slot = match self.account_slot(account) {
            Some(slot) => slot,
            None => self.push_account(account),
        };
        if let Some(a) = self.assets[asset as usize].as_mut() {
            a.supply += amount;
        }
        self.change_balance(slot, asset, amount as i64, 0, BalanceReason::Deposit(tx), out);
        self.tx_finish(record, Ok(TxOutcome::Applied), None, out);
    }

    pub(crate) fn withdraw_request(
        &mut self,
        tx: TxId,
        account: AccountId,
        asset: AssetId,
        amount: u64,
        out: &mut Out,
    ) {
        let record = TxRecord {
            tx,
            kind: LedgerKind::WithdrawRequest,
            account,
            counterparty: 0,
            asset,
            amount,
            outcome: TxOutcome::WithdrawPending,
        };
        if let TxCheck::Answered = self.tx_check(&record, out) {
            return;
        }
        let mut shortfall = None;
        let checked = self.check_amount(asset, amount).and_then(|()| {
            let slot = self.account_slot(account).ok_or(RejectReason::UnknownAccount)?;
            shortfall = self.shortfall(slot, asset, amount);
            if shortfall.is_some() {
                return Err(RejectReason::InsufficientFunds);
            }
            Ok(slot)
        });
        match checked {
            Err(reason) => self.tx_finish(record, Err(reason), shortfall, out),
            Ok(slot) => {
                let delta = amount as i64;
                self.change_balance(
                    slot,
                    asset,
                    -delta,
                    delta,
                    BalanceReason::WithdrawHold(tx),
                    out,
                );
                self.tx_finish(record, Ok(TxOutcome::WithdrawPending), None, out);
            }
        }
    }

    /// Completes (`complete == true`) or cancels a pending withdrawal.
    pub(crate) fn withdraw_finish(&mut self, tx: TxId, complete: bool, out: &mut Out) {
        let (kind, command) = if complete {
            (LedgerKind::WithdrawComplete, CommandKind::WithdrawComplete)
        } else {
            (LedgerKind::WithdrawCancel, CommandKind::WithdrawCancel)
        };
        if tx == 0 {
            out.push(reject(command, 0, 0, RejectReason::InvalidTxId, false));
            return;
        }
        let found = self.tx_index.get(&tx).map(|&at| (at, *self.txs.get(at as usize)));
        let Some((at, record)) = found.filter(|(_, r)| {
            r.kind == LedgerKind::WithdrawRequest && !matches!(r.outcome, TxOutcome::Rejected(_))
        }) else {
            out.push(reject(command, 0, tx, RejectReason::WithdrawalNotFound, false));
            return;
        };
        let applied = |duplicate| {
            EventKind::Ledger(LedgerApplied {
                kind,
                tx,
                account: record.account,
                counterparty: 0,
                asset: record.asset,
                amount: record.amount,
                duplicate,
            })
        };
        let done_state =
            if complete { TxOutcome::WithdrawCompleted } else { TxOutcome::WithdrawCancelled };
        match record.outcome {
            TxOutcome::WithdrawPending => {}
            state if state == done_state => {
                out.push(applied(true));
                return;
            }
            _ => {
                out.push(reject(
                    command,
                    record.account,
                    tx,
                    RejectReason::WithdrawalNotPending,
                    false,
                ));
                return;
            }
        }
        let slot = self.account_slot(record.account).expect("withdrawal of a missing account");
        let amount = record.amount as i64;
        if complete {
            self.change_balance(
                slot,
                record.asset,
                0,
                -amount,
                BalanceReason::WithdrawComplete(tx),
                out,
            );
            let asset =
                self.assets[record.asset as usize].as_mut().expect("withdrawal of a missing asset");
            asset.supply =
                asset.supply.checked_sub(record.amount).expect("supply below a pending withdrawal");
        } else {
            self.change_balance(
                slot,
                record.asset,
                amount,
                -amount,
                BalanceReason::WithdrawCancel(tx),
                out,
            );
        }
        self.txs.get_mut(at as usize).outcome = done_state;
        out.push(applied(false));
    }

    /// `Command::Transfer`, whose fields are `command`'s.
    pub(crate) fn transfer(&mut self, command: &Command, out: &mut Out) {
        let Command::Transfer { tx, from, to, asset, amount, create_account } = *command else {
            unreachable!("transfer of {command:?}");
        };
        let record = TxRecord {
            tx,
            kind: LedgerKind::Transfer,
            account: from,
            counterparty: to,
            asset,
            amount,
            outcome: TxOutcome::Applied,
        };
        if let TxCheck::Answered = self.tx_check(&record, out) {
            return;
        }
        let mut shortfall = None;
        let checked = self.check_amount(asset, amount).and_then(|()| {
            if from == to {
                return Err(RejectReason::SameAccount);
            }
            let slot = self.account_slot(from).ok_or(RejectReason::UnknownAccount)?;
            if !create_account && self.account_slot(to).is_none() {
                return Err(RejectReason::UnknownReceiver);
            }
            shortfall = self.shortfall(slot, asset, amount);
            if shortfall.is_some() {
                return Err(RejectReason::InsufficientFunds);
            }
            if !self.account_creatable(to) {
                return Err(RejectReason::AccountsLimit);
            }
            Ok(slot)
        });
        match checked {
            Err(reason) => self.tx_finish(record, Err(reason), shortfall, out),
            Ok(from_slot) => {
                let to_slot = match self.account_slot(to) {
                    Some(slot) => slot,
                    None => self.push_account(to),
                };
                let delta = amount as i64;
                self.change_balance(
                    from_slot,
                    asset,
                    -delta,
                    0,
                    BalanceReason::TransferOut(tx),
                    out,
                );
                self.change_balance(to_slot, asset, delta, 0, BalanceReason::TransferIn(tx), out);
                self.tx_finish(record, Ok(TxOutcome::Applied), None, out);
            }
        }
    }
}

/// True when a repeat names the same transaction as the stored one: same account,
/// receiver, asset and amount (the kind is checked before). A transfer's
/// `create_account` is not part of it: it is not stored, and a repeat of a transfer that
/// took effect changes nothing either way.
fn same_params(stored: &TxRecord, repeat: &TxRecord) -> bool {
    assert_eq!(stored.tx, repeat.tx);
    stored.account == repeat.account
        && stored.counterparty == repeat.counterparty
        && stored.asset == repeat.asset
        && stored.amount == repeat.amount
}

/// The event a stored transaction answers with (as a duplicate).
fn stored_outcome(record: &TxRecord) -> EventKind {
    match record.outcome {
        TxOutcome::Rejected(reason) => {
            reject(command_of(record.kind), record.account, record.tx, reason, true)
        }
        _ => EventKind::Ledger(LedgerApplied {
            kind: record.kind,
            tx: record.tx,
            account: record.account,
            counterparty: record.counterparty,
            asset: record.asset,
            amount: record.amount,
            duplicate: true,
        }),
    }
}
