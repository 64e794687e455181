//! Reference data (`ReferenceQuery` -> `Reference`): codec round trips with random
//! values, the bounds at their limits, validation on decode, the gateway's permission
//! and cutting, and a live server answering every role with the demo's assets and
//! markets.
//!
//! Proptest prints the failing input and stores it under proptest-regressions/; set
//! PROPTEST_RNG_SEED to replay a run with a given seed.

mod common;
mod live;

use bourse_engine::{MarketSpec, MarketStatus, Symbol};
use bourse_net::client::Incoming;
use bourse_net::codec::{decode_client, decode_server, DecodeError, DecodeScratch, Encoder};
use bourse_net::frame::{self, FrameDecoder};
use bourse_net::protocol::*;
use bourse_net::session::{Action, Query};
use bourse_net::wire as fb;
use proptest::prelude::*;

fn symbol() -> impl Strategy<Value = Symbol> {
    "[!-~]{1,16}".prop_map(|s| Symbol::new(&s).unwrap())
}

fn asset_info() -> impl Strategy<Value = AssetInfo> {
    (any::<u32>(), any::<u8>(), symbol()).prop_map(|(asset, scale, symbol)| AssetInfo {
        asset,
        scale,
        symbol,
    })
}

fn market_info() -> impl Strategy<Value = MarketInfo> {
    (any::<[u32; 5]>(), symbol(), any::<[u64; 3]>(), any::<bool>()).prop_map(
        |(n, symbol, m, halted)| MarketInfo {
            spec: MarketSpec {
                market: n[0],
                symbol,
                base: n[1],
                quote: n[2],
                tick_size: m[0],
                lot_size: m[1],
                min_notional: m[2],
                maker_fee_bps: n[3],
                taker_fee_bps: n[4],
            },
            status: if halted { MarketStatus::Halted } else { MarketStatus::Open },
        },
    )
}

fn encode(seq: u64, message: &ServerMessage<'_>) -> Vec<u8> {
    let mut bytes = Vec::new();
    let written = Encoder::for_server().encode_server(seq, message, &mut bytes).unwrap();
    assert_eq!(written, bytes.len());
    let mut decoder = FrameDecoder::new(frame::SERVER_FRAME_BYTES_MAX);
    assert_eq!(decoder.push(&bytes), bytes.len());
    let frame = decoder.next_frame().unwrap().unwrap().to_vec();
    assert_eq!(frame.len(), bytes.len(), "exactly one frame");
    frame
}

fn server_round_trip(seq: u64, message: &ServerMessage<'_>) -> usize {
    let frame = encode(seq, message);
    let mut scratch = DecodeScratch::default();
    let options = frame::verifier_options(frame::SERVER_FRAME_BYTES_MAX);
    let (decoded_seq, decoded) = decode_server(&frame, &options, &mut scratch).unwrap();
    assert_eq!(decoded_seq, seq);
    assert_eq!(&decoded, message);
    assert!(!message.is_sequenced(), "a Reference answers the connection, like Balances");
    // The server's decoder calls a server-only message unknown.
    let decoded = decode_client(&frame, &options);
    assert!(matches!(decoded, Err(DecodeError::UnknownMessage { .. })), "{decoded:?}");
    frame.len()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn reference_round_trips(
        seq in any::<u64>(),
        request_id in any::<u64>(),
        assets in proptest::collection::vec(asset_info(), 0..40),
        markets in proptest::collection::vec(market_info(), 0..40),
        truncated in any::<bool>(),
    ) {
        let message = ServerMessage::Reference { request_id, assets: &assets, markets: &markets, truncated };
        server_round_trip(seq, &message);
        // The owned form the client library hands out keeps every item.
        let owned = Incoming::from_message(message);
        let expected = Incoming::Reference { request_id, assets, markets, truncated };
        prop_assert_eq!(owned, expected);
    }

    #[test]
    fn reference_query_round_trips(request_id in any::<u64>()) {
        let mut bytes = Vec::new();
        Encoder::for_client().encode_client(request_id, &ClientRequest::ReferenceQuery, &mut bytes).unwrap();
        let options = frame::verifier_options(frame::FRAME_BYTES_MAX);
        prop_assert_eq!(decode_client(&bytes, &options), Ok((request_id, ClientRequest::ReferenceQuery)));
        // A client-side decoder calls the client-only query unknown.
        let mut scratch = DecodeScratch::default();
        let decoded = decode_server(&bytes, &options, &mut scratch);
        prop_assert!(matches!(decoded, Err(DecodeError::UnknownMessage { .. })), "{:?}", decoded);
    }
}

