//! The exchange state of one shard and `apply`, the single entry point that changes it.
//!
//! `Exchange` lives on the shard core and is touched by that thread only. Ledger commands
//! are in `ledger.rs`, order commands in `matching.rs`, the canonical snapshot and state
//! hash in `snapshot.rs`, and the O(state) consistency check in `invariants.rs`.

use crate::command::{Command, MarketSpec};
use crate::event::*;
use crate::index::{ChunkedVec, ShardedIndex};
use crate::limits::Limits;
use crate::price_index::PriceIndex;
use crate::types::*;

/// Engine configuration; both fields are part of the replicated state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub limits: Limits,
    /// Receives every trading fee. Exists from the start.
    pub fee_account: AccountId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    Limits(&'static str),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Limits(why) => write!(f, "invalid limits: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// `apply` refuses a command whose index does not follow the last applied one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyError {
    IndexNotIncreasing { last: LogIndex, got: LogIndex },
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::IndexNotIncreasing { last, got } => {
                write!(f, "log index {got} does not follow the last applied index {last}")
            }
        }
    }
}

impl std::error::Error for ApplyError {}

/// An open order as seen from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderView {
    pub order_id: OrderId,
    pub client_order_id: ClientOrderId,
    pub account: AccountId,
    pub market: MarketId,
    pub side: Side,
    pub price: u64,
    /// Total quantity, fills included.
    pub qty: u64,
    pub leaves_qty: u64,
    pub filled_qty: u64,
    /// Funds this order holds (quote for a buy, base for a sell).
    pub reserved: u64,
    pub post_only: bool,
    pub stp: StpMode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthLevel {
    pub price: u64,
    pub qty: u64,
    pub orders: u32,
}

/// The top of a book, best price first on both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Depth {
    pub market: MarketId,
    pub bids: Vec<DepthLevel>,
    pub asks: Vec<DepthLevel>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarketView {
    pub spec: MarketSpec,
    pub status: MarketStatus,
    pub open_orders: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssetView {
    pub asset: AssetId,
    pub scale: u8,
    pub symbol: Symbol,
    /// Deposits minus completed withdrawals, in minor units.
    pub supply: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct Asset {
    pub(crate) scale: u8,
    pub(crate) symbol: Symbol,
    pub(crate) supply: u64,
}

#[derive(Clone)]
pub(crate) struct Market {
    pub(crate) spec: MarketSpec,
    pub(crate) status: MarketStatus,
    /// Quote minor units per (tick x lot); every notional is `ticks * lots * qptl`.
    pub(crate) qptl: u64,
    /// `max(maker, taker)`: the rate a buy's reservation covers.
    pub(crate) fee_bps_max: u32,
    pub(crate) book: Book,
}

/// One market's two sides. Levels live in a slab; each side's price index maps a price
/// in ticks to its level slot.
#[derive(Clone)]
pub(crate) struct Book {
    pub(crate) bids: PriceIndex,
    pub(crate) asks: PriceIndex,
    pub(crate) levels: Vec<Level>,
    pub(crate) levels_free: u32,
    pub(crate) orders_open: u32,
}

/// A price level: a FIFO of order slots (intrusive list through `Order::prev/next`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Level {
    pub(crate) price_ticks: u64,
    pub(crate) lots: u64,
    pub(crate) count: u32,
    /// First order slot (oldest); doubles as the free-list link when the level is free.
    pub(crate) head: u32,
    pub(crate) tail: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct Account {
    pub(crate) id: AccountId,
    /// Indexed by asset id; grown when the account first holds an asset.
    pub(crate) balances: Vec<Balance>,
    pub(crate) orders_open: u32,
    /// The account's open orders in ascending order id (intrusive list through
    /// `Order::account_prev/account_next`).
    pub(crate) orders_head: u32,
    pub(crate) orders_tail: u32,
}

/// An open order. Lives in the order slab; `level`, `prev` and `next` place it in its
/// level's FIFO while it rests.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Order {
    pub(crate) id: OrderId,
    pub(crate) client_order_id: ClientOrderId,
    pub(crate) price_ticks: u64,
    pub(crate) leaves_lots: u64,
    pub(crate) filled_lots: u64,
    /// Funds held for this order: quote for a buy, base for a sell.
    pub(crate) reserved: u64,
    pub(crate) account: u32,
    pub(crate) market: u32,
    pub(crate) level: u32,
    pub(crate) prev: u32,
    pub(crate) next: u32,
    pub(crate) account_prev: u32,
    pub(crate) account_next: u32,
    pub(crate) side: Side,
    pub(crate) stp: StpMode,
    pub(crate) post_only: bool,
}

const _: () = assert!(std::mem::size_of::<Order>() <= 80);

/// What became of a ledger transaction: stored so a repeated tx id gets the same answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum TxOutcome {
    Applied,
    Rejected(RejectReason),
    WithdrawPending,
    WithdrawCompleted,
    WithdrawCancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct TxRecord {
    pub(crate) tx: TxId,
    pub(crate) kind: LedgerKind,
    pub(crate) account: AccountId,
    pub(crate) counterparty: AccountId,
    pub(crate) asset: AssetId,
    pub(crate) amount: u64,
    pub(crate) outcome: TxOutcome,
}

/// Where events of the command being applied go, stamped with its index and time.
pub(crate) struct Out<'a> {
    pub(crate) index: LogIndex,
    pub(crate) time_ns: u64,
    pub(crate) events: &'a mut Vec<Event>,
}

