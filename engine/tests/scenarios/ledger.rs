//! Deposits, withdrawals, transfers, tx idempotency, and the balance log.

use bourse_engine::{
    BalanceLog, BalanceReason, Command, LedgerApplied, LedgerKind, RejectReason, Shortfall,
};

use crate::support::*;

fn deposit(tx: u64, account: u64, asset: u32, amount: u64) -> Command {
    Command::Deposit { tx, account, asset, amount }
}

fn withdraw(tx: u64, account: u64, asset: u32, amount: u64) -> Command {
    Command::WithdrawRequest { tx, account, asset, amount }
}

fn transfer(tx: u64, from: u64, to: u64, asset: u32, amount: u64) -> Command {
    Command::Transfer { tx, from, to, asset, amount, create_account: true }
}

/// Assets and markets, no funded accounts.
fn empty() -> Harness {
    Harness::with_limits(roomy_limits(), &[])
}

#[test]
fn deposit_creates_the_account_and_the_supply() {
    let mut h = empty();
    assert_eq!(h.ex.accounts(), vec![FEE], "only the fee account exists at first");
    assert!(h.ex.account_exists(FEE) && !h.ex.account_exists(ALICE));
    let events = h.run_ok(deposit(500, ALICE, BTC, 5_000));
    let applied = ledger_event(&events);
    assert_eq!(
        applied,
        LedgerApplied {
            kind: LedgerKind::Deposit,
            tx: 500,
            account: ALICE,
            counterparty: 0,
            asset: BTC,
            amount: 5_000,
            duplicate: false
        }
    );
    let b = balance_events(&events);
    assert_eq!(b.len(), 1);
    assert_eq!(
        (b[0].delta_available, b[0].delta_held, b[0].reason),
        (5_000, 0, BalanceReason::Deposit(500))
    );
    h.assert_bal(ALICE, BTC, 5_000, 0);
    assert_eq!(h.supply(BTC), 5_000);
    assert_eq!(h.ex.accounts(), vec![FEE, ALICE]);
    h.run_ok(deposit(501, ALICE, BTC, 1));
    h.run_ok(deposit(502, BOB, USDT, 7));
    assert_eq!(h.ex.accounts(), vec![FEE, ALICE, BOB], "creation order");
    assert_eq!(h.supply(BTC), 5_001);
    assert_eq!(
        h.ex.balances(ALICE),
        vec![(BTC, bourse_engine::Balance { available: 5_001, held: 0 })]
    );
}

#[test]
fn withdrawal_request_then_complete() {
    let mut h = empty();
    h.run_ok(deposit(1, ALICE, BTC, 5_000));
    let request = h.ledger_ok(withdraw(2, ALICE, BTC, 2_000));
    assert_eq!(
        (request.kind, request.account, request.amount),
        (LedgerKind::WithdrawRequest, ALICE, 2_000)
    );
    h.assert_bal(ALICE, BTC, 3_000, 2_000);
    assert_eq!(h.supply(BTC), 5_000, "a pending withdrawal is still supply");
    h.ledger_repeat(withdraw(2, ALICE, BTC, 2_000), request);
    h.assert_bal(ALICE, BTC, 3_000, 2_000);
    let complete = h.ledger_ok(Command::WithdrawComplete { tx: 2 });
    assert_eq!(
        (complete.kind, complete.tx, complete.account, complete.asset, complete.amount),
        (LedgerKind::WithdrawComplete, 2, ALICE, BTC, 2_000)
    );
    h.assert_bal(ALICE, BTC, 3_000, 0);
    assert_eq!(h.supply(BTC), 3_000);
    // The same step again is a duplicate; the other step is too late.
    h.ledger_repeat(Command::WithdrawComplete { tx: 2 }, complete);
    h.reject(Command::WithdrawCancel { tx: 2 }, RejectReason::WithdrawalNotPending);
    assert_eq!(h.supply(BTC), 3_000);
}

