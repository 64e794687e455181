//! Reference model of the bourse engine: small, slow and meant to be obviously correct.
//!
//! It was written only from `engine/README.md` (the semantics contract) and the engine's
//! public types, never from `engine/src/exchange.rs` or the engine's internal modules, so
//! that the differential test compares two independent readings of the same contract.
//!
//! Data structures are the plainest that work: the open orders are one `Vec` searched
//! linearly for the best maker by (price, arrival sequence), balances are a `BTreeMap`,
//! and every amount is a `u128` so no intermediate can overflow (products of three
//! bounded factors saturate, which can only make a "too large" check fail louder).
//!
//! The model emits the events whose content the README pins down: `Accepted`,
//! `Rejected`, `Amended`, `Trade`, `Done`, `Ledger`, `Admin` and `MassCancelled`, in the
//! order the README gives. It does not emit `Balance` or `Level` events: the
//! differential test compares balances and the book directly after every command, and
//! the property tests audit the engine's balance and level events against its state.
//!
//! # Interpretations of points the README leaves open
//!
//! Each is marked `INTERPRETATION` where it is implemented; the list is repeated here so
//! the lead can settle them in the README.
//!
//! 1. Order ids are consumed only by accepted orders (a rejected place gets none); a FOK
//!    that expires unfilled was accepted, so it consumes one.
//! 2. STP `Decrement` reduces the order's total quantity as well as its leaves (the
//!    decremented lots are neither filled nor open any more), so `qty == filled + leaves`
//!    holds for every open order, and a later amend's FIX-style total counts from there.
//!    A resting buy that was decremented keeps `reserve_buy(leaves, limit)`, like one
//!    that was filled; the excess goes back to available.
//! 3. An amend emits `Amended` first (like `Accepted` for a place), with `leaves_qty` the
//!    open quantity right after the amend and before any re-matching; trades and `Done`
//!    follow. An amend that cancels (new total at or below filled) emits only
//!    `Done(Cancelled)`, no `Amended`.
//! 4. An amend's `NotionalTooLarge` is checked on `notional(new_ticks, new_total_lots)`
//!    (as the README says) and on the reservation of the new *leaves*, which is what the
//!    order will hold (`reserve_buy(new_leaves, new_ticks)` for a buy,
//!    `new_leaves * lot_size` for a sell). (First written as the reservation of the new
//!    total, like a place of that total; the engine checks the leaves, which the README
//!    does not exclude; see `directed_amend_size_checks`.)
//! 5. `Rejected` ids: a place's reject carries its client id (no order id); a cancel or
//!    amend refused before its order was found carries what it named (`Id(x)`: x and 0;
//!    `Client(c)`: 0 and c), one refused after carries the found order's id and client
//!    id. `WithdrawComplete`/`WithdrawCancel` name no account: their rejects carry the
//!    withdrawal's account once it is found, else 0. Admin rejects carry 0; a transfer's
//!    carries the sender. (The README leaves these fields open; this matches the engine.)
//! 6. `TransactionsLimit` counts every stored transaction id, stored rejects included
//!    (they are remembered for idempotency too).
//! 7. A market buy that stops because the book ran out (no maker left at all) is
//!    `Expired`, even if it filled something and its remaining budget is zero; it is
//!    `Filled` only when a maker was there that its budget could not afford one lot of.
//! 8. Post-only "would take" means the price crosses the best opposite price, whoever's
//!    order that is (an own order counts).
//! 9. `NotionalTooLarge` also covers a sell (limit or market) whose base reservation,
//!    `lots * lot_size`, is above `supply_max` (the README names only the notional and a
//!    buy's reservation; the engine refuses such sells with `NotionalTooLarge` rather than
//!    `InsufficientFunds`). Market sells have no min-notional check.
//! 10. `SetMarketStatus` to the status the market already has is applied (no reject).
//! 11. A duplicate ledger command (`duplicate = true`) names the same account,
//!     receiver, asset and amount as the first (a transfer's `create_account` aside) and
//!     returns the stored event unchanged except for the flag and the shortfall (a
//!     duplicate carries none). A repeat naming other parameters is
//!     `TxIdReusedWithDifferentParams`, not stored.
//! 12. `OrderRef::Client(0)` names no order (0 means "none"): `UnknownOrder`.
//! 13. `DuplicateClientOrderId` applies to every place (IOC, FOK and market too), and
//!     only against the account's open orders; the order limits apply to GTC limit
//!     orders only, post-only included; `accounts_max` counts the fee account.
//! 14. The fee account is an ordinary account besides: it can deposit, trade (paying its
//!     fees to itself) and transfer.

#![allow(dead_code)] // Each test binary uses a different part of the model.

use std::cell::Cell;
use std::collections::BTreeMap;

use bourse_engine::{
    Accepted, AccountId, AdminApplied, Amended, AssetId, Balance, ClientOrderId, Command,
    CommandKind, Done, DoneReason, EventKind, LedgerApplied, LedgerKind, Limits, MarketId,
    MarketSpec, MarketStatus, OrderId, OrderRef, OrderType, PlaceOrder, RejectReason, Rejected,
    Shortfall, Side, StpMode, Symbol, TimeInForce, Trade, TradeId, TxId,
};

/// Basis points in one whole.
const BPS_ONE: u128 = 10_000;
/// Largest fee rate (100%), from the README.
const FEE_BPS_MAX: u32 = 10_000;
/// Largest asset scale, from the README.
const SCALE_MAX: u8 = 18;

/// `floor(notional * bps / 10_000)`, the only rounding in the contract.
fn fee(notional: u128, bps: u32) -> u128 {
    notional.saturating_mul(bps as u128) / BPS_ONE
}