impl Out<'_> {
    #[inline]
    pub(crate) fn push(&mut self, kind: EventKind) {
        self.events.push(Event { index: self.index, time_ns: self.time_ns, kind });
    }
}

/// The state of one shard: assets, markets with their books, accounts with their
/// balances, open orders and ledger transactions. Lives on the shard core.
#[derive(Clone)]
pub struct Exchange {
    pub(crate) limits: Limits,
    pub(crate) fee_account: AccountId,
    pub(crate) last_index: LogIndex,
    pub(crate) last_time_ns: u64,
    pub(crate) next_order_id: OrderId,
    pub(crate) next_trade_id: TradeId,
    /// Indexed by asset id.
    pub(crate) assets: Vec<Option<Asset>>,
    /// Indexed by market id.
    pub(crate) markets: Vec<Option<Market>>,
    /// Dense, in creation order; `account_index` maps an id to its position. The
    /// indices are only ever looked up, never iterated (`index.rs`).
    pub(crate) accounts: Vec<Account>,
    pub(crate) account_index: ShardedIndex<AccountId, u32>,
    /// Order slab; free slots are chained through `next`. Reserved up to `orders_max`
    /// at creation (address space only), so it never moves.
    pub(crate) orders: Vec<Order>,
    pub(crate) orders_free: u32,
    pub(crate) orders_open: u32,
    pub(crate) order_index: ShardedIndex<OrderId, u32>,
    pub(crate) client_index: ShardedIndex<(u32, ClientOrderId), u32>,
    /// Ledger transactions in arrival order; grows by chunks, never moves.
    pub(crate) txs: ChunkedVec<TxRecord>,
    pub(crate) tx_index: ShardedIndex<TxId, u32>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("last_index", &self.last_index)
            .field("accounts", &self.accounts.len())
            .field("orders_open", &self.orders_open)
            .field("txs", &self.txs.len())
            .finish_non_exhaustive()
    }
}

impl Exchange {
    pub fn new(config: Config) -> Result<Exchange, ConfigError> {
        config.limits.validate().map_err(ConfigError::Limits)?;
        let mut exchange = Exchange::empty(config.limits, config.fee_account);
        exchange.push_account(config.fee_account);
        Ok(exchange)
    }

    pub(crate) fn empty(limits: Limits, fee_account: AccountId) -> Exchange {
        Exchange {
            limits,
            fee_account,
            last_index: 0,
            last_time_ns: 0,
            next_order_id: 1,
            next_trade_id: 1,
            assets: Vec::new(),
            markets: Vec::new(),
            // Reserving address space touches no memory until it is used, and spares
            // the hot path the copy of a reallocation.
            accounts: Vec::with_capacity(limits.accounts_max as usize),
            account_index: ShardedIndex::new(),
            orders: Vec::with_capacity(limits.orders_max as usize),
            orders_free: NIL,
            orders_open: 0,
            order_index: ShardedIndex::new(),
            client_index: ShardedIndex::new(),
            txs: ChunkedVec::new(),
            tx_index: ShardedIndex::new(),
        }
    }

