//! A stable-Rust run of the fuzz targets' checks (`engine/fuzz/src/lib.rs`): a few
//! thousand seeded pseudo-random command streams, aimed at the seeded exchange's
//! accounts, markets and price range so most of them do something, encoded into the
//! fuzz input format and handed to `apply_commands`. `BOURSE_SEED=<n>` replays a run.

use bourse_engine::{
    Command, MarketSpec, MarketStatus, OrderRef, OrderType, PlaceOrder, Side, StpMode, Symbol,
    TimeInForce,
};
use proptest::prelude::Rng;
use proptest::test_runner::TestRng;

use crate::fuzz_harness::{self as fuzz, SEED_BTC_USDT, SEED_ETH_USDT};
use crate::support::{seed_from_env, seeded_rng};

/// Inputs per run. Most are short; every eighth is long enough to fill the books up to
/// the seeded limits. About 60k commands in all, a few seconds in debug.
const INPUTS: usize = 2_000;
const COMMANDS_SHORT_MAX: u32 = 30;
const COMMANDS_LONG_MAX: u32 = 300;
/// Inputs written as a seed corpus when `BOURSE_FUZZ_CORPUS` is set.
const CORPUS_INPUTS: usize = 200;

/// Generates commands aimed at `fuzz::seeded_exchange()`. It cannot see the engine, so it
/// remembers what it sent (client order ids, withdrawal tx ids) to aim cancels, amends and
/// withdrawal steps at things that probably exist.
struct Gen {
    rng: TestRng,
    /// Order ids are assigned from 1 to accepted orders; a place is the most it can be.
    places: u64,
    /// (account, client order id) of the places sent in this input.
    cids: Vec<(u64, u64)>,
    /// Ledger tx ids sent in this input, and the next fresh one.
    txs: Vec<u64>,
    next_tx: u64,
    withdrawals: Vec<u64>,
}