/// A product of bounded factors; saturation only happens far above any `supply_max`.
fn mul3(a: u128, b: u128, c: u128) -> u128 {
    a.saturating_mul(b).saturating_mul(c)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bal {
    available: u128,
    held: u128,
}

#[derive(Clone, Debug)]
struct AssetM {
    scale: u8,
    symbol: Symbol,
    /// Deposits minus completed withdrawals.
    supply: u128,
}

#[derive(Clone, Debug)]
struct MarketM {
    spec: MarketSpec,
    status: MarketStatus,
    /// Quote minor units per (tick x lot).
    qptl: u128,
}

impl MarketM {
    fn notional(&self, ticks: u128, lots: u128) -> u128 {
        mul3(ticks, lots, self.qptl)
    }

    /// `N + fee(N, max(maker, taker))`: the worst case a buy of `lots` at `ticks` pays.
    fn reserve_buy(&self, ticks: u128, lots: u128) -> u128 {
        let n = self.notional(ticks, lots);
        let bps = self.spec.maker_fee_bps.max(self.spec.taker_fee_bps);
        n.saturating_add(fee(n, bps))
    }

    fn reserve_sell(&self, lots: u128) -> u128 {
        lots.saturating_mul(self.spec.lot_size as u128)
    }

    /// What a resting (or resting-to-be) limit order of `leaves` lots must hold.
    fn reserve_limit(&self, side: Side, ticks: u128, leaves: u128) -> u128 {
        match side {
            Side::Buy => self.reserve_buy(ticks, leaves),
            Side::Sell => self.reserve_sell(leaves),
        }
    }

    /// The asset an order of `side` holds: quote for a buy, base for a sell.
    fn held_asset(&self, side: Side) -> AssetId {
        match side {
            Side::Buy => self.spec.quote,
            Side::Sell => self.spec.base,
        }
    }
}

/// An order, open (in `Model::orders`) or executing as a taker.
#[derive(Clone, Debug)]
struct OrderM {
    id: OrderId,
    cid: ClientOrderId,
    account: AccountId,
    market: MarketId,
    side: Side,
    /// Limit price in ticks; 0 for market orders.
    ticks: u128,
    /// Total lots (fills included); unused by a market buy.
    total_lots: u128,
    leaves_lots: u128,
    filled_lots: u128,
    reserved: u128,
    post_only: bool,
    stp: StpMode,
    /// Arrival sequence for time priority: set when the order (re)joins its level.
    seq: u64,
}

/// An open order as the tests compare it with the engine's `OrderView`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderSnapshot {
    pub order_id: OrderId,
    pub client_order_id: ClientOrderId,
    pub account: AccountId,
    pub market: MarketId,
    pub side: Side,
    pub price: u64,
    pub qty: u64,
    pub leaves_qty: u64,
    pub filled_qty: u64,
    pub reserved: u64,
    pub post_only: bool,
    pub stp: StpMode,
}

/// One price level as the tests compare it with the engine's `DepthLevel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelSnapshot {
    pub price: u64,
    pub qty: u64,
    pub orders: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WithdrawalState {
    Pending,
    Completed,
    Cancelled,
}

#[derive(Clone, Copy, Debug)]
struct WithdrawalM {
    account: AccountId,
    asset: AssetId,
    amount: u128,
    state: WithdrawalState,
}

/// A remembered ledger transaction: its kind and the event it produced (Ledger or
/// Rejected, with `duplicate == false`).
#[derive(Clone, Copy, Debug)]
struct TxM {
    kind: LedgerKind,
    /// What the command named: account, receiver (0 but for transfers), asset, amount.
    params: (AccountId, AccountId, AssetId, u64),
    outcome: EventKind,
}

/// Why a taker stopped matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Its leaves reached 0.
    Exhausted,
    /// No maker left within its limit.
    NoLiquidity,
    /// Self-trade prevention stopped it (CancelTaker or CancelBoth).
    Stp,
    /// A market buy could not afford one lot at the best maker's price.
    Budget,
}

/// Per-command context of an order executing as a taker.
struct TakerM {
    order: OrderM,
    /// Limit in ticks; `None` for market orders.
    limit: Option<u128>,
    /// A market buy: bounded by its budget (= its `reserved`), not by lots.
    market_buy: bool,
    /// The last reduction of its leaves was an STP decrement, not a fill.
    last_was_decrement: bool,
}

#[derive(Clone, Debug)]
pub struct Model {
    limits: Limits,
    fee_account: AccountId,
    assets: BTreeMap<AssetId, AssetM>,
    markets: BTreeMap<MarketId, MarketM>,
    /// Accounts in creation order.
    accounts: Vec<AccountId>,
    balances: BTreeMap<(AccountId, AssetId), Bal>,
    /// Every open (resting) order, in no particular order.
    orders: Vec<OrderM>,
    next_order_id: OrderId,
    next_trade_id: TradeId,
    next_seq: u64,
    txs: BTreeMap<TxId, TxM>,
    withdrawals: BTreeMap<TxId, WithdrawalM>,
    /// Set where a check finds `InsufficientFunds`; `apply` moves it into the reject.
    shortfall: Cell<Option<Shortfall>>,
}

fn rejected(
    command: CommandKind,
    account: AccountId,
    order_id: OrderId,
    client_order_id: ClientOrderId,
    tx: TxId,
    reason: RejectReason,
) -> EventKind {
    EventKind::Rejected(Rejected {
        command,
        account,
        order_id,
        client_order_id,
        tx,
        reason,
        duplicate: false,
        shortfall: None,
    })
}

/// The ids a cancel or amend reject carries (INTERPRETATION 5).
fn ref_ids(order: OrderRef) -> (OrderId, ClientOrderId) {
    match order {
        OrderRef::Id(id) => (id, 0),
        OrderRef::Client(cid) => (0, cid),
    }
}

fn to_u64(value: u128) -> u64 {
    u64::try_from(value).expect("model value above u64")
}

impl Model {
    pub fn new(limits: Limits, fee_account: AccountId) -> Model {
        Model {
            limits,
            fee_account,
            assets: BTreeMap::new(),
            markets: BTreeMap::new(),
            // The fee account exists from the start.
            accounts: vec![fee_account],
            balances: BTreeMap::new(),
            orders: Vec::new(),
            next_order_id: 1,
            next_trade_id: 1,
            next_seq: 1,
            txs: BTreeMap::new(),
            withdrawals: BTreeMap::new(),
            shortfall: Cell::new(None),
        }
    }

    // ----- queries -------------------------------------------------------------------

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn fee_account(&self) -> AccountId {
        self.fee_account
    }

    pub fn accounts(&self) -> Vec<AccountId> {
        self.accounts.clone()
    }

    pub fn account_exists(&self, account: AccountId) -> bool {
        self.accounts.contains(&account)
    }

    pub fn asset_ids(&self) -> Vec<AssetId> {
        self.assets.keys().copied().collect()
    }

    pub fn market_ids(&self) -> Vec<MarketId> {
        self.markets.keys().copied().collect()
    }

    pub fn market_spec(&self, market: MarketId) -> Option<MarketSpec> {
        self.markets.get(&market).map(|m| m.spec)
    }

    pub fn market_status(&self, market: MarketId) -> Option<MarketStatus> {
        self.markets.get(&market).map(|m| m.status)
    }

    pub fn asset_supply(&self, asset: AssetId) -> Option<u64> {
        self.assets.get(&asset).map(|a| to_u64(a.supply))
    }

    pub fn balance(&self, account: AccountId, asset: AssetId) -> Balance {
        let bal = self.bal(account, asset);
        Balance { available: to_u64(bal.available), held: to_u64(bal.held) }
    }

    /// Open orders of `account`, ascending order id (as the engine lists them).
    pub fn open_orders(&self, account: AccountId) -> Vec<OrderSnapshot> {
        let mut list: Vec<OrderSnapshot> =
            self.orders.iter().filter(|o| o.account == account).map(|o| self.snapshot(o)).collect();
        list.sort_by_key(|o| o.order_id);
        list
    }

    /// Every open order, ascending order id.
    pub fn all_open_orders(&self) -> Vec<OrderSnapshot> {
        let mut list: Vec<OrderSnapshot> = self.orders.iter().map(|o| self.snapshot(o)).collect();
        list.sort_by_key(|o| o.order_id);
        list
    }

    pub fn order(&self, order_id: OrderId) -> Option<OrderSnapshot> {
        self.orders.iter().find(|o| o.id == order_id).map(|o| self.snapshot(o))
    }

