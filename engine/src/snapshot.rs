//! The canonical snapshot: the whole state as a byte string, and the state hash over it.
//!
//! The encoding lists what is observable and nothing else: assets by id, markets by id,
//! accounts in creation order with their nonzero balances, open orders per market and
//! side in book priority order (best level first, oldest first), ledger transactions in
//! arrival order, counters and limits. Slab slots, radix-tree nodes and hash maps are
//! rebuilt on decode, so a decoded engine is indistinguishable from the original: it
//! encodes to the same bytes and reacts to every command with the same events.
//!
//! Format: `b"BOURSNAP"`, a u32 LE format version, then postcard of `SnapshotV1`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::command::MarketSpec;
use crate::exchange::{Asset, Exchange, Market, Order, TxOutcome, TxRecord};
use crate::limits::Limits;
use crate::matching::{Terms, FEE_ACCOUNT_SLOT};
use crate::types::*;

const MAGIC: [u8; 8] = *b"BOURSNAP";
const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct SnapshotV1 {
    limits: Limits,
    fee_account: AccountId,
    last_index: LogIndex,
    last_time_ns: u64,
    next_order_id: OrderId,
    next_trade_id: TradeId,
    assets: Vec<AssetRecord>,
    markets: Vec<MarketRecord>,
    accounts: Vec<AccountRecord>,
    orders: Vec<OrderRecord>,
    txs: Vec<TxRecord>,
}

#[derive(Serialize, Deserialize)]
struct AssetRecord {
    asset: AssetId,
    scale: u8,
    symbol: Symbol,
    supply: u64,
}

#[derive(Serialize, Deserialize)]
struct MarketRecord {
    spec: MarketSpec,
    status: MarketStatus,
}

#[derive(Serialize, Deserialize)]
struct AccountRecord {
    id: AccountId,
    /// Nonzero balances by ascending asset id.
    balances: Vec<(AssetId, Balance)>,
}

#[derive(Serialize, Deserialize)]
struct OrderRecord {
    id: OrderId,
    client_order_id: ClientOrderId,
    account: AccountId,
    market: MarketId,
    side: Side,
    price_ticks: u64,
    leaves_lots: u64,
    filled_lots: u64,
    reserved: u64,
    stp: StpMode,
    post_only: bool,
}