#[test]
fn withdrawal_request_then_cancel() {
    let mut h = empty();
    h.run_ok(deposit(1, ALICE, BTC, 5_000));
    h.ledger_ok(withdraw(2, ALICE, BTC, 1_000));
    let cancel = h.ledger_ok(Command::WithdrawCancel { tx: 2 });
    assert_eq!((cancel.kind, cancel.amount), (LedgerKind::WithdrawCancel, 1_000));
    h.assert_bal(ALICE, BTC, 5_000, 0);
    assert_eq!(h.supply(BTC), 5_000);
    h.ledger_repeat(Command::WithdrawCancel { tx: 2 }, cancel);
    h.reject(Command::WithdrawComplete { tx: 2 }, RejectReason::WithdrawalNotPending);
    h.assert_bal(ALICE, BTC, 5_000, 0);
}

#[test]
fn withdrawal_not_found() {
    let mut h = empty();
    h.run_ok(deposit(1, ALICE, BTC, 5_000));
    h.reject(Command::WithdrawComplete { tx: 999 }, RejectReason::WithdrawalNotFound);
    h.reject(Command::WithdrawCancel { tx: 999 }, RejectReason::WithdrawalNotFound);
    // A deposit's tx is not a withdrawal.
    h.reject(Command::WithdrawComplete { tx: 1 }, RejectReason::WithdrawalNotFound);
    // Nor is a withdrawal request that was refused (its reject is stored).
    h.reject_stored(withdraw(2, ALICE, BTC, 9_999), RejectReason::InsufficientFunds);
    h.reject(Command::WithdrawComplete { tx: 2 }, RejectReason::WithdrawalNotFound);
    h.reject(Command::WithdrawCancel { tx: 2 }, RejectReason::WithdrawalNotFound);
    h.reject(Command::WithdrawComplete { tx: 0 }, RejectReason::InvalidTxId);
    h.reject(Command::WithdrawCancel { tx: 0 }, RejectReason::InvalidTxId);
}

#[test]
fn withdrawal_rejects() {
    let mut h = empty();
    h.run_ok(deposit(1, ALICE, BTC, 5_000));
    // Funds held by an order are not available to withdraw.
    h.run_ok(deposit(2, ALICE, USDT, 1_000));
    h.rest(buy(ALICE, BTC_USDT, px(100), btc(6)));
    h.reject_stored(withdraw(3, ALICE, USDT, 401), RejectReason::InsufficientFunds);
    h.ledger_ok(withdraw(4, ALICE, USDT, 400));
    h.assert_bal(ALICE, USDT, 0, 1_000);
    h.reject_stored(withdraw(5, NOBODY, BTC, 1), RejectReason::UnknownAccount);
    h.reject_stored(withdraw(6, ALICE, NO_ASSET, 1), RejectReason::UnknownAsset);
    h.reject_stored(withdraw(7, ALICE, BTC, 0), RejectReason::InvalidAmount);
    h.reject(withdraw(0, ALICE, BTC, 1), RejectReason::InvalidTxId);
}

#[test]
fn transfer_moves_available_and_creates_the_receiver() {
    let mut h = empty();
    h.run_ok(deposit(1, ALICE, BTC, 5_000));
    let applied = h.ledger_ok(transfer(2, ALICE, BOB, BTC, 1_500));
    assert_eq!(
        applied,
        LedgerApplied {
            kind: LedgerKind::Transfer,
            tx: 2,
            account: ALICE,
            counterparty: BOB,
            asset: BTC,
            amount: 1_500,
            duplicate: false
        }
    );
    assert!(h.ex.account_exists(BOB));
    h.assert_bal(ALICE, BTC, 3_500, 0);
    h.assert_bal(BOB, BTC, 1_500, 0);
    assert_eq!(h.supply(BTC), 5_000);
    h.ledger_repeat(transfer(2, ALICE, BOB, BTC, 1_500), applied);
    h.assert_bal(BOB, BTC, 1_500, 0);
}