    /// (bids best first, asks best first) of `market`, all levels.
    pub fn depth(&self, market: MarketId) -> (Vec<LevelSnapshot>, Vec<LevelSnapshot>) {
        let Some(m) = self.markets.get(&market) else { return (Vec::new(), Vec::new()) };
        let side_levels = |side: Side| {
            let mut levels: BTreeMap<u128, (u128, u32)> = BTreeMap::new();
            for o in self.orders.iter().filter(|o| o.market == market && o.side == side) {
                let level = levels.entry(o.ticks).or_default();
                level.0 += o.leaves_lots * m.spec.lot_size as u128;
                level.1 += 1;
            }
            let mut out: Vec<LevelSnapshot> = levels
                .into_iter()
                .map(|(ticks, (qty, orders))| LevelSnapshot {
                    price: to_u64(ticks * m.spec.tick_size as u128),
                    qty: to_u64(qty),
                    orders,
                })
                .collect();
            if side == Side::Buy {
                out.reverse();
            }
            out
        };
        (side_levels(Side::Buy), side_levels(Side::Sell))
    }

    fn snapshot(&self, o: &OrderM) -> OrderSnapshot {
        let m = &self.markets[&o.market];
        let lot = m.spec.lot_size as u128;
        OrderSnapshot {
            order_id: o.id,
            client_order_id: o.cid,
            account: o.account,
            market: o.market,
            side: o.side,
            price: to_u64(o.ticks * m.spec.tick_size as u128),
            qty: to_u64(o.total_lots * lot),
            leaves_qty: to_u64(o.leaves_lots * lot),
            filled_qty: to_u64(o.filled_lots * lot),
            reserved: to_u64(o.reserved),
            post_only: o.post_only,
            stp: o.stp,
        }
    }

    /// The model's own invariants, checked after every command: per asset, the sum of
    /// balances is the supply; per (account, asset), held is what open orders and
    /// pending withdrawals reserve; every open order is consistent.
    pub fn check_self(&self) -> Result<(), String> {
        let mut totals: BTreeMap<AssetId, u128> = BTreeMap::new();
        for ((_, asset), bal) in &self.balances {
            *totals.entry(*asset).or_default() += bal.available + bal.held;
        }
        for (asset, a) in &self.assets {
            let total = totals.get(asset).copied().unwrap_or(0);
            if total != a.supply {
                return Err(format!("asset {asset}: balances {total} != supply {}", a.supply));
            }
            if a.supply > self.limits.supply_max as u128 {
                return Err(format!("asset {asset}: supply above supply_max"));
            }
        }
        let mut reserved: BTreeMap<(AccountId, AssetId), u128> = BTreeMap::new();
        for o in &self.orders {
            let m = &self.markets[&o.market];
            *reserved.entry((o.account, m.held_asset(o.side))).or_default() += o.reserved;
            if o.leaves_lots == 0 || o.total_lots != o.leaves_lots + o.filled_lots {
                return Err(format!("order {} has bad quantities: {o:?}", o.id));
            }
            if o.reserved != m.reserve_limit(o.side, o.ticks, o.leaves_lots) {
                return Err(format!("order {} reserves {} for its leaves", o.id, o.reserved));
            }
        }
        for w in self.withdrawals.values().filter(|w| w.state == WithdrawalState::Pending) {
            *reserved.entry((w.account, w.asset)).or_default() += w.amount;
        }
        for (key, bal) in &self.balances {
            let expected = reserved.get(key).copied().unwrap_or(0);
            if bal.held != expected {
                return Err(format!("{key:?}: held {} != reserved {expected}", bal.held));
            }
        }
        for key in reserved.keys() {
            if !self.balances.contains_key(key) {
                return Err(format!("{key:?}: reservation without a balance"));
            }
        }
        Ok(())
    }

    // ----- balances ------------------------------------------------------------------

    fn bal(&self, account: AccountId, asset: AssetId) -> Bal {
        self.balances.get(&(account, asset)).copied().unwrap_or_default()
    }

    fn bal_mut(&mut self, account: AccountId, asset: AssetId) -> &mut Bal {
        self.balances.entry((account, asset)).or_default()
    }

    fn credit(&mut self, account: AccountId, asset: AssetId, amount: u128) {
        self.bal_mut(account, asset).available += amount;
    }

    fn debit(&mut self, account: AccountId, asset: AssetId, amount: u128) {
        let bal = self.bal_mut(account, asset);
        assert!(bal.available >= amount, "model debit below zero");
        bal.available -= amount;
    }

    /// available -> held.
    fn hold(&mut self, account: AccountId, asset: AssetId, amount: u128) {
        let bal = self.bal_mut(account, asset);
        assert!(bal.available >= amount, "model hold above available");
        bal.available -= amount;
        bal.held += amount;
    }

    /// held -> available.
    fn release(&mut self, account: AccountId, asset: AssetId, amount: u128) {
        let bal = self.bal_mut(account, asset);
        assert!(bal.held >= amount, "model release above held");
        bal.held -= amount;
        bal.available += amount;
    }

    /// held -> gone (spent on a trade or withdrawn).
    fn spend_held(&mut self, account: AccountId, asset: AssetId, amount: u128) {
        let bal = self.bal_mut(account, asset);
        assert!(bal.held >= amount, "model spend above held");
        bal.held -= amount;
    }

    fn add_account(&mut self, account: AccountId) {
        if !self.account_exists(account) {
            self.accounts.push(account);
        }
    }

    /// `InsufficientFunds` (noting the shortfall for `apply`) unless `account` has
    /// `needed` of `asset` available.
    fn short_of(
        &self,
        account: AccountId,
        asset: AssetId,
        needed: u128,
    ) -> Result<(), RejectReason> {
        let available = self.bal(account, asset).available;
        if needed <= available {
            return Ok(());
        }
        let needed = u64::try_from(needed).expect("needed above u64");
        let available = u64::try_from(available).expect("available above u64");
        self.shortfall.set(Some(Shortfall { asset, needed, available }));
        Err(RejectReason::InsufficientFunds)
    }

    fn accounts_full(&self) -> bool {
        self.accounts.len() >= self.limits.accounts_max as usize
    }

    // ----- apply ---------------------------------------------------------------------

