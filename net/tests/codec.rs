//! Round trip of every message type through the real encoder, framer, verifier and
//! decoder, with random field values; the bounded lists at their bounds fit the frame
//! limit; decoding arbitrary or mutated bytes never panics.
//!
//! Proptest prints the failing input and stores it under proptest-regressions/; set
//! PROPTEST_RNG_SEED to replay a run with a given seed.

use bourse_engine::{
    Balance, BalanceReason, CommandKind, DepthLevel, DoneReason, MarketSpec, MarketStatus,
    OrderRef, OrderType, RejectReason, Shortfall, Side, StpMode, Symbol, TimeInForce,
};
use bourse_net::codec::{decode_client, decode_server, DecodeError, DecodeScratch, Encoder};
use bourse_net::frame::{self, FrameDecoder};
use bourse_net::protocol::*;
use proptest::prelude::*;

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}
fn order_type() -> impl Strategy<Value = OrderType> {
    prop_oneof![Just(OrderType::Limit), Just(OrderType::Market)]
}
fn tif() -> impl Strategy<Value = TimeInForce> {
    prop_oneof![Just(TimeInForce::Gtc), Just(TimeInForce::Ioc), Just(TimeInForce::Fok)]
}
fn stp() -> impl Strategy<Value = StpMode> {
    prop_oneof![
        Just(StpMode::CancelTaker),
        Just(StpMode::CancelMaker),
        Just(StpMode::CancelBoth),
        Just(StpMode::Decrement)
    ]
}
fn status() -> impl Strategy<Value = MarketStatus> {
    prop_oneof![Just(MarketStatus::Open), Just(MarketStatus::Halted)]
}
fn symbol() -> impl Strategy<Value = Symbol> {
    "[!-~]{1,16}".prop_map(|s| Symbol::new(&s).unwrap())
}
fn order_ref() -> impl Strategy<Value = OrderRef> {
    prop_oneof![(1..=u64::MAX).prop_map(OrderRef::Id), (1..=u64::MAX).prop_map(OrderRef::Client)]
}
fn session_reason() -> impl Strategy<Value = SessionReason> {
    proptest::sample::select(SessionReason::ALL.to_vec())
}

fn new_order() -> impl Strategy<Value = NewOrder> {
    (
        any::<u32>(),
        any::<u64>(),
        side(),
        order_type(),
        tif(),
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        stp(),
    )
        .prop_map(
            |(
                market,
                client_order_id,
                side,
                order_type,
                tif,
                post_only,
                price,
                qty,
                quote_budget,
                stp,
            )| NewOrder {
                market,
                client_order_id,
                side,
                order_type,
                tif,
                post_only,
                price,
                qty,
                quote_budget,
                stp,
            },
        )
}

fn admin_request() -> impl Strategy<Value = AdminRequest> {
    let spec = (
        any::<u32>(),
        symbol(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(
                market,
                symbol,
                base,
                quote,
                tick_size,
                lot_size,
                min_notional,
                maker_fee_bps,
                taker_fee_bps,
            )| MarketSpec {
                market,
                symbol,
                base,
                quote,
                tick_size,
                lot_size,
                min_notional,
                maker_fee_bps,
                taker_fee_bps,
            },
        );
    prop_oneof![
        (any::<u32>(), any::<u8>(), symbol())
            .prop_map(|(asset, scale, symbol)| AdminRequest::CreateAsset { asset, scale, symbol }),
        spec.prop_map(AdminRequest::CreateMarket),
        (any::<u32>(), status())
            .prop_map(|(market, status)| AdminRequest::SetMarketStatus { market, status }),
        (any::<u64>(), any::<u64>(), any::<u32>(), any::<u64>()).prop_map(
            |(tx, account, asset, amount)| AdminRequest::Deposit { tx, account, asset, amount }
        ),
        (any::<u64>(), any::<u64>(), any::<u32>(), any::<u64>()).prop_map(
            |(tx, account, asset, amount)| AdminRequest::WithdrawRequest {
                tx,
                account,
                asset,
                amount
            }
        ),
        any::<u64>().prop_map(|tx| AdminRequest::WithdrawComplete { tx }),
        any::<u64>().prop_map(|tx| AdminRequest::WithdrawCancel { tx }),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u32>(), any::<u64>(), any::<bool>())
            .prop_map(|(tx, from, to, asset, amount, create_account)| AdminRequest::Transfer {
                tx,
                from,
                to,
                asset,
                amount,
                create_account
            }),
    ]
}