#[test]
fn transfer_rejects() {
    let mut h = empty();
    h.run_ok(deposit(1, ALICE, BTC, 50_000));
    h.rest(sell(ALICE, BTC_USDT, px(100), btc(2)));
    // 30_000 available, 20_000 held by the order: the held part cannot move.
    h.reject_stored(transfer(2, ALICE, BOB, BTC, 30_001), RejectReason::InsufficientFunds);
    h.reject_stored(transfer(3, ALICE, ALICE, BTC, 1), RejectReason::SameAccount);
    h.reject_stored(transfer(4, NOBODY, ALICE, BTC, 1), RejectReason::UnknownAccount);
    h.reject_stored(transfer(5, ALICE, BOB, NO_ASSET, 1), RejectReason::UnknownAsset);
    h.reject_stored(transfer(6, ALICE, BOB, BTC, 0), RejectReason::InvalidAmount);
    h.reject(transfer(0, ALICE, BOB, BTC, 1), RejectReason::InvalidTxId);
    assert!(!h.ex.account_exists(BOB), "a refused transfer creates no account");
    h.ledger_ok(transfer(7, ALICE, BOB, BTC, 30_000));
    h.assert_bal(ALICE, BTC, 0, 20_000);
    h.assert_bal(BOB, BTC, 30_000, 0);
}

#[test]
fn repeated_tx_returns_the_original_outcome_and_changes_nothing() {
    let mut h = empty();
    let original = h.ledger_ok(deposit(500, ALICE, BTC, 100));
    h.ledger_repeat(deposit(500, ALICE, BTC, 100), original);
    // A repeat with other fields is refused, not answered with the stored outcome.
    h.reject(deposit(500, BOB, ETH, 999), RejectReason::TxIdReusedWithDifferentParams);
    h.assert_bal(ALICE, BTC, 100, 0);
    assert!(!h.ex.account_exists(BOB));
    assert_eq!(h.supply(BTC), 100);
}

#[test]
fn stored_reject_is_returned_again_even_when_it_would_now_succeed() {
    let mut h = empty();
    h.run_ok(deposit(1, ALICE, BTC, 100));
    h.reject_stored(transfer(600, ALICE, BOB, BTC, 150), RejectReason::InsufficientFunds);
    h.run_ok(deposit(2, ALICE, BTC, 100));
    // Alice now has 200, but tx 600 already has an outcome.
    let events = h.run_unchanged(transfer(600, ALICE, BOB, BTC, 150));
    let again = only_reject(&events);
    assert_eq!(
        (again.reason, again.duplicate, again.tx),
        (RejectReason::InsufficientFunds, true, 600)
    );
    h.assert_bal(ALICE, BTC, 200, 0);
    // Also a stored deposit reject.
    h.reject_stored(deposit(601, ALICE, NO_ASSET, 5), RejectReason::UnknownAsset);
}

#[test]
fn tx_id_of_another_kind_conflicts_and_is_not_stored() {
    let mut h = empty();
    let original = h.ledger_ok(deposit(500, ALICE, BTC, 100));
    h.reject(transfer(500, ALICE, BOB, BTC, 1), RejectReason::TxIdConflict);
    h.reject(withdraw(500, ALICE, BTC, 1), RejectReason::TxIdConflict);
    h.ledger_repeat(deposit(500, ALICE, BTC, 100), original);
    let w = h.ledger_ok(withdraw(501, ALICE, BTC, 10));
    h.reject(deposit(501, ALICE, BTC, 1), RejectReason::TxIdConflict);
    h.reject(transfer(501, ALICE, BOB, BTC, 1), RejectReason::TxIdConflict);
    // A stored reject's id conflicts too.
    h.reject_stored(transfer(502, ALICE, ALICE, BTC, 1), RejectReason::SameAccount);
    h.reject(deposit(502, ALICE, BTC, 1), RejectReason::TxIdConflict);
    h.ledger_repeat(withdraw(501, ALICE, BTC, 10), w);
    // The conflict check comes after InvalidTxId and before the asset check.
    h.reject(transfer(500, ALICE, BOB, NO_ASSET, 0), RejectReason::TxIdConflict);
}

