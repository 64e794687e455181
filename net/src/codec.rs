//! Encoding and decoding of whole frames, both directions.
//!
//! The server decodes client frames with [`decode_client`] and encodes its messages with
//! [`Encoder::encode_server`]; the client library does the mirror image with
//! [`Encoder::encode_client`] and [`decode_server`]. Every decode runs the bounded
//! FlatBuffers verifier first (`frame::verify`) and then validates values (enum values
//! the receiver knows, ids well-formed, fixed-size fields of the right size), so a
//! decoded value is always meaningful. Decoding never panics on any input.
//!
//! Allocation: an `Encoder` reuses one `FlatBufferBuilder`, and callers pass the output
//! buffer, so after the first few messages encoding allocates nothing.
//! `decode_client` never allocates on success; `decode_server` fills a reusable
//! `DecodeScratch` for list-carrying messages.

use bourse_engine::{
    AssetId, Balance, BalanceReason, CommandKind, DepthLevel, DoneReason, MarketSpec, MarketStatus,
    OrderRef, OrderType, RejectReason, Shortfall, Side, StpMode, Symbol, TimeInForce,
};
use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, VerifierOptions, WIPOffset};

use crate::auth::{NONCE_BYTES, SIGNATURE_BYTES};
use crate::frame::{self, VerifyError, FRAME_HEADER_BYTES};
use crate::protocol::*;
use crate::wire as fb;

/// Why a frame could not be decoded into a typed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a valid "BRS1" `Message`: the peer does not speak the protocol.
    #[error("malformed frame: {0}")]
    Malformed(VerifyError),
    /// A valid message of a type the receiver does not take (unknown, or meant for the
    /// other direction).
    #[error("unknown message type {body_type}")]
    UnknownMessage { request_id: RequestId, body_type: BodyType },
    /// A valid message with a field the receiver cannot accept.
    #[error("invalid field {field} in message type {body_type}")]
    InvalidField { request_id: RequestId, body_type: BodyType, field: &'static str },
}

