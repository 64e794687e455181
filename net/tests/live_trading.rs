//! Trading, market data, resume and cancel-on-disconnect over real TCP against the real
//! daemon (`server::run_with` on loopback), checked against exact balances, the final
//! engine and a reference engine that replays the same commands.

mod live;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bourse_engine::{
    Balance, Command, DepthLevel, DoneReason, OrderRef, OrderType, Side, StpMode, TimeInForce,
};
use bourse_net::auth::{ApiKey, Role};
use bourse_net::client::{demo_secret, BlockingClient, ClientError, Incoming, LogonOptions};
use bourse_net::protocol::*;
use live::*;
use proptest::prelude::Rng;
use proptest::test_runner::{RngAlgorithm, TestRng};

/// `price` in USDT with two decimals, as the wire's micro-USDT per whole BTC.
const fn usdt_cents(cents: u64) -> u64 {
    cents * 10_000
}

/// `fee(notional, bps) = floor(notional * bps / 10_000)` (engine/README.md).
fn fee(notional: u64, bps: u64) -> u64 {
    (notional as u128 * bps as u128 / 10_000) as u64
}

/// Quote minor units of `qty` satoshi at `price` micro-USDT per BTC.
fn notional(price: u64, qty: u64) -> u64 {
    (price as u128 * qty as u128 / 100_000_000) as u64
}

fn trade_of(client: &mut BlockingClient, order_id: u64) -> OwnTrade {
    expect(client, "trade", |m| match m {
        Incoming::Msg(ServerMessage::Trade(t)) if t.order_id == order_id => Some(*t),
        _ => None,
    })
}

fn amended(client: &mut BlockingClient, request_id: RequestId) -> AmendedReport {
    expect(client, "amended", |m| match m {
        Incoming::Msg(ServerMessage::Amended(a)) if a.request_id == request_id => Some(*a),
        Incoming::Msg(ServerMessage::Rejected(r)) if r.request_id == request_id => {
            panic!("amend rejected: {r:?}")
        }
        _ => None,
    })
}

fn balance_of(balances: &[(u32, Balance)], asset: u32) -> Balance {
    balances.iter().find(|(a, _)| *a == asset).map_or(Balance::default(), |(_, b)| *b)
}

fn bal(available: u64, held: u64) -> Balance {
    Balance { available, held }
}

// ----- Full trading scenario -------------------------------------------------------------------