    /// Applies one command stamped with its log `index` and `time_ns`, appending what
    /// happened to `out` (which the caller clears). Every command yields at least one
    /// event. A rejected command changes nothing but the last applied index.
    pub fn apply(
        &mut self,
        index: LogIndex,
        time_ns: u64,
        command: &Command,
        out: &mut Vec<Event>,
    ) -> Result<(), ApplyError> {
        if index <= self.last_index {
            return Err(ApplyError::IndexNotIncreasing { last: self.last_index, got: index });
        }
        self.last_index = index;
        self.last_time_ns = time_ns;
        let events_before = out.len();
        let mut out = Out { index, time_ns, events: out };
        match *command {
            Command::CreateAsset { asset, scale, symbol } => {
                self.create_asset(asset, scale, symbol, &mut out)
            }
            Command::CreateMarket(spec) => self.create_market(spec, &mut out),
            Command::SetMarketStatus { market, status } => {
                self.set_market_status(market, status, &mut out)
            }
            Command::Deposit { tx, account, asset, amount } => {
                self.deposit(tx, account, asset, amount, &mut out)
            }
            Command::WithdrawRequest { tx, account, asset, amount } => {
                self.withdraw_request(tx, account, asset, amount, &mut out)
            }
            Command::WithdrawComplete { tx } => self.withdraw_finish(tx, true, &mut out),
            Command::WithdrawCancel { tx } => self.withdraw_finish(tx, false, &mut out),
            Command::Transfer { .. } => self.transfer(command, &mut out),
            Command::Place(ref place) => self.place(place, &mut out),
            Command::Cancel { account, order } => self.cancel(account, order, &mut out),
            Command::Amend { account, order, price, qty } => {
                self.amend(account, order, price, qty, &mut out)
            }
            Command::MassCancel { account, market } => self.mass_cancel(account, market, &mut out),
        }
        debug_assert!(out.events.len() > events_before, "every command must yield an event");
        Ok(())
    }

    // ----- admin -----

    fn create_asset(&mut self, asset: AssetId, scale: u8, symbol: Symbol, out: &mut Out) {
        let reject = |reason| Rejected {
            command: crate::command::CommandKind::CreateAsset,
            account: 0,
            order_id: 0,
            client_order_id: 0,
            tx: 0,
            reason,
            duplicate: false,
            shortfall: None,
        };
        let result = if asset >= self.limits.assets_max {
            Err(RejectReason::AssetsLimit)
        } else if self.asset_ref(asset).is_some() {
            Err(RejectReason::AssetExists)
        } else if scale > crate::limits::SCALE_MAX || !symbol.is_valid() {
            Err(RejectReason::InvalidAsset)
        } else {
            Ok(())
        };
        match result {
            Err(reason) => out.push(EventKind::Rejected(reject(reason))),
            Ok(()) => {
                if self.assets.len() <= asset as usize {
                    self.assets.resize(asset as usize + 1, None);
                }
                self.assets[asset as usize] = Some(Asset { scale, symbol, supply: 0 });
                out.push(EventKind::Admin(AdminApplied::AssetCreated { asset, scale, symbol }));
            }
        }
    }

    fn create_market(&mut self, spec: MarketSpec, out: &mut Out) {
        match self.validate_market(&spec) {
            Err(reason) => out.push(EventKind::Rejected(Rejected {
                command: crate::command::CommandKind::CreateMarket,
                account: 0,
                order_id: 0,
                client_order_id: 0,
                tx: 0,
                reason,
                duplicate: false,
                shortfall: None,
            })),
            Ok(qptl) => {
                let id = spec.market as usize;
                if self.markets.len() <= id {
                    self.markets.resize_with(id + 1, || None);
                }
                self.markets[id] = Some(Market::new(spec, qptl));
                out.push(EventKind::Admin(AdminApplied::MarketCreated { market: spec.market }));
            }
        }
    }