impl DecodeError {
    /// The session-level reason a server reports for this error.
    pub fn session_reason(&self) -> SessionReason {
        match self {
            DecodeError::Malformed(_) => SessionReason::Malformed,
            DecodeError::UnknownMessage { .. } => SessionReason::UnknownMessage,
            DecodeError::InvalidField { .. } => SessionReason::InvalidField,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("encoded message of {len} bytes is above the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("{what} has {len} items, more than {max}")]
    ListTooLong { what: &'static str, len: usize, max: usize },
}

/// Maps between an engine (or protocol) enum and the generated wire enum. The wire side
/// is an open newtype, so the way back is partial.
macro_rules! enum_map {
    ($to:ident, $from:ident, $ours:ty, $wire:ty, { $($a:path => $b:path),+ $(,)? }) => {
        fn $to(value: $ours) -> $wire {
            match value { $($a => $b),+ }
        }
        fn $from(value: $wire) -> Option<$ours> {
            match value { $($b => Some($a),)+ _ => None }
        }
    };
}

enum_map!(side_to_wire, side_from_wire, Side, fb::Side, {
    Side::Buy => fb::Side::Buy,
    Side::Sell => fb::Side::Sell,
});
enum_map!(order_type_to_wire, order_type_from_wire, OrderType, fb::OrderType, {
    OrderType::Limit => fb::OrderType::Limit,
    OrderType::Market => fb::OrderType::Market,
});
enum_map!(tif_to_wire, tif_from_wire, TimeInForce, fb::TimeInForce, {
    TimeInForce::Gtc => fb::TimeInForce::Gtc,
    TimeInForce::Ioc => fb::TimeInForce::Ioc,
    TimeInForce::Fok => fb::TimeInForce::Fok,
});
enum_map!(stp_to_wire, stp_from_wire, StpMode, fb::StpMode, {
    StpMode::CancelTaker => fb::StpMode::CancelTaker,
    StpMode::CancelMaker => fb::StpMode::CancelMaker,
    StpMode::CancelBoth => fb::StpMode::CancelBoth,
    StpMode::Decrement => fb::StpMode::Decrement,
});
enum_map!(status_to_wire, status_from_wire, MarketStatus, fb::MarketStatus, {
    MarketStatus::Open => fb::MarketStatus::Open,
    MarketStatus::Halted => fb::MarketStatus::Halted,
});
enum_map!(done_to_wire, done_from_wire, DoneReason, fb::DoneReason, {
    DoneReason::Filled => fb::DoneReason::Filled,
    DoneReason::Cancelled => fb::DoneReason::Cancelled,
    DoneReason::Expired => fb::DoneReason::Expired,
    DoneReason::SelfTradePrevented => fb::DoneReason::SelfTradePrevented,
});
enum_map!(liquidity_to_wire, liquidity_from_wire, Liquidity, fb::Liquidity, {
    Liquidity::Maker => fb::Liquidity::Maker,
    Liquidity::Taker => fb::Liquidity::Taker,
});
enum_map!(role_to_wire, role_from_wire, WireRole, fb::Role, {
    WireRole::Trader => fb::Role::Trader,
    WireRole::Admin => fb::Role::Admin,
});
enum_map!(command_to_wire, command_from_wire, CommandKind, fb::CommandKind, {
    CommandKind::CreateAsset => fb::CommandKind::CreateAsset,
    CommandKind::CreateMarket => fb::CommandKind::CreateMarket,
    CommandKind::SetMarketStatus => fb::CommandKind::SetMarketStatus,
    CommandKind::Deposit => fb::CommandKind::Deposit,
    CommandKind::WithdrawRequest => fb::CommandKind::WithdrawRequest,
    CommandKind::WithdrawComplete => fb::CommandKind::WithdrawComplete,
    CommandKind::WithdrawCancel => fb::CommandKind::WithdrawCancel,
    CommandKind::Transfer => fb::CommandKind::Transfer,
    CommandKind::Place => fb::CommandKind::Place,
    CommandKind::Cancel => fb::CommandKind::Cancel,
    CommandKind::Amend => fb::CommandKind::Amend,
    CommandKind::MassCancel => fb::CommandKind::MassCancel,
});
enum_map!(admin_kind_to_wire, admin_kind_from_wire, AdminKind, fb::AdminKind, {
    AdminKind::AssetCreated => fb::AdminKind::AssetCreated,
    AdminKind::MarketCreated => fb::AdminKind::MarketCreated,
    AdminKind::MarketStatus => fb::AdminKind::MarketStatus,
    AdminKind::Deposit => fb::AdminKind::Deposit,
    AdminKind::WithdrawRequest => fb::AdminKind::WithdrawRequest,
    AdminKind::WithdrawComplete => fb::AdminKind::WithdrawComplete,
    AdminKind::WithdrawCancel => fb::AdminKind::WithdrawCancel,
    AdminKind::Transfer => fb::AdminKind::Transfer,
});

fn balance_reason_to_wire(reason: BalanceReason) -> (fb::BalanceReason, u64) {
    match reason {
        BalanceReason::Deposit(tx) => (fb::BalanceReason::Deposit, tx),
        BalanceReason::WithdrawHold(tx) => (fb::BalanceReason::WithdrawHold, tx),
        BalanceReason::WithdrawComplete(tx) => (fb::BalanceReason::WithdrawComplete, tx),
        BalanceReason::WithdrawCancel(tx) => (fb::BalanceReason::WithdrawCancel, tx),
        BalanceReason::TransferOut(tx) => (fb::BalanceReason::TransferOut, tx),
        BalanceReason::TransferIn(tx) => (fb::BalanceReason::TransferIn, tx),
        BalanceReason::OrderHold(id) => (fb::BalanceReason::OrderHold, id),
        BalanceReason::OrderRelease(id) => (fb::BalanceReason::OrderRelease, id),
        BalanceReason::Trade(id) => (fb::BalanceReason::Trade, id),
        BalanceReason::Fee(id) => (fb::BalanceReason::Fee, id),
    }
}

fn balance_reason_from_wire(kind: fb::BalanceReason, id: u64) -> Option<BalanceReason> {
    Some(match kind {
        fb::BalanceReason::Deposit => BalanceReason::Deposit(id),
        fb::BalanceReason::WithdrawHold => BalanceReason::WithdrawHold(id),
        fb::BalanceReason::WithdrawComplete => BalanceReason::WithdrawComplete(id),
        fb::BalanceReason::WithdrawCancel => BalanceReason::WithdrawCancel(id),
        fb::BalanceReason::TransferOut => BalanceReason::TransferOut(id),
        fb::BalanceReason::TransferIn => BalanceReason::TransferIn(id),
        fb::BalanceReason::OrderHold => BalanceReason::OrderHold(id),
        fb::BalanceReason::OrderRelease => BalanceReason::OrderRelease(id),
        fb::BalanceReason::Trade => BalanceReason::Trade(id),
        fb::BalanceReason::Fee => BalanceReason::Fee(id),
        _ => return None,
    })
}

/// Exactly one of the two ids names the order.
fn order_ref_from_wire(order_id: u64, client_order_id: u64) -> Option<OrderRef> {
    match (order_id, client_order_id) {
        (0, 0) => None,
        (id, 0) => Some(OrderRef::Id(id)),
        (0, client) => Some(OrderRef::Client(client)),
        _ => None,
    }
}

fn order_ref_to_wire(order: OrderRef) -> (u64, u64) {
    match order {
        OrderRef::Id(id) => (id, 0),
        OrderRef::Client(client) => (0, client),
    }
}

fn symbol_from_wire(text: &str) -> Option<Symbol> {
    Symbol::new(text)
}

/// Encodes messages into frames, reusing one builder.
///
/// One per connection-handling core (server) or per connection (client library).
pub struct Encoder {
    fbb: FlatBufferBuilder<'static>,
    /// Reused lists of table offsets for the replies that carry tables.
    offsets: Offsets,
    frame_bytes_max: usize,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").field("frame_bytes_max", &self.frame_bytes_max).finish()
    }
}

impl Encoder {
    /// An encoder that refuses to produce messages above `frame_bytes_max` bytes.
    pub fn new(frame_bytes_max: usize) -> Encoder {
        assert!(frame_bytes_max <= frame::FRAME_BYTES_MAX_CEILING);
        Encoder {
            fbb: FlatBufferBuilder::with_capacity(frame_bytes_max),
            offsets: Offsets {
                orders: Vec::with_capacity(OPEN_ORDERS_PER_REPLY_MAX),
                assets: Vec::new(),
                markets: Vec::new(),
            },
            frame_bytes_max,
        }
    }

    /// Encoder for server messages (limit `SERVER_FRAME_BYTES_MAX`).
    pub fn for_server() -> Encoder {
        Encoder::new(frame::SERVER_FRAME_BYTES_MAX)
    }

    /// Encoder for client messages (limit `FRAME_BYTES_MAX`).
    pub fn for_client() -> Encoder {
        Encoder::new(frame::FRAME_BYTES_MAX)
    }

    /// Appends one frame carrying `message` with sequence number `seq` to `out` and
    /// returns its length. On error `out` is unchanged.
    pub fn encode_server(
        &mut self,
        seq: Seq,
        message: &ServerMessage<'_>,
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        check_list_bounds(message)?;
        self.fbb.reset();
        let (body_type, body) = build_server(&mut self.fbb, &mut self.offsets, message);
        self.finish(seq, body_type, body, out)
    }

    /// Appends one frame carrying `request` with envelope `request_id` to `out`.
    pub fn encode_client(
        &mut self,
        request_id: RequestId,
        request: &ClientRequest,
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        self.fbb.reset();
        let (body_type, body) = build_client(&mut self.fbb, request);
        self.finish(request_id, body_type, body, out)
    }

    fn finish(
        &mut self,
        seq: u64,
        body_type: fb::Body,
        body: WIPOffset<UnionWIPOffset>,
        out: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        let args = fb::MessageArgs { seq, body_type, body: Some(body) };
        let message = fb::Message::create(&mut self.fbb, &args);
        self.fbb.finish_size_prefixed(message, Some(fb::MESSAGE_IDENTIFIER));
        let data = self.fbb.finished_data();
        let len = data.len() - FRAME_HEADER_BYTES;
        if len > self.frame_bytes_max {
            return Err(EncodeError::TooLarge { len, max: self.frame_bytes_max });
        }
        out.extend_from_slice(data);
        Ok(data.len())
    }
}

fn check_list(what: &'static str, len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max {
        return Err(EncodeError::ListTooLong { what, len, max });
    }
    Ok(())
}

fn check_list_bounds(message: &ServerMessage<'_>) -> Result<(), EncodeError> {
    match message {
        ServerMessage::Balances { balances, .. } => {
            check_list("balances", balances.len(), BALANCES_PER_REPLY_MAX)
        }
        ServerMessage::OpenOrders { orders, .. } => {
            check_list("orders", orders.len(), OPEN_ORDERS_PER_REPLY_MAX)
        }
        ServerMessage::BookSnapshot { bids, asks, .. } => {
            check_list("bids", bids.len(), BOOK_DEPTH_MAX)?;
            check_list("asks", asks.len(), BOOK_DEPTH_MAX)
        }
        ServerMessage::BookUpdate { changes, .. } => {
            check_list("changes", changes.len(), BOOK_CHANGES_PER_UPDATE_MAX)
        }
        ServerMessage::Reference { assets, markets, .. } => {
            check_list("assets", assets.len(), REFERENCE_ASSETS_MAX)?;
            check_list("markets", markets.len(), REFERENCE_MARKETS_MAX)
        }
        _ => Ok(()),
    }
}

type Fbb = FlatBufferBuilder<'static>;
/// Table offsets of list items, kept between messages so encoding does not allocate.
/// (Tables, unlike structs, are written before the vector that points at them.)
struct Offsets {
    orders: Vec<WIPOffset<fb::OpenOrder<'static>>>,
    assets: Vec<WIPOffset<fb::AssetInfo<'static>>>,
    markets: Vec<WIPOffset<fb::MarketInfo<'static>>>,
}
type Body = (fb::Body, WIPOffset<UnionWIPOffset>);

fn build_client(fbb: &mut Fbb, request: &ClientRequest) -> Body {
    match *request {
        ClientRequest::Logon(logon) => {
            let signature = fbb.create_vector(&logon.signature);
            let args = fb::LogonArgs {
                protocol_version: logon.protocol_version,
                key_id: logon.key_id,
                signature: Some(signature),
                session_id: logon.session_id,
                resume_from_seq: logon.resume_from_seq,
                cancel_on_disconnect: logon.cancel_on_disconnect,
            };
            (fb::Body::Logon, fb::Logon::create(fbb, &args).as_union_value())
        }
        ClientRequest::Logout => {
            let args = fb::LogoutArgs { reason: fb::SessionReason::None, text: None };
            (fb::Body::Logout, fb::Logout::create(fbb, &args).as_union_value())
        }
        ClientRequest::Heartbeat { time_ns } => {
            let args = fb::HeartbeatArgs { time_ns };
            (fb::Body::Heartbeat, fb::Heartbeat::create(fbb, &args).as_union_value())
        }
        ClientRequest::NewOrder(order) => {
            let args = fb::NewOrderArgs {
                market: order.market,
                client_order_id: order.client_order_id,
                side: side_to_wire(order.side),
                order_type: order_type_to_wire(order.order_type),
                tif: tif_to_wire(order.tif),
                post_only: order.post_only,
                price: order.price,
                qty: order.qty,
                quote_budget: order.quote_budget,
                stp: stp_to_wire(order.stp),
            };
            (fb::Body::NewOrder, fb::NewOrder::create(fbb, &args).as_union_value())
        }
        ClientRequest::Cancel(order) => {
            let (order_id, client_order_id) = order_ref_to_wire(order);
            let args = fb::CancelArgs { order_id, client_order_id };
            (fb::Body::Cancel, fb::Cancel::create(fbb, &args).as_union_value())
        }
        ClientRequest::Amend { order, price, qty } => {
            let (order_id, client_order_id) = order_ref_to_wire(order);
            let args = fb::AmendArgs { order_id, client_order_id, price, qty };
            (fb::Body::Amend, fb::Amend::create(fbb, &args).as_union_value())
        }
        ClientRequest::MassCancel { market } => {
            let args = fb::MassCancelArgs { market };
            (fb::Body::MassCancel, fb::MassCancel::create(fbb, &args).as_union_value())
        }
        ClientRequest::BalanceQuery => {
            let args = fb::BalanceQueryArgs {};
            (fb::Body::BalanceQuery, fb::BalanceQuery::create(fbb, &args).as_union_value())
        }
        ClientRequest::OpenOrdersQuery { market } => {
            let args = fb::OpenOrdersQueryArgs { market };
            let table = fb::OpenOrdersQuery::create(fbb, &args);
            (fb::Body::OpenOrdersQuery, table.as_union_value())
        }
        ClientRequest::Subscribe { market, depth } => {
            let args = fb::SubscribeArgs { market, depth };
            (fb::Body::Subscribe, fb::Subscribe::create(fbb, &args).as_union_value())
        }
        ClientRequest::Unsubscribe { market } => {
            let args = fb::UnsubscribeArgs { market };
            (fb::Body::Unsubscribe, fb::Unsubscribe::create(fbb, &args).as_union_value())
        }
        ClientRequest::Admin(admin) => build_admin(fbb, &admin),
        ClientRequest::StatusQuery => {
            let args = fb::StatusQueryArgs {};
            (fb::Body::StatusQuery, fb::StatusQuery::create(fbb, &args).as_union_value())
        }
        ClientRequest::ReferenceQuery => {
            let args = fb::ReferenceQueryArgs {};
            (fb::Body::ReferenceQuery, fb::ReferenceQuery::create(fbb, &args).as_union_value())
        }
    }
}

fn build_admin(fbb: &mut Fbb, admin: &AdminRequest) -> Body {
    match *admin {
        AdminRequest::CreateAsset { asset, scale, symbol } => {
            let symbol = fbb.create_string(symbol.as_str());
            let args = fb::CreateAssetArgs { asset, scale, symbol: Some(symbol) };
            (fb::Body::CreateAsset, fb::CreateAsset::create(fbb, &args).as_union_value())
        }
        AdminRequest::CreateMarket(spec) => {
            let symbol = fbb.create_string(spec.symbol.as_str());
            let args = fb::CreateMarketArgs {
                market: spec.market,
                symbol: Some(symbol),
                base: spec.base,
                quote: spec.quote,
                tick_size: spec.tick_size,
                lot_size: spec.lot_size,
                min_notional: spec.min_notional,
                maker_fee_bps: spec.maker_fee_bps,
                taker_fee_bps: spec.taker_fee_bps,
            };
            (fb::Body::CreateMarket, fb::CreateMarket::create(fbb, &args).as_union_value())
        }
        AdminRequest::SetMarketStatus { market, status } => {
            let args = fb::SetMarketStatusArgs { market, status: status_to_wire(status) };
            let table = fb::SetMarketStatus::create(fbb, &args);
            (fb::Body::SetMarketStatus, table.as_union_value())
        }
        AdminRequest::Deposit { tx, account, asset, amount } => {
            let args = fb::DepositArgs { tx, account, asset, amount };
            (fb::Body::Deposit, fb::Deposit::create(fbb, &args).as_union_value())
        }
        AdminRequest::WithdrawRequest { tx, account, asset, amount } => {
            let args = fb::WithdrawRequestArgs { tx, account, asset, amount };
            let table = fb::WithdrawRequest::create(fbb, &args);
            (fb::Body::WithdrawRequest, table.as_union_value())
        }
        AdminRequest::WithdrawComplete { tx } => {
            let args = fb::WithdrawCompleteArgs { tx };
            let table = fb::WithdrawComplete::create(fbb, &args);
            (fb::Body::WithdrawComplete, table.as_union_value())
        }
        AdminRequest::WithdrawCancel { tx } => {
            let args = fb::WithdrawCancelArgs { tx };
            let table = fb::WithdrawCancel::create(fbb, &args);
            (fb::Body::WithdrawCancel, table.as_union_value())
        }
        AdminRequest::Transfer { tx, from, to, asset, amount, create_account } => {
            let args = fb::TransferArgs { tx, from, to, asset, amount, create_account };
            (fb::Body::Transfer, fb::Transfer::create(fbb, &args).as_union_value())
        }
    }
}

fn build_server(fbb: &mut Fbb, offsets: &mut Offsets, message: &ServerMessage<'_>) -> Body {
    match *message {
        ServerMessage::LogonChallenge { nonce, protocol_version } => {
            let nonce = fbb.create_vector(&nonce);
            let args = fb::LogonChallengeArgs { nonce: Some(nonce), protocol_version };
            (fb::Body::LogonChallenge, fb::LogonChallenge::create(fbb, &args).as_union_value())
        }
        ServerMessage::LogonAck(ack) => build_logon_ack(fbb, &ack),
        ServerMessage::LogonReject(reject) => {
            let text = fbb.create_string(reject.reason.describe());
            let args = fb::LogonRejectArgs {
                reason: fb::SessionReason(reject.reason.code()),
                text: Some(text),
                oldest_seq: reject.oldest_seq,
                next_seq: reject.next_seq,
            };
            (fb::Body::LogonReject, fb::LogonReject::create(fbb, &args).as_union_value())
        }
        ServerMessage::Logout { reason } => {
            let text = fbb.create_string(reason.describe());
            let args =
                fb::LogoutArgs { reason: fb::SessionReason(reason.code()), text: Some(text) };
            (fb::Body::Logout, fb::Logout::create(fbb, &args).as_union_value())
        }
        ServerMessage::Heartbeat { time_ns } => {
            let args = fb::HeartbeatArgs { time_ns };
            (fb::Body::Heartbeat, fb::Heartbeat::create(fbb, &args).as_union_value())
        }
        ServerMessage::Accepted(accepted) => build_accepted(fbb, &accepted),
        ServerMessage::Rejected(reject) => build_rejected(fbb, &reject),
        ServerMessage::Trade(trade) => build_trade(fbb, &trade),
        ServerMessage::Done(done) => build_done(fbb, &done),
        ServerMessage::Amended(amended) => build_amended(fbb, &amended),
        ServerMessage::MassCancelDone(m) => {
            let args = fb::MassCancelDoneArgs {
                request_id: m.request_id,
                market: m.market,
                count: m.count,
                index: m.index,
                time_ns: m.time_ns,
            };
            (fb::Body::MassCancelDone, fb::MassCancelDone::create(fbb, &args).as_union_value())
        }
        ServerMessage::Balances { request_id, balances } => {
            let items = balances.iter().map(|(asset, balance)| {
                fb::AssetBalance::new(*asset, balance.available, balance.held)
            });
            let balances = fbb.create_vector_from_iter(items);
            let args = fb::BalancesArgs { request_id, balances: Some(balances) };
            (fb::Body::Balances, fb::Balances::create(fbb, &args).as_union_value())
        }
        ServerMessage::BalanceUpdate(update) => build_balance_update(fbb, &update),
        ServerMessage::OpenOrders { request_id, orders, truncated } => {
            build_open_orders(fbb, &mut offsets.orders, request_id, orders, truncated)
        }
        ServerMessage::BookSnapshot { request_id, market, index, bids, asks } => {
            let level = |l: &DepthLevel| fb::Level::new(l.price, l.qty, l.orders);
            let bids = fbb.create_vector_from_iter(bids.iter().map(level));
            let asks = fbb.create_vector_from_iter(asks.iter().map(level));
            let args = fb::BookSnapshotArgs {
                request_id,
                market,
                index,
                bids: Some(bids),
                asks: Some(asks),
            };
            (fb::Body::BookSnapshot, fb::BookSnapshot::create(fbb, &args).as_union_value())
        }
        ServerMessage::BookUpdate { market, index, time_ns, changes } => {
            let change = |c: &LevelChange| {
                fb::LevelChange::new(side_to_wire(c.side), c.price, c.qty, c.orders)
            };
            let changes = fbb.create_vector_from_iter(changes.iter().map(change));
            let args = fb::BookUpdateArgs { market, index, time_ns, changes: Some(changes) };
            (fb::Body::BookUpdate, fb::BookUpdate::create(fbb, &args).as_union_value())
        }
        ServerMessage::PublicTrade(t) => {
            let args = fb::PublicTradeArgs {
                market: t.market,
                trade_id: t.trade_id,
                price: t.price,
                qty: t.qty,
                taker_side: side_to_wire(t.taker_side),
                index: t.index,
                time_ns: t.time_ns,
            };
            (fb::Body::PublicTrade, fb::PublicTrade::create(fbb, &args).as_union_value())
        }
        ServerMessage::Status(status) => {
            let hash = fbb.create_vector(&status.state_hash);
            let args = fb::StatusArgs {
                request_id: status.request_id,
                last_index: status.last_index,
                state_hash: Some(hash),
                uptime_ns: status.uptime_ns,
                sessions: status.sessions,
            };
            (fb::Body::Status, fb::Status::create(fbb, &args).as_union_value())
        }
        ServerMessage::AdminAck(ack) => build_admin_ack(fbb, &ack),
        ServerMessage::Reference { request_id, assets, markets, truncated } => {
            build_reference(fbb, offsets, request_id, assets, markets, truncated)
        }
    }
}

fn build_logon_ack(fbb: &mut Fbb, ack: &LogonAck) -> Body {
    let args = fb::LogonAckArgs {
        session_id: ack.session_id,
        next_seq: ack.next_seq,
        replay_from: ack.replay_from,
        replay_count: ack.replay_count,
        role: role_to_wire(ack.role),
        account: ack.account,
        cancel_on_disconnect: ack.cancel_on_disconnect,
        heartbeat_interval_ms: ack.heartbeat_interval_ms,
        idle_timeout_ms: ack.idle_timeout_ms,
        rate_per_sec: ack.rate_per_sec,
        rate_burst: ack.rate_burst,
        protocol_version: ack.protocol_version,
    };
    (fb::Body::LogonAck, fb::LogonAck::create(fbb, &args).as_union_value())
}

fn build_accepted(fbb: &mut Fbb, a: &AcceptedReport) -> Body {
    let args = fb::AcceptedArgs {
        request_id: a.request_id,
        order_id: a.order_id,
        client_order_id: a.client_order_id,
        market: a.market,
        side: side_to_wire(a.side),
        order_type: order_type_to_wire(a.order_type),
        tif: tif_to_wire(a.tif),
        post_only: a.post_only,
        stp: stp_to_wire(a.stp),
        price: a.price,
        qty: a.qty,
        quote_budget: a.quote_budget,
        index: a.index,
        time_ns: a.time_ns,
    };
    (fb::Body::Accepted, fb::Accepted::create(fbb, &args).as_union_value())
}

fn build_rejected(fbb: &mut Fbb, reject: &RejectReport) -> Body {
    let (command, reason_code, session_reason, text) = match reject.cause {
        RejectCause::Engine { command, reason } => {
            (command_to_wire(command), reason.code(), fb::SessionReason::None, reason.describe())
        }
        RejectCause::Session(reason) => {
            (fb::CommandKind::default(), 0, fb::SessionReason(reason.code()), reason.describe())
        }
    };
    let text = fbb.create_string(text);
    // No shortfall is all zeros: an `InsufficientFunds` shortfall always needs more than 0.
    let shortfall = reject.shortfall.unwrap_or(Shortfall { asset: 0, needed: 0, available: 0 });
    assert!(reject.shortfall.is_none() || shortfall.needed > shortfall.available);
    let args = fb::RejectedArgs {
        request_id: reject.request_id,
        refused_type: reject.refused_type,
        command,
        reason_code,
        session_reason,
        order_id: reject.order_id,
        client_order_id: reject.client_order_id,
        tx: reject.tx,
        duplicate: reject.duplicate,
        index: reject.index,
        time_ns: reject.time_ns,
        text: Some(text),
        shortfall_asset: shortfall.asset,
        needed: shortfall.needed,
        available: shortfall.available,
    };
    (fb::Body::Rejected, fb::Rejected::create(fbb, &args).as_union_value())
}

fn build_trade(fbb: &mut Fbb, t: &OwnTrade) -> Body {
    let args = fb::TradeArgs {
        trade_id: t.trade_id,
        market: t.market,
        order_id: t.order_id,
        client_order_id: t.client_order_id,
        side: side_to_wire(t.side),
        liquidity: liquidity_to_wire(t.liquidity),
        price: t.price,
        qty: t.qty,
        fee: t.fee,
        index: t.index,
        time_ns: t.time_ns,
    };
    (fb::Body::Trade, fb::Trade::create(fbb, &args).as_union_value())
}

fn build_done(fbb: &mut Fbb, d: &DoneReport) -> Body {
    let args = fb::DoneArgs {
        order_id: d.order_id,
        client_order_id: d.client_order_id,
        market: d.market,
        side: side_to_wire(d.side),
        reason: done_to_wire(d.reason),
        filled_qty: d.filled_qty,
        index: d.index,
        time_ns: d.time_ns,
    };
    (fb::Body::Done, fb::Done::create(fbb, &args).as_union_value())
}

fn build_amended(fbb: &mut Fbb, a: &AmendedReport) -> Body {
    let args = fb::AmendedArgs {
        request_id: a.request_id,
        order_id: a.order_id,
        client_order_id: a.client_order_id,
        market: a.market,
        side: side_to_wire(a.side),
        price: a.price,
        qty: a.qty,
        leaves_qty: a.leaves_qty,
        priority_kept: a.priority_kept,
        index: a.index,
        time_ns: a.time_ns,
    };
    (fb::Body::Amended, fb::Amended::create(fbb, &args).as_union_value())
}

fn build_balance_update(fbb: &mut Fbb, b: &BalanceUpdate) -> Body {
    let (reason, ref_id) = balance_reason_to_wire(b.reason);
    let args = fb::BalanceUpdateArgs {
        asset: b.asset,
        delta_available: b.delta_available,
        delta_held: b.delta_held,
        available: b.available,
        held: b.held,
        reason,
        ref_id,
        index: b.index,
        time_ns: b.time_ns,
    };
    (fb::Body::BalanceUpdate, fb::BalanceUpdate::create(fbb, &args).as_union_value())
}

fn build_open_orders(
    fbb: &mut Fbb,
    offsets: &mut Vec<WIPOffset<fb::OpenOrder<'static>>>,
    request_id: RequestId,
    orders: &[OpenOrderInfo],
    truncated: bool,
) -> Body {
    // Each order is a table; the vector of offsets to them is built after them, from
    // offsets kept in a reused buffer.
    offsets.clear();
    for order in orders {
        let args = fb::OpenOrderArgs {
            order_id: order.order_id,
            client_order_id: order.client_order_id,
            market: order.market,
            side: side_to_wire(order.side),
            price: order.price,
            qty: order.qty,
            leaves_qty: order.leaves_qty,
            filled_qty: order.filled_qty,
            post_only: order.post_only,
            stp: stp_to_wire(order.stp),
        };
        offsets.push(fb::OpenOrder::create(fbb, &args));
    }
    let orders = fbb.create_vector(offsets);
    let args = fb::OpenOrdersArgs { request_id, orders: Some(orders), truncated };
    (fb::Body::OpenOrders, fb::OpenOrders::create(fbb, &args).as_union_value())
}

fn build_reference(
    fbb: &mut Fbb,
    offsets: &mut Offsets,
    request_id: RequestId,
    assets: &[AssetInfo],
    markets: &[MarketInfo],
    truncated: bool,
) -> Body {
    offsets.assets.clear();
    for asset in assets {
        let symbol = fbb.create_string(asset.symbol.as_str());
        let args =
            fb::AssetInfoArgs { asset: asset.asset, scale: asset.scale, symbol: Some(symbol) };
        offsets.assets.push(fb::AssetInfo::create(fbb, &args));
    }
    let assets = fbb.create_vector(&offsets.assets);
    offsets.markets.clear();
    for market in markets {
        let spec = &market.spec;
        let symbol = fbb.create_string(spec.symbol.as_str());
        let args = fb::MarketInfoArgs {
            market: spec.market,
            symbol: Some(symbol),
            base: spec.base,
            quote: spec.quote,
            tick_size: spec.tick_size,
            lot_size: spec.lot_size,
            min_notional: spec.min_notional,
            maker_fee_bps: spec.maker_fee_bps,
            taker_fee_bps: spec.taker_fee_bps,
            status: status_to_wire(market.status),
        };
        offsets.markets.push(fb::MarketInfo::create(fbb, &args));
    }
    let markets = fbb.create_vector(&offsets.markets);
    let args =
        fb::ReferenceArgs { request_id, assets: Some(assets), markets: Some(markets), truncated };
    (fb::Body::Reference, fb::Reference::create(fbb, &args).as_union_value())
}

fn build_admin_ack(fbb: &mut Fbb, a: &AdminAck) -> Body {
    let args = fb::AdminAckArgs {
        request_id: a.request_id,
        kind: admin_kind_to_wire(a.kind),
        tx: a.tx,
        account: a.account,
        counterparty: a.counterparty,
        asset: a.asset,
        market: a.market,
        amount: a.amount,
        status: status_to_wire(a.status),
        scale: a.scale,
        duplicate: a.duplicate,
        index: a.index,
        time_ns: a.time_ns,
    };
    (fb::Body::AdminAck, fb::AdminAck::create(fbb, &args).as_union_value())
}

macro_rules! body {
    ($message:expr, $accessor:ident) => {
        // The verifier checked that the union value matches its type tag.
        $message.$accessor().ok_or(DecodeError::Malformed(VerifyError::InconsistentUnion))?
    };
}

/// Decodes one client frame (length prefix included) into its request id and request.
pub fn decode_client(
    frame: &[u8],
    options: &VerifierOptions,
) -> Result<(RequestId, ClientRequest), DecodeError> {
    let message = frame::verify(frame, options).map_err(DecodeError::Malformed)?;
    let request_id = message.seq();
    let body_type = message.body_type().0;
    let invalid = |field: &'static str| DecodeError::InvalidField { request_id, body_type, field };
    let request = match message.body_type() {
        fb::Body::Logon => {
            let b = body!(message, body_as_logon);
            let signature: [u8; SIGNATURE_BYTES] =
                b.signature().bytes().try_into().map_err(|_| invalid("signature"))?;
            ClientRequest::Logon(Logon {
                protocol_version: b.protocol_version(),
                key_id: b.key_id(),
                signature,
                session_id: b.session_id(),
                resume_from_seq: b.resume_from_seq(),
                cancel_on_disconnect: b.cancel_on_disconnect(),
            })
        }
        fb::Body::Logout => ClientRequest::Logout,
        fb::Body::Heartbeat => {
            ClientRequest::Heartbeat { time_ns: body!(message, body_as_heartbeat).time_ns() }
        }
        fb::Body::NewOrder => {
            let b = body!(message, body_as_new_order);
            ClientRequest::NewOrder(NewOrder {
                market: b.market(),
                client_order_id: b.client_order_id(),
                side: side_from_wire(b.side()).ok_or_else(|| invalid("side"))?,
                order_type: order_type_from_wire(b.order_type())
                    .ok_or_else(|| invalid("order_type"))?,
                tif: tif_from_wire(b.tif()).ok_or_else(|| invalid("tif"))?,
                post_only: b.post_only(),
                price: b.price(),
                qty: b.qty(),
                quote_budget: b.quote_budget(),
                stp: stp_from_wire(b.stp()).ok_or_else(|| invalid("stp"))?,
            })
        }
        fb::Body::Cancel => {
            let b = body!(message, body_as_cancel);
            let order = order_ref_from_wire(b.order_id(), b.client_order_id())
                .ok_or_else(|| invalid("order_id"))?;
            ClientRequest::Cancel(order)
        }
        fb::Body::Amend => {
            let b = body!(message, body_as_amend);
            let order = order_ref_from_wire(b.order_id(), b.client_order_id())
                .ok_or_else(|| invalid("order_id"))?;
            ClientRequest::Amend { order, price: b.price(), qty: b.qty() }
        }
        fb::Body::MassCancel => {
            ClientRequest::MassCancel { market: body!(message, body_as_mass_cancel).market() }
        }
        fb::Body::BalanceQuery => ClientRequest::BalanceQuery,
        fb::Body::OpenOrdersQuery => ClientRequest::OpenOrdersQuery {
            market: body!(message, body_as_open_orders_query).market(),
        },
        fb::Body::Subscribe => {
            let b = body!(message, body_as_subscribe);
            if b.depth() as usize > BOOK_DEPTH_MAX {
                return Err(invalid("depth"));
            }
            ClientRequest::Subscribe { market: b.market(), depth: b.depth() }
        }
        fb::Body::Unsubscribe => {
            ClientRequest::Unsubscribe { market: body!(message, body_as_unsubscribe).market() }
        }
        fb::Body::StatusQuery => ClientRequest::StatusQuery,
        fb::Body::ReferenceQuery => ClientRequest::ReferenceQuery,
        _ => ClientRequest::Admin(decode_admin(&message, request_id)?),
    };
    Ok((request_id, request))
}

fn decode_admin(
    message: &fb::Message<'_>,
    request_id: RequestId,
) -> Result<AdminRequest, DecodeError> {
    let body_type = message.body_type().0;
    let invalid = |field: &'static str| DecodeError::InvalidField { request_id, body_type, field };
    Ok(match message.body_type() {
        fb::Body::CreateAsset => {
            let b = body!(message, body_as_create_asset);
            let symbol = symbol_from_wire(b.symbol()).ok_or_else(|| invalid("symbol"))?;
            AdminRequest::CreateAsset { asset: b.asset(), scale: b.scale(), symbol }
        }
        fb::Body::CreateMarket => {
            let b = body!(message, body_as_create_market);
            AdminRequest::CreateMarket(MarketSpec {
                market: b.market(),
                symbol: symbol_from_wire(b.symbol()).ok_or_else(|| invalid("symbol"))?,
                base: b.base(),
                quote: b.quote(),
                tick_size: b.tick_size(),
                lot_size: b.lot_size(),
                min_notional: b.min_notional(),
                maker_fee_bps: b.maker_fee_bps(),
                taker_fee_bps: b.taker_fee_bps(),
            })
        }
        fb::Body::SetMarketStatus => {
            let b = body!(message, body_as_set_market_status);
            let status = status_from_wire(b.status()).ok_or_else(|| invalid("status"))?;
            AdminRequest::SetMarketStatus { market: b.market(), status }
        }
        fb::Body::Deposit => {
            let b = body!(message, body_as_deposit);
            AdminRequest::Deposit {
                tx: b.tx(),
                account: b.account(),
                asset: b.asset(),
                amount: b.amount(),
            }
        }
        fb::Body::WithdrawRequest => {
            let b = body!(message, body_as_withdraw_request);
            AdminRequest::WithdrawRequest {
                tx: b.tx(),
                account: b.account(),
                asset: b.asset(),
                amount: b.amount(),
            }
        }
        fb::Body::WithdrawComplete => {
            AdminRequest::WithdrawComplete { tx: body!(message, body_as_withdraw_complete).tx() }
        }
        fb::Body::WithdrawCancel => {
            AdminRequest::WithdrawCancel { tx: body!(message, body_as_withdraw_cancel).tx() }
        }
        fb::Body::Transfer => {
            let b = body!(message, body_as_transfer);
            AdminRequest::Transfer {
                tx: b.tx(),
                from: b.from(),
                to: b.to(),
                asset: b.asset(),
                amount: b.amount(),
                create_account: b.create_account(),
            }
        }
        // Server-to-client types, NONE, and types newer than this build.
        _ => return Err(DecodeError::UnknownMessage { request_id, body_type }),
    })
}

/// Reusable storage for the lists of decoded server messages.
#[derive(Debug, Default)]
pub struct DecodeScratch {
    balances: Vec<(AssetId, Balance)>,
    orders: Vec<OpenOrderInfo>,
    bids: Vec<DepthLevel>,
    asks: Vec<DepthLevel>,
    changes: Vec<LevelChange>,
    assets: Vec<AssetInfo>,
    markets: Vec<MarketInfo>,
}

fn fixed_bytes<const N: usize>(bytes: flatbuffers::Vector<'_, u8>) -> Option<[u8; N]> {
    bytes.bytes().try_into().ok()
}

fn session_reason_from_wire(reason: fb::SessionReason) -> Option<SessionReason> {
    SessionReason::from_code(reason.0)
}

/// Decodes one server frame (length prefix included) into its sequence number and
/// message. List items are copied into `scratch`, which the message borrows.
pub fn decode_server<'a>(
    frame: &'a [u8],
    options: &VerifierOptions,
    scratch: &'a mut DecodeScratch,
) -> Result<(Seq, ServerMessage<'a>), DecodeError> {
    let message = frame::verify(frame, options).map_err(DecodeError::Malformed)?;
    let seq = message.seq();
    let body_type = message.body_type().0;
    let invalid =
        |field: &'static str| DecodeError::InvalidField { request_id: 0, body_type, field };
    let decoded = match message.body_type() {
        fb::Body::LogonChallenge => {
            let b = body!(message, body_as_logon_challenge);
            let nonce = fixed_bytes::<NONCE_BYTES>(b.nonce()).ok_or_else(|| invalid("nonce"))?;
            ServerMessage::LogonChallenge { nonce, protocol_version: b.protocol_version() }
        }
        fb::Body::LogonAck => {
            let b = body!(message, body_as_logon_ack);
            ServerMessage::LogonAck(LogonAck {
                session_id: b.session_id(),
                next_seq: b.next_seq(),
                replay_from: b.replay_from(),
                replay_count: b.replay_count(),
                role: role_from_wire(b.role()).ok_or_else(|| invalid("role"))?,
                account: b.account(),
                cancel_on_disconnect: b.cancel_on_disconnect(),
                heartbeat_interval_ms: b.heartbeat_interval_ms(),
                idle_timeout_ms: b.idle_timeout_ms(),
                rate_per_sec: b.rate_per_sec(),
                rate_burst: b.rate_burst(),
                protocol_version: b.protocol_version(),
            })
        }
        fb::Body::LogonReject => {
            let b = body!(message, body_as_logon_reject);
            ServerMessage::LogonReject(LogonReject {
                reason: session_reason_from_wire(b.reason()).ok_or_else(|| invalid("reason"))?,
                oldest_seq: b.oldest_seq(),
                next_seq: b.next_seq(),
            })
        }
        fb::Body::Logout => {
            let b = body!(message, body_as_logout);
            let reason = session_reason_from_wire(b.reason()).ok_or_else(|| invalid("reason"))?;
            ServerMessage::Logout { reason }
        }
        fb::Body::Heartbeat => {
            ServerMessage::Heartbeat { time_ns: body!(message, body_as_heartbeat).time_ns() }
        }
        fb::Body::Rejected => ServerMessage::Rejected(decode_rejected(&message, invalid)?),
        fb::Body::Status => {
            let b = body!(message, body_as_status);
            ServerMessage::Status(StatusReport {
                request_id: b.request_id(),
                last_index: b.last_index(),
                state_hash: fixed_bytes::<32>(b.state_hash())
                    .ok_or_else(|| invalid("state_hash"))?,
                uptime_ns: b.uptime_ns(),
                sessions: b.sessions(),
            })
        }
        fb::Body::Balances
        | fb::Body::OpenOrders
        | fb::Body::BookSnapshot
        | fb::Body::BookUpdate
        | fb::Body::Reference => decode_server_list(&message, scratch, invalid)?,
        _ => decode_server_report(&message, invalid)?,
    };
    Ok((seq, decoded))
}

fn decode_rejected(
    message: &fb::Message<'_>,
    invalid: impl Fn(&'static str) -> DecodeError,
) -> Result<RejectReport, DecodeError> {
    let b = body!(message, body_as_rejected);
    let cause = match (b.reason_code(), b.session_reason()) {
        (0, reason) => RejectCause::Session(
            session_reason_from_wire(reason).ok_or_else(|| invalid("session_reason"))?,
        ),
        (code, fb::SessionReason::None) => RejectCause::Engine {
            command: command_from_wire(b.command()).ok_or_else(|| invalid("command"))?,
            reason: RejectReason::from_code(code).ok_or_else(|| invalid("reason_code"))?,
        },
        // Both set: the message contradicts itself.
        _ => return Err(invalid("reason_code")),
    };
    let shortfall = match (b.needed(), b.available()) {
        (0, 0) if b.shortfall_asset() == 0 => None,
        (needed, available) if needed > available => {
            Some(Shortfall { asset: b.shortfall_asset(), needed, available })
        }
        _ => return Err(invalid("needed")),
    };
    Ok(RejectReport {
        request_id: b.request_id(),
        refused_type: b.refused_type(),
        cause,
        order_id: b.order_id(),
        client_order_id: b.client_order_id(),
        tx: b.tx(),
        duplicate: b.duplicate(),
        index: b.index(),
        time_ns: b.time_ns(),
        shortfall,
    })
}

fn decode_server_list<'a>(
    message: &fb::Message<'a>,
    scratch: &'a mut DecodeScratch,
    invalid: impl Fn(&'static str) -> DecodeError,
) -> Result<ServerMessage<'a>, DecodeError> {
    Ok(match message.body_type() {
        fb::Body::Balances => {
            let b = body!(message, body_as_balances);
            scratch.balances.clear();
            scratch.balances.extend(b.balances().iter().map(|item| {
                (item.asset(), Balance { available: item.available(), held: item.held() })
            }));
            ServerMessage::Balances { request_id: b.request_id(), balances: &scratch.balances }
        }
        fb::Body::OpenOrders => {
            let b = body!(message, body_as_open_orders);
            scratch.orders.clear();
            for order in b.orders().iter() {
                scratch.orders.push(OpenOrderInfo {
                    order_id: order.order_id(),
                    client_order_id: order.client_order_id(),
                    market: order.market(),
                    side: side_from_wire(order.side()).ok_or_else(|| invalid("side"))?,
                    price: order.price(),
                    qty: order.qty(),
                    leaves_qty: order.leaves_qty(),
                    filled_qty: order.filled_qty(),
                    post_only: order.post_only(),
                    stp: stp_from_wire(order.stp()).ok_or_else(|| invalid("stp"))?,
                });
            }
            ServerMessage::OpenOrders {
                request_id: b.request_id(),
                orders: &scratch.orders,
                truncated: b.truncated(),
            }
        }
        fb::Body::BookSnapshot => {
            let b = body!(message, body_as_book_snapshot);
            let level =
                |l: &fb::Level| DepthLevel { price: l.price(), qty: l.qty(), orders: l.orders() };
            scratch.bids.clear();
            scratch.bids.extend(b.bids().iter().map(level));
            scratch.asks.clear();
            scratch.asks.extend(b.asks().iter().map(level));
            ServerMessage::BookSnapshot {
                request_id: b.request_id(),
                market: b.market(),
                index: b.index(),
                bids: &scratch.bids,
                asks: &scratch.asks,
            }
        }
        fb::Body::BookUpdate => {
            let b = body!(message, body_as_book_update);
            scratch.changes.clear();
            for change in b.changes().iter() {
                scratch.changes.push(LevelChange {
                    side: side_from_wire(change.side()).ok_or_else(|| invalid("side"))?,
                    price: change.price(),
                    qty: change.qty(),
                    orders: change.orders(),
                });
            }
            ServerMessage::BookUpdate {
                market: b.market(),
                index: b.index(),
                time_ns: b.time_ns(),
                changes: &scratch.changes,
            }
        }
        fb::Body::Reference => decode_reference(message, scratch, invalid)?,
        _ => {
            return Err(DecodeError::UnknownMessage {
                request_id: 0,
                body_type: message.body_type().0,
            })
        }
    })
}

fn decode_reference<'a>(
    message: &fb::Message<'a>,
    scratch: &'a mut DecodeScratch,
    invalid: impl Fn(&'static str) -> DecodeError,
) -> Result<ServerMessage<'a>, DecodeError> {
    let b = body!(message, body_as_reference);
    scratch.assets.clear();
    for asset in b.assets().iter() {
        scratch.assets.push(AssetInfo {
            asset: asset.asset(),
            scale: asset.scale(),
            symbol: symbol_from_wire(asset.symbol()).ok_or_else(|| invalid("symbol"))?,
        });
    }
    scratch.markets.clear();
    for market in b.markets().iter() {
        scratch.markets.push(MarketInfo {
            spec: MarketSpec {
                market: market.market(),
                symbol: symbol_from_wire(market.symbol()).ok_or_else(|| invalid("symbol"))?,
                base: market.base(),
                quote: market.quote(),
                tick_size: market.tick_size(),
                lot_size: market.lot_size(),
                min_notional: market.min_notional(),
                maker_fee_bps: market.maker_fee_bps(),
                taker_fee_bps: market.taker_fee_bps(),
            },
            status: status_from_wire(market.status()).ok_or_else(|| invalid("status"))?,
        });
    }
    Ok(ServerMessage::Reference {
        request_id: b.request_id(),
        assets: &scratch.assets,
        markets: &scratch.markets,
        truncated: b.truncated(),
    })
}

