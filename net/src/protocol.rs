//! Typed protocol messages: what the wire carries, as plain Rust values.
//!
//! [`ClientRequest`] is what a client sends, already validated (known enum values,
//! required fields present, ids well-formed); [`ServerMessage`] is what the server
//! sends. `codec` turns both into frames and back. The account of a trading request
//! is deliberately absent: the session fills in the logged-on key's account, so a
//! client can never act for another account.

use bourse_engine::{
    AccountId, AssetId, Balance, BalanceReason, ClientOrderId, Command, CommandKind, DepthLevel,
    DoneReason, LogIndex, MarketId, MarketSpec, MarketStatus, OrderId, OrderRef, OrderType,
    PlaceOrder, RejectReason, Side, StpMode, Symbol, TimeInForce, TradeId, TxId,
};

use crate::auth::{KeyId, SIGNATURE_BYTES};

/// Per-session server sequence number (from 1; 0 on unsequenced messages).
pub type Seq = u64;
/// Client-chosen request id, carried in the envelope of client messages.
pub type RequestId = u64;
/// Server-assigned id of a resumable session.
pub type SessionId = u64;
/// A `wire::Body` tag (which message a frame carries).
pub type BodyType = u8;

/// Most book levels per side in a snapshot.
pub const BOOK_DEPTH_MAX: usize = 1000;
/// Book levels per side in a snapshot when the client asks for 0 (the default).
pub const BOOK_DEPTH_DEFAULT: usize = 50;
/// Most balances in one `Balances` reply (the engine's default `assets_max`).
pub const BALANCES_PER_REPLY_MAX: usize = 1024;
/// Most orders in one `OpenOrders` reply; more are flagged `truncated`.
pub const OPEN_ORDERS_PER_REPLY_MAX: usize = 256;
/// Most level changes in one `BookUpdate`; a command that changes more levels (a mass
/// cancel) is split over several updates with the same index.
pub const BOOK_CHANGES_PER_UPDATE_MAX: usize = 1000;
/// Most assets in one `Reference` reply; more are cut and the reply flagged `truncated`.
/// With `REFERENCE_MARKETS_MAX` chosen so that the largest reply (16-byte symbols, every
/// field at its maximum) fits `SERVER_FRAME_BYTES_MAX` (tested in tests/reference.rs).
pub const REFERENCE_ASSETS_MAX: usize = 256;
/// Most markets in one `Reference` reply; more are cut and the reply flagged `truncated`.
pub const REFERENCE_MARKETS_MAX: usize = 512;

/// Logon request. `signature = auth::sign(secret, nonce, key_id)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Logon {
    pub protocol_version: u16,
    pub key_id: KeyId,
    pub signature: [u8; SIGNATURE_BYTES],
    /// 0 for a new session; otherwise the session to resume.
    pub session_id: SessionId,
    /// First sequence number not yet processed by the client; 0 replays nothing.
    pub resume_from_seq: Seq,
    pub cancel_on_disconnect: bool,
}

/// A new order: the engine's `PlaceOrder` without the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub market: MarketId,
    pub client_order_id: ClientOrderId,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    pub post_only: bool,
    pub price: u64,
    pub qty: u64,
    pub quote_budget: u64,
    pub stp: StpMode,
}

impl NewOrder {
    /// The engine order for `account` (always the session's own account).
    pub fn to_place(&self, account: AccountId) -> PlaceOrder {
        PlaceOrder {
            account,
            market: self.market,
            client_order_id: self.client_order_id,
            side: self.side,
            order_type: self.order_type,
            tif: self.tif,
            post_only: self.post_only,
            price: self.price,
            qty: self.qty,
            quote_budget: self.quote_budget,
            stp: self.stp,
        }
    }

    pub fn from_place(place: &PlaceOrder) -> NewOrder {
        NewOrder {
            market: place.market,
            client_order_id: place.client_order_id,
            side: place.side,
            order_type: place.order_type,
            tif: place.tif,
            post_only: place.post_only,
            price: place.price,
            qty: place.qty,
            quote_budget: place.quote_budget,
            stp: place.stp,
        }
    }
}

/// Admin requests; each maps to one engine command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminRequest {
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
    /// `create_account`: create the receiver if it does not exist (else `UnknownReceiver`).
    Transfer {
        tx: TxId,
        from: AccountId,
        to: AccountId,
        asset: AssetId,
        amount: u64,
        create_account: bool,
    },
}