    /// Applies one command; returns the comparable events it produced, in order.
    pub fn apply(&mut self, command: &Command) -> Vec<EventKind> {
        let mut out = Vec::new();
        match *command {
            Command::CreateAsset { asset, scale, symbol } => {
                out.push(self.create_asset(asset, scale, symbol))
            }
            Command::CreateMarket(spec) => out.push(self.create_market(spec)),
            Command::SetMarketStatus { market, status } => {
                out.push(self.set_market_status(market, status))
            }
            Command::Deposit { .. }
            | Command::WithdrawRequest { .. }
            | Command::Transfer { .. } => out.push(self.ledger(command)),
            Command::WithdrawComplete { tx } => out.push(self.withdraw_step(tx, true)),
            Command::WithdrawCancel { tx } => out.push(self.withdraw_step(tx, false)),
            Command::Place(place) => self.place(&place, &mut out),
            Command::Cancel { account, order } => self.cancel(account, order, &mut out),
            Command::Amend { account, order, price, qty } => {
                self.amend(account, order, price, qty, &mut out)
            }
            Command::MassCancel { account, market } => self.mass_cancel(account, market, &mut out),
        }
        let shortfall = self.shortfall.take();
        for event in &mut out {
            if let EventKind::Rejected(r) = event {
                if r.reason == RejectReason::InsufficientFunds && !r.duplicate {
                    r.shortfall = shortfall;
                    assert!(shortfall.is_some(), "InsufficientFunds without a shortfall");
                }
            }
        }
        if let Err(problem) = self.check_self() {
            panic!("model invariant broken after {command:?}: {problem}");
        }
        out
    }

    // ----- admin ---------------------------------------------------------------------

    fn create_asset(&mut self, asset: AssetId, scale: u8, symbol: Symbol) -> EventKind {
        let reject = |reason| rejected(CommandKind::CreateAsset, 0, 0, 0, 0, reason);
        if asset >= self.limits.assets_max {
            return reject(RejectReason::AssetsLimit);
        }
        if self.assets.contains_key(&asset) {
            return reject(RejectReason::AssetExists);
        }
        if scale > SCALE_MAX || !symbol.is_valid() {
            return reject(RejectReason::InvalidAsset);
        }
        self.assets.insert(asset, AssetM { scale, symbol, supply: 0 });
        EventKind::Admin(AdminApplied::AssetCreated { asset, scale, symbol })
    }

    fn create_market(&mut self, spec: MarketSpec) -> EventKind {
        let reject = |reason| rejected(CommandKind::CreateMarket, 0, 0, 0, 0, reason);
        if spec.market >= self.limits.markets_max {
            return reject(RejectReason::MarketsLimit);
        }
        if self.markets.contains_key(&spec.market) {
            return reject(RejectReason::MarketExists);
        }
        let (Some(base), Some(_)) = (self.assets.get(&spec.base), self.assets.get(&spec.quote))
        else {
            return reject(RejectReason::UnknownAsset);
        };
        let step = spec.tick_size as u128 * spec.lot_size as u128;
        let unit = 10u128.pow(base.scale as u32);
        let valid = spec.base != spec.quote
            && spec.tick_size != 0
            && spec.lot_size != 0
            && spec.maker_fee_bps <= FEE_BPS_MAX
            && spec.taker_fee_bps <= FEE_BPS_MAX
            && spec.symbol.is_valid()
            && step % unit == 0
            && step / unit <= self.limits.supply_max as u128;
        if !valid {
            return reject(RejectReason::InvalidMarket);
        }
        let qptl = step / unit;
        assert!(qptl >= 1);
        self.markets.insert(spec.market, MarketM { spec, status: MarketStatus::Open, qptl });
        EventKind::Admin(AdminApplied::MarketCreated { market: spec.market })
    }

    fn set_market_status(&mut self, market: MarketId, status: MarketStatus) -> EventKind {
        let Some(m) = self.markets.get_mut(&market) else {
            return rejected(CommandKind::SetMarketStatus, 0, 0, 0, 0, RejectReason::UnknownMarket);
        };
        // INTERPRETATION 10: setting the current status again is applied, not rejected.
        m.status = status;
        EventKind::Admin(AdminApplied::MarketStatus { market, status })
    }

    // ----- ledger --------------------------------------------------------------------

    fn ledger(&mut self, command: &Command) -> EventKind {
        let (kind, tx, account, params) = match *command {
            Command::Deposit { tx, account, asset, amount } => {
                (LedgerKind::Deposit, tx, account, (account, 0, asset, amount))
            }
            Command::WithdrawRequest { tx, account, asset, amount } => {
                (LedgerKind::WithdrawRequest, tx, account, (account, 0, asset, amount))
            }
            Command::Transfer { tx, from, to, asset, amount, .. } => {
                (LedgerKind::Transfer, tx, from, (from, to, asset, amount))
            }
            _ => unreachable!("not a ledger transaction"),
        };
        let reject = |reason| rejected(command.kind(), account, 0, 0, tx, reason);
        if tx == 0 {
            return reject(RejectReason::InvalidTxId);
        }
        if let Some(stored) = self.txs.get(&tx) {
            if stored.kind != kind {
                return reject(RejectReason::TxIdConflict);
            }
            // INTERPRETATION 11: the stored event for the same parameters only.
            if stored.params != params {
                return reject(RejectReason::TxIdReusedWithDifferentParams);
            }
            return match stored.outcome {
                EventKind::Ledger(applied) => {
                    EventKind::Ledger(LedgerApplied { duplicate: true, ..applied })
                }
                EventKind::Rejected(rej) => {
                    EventKind::Rejected(Rejected { duplicate: true, shortfall: None, ..rej })
                }
                other => unreachable!("stored outcome {other:?}"),
            };
        }
        // INTERPRETATION 6: stored rejects count towards the limit.
        if self.txs.len() >= self.limits.transactions_max as usize {
            return reject(RejectReason::TransactionsLimit);
        }
        let outcome = match *command {
            Command::Deposit { tx, account, asset, amount } => {
                self.deposit(tx, account, asset, amount)
            }
            Command::WithdrawRequest { tx, account, asset, amount } => {
                self.withdraw_request(tx, account, asset, amount)
            }
            Command::Transfer { tx, from, to, asset, amount, create_account } => {
                self.transfer(tx, from, to, asset, amount, create_account)
            }
            _ => unreachable!("not a ledger transaction"),
        };
        let event = match outcome {
            Ok(applied) => EventKind::Ledger(applied),
            Err(reason) => reject(reason),
        };
        self.txs.insert(tx, TxM { kind, params, outcome: event });
        event
    }

    /// UnknownAsset, then InvalidAmount (0 or above supply_max).
    fn check_asset_amount(&self, asset: AssetId, amount: u64) -> Result<(), RejectReason> {
        if !self.assets.contains_key(&asset) {
            return Err(RejectReason::UnknownAsset);
        }
        if amount == 0 || amount > self.limits.supply_max {
            return Err(RejectReason::InvalidAmount);
        }
        Ok(())
    }

    fn deposit(
        &mut self,
        tx: TxId,
        account: AccountId,
        asset: AssetId,
        amount: u64,
    ) -> Result<LedgerApplied, RejectReason> {
        self.check_asset_amount(asset, amount)?;
        let supply = self.assets[&asset].supply;
        if supply + amount as u128 > self.limits.supply_max as u128 {
            return Err(RejectReason::SupplyLimit);
        }
        if !self.account_exists(account) && self.accounts_full() {
            return Err(RejectReason::AccountsLimit);
        }
        self.add_account(account);
        self.credit(account, asset, amount as u128);
        self.assets.get_mut(&asset).expect("checked").supply += amount as u128;
        Ok(LedgerApplied {
            kind: LedgerKind::Deposit,
            tx,
            account,
            counterparty: 0,
            asset,
            amount,
            duplicate: false,
        })
    }