fn decode_server_report(
    message: &fb::Message<'_>,
    invalid: impl Fn(&'static str) -> DecodeError,
) -> Result<ServerMessage<'static>, DecodeError> {
    let side = |s| side_from_wire(s).ok_or_else(|| invalid("side"));
    Ok(match message.body_type() {
        fb::Body::Accepted => {
            let b = body!(message, body_as_accepted);
            ServerMessage::Accepted(AcceptedReport {
                request_id: b.request_id(),
                order_id: b.order_id(),
                client_order_id: b.client_order_id(),
                market: b.market(),
                side: side(b.side())?,
                order_type: order_type_from_wire(b.order_type())
                    .ok_or_else(|| invalid("order_type"))?,
                tif: tif_from_wire(b.tif()).ok_or_else(|| invalid("tif"))?,
                post_only: b.post_only(),
                stp: stp_from_wire(b.stp()).ok_or_else(|| invalid("stp"))?,
                price: b.price(),
                qty: b.qty(),
                quote_budget: b.quote_budget(),
                index: b.index(),
                time_ns: b.time_ns(),
            })
        }
        fb::Body::Trade => {
            let b = body!(message, body_as_trade);
            ServerMessage::Trade(OwnTrade {
                trade_id: b.trade_id(),
                market: b.market(),
                order_id: b.order_id(),
                client_order_id: b.client_order_id(),
                side: side(b.side())?,
                liquidity: liquidity_from_wire(b.liquidity())
                    .ok_or_else(|| invalid("liquidity"))?,
                price: b.price(),
                qty: b.qty(),
                fee: b.fee(),
                index: b.index(),
                time_ns: b.time_ns(),
            })
        }
        fb::Body::Done => {
            let b = body!(message, body_as_done);
            ServerMessage::Done(DoneReport {
                order_id: b.order_id(),
                client_order_id: b.client_order_id(),
                market: b.market(),
                side: side(b.side())?,
                reason: done_from_wire(b.reason()).ok_or_else(|| invalid("reason"))?,
                filled_qty: b.filled_qty(),
                index: b.index(),
                time_ns: b.time_ns(),
            })
        }
        fb::Body::Amended => {
            let b = body!(message, body_as_amended);
            ServerMessage::Amended(AmendedReport {
                request_id: b.request_id(),
                order_id: b.order_id(),
                client_order_id: b.client_order_id(),
                market: b.market(),
                side: side(b.side())?,
                price: b.price(),
                qty: b.qty(),
                leaves_qty: b.leaves_qty(),
                priority_kept: b.priority_kept(),
                index: b.index(),
                time_ns: b.time_ns(),
            })
        }
        fb::Body::MassCancelDone => {
            let b = body!(message, body_as_mass_cancel_done);
            ServerMessage::MassCancelDone(MassCancelReport {
                request_id: b.request_id(),
                market: b.market(),
                count: b.count(),
                index: b.index(),
                time_ns: b.time_ns(),
            })
        }
        fb::Body::BalanceUpdate => {
            let b = body!(message, body_as_balance_update);
            ServerMessage::BalanceUpdate(BalanceUpdate {
                asset: b.asset(),
                delta_available: b.delta_available(),
                delta_held: b.delta_held(),
                available: b.available(),
                held: b.held(),
                reason: balance_reason_from_wire(b.reason(), b.ref_id())
                    .ok_or_else(|| invalid("reason"))?,
                index: b.index(),
                time_ns: b.time_ns(),
            })
        }
        fb::Body::PublicTrade => {
            let b = body!(message, body_as_public_trade);
            ServerMessage::PublicTrade(PublicTrade {
                market: b.market(),
                trade_id: b.trade_id(),
                price: b.price(),
                qty: b.qty(),
                taker_side: side(b.taker_side())?,
                index: b.index(),
                time_ns: b.time_ns(),
            })
        }
        fb::Body::AdminAck => {
            let b = body!(message, body_as_admin_ack);
            ServerMessage::AdminAck(AdminAck {
                request_id: b.request_id(),
                kind: admin_kind_from_wire(b.kind()).ok_or_else(|| invalid("kind"))?,
                tx: b.tx(),
                account: b.account(),
                counterparty: b.counterparty(),
                asset: b.asset(),
                market: b.market(),
                amount: b.amount(),
                status: status_from_wire(b.status()).ok_or_else(|| invalid("status"))?,
                scale: b.scale(),
                duplicate: b.duplicate(),
                index: b.index(),
                time_ns: b.time_ns(),
            })
        }
        // Client-to-server types, NONE, and types newer than this build.
        _ => {
            return Err(DecodeError::UnknownMessage {
                request_id: 0,
                body_type: message.body_type().0,
            })
        }
    })
}