    /// Checks a market spec; returns its `qptl`.
    pub(crate) fn validate_market(&self, spec: &MarketSpec) -> Result<u64, RejectReason> {
        if spec.market >= self.limits.markets_max {
            return Err(RejectReason::MarketsLimit);
        }
        if self.market_ref(spec.market).is_some() {
            return Err(RejectReason::MarketExists);
        }
        let (Some(base), Some(_quote)) = (self.asset_ref(spec.base), self.asset_ref(spec.quote))
        else {
            return Err(RejectReason::UnknownAsset);
        };
        if spec.base == spec.quote
            || spec.tick_size == 0
            || spec.lot_size == 0
            || spec.maker_fee_bps > crate::limits::FEE_BPS_MAX
            || spec.taker_fee_bps > crate::limits::FEE_BPS_MAX
            || !spec.symbol.is_valid()
        {
            return Err(RejectReason::InvalidMarket);
        }
        let unit = 10u128.pow(base.scale as u32);
        let product = spec.tick_size as u128 * spec.lot_size as u128;
        if product % unit != 0 || product / unit > self.limits.supply_max as u128 {
            return Err(RejectReason::InvalidMarket);
        }
        let qptl = (product / unit) as u64;
        assert!(qptl >= 1);
        Ok(qptl)
    }

    fn set_market_status(&mut self, market: MarketId, status: MarketStatus, out: &mut Out) {
        match self.market_mut(market) {
            None => out.push(EventKind::Rejected(Rejected {
                command: crate::command::CommandKind::SetMarketStatus,
                account: 0,
                order_id: 0,
                client_order_id: 0,
                tx: 0,
                reason: RejectReason::UnknownMarket,
                duplicate: false,
                shortfall: None,
            })),
            Some(m) => {
                m.status = status;
                out.push(EventKind::Admin(AdminApplied::MarketStatus { market, status }));
            }
        }
    }

    // ----- lookups -----

    pub(crate) fn asset_ref(&self, asset: AssetId) -> Option<&Asset> {
        self.assets.get(asset as usize).and_then(Option::as_ref)
    }

    pub(crate) fn market_ref(&self, market: MarketId) -> Option<&Market> {
        self.markets.get(market as usize).and_then(Option::as_ref)
    }

    pub(crate) fn market_mut(&mut self, market: MarketId) -> Option<&mut Market> {
        self.markets.get_mut(market as usize).and_then(Option::as_mut)
    }

    pub(crate) fn account_slot(&self, account: AccountId) -> Option<u32> {
        self.account_index.get(&account).copied()
    }

    /// Adds an account; the caller has checked `accounts_max`.
    pub(crate) fn push_account(&mut self, id: AccountId) -> u32 {
        assert!(self.account_slot(id).is_none());
        assert!(self.accounts.len() < self.limits.accounts_max as usize);
        let slot = self.accounts.len() as u32;
        self.accounts.push(Account {
            id,
            balances: vec![Balance::default(); self.assets.len()],
            orders_open: 0,
            orders_head: NIL,
            orders_tail: NIL,
        });
        self.account_index.insert(id, slot);
        slot
    }

    /// What the account at `slot` lacks to hold or move `needed` of `asset`; `None` when
    /// its available balance covers it.
    pub(crate) fn shortfall(&self, slot: u32, asset: AssetId, needed: u64) -> Option<Shortfall> {
        let available = self.balance_at(slot, asset).available;
        (available < needed).then_some(Shortfall { asset, needed, available })
    }

    /// True if `account` exists or there is room to create it.
    pub(crate) fn account_creatable(&self, account: AccountId) -> bool {
        self.account_slot(account).is_some()
            || self.accounts.len() < self.limits.accounts_max as usize
    }

    pub(crate) fn balance_at(&self, slot: u32, asset: AssetId) -> Balance {
        self.accounts[slot as usize].balances.get(asset as usize).copied().unwrap_or_default()
    }