#[test]
fn full_trading_scenario_settles_exact_balances() {
    let config = demo_config(|_| {});
    let server = LiveServer::start(config.clone());
    let mut maker = server.connect(MAKER);
    let mut alice = server.connect(ALICE);
    let mut bob = server.connect(BOB);
    let mut log: Vec<Command> = Vec::new();
    let send = |log: &mut Vec<Command>, client: &mut BlockingClient, account, request| {
        log.push(as_command(account, &request));
        client.send(&request).unwrap()
    };

    // Demo: maker 100 BTC / 5_000_000 USDT; alice 100_000 USDT; bob 2 BTC.
    let p_a1 = usdt_cents(5_012_345); // 50_123.45
    let p_bid = usdt_cents(4_990_000); // 49_900.00
    let p_a2 = usdt_cents(5_020_000); // 50_200.00

    // 1. The maker quotes: a bid and two asks.
    let quotes = [
        limit_order(BTC_USDT, Side::Buy, p_bid, 50_000_000, 1), // 0.5 BTC
        limit_order(BTC_USDT, Side::Sell, p_a1, 50_000_000, 2), // 0.5 BTC
        limit_order(BTC_USDT, Side::Sell, p_a2, 100_000_000, 3), // 1 BTC
    ];
    let mut maker_ids = Vec::new();
    for quote in quotes {
        log.push(as_command(MAKER, &quote));
        maker_ids.push(place(&mut maker, &quote).order_id);
    }
    let (bid_id, a1_id, a2_id) = (maker_ids[0], maker_ids[1], maker_ids[2]);

    // 2. Alice crosses: buys 0.3007 BTC up to 50_150.00; fills at the maker's 50_123.45.
    //    notional = 50_123.45 * 0.3007 = 15_072.121415 USDT = 15_072_121_415
    //    maker fee 2 bps = floor(3_014_424.283) = 3_014_424; taker 5 bps =
    //    floor(7_536_060.7075) = 7_536_060.
    let cross = limit_order(BTC_USDT, Side::Buy, usdt_cents(5_015_000), 30_070_000, 10);
    log.push(as_command(ALICE, &cross));
    let cross_id = place(&mut alice, &cross).order_id;
    let t1 = trade_of(&mut alice, cross_id);
    assert_eq!((t1.price, t1.qty, t1.liquidity), (p_a1, 30_070_000, Liquidity::Taker));
    assert_eq!(notional(t1.price, t1.qty), 15_072_121_415);
    assert_eq!(t1.fee, 7_536_060);
    assert_eq!(t1.fee, fee(15_072_121_415, 5));
    let d = done(&mut alice, cross_id);
    assert_eq!((d.reason, d.filled_qty), (DoneReason::Filled, 30_070_000));
    let m1 = trade_of(&mut maker, a1_id);
    assert_eq!((m1.trade_id, m1.liquidity, m1.side), (t1.trade_id, Liquidity::Maker, Side::Sell));
    assert_eq!(m1.fee, 3_014_424);
    assert_eq!(m1.fee, fee(15_072_121_415, 2));

    // 3. Partial fill: alice bids 0.5 BTC at 50_123.45, takes the ask's last 0.1993 and
    //    rests 0.3007. notional = 9_989_603_585; maker fee floor(1_997_920.717) =
    //    1_997_920; taker fee floor(4_994_801.7925) = 4_994_801.
    let partial = limit_order(BTC_USDT, Side::Buy, p_a1, 50_000_000, 11);
    log.push(as_command(ALICE, &partial));
    let partial_id = place(&mut alice, &partial).order_id;
    let t2 = trade_of(&mut alice, partial_id);
    assert_eq!((t2.qty, t2.fee), (19_930_000, 4_994_801));
    assert_eq!(notional(t2.price, t2.qty), 9_989_603_585);
    let m2 = trade_of(&mut maker, a1_id);
    assert_eq!((m2.qty, m2.fee), (19_930_000, 1_997_920));
    let d = done(&mut maker, a1_id);
    assert_eq!((d.reason, d.filled_qty), (DoneReason::Filled, 50_000_000));

    // 4. Amends. Alice reprices the rest to 50_000.00 (loses priority); her hold becomes
    //    reserve_buy(0.3007 BTC at 50_000) = 15_035_000_000 + 7_517_500 (max rate 5 bps).
    let request = ClientRequest::Amend {
        order: OrderRef::Id(partial_id),
        price: usdt_cents(5_000_000),
        qty: 0,
    };
    let request_id = send(&mut log, &mut alice, ALICE, request);
    let a = amended(&mut alice, request_id);
    assert_eq!((a.price, a.qty, a.leaves_qty), (usdt_cents(5_000_000), 50_000_000, 30_070_000));
    assert!(!a.priority_kept);
    // The maker trims its 1 BTC ask to 0.6 BTC (same price: keeps its priority).
    let request = ClientRequest::Amend { order: OrderRef::Id(a2_id), price: 0, qty: 60_000_000 };
    let request_id = send(&mut log, &mut maker, MAKER, request);
    let a = amended(&mut maker, request_id);
    assert_eq!(
        (a.price, a.qty, a.leaves_qty, a.priority_kept),
        (p_a2, 60_000_000, 60_000_000, true)
    );
    // Alice's USDT now: 100_000 USDT - trade 1 (15_072_121_415 + 7_536_060)
    // - trade 2 (9_989_603_585 + 4_994_801) - the hold 15_042_517_500.
    let b = balances(&mut alice);
    assert_eq!(balance_of(&b, USDT), bal(59_883_226_639, 15_042_517_500));
    assert_eq!(balance_of(&b, BTC), bal(50_000_000, 0));

    // 5. Bob sells 0.1234 BTC down to 49_950.00: the best bid is alice's 50_000.00 (above
    //    the maker's 49_900.00). notional 6_170_000_000; alice (maker) pays 1_234_000,
    //    bob (taker) 3_085_000.
    let sell = limit_order(BTC_USDT, Side::Sell, usdt_cents(4_995_000), 12_340_000, 20);
    log.push(as_command(BOB, &sell));
    let sell_id = place(&mut bob, &sell).order_id;
    let t3 = trade_of(&mut bob, sell_id);
    assert_eq!((t3.price, t3.qty, t3.fee), (usdt_cents(5_000_000), 12_340_000, 3_085_000));
    let d = done(&mut bob, sell_id);
    assert_eq!(d.reason, DoneReason::Filled);
    let m3 = trade_of(&mut alice, partial_id);
    assert_eq!((m3.liquidity, m3.fee), (Liquidity::Maker, 1_234_000));

    // 6. Alice cancels the rest by client order id.
    send(&mut log, &mut alice, ALICE, ClientRequest::Cancel(OrderRef::Client(11)));
    let d = done(&mut alice, partial_id);
    assert_eq!((d.reason, d.filled_qty), (DoneReason::Cancelled, 19_930_000 + 12_340_000));

    // 7. The maker mass-cancels the market: its bid and what is left of its ask.
    let request_id =
        send(&mut log, &mut maker, MAKER, ClientRequest::MassCancel { market: Some(BTC_USDT) });
    let report = expect(&mut maker, "mass cancel", |m| match m {
        Incoming::Msg(ServerMessage::MassCancelDone(r)) if r.request_id == request_id => Some(*r),
        _ => None,
    });
    assert_eq!((report.count, report.market), (2, Some(BTC_USDT)));
    for id in [bid_id, a2_id] {
        assert_eq!(done(&mut maker, id).reason, DoneReason::Cancelled);
    }

    // Final balances, by hand:
    // maker USDT 5_000_000_000_000 + 15_072_121_415 - 3_014_424 + 9_989_603_585 - 1_997_920
    // alice USDT 100_000_000_000 - 15_079_657_475 - 9_994_598_386 - 6_171_234_000
    // bob   USDT 6_170_000_000 - 3_085_000
    // fees  3_014_424 + 7_536_060 + 1_997_920 + 4_994_801 + 1_234_000 + 3_085_000
    let expected = [
        (
            MAKER,
            vec![
                (BTC, bal(9_950_000_000, 0)),
                (USDT, bal(5_025_056_712_656, 0)),
                (ETH, bal(100_000_000_000, 0)),
            ],
        ),
        (ALICE, vec![(BTC, bal(62_340_000, 0)), (USDT, bal(68_754_510_139, 0))]),
        (
            BOB,
            vec![
                (BTC, bal(187_660_000, 0)),
                (USDT, bal(6_166_915_000, 0)),
                (ETH, bal(5_000_000_000, 0)),
            ],
        ),
        (FEE_ACCOUNT, vec![(USDT, bal(21_862_205, 0))]),
    ];
    // Nothing created or destroyed: 5_100_000 USDT in all, as deposited.
    let usdt_total: u64 = expected.iter().map(|(_, b)| balance_of(b, USDT).available).sum();
    assert_eq!(usdt_total, 5_100_000_000_000);
    assert_eq!(balances(&mut maker), expected[0].1);
    assert_eq!(balances(&mut alice), expected[1].1);
    assert_eq!(balances(&mut bob), expected[2].1);

    let engine = finish(server, &config, &log);
    for (account, balances) in &expected {
        assert_eq!(&engine.balances(*account), balances, "account {account}");
        assert!(engine.open_orders(*account).is_empty());
    }
    let book = engine.depth(BTC_USDT, 10).unwrap();
    assert!(book.bids.is_empty() && book.asks.is_empty(), "{book:?}");
}

