//! Identifiers and small enums shared by commands, events and state.
//!
//! Units are in the names: a `price` is quote minor units per one whole base unit
//! (10^base_scale base minor units), a `qty` is base minor units, an `amount` is minor
//! units of the asset in question. Inside the book prices are kept in ticks
//! (`price_ticks = price / tick_size`) and quantities in lots (`qty_lots = qty / lot_size`).

use serde::{Deserialize, Serialize};

/// Account identifier chosen by the operator's account system.
pub type AccountId = u64;
/// Asset identifier; must be below `Limits::assets_max`.
pub type AssetId = u32;
/// Market identifier; must be below `Limits::markets_max`.
pub type MarketId = u32;
/// Exchange-assigned order identifier, strictly increasing from 1.
pub type OrderId = u64;
/// Client-chosen order identifier, unique per account among open orders; 0 means "none".
pub type ClientOrderId = u64;
/// Ledger transaction identifier (deposit, withdrawal, transfer); never 0.
pub type TxId = u64;
/// Exchange-assigned trade identifier, strictly increasing from 1.
pub type TradeId = u64;
/// Position of a command in the shard's log; strictly increasing.
pub type LogIndex = u64;

/// Sentinel for "no slot" in the engine's intrusive lists.
pub(crate) const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Side {
    Buy = 0,
    Sell = 1,
}

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum OrderType {
    /// Limit order at `price`.
    Limit = 0,
    /// Market order: a buy spends at most `quote_budget`, a sell sells at most `qty`.
    /// Always immediate-or-cancel.
    Market = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum TimeInForce {
    /// Good till cancelled: the remainder rests on the book.
    Gtc = 0,
    /// Immediate or cancel: the remainder expires.
    Ioc = 1,
    /// Fill or kill: fills completely at once, or expires without any fill.
    Fok = 2,
}

/// Self-trade prevention: what happens when an incoming order (the taker) would match a
/// resting order (the maker) of the same account. The taker's mode decides. Self-trades
/// are never executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum StpMode {
    /// The taker's remainder is cancelled; the maker stays.
    CancelTaker = 0,
    /// The maker is cancelled and matching continues.
    CancelMaker = 1,
    /// Both the maker and the taker's remainder are cancelled.
    CancelBoth = 2,
    /// Both are reduced by the smaller remaining quantity without a trade; whichever
    /// reaches zero is done.
    Decrement = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum MarketStatus {
    /// Orders are accepted and matched.
    Open = 0,
    /// New orders and amends are rejected; cancels still work.
    Halted = 1,
}

/// A short ASCII name (asset or market symbol), padded with zero bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Symbol(pub [u8; Symbol::LEN]);

impl Symbol {
    pub const LEN: usize = 16;

    /// Builds a symbol from printable ASCII of at most 16 bytes.
    pub fn new(text: &str) -> Option<Symbol> {
        let bytes = text.as_bytes();
        if bytes.is_empty() || bytes.len() > Self::LEN {
            return None;
        }
        if !bytes.iter().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let mut out = [0u8; Self::LEN];
        out[..bytes.len()].copy_from_slice(bytes);
        Some(Symbol(out))
    }

    /// The symbol as text; a symbol that is not valid (only possible from a hand-made
    /// value) reads as "?".
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(Self::LEN);
        std::str::from_utf8(&self.0[..len]).unwrap_or("?")
    }

    /// True when the symbol is non-empty printable ASCII followed only by padding.
    pub fn is_valid(&self) -> bool {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(Self::LEN);
        len > 0
            && self.0[..len].iter().all(|b| b.is_ascii_graphic())
            && self.0[len..].iter().all(|&b| b == 0)
    }
}

impl std::fmt::Debug for Symbol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl std::fmt::Display for Symbol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a cancel or amend names its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderRef {
    /// The exchange-assigned order id.
    Id(OrderId),
    /// The client order id (unique per account among open orders).
    Client(ClientOrderId),
}

/// A balance of one asset in one account, in minor units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Free to trade, transfer or withdraw.
    pub available: u64,
    /// Reserved by open orders and pending withdrawals.
    pub held: u64,
}

impl Balance {
    pub fn total(&self) -> u64 {
        // Cannot overflow: both parts are bounded by the asset's supply, and
        // `Limits::supply_max` is below u64::MAX / 2.
        self.available + self.held
    }
}
