//! Commands: the only way to change the exchange state. A command is what the log
//! stores and replicates; `encode`/`decode` give its byte form (a version byte, then
//! postcard). Decoding never panics on any input; it returns a typed error.

use serde::{Deserialize, Serialize};

use crate::types::*;

/// Parameters of a market. Prices are quote minor units per whole base unit, quantities
/// base minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketSpec {
    pub market: MarketId,
    pub symbol: Symbol,
    pub base: AssetId,
    pub quote: AssetId,
    /// Price step, in quote minor units per whole base unit.
    pub tick_size: u64,
    /// Quantity step, in base minor units.
    pub lot_size: u64,
    /// Smallest order value (price x qty), in quote minor units.
    pub min_notional: u64,
    /// Fee charged to the resting side of a trade, in basis points of the notional.
    pub maker_fee_bps: u32,
    /// Fee charged to the incoming side of a trade, in basis points of the notional.
    pub taker_fee_bps: u32,
}

/// A new order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub account: AccountId,
    pub market: MarketId,
    /// 0 for none; otherwise unique among the account's open orders.
    pub client_order_id: ClientOrderId,
    pub side: Side,
    pub order_type: OrderType,
    /// Must be `Ioc` for market orders.
    pub tif: TimeInForce,
    /// Reject instead of taking liquidity (limit GTC only).
    pub post_only: bool,
    /// Limit price; 0 for market orders.
    pub price: u64,
    /// Quantity in base minor units; for a market buy it must be 0 (the budget bounds it).
    pub qty: u64,
    /// Market buy only: the most quote (notional plus taker fee) it may spend.
    pub quote_budget: u64,
    pub stp: StpMode,
}

/// Every state-changing input. Time and log index come with the command from the
/// sequencer (see `Exchange::apply`), never from a clock.
///
/// The serde form (and so the log payload) goes through [`CommandWire`], which keeps the
/// bytes of every command written before `Transfer::create_account` existed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "CommandWire", from = "CommandWire")]
pub enum Command {
    /// Admin: registers an asset with `scale` decimal places in its minor unit.
    CreateAsset { asset: AssetId, scale: u8, symbol: Symbol },
    /// Admin: registers a market (status open).
    CreateMarket(MarketSpec),
    /// Admin: opens or halts a market.
    SetMarketStatus { market: MarketId, status: MarketStatus },
    /// Admin: credits `amount` to `account` (created on its first deposit).
    Deposit { tx: TxId, account: AccountId, asset: AssetId, amount: u64 },
    /// Moves `amount` from available to held until the withdrawal completes or is
    /// cancelled.
    WithdrawRequest { tx: TxId, account: AccountId, asset: AssetId, amount: u64 },
    /// Admin: the withdrawal `tx` left the exchange; its held funds are debited.
    WithdrawComplete { tx: TxId },
    /// Admin or owner: the withdrawal `tx` is void; its funds return to available.
    WithdrawCancel { tx: TxId },
    /// Moves `amount` between two accounts. A receiver that does not exist is created
    /// when `create_account` is set and refused (`UnknownReceiver`) otherwise.
    Transfer {
        tx: TxId,
        from: AccountId,
        to: AccountId,
        asset: AssetId,
        amount: u64,
        create_account: bool,
    },
    /// A new order.
    Place(PlaceOrder),
    /// Cancels one open order of `account`.
    Cancel { account: AccountId, order: OrderRef },
    /// Changes an open order. `price == 0` keeps the price; `qty == 0` keeps the total
    /// quantity. `qty` is the new total quantity, fills included (as FIX's OrderQty):
    /// if it is at or below what has already filled, the order is done.
    Amend { account: AccountId, order: OrderRef, price: u64, qty: u64 },
    /// Cancels every open order of `account`, or only those in `market`.
    MassCancel { account: AccountId, market: Option<MarketId> },
}

/// The byte form of a [`Command`] (postcard encodes the variant index, then the fields).
/// Variants 0..=11 are the original encoding, unchanged; never reorder them. Variant 7
/// (`Transfer`) always created a new receiver, so it stays `create_account: true` and
/// logs written before the flag replay exactly as before; a transfer that must not create
/// its receiver is the appended variant 12.
#[derive(Clone, Copy, Serialize, Deserialize)]
enum CommandWire {
    CreateAsset {
        asset: AssetId,
        scale: u8,
        symbol: Symbol,
    },
    CreateMarket(MarketSpec),
    SetMarketStatus {
        market: MarketId,
        status: MarketStatus,
    },
    Deposit {
        tx: TxId,
        account: AccountId,
        asset: AssetId,
        amount: u64,
    },
    WithdrawRequest {
        tx: TxId,
        account: AccountId,
        asset: AssetId,
        amount: u64,
    },
    WithdrawComplete {
        tx: TxId,
    },
    WithdrawCancel {
        tx: TxId,
    },
    /// `Transfer { create_account: true }`.
    Transfer {
        tx: TxId,
        from: AccountId,
        to: AccountId,
        asset: AssetId,
        amount: u64,
    },
    Place(PlaceOrder),
    Cancel {
        account: AccountId,
        order: OrderRef,
    },
    Amend {
        account: AccountId,
        order: OrderRef,
        price: u64,
        qty: u64,
    },
    MassCancel {
        account: AccountId,
        market: Option<MarketId>,
    },
    /// `Transfer { create_account: false }`.
    TransferExisting {
        tx: TxId,
        from: AccountId,
        to: AccountId,
        asset: AssetId,
        amount: u64,
    },
}