// ----- Market data -------------------------------------------------------------------------------

/// A subscriber's L2 book of one market: snapshot, then updates newer than it.
#[derive(Debug, Default)]
struct L2Book {
    snapshot_index: Option<u64>,
    last_update_index: u64,
    bids: BTreeMap<u64, (u64, u32)>,
    asks: BTreeMap<u64, (u64, u32)>,
    applied: usize,
    skipped: usize,
}

impl L2Book {
    fn load(&mut self, index: u64, bids: &[DepthLevel], asks: &[DepthLevel]) {
        self.snapshot_index = Some(index);
        self.bids = bids.iter().map(|l| (l.price, (l.qty, l.orders))).collect();
        self.asks = asks.iter().map(|l| (l.price, (l.qty, l.orders))).collect();
    }

    fn update(&mut self, index: u64, changes: &[LevelChange]) {
        let snapshot = self.snapshot_index.expect("updates are held back until the snapshot");
        assert!(index >= self.last_update_index, "updates come in log order");
        self.last_update_index = index;
        if index <= snapshot {
            // Already in the snapshot.
            self.skipped += 1;
            return;
        }
        self.applied += 1;
        for c in changes {
            let side = match c.side {
                Side::Buy => &mut self.bids,
                Side::Sell => &mut self.asks,
            };
            if c.qty == 0 {
                assert!(side.remove(&c.price).is_some(), "removed level {c:?} was not there");
            } else {
                side.insert(c.price, (c.qty, c.orders));
            }
        }
    }

    /// Best first on both sides, as `Exchange::depth` and snapshots list them.
    fn levels(&self) -> (Vec<DepthLevel>, Vec<DepthLevel>) {
        let level =
            |(&price, &(qty, orders)): (&u64, &(u64, u32))| DepthLevel { price, qty, orders };
        (self.bids.iter().rev().map(level).collect(), self.asks.iter().map(level).collect())
    }
}

/// Feeds one message to the books; returns the snapshot's index if it was one.
fn feed(books: &mut BTreeMap<u32, L2Book>, message: &Incoming) -> Option<(u32, u64)> {
    match message {
        Incoming::BookSnapshot { market, index, bids, asks, .. } => {
            books.entry(*market).or_default().load(*index, bids, asks);
            Some((*market, *index))
        }
        Incoming::BookUpdate { market, index, changes, .. } => {
            books.get_mut(market).expect("subscribed").update(*index, changes);
            None
        }
        _ => None,
    }
}

