//! The command codec: round trips for every variant, the `COMMAND_BYTES_MAX` bound at
//! worst-case values, and errors (never panics) on truncated, versioned-wrong, trailing
//! and garbage bytes.

use bourse_engine::command::{COMMAND_BYTES_MAX, COMMAND_CODEC_VERSION};
use bourse_engine::{
    Command, DecodeError, MarketSpec, MarketStatus, OrderRef, OrderType, PlaceOrder, Side, StpMode,
    Symbol, TimeInForce,
};
use proptest::prelude::Rng;

use crate::support::*;

/// Position of the variant, by exhaustive match: a new variant fails to compile here
/// until `samples` covers it.
fn variant(command: &Command) -> usize {
    match command {
        Command::CreateAsset { .. } => 0,
        Command::CreateMarket(_) => 1,
        Command::SetMarketStatus { .. } => 2,
        Command::Deposit { .. } => 3,
        Command::WithdrawRequest { .. } => 4,
        Command::WithdrawComplete { .. } => 5,
        Command::WithdrawCancel { .. } => 6,
        Command::Transfer { .. } => 7,
        Command::Place(_) => 8,
        Command::Cancel { .. } => 9,
        Command::Amend { .. } => 10,
        Command::MassCancel { .. } => 11,
    }
}
const VARIANTS: usize = 12;

/// Every variant, with small values and with the largest value of every field (the
/// longest varints), plus each enum's other values.
fn samples() -> Vec<Command> {
    let m = u64::MAX;
    let m32 = u32::MAX;
    let full_symbol = Symbol([b'~'; 16]);
    let place_max = PlaceOrder {
        account: m,
        market: m32,
        client_order_id: m,
        side: Side::Sell,
        order_type: OrderType::Market,
        tif: TimeInForce::Fok,
        post_only: true,
        price: m,
        qty: m,
        quote_budget: m,
        stp: StpMode::Decrement,
    };
    let mut out = vec![
        Command::CreateAsset { asset: BTC, scale: 8, symbol: symbol("BTC") },
        Command::CreateAsset { asset: m32, scale: u8::MAX, symbol: full_symbol },
        Command::CreateMarket(eth_usdt_spec()),
        Command::CreateMarket(MarketSpec {
            market: m32,
            symbol: full_symbol,
            base: m32,
            quote: m32,
            tick_size: m,
            lot_size: m,
            min_notional: m,
            maker_fee_bps: m32,
            taker_fee_bps: m32,
        }),
        Command::SetMarketStatus { market: 1, status: MarketStatus::Halted },
        Command::SetMarketStatus { market: m32, status: MarketStatus::Open },
        Command::Deposit { tx: 1, account: 2, asset: 3, amount: 4 },
        Command::Deposit { tx: m, account: m, asset: m32, amount: m },
        Command::WithdrawRequest { tx: 5, account: 6, asset: 7, amount: 8 },
        Command::WithdrawRequest { tx: m, account: m, asset: m32, amount: m },
        Command::WithdrawComplete { tx: 9 },
        Command::WithdrawComplete { tx: m },
        Command::WithdrawCancel { tx: 10 },
        Command::WithdrawCancel { tx: m },
        Command::Transfer { tx: 11, from: 1, to: 2, asset: 3, amount: 99, create_account: true },
        Command::Transfer { tx: 12, from: 1, to: 2, asset: 3, amount: 99, create_account: false },
        Command::Transfer { tx: m, from: m, to: m, asset: m32, amount: m, create_account: false },
        Command::Place(buy(ALICE, BTC_USDT, px(100), btc(3)).cid(4)),
        Command::Place(market_buy(ALICE, BTC_USDT, 1_000)),
        Command::Place(place_max),
        Command::Cancel { account: 1, order: OrderRef::Id(2) },
        Command::Cancel { account: m, order: OrderRef::Client(m) },
        Command::Amend { account: 1, order: OrderRef::Client(2), price: 0, qty: 5 },
        Command::Amend { account: m, order: OrderRef::Id(m), price: m, qty: m },
        Command::MassCancel { account: 1, market: None },
        Command::MassCancel { account: m, market: Some(m32) },
    ];
    for tif in [TimeInForce::Gtc, TimeInForce::Ioc, TimeInForce::Fok] {
        for stp in
            [StpMode::CancelTaker, StpMode::CancelMaker, StpMode::CancelBoth, StpMode::Decrement]
        {
            out.push(Command::Place(PlaceOrder { tif, stp, ..sell(BOB, ETH_USDT, 1, 2) }));
        }
    }
    out
}

fn encode(command: &Command) -> Vec<u8> {
    let mut bytes = Vec::new();
    command.encode(&mut bytes);
    bytes
}

