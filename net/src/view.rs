//! Who sees what: engine events turned into server messages, per audience.
//!
//! - An account sees its own execution reports (accepted, rejected, trade, done,
//!   amended, mass cancel) and its own balance changes, and nothing of any other
//!   account. A trade is two private views: the maker's and the taker's.
//! - Admin keys see the outcome of admin and ledger commands (acks and rejects).
//! - Market-data subscribers see level changes and trades without account or order ids.
//!
//! These functions are pure; the gateway decides which sessions get the results.

use bourse_engine::{
    AccountId, AdminApplied, CommandKind, Event, EventKind, LedgerKind, MarketId, MarketStatus,
};

use crate::protocol::*;

/// The accounts whose sessions may see `event` (a trade concerns two).
pub fn event_accounts(event: &Event) -> [Option<AccountId>; 2] {
    match &event.kind {
        EventKind::Accepted(a) => [Some(a.account), None],
        EventKind::Rejected(r) if is_trading_command(r.command) => [Some(r.account), None],
        EventKind::Amended(a) => [Some(a.account), None],
        EventKind::Trade(t) => [Some(t.maker_account), Some(t.taker_account)],
        EventKind::Done(d) => [Some(d.account), None],
        EventKind::Balance(b) => [Some(b.account), None],
        EventKind::MassCancelled { account, .. } => [Some(*account), None],
        EventKind::Rejected(_)
        | EventKind::Level(_)
        | EventKind::Ledger(_)
        | EventKind::Admin(_) => [None, None],
    }
}

/// Commands a trader sends for its own account; their rejects go to that account.
/// Every other command is an admin command and its rejects go to admin sessions.
pub fn is_trading_command(kind: CommandKind) -> bool {
    matches!(
        kind,
        CommandKind::Place | CommandKind::Cancel | CommandKind::Amend | CommandKind::MassCancel
    )
}

/// What `account` may see of `event`: up to two messages (a trade in which the account
/// is both maker and taker, which self-trade prevention rules out, would be two fills).
/// `request_id` is the client's id of the request that caused the event, when this
/// session sent it, else 0.
pub fn account_view(
    event: &Event,
    account: AccountId,
    request_id: RequestId,
) -> [Option<ServerMessage<'static>>; 2] {
    let (index, time_ns) = (event.index, event.time_ns);
    let one = |message| [Some(message), None];
    match &event.kind {
        EventKind::Accepted(a) if a.account == account => {
            one(ServerMessage::Accepted(AcceptedReport {
                request_id,
                order_id: a.order_id,
                client_order_id: a.client_order_id,
                market: a.market,
                side: a.side,
                order_type: a.order_type,
                tif: a.tif,
                post_only: a.post_only,
                stp: a.stp,
                price: a.price,
                qty: a.qty,
                quote_budget: a.quote_budget,
                index,
                time_ns,
            }))
        }
        EventKind::Rejected(r) if r.account == account && is_trading_command(r.command) => {
            one(ServerMessage::Rejected(engine_reject(event, r, request_id)))
        }
        EventKind::Amended(a) if a.account == account => {
            one(ServerMessage::Amended(AmendedReport {
                request_id,
                order_id: a.order_id,
                client_order_id: a.client_order_id,
                market: a.market,
                side: a.side,
                price: a.price,
                qty: a.qty,
                leaves_qty: a.leaves_qty,
                priority_kept: a.priority_kept,
                index,
                time_ns,
            }))
        }
        EventKind::Trade(t) => {
            let maker = (t.maker_account == account).then_some(ServerMessage::Trade(OwnTrade {
                trade_id: t.trade_id,
                market: t.market,
                order_id: t.maker_order_id,
                client_order_id: t.maker_client_order_id,
                side: t.taker_side.opposite(),
                liquidity: Liquidity::Maker,
                price: t.price,
                qty: t.qty,
                fee: t.maker_fee,
                index,
                time_ns,
            }));
            let taker = (t.taker_account == account).then_some(ServerMessage::Trade(OwnTrade {
                trade_id: t.trade_id,
                market: t.market,
                order_id: t.taker_order_id,
                client_order_id: t.taker_client_order_id,
                side: t.taker_side,
                liquidity: Liquidity::Taker,
                price: t.price,
                qty: t.qty,
                fee: t.taker_fee,
                index,
                time_ns,
            }));
            [maker, taker]
        }
        EventKind::Done(d) if d.account == account => one(ServerMessage::Done(DoneReport {
            order_id: d.order_id,
            client_order_id: d.client_order_id,
            market: d.market,
            side: d.side,
            reason: d.reason,
            filled_qty: d.filled_qty,
            index,
            time_ns,
        })),
        EventKind::Balance(b) if b.account == account => {
            one(ServerMessage::BalanceUpdate(BalanceUpdate {
                asset: b.asset,
                delta_available: b.delta_available,
                delta_held: b.delta_held,
                available: b.available,
                held: b.held,
                reason: b.reason,
                index,
                time_ns,
            }))
        }
        EventKind::MassCancelled { account: owner, market, count } if *owner == account => {
            one(ServerMessage::MassCancelDone(MassCancelReport {
                request_id,
                market: *market,
                count: *count,
                index,
                time_ns,
            }))
        }
        _ => [None, None],
    }
}