impl Gen {
    fn new(rng: TestRng) -> Gen {
        Gen {
            rng,
            places: 0,
            cids: Vec::new(),
            txs: Vec::new(),
            next_tx: 0,
            withdrawals: Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.places = 0;
        self.cids.clear();
        self.txs.clear();
        self.withdrawals.clear();
        self.next_tx = fuzz::SEED_TXS + 1;
    }

    fn below(&mut self, n: u32) -> u32 {
        self.rng.next_u32() % n
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u32) as usize]
    }

    /// Usually a funded trader (1..=4); sometimes one that exists only after a deposit
    /// (5..=8; only the first of them fits in `accounts_max`), the fee account, or one
    /// that never exists.
    fn account(&mut self) -> u64 {
        if self.chance(90) {
            1 + u64::from(self.below(4))
        } else {
            self.pick(&[5, 6, 7, 8, fuzz::SEED_FEE_ACCOUNT, 99])
        }
    }

    fn market(&mut self) -> u32 {
        if self.chance(95) {
            self.pick(&[SEED_BTC_USDT, SEED_ETH_USDT])
        } else {
            self.pick(&[0, 3])
        }
    }

    fn asset(&mut self) -> u32 {
        if self.chance(90) {
            self.pick(&[1, 2, 2, 3])
        } else {
            self.pick(&[0, 4, 7])
        }
    }

    /// A price around 1_000 ticks (tick 10_000 on both markets), sometimes far below
    /// (under ETH/USDT's min notional), huge, off tick, zero or beyond the maximum.
    fn price(&mut self) -> u64 {
        match self.below(50) {
            0 => 0,
            1 => 10_000 * (1_000 + u64::from(self.below(40))) + 1,
            2 => 10_000 * 2_000_000,
            3 => 10_000 * 900_000,
            4 => 10_000 * 50,
            _ => 10_000 * (985 + u64::from(self.below(30))),
        }
    }

    /// 1..=8 lots of `market`, sometimes off lot, zero, huge or beyond the maximum.
    fn qty(&mut self, market: u32) -> u64 {
        let lot = if market == SEED_BTC_USDT { 10_000 } else { 1_000_000 };
        match self.below(50) {
            0 => 0,
            1 => lot / 2,
            2 => lot * 2_000_000,
            3 => lot * 900_000,
            _ => lot * (1 + u64::from(self.below(8))),
        }
    }

    fn amount(&mut self) -> u64 {
        match self.below(20) {
            0 => 0,
            1 => u64::MAX,
            2 => 1 << 43,
            _ => 1 + u64::from(self.rng.next_u32() % 5_000_000),
        }
    }

    /// Mostly a fresh tx id; sometimes one sent before (a repeat or a conflict), or 0.
    fn tx(&mut self) -> u64 {
        let tx = match self.below(10) {
            0 => 0,
            1 | 2 if !self.txs.is_empty() => self.pick(&self.txs.clone()),
            3 => 1 + u64::from(self.below(fuzz::SEED_TXS as u32)),
            _ => {
                self.next_tx += 1;
                self.next_tx - 1
            }
        };
        self.txs.push(tx);
        tx
    }

    fn stp(&mut self) -> StpMode {
        self.pick(&[
            StpMode::CancelTaker,
            StpMode::CancelMaker,
            StpMode::CancelBoth,
            StpMode::Decrement,
        ])
    }

    /// An (account, order) pair: mostly an earlier place of this input by client id.
    fn target(&mut self) -> (u64, OrderRef) {
        match self.below(10) {
            0..=6 if !self.cids.is_empty() => {
                let (account, cid) = self.pick(&self.cids.clone());
                (account, OrderRef::Client(cid))
            }
            7 => (self.account(), OrderRef::Client(u64::from(self.below(20)))),
            _ => (
                self.account(),
                OrderRef::Id(1 + u64::from(self.rng.next_u32()) % (self.places + 2)),
            ),
        }
    }

    fn place(&mut self) -> PlaceOrder {
        self.places += 1;
        let market = self.market();
        let account = self.account();
        let side = if self.below(2) == 0 { Side::Buy } else { Side::Sell };
        let client_order_id = if self.chance(80) { 1 + u64::from(self.below(12)) } else { 0 };
        if client_order_id != 0 {
            self.cids.push((account, client_order_id));
        }
        let mut order = PlaceOrder {
            account,
            market,
            client_order_id,
            side,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            post_only: false,
            // Buys a little lower than sells, so books build up as well as trade.
            price: match (self.price(), side) {
                (price, Side::Buy) if price % 10_000 == 0 && price > 100_000 => price - 100_000,
                (price, _) => price,
            },
            qty: self.qty(market),
            quote_budget: 0,
            stp: self.stp(),
        };
        match self.below(20) {
            0..=8 => {}
            9 | 10 => order.post_only = true,
            11..=13 => order.tif = TimeInForce::Ioc,
            14 | 15 => order.tif = TimeInForce::Fok,
            16 | 17 => {
                order.order_type = OrderType::Market;
                order.tif = TimeInForce::Ioc;
                order.price = 0;
                if side == Side::Buy {
                    order.qty = 0;
                    order.quote_budget = self.amount();
                    if order.stp == StpMode::Decrement {
                        order.stp = StpMode::CancelBoth;
                    }
                }
            }
            // An arbitrary (mostly invalid) shape.
            _ => {
                order.order_type = self.pick(&[OrderType::Limit, OrderType::Market]);
                order.tif = self.pick(&[TimeInForce::Gtc, TimeInForce::Ioc, TimeInForce::Fok]);
                order.post_only = self.below(2) == 0;
                order.quote_budget = if self.below(2) == 0 { 0 } else { self.amount() };
            }
        }
        order
    }

    fn spec(&mut self) -> MarketSpec {
        MarketSpec {
            market: self.pick(&[0, 1, 3, 4]),
            symbol: Symbol::new("X/Y").unwrap_or_default(),
            base: self.asset(),
            quote: self.asset(),
            tick_size: self.pick(&[0, 1, 10_000, 1 << 40]),
            lot_size: self.pick(&[0, 10_000, 1_000_000, 100_000_000]),
            min_notional: u64::from(self.below(3)) * 5_000,
            maker_fee_bps: self.pick(&[0, 7, 10_000, 10_001]),
            taker_fee_bps: self.pick(&[0, 33, 10_000]),
        }
    }

    fn command(&mut self) -> Command {
        match self.below(100) {
            0..=49 => Command::Place(self.place()),
            50..=57 => {
                let (account, order) = self.target();
                Command::Cancel { account, order }
            }
            58..=69 => {
                let (account, order) = self.target();
                let market = self.market();
                let (price, qty) = match self.below(3) {
                    0 => (self.price(), 0),
                    1 => (0, self.qty(market)),
                    _ => (self.price(), self.qty(market)),
                };
                Command::Amend { account, order, price, qty }
            }
            70 | 71 => Command::MassCancel {
                account: self.account(),
                market: if self.below(2) == 0 { None } else { Some(self.market()) },
            },
            72..=77 => Command::Deposit {
                tx: self.tx(),
                account: self.account(),
                asset: self.asset(),
                amount: self.amount(),
            },
            78..=81 => {
                let tx = self.tx();
                self.withdrawals.push(tx);
                Command::WithdrawRequest {
                    tx,
                    account: self.account(),
                    asset: self.asset(),
                    amount: self.amount(),
                }
            }
            82..=85 => {
                let tx = if self.withdrawals.is_empty() || self.chance(20) {
                    self.tx()
                } else {
                    self.pick(&self.withdrawals.clone())
                };
                if self.below(2) == 0 {
                    Command::WithdrawComplete { tx }
                } else {
                    Command::WithdrawCancel { tx }
                }
            }
            86..=91 => Command::Transfer {
                tx: self.tx(),
                from: self.account(),
                to: self.account(),
                asset: self.asset(),
                amount: self.amount(),
                create_account: self.below(2) == 0,
            },
            92 | 93 => Command::SetMarketStatus {
                market: self.market(),
                status: if self.below(5) == 0 { MarketStatus::Halted } else { MarketStatus::Open },
            },
            94 | 95 => Command::CreateAsset {
                asset: self.pick(&[0, 3, 4, 9]),
                scale: self.pick(&[0, 2, 8, 18, 19]),
                symbol: Symbol::new("NEW").unwrap_or_default(),
            },
            _ => Command::CreateMarket(self.spec()),
        }
    }
}