const MD_SEED_ENV: &str = "BOURSE_LIVE_SEED";
const MD_TRADERS: u64 = 4;
const MD_BATCHES: usize = 40;
const MD_BATCH: usize = 25;

/// One trader's seeded random stream of orders, cancels, amends and mass cancels, sent
/// in batches; each batch ends with a balance query whose answer says the batch is done.
fn random_trader(
    addr: SocketAddr,
    key: u64,
    seed: u64,
    first_batch_done: Option<mpsc::Sender<()>>,
) {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    seed_bytes[8..16].copy_from_slice(&key.to_le_bytes());
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut below = |n: u64| rng.next_u64() % n;
    let mut client =
        BlockingClient::connect(addr, LogonOptions::demo(key), TIMEOUT).expect("trader logon");
    let mut next_cl = 1u64;
    let mut signal = first_batch_done;
    for _ in 0..MD_BATCHES {
        let mut batch = Vec::with_capacity(MD_BATCH + 1);
        for _ in 0..MD_BATCH {
            let side = if below(2) == 0 { Side::Buy } else { Side::Sell };
            // Bids mostly below the mid and asks mostly above, a fifth of the range
            // across it: a deep book that still trades.
            let steps = below(100) as i64 - 20;
            let offset = if side == Side::Buy { -steps } else { steps };
            let (market, price, qty) = if below(4) != 0 {
                // 50_000.00 -80..=+80 in 1.00 steps; 1..=20 lots of 0.0001 BTC.
                let price = 50_000_000_000 + offset * 1_000_000;
                (BTC_USDT, price as u64, (1 + below(20)) * 10_000)
            } else {
                // 3_000.00 -8.0..=+8.0 in 0.10 steps; 1..=10 lots of 0.001 ETH.
                let price = 3_000_000_000 + offset * 100_000;
                (ETH_USDT, price as u64, (1 + below(10)) * 100_000)
            };
            let stp = [
                StpMode::CancelTaker,
                StpMode::CancelMaker,
                StpMode::CancelBoth,
                StpMode::Decrement,
            ][below(4) as usize];
            let mut order = NewOrder {
                market,
                client_order_id: next_cl,
                side,
                order_type: OrderType::Limit,
                tif: TimeInForce::Gtc,
                post_only: false,
                price,
                qty,
                quote_budget: 0,
                stp,
            };
            let used = next_cl.max(2) - 1;
            let roll = below(100);
            let request = match roll {
                0..=49 => {
                    order.post_only = below(10) == 0;
                    ClientRequest::NewOrder(order)
                }
                50..=59 => ClientRequest::NewOrder(NewOrder { tif: TimeInForce::Ioc, ..order }),
                60..=62 => ClientRequest::NewOrder(NewOrder { tif: TimeInForce::Fok, ..order }),
                63..=67 => {
                    let mut market_order = NewOrder {
                        order_type: OrderType::Market,
                        tif: TimeInForce::Ioc,
                        price: 0,
                        ..order
                    };
                    if side == Side::Buy {
                        market_order.qty = 0;
                        market_order.quote_budget = (1 + below(20)) * 5_000_000;
                        if stp == StpMode::Decrement {
                            market_order.stp = StpMode::CancelTaker;
                        }
                    }
                    ClientRequest::NewOrder(market_order)
                }
                68..=84 => ClientRequest::Cancel(OrderRef::Client(1 + below(used))),
                85..=98 => {
                    let new_price = if below(2) == 0 { price } else { 0 };
                    let new_qty = if new_price == 0 || below(2) == 0 { qty } else { 0 };
                    // The client id may name an order of either market (or none that
                    // is open), so the new price may be far from that market's: the
                    // engine takes it or refuses it, both part of the stream.
                    ClientRequest::Amend {
                        order: OrderRef::Client(1 + below(used)),
                        price: new_price,
                        qty: new_qty,
                    }
                }
                _ => ClientRequest::MassCancel {
                    market: [None, Some(BTC_USDT), Some(ETH_USDT)][below(3) as usize],
                },
            };
            if matches!(request, ClientRequest::NewOrder(_)) {
                next_cl += 1;
            }
            batch.push(request);
        }
        batch.push(ClientRequest::BalanceQuery);
        let ids = client.send_batch(&batch).expect("trader sends");
        let query_id = *ids.last().unwrap();
        // Everything before the answer is the batch's own reports; none may be a
        // session-level refusal (those would mean the server mangled a valid request).
        loop {
            let (_, message) = client.recv(TIMEOUT).expect("trader reads");
            match message {
                Incoming::Balances { request_id, .. } if request_id == query_id => break,
                Incoming::Msg(ServerMessage::Rejected(RejectReport {
                    cause: RejectCause::Session(reason),
                    ..
                })) => panic!("trader {key}: session reject {reason:?}"),
                _ => {}
            }
        }
        if let Some(tx) = signal.take() {
            tx.send(()).unwrap();
        }
    }
}