fn client_request() -> impl Strategy<Value = ClientRequest> {
    let logon =
        (any::<u16>(), any::<u64>(), any::<[u8; 32]>(), any::<u64>(), any::<u64>(), any::<bool>())
            .prop_map(
                |(
                    protocol_version,
                    key_id,
                    signature,
                    session_id,
                    resume_from_seq,
                    cancel_on_disconnect,
                )| {
                    ClientRequest::Logon(Logon {
                        protocol_version,
                        key_id,
                        signature,
                        session_id,
                        resume_from_seq,
                        cancel_on_disconnect,
                    })
                },
            );
    prop_oneof![
        logon,
        Just(ClientRequest::Logout),
        any::<u64>().prop_map(|time_ns| ClientRequest::Heartbeat { time_ns }),
        new_order().prop_map(ClientRequest::NewOrder),
        order_ref().prop_map(ClientRequest::Cancel),
        (order_ref(), any::<u64>(), any::<u64>())
            .prop_map(|(order, price, qty)| ClientRequest::Amend { order, price, qty }),
        proptest::option::of(any::<u32>()).prop_map(|market| ClientRequest::MassCancel { market }),
        Just(ClientRequest::BalanceQuery),
        proptest::option::of(any::<u32>())
            .prop_map(|market| ClientRequest::OpenOrdersQuery { market }),
        (any::<u32>(), 0..=BOOK_DEPTH_MAX as u16)
            .prop_map(|(market, depth)| ClientRequest::Subscribe { market, depth }),
        any::<u32>().prop_map(|market| ClientRequest::Unsubscribe { market }),
        admin_request().prop_map(ClientRequest::Admin),
        Just(ClientRequest::StatusQuery),
        Just(ClientRequest::ReferenceQuery),
    ]
}

fn balance_reason() -> impl Strategy<Value = BalanceReason> {
    (0..10u8, any::<u64>()).prop_map(|(kind, id)| match kind {
        0 => BalanceReason::Deposit(id),
        1 => BalanceReason::WithdrawHold(id),
        2 => BalanceReason::WithdrawComplete(id),
        3 => BalanceReason::WithdrawCancel(id),
        4 => BalanceReason::TransferOut(id),
        5 => BalanceReason::TransferIn(id),
        6 => BalanceReason::OrderHold(id),
        7 => BalanceReason::OrderRelease(id),
        8 => BalanceReason::Trade(id),
        _ => BalanceReason::Fee(id),
    })
}

/// None, or a shortfall as the engine makes them (needed above available).
fn shortfall() -> impl Strategy<Value = Option<Shortfall>> {
    proptest::option::of((any::<u32>(), 1..=u64::MAX, any::<u64>()).prop_map(
        |(asset, needed, available)| Shortfall { asset, needed, available: available % needed },
    ))
}

fn reject_cause() -> impl Strategy<Value = RejectCause> {
    let command = proptest::sample::select(vec![
        CommandKind::CreateAsset,
        CommandKind::CreateMarket,
        CommandKind::SetMarketStatus,
        CommandKind::Deposit,
        CommandKind::WithdrawRequest,
        CommandKind::WithdrawComplete,
        CommandKind::WithdrawCancel,
        CommandKind::Transfer,
        CommandKind::Place,
        CommandKind::Cancel,
        CommandKind::Amend,
        CommandKind::MassCancel,
    ]);
    let reason = proptest::sample::select(RejectReason::ALL.to_vec());
    prop_oneof![
        (command, reason).prop_map(|(command, reason)| RejectCause::Engine { command, reason }),
        session_reason().prop_map(RejectCause::Session),
    ]
}