#[test]
fn every_variant_round_trips_within_the_size_bound() {
    let mut covered = [false; VARIANTS];
    let mut longest = 0;
    for command in samples() {
        covered[variant(&command)] = true;
        let bytes = encode(&command);
        assert_eq!(bytes[0], COMMAND_CODEC_VERSION);
        assert!(bytes.len() <= COMMAND_BYTES_MAX, "{command:?}: {} bytes", bytes.len());
        longest = longest.max(bytes.len());
        assert_eq!(Command::decode(&bytes), Ok(command));
        // encode appends: a prefix already in the buffer is kept.
        let mut appended = vec![0xAA, 0xBB];
        command.encode(&mut appended);
        assert_eq!(&appended[2..], &bytes[..]);
    }
    assert!(covered.iter().all(|&c| c), "variants without a sample: {covered:?}");
    println!("longest encoded command: {longest} bytes (bound {COMMAND_BYTES_MAX})");
}

/// Logs written before `create_account` existed must replay as they were written: their
/// transfers (variant 7) created a new receiver, so they decode as `create_account: true`,
/// whose bytes are exactly the old ones; `create_account: false` is the appended variant 12.
#[test]
fn transfer_bytes_of_older_logs_keep_their_meaning() {
    // Version 1, variant 7, tx 11, from 1, to 2, asset 3, amount 99 (postcard varints):
    // the bytes a transfer had before the flag.
    let old = [COMMAND_CODEC_VERSION, 7, 11, 1, 2, 3, 99];
    let create =
        Command::Transfer { tx: 11, from: 1, to: 2, asset: 3, amount: 99, create_account: true };
    assert_eq!(Command::decode(&old), Ok(create));
    assert_eq!(encode(&create), old);
    let existing =
        Command::Transfer { tx: 11, from: 1, to: 2, asset: 3, amount: 99, create_account: false };
    let new = [COMMAND_CODEC_VERSION, 12, 11, 1, 2, 3, 99];
    assert_eq!(encode(&existing), new);
    assert_eq!(Command::decode(&new), Ok(existing));
}

#[test]
fn truncated_trailing_and_versioned_bytes_are_errors() {
    assert_eq!(Command::decode(&[]), Err(DecodeError::Empty));
    for command in samples() {
        let bytes = encode(&command);
        for len in 1..bytes.len() {
            assert!(Command::decode(&bytes[..len]).is_err(), "{command:?} cut to {len} decoded");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Command::decode(&long), Err(DecodeError::TrailingBytes(1)));
        let mut other = bytes.clone();
        other[0] = COMMAND_CODEC_VERSION.wrapping_add(1);
        assert_eq!(Command::decode(&other), Err(DecodeError::Version(other[0])));
    }
    // A variant tag past the last one (the byte form has one more variant than
    // `Command`: the transfer that must not create its receiver, 12).
    assert_eq!(
        Command::decode(&[COMMAND_CODEC_VERSION, VARIANTS as u8 + 1]),
        Err(DecodeError::Malformed)
    );
    // A bool that is neither 0 nor 1 (post_only of a Place) must not decode as either.
    let mut bytes = encode(&Command::Place(buy(1, 1, 1, 1)));
    let post_only_at = bytes.len() - 5; // post_only, price 1, qty 1, budget 0, stp 0
    assert_eq!(bytes[post_only_at], 0);
    bytes[post_only_at] = 2;
    assert!(Command::decode(&bytes).is_err());
}

#[test]
fn garbage_and_mutated_bytes_never_panic() {
    let seed = seed_from_env();
    let mut rng = seeded_rng(seed);
    let samples: Vec<Vec<u8>> = samples().iter().map(encode).collect();
    let mut decoded = 0;
    for round in 0..20_000 {
        let bytes = if round % 2 == 0 {
            // Pure garbage behind the right version byte.
            let len = (rng.next_u32() % 80) as usize;
            let mut bytes = vec![COMMAND_CODEC_VERSION];
            bytes.extend((0..len).map(|_| rng.next_u32() as u8));
            bytes
        } else {
            // A valid command with a few bytes flipped, cut or extended.
            let mut bytes = samples[rng.next_u32() as usize % samples.len()].clone();
            for _ in 0..1 + rng.next_u32() % 3 {
                let at = 1 + rng.next_u32() as usize % (bytes.len() - 1);
                bytes[at] = rng.next_u32() as u8;
            }
            match rng.next_u32() % 4 {
                0 => bytes.truncate(1 + rng.next_u32() as usize % bytes.len()),
                1 => bytes.push(rng.next_u32() as u8),
                _ => {}
            }
            bytes
        };
        // The fuzz target's own check: no panic, and what decodes round-trips.
        crate::fuzz_harness::decode_command(&bytes);
        decoded += usize::from(Command::decode(&bytes).is_ok());
    }
    println!("seed {seed}: {decoded} of 20000 random inputs decoded");
    assert!(decoded > 0, "the mutations should sometimes stay valid (seed {seed})");
}