fn largest_asset() -> AssetInfo {
    AssetInfo { asset: u32::MAX, scale: u8::MAX, symbol: Symbol::new("ABCDEFGHIJKLMNOP").unwrap() }
}

fn largest_market() -> MarketInfo {
    MarketInfo {
        spec: MarketSpec {
            market: u32::MAX,
            symbol: Symbol::new("ABCDEFGHIJKLMNOP").unwrap(),
            base: u32::MAX,
            quote: u32::MAX,
            tick_size: u64::MAX,
            lot_size: u64::MAX,
            min_notional: u64::MAX,
            maker_fee_bps: u32::MAX,
            taker_fee_bps: u32::MAX,
        },
        status: MarketStatus::Halted,
    }
}

#[test]
fn largest_reference_fits_the_frame_limit_and_one_more_is_refused() {
    let assets = vec![largest_asset(); REFERENCE_ASSETS_MAX];
    let markets = vec![largest_market(); REFERENCE_MARKETS_MAX];
    let message = ServerMessage::Reference {
        request_id: u64::MAX,
        assets: &assets,
        markets: &markets,
        truncated: true,
    };
    let len = server_round_trip(u64::MAX, &message);
    assert!(len <= 4 + frame::SERVER_FRAME_BYTES_MAX, "{len}");
    println!("largest Reference: {len} bytes of {}", 4 + frame::SERVER_FRAME_BYTES_MAX);

    let too_many_assets = vec![largest_asset(); REFERENCE_ASSETS_MAX + 1];
    let too_many_markets = vec![largest_market(); REFERENCE_MARKETS_MAX + 1];
    for (assets, markets) in [(&too_many_assets, &markets), (&assets, &too_many_markets)] {
        let mut bytes = Vec::new();
        let message = ServerMessage::Reference { request_id: 1, assets, markets, truncated: false };
        let result = Encoder::for_server().encode_server(1, &message, &mut bytes);
        assert!(matches!(result, Err(bourse_net::codec::EncodeError::ListTooLong { .. })));
        assert!(bytes.is_empty(), "nothing is written on error");
    }
}

/// A Reference frame built by hand, with one asset or market field of our choosing.
fn hand_built(asset_symbol: &str, market_status: fb::MarketStatus) -> Vec<u8> {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let symbol = fbb.create_string(asset_symbol);
    let asset = fb::AssetInfo::create(
        &mut fbb,
        &fb::AssetInfoArgs { asset: 1, scale: 8, symbol: Some(symbol) },
    );
    let assets = fbb.create_vector(&[asset]);
    let symbol = fbb.create_string("BTC-USDT");
    let market = fb::MarketInfo::create(
        &mut fbb,
        &fb::MarketInfoArgs {
            market: 1,
            symbol: Some(symbol),
            base: 1,
            quote: 2,
            tick_size: 1,
            lot_size: 1,
            min_notional: 0,
            maker_fee_bps: 0,
            taker_fee_bps: 0,
            status: market_status,
        },
    );
    let markets = fbb.create_vector(&[market]);
    let body = fb::Reference::create(
        &mut fbb,
        &fb::ReferenceArgs {
            request_id: 3,
            assets: Some(assets),
            markets: Some(markets),
            truncated: false,
        },
    );
    let args = fb::MessageArgs {
        seq: 4,
        body_type: fb::Body::Reference,
        body: Some(body.as_union_value()),
    };
    let message = fb::Message::create(&mut fbb, &args);
    fbb.finish_size_prefixed(message, Some(fb::MESSAGE_IDENTIFIER));
    fbb.finished_data().to_vec()
}

#[test]
fn bad_symbols_and_unknown_statuses_are_invalid_fields() {
    let options = frame::verifier_options(frame::SERVER_FRAME_BYTES_MAX);
    let mut scratch = DecodeScratch::default();
    let good = hand_built("BTC", fb::MarketStatus::Open);
    assert!(decode_server(&good, &options, &mut scratch).is_ok());
    let body_type = fb::Body::Reference.0;
    let cases = [
        (hand_built("has space", fb::MarketStatus::Open), "symbol"),
        (hand_built("", fb::MarketStatus::Open), "symbol"),
        (hand_built("SEVENTEEN_CHARS_X", fb::MarketStatus::Open), "symbol"),
        (hand_built("BTC", fb::MarketStatus(7)), "status"),
    ];
    for (frame, field) in cases {
        assert_eq!(
            decode_server(&frame, &options, &mut scratch),
            Err(DecodeError::InvalidField { request_id: 0, body_type, field })
        );
    }
}