    fn withdraw_request(
        &mut self,
        tx: TxId,
        account: AccountId,
        asset: AssetId,
        amount: u64,
    ) -> Result<LedgerApplied, RejectReason> {
        self.check_asset_amount(asset, amount)?;
        if !self.account_exists(account) {
            return Err(RejectReason::UnknownAccount);
        }
        self.short_of(account, asset, amount as u128)?;
        self.hold(account, asset, amount as u128);
        let state = WithdrawalState::Pending;
        self.withdrawals.insert(tx, WithdrawalM { account, asset, amount: amount as u128, state });
        Ok(LedgerApplied {
            kind: LedgerKind::WithdrawRequest,
            tx,
            account,
            counterparty: 0,
            asset,
            amount,
            duplicate: false,
        })
    }

    fn transfer(
        &mut self,
        tx: TxId,
        from: AccountId,
        to: AccountId,
        asset: AssetId,
        amount: u64,
        create_account: bool,
    ) -> Result<LedgerApplied, RejectReason> {
        self.check_asset_amount(asset, amount)?;
        if from == to {
            return Err(RejectReason::SameAccount);
        }
        if !self.account_exists(from) {
            return Err(RejectReason::UnknownAccount);
        }
        if !create_account && !self.account_exists(to) {
            return Err(RejectReason::UnknownReceiver);
        }
        self.short_of(from, asset, amount as u128)?;
        if !self.account_exists(to) && self.accounts_full() {
            return Err(RejectReason::AccountsLimit);
        }
        self.add_account(to);
        self.debit(from, asset, amount as u128);
        self.credit(to, asset, amount as u128);
        Ok(LedgerApplied {
            kind: LedgerKind::Transfer,
            tx,
            account: from,
            counterparty: to,
            asset,
            amount,
            duplicate: false,
        })
    }

    /// WithdrawComplete (`complete`) or WithdrawCancel of the withdrawal `tx`.
    fn withdraw_step(&mut self, tx: TxId, complete: bool) -> EventKind {
        let (command, kind, target) = if complete {
            (
                CommandKind::WithdrawComplete,
                LedgerKind::WithdrawComplete,
                WithdrawalState::Completed,
            )
        } else {
            (CommandKind::WithdrawCancel, LedgerKind::WithdrawCancel, WithdrawalState::Cancelled)
        };
        // INTERPRETATION 5: no account named; the withdrawal's once it is found.
        let reject = |account, reason| rejected(command, account, 0, 0, tx, reason);
        if tx == 0 {
            return reject(0, RejectReason::InvalidTxId);
        }
        let Some(w) = self.withdrawals.get(&tx).copied() else {
            return reject(0, RejectReason::WithdrawalNotFound);
        };
        let applied = LedgerApplied {
            kind,
            tx,
            account: w.account,
            counterparty: 0,
            asset: w.asset,
            amount: to_u64(w.amount),
            duplicate: false,
        };
        if w.state == target {
            return EventKind::Ledger(LedgerApplied { duplicate: true, ..applied });
        }
        if w.state != WithdrawalState::Pending {
            return reject(w.account, RejectReason::WithdrawalNotPending);
        }
        if complete {
            self.spend_held(w.account, w.asset, w.amount);
            self.assets.get_mut(&w.asset).expect("withdrawal asset").supply -= w.amount;
        } else {
            self.release(w.account, w.asset, w.amount);
        }
        self.withdrawals.get_mut(&tx).expect("found above").state = target;
        EventKind::Ledger(applied)
    }

    // ----- orders: place -------------------------------------------------------------

    /// Shape rules (InvalidOrder) from the README.
    fn shape_ok(p: &PlaceOrder) -> bool {
        match p.order_type {
            OrderType::Limit => p.quote_budget == 0 && (!p.post_only || p.tif == TimeInForce::Gtc),
            OrderType::Market => {
                let common = p.tif == TimeInForce::Ioc && p.price == 0 && !p.post_only;
                let per_side = match p.side {
                    Side::Buy => p.qty == 0 && p.quote_budget > 0 && p.stp != StpMode::Decrement,
                    Side::Sell => p.qty > 0 && p.quote_budget == 0,
                };
                common && per_side
            }
        }
    }

    fn open_count(&self, pred: impl Fn(&OrderM) -> bool) -> usize {
        self.orders.iter().filter(|o| pred(o)).count()
    }

    fn cid_in_use(&self, account: AccountId, cid: ClientOrderId) -> bool {
        cid != 0 && self.orders.iter().any(|o| o.account == account && o.cid == cid)
    }

    /// Would a limit order of `side` at `ticks` cross the opposite side of `market`?
    /// INTERPRETATION 8: any resting order counts, the account's own included.
    fn crosses(&self, market: MarketId, side: Side, ticks: u128) -> bool {
        self.orders.iter().any(|o| {
            o.market == market
                && o.side == side.opposite()
                && match side {
                    Side::Buy => o.ticks <= ticks,
                    Side::Sell => o.ticks >= ticks,
                }
        })
    }

    /// Runs the place checks in the README's order; returns (ticks, lots, reservation).
    fn validate_place(&self, p: &PlaceOrder) -> Result<(u128, u128, u128), RejectReason> {
        use RejectReason as R;
        let m = self.markets.get(&p.market).ok_or(R::UnknownMarket)?;
        if m.status == MarketStatus::Halted {
            return Err(R::MarketHalted);
        }
        if !self.account_exists(p.account) {
            return Err(R::UnknownAccount);
        }
        if !Self::shape_ok(p) {
            return Err(R::InvalidOrder);
        }
        let limit = p.order_type == OrderType::Limit;
        let market_buy = !limit && p.side == Side::Buy;
        let spec = &m.spec;
        let mut ticks = 0u128;
        if limit {
            if p.price % spec.tick_size != 0 {
                return Err(R::PriceNotOnTick);
            }
            ticks = (p.price / spec.tick_size) as u128;
            if ticks == 0 || ticks > self.limits.price_ticks_max as u128 {
                return Err(R::InvalidPrice);
            }
        }
        let mut lots = 0u128;
        if !market_buy {
            if p.qty % spec.lot_size != 0 {
                return Err(R::QtyNotOnLot);
            }
            lots = (p.qty / spec.lot_size) as u128;
            if lots == 0 || lots > self.limits.qty_lots_max as u128 {
                return Err(R::InvalidQty);
            }
        }
        let supply_max = self.limits.supply_max as u128;
        if market_buy && p.quote_budget as u128 > supply_max {
            return Err(R::InvalidAmount);
        }
        let notional = m.notional(ticks, lots);
        // INTERPRETATION 9: a sell's base reservation is bounded like a buy's.
        let sell_too_large = p.side == Side::Sell && m.reserve_sell(lots) > supply_max;
        if sell_too_large && !limit {
            return Err(R::NotionalTooLarge);
        }
        if limit {
            let too_large = notional > supply_max
                || sell_too_large
                || (p.side == Side::Buy && m.reserve_buy(ticks, lots) > supply_max);
            if too_large {
                return Err(R::NotionalTooLarge);
            }
            if notional < spec.min_notional as u128 {
                return Err(R::BelowMinNotional);
            }
        }
        // INTERPRETATION 9: market sells have no min-notional check.
        if market_buy && p.quote_budget < spec.min_notional {
            return Err(R::BelowMinNotional);
        }
        if self.cid_in_use(p.account, p.client_order_id) {
            return Err(R::DuplicateClientOrderId);
        }
        if limit && p.tif == TimeInForce::Gtc {
            let per_account = self.open_count(|o| o.account == p.account);
            if per_account >= self.limits.orders_per_account_max as usize {
                return Err(R::OrdersPerAccountLimit);
            }
            if self.open_count(|o| o.market == p.market)
                >= self.limits.orders_per_market_max as usize
            {
                return Err(R::OrdersPerMarketLimit);
            }
            if self.orders.len() >= self.limits.orders_max as usize {
                return Err(R::OrdersLimit);
            }
        }
        let reserve = if market_buy {
            p.quote_budget as u128
        } else if limit {
            m.reserve_limit(p.side, ticks, lots)
        } else {
            m.reserve_sell(lots)
        };
        self.short_of(p.account, m.held_asset(p.side), reserve)?;
        if p.post_only && self.crosses(p.market, p.side, ticks) {
            return Err(R::PostOnlyWouldTake);
        }
        Ok((ticks, lots, reserve))
    }