/// Scalar-only server messages (lists are covered by `lists_round_trip`).
fn server_message() -> impl Strategy<Value = ServerMessage<'static>> {
    let u = any::<u64>;
    let session = prop_oneof![
        (any::<[u8; 32]>(), any::<u16>()).prop_map(|(nonce, protocol_version)| {
            ServerMessage::LogonChallenge { nonce, protocol_version }
        }),
        (u(), u(), u(), u(), any::<bool>(), u(), any::<bool>(), any::<[u32; 4]>(), any::<u16>())
            .prop_map(
                |(
                    session_id,
                    next_seq,
                    replay_from,
                    replay_count,
                    admin,
                    account,
                    cod,
                    n,
                    protocol_version,
                )| {
                    ServerMessage::LogonAck(LogonAck {
                        session_id,
                        next_seq,
                        replay_from,
                        replay_count,
                        role: if admin { WireRole::Admin } else { WireRole::Trader },
                        account,
                        cancel_on_disconnect: cod,
                        heartbeat_interval_ms: n[0],
                        idle_timeout_ms: n[1],
                        rate_per_sec: n[2],
                        rate_burst: n[3],
                        protocol_version,
                    })
                }
            ),
        (session_reason(), u(), u()).prop_map(|(reason, oldest_seq, next_seq)| {
            ServerMessage::LogonReject(LogonReject { reason, oldest_seq, next_seq })
        }),
        session_reason().prop_map(|reason| ServerMessage::Logout { reason }),
        u().prop_map(|time_ns| ServerMessage::Heartbeat { time_ns }),
        (u(), u(), any::<[u8; 32]>(), u(), any::<u32>()).prop_map(
            |(request_id, last_index, state_hash, uptime_ns, sessions)| {
                ServerMessage::Status(StatusReport {
                    request_id,
                    last_index,
                    state_hash,
                    uptime_ns,
                    sessions,
                })
            }
        ),
    ];
    let reports = prop_oneof![
        (u(), new_order(), u(), u(), u()).prop_map(|(request_id, o, order_id, index, time_ns)| {
            ServerMessage::Accepted(AcceptedReport {
                request_id,
                order_id,
                client_order_id: o.client_order_id,
                market: o.market,
                side: o.side,
                order_type: o.order_type,
                tif: o.tif,
                post_only: o.post_only,
                stp: o.stp,
                price: o.price,
                qty: o.qty,
                quote_budget: o.quote_budget,
                index,
                time_ns,
            })
        }),
        (u(), any::<u8>(), reject_cause(), any::<[u64; 5]>(), any::<bool>(), shortfall()).prop_map(
            |(request_id, refused_type, cause, n, duplicate, shortfall)| {
                ServerMessage::Rejected(RejectReport {
                    shortfall,
                    request_id,
                    refused_type,
                    cause,
                    order_id: n[0],
                    client_order_id: n[1],
                    tx: n[2],
                    duplicate,
                    index: n[3],
                    time_ns: n[4],
                })
            }
        ),
        (any::<[u64; 8]>(), any::<u32>(), side(), any::<bool>()).prop_map(
            |(n, market, side, maker)| {
                ServerMessage::Trade(OwnTrade {
                    trade_id: n[0],
                    market,
                    order_id: n[1],
                    client_order_id: n[2],
                    side,
                    liquidity: if maker { Liquidity::Maker } else { Liquidity::Taker },
                    price: n[3],
                    qty: n[4],
                    fee: n[5],
                    index: n[6],
                    time_ns: n[7],
                })
            }
        ),
        (any::<[u64; 5]>(), any::<u32>(), side(), 0..4u8).prop_map(|(n, market, side, reason)| {
            let reason = [
                DoneReason::Filled,
                DoneReason::Cancelled,
                DoneReason::Expired,
                DoneReason::SelfTradePrevented,
            ][reason as usize];
            ServerMessage::Done(DoneReport {
                order_id: n[0],
                client_order_id: n[1],
                market,
                side,
                reason,
                filled_qty: n[2],
                index: n[3],
                time_ns: n[4],
            })
        }),
        (any::<[u64; 8]>(), any::<u32>(), side(), any::<bool>()).prop_map(
            |(n, market, side, priority_kept)| {
                ServerMessage::Amended(AmendedReport {
                    request_id: n[0],
                    order_id: n[1],
                    client_order_id: n[2],
                    market,
                    side,
                    price: n[3],
                    qty: n[4],
                    leaves_qty: n[5],
                    priority_kept,
                    index: n[6],
                    time_ns: n[7],
                })
            }
        ),
        (u(), proptest::option::of(any::<u32>()), any::<u32>(), u(), u()).prop_map(
            |(request_id, market, count, index, time_ns)| {
                ServerMessage::MassCancelDone(MassCancelReport {
                    request_id,
                    market,
                    count,
                    index,
                    time_ns,
                })
            }
        ),
        (any::<u32>(), any::<i64>(), any::<i64>(), any::<[u64; 4]>(), balance_reason()).prop_map(
            |(asset, delta_available, delta_held, n, reason)| {
                ServerMessage::BalanceUpdate(BalanceUpdate {
                    asset,
                    delta_available,
                    delta_held,
                    available: n[0],
                    held: n[1],
                    reason,
                    index: n[2],
                    time_ns: n[3],
                })
            }
        ),
        (any::<u32>(), any::<[u64; 5]>(), side()).prop_map(|(market, n, taker_side)| {
            ServerMessage::PublicTrade(PublicTrade {
                market,
                trade_id: n[0],
                price: n[1],
                qty: n[2],
                taker_side,
                index: n[3],
                time_ns: n[4],
            })
        }),
    ];
    let admin =
        (any::<[u64; 7]>(), any::<[u32; 2]>(), 0..8u8, status(), any::<u8>(), any::<bool>())
            .prop_map(|(n, m, kind, status, scale, duplicate)| {
                let kind = [
                    AdminKind::AssetCreated,
                    AdminKind::MarketCreated,
                    AdminKind::MarketStatus,
                    AdminKind::Deposit,
                    AdminKind::WithdrawRequest,
                    AdminKind::WithdrawComplete,
                    AdminKind::WithdrawCancel,
                    AdminKind::Transfer,
                ][kind as usize];
                ServerMessage::AdminAck(AdminAck {
                    request_id: n[0],
                    kind,
                    tx: n[1],
                    account: n[2],
                    counterparty: n[3],
                    asset: m[0],
                    market: m[1],
                    amount: n[4],
                    status,
                    scale,
                    duplicate,
                    index: n[5],
                    time_ns: n[6],
                })
            });
    prop_oneof![session, reports, admin]
}