    /// Changes one balance and records it. The caller has validated the change, so a
    /// negative or overflowing result is an engine bug and stops the process rather
    /// than corrupting state.
    pub(crate) fn change_balance(
        &mut self,
        slot: u32,
        asset: AssetId,
        delta_available: i64,
        delta_held: i64,
        reason: BalanceReason,
        out: &mut Out,
    ) {
        // A change of nothing (e.g. proceeds entirely eaten by a 100% fee) is not a
        // change: no record.
        if delta_available == 0 && delta_held == 0 {
            return;
        }
        let account = &mut self.accounts[slot as usize];
        if account.balances.len() <= asset as usize {
            account.balances.resize(asset as usize + 1, Balance::default());
        }
        let balance = &mut account.balances[asset as usize];
        let available = balance.available.checked_add_signed(delta_available);
        let held = balance.held.checked_add_signed(delta_held);
        let (Some(available), Some(held)) = (available, held) else {
            panic!("balance would go negative or overflow: {reason:?}");
        };
        balance.available = available;
        balance.held = held;
        out.push(EventKind::Balance(BalanceChange {
            account: account.id,
            asset,
            delta_available,
            delta_held,
            available,
            held,
            reason,
        }));
    }

    // ----- queries -----

    pub fn last_index(&self) -> LogIndex {
        self.last_index
    }

    /// Time stamped on the last applied command (the sequencer continues from it).
    pub fn last_time_ns(&self) -> u64 {
        self.last_time_ns
    }

    pub fn fee_account(&self) -> AccountId {
        self.fee_account
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn account_exists(&self, account: AccountId) -> bool {
        self.account_slot(account).is_some()
    }

    /// How many accounts exist (metrics; no allocation).
    pub fn accounts_len(&self) -> usize {
        self.accounts.len()
    }

    /// Orders resting on every book together (metrics; no allocation).
    pub fn open_orders_len(&self) -> u64 {
        u64::from(self.orders_open)
    }

    /// Every account, in creation order.
    pub fn accounts(&self) -> Vec<AccountId> {
        self.accounts.iter().map(|a| a.id).collect()
    }

    pub fn balance(&self, account: AccountId, asset: AssetId) -> Balance {
        self.account_slot(account)
            .map_or_else(Balance::default, |slot| self.balance_at(slot, asset))
    }

    /// The account's balances with a nonzero total, by ascending asset id.
    pub fn balances(&self, account: AccountId) -> Vec<(AssetId, Balance)> {
        let Some(slot) = self.account_slot(account) else { return Vec::new() };
        self.accounts[slot as usize]
            .balances
            .iter()
            .enumerate()
            .filter(|(_, b)| b.total() > 0)
            .map(|(asset, b)| (asset as AssetId, *b))
            .collect()
    }

    pub(crate) fn order_view(&self, slot: u32) -> OrderView {
        let o = &self.orders[slot as usize];
        let m = self.market_ref(o.market).expect("open order in a missing market");
        OrderView {
            order_id: o.id,
            client_order_id: o.client_order_id,
            account: self.accounts[o.account as usize].id,
            market: o.market,
            side: o.side,
            price: o.price_ticks * m.spec.tick_size,
            qty: (o.leaves_lots + o.filled_lots) * m.spec.lot_size,
            leaves_qty: o.leaves_lots * m.spec.lot_size,
            filled_qty: o.filled_lots * m.spec.lot_size,
            reserved: o.reserved,
            post_only: o.post_only,
            stp: o.stp,
        }
    }

    pub fn order(&self, order_id: OrderId) -> Option<OrderView> {
        self.order_index.get(&order_id).map(|&slot| self.order_view(slot))
    }

    pub fn order_by_client_id(
        &self,
        account: AccountId,
        client_order_id: ClientOrderId,
    ) -> Option<OrderView> {
        let slot = self.account_slot(account)?;
        self.client_index.get(&(slot, client_order_id)).map(|&o| self.order_view(o))
    }

    /// The account's open orders, by ascending order id.
    pub fn open_orders(&self, account: AccountId) -> Vec<OrderView> {
        let Some(slot) = self.account_slot(account) else { return Vec::new() };
        let mut views = Vec::with_capacity(self.accounts[slot as usize].orders_open as usize);
        let mut at = self.accounts[slot as usize].orders_head;
        while at != NIL {
            views.push(self.order_view(at));
            at = self.orders[at as usize].account_next;
        }
        views
    }

    /// Up to `levels_max` levels of each side, best first.
    pub fn depth(&self, market: MarketId, levels_max: usize) -> Option<Depth> {
        let m = self.market_ref(market)?;
        let side = |side: Side| {
            let mut levels = Vec::new();
            let mut next = m.book.best(side);
            while let Some((_, slot)) = next {
                if levels.len() == levels_max {
                    break;
                }
                let level = &m.book.levels[slot as usize];
                levels.push(DepthLevel {
                    price: level.price_ticks * m.spec.tick_size,
                    qty: level.lots * m.spec.lot_size,
                    orders: level.count,
                });
                next = m.book.next_worse(side, level.price_ticks);
            }
            levels
        };
        Some(Depth { market, bids: side(Side::Buy), asks: side(Side::Sell) })
    }

    pub fn market(&self, market: MarketId) -> Option<MarketView> {
        self.market_ref(market).map(|m| MarketView {
            spec: m.spec,
            status: m.status,
            open_orders: m.book.orders_open,
        })
    }

    pub fn markets(&self) -> Vec<MarketView> {
        (0..self.markets.len() as MarketId).filter_map(|id| self.market(id)).collect()
    }

    pub fn asset(&self, asset: AssetId) -> Option<AssetView> {
        self.asset_ref(asset).map(|a| AssetView {
            asset,
            scale: a.scale,
            symbol: a.symbol,
            supply: a.supply,
        })
    }

    pub fn assets(&self) -> Vec<AssetView> {
        (0..self.assets.len() as AssetId).filter_map(|id| self.asset(id)).collect()
    }
}

impl Market {
    pub(crate) fn new(spec: MarketSpec, qptl: u64) -> Market {
        Market {
            spec,
            status: MarketStatus::Open,
            qptl,
            fee_bps_max: spec.maker_fee_bps.max(spec.taker_fee_bps),
            book: Book::new(),
        }
    }
}

impl Book {
    pub(crate) fn new() -> Book {
        Book {
            bids: PriceIndex::new(),
            asks: PriceIndex::new(),
            levels: Vec::new(),
            levels_free: NIL,
            orders_open: 0,
        }
    }