impl AdminRequest {
    pub fn to_command(&self) -> Command {
        match *self {
            AdminRequest::CreateAsset { asset, scale, symbol } => {
                Command::CreateAsset { asset, scale, symbol }
            }
            AdminRequest::CreateMarket(spec) => Command::CreateMarket(spec),
            AdminRequest::SetMarketStatus { market, status } => {
                Command::SetMarketStatus { market, status }
            }
            AdminRequest::Deposit { tx, account, asset, amount } => {
                Command::Deposit { tx, account, asset, amount }
            }
            AdminRequest::WithdrawRequest { tx, account, asset, amount } => {
                Command::WithdrawRequest { tx, account, asset, amount }
            }
            AdminRequest::WithdrawComplete { tx } => Command::WithdrawComplete { tx },
            AdminRequest::WithdrawCancel { tx } => Command::WithdrawCancel { tx },
            AdminRequest::Transfer { tx, from, to, asset, amount, create_account } => {
                Command::Transfer { tx, from, to, asset, amount, create_account }
            }
        }
    }
}

/// A validated client message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientRequest {
    Logon(Logon),
    Logout,
    Heartbeat {
        time_ns: u64,
    },
    NewOrder(NewOrder),
    Cancel(OrderRef),
    /// `price` 0 keeps the price; `qty` 0 keeps the quantity (new total, fills included).
    Amend {
        order: OrderRef,
        price: u64,
        qty: u64,
    },
    MassCancel {
        market: Option<MarketId>,
    },
    BalanceQuery,
    OpenOrdersQuery {
        market: Option<MarketId>,
    },
    /// `depth` 0 asks for `BOOK_DEPTH_DEFAULT` levels per side.
    Subscribe {
        market: MarketId,
        depth: u16,
    },
    Unsubscribe {
        market: MarketId,
    },
    Admin(AdminRequest),
    StatusQuery,
    /// Every asset and market (any logged-on key).
    ReferenceQuery,
}

/// Why the session layer refused something or closed the connection. Values are the
/// wire's `SessionReason` (never renumber).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum SessionReason {
    NotLoggedOn = 1,
    AlreadyLoggedOn = 2,
    UnsupportedVersion = 3,
    UnknownKey = 4,
    BadSignature = 5,
    NotPermitted = 6,
    RateLimited = 7,
    UnknownMessage = 8,
    Malformed = 9,
    InvalidField = 10,
    FrameTooLarge = 11,
    EmptyFrame = 12,
    ResumeTooOld = 13,
    ResumeAhead = 14,
    UnknownSession = 15,
    Replaced = 16,
    SessionsLimit = 17,
    LogonTimeout = 18,
    IdleTimeout = 19,
    SlowConsumer = 20,
    LoggedOut = 21,
    SubscriptionsLimit = 22,
    TooManyRejects = 23,
    Shutdown = 24,
    UnknownMarket = 25,
}

impl SessionReason {
    pub const ALL: [SessionReason; 25] = [
        SessionReason::NotLoggedOn,
        SessionReason::AlreadyLoggedOn,
        SessionReason::UnsupportedVersion,
        SessionReason::UnknownKey,
        SessionReason::BadSignature,
        SessionReason::NotPermitted,
        SessionReason::RateLimited,
        SessionReason::UnknownMessage,
        SessionReason::Malformed,
        SessionReason::InvalidField,
        SessionReason::FrameTooLarge,
        SessionReason::EmptyFrame,
        SessionReason::ResumeTooOld,
        SessionReason::ResumeAhead,
        SessionReason::UnknownSession,
        SessionReason::Replaced,
        SessionReason::SessionsLimit,
        SessionReason::LogonTimeout,
        SessionReason::IdleTimeout,
        SessionReason::SlowConsumer,
        SessionReason::LoggedOut,
        SessionReason::SubscriptionsLimit,
        SessionReason::TooManyRejects,
        SessionReason::Shutdown,
        SessionReason::UnknownMarket,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<SessionReason> {
        Self::ALL.iter().copied().find(|r| r.code() == code)
    }

    /// A short human-readable explanation (sent as the `text` of rejects and logouts).
    pub fn describe(self) -> &'static str {
        match self {
            SessionReason::NotLoggedOn => "log on first",
            SessionReason::AlreadyLoggedOn => "already logged on",
            SessionReason::UnsupportedVersion => "unsupported protocol version",
            SessionReason::UnknownKey => "unknown API key",
            SessionReason::BadSignature => "logon signature does not match",
            SessionReason::NotPermitted => "this key may not send this message",
            SessionReason::RateLimited => "rate limit exceeded; message dropped",
            SessionReason::UnknownMessage => "unknown message type",
            SessionReason::Malformed => "frame is not a valid BRS1 message",
            SessionReason::InvalidField => "missing, unknown or out-of-range field",
            SessionReason::FrameTooLarge => "frame is larger than the limit",
            SessionReason::EmptyFrame => "frame length is zero",
            SessionReason::ResumeTooOld => "resume sequence is older than what is retained",
            SessionReason::ResumeAhead => "resume sequence is beyond the session's next",
            SessionReason::UnknownSession => "no such session for this key",
            SessionReason::Replaced => "another connection resumed this session",
            SessionReason::SessionsLimit => "too many connections for this key",
            SessionReason::LogonTimeout => "no logon in time",
            SessionReason::IdleTimeout => "nothing received for too long",
            SessionReason::SlowConsumer => "client is not reading fast enough",
            SessionReason::LoggedOut => "logged out",
            SessionReason::SubscriptionsLimit => "too many subscriptions",
            SessionReason::TooManyRejects => "too many consecutive rejects",
            SessionReason::Shutdown => "server is shutting down",
            SessionReason::UnknownMarket => "no such market",
        }
    }
}