fn one_frame(bytes: &[u8]) -> Vec<u8> {
    let mut decoder = FrameDecoder::new(frame::SERVER_FRAME_BYTES_MAX);
    assert_eq!(decoder.push(bytes), bytes.len());
    let frame = decoder.next_frame().unwrap().unwrap().to_vec();
    assert_eq!(frame.len(), bytes.len(), "exactly one frame");
    frame
}

fn server_round_trip(seq: u64, message: &ServerMessage<'_>) {
    let mut bytes = Vec::new();
    let written = Encoder::for_server().encode_server(seq, message, &mut bytes).unwrap();
    assert_eq!(written, bytes.len());
    let frame = one_frame(&bytes);
    let mut scratch = DecodeScratch::default();
    let options = frame::verifier_options(frame::SERVER_FRAME_BYTES_MAX);
    let (decoded_seq, decoded) = decode_server(&frame, &options, &mut scratch).unwrap();
    assert_eq!(decoded_seq, seq);
    assert_eq!(&decoded, message);
    // The server-side decoder calls a server-only message unknown. (Logout and Heartbeat
    // travel both ways.)
    if !matches!(message, ServerMessage::Logout { .. } | ServerMessage::Heartbeat { .. }) {
        let client_options = frame::verifier_options(frame::SERVER_FRAME_BYTES_MAX);
        let decoded = decode_client(&frame, &client_options);
        assert!(matches!(decoded, Err(DecodeError::UnknownMessage { .. })), "{decoded:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn client_requests_round_trip(request_id in any::<u64>(), request in client_request()) {
        let mut bytes = Vec::new();
        let written = Encoder::for_client().encode_client(request_id, &request, &mut bytes).unwrap();
        prop_assert_eq!(written, bytes.len());
        prop_assert!(bytes.len() <= 4 + frame::FRAME_BYTES_MAX);
        let frame = one_frame(&bytes);
        let options = frame::verifier_options(frame::FRAME_BYTES_MAX);
        prop_assert_eq!(decode_client(&frame, &options), Ok((request_id, request)));
        // A client-side decoder calls a client-only message unknown.
        if !matches!(request, ClientRequest::Logout | ClientRequest::Heartbeat { .. }) {
            let mut scratch = DecodeScratch::default();
            let decoded = decode_server(&frame, &options, &mut scratch);
            prop_assert!(matches!(decoded, Err(DecodeError::UnknownMessage { .. })), "{:?}", decoded);
        }
    }

    #[test]
    fn server_messages_round_trip(seq in any::<u64>(), message in server_message()) {
        server_round_trip(seq, &message);
    }

    #[test]
    fn lists_round_trip(
        seq in any::<u64>(),
        balances in proptest::collection::vec((any::<u32>(), any::<u64>(), any::<u64>()), 0..50),
        levels in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u32>()), 0..50),
        changes in proptest::collection::vec((side(), any::<u64>(), any::<u64>(), any::<u32>()), 0..50),
        orders in proptest::collection::vec((any::<[u64; 6]>(), any::<u32>(), side(), any::<bool>(), stp()), 0..50),
    ) {
        let balances: Vec<_> = balances.into_iter().map(|(a, available, held)| (a, Balance { available, held })).collect();
        server_round_trip(seq, &ServerMessage::Balances { request_id: seq ^ 1, balances: &balances });
        let levels: Vec<_> = levels.into_iter().map(|(price, qty, orders)| DepthLevel { price, qty, orders }).collect();
        let (bids, asks) = levels.split_at(levels.len() / 3);
        server_round_trip(seq, &ServerMessage::BookSnapshot { request_id: 3, market: 4, index: seq, bids, asks });
        let changes: Vec<_> = changes.into_iter().map(|(side, price, qty, orders)| LevelChange { side, price, qty, orders }).collect();
        server_round_trip(seq, &ServerMessage::BookUpdate { market: 9, index: 8, time_ns: 7, changes: &changes });
        let orders: Vec<_> = orders
            .into_iter()
            .map(|(n, market, side, post_only, stp)| OpenOrderInfo {
                order_id: n[0],
                client_order_id: n[1],
                market,
                side,
                price: n[2],
                qty: n[3],
                leaves_qty: n[4],
                filled_qty: n[5],
                post_only,
                stp,
            })
            .collect();
        server_round_trip(seq, &ServerMessage::OpenOrders { request_id: 1, orders: &orders, truncated: seq % 2 == 0 });
    }
}