#[test]
fn subscriber_book_from_snapshot_and_updates_equals_the_engine_after_a_random_stream() {
    let seed = seed_from_env(MD_SEED_ENV);
    let config = demo_config(|_| {});
    let server = LiveServer::start(config);
    let mut subscriber = server.connect(1016);

    let (first_tx, first_rx) = mpsc::channel();
    let mut traders = Vec::new();
    for i in 0..MD_TRADERS {
        let addr = server.addr;
        let tx = (i == 0).then(|| first_tx.clone());
        traders.push(std::thread::spawn(move || random_trader(addr, 1001 + i, seed, tx)));
    }
    // Subscribe mid-stream, once the book has something in it.
    first_rx.recv_timeout(TIMEOUT).expect("first batch");
    for market in [BTC_USDT, ETH_USDT] {
        subscriber.send(&ClientRequest::Subscribe { market, depth: 1000 }).unwrap();
    }
    let mut books: BTreeMap<u32, L2Book> = BTreeMap::new();
    let mut first_snapshots = BTreeMap::new();
    let mut public_trades = 0;
    while traders.iter().any(|t| !t.is_finished()) || first_snapshots.len() < 2 {
        match subscriber.recv(Duration::from_millis(50)) {
            Ok((_, message)) => {
                if let Incoming::Msg(ServerMessage::PublicTrade(t)) = &message {
                    assert!(t.index > first_snapshots[&t.market], "trades follow the snapshot");
                    public_trades += 1;
                }
                if let Some((market, index)) = feed(&mut books, &message) {
                    assert!(first_snapshots.insert(market, index).is_none());
                    let book = &books[&market];
                    if market == BTC_USDT {
                        assert!(!book.bids.is_empty() || !book.asks.is_empty(), "mid-stream");
                    }
                }
            }
            Err(ClientError::Timeout) => {}
            Err(e) => panic!("subscriber: {e}"),
        }
    }
    for trader in traders {
        trader.join().expect("trader thread");
    }
    // Every trader's last batch is answered, so every command is applied. A fresh
    // snapshot on the same connection comes after every update sent before it.
    for market in [BTC_USDT, ETH_USDT] {
        subscriber.send(&ClientRequest::Subscribe { market, depth: 1000 }).unwrap();
    }
    let mut fresh: BTreeMap<u32, (u64, Vec<DepthLevel>, Vec<DepthLevel>)> = BTreeMap::new();
    while fresh.len() < 2 {
        let (_, message) = subscriber.recv(TIMEOUT).expect("subscriber reads");
        match &message {
            Incoming::BookSnapshot { market, index, bids, asks, .. } => {
                let book = &books[market];
                assert!(*index >= book.last_update_index);
                let (my_bids, my_asks) = book.levels();
                assert_eq!(
                    (&my_bids, &my_asks),
                    (bids, asks),
                    "market {market}: book vs fresh snapshot (seed {seed})"
                );
                fresh.insert(*market, (*index, bids.clone(), asks.clone()));
            }
            other => {
                feed(&mut books, other);
            }
        }
    }
    assert!(public_trades > 0, "the stream trades");
    let report = server.stop();
    report.engine.check_invariants().unwrap();
    eprintln!("{public_trades} public trades after the first snapshots");
    for (market, book) in &books {
        let depth = report.engine.depth(*market, 1000).unwrap();
        let (bids, asks) = book.levels();
        assert_eq!(
            (bids, asks),
            (depth.bids, depth.asks),
            "market {market}: book vs engine (seed {seed})"
        );
        assert_eq!(fresh[market].0, report.engine.last_index());
        assert!(book.applied > 0, "market {market}: no update after the snapshot");
        eprintln!(
            "market {market}: snapshot at {}, {} updates applied, {} skipped, {} bids, {} asks",
            first_snapshots[market],
            book.applied,
            book.skipped,
            book.bids.len(),
            book.asks.len()
        );
    }
}

// ----- Resume ------------------------------------------------------------------------------------

/// A second key for account 1001, so that one session of the account never disconnects.
const WATCHER_KEY: u64 = 2001;
const RESUMER_KEY: u64 = 1001;
const RESUMER_ACCOUNT: u64 = 1001;
const HITTER_KEY: u64 = 1002;