/// Why a snapshot could not be decoded. A snapshot that decodes has passed every
/// invariant check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    BadMagic,
    Version(u32),
    Malformed,
    Invalid(String),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::BadMagic => write!(f, "not an engine snapshot (bad magic)"),
            SnapshotError::Version(v) => write!(f, "unsupported snapshot format version {v}"),
            SnapshotError::Malformed => write!(f, "malformed snapshot encoding"),
            SnapshotError::Invalid(why) => write!(f, "inconsistent snapshot: {why}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

fn invalid(why: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid(why.into())
}

impl Exchange {
    /// SHA-256 over the canonical snapshot encoding.
    pub fn state_hash(&self) -> [u8; 32] {
        let mut bytes = Vec::new();
        self.encode_snapshot(&mut bytes);
        Sha256::digest(&bytes).into()
    }

    /// Appends the canonical encoding of the whole state to `out`.
    pub fn encode_snapshot(&self, out: &mut Vec<u8>) {
        let snapshot = self.to_records();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let written = postcard::to_io(&snapshot, &mut *out);
        assert!(written.is_ok(), "postcard encode into Vec failed");
    }

    fn to_records(&self) -> SnapshotV1 {
        let assets = (0..self.assets.len())
            .filter_map(|id| {
                self.assets[id].as_ref().map(|a| AssetRecord {
                    asset: id as AssetId,
                    scale: a.scale,
                    symbol: a.symbol,
                    supply: a.supply,
                })
            })
            .collect();
        let markets = self
            .markets
            .iter()
            .flatten()
            .map(|m| MarketRecord { spec: m.spec, status: m.status })
            .collect();
        let accounts = self
            .accounts
            .iter()
            .map(|a| AccountRecord {
                id: a.id,
                balances: a
                    .balances
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.total() > 0)
                    .map(|(asset, b)| (asset as AssetId, *b))
                    .collect(),
            })
            .collect();
        let mut orders = Vec::with_capacity(self.orders_open as usize);
        for market in self.markets.iter().flatten() {
            for side in [Side::Buy, Side::Sell] {
                let mut level = market.book.best(side);
                while let Some((price, slot)) = level {
                    let mut at = market.book.levels[slot as usize].head;
                    while at != NIL {
                        let o = &self.orders[at as usize];
                        orders.push(OrderRecord {
                            id: o.id,
                            client_order_id: o.client_order_id,
                            account: self.accounts[o.account as usize].id,
                            market: o.market,
                            side: o.side,
                            price_ticks: o.price_ticks,
                            leaves_lots: o.leaves_lots,
                            filled_lots: o.filled_lots,
                            reserved: o.reserved,
                            stp: o.stp,
                            post_only: o.post_only,
                        });
                        at = o.next;
                    }
                    level = market.book.next_worse(side, price);
                }
            }
        }
        SnapshotV1 {
            limits: self.limits,
            fee_account: self.fee_account,
            last_index: self.last_index,
            last_time_ns: self.last_time_ns,
            next_order_id: self.next_order_id,
            next_trade_id: self.next_trade_id,
            assets,
            markets,
            accounts,
            orders,
            txs: self.txs.iter().copied().collect(),
        }
    }

    /// Rebuilds an engine from `encode_snapshot` bytes, checking every invariant.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<Exchange, SnapshotError> {
        if bytes.len() < MAGIC.len() + 4 || bytes[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(SnapshotError::Version(version));
        }
        let snapshot: SnapshotV1 =
            postcard::from_bytes(&bytes[12..]).map_err(|_| SnapshotError::Malformed)?;
        let exchange = Exchange::from_records(snapshot)?;
        exchange.check_invariants().map_err(SnapshotError::Invalid)?;
        Ok(exchange)
    }

    fn from_records(s: SnapshotV1) -> Result<Exchange, SnapshotError> {
        s.limits.validate().map_err(invalid)?;
        let mut ex = Exchange::empty(s.limits, s.fee_account);
        ex.last_index = s.last_index;
        ex.last_time_ns = s.last_time_ns;
        ex.next_order_id = s.next_order_id;
        ex.next_trade_id = s.next_trade_id;
        if ex.next_order_id == 0 || ex.next_trade_id == 0 {
            return Err(invalid("id counters must start at 1"));
        }
        for a in s.assets {
            if a.asset >= ex.limits.assets_max || ex.asset_ref(a.asset).is_some() {
                return Err(invalid(format!("asset {} out of range or repeated", a.asset)));
            }
            if a.scale > crate::limits::SCALE_MAX
                || !a.symbol.is_valid()
                || a.supply > ex.limits.supply_max
            {
                return Err(invalid(format!("asset {} has invalid fields", a.asset)));
            }
            if ex.assets.len() <= a.asset as usize {
                ex.assets.resize(a.asset as usize + 1, None);
            }
            ex.assets[a.asset as usize] =
                Some(Asset { scale: a.scale, symbol: a.symbol, supply: a.supply });
        }
        for m in s.markets {
            let qptl = ex
                .validate_market(&m.spec)
                .map_err(|r| invalid(format!("market {}: {r}", m.spec.market)))?;
            let id = m.spec.market as usize;
            if ex.markets.len() <= id {
                ex.markets.resize_with(id + 1, || None);
            }
            let mut market = Market::new(m.spec, qptl);
            market.status = m.status;
            ex.markets[id] = Some(market);
        }
        ex.restore_accounts(s.accounts)?;
        ex.restore_orders(s.orders)?;
        for tx in s.txs {
            let kind_ok = !matches!(
                tx.outcome,
                TxOutcome::WithdrawPending
                    | TxOutcome::WithdrawCompleted
                    | TxOutcome::WithdrawCancelled
            ) || tx.kind == crate::event::LedgerKind::WithdrawRequest;
            if tx.tx == 0 || !kind_ok || ex.txs.len() >= ex.limits.transactions_max as usize {
                return Err(invalid(format!("transaction {} is invalid", tx.tx)));
            }
            if ex.tx_index.insert(tx.tx, ex.txs.len() as u32).is_some() {
                return Err(invalid(format!("transaction {} repeated", tx.tx)));
            }
            ex.txs.push(tx);
        }
        Ok(ex)
    }

    fn restore_accounts(&mut self, accounts: Vec<AccountRecord>) -> Result<(), SnapshotError> {
        if accounts.first().map(|a| a.id) != Some(self.fee_account) {
            return Err(invalid("the fee account must be the first account"));
        }
        for a in accounts {
            if self.account_slot(a.id).is_some()
                || self.accounts.len() >= self.limits.accounts_max as usize
            {
                return Err(invalid(format!("account {} repeated or over the limit", a.id)));
            }
            let slot = self.push_account(a.id);
            let mut last_asset = None;
            for (asset, balance) in a.balances {
                if self.asset_ref(asset).is_none()
                    || last_asset >= Some(asset)
                    || balance.total() == 0
                {
                    return Err(invalid(format!("account {} has an invalid balance entry", a.id)));
                }
                if balance.available > self.limits.supply_max
                    || balance.held > self.limits.supply_max
                {
                    return Err(invalid(format!("account {} balance out of range", a.id)));
                }
                last_asset = Some(asset);
                let balances = &mut self.accounts[slot as usize].balances;
                if balances.len() <= asset as usize {
                    balances.resize(asset as usize + 1, Balance::default());
                }
                balances[asset as usize] = balance;
            }
        }
        debug_assert_eq!(self.account_slot(self.fee_account), Some(FEE_ACCOUNT_SLOT));
        Ok(())
    }

    fn restore_orders(&mut self, orders: Vec<OrderRecord>) -> Result<(), SnapshotError> {
        if orders.len() > self.limits.orders_max as usize {
            return Err(invalid("more open orders than orders_max"));
        }
        let mut slots = Vec::with_capacity(orders.len());
        for o in orders {
            let bad = |why: &str| invalid(format!("order {}: {why}", o.id));
            let market = self.market_ref(o.market).ok_or_else(|| bad("unknown market"))?;
            let terms = Terms::of(market, &self.limits);
            let account = self.account_slot(o.account).ok_or_else(|| bad("unknown account"))?;
            if o.id == 0 || o.id >= self.next_order_id {
                return Err(bad("id out of range"));
            }
            if o.price_ticks == 0 || o.price_ticks > self.limits.price_ticks_max {
                return Err(bad("price out of range"));
            }
            let total =
                o.leaves_lots.checked_add(o.filled_lots).ok_or_else(|| bad("quantity overflow"))?;
            if o.leaves_lots == 0 || total > self.limits.qty_lots_max {
                return Err(bad("quantity out of range"));
            }
            if terms.reservation(o.side, o.price_ticks, o.leaves_lots) != Some(o.reserved) {
                return Err(bad("reservation does not match its remainder"));
            }
            let slot = self.alloc_order(Order {
                id: o.id,
                client_order_id: o.client_order_id,
                price_ticks: o.price_ticks,
                leaves_lots: o.leaves_lots,
                filled_lots: o.filled_lots,
                reserved: o.reserved,
                account,
                market: o.market,
                level: NIL,
                prev: NIL,
                next: NIL,
                account_prev: NIL,
                account_next: NIL,
                side: o.side,
                stp: o.stp,
                post_only: o.post_only,
            });
            self.link_to_level(&terms, slot);
            slots.push((o.id, slot));
        }
        // Account lists are always in ascending order id; rebuild them that way.
        slots.sort_unstable();
        for pair in slots.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(invalid(format!("order {} repeated", pair[0].0)));
            }
        }
        for (_, slot) in slots {
            let o = self.orders[slot as usize];
            if o.client_order_id != 0
                && self.client_index.contains_key(&(o.account, o.client_order_id))
            {
                return Err(invalid(format!("client order id {} repeated", o.client_order_id)));
            }
            self.index_order(slot);
        }
        Ok(())
    }
}