fn engine_reject(
    event: &Event,
    r: &bourse_engine::Rejected,
    request_id: RequestId,
) -> RejectReport {
    RejectReport {
        request_id,
        refused_type: refused_type(r.command),
        cause: RejectCause::Engine { command: r.command, reason: r.reason },
        order_id: r.order_id,
        client_order_id: r.client_order_id,
        tx: r.tx,
        duplicate: r.duplicate,
        index: event.index,
        time_ns: event.time_ns,
        shortfall: r.shortfall,
    }
}

/// The client message type that carries each command.
pub fn refused_type(kind: CommandKind) -> BodyType {
    use crate::wire::Body;
    let body = match kind {
        CommandKind::CreateAsset => Body::CreateAsset,
        CommandKind::CreateMarket => Body::CreateMarket,
        CommandKind::SetMarketStatus => Body::SetMarketStatus,
        CommandKind::Deposit => Body::Deposit,
        CommandKind::WithdrawRequest => Body::WithdrawRequest,
        CommandKind::WithdrawComplete => Body::WithdrawComplete,
        CommandKind::WithdrawCancel => Body::WithdrawCancel,
        CommandKind::Transfer => Body::Transfer,
        CommandKind::Place => Body::NewOrder,
        CommandKind::Cancel => Body::Cancel,
        CommandKind::Amend => Body::Amend,
        CommandKind::MassCancel => Body::MassCancel,
    };
    body.0
}

/// What admin sessions see of `event`: acks of admin and ledger commands and their
/// rejects.
pub fn admin_view(event: &Event, request_id: RequestId) -> Option<ServerMessage<'static>> {
    let ack = AdminAck {
        request_id,
        kind: AdminKind::Deposit,
        tx: 0,
        account: 0,
        counterparty: 0,
        asset: 0,
        market: 0,
        amount: 0,
        status: MarketStatus::Open,
        scale: 0,
        duplicate: false,
        index: event.index,
        time_ns: event.time_ns,
    };
    match &event.kind {
        EventKind::Rejected(r) if !is_trading_command(r.command) => {
            Some(ServerMessage::Rejected(engine_reject(event, r, request_id)))
        }
        EventKind::Ledger(l) => Some(ServerMessage::AdminAck(AdminAck {
            kind: match l.kind {
                LedgerKind::Deposit => AdminKind::Deposit,
                LedgerKind::WithdrawRequest => AdminKind::WithdrawRequest,
                LedgerKind::WithdrawComplete => AdminKind::WithdrawComplete,
                LedgerKind::WithdrawCancel => AdminKind::WithdrawCancel,
                LedgerKind::Transfer => AdminKind::Transfer,
            },
            tx: l.tx,
            account: l.account,
            counterparty: l.counterparty,
            asset: l.asset,
            amount: l.amount,
            duplicate: l.duplicate,
            ..ack
        })),
        EventKind::Admin(AdminApplied::AssetCreated { asset, scale, .. }) => {
            Some(ServerMessage::AdminAck(AdminAck {
                kind: AdminKind::AssetCreated,
                asset: *asset,
                scale: *scale,
                ..ack
            }))
        }
        EventKind::Admin(AdminApplied::MarketCreated { market }) => {
            Some(ServerMessage::AdminAck(AdminAck {
                kind: AdminKind::MarketCreated,
                market: *market,
                ..ack
            }))
        }
        EventKind::Admin(AdminApplied::MarketStatus { market, status }) => {
            Some(ServerMessage::AdminAck(AdminAck {
                kind: AdminKind::MarketStatus,
                market: *market,
                status: *status,
                ..ack
            }))
        }
        _ => None,
    }
}

/// Market data in one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicItem {
    Level { market: MarketId, change: LevelChange },
    Trade(PublicTrade),
}

/// The public (market data) part of `event`, if any. Never carries account or order ids.
pub fn public_view(event: &Event) -> Option<PublicItem> {
    match &event.kind {
        EventKind::Level(l) => Some(PublicItem::Level {
            market: l.market,
            change: LevelChange { side: l.side, price: l.price, qty: l.qty, orders: l.orders },
        }),
        EventKind::Trade(t) => Some(PublicItem::Trade(PublicTrade {
            market: t.market,
            trade_id: t.trade_id,
            price: t.price,
            qty: t.qty,
            taker_side: t.taker_side,
            index: event.index,
            time_ns: event.time_ns,
        })),
        _ => None,
    }
}
