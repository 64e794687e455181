//! Server messages in words and tables, with every amount as a decimal of its asset.

use std::fmt::Write as _;

use bourse_engine::{Balance, BalanceReason, DepthLevel, DoneReason, OrderType, Side, TimeInForce};
use bourse_net::protocol::*;

use super::catalog::{status_word, Catalog, Market, Units};

fn side_word(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// " (client 5)" when the order has a client id.
pub fn client_suffix(client_order_id: u64) -> String {
    if client_order_id == 0 {
        String::new()
    } else {
        format!(" (client {client_order_id})")
    }
}

/// The market, or a stand-in that shows raw minor units if the catalog lacks it.
fn market_of(catalog: &Catalog, market: u32) -> Market {
    catalog.market(market).unwrap_or_else(|| {
        let unknown = Units { asset: 0, scale: 0, symbol: "?".to_string() };
        Market {
            info: MarketInfo {
                spec: bourse_engine::MarketSpec {
                    market,
                    symbol: bourse_engine::Symbol::new("?").expect("valid"),
                    base: 0,
                    quote: 0,
                    tick_size: 1,
                    lot_size: 1,
                    min_notional: 0,
                    maker_fee_bps: 0,
                    taker_fee_bps: 0,
                },
                status: bourse_engine::MarketStatus::Open,
            },
            base: unknown.clone(),
            quote: unknown,
        }
    })
}

/// "insufficient available balance (InsufficientFunds, engine code 11, place)".
pub fn reject_reason(r: &RejectReport) -> String {
    let what = match r.cause {
        RejectCause::Engine { command, reason } => format!(
            "{} ({reason:?}, engine code {}, {command:?} command)",
            reason.describe(),
            reason.code()
        ),
        RejectCause::Session(reason) => {
            format!("{} ({reason:?}, session code {})", reason.describe(), reason.code())
        }
    };
    let mut ids = String::new();
    if r.order_id != 0 {
        let _ = write!(ids, ", order {}", r.order_id);
    }
    if r.client_order_id != 0 {
        let _ = write!(ids, ", client id {}", r.client_order_id);
    }
    if r.tx != 0 {
        let _ = write!(ids, ", tx {}", r.tx);
    }
    if r.duplicate {
        ids.push_str(", repeated outcome of an earlier request with this tx");
    }
    format!("{what}{ids}")
}

/// For an insufficient-funds reject: ", needed 1100 USDT, available 1000 USDT" (for an
/// amend the extra hold); empty for every other reject and for repeats.
pub fn shortfall(catalog: &Catalog, r: &RejectReport) -> String {
    match r.shortfall {
        Some(s) => {
            let units = catalog.units(s.asset);
            format!(", needed {}, available {}", units.show(s.needed), units.show(s.available))
        }
        None => String::new(),
    }
}

/// "accepted order 17 (client 5): buy 0.5 BTC @ 50000.00 USDT".
pub fn accepted(catalog: &Catalog, a: &AcceptedReport) -> String {
    let m = market_of(catalog, a.market);
    let side = side_word(a.side);
    let head = format!("accepted order {}{}", a.order_id, client_suffix(a.client_order_id));
    let mut body = match (a.order_type, a.side) {
        (OrderType::Market, Side::Buy) => format!(
            "market buy on {}, spending at most {} (fees included)",
            m.symbol(),
            m.quote.show(a.quote_budget)
        ),
        (OrderType::Market, Side::Sell) => {
            format!("market sell {} on {}", m.qty(a.qty), m.symbol())
        }
        (OrderType::Limit, _) => format!("{side} {} @ {}", m.qty(a.qty), m.price(a.price)),
    };
    match (a.order_type, a.tif) {
        (OrderType::Limit, TimeInForce::Ioc) => body.push_str(", immediate-or-cancel"),
        (OrderType::Limit, TimeInForce::Fok) => body.push_str(", fill-or-kill"),
        _ => {}
    }
    if a.post_only {
        body.push_str(", post-only");
    }
    format!("{head}: {body}")
}

/// "filled 0.5 BTC @ 50000.00 USDT as taker, fee 12.5 USDT (order 17, trade 3)".
pub fn trade(catalog: &Catalog, t: &OwnTrade) -> String {
    let m = market_of(catalog, t.market);
    let verb = match t.side {
        Side::Buy => "bought",
        Side::Sell => "sold",
    };
    let role = match t.liquidity {
        Liquidity::Maker => "maker",
        Liquidity::Taker => "taker",
    };
    format!(
        "{verb} {} @ {} as {role}, fee {} (order {}{}, trade {})",
        m.qty(t.qty),
        m.price(t.price),
        m.quote.show(t.fee),
        t.order_id,
        if t.client_order_id == 0 {
            String::new()
        } else {
            format!(", client {}", t.client_order_id)
        },
        t.trade_id
    )
}

/// "order 17 filled: 0.5 BTC".
pub fn done(catalog: &Catalog, d: &DoneReport) -> String {
    let m = market_of(catalog, d.market);
    let order = format!("order {}{}", d.order_id, client_suffix(d.client_order_id));
    let filled = m.qty(d.filled_qty);
    match d.reason {
        DoneReason::Filled => format!("{order} filled: {filled} in all"),
        DoneReason::Cancelled => format!("{order} cancelled ({filled} had filled)"),
        DoneReason::Expired if d.filled_qty == 0 => {
            format!("{order} expired unfilled: nothing could match it at once")
        }
        DoneReason::Expired => {
            format!("{order} expired: {filled} filled, the rest cancelled (it was not to rest)")
        }
        DoneReason::SelfTradePrevented => format!(
            "{order} removed by self-trade prevention ({filled} filled); it met your own order"
        ),
    }
}

/// "amended order 17: now buy 0.6 BTC @ 50100.00 USDT, 0.6 BTC open (time priority lost)".
pub fn amended(catalog: &Catalog, a: &AmendedReport) -> String {
    let m = market_of(catalog, a.market);
    let priority = if a.priority_kept { "time priority kept" } else { "time priority lost" };
    format!(
        "amended order {}{}: now {} {} @ {}, {} open ({priority})",
        a.order_id,
        client_suffix(a.client_order_id),
        side_word(a.side),
        m.qty(a.qty),
        m.price(a.price),
        m.qty(a.leaves_qty)
    )
}

pub fn mass_cancel_done(catalog: &Catalog, r: &MassCancelReport) -> String {
    let scope = match r.market {
        Some(market) => format!("on {}", catalog.market_name(market)),
        None => "on every market".to_string(),
    };
    let plural = if r.count == 1 { "" } else { "s" };
    format!("mass cancel: {} open order{plural} cancelled {scope}", r.count)
}

fn balance_reason(reason: BalanceReason) -> String {
    match reason {
        BalanceReason::Deposit(tx) => format!("deposit, tx {tx}"),
        BalanceReason::WithdrawHold(tx) => format!("withdrawal requested, tx {tx}"),
        BalanceReason::WithdrawComplete(tx) => format!("withdrawal completed, tx {tx}"),
        BalanceReason::WithdrawCancel(tx) => format!("withdrawal cancelled, tx {tx}"),
        BalanceReason::TransferOut(tx) => format!("transfer out, tx {tx}"),
        BalanceReason::TransferIn(tx) => format!("transfer in, tx {tx}"),
        BalanceReason::OrderHold(id) => format!("held for order {id}"),
        BalanceReason::OrderRelease(id) => format!("released from order {id}"),
        BalanceReason::Trade(id) => format!("trade {id}"),
        BalanceReason::Fee(id) => format!("fee income of trade {id}"),
    }
}

/// "USDT available -25012.5 = 74987.5, held +0 = 0 (trade 3)".
pub fn balance_update(catalog: &Catalog, b: &BalanceUpdate) -> String {
    let u = catalog.units(b.asset);
    let mut parts = Vec::new();
    if b.delta_available != 0 {
        parts.push(format!(
            "available {} = {}",
            u.show_delta(b.delta_available),
            u.amount(b.available)
        ));
    }
    if b.delta_held != 0 {
        parts.push(format!("held {} = {}", u.show_delta(b.delta_held), u.amount(b.held)));
    }
    if parts.is_empty() {
        parts.push(format!("available {}, held {}", u.amount(b.available), u.amount(b.held)));
    }
    format!("balance {}: {} ({})", u.symbol, parts.join(", "), balance_reason(b.reason))
}

pub fn public_trade(catalog: &Catalog, t: &PublicTrade) -> String {
    let m = market_of(catalog, t.market);
    let aggressor = match t.taker_side {
        Side::Buy => "buyer took",
        Side::Sell => "seller took",
    };
    format!(
        "[{}] trade {} @ {} ({aggressor}, trade {})",
        m.symbol(),
        m.qty(t.qty),
        m.price(t.price),
        t.trade_id
    )
}

pub fn level_change(catalog: &Catalog, market: u32, c: &LevelChange) -> String {
    let m = market_of(catalog, market);
    let side = match c.side {
        Side::Buy => "bid",
        Side::Sell => "ask",
    };
    if c.qty == 0 {
        format!("[{}] book {side} {} gone", m.symbol(), m.price(c.price))
    } else {
        let plural = if c.orders == 1 { "" } else { "s" };
        format!(
            "[{}] book {side} {} now {} ({} order{plural})",
            m.symbol(),
            m.price(c.price),
            m.qty(c.qty),
            c.orders
        )
    }
}

pub fn admin_ack(catalog: &Catalog, a: &AdminAck) -> String {
    let u = catalog.units(a.asset);
    let text = match a.kind {
        AdminKind::AssetCreated => {
            format!("created asset {} {} with {} decimal places", a.asset, u.symbol, a.scale)
        }
        AdminKind::MarketCreated => {
            format!("created market {} {}", a.market, catalog.market_name(a.market))
        }
        AdminKind::MarketStatus => {
            format!("market {} is now {}", catalog.market_name(a.market), status_word(a.status))
        }
        AdminKind::Deposit => {
            format!("deposited {} to account {} (tx {})", u.show(a.amount), a.account, a.tx)
        }
        AdminKind::WithdrawRequest => format!(
            "withdrawal of {} from account {} requested and held (tx {})",
            u.show(a.amount),
            a.account,
            a.tx
        ),
        AdminKind::WithdrawComplete => format!(
            "withdrawal tx {} completed: {} left account {}",
            a.tx,
            u.show(a.amount),
            a.account
        ),
        AdminKind::WithdrawCancel => format!(
            "withdrawal tx {} cancelled: {} back to account {}",
            a.tx,
            u.show(a.amount),
            a.account
        ),
        AdminKind::Transfer => format!(
            "transferred {} from account {} to account {} (tx {})",
            u.show(a.amount),
            a.account,
            a.counterparty,
            a.tx
        ),
    };
    if a.duplicate {
        format!("{text} — a repeat: tx {} had already been applied, nothing changed", a.tx)
    } else {
        text
    }
}

pub fn status(s: &StatusReport) -> String {
    let uptime_s = s.uptime_ns / 1_000_000_000;
    format!(
        "last log index {}\nstate hash     {}\nuptime         {}h {:02}m {:02}s\nsessions       {}",
        s.last_index,
        hex::encode(s.state_hash),
        uptime_s / 3600,
        uptime_s / 60 % 60,
        uptime_s % 60,
        s.sessions
    )
}

/// Pads the numbers of a column so their decimal points line up ("1.5" over "10.25"
/// becomes "1.5 " over "10.25"); a column with any non-number is left as it is.
fn align_decimals(rows: &mut [Vec<String>], column: usize) {
    let is_number = |c: &str| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !rows.iter().all(|r| r.get(column).is_some_and(|c| is_number(c))) {
        return;
    }
    let frac = |c: &str| c.find('.').map_or(0, |dot| c.len() - dot);
    let widest = rows.iter().map(|r| frac(&r[column])).max().unwrap_or(0);
    for row in rows.iter_mut() {
        let pad = widest - frac(&row[column]);
        row[column].extend(std::iter::repeat_n(' ', pad));
    }
}

/// Columns under a header, two spaces apart: 'l' in `align` left-aligns a column, 'r'
/// right-aligns it with decimal points lined up.
fn table(header: &[&str], align: &str, rows: &[Vec<String>]) -> String {
    let align: Vec<bool> = align.chars().map(|c| c == 'l').collect();
    let mut rows = rows.to_vec();
    for (column, left) in align.iter().enumerate() {
        if !left {
            align_decimals(&mut rows, column);
        }
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            let gap = if i == 0 { "" } else { "  " };
            if align.get(i).copied().unwrap_or(false) {
                let _ = write!(text, "{gap}{cell:<w$}");
            } else {
                let _ = write!(text, "{gap}{cell:>w$}");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

pub fn balances(catalog: &Catalog, account: u64, balances: &[(u32, Balance)]) -> String {
    if balances.is_empty() {
        return format!("account {account} holds nothing\n");
    }
    let rows: Vec<Vec<String>> = balances
        .iter()
        .map(|(asset, b)| {
            let u = catalog.units(*asset);
            let total = b.available.saturating_add(b.held);
            vec![u.symbol.clone(), u.amount(b.available), u.amount(b.held), u.amount(total)]
        })
        .collect();
    format!(
        "balances of account {account}\n{}",
        table(&["asset", "available", "held", "total"], "lrrr", &rows)
    )
}

pub fn open_orders(catalog: &Catalog, orders: &[OpenOrderInfo], truncated: bool) -> String {
    if orders.is_empty() {
        return "no open orders\n".to_string();
    }
    let rows: Vec<Vec<String>> = orders
        .iter()
        .map(|o| {
            let m = market_of(catalog, o.market);
            let client =
                if o.client_order_id == 0 { "-".into() } else { o.client_order_id.to_string() };
            vec![
                o.order_id.to_string(),
                client,
                m.symbol().to_string(),
                side_word(o.side).to_string(),
                m.price(o.price),
                m.qty(o.qty),
                m.qty(o.filled_qty),
                m.qty(o.leaves_qty),
                if o.post_only { "post-only".into() } else { String::new() },
            ]
        })
        .collect();
    let header = ["order", "client", "market", "side", "price", "qty", "filled", "open", ""];
    let mut out = table(&header, "rrllrrrrl", &rows);
    if truncated {
        out.push_str("(more open orders than one reply holds; narrow with --market)\n");
    }
    out
}

/// The book as a ladder: asks from the highest down to the best, a spread line, then
/// bids from the best down.
pub fn ladder(m: &Market, index: u64, bids: &[DepthLevel], asks: &[DepthLevel]) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let row = |side: &str, l: &DepthLevel| {
        vec![side.to_string(), m.price_number(l.price), m.qty_number(l.qty), l.orders.to_string()]
    };
    for level in asks.iter().rev() {
        rows.push(row("ask", level));
    }
    let spread_row = rows.len();
    for level in bids {
        rows.push(row("bid", level));
    }
    let header =
        ["", &format!("price ({})", m.quote.symbol), &format!("qty ({})", m.base.symbol), "orders"]
            .map(|s| s.to_string());
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let text = table(&header, "lrrr", &rows);
    let mut lines: Vec<&str> = text.lines().collect();
    let width = lines.iter().map(|l| l.len()).max().unwrap_or(0);
    let spread = match (bids.first(), asks.first()) {
        (Some(bid), Some(ask)) if ask.price >= bid.price => {
            format!(" spread {} ", m.price(ask.price - bid.price))
        }
        (None, None) => " empty book ".to_string(),
        (None, _) => " no bids ".to_string(),
        (_, None) => " no asks ".to_string(),
        _ => " crossed ".to_string(),
    };
    let dashes = width.saturating_sub(spread.len()).max(4);
    let spread_line =
        format!("{}{spread}{}", "-".repeat(dashes / 2), "-".repeat(dashes - dashes / 2));
    // +1: the header line comes first.
    lines.insert(spread_row + 1, &spread_line);
    let status = if m.info.status == bourse_engine::MarketStatus::Halted { ", HALTED" } else { "" };
    let mut out = format!("{} order book (log index {index}{status})\n", m.symbol());
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out
}

pub fn reference(catalog: &Catalog) -> String {
    let assets: Vec<Vec<String>> = catalog
        .assets
        .iter()
        .map(|a| vec![a.asset.to_string(), a.symbol.as_str().to_string(), a.scale.to_string()])
        .collect();
    let mut out = String::from("assets\n");
    out.push_str(&table(&["id", "symbol", "decimals"], "rlr", &assets));
    let markets: Vec<Vec<String>> = catalog
        .markets
        .iter()
        .filter_map(|info| catalog.market(info.spec.market))
        .map(|m| {
            let s = &m.info.spec;
            vec![
                s.market.to_string(),
                m.symbol().to_string(),
                m.base.symbol.clone(),
                m.quote.symbol.clone(),
                m.price(s.tick_size),
                m.qty(s.lot_size),
                m.quote.show(s.min_notional),
                format!("{}/{}", s.maker_fee_bps, s.taker_fee_bps),
                m.status_word().to_string(),
            ]
        })
        .collect();
    out.push_str("\nmarkets\n");
    let header =
        ["id", "symbol", "base", "quote", "tick", "lot", "min value", "fees bps m/t", "status"];
    out.push_str(&table(&header, "rlllrrrrl", &markets));
    if catalog.truncated {
        out.push_str("(the exchange has more than one reply holds; the list is cut)\n");
    }
    out
}

/// "14:03:07.412" (UTC) for tail lines.
pub fn clock(time_ns: u64) -> String {
    let ms = time_ns / 1_000_000;
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}.{:03}", s / 3600 % 24, s / 60 % 60, s % 60, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::catalog::tests::demo as catalog;

    #[test]
    fn an_accepted_limit_order_reads_as_a_sentence() {
        let a = AcceptedReport {
            request_id: 1,
            order_id: 17,
            client_order_id: 5,
            market: 1,
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            post_only: false,
            stp: bourse_engine::StpMode::CancelTaker,
            price: 50_000_000_000,
            qty: 50_000_000,
            quote_budget: 0,
            index: 9,
            time_ns: 0,
        };
        assert_eq!(
            accepted(&catalog(), &a),
            "accepted order 17 (client 5): buy 0.5 BTC @ 50000.00 USDT"
        );
    }

    #[test]
    fn the_ladder_puts_asks_above_bids() {
        let c = catalog();
        let m = c.market(1).unwrap();
        let level = |price, qty, orders| DepthLevel { price, qty, orders };
        let asks = [level(50_100_000_000, 20_000_000, 1), level(50_200_000_000, 10_000, 2)];
        let bids = [level(49_900_000_000, 50_000_000, 3)];
        let text = ladder(&m, 42, &bids, &asks);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "BTC-USDT order book (log index 42)");
        assert!(lines[1].contains("price (USDT)") && lines[1].contains("qty (BTC)"));
        assert!(lines[2].starts_with("ask") && lines[2].contains("50200.00"), "{text}");
        assert!(lines[3].starts_with("ask") && lines[3].contains("50100.00"), "{text}");
        assert!(lines[4].contains("spread 200.00 USDT"), "{text}");
        assert!(lines[5].starts_with("bid") && lines[5].contains("49900.00"), "{text}");
        assert!(lines[5].contains("0.5000"), "{text}");
        assert_eq!(lines.len(), 6);
        let empty = ladder(&m, 1, &[], &[]);
        assert!(empty.contains("empty book"), "{empty}");
    }

    #[test]
    fn clock_is_utc_time_of_day() {
        // 2021-01-01T01:02:03.456Z
        assert_eq!(clock(1_609_462_923_456_000_000), "01:02:03.456");
    }
}
