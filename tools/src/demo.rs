//! The demo exchange: two markets (BTC/USDT, ETH/USDT), funded accounts, and a scripted
//! trading session that exercises every order type. Used by `bourse-demo`.

use bourse_engine::*;

pub const BTC: AssetId = 1;
pub const USDT: AssetId = 2;
pub const ETH: AssetId = 3;
pub const BTC_USDT: MarketId = 1;
pub const ETH_USDT: MarketId = 2;
pub const FEE_ACCOUNT: AccountId = 0;
pub const MAKER: AccountId = 100;
pub const ALICE: AccountId = 200;
pub const BOB: AccountId = 300;

fn symbol(text: &str) -> Symbol {
    Symbol::new(text).expect("demo symbols are valid")
}

/// Assets, markets and deposits of the demo exchange.
pub fn setup() -> Vec<Command> {
    let asset = |asset, scale, name| Command::CreateAsset { asset, scale, symbol: symbol(name) };
    let deposit = |tx, account, asset, amount| Command::Deposit { tx, account, asset, amount };
    vec![
        asset(BTC, 8, "BTC"),
        asset(USDT, 6, "USDT"),
        asset(ETH, 8, "ETH"),
        // Tick 0.01 USDT, lot 0.0001 BTC: qptl = 10^4 * 10^4 / 10^8 = 1.
        Command::CreateMarket(MarketSpec {
            market: BTC_USDT,
            symbol: symbol("BTC-USDT"),
            base: BTC,
            quote: USDT,
            tick_size: 10_000,
            lot_size: 10_000,
            min_notional: 1_000_000,
            maker_fee_bps: 2,
            taker_fee_bps: 5,
        }),
        // Tick 0.01 USDT, lot 0.001 ETH: qptl = 10^4 * 10^5 / 10^8 = 10.
        Command::CreateMarket(MarketSpec {
            market: ETH_USDT,
            symbol: symbol("ETH-USDT"),
            base: ETH,
            quote: USDT,
            tick_size: 10_000,
            lot_size: 100_000,
            min_notional: 1_000_000,
            maker_fee_bps: 1,
            taker_fee_bps: 4,
        }),
        deposit(1, MAKER, BTC, 10 * 100_000_000),
        deposit(2, MAKER, USDT, 500_000 * 1_000_000),
        deposit(3, MAKER, ETH, 100 * 100_000_000),
        deposit(4, ALICE, USDT, 100_000 * 1_000_000),
        deposit(5, BOB, BTC, 2 * 100_000_000),
        deposit(6, BOB, ETH, 50 * 100_000_000),
    ]
}

/// Whole-unit helpers: `usdt(50_010.00)` style values without floats.
pub const fn usdt_cents(cents: u64) -> u64 {
    cents * 10_000
}

pub const fn btc_lots(ten_thousandths: u64) -> u64 {
    ten_thousandths * 10_000
}

#[allow(clippy::too_many_arguments)]
fn limit(
    account: AccountId,
    market: MarketId,
    client_order_id: ClientOrderId,
    side: Side,
    tif: TimeInForce,
    post_only: bool,
    price: u64,
    qty: u64,
    stp: StpMode,
) -> Command {
    Command::Place(PlaceOrder {
        account,
        market,
        client_order_id,
        side,
        order_type: OrderType::Limit,
        tif,
        post_only,
        price,
        qty,
        quote_budget: 0,
        stp,
    })
}

fn quote(
    account: AccountId,
    cl: ClientOrderId,
    side: Side,
    price_cents: u64,
    lots: u64,
) -> Command {
    let (price, qty) = (usdt_cents(price_cents), btc_lots(lots));
    limit(account, BTC_USDT, cl, side, TimeInForce::Gtc, true, price, qty, StpMode::CancelTaker)
}