#[test]
fn largest_bounded_replies_fit_the_frame_limit() {
    let m = u64::MAX;
    let balances = vec![(u32::MAX, Balance { available: m, held: m }); BALANCES_PER_REPLY_MAX];
    let levels = vec![DepthLevel { price: m, qty: m, orders: u32::MAX }; BOOK_DEPTH_MAX];
    let changes = vec![
        LevelChange { side: Side::Sell, price: m, qty: m, orders: u32::MAX };
        BOOK_CHANGES_PER_UPDATE_MAX
    ];
    let order = OpenOrderInfo {
        order_id: m,
        client_order_id: m,
        market: u32::MAX,
        side: Side::Sell,
        price: m,
        qty: m,
        leaves_qty: m,
        filled_qty: m,
        post_only: true,
        stp: StpMode::Decrement,
    };
    let orders = vec![order; OPEN_ORDERS_PER_REPLY_MAX];
    let messages = [
        ServerMessage::Balances { request_id: m, balances: &balances },
        ServerMessage::BookSnapshot {
            request_id: m,
            market: u32::MAX,
            index: m,
            bids: &levels,
            asks: &levels,
        },
        ServerMessage::BookUpdate { market: u32::MAX, index: m, time_ns: m, changes: &changes },
        ServerMessage::OpenOrders { request_id: m, orders: &orders, truncated: true },
    ];
    for message in &messages {
        let mut bytes = Vec::new();
        let len = Encoder::for_server().encode_server(m, message, &mut bytes).unwrap();
        assert!(len <= 4 + frame::SERVER_FRAME_BYTES_MAX, "{len}");
        server_round_trip(m, message);
    }
    // One over a bound is refused, not sent.
    let too_many = vec![order; OPEN_ORDERS_PER_REPLY_MAX + 1];
    let mut bytes = Vec::new();
    let result = Encoder::for_server().encode_server(
        1,
        &ServerMessage::OpenOrders { request_id: 1, orders: &too_many, truncated: false },
        &mut bytes,
    );
    assert!(result.is_err());
    assert!(bytes.is_empty());
}

#[test]
fn largest_client_requests_fit_the_smallest_frame_limit() {
    let spec = MarketSpec {
        market: u32::MAX,
        symbol: Symbol::new("ABCDEFGHIJKLMNOP").unwrap(),
        base: u32::MAX,
        quote: u32::MAX,
        tick_size: u64::MAX,
        lot_size: u64::MAX,
        min_notional: u64::MAX,
        maker_fee_bps: u32::MAX,
        taker_fee_bps: u32::MAX,
    };
    let logon = Logon {
        protocol_version: u16::MAX,
        key_id: u64::MAX,
        signature: [0xff; 32],
        session_id: u64::MAX,
        resume_from_seq: u64::MAX,
        cancel_on_disconnect: true,
    };
    let order = NewOrder {
        market: u32::MAX,
        client_order_id: u64::MAX,
        side: Side::Sell,
        order_type: OrderType::Market,
        tif: TimeInForce::Fok,
        post_only: true,
        price: u64::MAX,
        qty: u64::MAX,
        quote_budget: u64::MAX,
        stp: StpMode::Decrement,
    };
    let requests = [
        ClientRequest::Admin(AdminRequest::CreateMarket(spec)),
        ClientRequest::Logon(logon),
        ClientRequest::NewOrder(order),
        ClientRequest::Admin(AdminRequest::Transfer {
            tx: u64::MAX,
            from: u64::MAX,
            to: u64::MAX,
            asset: u32::MAX,
            amount: u64::MAX,
            create_account: true,
        }),
    ];
    for request in &requests {
        let mut bytes = Vec::new();
        let len = Encoder::for_client().encode_client(u64::MAX, request, &mut bytes).unwrap();
        assert!(len - 4 <= bourse_net::session::FRAME_BYTES_MAX_FLOOR, "{len} {request:?}");
    }
}