#[test]
fn invalid_tx_id_is_checked_first() {
    let mut h = empty();
    h.reject(deposit(0, ALICE, BTC, 1), RejectReason::InvalidTxId);
    h.reject(deposit(0, ALICE, NO_ASSET, 0), RejectReason::InvalidTxId);
    h.reject(withdraw(0, NOBODY, BTC, 1), RejectReason::InvalidTxId);
    h.reject(transfer(0, ALICE, ALICE, BTC, 1), RejectReason::InvalidTxId);
    assert!(!h.ex.account_exists(ALICE));
}

#[test]
fn balance_log_reconstructs_every_balance() {
    let mut h = empty();
    let mut log = BalanceLog::new(10_000);
    let mut record = |events: Vec<bourse_engine::Event>| log.record_all(&events);
    let mut tx = 100;
    for account in TRADERS {
        for (asset, amount) in [(BTC, FUND_BTC), (USDT, FUND_USDT), (ETH, FUND_ETH)] {
            tx += 1;
            record(h.run_ok(deposit(tx, account, asset, amount)));
        }
    }
    record(h.place_ok(sell(BOB, ETH_USDT, px(1_003), eth(3))).1);
    record(h.place_ok(buy(ALICE, ETH_USDT, px(1_010), eth(5))).1);
    record(h.place_ok(market_sell(CAROL, ETH_USDT, eth(1))).1);
    record(h.place_ok(market_buy(DAVE, BTC_USDT, 1_000)).1);
    record(h.run_ok(withdraw(900, DAVE, USDT, 5_000)));
    record(h.run_ok(transfer(901, ALICE, DAVE, ETH, 7)));
    record(h.run_ok(Command::WithdrawComplete { tx: 900 }));
    record(h.mass_cancel(ALICE, None));
    for account in h.ex.accounts() {
        for asset in [BTC, USDT, ETH] {
            let (available, held) = log
                .records(account)
                .filter(|r| r.change.asset == asset)
                .fold((0i64, 0i64), |(a, hd), r| {
                    (a + r.change.delta_available, hd + r.change.delta_held)
                });
            let balance = h.bal(account, asset);
            assert_eq!(
                (available, held),
                (balance.available as i64, balance.held as i64),
                "{account} {asset}"
            );
        }
        assert_eq!(log.dropped(account), 0);
    }
    assert!(h.bal(FEE, USDT).available > 0, "fees were logged too");
}

/// A tx id reused with other parameters is refused (TigerBeetle's
/// `exists_with_different_*`), changes nothing, and leaves the first outcome in place:
/// the same parameters still return it. Every tx-id command.
#[test]
fn a_reused_tx_id_with_other_parameters_is_refused() {
    let mut h = empty();
    let first = h.ledger_ok(deposit(1001, ALICE, USDT, 2_500_500));
    let reused = RejectReason::TxIdReusedWithDifferentParams;
    h.reject(deposit(1001, ALICE, USDT, 5), reused);
    h.reject(deposit(1001, BOB, USDT, 2_500_500), reused);
    h.reject(deposit(1001, ALICE, BTC, 2_500_500), reused);
    h.ledger_repeat(deposit(1001, ALICE, USDT, 2_500_500), first);

    let pending = h.ledger_ok(withdraw(1002, ALICE, USDT, 500));
    h.reject(withdraw(1002, ALICE, USDT, 501), reused);
    h.ledger_repeat(withdraw(1002, ALICE, USDT, 500), pending);

    let moved = h.ledger_ok(transfer(1003, ALICE, BOB, USDT, 100));
    h.reject(transfer(1003, ALICE, CAROL, USDT, 100), reused);
    h.reject(transfer(1003, BOB, ALICE, USDT, 100), reused);
    h.ledger_repeat(transfer(1003, ALICE, BOB, USDT, 100), moved);
    // The flag is not a parameter of the transfer that took effect.
    let existing = Command::Transfer {
        tx: 1003,
        from: ALICE,
        to: BOB,
        asset: USDT,
        amount: 100,
        create_account: false,
    };
    h.ledger_repeat(existing, moved);

    // A stored reject is not overwritten by a repeat with other parameters either.
    h.reject_stored(withdraw(1004, ALICE, USDT, 1 << 40), RejectReason::InsufficientFunds);
    h.reject(withdraw(1004, ALICE, USDT, 1), reused);
    h.assert_bal(ALICE, USDT, 2_500_500 - 500 - 100, 500);
    // Withdrawal steps name only the tx: nothing to differ in.
    h.ledger_ok(Command::WithdrawComplete { tx: 1002 });
}

