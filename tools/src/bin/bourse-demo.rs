//! A scripted trading session on the engine: prints every order event and trade, then the
//! final balances, the invariant check and the state hash.

use bourse_engine::*;
use bourse_tools::{demo, fixed};

struct Names {
    assets: Vec<AssetView>,
    markets: Vec<MarketView>,
}

impl Names {
    fn scale(&self, asset: AssetId) -> u8 {
        self.assets.iter().find(|a| a.asset == asset).map_or(0, |a| a.scale)
    }

    fn symbol(&self, asset: AssetId) -> String {
        self.assets.iter().find(|a| a.asset == asset).map_or("?".into(), |a| a.symbol.to_string())
    }

    fn market(&self, market: MarketId) -> MarketSpec {
        self.markets.iter().find(|m| m.spec.market == market).expect("known market").spec
    }

    fn price(&self, market: MarketId, price: u64) -> String {
        fixed::format_trim(price, self.scale(self.market(market).quote), 2)
    }

    fn qty(&self, market: MarketId, qty: u64) -> String {
        fixed::format_trim(qty, self.scale(self.market(market).base), 1)
    }

    fn quote(&self, market: MarketId, amount: u64) -> String {
        fixed::format_trim(amount, self.scale(self.market(market).quote), 2)
    }

    fn describe(&self, event: &Event) -> Option<String> {
        Some(match event.kind {
            EventKind::Accepted(a) => format!(
                "accepted  order {} ({:?} {:?} {:?}{}) {} {}",
                a.order_id,
                a.side,
                a.order_type,
                a.tif,
                if a.post_only { " post-only" } else { "" },
                if a.qty > 0 {
                    self.qty(a.market, a.qty)
                } else {
                    format!("budget {}", self.quote(a.market, a.quote_budget))
                },
                if a.price > 0 {
                    format!("@ {}", self.price(a.market, a.price))
                } else {
                    String::new()
                },
            ),
            EventKind::Rejected(r) => {
                format!("rejected  {:?}: {} (code {})", r.command, r.reason, r.reason.code())
            }
            EventKind::Trade(t) => format!(
                "TRADE     #{} {} @ {}  taker {} ({:?}, fee {})  maker {} (fee {})",
                t.trade_id,
                self.qty(t.market, t.qty),
                self.price(t.market, t.price),
                t.taker_account,
                t.taker_side,
                self.quote(t.market, t.taker_fee),
                t.maker_account,
                self.quote(t.market, t.maker_fee),
            ),
            EventKind::Done(d) => format!(
                "done      order {} {:?}, filled {}",
                d.order_id,
                d.reason,
                self.qty(d.market, d.filled_qty)
            ),
            EventKind::Amended(a) => format!(
                "amended   order {} -> {} @ {} (open {}, priority {})",
                a.order_id,
                self.qty(a.market, a.qty),
                self.price(a.market, a.price),
                self.qty(a.market, a.leaves_qty),
                if a.priority_kept { "kept" } else { "lost" }
            ),
            EventKind::Ledger(l) => format!(
                "ledger    {:?} tx {} account {} {} {}{}",
                l.kind,
                l.tx,
                l.account,
                fixed::format_trim(l.amount, self.scale(l.asset), 2),
                self.symbol(l.asset),
                if l.duplicate { " (duplicate: nothing changed)" } else { "" }
            ),
            EventKind::MassCancelled { count, .. } => format!("mass-cancelled {count} orders"),
            EventKind::Balance(_) | EventKind::Level(_) | EventKind::Admin(_) => return None,
        })
    }
}

fn main() {
    // The demo takes no arguments; `--version` is the one every bourse binary answers.
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("bourse-demo {}", bourse_net::VERSION);
        return;
    }
    let mut exchange =
        Exchange::new(Config { fee_account: demo::FEE_ACCOUNT, ..Config::default() })
            .expect("default limits are valid");
    let mut events = Vec::new();
    let mut index = 0;
    // The sequencer's clock is simulated: one millisecond per command.
    let mut apply = |exchange: &mut Exchange, command: &Command, events: &mut Vec<Event>| {
        index += 1;
        events.clear();
        exchange.apply(index, index * 1_000_000, command, events).expect("indices increase");
    };
    for command in demo::setup() {
        apply(&mut exchange, &command, &mut events);
        let rejected = events.iter().any(|e| matches!(e.kind, EventKind::Rejected(_)));
        assert!(!rejected, "demo setup command rejected: {command:?} -> {events:?}");
    }
    let names = Names { assets: exchange.assets(), markets: exchange.markets() };
    println!("bourse demo: markets BTC-USDT and ETH-USDT, accounts maker=100 alice=200 bob=300\n");
    for (what, command) in demo::session() {
        apply(&mut exchange, &command, &mut events);
        println!("> {what}");
        for line in events.iter().filter_map(|e| names.describe(e)) {
            println!("    {line}");
        }
    }
    for market in [demo::BTC_USDT, demo::ETH_USDT] {
        let depth = exchange.depth(market, 5).expect("market exists");
        println!("\n{} book:", names.market(market).symbol);
        for level in depth.asks.iter().rev() {
            println!(
                "    ask {:>10} x {}",
                names.price(market, level.price),
                names.qty(market, level.qty)
            );
        }
        for level in &depth.bids {
            println!(
                "    bid {:>10} x {}",
                names.price(market, level.price),
                names.qty(market, level.qty)
            );
        }
        if depth.bids.is_empty() && depth.asks.is_empty() {
            println!("    (empty)");
        }
    }
    println!("\nfinal balances (available / held):");
    for account in exchange.accounts() {
        for (asset, balance) in exchange.balances(account) {
            let scale = names.scale(asset);
            println!(
                "    account {account:>4} {:>5} {:>22} / {}",
                names.symbol(asset),
                fixed::format(balance.available, scale),
                fixed::format(balance.held, scale)
            );
        }
    }
    match exchange.check_invariants() {
        Ok(()) => println!(
            "\ninvariants: ok (conservation per asset, holds = reservations, book uncrossed)"
        ),
        Err(why) => {
            eprintln!("\ninvariants VIOLATED: {why}");
            std::process::exit(1);
        }
    }
    let hash: String = exchange.state_hash().iter().map(|b| format!("{b:02x}")).collect();
    println!("state hash at index {}: {hash}", exchange.last_index());
}