/// What two sessions of one account must agree on: the account's reports, without the
/// request ids (each session sees its own) and without session control (seq 0).
fn normalized(messages: &[(Seq, Incoming)]) -> Vec<Incoming> {
    messages
        .iter()
        .filter(|(seq, _)| *seq != 0)
        .map(|(_, m)| match m {
            Incoming::Msg(ServerMessage::Accepted(a)) => {
                Incoming::Msg(ServerMessage::Accepted(AcceptedReport { request_id: 0, ..*a }))
            }
            Incoming::Msg(ServerMessage::Rejected(r)) => {
                Incoming::Msg(ServerMessage::Rejected(RejectReport { request_id: 0, ..*r }))
            }
            Incoming::Msg(ServerMessage::Amended(a)) => {
                Incoming::Msg(ServerMessage::Amended(AmendedReport { request_id: 0, ..*a }))
            }
            Incoming::Msg(ServerMessage::MassCancelDone(r)) => {
                Incoming::Msg(ServerMessage::MassCancelDone(MassCancelReport {
                    request_id: 0,
                    ..*r
                }))
            }
            other => other.clone(),
        })
        .collect()
}

/// Processes `n` sequenced messages (heartbeats are not processed).
fn process(client: &mut BlockingClient, n: usize, into: &mut Vec<(Seq, Incoming)>) {
    let mut taken = 0;
    while taken < n {
        let (seq, message) = client.recv(TIMEOUT).expect("resumer reads");
        if seq != 0 {
            into.push((seq, message));
            taken += 1;
        }
    }
}

/// Reads until the `Done` of order `order_id`.
fn process_until_done(client: &mut BlockingClient, order_id: u64, into: &mut Vec<(Seq, Incoming)>) {
    loop {
        let (seq, message) = client.recv(TIMEOUT).expect("reads until the marker");
        let last =
            matches!(&message, Incoming::Msg(ServerMessage::Done(d)) if d.order_id == order_id);
        if seq != 0 {
            into.push((seq, message));
        }
        if last {
            return;
        }
    }
}