#[test]
fn symbols_are_validated_on_decode() {
    // A symbol the engine would not accept is an invalid field, caught at the edge.
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let symbol = fbb.create_string("has space");
    let body = bourse_net::wire::CreateAsset::create(
        &mut fbb,
        &bourse_net::wire::CreateAssetArgs { asset: 1, scale: 2, symbol: Some(symbol) },
    );
    let args = bourse_net::wire::MessageArgs {
        seq: 4,
        body_type: bourse_net::wire::Body::CreateAsset,
        body: Some(body.as_union_value()),
    };
    let message = bourse_net::wire::Message::create(&mut fbb, &args);
    fbb.finish_size_prefixed(message, Some(bourse_net::wire::MESSAGE_IDENTIFIER));
    let options = frame::verifier_options(frame::FRAME_BYTES_MAX);
    assert_eq!(
        decode_client(fbb.finished_data(), &options),
        Err(DecodeError::InvalidField {
            request_id: 4,
            body_type: bourse_net::wire::Body::CreateAsset.0,
            field: "symbol"
        })
    );
}

#[test]
fn missing_required_field_is_malformed() {
    // A Logon without its (required) signature fails verification. The builder refuses
    // to write one, so a Heartbeat table is sent under the Logon tag.
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let body = bourse_net::wire::Heartbeat::create(
        &mut fbb,
        &bourse_net::wire::HeartbeatArgs { time_ns: 5 },
    );
    let args = bourse_net::wire::MessageArgs {
        seq: 4,
        body_type: bourse_net::wire::Body::Logon,
        body: Some(body.as_union_value()),
    };
    let message = bourse_net::wire::Message::create(&mut fbb, &args);
    fbb.finish_size_prefixed(message, Some(bourse_net::wire::MESSAGE_IDENTIFIER));
    let options = frame::verifier_options(frame::FRAME_BYTES_MAX);
    assert_eq!(
        decode_client(fbb.finished_data(), &options),
        Err(DecodeError::Malformed(frame::VerifyError::MissingRequiredField))
    );
}

/// An InsufficientFunds reject carries its shortfall over the wire; a server that claims
/// more available than needed sent a contradiction, which decodes as an error, not a
/// panic or a made-up shortfall.
#[test]
fn a_shortfall_travels_and_a_contradictory_one_is_refused() {
    let needed = 0x1122_3344_5566_7788;
    let available = 0x0102_0304_0506_0708;
    let message = ServerMessage::Rejected(RejectReport {
        request_id: 9,
        refused_type: 0,
        cause: RejectCause::Engine {
            command: CommandKind::WithdrawRequest,
            reason: RejectReason::InsufficientFunds,
        },
        order_id: 0,
        client_order_id: 0,
        tx: 77,
        duplicate: false,
        index: 5,
        time_ns: 6,
        shortfall: Some(Shortfall { asset: 2, needed, available }),
    });
    let mut bytes = Vec::new();
    Encoder::for_server().encode_server(1, &message, &mut bytes).unwrap();
    let options = frame::verifier_options(frame::SERVER_FRAME_BYTES_MAX);
    let mut scratch = DecodeScratch::default();
    let frame = one_frame(&bytes);
    let (_, decoded) = decode_server(&frame, &options, &mut scratch).unwrap();
    assert_eq!(decoded, message);
    // Patch `available` to needed + 1.
    let at = bytes
        .windows(8)
        .position(|w| w == available.to_le_bytes())
        .expect("available is in the frame");
    bytes[at..at + 8].copy_from_slice(&(needed + 1).to_le_bytes());
    let mut scratch = DecodeScratch::default();
    let frame = one_frame(&bytes);
    let decoded = decode_server(&frame, &options, &mut scratch);
    assert!(
        matches!(decoded, Err(DecodeError::InvalidField { field: "needed", .. })),
        "{decoded:?}"
    );
}