/// An insufficient-funds reject says which asset, how much was needed and how much was
/// available: withdrawals, transfers, orders (the full hold) and amends (the extra hold).
#[test]
fn insufficient_funds_says_needed_and_available() {
    let mut h = empty();
    h.run_ok(deposit(1, ALICE, USDT, 1_000));
    let short = |asset, needed, available| Some(Shortfall { asset, needed, available });
    let r = h.reject_stored(withdraw(2, ALICE, USDT, 1_001), RejectReason::InsufficientFunds);
    assert_eq!(r.shortfall, short(USDT, 1_001, 1_000));
    let r = h.reject_stored(transfer(3, ALICE, BOB, USDT, 5_000), RejectReason::InsufficientFunds);
    assert_eq!(r.shortfall, short(USDT, 5_000, 1_000));
    // A buy of n BTC at 100 holds 100 * n USDT (withdrawal_rejects): 11 need 1_100.
    let r = h.reject_place(buy(ALICE, BTC_USDT, px(100), btc(11)), RejectReason::InsufficientFunds);
    assert_eq!(r.shortfall, short(USDT, 1_100, 1_000));
    let id = h.rest(buy(ALICE, BTC_USDT, px(100), btc(6)));
    h.assert_bal(ALICE, USDT, 400, 600);
    // Up to 11: 500 more to hold, 400 available.
    let order = bourse_engine::OrderRef::Id(id);
    let amend = Command::Amend { account: ALICE, order, price: 0, qty: btc(11) };
    let r = h.reject(amend, RejectReason::InsufficientFunds);
    assert_eq!(r.shortfall, short(USDT, 500, 400));
    // Every other reject carries none.
    let r = h.reject_stored(withdraw(4, ALICE, USDT, 0), RejectReason::InvalidAmount);
    assert_eq!(r.shortfall, None);
}

/// A transfer to an account that does not exist is refused unless it asks for the
/// receiver's creation; deposits still create their account.
#[test]
fn a_transfer_creates_its_receiver_only_when_asked() {
    let mut h = empty();
    h.run_ok(deposit(1, ALICE, BTC, 5_000));
    let to_nobody = |tx, create_account| Command::Transfer {
        tx,
        from: ALICE,
        to: NOBODY,
        asset: BTC,
        amount: 10,
        create_account,
    };
    h.reject_stored(to_nobody(2, false), RejectReason::UnknownReceiver);
    assert!(!h.ex.account_exists(NOBODY));
    h.ledger_ok(to_nobody(3, true));
    assert!(h.ex.account_exists(NOBODY));
    h.assert_bal(NOBODY, BTC, 10, 0);
    // Once it exists, a transfer without the flag reaches it.
    h.ledger_ok(to_nobody(4, false));
    h.assert_bal(NOBODY, BTC, 20, 0);
}