    fn place(&mut self, p: &PlaceOrder, out: &mut Vec<EventKind>) {
        let (ticks, lots, reserve) = match self.validate_place(p) {
            Ok(v) => v,
            Err(reason) => {
                out.push(rejected(CommandKind::Place, p.account, 0, p.client_order_id, 0, reason));
                return;
            }
        };
        // INTERPRETATION 1: ids are consumed by accepted orders only.
        let id = self.next_order_id;
        self.next_order_id += 1;
        out.push(EventKind::Accepted(Accepted {
            order_id: id,
            client_order_id: p.client_order_id,
            account: p.account,
            market: p.market,
            side: p.side,
            order_type: p.order_type,
            tif: p.tif,
            post_only: p.post_only,
            stp: p.stp,
            price: p.price,
            qty: p.qty,
            quote_budget: p.quote_budget,
        }));
        let limit = p.order_type == OrderType::Limit;
        let order = OrderM {
            id,
            cid: p.client_order_id,
            account: p.account,
            market: p.market,
            side: p.side,
            ticks,
            total_lots: lots,
            leaves_lots: lots,
            filled_lots: 0,
            reserved: reserve,
            post_only: p.post_only,
            stp: p.stp,
            seq: 0,
        };
        if p.tif == TimeInForce::Fok && !self.fok_feasible(&order) {
            // Accepted, then expired with nothing filled and no balance change at all.
            out.push(self.done_event(&order, DoneReason::Expired));
            return;
        }
        let asset = self.markets[&p.market].held_asset(p.side);
        self.hold(p.account, asset, reserve);
        let taker = TakerM {
            order,
            limit: limit.then_some(ticks),
            market_buy: !limit && p.side == Side::Buy,
            last_was_decrement: false,
        };
        let rests = limit && p.tif == TimeInForce::Gtc;
        self.execute_taker(taker, rests, out);
    }

    /// FOK feasibility: in matching order, only other accounts' lots within the limit
    /// count; an own order stops the count unless the mode is CancelMaker (which skips).
    fn fok_feasible(&self, order: &OrderM) -> bool {
        let mut makers: Vec<&OrderM> = self
            .orders
            .iter()
            .filter(|o| o.market == order.market && o.side == order.side.opposite())
            .filter(|o| Self::within_limit(order.side, Some(order.ticks), o.ticks))
            .collect();
        makers.sort_by_key(|o| Self::priority_key(o));
        let mut available = 0u128;
        for maker in makers {
            if maker.account == order.account {
                if order.stp == StpMode::CancelMaker {
                    continue;
                }
                break;
            }
            available += maker.leaves_lots;
            if available >= order.leaves_lots {
                return true;
            }
        }
        false
    }

    // ----- matching ------------------------------------------------------------------

    /// Sort key of a maker: better price first, then older first.
    fn priority_key(o: &OrderM) -> (i128, u64) {
        let price = o.ticks as i128;
        match o.side {
            Side::Buy => (-price, o.seq),
            Side::Sell => (price, o.seq),
        }
    }

    /// Can a taker of `taker_side` with `limit` trade with a maker at `maker_ticks`?
    fn within_limit(taker_side: Side, limit: Option<u128>, maker_ticks: u128) -> bool {
        match (limit, taker_side) {
            (None, _) => true,
            (Some(limit), Side::Buy) => maker_ticks <= limit,
            (Some(limit), Side::Sell) => maker_ticks >= limit,
        }
    }

    /// Index in `orders` of the best maker for `taker`, if one is within its limit.
    fn best_maker(&self, taker: &TakerM) -> Option<usize> {
        let t = &taker.order;
        let best = self
            .orders
            .iter()
            .enumerate()
            .filter(|(_, o)| o.market == t.market && o.side == t.side.opposite())
            .min_by_key(|(_, o)| Self::priority_key(o))?;
        Self::within_limit(t.side, taker.limit, best.1.ticks).then_some(best.0)
    }

    /// Matches `taker`, then finishes it: it rests (`rests`, with leaves) or is done.
    fn execute_taker(&mut self, mut taker: TakerM, rests: bool, out: &mut Vec<EventKind>) {
        let stop = self.match_taker(&mut taker, out);
        let m = self.markets[&taker.order.market].clone();
        let asset = m.held_asset(taker.order.side);
        let reason = match stop {
            Stop::Exhausted if taker.last_was_decrement => DoneReason::SelfTradePrevented,
            Stop::Exhausted => DoneReason::Filled,
            Stop::Stp => DoneReason::SelfTradePrevented,
            Stop::Budget if taker.order.filled_lots > 0 => DoneReason::Filled,
            // INTERPRETATION 7: a market buy that ran out of book is Expired.
            Stop::Budget | Stop::NoLiquidity if !rests => DoneReason::Expired,
            Stop::Budget | Stop::NoLiquidity => {
                let o = &mut taker.order;
                let keep = m.reserve_limit(o.side, o.ticks, o.leaves_lots);
                assert!(keep <= o.reserved, "model: resting reservation grew");
                let excess = o.reserved - keep;
                o.reserved = keep;
                o.seq = self.next_seq;
                self.next_seq += 1;
                let (account, order) = (o.account, o.clone());
                self.release(account, asset, excess);
                self.orders.push(order);
                return;
            }
        };
        let o = &taker.order;
        self.release(o.account, asset, o.reserved);
        out.push(self.done_event(o, reason));
    }