impl From<Command> for CommandWire {
    fn from(c: Command) -> CommandWire {
        match c {
            Command::CreateAsset { asset, scale, symbol } => {
                CommandWire::CreateAsset { asset, scale, symbol }
            }
            Command::CreateMarket(spec) => CommandWire::CreateMarket(spec),
            Command::SetMarketStatus { market, status } => {
                CommandWire::SetMarketStatus { market, status }
            }
            Command::Deposit { tx, account, asset, amount } => {
                CommandWire::Deposit { tx, account, asset, amount }
            }
            Command::WithdrawRequest { tx, account, asset, amount } => {
                CommandWire::WithdrawRequest { tx, account, asset, amount }
            }
            Command::WithdrawComplete { tx } => CommandWire::WithdrawComplete { tx },
            Command::WithdrawCancel { tx } => CommandWire::WithdrawCancel { tx },
            Command::Transfer { tx, from, to, asset, amount, create_account: true } => {
                CommandWire::Transfer { tx, from, to, asset, amount }
            }
            Command::Transfer { tx, from, to, asset, amount, create_account: false } => {
                CommandWire::TransferExisting { tx, from, to, asset, amount }
            }
            Command::Place(p) => CommandWire::Place(p),
            Command::Cancel { account, order } => CommandWire::Cancel { account, order },
            Command::Amend { account, order, price, qty } => {
                CommandWire::Amend { account, order, price, qty }
            }
            Command::MassCancel { account, market } => CommandWire::MassCancel { account, market },
        }
    }
}

impl From<CommandWire> for Command {
    fn from(c: CommandWire) -> Command {
        match c {
            CommandWire::CreateAsset { asset, scale, symbol } => {
                Command::CreateAsset { asset, scale, symbol }
            }
            CommandWire::CreateMarket(spec) => Command::CreateMarket(spec),
            CommandWire::SetMarketStatus { market, status } => {
                Command::SetMarketStatus { market, status }
            }
            CommandWire::Deposit { tx, account, asset, amount } => {
                Command::Deposit { tx, account, asset, amount }
            }
            CommandWire::WithdrawRequest { tx, account, asset, amount } => {
                Command::WithdrawRequest { tx, account, asset, amount }
            }
            CommandWire::WithdrawComplete { tx } => Command::WithdrawComplete { tx },
            CommandWire::WithdrawCancel { tx } => Command::WithdrawCancel { tx },
            CommandWire::Transfer { tx, from, to, asset, amount } => {
                Command::Transfer { tx, from, to, asset, amount, create_account: true }
            }
            CommandWire::TransferExisting { tx, from, to, asset, amount } => {
                Command::Transfer { tx, from, to, asset, amount, create_account: false }
            }
            CommandWire::Place(p) => Command::Place(p),
            CommandWire::Cancel { account, order } => Command::Cancel { account, order },
            CommandWire::Amend { account, order, price, qty } => {
                Command::Amend { account, order, price, qty }
            }
            CommandWire::MassCancel { account, market } => Command::MassCancel { account, market },
        }
    }
}

/// The kind of a command, carried by rejects so a client knows what was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum CommandKind {
    CreateAsset = 0,
    CreateMarket = 1,
    SetMarketStatus = 2,
    Deposit = 3,
    WithdrawRequest = 4,
    WithdrawComplete = 5,
    WithdrawCancel = 6,
    Transfer = 7,
    Place = 8,
    Cancel = 9,
    Amend = 10,
    MassCancel = 11,
}

impl Command {
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::CreateAsset { .. } => CommandKind::CreateAsset,
            Command::CreateMarket(_) => CommandKind::CreateMarket,
            Command::SetMarketStatus { .. } => CommandKind::SetMarketStatus,
            Command::Deposit { .. } => CommandKind::Deposit,
            Command::WithdrawRequest { .. } => CommandKind::WithdrawRequest,
            Command::WithdrawComplete { .. } => CommandKind::WithdrawComplete,
            Command::WithdrawCancel { .. } => CommandKind::WithdrawCancel,
            Command::Transfer { .. } => CommandKind::Transfer,
            Command::Place(_) => CommandKind::Place,
            Command::Cancel { .. } => CommandKind::Cancel,
            Command::Amend { .. } => CommandKind::Amend,
            Command::MassCancel { .. } => CommandKind::MassCancel,
        }
    }

    /// Appends the command's byte form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(COMMAND_CODEC_VERSION);
        // Serialising a plain enum of integers into a Vec cannot fail.
        let written = postcard::to_io(self, &mut *out);
        assert!(written.is_ok(), "postcard encode into Vec failed");
    }

    /// Decodes a command from exactly `bytes` (trailing bytes are an error).
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != COMMAND_CODEC_VERSION {
            return Err(DecodeError::Version(version));
        }
        let (command, rest) =
            postcard::take_from_bytes::<Command>(body).map_err(|_| DecodeError::Malformed)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()));
        }
        Ok(command)
    }
}

/// Version byte in front of every encoded command.
pub const COMMAND_CODEC_VERSION: u8 = 1;

/// Largest encoded command, in bytes (a bound for buffers; checked by a test).
pub const COMMAND_BYTES_MAX: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    Version(u8),
    Malformed,
    TrailingBytes(usize),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Empty => write!(f, "empty command"),
            DecodeError::Version(v) => write!(f, "unknown command codec version {v}"),
            DecodeError::Malformed => write!(f, "malformed command bytes"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} trailing bytes after command"),
        }
    }
}

impl std::error::Error for DecodeError {}