#[test]
fn resume_after_a_dropped_connection_delivers_every_missed_message_exactly_once() {
    let config = demo_config(|c| {
        c.keys.push(ApiKey {
            key_id: WATCHER_KEY,
            secret: demo_secret(WATCHER_KEY),
            role: Role::Trader { account: RESUMER_ACCOUNT },
        })
    });
    let server = LiveServer::start(config);
    // The watcher is logged on before anything happens to the account and never leaves.
    let mut watcher = Recorder::new(server.connect(WATCHER_KEY));

    // The resumer rests 40 asks of 0.0005 BTC from 50_000.00 up.
    let mut first = server.connect(RESUMER_KEY);
    let session_id = first.established.ack.session_id;
    let asks: Vec<ClientRequest> = (0..40)
        .map(|i| limit_order(BTC_USDT, Side::Sell, usdt_cents(5_000_000 + 100 * i), 50_000, i + 1))
        .collect();
    first.send_batch(&asks).unwrap();
    let mut processed = Vec::new();
    process(&mut first, 30, &mut processed);

    // Others hit those asks from another thread, pacing themselves on their own fills.
    let addr = server.addr;
    let hitter = std::thread::spawn(move || {
        let mut client = BlockingClient::connect(addr, LogonOptions::demo(HITTER_KEY), TIMEOUT)
            .expect("hitter logon");
        for cl in 1..=60u64 {
            // 0.0002 BTC up to 50_100.00, IOC: fills against the resumer's asks.
            let request = ClientRequest::NewOrder(NewOrder {
                market: BTC_USDT,
                client_order_id: cl,
                side: Side::Buy,
                order_type: OrderType::Limit,
                tif: TimeInForce::Ioc,
                post_only: false,
                price: usdt_cents(5_010_000),
                qty: 20_000,
                quote_budget: 0,
                stp: StpMode::CancelTaker,
            });
            let order_id = place(&mut client, &request).order_id;
            let d = done(&mut client, order_id);
            assert_eq!(d.reason, DoneReason::Filled, "the asks hold 0.02 BTC, the hits 0.012");
        }
    });

    // Mid-stream: process a few more, then the connection drops with more in flight.
    process(&mut first, 25, &mut processed);
    drop(first);

    // While the resumer is away, its account keeps getting reports: the watcher (same
    // account) places and cancels orders, and the hitter keeps filling.
    for cl in 1..=5u64 {
        let bid = limit_order(BTC_USDT, Side::Buy, usdt_cents(4_000_000 + cl), 10_000, 1_000 + cl);
        let order_id = watcher.place(&bid).order_id;
        if cl % 2 == 0 {
            watcher.client.send(&ClientRequest::Cancel(OrderRef::Id(order_id))).unwrap();
            watcher.done(order_id);
        }
    }

    // Reconnect and resume from the first message not processed.
    let resume_from = processed.last().unwrap().0 + 1;
    let options = LogonOptions {
        session_id,
        resume_from_seq: resume_from,
        ..LogonOptions::demo(RESUMER_KEY)
    };
    let mut second = server.connect_with(options).expect("resume");
    let ack = second.established.ack;
    assert_eq!((ack.session_id, ack.replay_from), (session_id, resume_from));
    assert_eq!(ack.replay_count, ack.next_seq - resume_from);
    assert!(ack.replay_count > 0, "messages were missed while away");
    process(&mut second, 20, &mut processed);

    // The old socket is dead but the server does not know: the client resumes again on
    // a new connection, which takes the session over; the second is told why.
    let resume_from = processed.last().unwrap().0 + 1;
    let options = LogonOptions {
        session_id,
        resume_from_seq: resume_from,
        ..LogonOptions::demo(RESUMER_KEY)
    };
    let mut third = server.connect_with(options).expect("takeover");
    assert_eq!(third.established.ack.replay_from, resume_from);
    let replaced = loop {
        match second.recv(TIMEOUT) {
            Ok(_) => continue, // delivered to the old connection, never processed
            Err(e) => break e,
        }
    };
    assert!(matches!(replaced, ClientError::LoggedOut(SessionReason::Replaced)), "{replaced:?}");

    hitter.join().expect("hitter");
    // A marker through the watcher: when both sessions have its Done, they have all.
    let marker = limit_order(BTC_USDT, Side::Buy, usdt_cents(3_000_000), 10_000, 999_999);
    let marker_id = watcher.place(&marker).order_id;
    watcher.client.send(&ClientRequest::Cancel(OrderRef::Id(marker_id))).unwrap();
    watcher.done(marker_id);
    process_until_done(&mut third, marker_id, &mut processed);
    let watched: Vec<(Seq, Incoming)> =
        watcher.seen.iter().filter(|(seq, _)| *seq != 0).cloned().collect();
    let watched_seqs: Vec<Seq> = watched.iter().map(|(s, _)| *s).collect();
    let first = watched_seqs[0];
    assert_eq!(watched_seqs, (first..first + watched.len() as u64).collect::<Vec<_>>());
    // The watcher's journal replays exactly what it saw live.
    let watcher_session = watcher.client.established.ack.session_id;
    drop(watcher);
    let options = LogonOptions {
        session_id: watcher_session,
        resume_from_seq: first,
        ..LogonOptions::demo(WATCHER_KEY)
    };
    let mut replay = server.connect_with(options).expect("watcher replay");
    let mut replayed = Vec::new();
    process_until_done(&mut replay, marker_id, &mut replayed);
    assert_eq!(replayed, watched);

    // Exactly once, in order, no gaps, no duplicates ...
    let seqs: Vec<Seq> = processed.iter().map(|(s, _)| *s).collect();
    let start = seqs[0];
    assert_eq!(seqs, (start..start + seqs.len() as u64).collect::<Vec<_>>());
    // ... and the same reports as the session that never left.
    assert_eq!(normalized(&processed), normalized(&watched));
    let trades = processed
        .iter()
        .filter(|(_, m)| matches!(m, Incoming::Msg(ServerMessage::Trade(_))))
        .count();
    // 60 hits of 2 lots eat 120 lots of 5-lot asks in price order: every fifth hit
    // straddles two asks (lots 5|6, 15|16, ...), so 60 + 12 fills.
    assert_eq!(trades, 72);
    let filled = processed
        .iter()
        .filter(|(_, m)| {
            matches!(m, Incoming::Msg(ServerMessage::Done(d)) if d.reason == DoneReason::Filled)
        })
        .count();
    assert_eq!(filled, 24, "120 lots fill 24 asks");
    let report = server.stop();
    report.engine.check_invariants().unwrap();
}

// ----- Cancel-on-disconnect ----------------------------------------------------------------------

/// Reads the subscriber until `done(book)` holds.
fn wait_for_book(
    subscriber: &mut BlockingClient,
    books: &mut BTreeMap<u32, L2Book>,
    what: &str,
    mut done: impl FnMut(&L2Book) -> bool,
) {
    let deadline = Instant::now() + TIMEOUT;
    while !books.get(&BTC_USDT).is_some_and(&mut done) {
        let left = deadline.saturating_duration_since(Instant::now());
        let (_, message) =
            subscriber.recv(left).unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
        feed(books, &message);
    }
}

