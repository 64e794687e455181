//! Events: everything the engine says about what a command did. Every event carries
//! the log index and time of the command that caused it. Events are plain `Copy` values
//! so the engine can write them into a reused buffer without allocating.

use serde::{Deserialize, Serialize};

use crate::command::CommandKind;
use crate::types::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Log index of the command that caused this event.
    pub index: LogIndex,
    /// Time stamped on that command by the sequencer.
    pub time_ns: u64,
    pub kind: EventKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A new order passed every check; its funds are held.
    Accepted(Accepted),
    /// A command was refused and changed nothing.
    Rejected(Rejected),
    /// An open order was changed by an amend.
    Amended(Amended),
    Trade(Trade),
    /// An order left the book or finished executing; nothing more will happen to it.
    Done(Done),
    /// One (account, asset) balance changed: the balance-log record.
    Balance(BalanceChange),
    /// The total resting quantity at one price level changed (0: the level is gone).
    Level(LevelUpdate),
    /// A ledger command (deposit, withdrawal step, transfer) took effect, or was a
    /// repeat of one that did.
    Ledger(LedgerApplied),
    /// An admin command (asset, market, status) took effect.
    Admin(AdminApplied),
    /// A mass cancel finished; `Done` events for each order precede it.
    MassCancelled {
        account: AccountId,
        market: Option<MarketId>,
        count: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub order_id: OrderId,
    pub client_order_id: ClientOrderId,
    pub account: AccountId,
    pub market: MarketId,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    pub post_only: bool,
    pub stp: StpMode,
    pub price: u64,
    pub qty: u64,
    pub quote_budget: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub command: CommandKind,
    /// The account the command acted for (0 for admin commands without one).
    pub account: AccountId,
    /// The order the command named, where it named one by id.
    pub order_id: OrderId,
    pub client_order_id: ClientOrderId,
    /// The ledger transaction, for ledger commands.
    pub tx: TxId,
    pub reason: RejectReason,
    /// True when this is the stored outcome of an earlier command with the same tx id.
    pub duplicate: bool,
    /// For `InsufficientFunds` on its first answer: which asset, how much the command
    /// needed and how much was available. `None` for every other reason, and on a
    /// duplicate (the available balance at the time is not stored with the tx).
    pub shortfall: Option<Shortfall>,
}

/// What an `InsufficientFunds` reject was short of, in the asset's minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortfall {
    pub asset: AssetId,
    /// The amount the command had to hold or move (for an amend: the extra hold).
    pub needed: u64,
    /// The account's available balance of `asset`; always below `needed`.
    pub available: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amended {
    pub order_id: OrderId,
    pub client_order_id: ClientOrderId,
    pub account: AccountId,
    pub market: MarketId,
    pub side: Side,
    pub price: u64,
    /// New total quantity (fills included).
    pub qty: u64,
    /// Quantity still open after the amend.
    pub leaves_qty: u64,
    /// True when the order kept its place in the queue (quantity down, same price).
    pub priority_kept: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    pub trade_id: TradeId,
    pub market: MarketId,
    /// The maker's price.
    pub price: u64,
    pub qty: u64,
    /// Side of the incoming (taker) order.
    pub taker_side: Side,
    pub maker_order_id: OrderId,
    pub taker_order_id: OrderId,
    pub maker_client_order_id: ClientOrderId,
    pub taker_client_order_id: ClientOrderId,
    pub maker_account: AccountId,
    pub taker_account: AccountId,
    /// Fees in quote minor units.
    pub maker_fee: u64,
    pub taker_fee: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum DoneReason {
    /// Completely filled (for a market buy: its budget cannot buy one more lot).
    Filled = 0,
    /// Cancelled by a cancel, mass cancel or an amend down to the filled quantity.
    Cancelled = 1,
    /// An IOC, FOK or market order's unfilled remainder.
    Expired = 2,
    /// Removed by self-trade prevention.
    SelfTradePrevented = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub order_id: OrderId,
    pub client_order_id: ClientOrderId,
    pub account: AccountId,
    pub market: MarketId,
    pub side: Side,
    pub reason: DoneReason,
    /// Total filled quantity over the order's life.
    pub filled_qty: u64,
}

/// Why a balance changed, with the id that explains it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BalanceReason {
    Deposit(TxId),
    WithdrawHold(TxId),
    WithdrawComplete(TxId),
    WithdrawCancel(TxId),
    TransferOut(TxId),
    TransferIn(TxId),
    /// Funds held for an order at acceptance or for an amend that needs more.
    OrderHold(OrderId),
    /// Funds an order no longer needs (cancel, expiry, amend down, price improvement).
    OrderRelease(OrderId),
    /// A trade's settlement (for the buyer: notional plus fee paid out of held).
    Trade(TradeId),
    /// The fee account's income from a trade.
    Fee(TradeId),
}