    fn match_taker(&mut self, taker: &mut TakerM, out: &mut Vec<EventKind>) -> Stop {
        loop {
            if !taker.market_buy && taker.order.leaves_lots == 0 {
                return Stop::Exhausted;
            }
            let Some(mi) = self.best_maker(taker) else { return Stop::NoLiquidity };
            if self.orders[mi].account == taker.order.account {
                match taker.order.stp {
                    StpMode::CancelTaker => return Stop::Stp,
                    StpMode::CancelMaker => {
                        self.remove_maker(mi, DoneReason::SelfTradePrevented, out);
                    }
                    StpMode::CancelBoth => {
                        self.remove_maker(mi, DoneReason::SelfTradePrevented, out);
                        return Stop::Stp;
                    }
                    StpMode::Decrement => self.decrement(taker, mi, out),
                }
                continue;
            }
            let maker_leaves = self.orders[mi].leaves_lots;
            let lots = if taker.market_buy {
                self.affordable_lots(taker, self.orders[mi].ticks, maker_leaves)
            } else {
                taker.order.leaves_lots.min(maker_leaves)
            };
            if lots == 0 {
                assert!(taker.market_buy);
                return Stop::Budget;
            }
            self.fill(taker, mi, lots, out);
            taker.last_was_decrement = false;
        }
    }