#[test]
fn cancel_on_disconnect_cancels_only_flagged_sessions_orders() {
    let config = demo_config(|_| {});
    let server = LiveServer::start(config.clone());
    let mut log = Vec::new();
    let mut subscriber = server.connect(1001);
    subscriber.send(&ClientRequest::Subscribe { market: BTC_USDT, depth: 100 }).unwrap();
    let mut books = BTreeMap::new();
    wait_for_book(&mut subscriber, &mut books, "snapshot", |_| true);

    let alice_prices = [usdt_cents(4_000_000), usdt_cents(4_000_100), usdt_cents(4_000_200)];
    let bob_prices = [usdt_cents(6_050_000), usdt_cents(6_050_100)];
    let cod = LogonOptions { cancel_on_disconnect: true, ..LogonOptions::demo(ALICE) };
    let mut alice = server.connect_with(cod).unwrap();
    assert!(alice.established.ack.cancel_on_disconnect);
    for (i, &price) in alice_prices.iter().enumerate() {
        let bid = limit_order(BTC_USDT, Side::Buy, price, 100_000, i as u64 + 1);
        place(&mut alice, &bid);
        log.push(as_command(ALICE, &bid));
    }
    let mut bob = server.connect(BOB);
    for (i, &price) in bob_prices.iter().enumerate() {
        let ask = limit_order(BTC_USDT, Side::Sell, price, 1_000_000, i as u64 + 1);
        place(&mut bob, &ask);
        log.push(as_command(BOB, &ask));
    }
    wait_for_book(&mut subscriber, &mut books, "all five levels", |b| {
        b.bids.len() == 3 && b.asks.len() == 2
    });

    // A takeover (a logon that resumes where alice had read) is not a disconnect: the
    // stream goes on, and so do its orders.
    let session_id = alice.established.ack.session_id;
    let resume_from_seq = alice.last_seq().max(alice.established.ack.next_seq - 1) + 1;
    let resume = LogonOptions { session_id, resume_from_seq, ..cod };
    let mut alice2 = server.connect_with(resume).unwrap();
    let replaced = alice.recv_until(TIMEOUT, |_| None::<()>).unwrap_err();
    assert!(matches!(replaced, ClientError::LoggedOut(SessionReason::Replaced)), "{replaced:?}");
    let request_id = alice2.send(&ClientRequest::OpenOrdersQuery { market: None }).unwrap();
    let open = expect(&mut alice2, "open orders", |m| match m {
        Incoming::OpenOrders { request_id: r, orders, .. } if *r == request_id => {
            Some(orders.clone())
        }
        _ => None,
    });
    assert_eq!(open.len(), 3, "{open:?}");

    // The socket drops: every order of alice's is cancelled, seen in the public book.
    drop(alice2);
    log.push(Command::MassCancel { account: ALICE, market: None });
    wait_for_book(&mut subscriber, &mut books, "alice's levels gone", |b| b.bids.is_empty());
    let book = &books[&BTC_USDT];
    assert_eq!(book.asks.keys().copied().collect::<Vec<_>>(), bob_prices.to_vec(), "bob's stay");

    // A clean logout cancels too.
    let mut alice3 = server.connect_with(cod).unwrap();
    let bid = limit_order(BTC_USDT, Side::Buy, alice_prices[0], 100_000, 10);
    place(&mut alice3, &bid);
    log.push(as_command(ALICE, &bid));
    wait_for_book(&mut subscriber, &mut books, "alice's new bid", |b| b.bids.len() == 1);
    alice3.send(&ClientRequest::Logout).unwrap();
    let logout = alice3.recv_until(TIMEOUT, |_| None::<()>).unwrap_err();
    assert!(matches!(logout, ClientError::LoggedOut(SessionReason::LoggedOut)), "{logout:?}");
    log.push(Command::MassCancel { account: ALICE, market: None });
    wait_for_book(&mut subscriber, &mut books, "alice's bid gone", |b| b.bids.is_empty());

    // Bob, without the flag, drops his connection: his orders stay.
    drop(bob);
    let mut bob_again = server.connect(BOB);
    let request_id = bob_again.send(&ClientRequest::OpenOrdersQuery { market: None }).unwrap();
    let open = expect(&mut bob_again, "open orders", |m| match m {
        Incoming::OpenOrders { request_id: r, orders, .. } if *r == request_id => {
            Some(orders.clone())
        }
        _ => None,
    });
    assert_eq!(open.iter().map(|o| o.price).collect::<Vec<_>>(), bob_prices.to_vec());
    drop(subscriber);
    drop(bob_again);

    let engine = finish(server, &config, &log);
    assert!(engine.open_orders(ALICE).is_empty());
    assert_eq!(engine.balance(ALICE, USDT), bal(100_000_000_000, 0), "every hold released");
    assert_eq!(engine.open_orders(BOB).len(), 2);
}