/// The scripted session: (what it shows, command).
pub fn session() -> Vec<(&'static str, Command)> {
    use Side::{Buy, Sell};
    use StpMode::CancelTaker;
    use TimeInForce::{Fok, Gtc, Ioc};
    let eth_quote = |cl, side, price_cents, milli_eth: u64| {
        let (price, qty) = (usdt_cents(price_cents), milli_eth * 100_000);
        limit(MAKER, ETH_USDT, cl, side, Gtc, true, price, qty, CancelTaker)
    };
    vec![
        ("maker quotes a post-only bid 49,990.00 x 0.5", quote(MAKER, 1, Buy, 4_999_000, 5_000)),
        ("maker quotes a post-only bid 49,980.00 x 0.5", quote(MAKER, 2, Buy, 4_998_000, 5_000)),
        ("maker quotes a post-only ask 50,010.00 x 0.5", quote(MAKER, 3, Sell, 5_001_000, 5_000)),
        ("maker quotes a post-only ask 50,020.00 x 0.5", quote(MAKER, 4, Sell, 5_002_000, 5_000)),
        (
            "alice buys 0.8 GTC at 50,015.00: takes 0.5 at 50,010.00, rests 0.3",
            limit(
                ALICE,
                BTC_USDT,
                10,
                Buy,
                Gtc,
                false,
                usdt_cents(5_001_500),
                btc_lots(8_000),
                CancelTaker,
            ),
        ),
        (
            "bob market-sells 0.4: 0.3 from alice at 50,015.00, 0.1 from maker at 49,990.00",
            Command::Place(PlaceOrder {
                account: BOB,
                market: BTC_USDT,
                client_order_id: 20,
                side: Sell,
                order_type: OrderType::Market,
                tif: Ioc,
                post_only: false,
                price: 0,
                qty: btc_lots(4_000),
                quote_budget: 0,
                stp: CancelTaker,
            }),
        ),
        (
            "maker amends its 50,020.00 ask down to 0.2 (keeps priority)",
            Command::Amend {
                account: MAKER,
                order: OrderRef::Client(4),
                price: 0,
                qty: btc_lots(2_000),
            },
        ),
        (
            "maker moves its 49,980.00 bid to 49,995.00 (re-queued)",
            Command::Amend {
                account: MAKER,
                order: OrderRef::Client(2),
                price: usdt_cents(4_999_500),
                qty: 0,
            },
        ),
        (
            "alice IOC-buys 1.0 at 50,020.00: fills 0.2, the rest expires",
            limit(
                ALICE,
                BTC_USDT,
                11,
                Buy,
                Ioc,
                false,
                usdt_cents(5_002_000),
                btc_lots(10_000),
                CancelTaker,
            ),
        ),
        (
            "alice FOK-buys 0.5 at 50,100.00: no asks left, killed with no change",
            limit(
                ALICE,
                BTC_USDT,
                12,
                Buy,
                Fok,
                false,
                usdt_cents(5_010_000),
                btc_lots(5_000),
                CancelTaker,
            ),
        ),
        (
            "maker posts a post-only ask at 49,995.00: it would take, rejected",
            quote(MAKER, 5, Sell, 4_999_500, 1_000),
        ),
        ("maker posts an ask 50,030.00 x 0.1", quote(MAKER, 6, Sell, 5_003_000, 1_000)),
        (
            "maker's own buy at 50,030.00 meets its ask: self-trade prevented (cancel taker)",
            limit(
                MAKER,
                BTC_USDT,
                7,
                Buy,
                Gtc,
                false,
                usdt_cents(5_003_000),
                btc_lots(1_000),
                CancelTaker,
            ),
        ),
        ("maker quotes ETH: ask 3,000.00 x 2", eth_quote(30, Sell, 300_000, 2_000)),
        ("maker quotes ETH: ask 3,001.00 x 2", eth_quote(31, Sell, 300_100, 2_000)),
        (
            "bob market-buys ETH with a 7,500 USDT budget (fee included)",
            Command::Place(PlaceOrder {
                account: BOB,
                market: ETH_USDT,
                client_order_id: 21,
                side: Buy,
                order_type: OrderType::Market,
                tif: Ioc,
                post_only: false,
                price: 0,
                qty: 0,
                quote_budget: 7_500 * 1_000_000,
                stp: CancelTaker,
            }),
        ),
        (
            "maker mass-cancels BTC-USDT",
            Command::MassCancel { account: MAKER, market: Some(BTC_USDT) },
        ),
        (
            "alice requests a withdrawal of 1,000 USDT",
            Command::WithdrawRequest {
                tx: 100,
                account: ALICE,
                asset: USDT,
                amount: 1_000 * 1_000_000,
            },
        ),
        ("the withdrawal completes", Command::WithdrawComplete { tx: 100 }),
        (
            "deposit tx 4 is sent again: the original outcome, nothing changes",
            Command::Deposit { tx: 4, account: ALICE, asset: USDT, amount: 100_000 * 1_000_000 },
        ),
        (
            "bob transfers 0.1 BTC to alice",
            Command::Transfer {
                tx: 101,
                from: BOB,
                to: ALICE,
                asset: BTC,
                amount: 10_000_000,
                create_account: false,
            },
        ),
    ]
}