#[test]
fn every_role_may_ask_and_the_gateway_cuts_what_does_not_fit() {
    use common::*;
    for key in [TRADER_A, ADMIN] {
        let mut h = Harness::with_defaults();
        let (mut client, _, _) = h.logon(key, 0, 0, false);
        h.take_actions();
        h.send(&mut client, 77, &ClientRequest::ReferenceQuery);
        let actions = h.take_actions();
        let origin = match actions.as_slice() {
            [Action::Query { origin, query: Query::Reference }] => *origin,
            other => panic!("key {key}: expected a reference query, got {other:?}"),
        };
        assert_eq!(origin.request_id, 77);

        // One more asset than a reply holds: cut to the bound and flagged.
        let assets: Vec<AssetInfo> = (0..=REFERENCE_ASSETS_MAX as u32)
            .map(|asset| AssetInfo { asset, scale: 2, symbol: Symbol::new("A").unwrap() })
            .collect();
        let markets = vec![largest_market(); 3];
        h.gw.reply_reference(origin, h.now_ns, &assets, &markets, &mut h.actions);
        let got = h.read_all(&mut client);
        match got.as_slice() {
            [(seq, Got::Reference(77, a, m, true))] => {
                assert_eq!(*seq, 0, "an answer on the connection, not part of the stream");
                assert_eq!(a.as_slice(), &assets[..REFERENCE_ASSETS_MAX]);
                assert_eq!(m, &markets);
            }
            other => panic!("key {key}: expected a truncated reference, got {other:?}"),
        }

        // Within the bounds: everything, not flagged.
        h.gw.reply_reference(origin, h.now_ns, &assets[..2], &markets, &mut h.actions);
        let got = h.read_all(&mut client);
        assert!(
            matches!(got.as_slice(), [(_, Got::Reference(77, a, _, false))] if a.len() == 2),
            "{got:?}"
        );
    }
}

#[test]
fn live_server_answers_traders_and_admins_with_the_demo_reference() {
    use live::*;
    let server = LiveServer::demo();
    let mut seen = Vec::new();
    for key in [ALICE, ADMIN] {
        let mut client = server.connect(key);
        let request_id = client.send(&ClientRequest::ReferenceQuery).unwrap();
        let (assets, markets, truncated) = expect(&mut client, "reference", |m| match m {
            Incoming::Reference { request_id: r, assets, markets, truncated }
                if *r == request_id =>
            {
                Some((assets.clone(), markets.clone(), *truncated))
            }
            _ => None,
        });
        assert!(!truncated);
        let summary: Vec<(u32, u8, &str)> =
            assets.iter().map(|a| (a.asset, a.scale, a.symbol.as_str())).collect();
        assert_eq!(summary, [(1, 8, "BTC"), (2, 6, "USDT"), (3, 8, "ETH")], "key {key}");
        assert_eq!(markets.len(), 2);
        let btc_usdt = markets[0];
        assert_eq!(btc_usdt.spec.symbol.as_str(), "BTC-USDT");
        assert_eq!((btc_usdt.spec.base, btc_usdt.spec.quote), (BTC, USDT));
        assert_eq!((btc_usdt.spec.tick_size, btc_usdt.spec.lot_size), (10_000, 10_000));
        assert_eq!((btc_usdt.spec.maker_fee_bps, btc_usdt.spec.taker_fee_bps), (2, 5));
        assert_eq!(btc_usdt.status, MarketStatus::Open);
        assert_eq!(markets[1].spec.symbol.as_str(), "ETH-USDT");
        seen.push((assets, markets));
    }
    // Both keys saw exactly what the engine holds.
    let report = server.stop();
    let engine_assets: Vec<AssetInfo> =
        report.engine.assets().iter().map(AssetInfo::from).collect();
    let engine_markets: Vec<MarketInfo> =
        report.engine.markets().iter().map(MarketInfo::from).collect();
    for (assets, markets) in seen {
        assert_eq!(assets, engine_assets);
        assert_eq!(markets, engine_markets);
    }
}