/// The balance-log record: one change of one (account, asset) balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceChange {
    pub account: AccountId,
    pub asset: AssetId,
    pub delta_available: i64,
    pub delta_held: i64,
    /// Balance after the change.
    pub available: u64,
    pub held: u64,
    pub reason: BalanceReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelUpdate {
    pub market: MarketId,
    pub side: Side,
    pub price: u64,
    /// Total resting quantity at this price; 0 when the level is gone.
    pub qty: u64,
    pub orders: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum LedgerKind {
    Deposit = 0,
    WithdrawRequest = 1,
    WithdrawComplete = 2,
    WithdrawCancel = 3,
    Transfer = 4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerApplied {
    pub kind: LedgerKind,
    pub tx: TxId,
    /// The account debited or credited (the sender for a transfer).
    pub account: AccountId,
    /// The receiver of a transfer; 0 otherwise.
    pub counterparty: AccountId,
    pub asset: AssetId,
    pub amount: u64,
    /// True when this is the stored outcome of an earlier command with the same tx id;
    /// nothing changed this time.
    pub duplicate: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminApplied {
    AssetCreated { asset: AssetId, scale: u8, symbol: Symbol },
    MarketCreated { market: MarketId },
    MarketStatus { market: MarketId, status: MarketStatus },
}

/// Why a command was refused. The numeric codes are part of the wire protocol: never
/// reuse or renumber one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u16)]
pub enum RejectReason {
    UnknownAccount = 1,
    UnknownAsset = 2,
    UnknownMarket = 3,
    UnknownOrder = 4,
    MarketHalted = 5,
    /// Zero, or above `price_ticks_max` once in ticks.
    InvalidPrice = 6,
    PriceNotOnTick = 7,
    /// Zero, or above `qty_lots_max` once in lots.
    InvalidQty = 8,
    QtyNotOnLot = 9,
    BelowMinNotional = 10,
    InsufficientFunds = 11,
    PostOnlyWouldTake = 12,
    DuplicateClientOrderId = 13,
    /// A combination of fields that has no meaning (e.g. post-only IOC, market FOK).
    InvalidOrder = 14,
    OrdersPerAccountLimit = 15,
    OrdersPerMarketLimit = 16,
    OrdersLimit = 17,
    AccountsLimit = 18,
    AssetsLimit = 19,
    MarketsLimit = 20,
    TransactionsLimit = 21,
    AssetExists = 22,
    MarketExists = 23,
    InvalidAsset = 24,
    InvalidMarket = 25,
    InvalidAmount = 26,
    /// The deposit would take the asset's supply above `supply_max`.
    SupplyLimit = 27,
    InvalidTxId = 28,
    WithdrawalNotFound = 29,
    WithdrawalNotPending = 30,
    SameAccount = 31,
    AmendNoChange = 32,
    /// The tx id belongs to a different kind of transaction.
    TxIdConflict = 33,
    /// Price x quantity (plus fee) does not fit under `supply_max`.
    NotionalTooLarge = 34,
    /// The tx id was used before by a transaction of the same kind with different
    /// parameters (account, receiver, asset or amount); nothing changed, and the stored
    /// outcome of the first one stands (TigerBeetle's `exists_with_different_*`).
    TxIdReusedWithDifferentParams = 35,
    /// The receiver of a transfer does not exist and the transfer did not ask for it to
    /// be created (`create_account`).
    UnknownReceiver = 36,
}

impl RejectReason {
    pub fn code(self) -> u16 {
        self as u16
    }

    pub const ALL: [RejectReason; 36] = [
        RejectReason::UnknownAccount,
        RejectReason::UnknownAsset,
        RejectReason::UnknownMarket,
        RejectReason::UnknownOrder,
        RejectReason::MarketHalted,
        RejectReason::InvalidPrice,
        RejectReason::PriceNotOnTick,
        RejectReason::InvalidQty,
        RejectReason::QtyNotOnLot,
        RejectReason::BelowMinNotional,
        RejectReason::InsufficientFunds,
        RejectReason::PostOnlyWouldTake,
        RejectReason::DuplicateClientOrderId,
        RejectReason::InvalidOrder,
        RejectReason::OrdersPerAccountLimit,
        RejectReason::OrdersPerMarketLimit,
        RejectReason::OrdersLimit,
        RejectReason::AccountsLimit,
        RejectReason::AssetsLimit,
        RejectReason::MarketsLimit,
        RejectReason::TransactionsLimit,
        RejectReason::AssetExists,
        RejectReason::MarketExists,
        RejectReason::InvalidAsset,
        RejectReason::InvalidMarket,
        RejectReason::InvalidAmount,
        RejectReason::SupplyLimit,
        RejectReason::InvalidTxId,
        RejectReason::WithdrawalNotFound,
        RejectReason::WithdrawalNotPending,
        RejectReason::SameAccount,
        RejectReason::AmendNoChange,
        RejectReason::TxIdConflict,
        RejectReason::NotionalTooLarge,
        RejectReason::TxIdReusedWithDifferentParams,
        RejectReason::UnknownReceiver,
    ];

    pub fn from_code(code: u16) -> Option<RejectReason> {
        Self::ALL.iter().copied().find(|r| r.code() == code)
    }

    /// A short human-readable explanation.
    pub fn describe(self) -> &'static str {
        match self {
            RejectReason::UnknownAccount => "unknown account",
            RejectReason::UnknownAsset => "unknown asset",
            RejectReason::UnknownMarket => "unknown market",
            RejectReason::UnknownOrder => "unknown order (or not yours, or no longer open)",
            RejectReason::MarketHalted => "market is halted",
            RejectReason::InvalidPrice => "price is zero or out of range",
            RejectReason::PriceNotOnTick => "price is not a multiple of the tick size",
            RejectReason::InvalidQty => "quantity is zero or out of range",
            RejectReason::QtyNotOnLot => "quantity is not a multiple of the lot size",
            RejectReason::BelowMinNotional => "order value is below the market's minimum",
            RejectReason::InsufficientFunds => "insufficient available balance",
            RejectReason::PostOnlyWouldTake => "post-only order would take liquidity",
            RejectReason::DuplicateClientOrderId => "client order id is in use by an open order",
            RejectReason::InvalidOrder => "invalid combination of order fields",
            RejectReason::OrdersPerAccountLimit => "too many open orders for this account",
            RejectReason::OrdersPerMarketLimit => "too many open orders in this market",
            RejectReason::OrdersLimit => "too many open orders in the engine",
            RejectReason::AccountsLimit => "account limit reached",
            RejectReason::AssetsLimit => "asset id out of range",
            RejectReason::MarketsLimit => "market id out of range",
            RejectReason::TransactionsLimit => "transaction limit reached",
            RejectReason::AssetExists => "asset already exists",
            RejectReason::MarketExists => "market already exists",
            RejectReason::InvalidAsset => "invalid asset parameters",
            RejectReason::InvalidMarket => "invalid market parameters",
            RejectReason::InvalidAmount => "amount is zero or out of range",
            RejectReason::SupplyLimit => "deposit would exceed the asset's supply limit",
            RejectReason::InvalidTxId => "transaction id must not be zero",
            RejectReason::WithdrawalNotFound => "no withdrawal with this transaction id",
            RejectReason::WithdrawalNotPending => "withdrawal is already completed or cancelled",
            RejectReason::SameAccount => "transfer to the same account",
            RejectReason::AmendNoChange => "amend changes nothing",
            RejectReason::TxIdConflict => "transaction id is used by another kind of transaction",
            RejectReason::NotionalTooLarge => "order value is too large",
            RejectReason::TxIdReusedWithDifferentParams => {
                "transaction id was already used with different parameters"
            }
            RejectReason::UnknownReceiver => {
                "the receiving account does not exist (ask for its creation explicitly)"
            }
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}