    /// The most lots (at most `cap`) a market buy's remaining budget pays for at
    /// `ticks`, its taker fee included: a binary search over a monotone cost.
    fn affordable_lots(&self, taker: &TakerM, ticks: u128, cap: u128) -> u128 {
        let m = &self.markets[&taker.order.market];
        let budget = taker.order.reserved;
        let cost = |lots: u128| {
            let n = m.notional(ticks, lots);
            n.saturating_add(fee(n, m.spec.taker_fee_bps))
        };
        let (mut lo, mut hi) = (0u128, cap);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if cost(mid) <= budget {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// STP Decrement: both lose `min(leaves)` lots without a trade (INTERPRETATION 2).
    fn decrement(&mut self, taker: &mut TakerM, mi: usize, out: &mut Vec<EventKind>) {
        let lots = taker.order.leaves_lots.min(self.orders[mi].leaves_lots);
        assert!(lots > 0 && !taker.market_buy);
        taker.order.leaves_lots -= lots;
        taker.order.total_lots -= lots;
        taker.last_was_decrement = true;
        let maker = &mut self.orders[mi];
        maker.leaves_lots -= lots;
        maker.total_lots -= lots;
        if maker.leaves_lots == 0 {
            self.remove_maker(mi, DoneReason::SelfTradePrevented, out);
        } else {
            self.trim_maker(mi);
        }
    }

    /// A resting buy keeps `reserve_buy(leaves, limit)`; the rest goes back.
    fn trim_maker(&mut self, mi: usize) {
        let o = &self.orders[mi];
        let m = &self.markets[&o.market];
        let keep = m.reserve_limit(o.side, o.ticks, o.leaves_lots);
        assert!(keep <= o.reserved, "model: maker reservation grew");
        let (excess, account, asset) = (o.reserved - keep, o.account, m.held_asset(o.side));
        self.orders[mi].reserved = keep;
        self.release(account, asset, excess);
    }

    /// Takes a maker off the book as done, releasing what it still holds.
    fn remove_maker(&mut self, mi: usize, reason: DoneReason, out: &mut Vec<EventKind>) {
        let o = self.orders.remove(mi);
        let asset = self.markets[&o.market].held_asset(o.side);
        self.release(o.account, asset, o.reserved);
        out.push(self.done_event(&o, reason));
    }

    /// One trade of `lots` at the maker's price, settled per the README.
    fn fill(&mut self, taker: &mut TakerM, mi: usize, lots: u128, out: &mut Vec<EventKind>) {
        let m = self.markets[&taker.order.market].clone();
        let maker = self.orders[mi].clone();
        let notional = m.notional(maker.ticks, lots);
        let qty = lots * m.spec.lot_size as u128;
        let maker_fee = fee(notional, m.spec.maker_fee_bps);
        let taker_fee = fee(notional, m.spec.taker_fee_bps);
        let trade_id = self.next_trade_id;
        self.next_trade_id += 1;
        out.push(EventKind::Trade(Trade {
            trade_id,
            market: maker.market,
            price: to_u64(maker.ticks * m.spec.tick_size as u128),
            qty: to_u64(qty),
            taker_side: taker.order.side,
            maker_order_id: maker.id,
            taker_order_id: taker.order.id,
            maker_client_order_id: maker.cid,
            taker_client_order_id: taker.order.cid,
            maker_account: maker.account,
            taker_account: taker.order.account,
            maker_fee: to_u64(maker_fee),
            taker_fee: to_u64(taker_fee),
        }));
        let (buyer, seller, buyer_fee, seller_fee) = match taker.order.side {
            Side::Buy => (taker.order.account, maker.account, taker_fee, maker_fee),
            Side::Sell => (maker.account, taker.order.account, maker_fee, taker_fee),
        };
        // The buyer pays notional + fee out of held and receives the base; the seller
        // gives the held base and receives notional - fee; the fee account gets both fees.
        self.spend_held(buyer, m.spec.quote, notional + buyer_fee);
        self.credit(buyer, m.spec.base, qty);
        self.spend_held(seller, m.spec.base, qty);
        self.credit(seller, m.spec.quote, notional - seller_fee);
        self.credit(self.fee_account, m.spec.quote, buyer_fee + seller_fee);
        let consumed = |side: Side, fee: u128| match side {
            Side::Buy => notional + fee,
            Side::Sell => qty,
        };
        let t = &mut taker.order;
        let taker_consumed = consumed(t.side, taker_fee);
        assert!(t.reserved >= taker_consumed, "model: taker reservation short");
        t.reserved -= taker_consumed;
        t.filled_lots += lots;
        if !taker.market_buy {
            t.leaves_lots -= lots;
        }
        let mk = &mut self.orders[mi];
        let maker_consumed = consumed(mk.side, maker_fee);
        assert!(mk.reserved >= maker_consumed, "model: maker reservation short");
        mk.reserved -= maker_consumed;
        mk.filled_lots += lots;
        mk.leaves_lots -= lots;
        if mk.leaves_lots == 0 {
            self.remove_maker(mi, DoneReason::Filled, out);
        } else {
            self.trim_maker(mi);
        }
    }

    fn done_event(&self, o: &OrderM, reason: DoneReason) -> EventKind {
        let lot = self.markets[&o.market].spec.lot_size as u128;
        EventKind::Done(Done {
            order_id: o.id,
            client_order_id: o.cid,
            account: o.account,
            market: o.market,
            side: o.side,
            reason,
            filled_qty: to_u64(o.filled_lots * lot),
        })
    }

    // ----- orders: cancel, amend, mass cancel ----------------------------------------

    /// Index of the account's open order named by `order`.
    fn find_order(&self, account: AccountId, order: OrderRef) -> Option<usize> {
        self.orders.iter().position(|o| {
            o.account == account
                && match order {
                    OrderRef::Id(id) => o.id == id,
                    OrderRef::Client(cid) => cid != 0 && o.cid == cid,
                }
        })
    }

    fn cancel(&mut self, account: AccountId, order: OrderRef, out: &mut Vec<EventKind>) {
        let (order_id, cid) = ref_ids(order);
        let reject = |reason| rejected(CommandKind::Cancel, account, order_id, cid, 0, reason);
        if !self.account_exists(account) {
            out.push(reject(RejectReason::UnknownAccount));
            return;
        }
        let Some(index) = self.find_order(account, order) else {
            out.push(reject(RejectReason::UnknownOrder));
            return;
        };
        // Cancels work on halted markets too.
        self.remove_maker(index, DoneReason::Cancelled, out);
    }

    fn mass_cancel(
        &mut self,
        account: AccountId,
        market: Option<MarketId>,
        out: &mut Vec<EventKind>,
    ) {
        let reject = |reason| rejected(CommandKind::MassCancel, account, 0, 0, 0, reason);
        if !self.account_exists(account) {
            out.push(reject(RejectReason::UnknownAccount));
            return;
        }
        if market.is_some_and(|id| !self.markets.contains_key(&id)) {
            out.push(reject(RejectReason::UnknownMarket));
            return;
        }
        let mut ids: Vec<OrderId> = self
            .orders
            .iter()
            .filter(|o| o.account == account && market.is_none_or(|id| o.market == id))
            .map(|o| o.id)
            .collect();
        ids.sort_unstable();
        for id in &ids {
            let index = self.orders.iter().position(|o| o.id == *id).expect("listed above");
            self.remove_maker(index, DoneReason::Cancelled, out);
        }
        let count = u32::try_from(ids.len()).expect("count fits");
        out.push(EventKind::MassCancelled { account, market, count });
    }

    fn amend(
        &mut self,
        account: AccountId,
        order: OrderRef,
        price: u64,
        qty: u64,
        out: &mut Vec<EventKind>,
    ) {
        let plan = match self.validate_amend(account, order, price, qty) {
            Ok(plan) => plan,
            Err(reason) => {
                // INTERPRETATION 5: the found order's ids, else what the command named.
                let found = self
                    .find_order(account, order)
                    .map(|i| (self.orders[i].id, self.orders[i].cid));
                let (order_id, cid) = match (reason, found) {
                    (RejectReason::UnknownAccount | RejectReason::UnknownOrder, _) | (_, None) => {
                        ref_ids(order)
                    }
                    (_, Some(ids)) => ids,
                };
                out.push(rejected(CommandKind::Amend, account, order_id, cid, 0, reason));
                return;
            }
        };
        match plan {
            AmendPlan::Cancel { index } => self.remove_maker(index, DoneReason::Cancelled, out),
            AmendPlan::Change { index, ticks, total_lots, reserve } => {
                self.apply_amend(index, ticks, total_lots, reserve, out)
            }
        }
    }

    /// The amend checks in the README's order.
    fn validate_amend(
        &self,
        account: AccountId,
        order: OrderRef,
        price: u64,
        qty: u64,
    ) -> Result<AmendPlan, RejectReason> {
        use RejectReason as R;
        if !self.account_exists(account) {
            return Err(R::UnknownAccount);
        }
        let index = self.find_order(account, order).ok_or(R::UnknownOrder)?;
        let o = &self.orders[index];
        let m = &self.markets[&o.market];
        if m.status == MarketStatus::Halted {
            return Err(R::MarketHalted);
        }
        if price == 0 && qty == 0 {
            return Err(R::AmendNoChange);
        }
        let mut ticks = o.ticks;
        if price != 0 {
            if price % m.spec.tick_size != 0 {
                return Err(R::PriceNotOnTick);
            }
            ticks = (price / m.spec.tick_size) as u128;
            if ticks > self.limits.price_ticks_max as u128 {
                return Err(R::InvalidPrice);
            }
        }
        let mut total_lots = o.total_lots;
        if qty != 0 {
            if qty % m.spec.lot_size != 0 {
                return Err(R::QtyNotOnLot);
            }
            total_lots = (qty / m.spec.lot_size) as u128;
            if total_lots > self.limits.qty_lots_max as u128 {
                return Err(R::InvalidQty);
            }
        }
        if ticks == o.ticks && total_lots == o.total_lots {
            return Err(R::AmendNoChange);
        }
        if total_lots <= o.filled_lots {
            return Ok(AmendPlan::Cancel { index });
        }
        // INTERPRETATION 4: the notional of the new total, the reservation of the leaves.
        let notional = m.notional(ticks, total_lots);
        let supply_max = self.limits.supply_max as u128;
        let reserve = m.reserve_limit(o.side, ticks, total_lots - o.filled_lots);
        if notional > supply_max || reserve > supply_max {
            return Err(R::NotionalTooLarge);
        }
        if notional < m.spec.min_notional as u128 {
            return Err(R::BelowMinNotional);
        }
        if o.post_only && self.crosses(o.market, o.side, ticks) {
            return Err(R::PostOnlyWouldTake);
        }
        let extra = reserve.saturating_sub(o.reserved);
        if extra > 0 {
            self.short_of(account, m.held_asset(o.side), extra)?;
        }
        Ok(AmendPlan::Change { index, ticks, total_lots, reserve })
    }

    fn apply_amend(
        &mut self,
        index: usize,
        ticks: u128,
        total_lots: u128,
        reserve: u128,
        out: &mut Vec<EventKind>,
    ) {
        let old = self.orders[index].clone();
        let m = self.markets[&old.market].clone();
        let asset = m.held_asset(old.side);
        let priority_kept = ticks == old.ticks && total_lots < old.total_lots;
        let leaves_lots = total_lots - old.filled_lots;
        // INTERPRETATION 3: Amended first, with the leaves right after the amend.
        out.push(EventKind::Amended(Amended {
            order_id: old.id,
            client_order_id: old.cid,
            account: old.account,
            market: old.market,
            side: old.side,
            price: to_u64(ticks * m.spec.tick_size as u128),
            qty: to_u64(total_lots * m.spec.lot_size as u128),
            leaves_qty: to_u64(leaves_lots * m.spec.lot_size as u128),
            priority_kept,
        }));
        if reserve > old.reserved {
            self.hold(old.account, asset, reserve - old.reserved);
        } else {
            self.release(old.account, asset, old.reserved - reserve);
        }
        if priority_kept {
            let o = &mut self.orders[index];
            o.total_lots = total_lots;
            o.leaves_lots = leaves_lots;
            o.reserved = reserve;
            return;
        }
        // Off the book, then matched as a taker with its own STP mode; what is left rests
        // at the back of its new level.
        let mut order = self.orders.remove(index);
        order.ticks = ticks;
        order.total_lots = total_lots;
        order.leaves_lots = leaves_lots;
        order.reserved = reserve;
        let taker =
            TakerM { order, limit: Some(ticks), market_buy: false, last_was_decrement: false };
        self.execute_taker(taker, true, out);
    }
}

/// What a valid amend does.
enum AmendPlan {
    /// New total at or below the filled quantity: the order is cancelled.
    Cancel {
        index: usize,
    },
    Change {
        index: usize,
        ticks: u128,
        total_lots: u128,
        reserve: u128,
    },
}