#[test]
fn apply_commands_harness_on_seeded_random_streams() {
    let seed = seed_from_env();
    // `BOURSE_FUZZ_CORPUS=<dir>` also writes the first inputs there, as a seed corpus
    // for `cargo fuzz run apply_commands <dir>` (libFuzzer finds the chunk format and
    // the codec much faster from valid inputs).
    let corpus_dir = std::env::var("BOURSE_FUZZ_CORPUS").ok();
    let mut gen = Gen::new(seeded_rng(seed));
    let mut commands = Vec::new();
    let mut total = fuzz::RunStats::default();
    for input in 0..INPUTS {
        gen.reset();
        commands.clear();
        let max = if input % 8 == 7 { COMMANDS_LONG_MAX } else { COMMANDS_SHORT_MAX };
        let count = gen.below(max) + 1;
        for _ in 0..count {
            commands.push(gen.command());
        }
        let mut data = fuzz::encode_chunks(&commands);
        if let Some(dir) = &corpus_dir {
            if input < CORPUS_INPUTS {
                let path = std::path::Path::new(dir).join(format!("seed-{seed}-{input}"));
                std::fs::write(&path, &data).expect("write corpus file");
            }
        }
        // Every tenth input gets a few bytes mutated, as libFuzzer would.
        if input % 10 == 9 {
            for _ in 0..3 {
                let at = gen.rng.next_u32() as usize % data.len();
                data[at] = gen.rng.next_u32() as u8;
            }
        }
        match std::panic::catch_unwind(|| fuzz::apply_commands(&data)) {
            Ok(stats) => total.add(&stats),
            Err(panic) => {
                eprintln!("seed {seed}, input {input}: {commands:#?}");
                std::panic::resume_unwind(panic);
            }
        }
    }
    println!("seed {seed}: {total:?}");
    // The generator must keep reaching the interesting paths, or this test checks little:
    // most commands apply, orders trade, amend and finish, and most reject reasons occur.
    assert!(total.applied as usize > INPUTS * 20, "{total:?}");
    assert!(total.accepted > total.applied / 5, "{total:?}");
    assert!(total.trades > total.applied / 40, "{total:?}");
    assert!(total.amended > 500 && total.done > 5_000 && total.ledger > 1_000, "{total:?}");
    let reasons = total.rejects.len();
    assert!(reasons >= 30, "only {reasons} reject reasons reached: {total:?}");
}

#[test]
fn apply_commands_harness_on_raw_bytes() {
    let seed = seed_from_env();
    let mut rng = seeded_rng(seed);
    let mut total = fuzz::RunStats::default();
    for _ in 0..300 {
        let len = rng.next_u32() as usize % 600;
        let data: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
        total.add(&fuzz::apply_commands(&data));
    }
    // Raw bytes rarely decode (a version byte, then a valid postcard body).
    assert!(total.undecodable > 300, "{total:?}");
    // Edge inputs: empty, a zero-length chunk, a chunk longer than what follows.
    fuzz::apply_commands(&[]);
    fuzz::apply_commands(&[0]);
    fuzz::apply_commands(&[200, 1, 2]);
}

#[test]
fn split_chunks_respects_the_bound_and_the_format() {
    assert_eq!(fuzz::split_chunks(&[2, 7, 8, 0, 1, 9]), vec![&[7u8, 8][..], &[][..], &[9][..]]);
    assert_eq!(fuzz::split_chunks(&[5, 1]), vec![&[1u8][..]]);
    let many = vec![0u8; fuzz::CHUNKS_MAX * 3];
    assert_eq!(fuzz::split_chunks(&many).len(), fuzz::CHUNKS_MAX);
    let commands =
        [Command::WithdrawCancel { tx: 3 }, Command::MassCancel { account: 1, market: None }];
    let data = fuzz::encode_chunks(&commands);
    let decoded: Vec<Command> =
        fuzz::split_chunks(&data).iter().map(|c| Command::decode(c).expect("valid")).collect();
    assert_eq!(decoded, commands);
}

/// The seeded exchange itself must pass every check the harness makes.
#[test]
fn seeded_exchange_is_consistent() {
    let (ex, index) = fuzz::seeded_exchange();
    assert_eq!(ex.last_index(), index);
    assert!(ex.check_invariants().is_ok());
    assert_eq!(ex.accounts().len() as u64, fuzz::SEED_ACCOUNTS + 1);
    assert_eq!(ex.markets().len(), 2);
}