impl std::fmt::Display for SessionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// The role as the wire reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WireRole {
    #[default]
    Trader,
    Admin,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogonAck {
    pub session_id: SessionId,
    pub next_seq: Seq,
    pub replay_from: Seq,
    pub replay_count: u64,
    pub role: WireRole,
    /// 0 for admin keys.
    pub account: AccountId,
    pub cancel_on_disconnect: bool,
    pub heartbeat_interval_ms: u32,
    pub idle_timeout_ms: u32,
    pub rate_per_sec: u32,
    pub rate_burst: u32,
    pub protocol_version: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogonReject {
    pub reason: SessionReason,
    /// For `ResumeTooOld`: the oldest retained sequence number.
    pub oldest_seq: Seq,
    /// For `ResumeTooOld` / `ResumeAhead`: the session's next sequence number.
    pub next_seq: Seq,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptedReport {
    pub request_id: RequestId,
    pub order_id: OrderId,
    pub client_order_id: ClientOrderId,
    pub market: MarketId,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    pub post_only: bool,
    pub stp: StpMode,
    pub price: u64,
    pub qty: u64,
    pub quote_budget: u64,
    pub index: LogIndex,
    pub time_ns: u64,
}

/// Who refused: the engine (with the command and its reason) or the session layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectCause {
    Engine { command: CommandKind, reason: RejectReason },
    Session(SessionReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectReport {
    pub request_id: RequestId,
    /// Body type of the refused client message (0 when unknown).
    pub refused_type: BodyType,
    pub cause: RejectCause,
    pub order_id: OrderId,
    pub client_order_id: ClientOrderId,
    pub tx: TxId,
    pub duplicate: bool,
    pub index: LogIndex,
    pub time_ns: u64,
    /// `InsufficientFunds` (first answer only): the asset, needed and available amounts.
    pub shortfall: Option<bourse_engine::Shortfall>,
}

impl RejectReport {
    /// A session-level refusal of the client message `refused_type` / `request_id`.
    pub fn session(request_id: RequestId, refused_type: BodyType, reason: SessionReason) -> Self {
        RejectReport {
            request_id,
            refused_type,
            cause: RejectCause::Session(reason),
            order_id: 0,
            client_order_id: 0,
            tx: 0,
            duplicate: false,
            index: 0,
            time_ns: 0,
            shortfall: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liquidity {
    Maker,
    Taker,
}

/// One fill of one of the account's orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnTrade {
    pub trade_id: TradeId,
    pub market: MarketId,
    pub order_id: OrderId,
    pub client_order_id: ClientOrderId,
    pub side: Side,
    pub liquidity: Liquidity,
    pub price: u64,
    pub qty: u64,
    pub fee: u64,
    pub index: LogIndex,
    pub time_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoneReport {
    pub order_id: OrderId,
    pub client_order_id: ClientOrderId,
    pub market: MarketId,
    pub side: Side,
    pub reason: DoneReason,
    pub filled_qty: u64,
    pub index: LogIndex,
    pub time_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmendedReport {
    pub request_id: RequestId,
    pub order_id: OrderId,
    pub client_order_id: ClientOrderId,
    pub market: MarketId,
    pub side: Side,
    pub price: u64,
    pub qty: u64,
    pub leaves_qty: u64,
    pub priority_kept: bool,
    pub index: LogIndex,
    pub time_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MassCancelReport {
    pub request_id: RequestId,
    pub market: Option<MarketId>,
    pub count: u32,
    pub index: LogIndex,
    pub time_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceUpdate {
    pub asset: AssetId,
    pub delta_available: i64,
    pub delta_held: i64,
    pub available: u64,
    pub held: u64,
    pub reason: BalanceReason,
    pub index: LogIndex,
    pub time_ns: u64,
}

/// An open order as a query reply shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOrderInfo {
    pub order_id: OrderId,
    pub client_order_id: ClientOrderId,
    pub market: MarketId,
    pub side: Side,
    pub price: u64,
    pub qty: u64,
    pub leaves_qty: u64,
    pub filled_qty: u64,
    pub post_only: bool,
    pub stp: StpMode,
}

impl From<&bourse_engine::OrderView> for OpenOrderInfo {
    fn from(view: &bourse_engine::OrderView) -> OpenOrderInfo {
        OpenOrderInfo {
            order_id: view.order_id,
            client_order_id: view.client_order_id,
            market: view.market,
            side: view.side,
            price: view.price,
            qty: view.qty,
            leaves_qty: view.leaves_qty,
            filled_qty: view.filled_qty,
            post_only: view.post_only,
            stp: view.stp,
        }
    }
}

/// A change of one price level (qty 0: the level is gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelChange {
    pub side: Side,
    pub price: u64,
    pub qty: u64,
    pub orders: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicTrade {
    pub market: MarketId,
    pub trade_id: TradeId,
    pub price: u64,
    pub qty: u64,
    pub taker_side: Side,
    pub index: LogIndex,
    pub time_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusReport {
    pub request_id: RequestId,
    pub last_index: LogIndex,
    pub state_hash: [u8; 32],
    pub uptime_ns: u64,
    pub sessions: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminKind {
    AssetCreated,
    MarketCreated,
    MarketStatus,
    Deposit,
    WithdrawRequest,
    WithdrawComplete,
    WithdrawCancel,
    Transfer,
}

/// An admin command took effect (fields that do not apply to `kind` are 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminAck {
    pub request_id: RequestId,
    pub kind: AdminKind,
    pub tx: TxId,
    pub account: AccountId,
    pub counterparty: AccountId,
    pub asset: AssetId,
    pub market: MarketId,
    pub amount: u64,
    pub status: MarketStatus,
    pub scale: u8,
    pub duplicate: bool,
    pub index: LogIndex,
    pub time_ns: u64,
}

/// One asset as a `Reference` reply shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssetInfo {
    pub asset: AssetId,
    /// Decimal places of the minor unit.
    pub scale: u8,
    pub symbol: Symbol,
}

impl From<&bourse_engine::AssetView> for AssetInfo {
    fn from(view: &bourse_engine::AssetView) -> AssetInfo {
        AssetInfo { asset: view.asset, scale: view.scale, symbol: view.symbol }
    }
}

/// One market as a `Reference` reply shows it: its spec and whether it trades.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarketInfo {
    pub spec: MarketSpec,
    pub status: MarketStatus,
}

impl From<&bourse_engine::MarketView> for MarketInfo {
    fn from(view: &bourse_engine::MarketView) -> MarketInfo {
        MarketInfo { spec: view.spec, status: view.status }
    }
}

/// A server message. Lists borrow their items, so encoding never copies them into an
/// owned container; decoding fills a reusable `codec::DecodeScratch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerMessage<'a> {
    LogonChallenge {
        nonce: [u8; 32],
        protocol_version: u16,
    },
    LogonAck(LogonAck),
    LogonReject(LogonReject),
    Logout {
        reason: SessionReason,
    },
    Heartbeat {
        time_ns: u64,
    },
    Accepted(AcceptedReport),
    Rejected(RejectReport),
    Trade(OwnTrade),
    Done(DoneReport),
    Amended(AmendedReport),
    MassCancelDone(MassCancelReport),
    Balances {
        request_id: RequestId,
        balances: &'a [(AssetId, Balance)],
    },
    BalanceUpdate(BalanceUpdate),
    OpenOrders {
        request_id: RequestId,
        orders: &'a [OpenOrderInfo],
        truncated: bool,
    },
    BookSnapshot {
        request_id: RequestId,
        market: MarketId,
        index: LogIndex,
        bids: &'a [DepthLevel],
        asks: &'a [DepthLevel],
    },
    BookUpdate {
        market: MarketId,
        index: LogIndex,
        time_ns: u64,
        changes: &'a [LevelChange],
    },
    PublicTrade(PublicTrade),
    Status(StatusReport),
    AdminAck(AdminAck),
    /// Assets and markets, ascending ids (at most `REFERENCE_ASSETS_MAX` /
    /// `REFERENCE_MARKETS_MAX`; `truncated` when there were more).
    Reference {
        request_id: RequestId,
        assets: &'a [AssetInfo],
        markets: &'a [MarketInfo],
        truncated: bool,
    },
}

impl ServerMessage<'_> {
    /// Whether the message takes a session sequence number (and is kept for resume).
    /// Session control and market data are not sequenced.
    pub fn is_sequenced(&self) -> bool {
        match self {
            // Engine outcomes are history, rebuilt from the command log on replay.
            ServerMessage::Accepted(_)
            | ServerMessage::Trade(_)
            | ServerMessage::Done(_)
            | ServerMessage::Amended(_)
            | ServerMessage::MassCancelDone(_)
            | ServerMessage::BalanceUpdate(_)
            | ServerMessage::AdminAck(_) => true,
            ServerMessage::Rejected(r) => matches!(r.cause, RejectCause::Engine { .. }),
            // Session control, market data and answers to queries belong to one
            // connection.
            _ => false,
        }
    }
}