    pub(crate) fn side(&self, side: Side) -> &PriceIndex {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    pub(crate) fn side_mut(&mut self, side: Side) -> &mut PriceIndex {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// Best level of `side` (highest bid, lowest ask): (price_ticks, level slot).
    #[inline]
    pub(crate) fn best(&self, side: Side) -> Option<(u64, u32)> {
        match side {
            Side::Buy => self.bids.last(),
            Side::Sell => self.asks.first(),
        }
    }

    /// The next level of `side` after `price_ticks`, moving away from the best.
    pub(crate) fn next_worse(&self, side: Side, price_ticks: u64) -> Option<(u64, u32)> {
        match side {
            Side::Buy => self.bids.next_below(price_ticks),
            Side::Sell => self.asks.next_above(price_ticks),
        }
    }

    /// The level at `price_ticks` on `side`, created empty if missing.
    pub(crate) fn level_for(&mut self, side: Side, price_ticks: u64) -> u32 {
        if let Some(slot) = self.side(side).get(price_ticks) {
            return slot;
        }
        let level = Level { price_ticks, lots: 0, count: 0, head: NIL, tail: NIL };
        let slot = if self.levels_free != NIL {
            let slot = self.levels_free;
            self.levels_free = self.levels[slot as usize].head;
            self.levels[slot as usize] = level;
            slot
        } else {
            self.levels.push(level);
            (self.levels.len() - 1) as u32
        };
        self.side_mut(side).insert(price_ticks, slot);
        slot
    }

    /// Removes an empty level.
    pub(crate) fn drop_level(&mut self, side: Side, slot: u32) {
        let level = self.levels[slot as usize];
        assert!(level.count == 0 && level.lots == 0 && level.head == NIL);
        let removed = self.side_mut(side).remove(level.price_ticks);
        assert_eq!(removed, slot);
        self.levels[slot as usize].head = self.levels_free;
        self.levels_free = slot;
    }
}
