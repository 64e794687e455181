//! One function per subcommand: build the request from the command line and the
//! reference data, send it, wait for its outcome, print it.

use std::io::Write as _;
use std::time::{Duration, Instant};

use bourse_engine::{MarketStatus, OrderRef, OrderType, Side, StpMode, Symbol, TimeInForce};
use bourse_net::client::Incoming;
use bourse_net::protocol::*;

use super::args::{AdminCmd, AmendArgs, Cli, Cmd, OrderArg, PlaceArgs, SideArg, StpArg};
use super::catalog::Market;
use super::conn::{Conn, Exchanged, Target, TlsTarget};
use super::render;
use super::CliError;

/// Runs the command the command line names.
pub fn run(cli: &Cli) -> Result<(), CliError> {
    if let Cmd::Stats(args) = &cli.command {
        // The metrics port: no exchange connection, no key.
        return super::stats::run(args, Duration::from_secs(cli.timeout.max(1)));
    }
    let target = Target {
        addr: cli.addr.clone(),
        key: cli.key_id(),
        secret_hex: cli.secret_hex()?,
        timeout: Duration::from_secs(cli.timeout.max(1)),
        tls: cli
            .tls
            .then(|| TlsTarget { ca_file: cli.ca_file.clone(), name: cli.tls_name.clone() }),
    };
    let mut conn = Conn::open(&target)?;
    let result = match &cli.command {
        Cmd::Place(args) => place(&mut conn, args),
        Cmd::Cancel(order) => cancel(&mut conn, order),
        Cmd::Amend(args) => amend(&mut conn, args),
        Cmd::MassCancel { market } => mass_cancel(&mut conn, market.as_deref()),
        Cmd::Balances => balances(&mut conn),
        Cmd::Orders { market } => orders(&mut conn, market.as_deref()),
        Cmd::Book { market, depth } => book(&mut conn, market, *depth),
        Cmd::Tail { markets, no_book } => tail(&mut conn, markets, *no_book),
        Cmd::Markets => {
            print!("{}", render::reference(&conn.catalog));
            Ok(())
        }
        Cmd::Admin(cmd) => admin(&mut conn, cmd),
        Cmd::Stats(_) => unreachable!("answered above"),
    };
    conn.close();
    result
}

// ----- Outcomes ----------------------------------------------------------------------

/// The refusal of request `id`, if the exchange refused it, with a hint for the usual
/// mistakes (`market`: the order's market, to name its steps and minimum).
fn refusal(conn: &Conn, x: &Exchanged, id: RequestId, market: Option<&Market>) -> Option<CliError> {
    use bourse_engine::RejectReason as R;
    let r = x.find(|m| match m {
        Incoming::Msg(ServerMessage::Rejected(r)) if r.request_id == id => Some(*r),
        _ => None,
    })?;
    let hint = match (r.cause, conn.ack.role, market) {
        (RejectCause::Session(SessionReason::NotPermitted), WireRole::Admin, _) => {
            " — this is an admin key; trade and query balances with a trader key (e.g. --key 200)"
                .to_string()
        }
        (RejectCause::Session(SessionReason::NotPermitted), WireRole::Trader, _) => {
            " — this is a trader key; admin commands need an admin key (e.g. --key 1)".to_string()
        }
        (RejectCause::Engine { reason: R::PriceNotOnTick, .. }, _, Some(m)) => {
            format!(" — {} prices go in steps of {}", m.symbol(), m.price(m.info.spec.tick_size))
        }
        (RejectCause::Engine { reason: R::QtyNotOnLot, .. }, _, Some(m)) => {
            format!(" — {} quantities go in steps of {}", m.symbol(), m.qty(m.info.spec.lot_size))
        }
        (RejectCause::Engine { reason: R::BelowMinNotional, .. }, _, Some(m)) => format!(
            " — the smallest {} order is worth {}",
            m.symbol(),
            m.quote.show(m.info.spec.min_notional)
        ),
        (RejectCause::Engine { reason: R::TxIdReusedWithDifferentParams, .. }, _, _) => {
            " — the first request with this tx stands; use a new --tx for a new transaction"
                .to_string()
        }
        (RejectCause::Engine { reason: R::UnknownReceiver, .. }, _, _) => {
            " — add --create-account to open the receiving account with this transfer".to_string()
        }
        _ => String::new(),
    };
    let short = render::shortfall(&conn.catalog, &r);
    Some(CliError::Refused(format!("{}{short}{hint}", render::reject_reason(&r))))
}

fn no_answer(what: &str) -> CliError {
    CliError::Connection(format!("the exchange did not answer the {what}"))
}

/// Prints the trades and finished orders of the command at log `index` (the
/// account's own view); returns the order ids that finished.
fn print_effects(conn: &Conn, x: &Exchanged, index: u64) -> Vec<u64> {
    let mut done = Vec::new();
    for message in &x.messages {
        match message {
            Incoming::Msg(ServerMessage::Trade(t)) if t.index == index => {
                println!("  {}", render::trade(&conn.catalog, t));
            }
            Incoming::Msg(ServerMessage::Done(d)) if d.index == index => {
                println!("  {}", render::done(&conn.catalog, d));
                done.push(d.order_id);
            }
            _ => {}
        }
    }
    done
}

fn filled_in(x: &Exchanged, order_id: u64, index: u64) -> u64 {
    x.messages
        .iter()
        .filter_map(|m| match m {
            Incoming::Msg(ServerMessage::Trade(t))
                if t.index == index && t.order_id == order_id =>
            {
                Some(t.qty)
            }
            _ => None,
        })
        .sum()
}

// ----- Orders ------------------------------------------------------------------------

fn side_of(side: SideArg) -> Side {
    match side {
        SideArg::Buy => Side::Buy,
        SideArg::Sell => Side::Sell,
    }
}

fn stp_of(stp: StpArg) -> StpMode {
    match stp {
        StpArg::CancelTaker => StpMode::CancelTaker,
        StpArg::CancelMaker => StpMode::CancelMaker,
        StpArg::CancelBoth => StpMode::CancelBoth,
        StpArg::Decrement => StpMode::Decrement,
    }
}

/// The order the command line describes, checked for the combinations the engine would
/// refuse as `InvalidOrder`, so the error can say which flag is wrong.
fn build_order(m: &Market, a: &PlaceArgs) -> Result<NewOrder, CliError> {
    let bad = |text: &str| Err(CliError::Input(text.to_string()));
    let side = side_of(a.side);
    let mut order = NewOrder {
        market: m.id(),
        client_order_id: a.client_id.unwrap_or(0),
        side,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        post_only: a.post_only,
        price: 0,
        qty: 0,
        quote_budget: 0,
        stp: stp_of(a.stp),
    };
    if a.market_order {
        if a.price.is_some() {
            return bad("a market order takes no --price");
        }
        if a.post_only || a.fok {
            return bad(
                "a market order is always immediate-or-cancel: leave out --post-only / --fok",
            );
        }
        order.order_type = OrderType::Market;
        order.tif = TimeInForce::Ioc;
        match side {
            Side::Buy => {
                if a.qty.is_some() {
                    return bad("a market buy is bounded by --budget, not a quantity: leave out the quantity");
                }
                let Some(budget) = &a.budget else {
                    return Err(CliError::Input(format!(
                        "a market buy needs --budget (the most {} to spend, fees included)",
                        m.quote.symbol
                    )));
                };
                if order.stp == StpMode::Decrement {
                    return bad("a market buy cannot use --stp decrement");
                }
                order.quote_budget = m.quote.parse("budget", budget)?;
            }
            Side::Sell => {
                if a.budget.is_some() {
                    return bad("--budget is for market buys; a market sell sells its quantity");
                }
                let Some(qty) = &a.qty else { return bad("a market sell needs a quantity") };
                order.qty = m.parse_qty(qty)?;
            }
        }
        return Ok(order);
    }
    if a.budget.is_some() {
        return bad("--budget is for market buys (--market-order)");
    }
    let Some(price) = &a.price else {
        return bad("a limit order needs --price (or use --market-order)");
    };
    let Some(qty) = &a.qty else { return bad("the order needs a quantity") };
    order.price = m.parse_price(price)?;
    order.qty = m.parse_qty(qty)?;
    order.tif = if a.ioc {
        TimeInForce::Ioc
    } else if a.fok {
        TimeInForce::Fok
    } else {
        TimeInForce::Gtc
    };
    Ok(order)
}

fn place(conn: &mut Conn, a: &PlaceArgs) -> Result<(), CliError> {
    let m = conn.catalog.find_market(&a.market)?;
    let order = build_order(&m, a)?;
    let x = conn.exchange(&[ClientRequest::NewOrder(order)])?;
    let id = x.ids[0];
    if let Some(refused) = refusal(conn, &x, id, Some(&m)) {
        return Err(refused);
    }
    let accepted = x
        .find(|m| match m {
            Incoming::Msg(ServerMessage::Accepted(a)) if a.request_id == id => Some(*a),
            _ => None,
        })
        .ok_or_else(|| no_answer("order"))?;
    println!("{}", render::accepted(&conn.catalog, &accepted));
    let finished = print_effects(conn, &x, accepted.index);
    if !finished.contains(&accepted.order_id) {
        let filled = filled_in(&x, accepted.order_id, accepted.index);
        println!(
            "  order {} rests on the book: {} open, {} filled",
            accepted.order_id,
            m.qty(accepted.qty.saturating_sub(filled)),
            m.qty(filled)
        );
    }
    Ok(())
}

fn order_ref(a: &OrderArg) -> Result<OrderRef, CliError> {
    match (a.order_id, a.client_id) {
        (Some(0), _) | (_, Some(0)) => Err(CliError::Input("order ids start at 1".into())),
        (Some(id), None) => Ok(OrderRef::Id(id)),
        (None, Some(client)) => Ok(OrderRef::Client(client)),
        _ => Err(CliError::Input("give exactly one of --order-id and --client-id".into())),
    }
}

fn describe_ref(order: OrderRef) -> String {
    match order {
        OrderRef::Id(id) => format!("order {id}"),
        OrderRef::Client(client) => format!("order with client id {client}"),
    }
}

fn is_ref(order: OrderRef, order_id: u64, client_order_id: u64) -> bool {
    match order {
        OrderRef::Id(id) => id == order_id,
        OrderRef::Client(client) => client == client_order_id,
    }
}

/// The open orders from the reply to request `id`.
fn open_orders_in(x: &Exchanged, id: RequestId) -> Option<(Vec<OpenOrderInfo>, bool)> {
    x.find(|m| match m {
        Incoming::OpenOrders { request_id, orders, truncated } if *request_id == id => {
            Some((orders.clone(), *truncated))
        }
        _ => None,
    })
}

fn order_summary(conn: &Conn, o: &OpenOrderInfo) -> String {
    match conn.catalog.market(o.market) {
        Some(m) => format!(
            "{} {} @ {}",
            if o.side == Side::Buy { "buy" } else { "sell" },
            m.qty(o.qty),
            m.price(o.price)
        ),
        None => format!("on market #{}", o.market),
    }
}

fn cancel(conn: &mut Conn, a: &OrderArg) -> Result<(), CliError> {
    let order = order_ref(a)?;
    // The open orders first, to say what was cancelled; both in one write.
    let x = conn.exchange(&[
        ClientRequest::OpenOrdersQuery { market: None },
        ClientRequest::Cancel(order),
    ])?;
    if let Some(refused) = refusal(conn, &x, x.ids[1], None) {
        return Err(refused);
    }
    let before = open_orders_in(&x, x.ids[0]).and_then(|(orders, _)| {
        orders.into_iter().find(|o| is_ref(order, o.order_id, o.client_order_id))
    });
    let done = x
        .find(|m| match m {
            Incoming::Msg(ServerMessage::Done(d))
                if is_ref(order, d.order_id, d.client_order_id) =>
            {
                Some(*d)
            }
            _ => None,
        })
        .ok_or_else(|| no_answer("cancel"))?;
    match before {
        Some(o) => {
            let m = conn.catalog.market(o.market);
            let filled = m.map_or(o.filled_qty.to_string(), |m| m.qty(o.filled_qty));
            println!(
                "cancelled order {}{}: {} ({filled} had filled)",
                o.order_id,
                render::client_suffix(o.client_order_id),
                order_summary(conn, &o),
            );
        }
        None => println!("{}", render::done(&conn.catalog, &done)),
    }
    Ok(())
}

fn amend(conn: &mut Conn, a: &AmendArgs) -> Result<(), CliError> {
    if a.price.is_none() && a.qty.is_none() {
        return Err(CliError::Input("nothing to change: give --price and/or --qty".into()));
    }
    let order = order_ref(&a.order)?;
    // The order's market gives the scales of the new price and quantity.
    let x = conn.exchange(&[ClientRequest::OpenOrdersQuery { market: None }])?;
    if let Some(refused) = refusal(conn, &x, x.ids[0], None) {
        return Err(refused);
    }
    let (orders, truncated) = open_orders_in(&x, x.ids[0]).ok_or_else(|| no_answer("query"))?;
    let before = orders.into_iter().find(|o| is_ref(order, o.order_id, o.client_order_id));
    let m = match (&before, &a.market) {
        (Some(o), _) => conn.catalog.market(o.market).ok_or_else(|| {
            CliError::Refused(format!("market #{} is not in the reference data", o.market))
        })?,
        (None, Some(text)) => conn.catalog.find_market(text)?,
        (None, None) => {
            let hint = if truncated {
                " among those listed; give --market to amend it anyway"
            } else {
                ""
            };
            return Err(CliError::Refused(format!(
                "you have no open {}{hint}; nothing was sent",
                describe_ref(order)
            )));
        }
    };
    let price = a.price.as_deref().map(|p| m.parse_price(p)).transpose()?.unwrap_or(0);
    let qty = a.qty.as_deref().map(|q| m.parse_qty(q)).transpose()?.unwrap_or(0);
    let x = conn.exchange(&[ClientRequest::Amend { order, price, qty }])?;
    let id = x.ids[0];
    if let Some(refused) = refusal(conn, &x, id, Some(&m)) {
        return Err(refused);
    }
    let amended = x.find(|msg| match msg {
        Incoming::Msg(ServerMessage::Amended(a)) if a.request_id == id => Some(*a),
        _ => None,
    });
    if let Some(amended) = amended {
        println!("{}", render::amended(&conn.catalog, &amended));
        if let Some(o) = &before {
            println!("  before: {}", order_summary(conn, o));
        }
        print_effects(conn, &x, amended.index);
        return Ok(());
    }
    // A new total at or below the filled quantity cancels the order instead.
    let done = x
        .find(|msg| match msg {
            Incoming::Msg(ServerMessage::Done(d))
                if is_ref(order, d.order_id, d.client_order_id) =>
            {
                Some(*d)
            }
            _ => None,
        })
        .ok_or_else(|| no_answer("amend"))?;
    println!(
        "{} — the new quantity is not above the {} already filled",
        render::done(&conn.catalog, &done),
        m.qty(done.filled_qty)
    );
    Ok(())
}

fn mass_cancel(conn: &mut Conn, market: Option<&str>) -> Result<(), CliError> {
    let market = market.map(|text| conn.catalog.find_market(text)).transpose()?.map(|m| m.id());
    let x = conn.exchange(&[ClientRequest::MassCancel { market }])?;
    let id = x.ids[0];
    if let Some(refused) = refusal(conn, &x, id, None) {
        return Err(refused);
    }
    let report = x
        .find(|m| match m {
            Incoming::Msg(ServerMessage::MassCancelDone(r)) if r.request_id == id => Some(*r),
            _ => None,
        })
        .ok_or_else(|| no_answer("mass cancel"))?;
    print_effects(conn, &x, report.index);
    println!("{}", render::mass_cancel_done(&conn.catalog, &report));
    Ok(())
}

// ----- Queries -----------------------------------------------------------------------

fn balances(conn: &mut Conn) -> Result<(), CliError> {
    let x = conn.exchange(&[ClientRequest::BalanceQuery])?;
    let id = x.ids[0];
    if let Some(refused) = refusal(conn, &x, id, None) {
        return Err(refused);
    }
    let balances = x
        .find(|m| match m {
            Incoming::Balances { request_id, balances } if *request_id == id => {
                Some(balances.clone())
            }
            _ => None,
        })
        .ok_or_else(|| no_answer("balance query"))?;
    print!("{}", render::balances(&conn.catalog, conn.ack.account, &balances));
    Ok(())
}

fn orders(conn: &mut Conn, market: Option<&str>) -> Result<(), CliError> {
    let market = market.map(|text| conn.catalog.find_market(text)).transpose()?.map(|m| m.id());
    let x = conn.exchange(&[ClientRequest::OpenOrdersQuery { market }])?;
    let id = x.ids[0];
    if let Some(refused) = refusal(conn, &x, id, None) {
        return Err(refused);
    }
    let (orders, truncated) = open_orders_in(&x, id).ok_or_else(|| no_answer("order query"))?;
    print!("{}", render::open_orders(&conn.catalog, &orders, truncated));
    Ok(())
}

fn book(conn: &mut Conn, market: &str, depth: u16) -> Result<(), CliError> {
    let m = conn.catalog.find_market(market)?;
    let id = conn.send(&ClientRequest::Subscribe { market: m.id(), depth })?;
    // Market data is not sequenced, so the snapshot is waited for by itself.
    let deadline = Instant::now() + conn.timeout;
    loop {
        match conn.recv(deadline)? {
            Incoming::BookSnapshot { request_id, index, bids, asks, .. } if request_id == id => {
                print!("{}", render::ladder(&m, index, &bids, &asks));
                return Ok(());
            }
            Incoming::Msg(ServerMessage::Rejected(r)) if r.request_id == id => {
                return Err(CliError::Refused(render::reject_reason(&r)));
            }
            _ => {}
        }
    }
}

/// What `tail` prints for one message: (time, lines).
fn tail_lines(conn: &Conn, message: &Incoming, no_book: bool) -> Option<(u64, Vec<String>)> {
    let c = &conn.catalog;
    let one = |time_ns: u64, line: String| Some((time_ns, vec![line]));
    match message {
        Incoming::Msg(m) => match m {
            ServerMessage::Accepted(a) => one(a.time_ns, render::accepted(c, a)),
            ServerMessage::Rejected(r) => {
                let short = render::shortfall(c, r);
                one(r.time_ns, format!("rejected: {}{short}", render::reject_reason(r)))
            }
            ServerMessage::Trade(t) => one(t.time_ns, render::trade(c, t)),
            ServerMessage::Done(d) => one(d.time_ns, render::done(c, d)),
            ServerMessage::Amended(a) => one(a.time_ns, render::amended(c, a)),
            ServerMessage::MassCancelDone(r) => one(r.time_ns, render::mass_cancel_done(c, r)),
            ServerMessage::BalanceUpdate(b) => one(b.time_ns, render::balance_update(c, b)),
            ServerMessage::PublicTrade(t) => one(t.time_ns, render::public_trade(c, t)),
            ServerMessage::AdminAck(a) => one(a.time_ns, render::admin_ack(c, a)),
            _ => None,
        },
        Incoming::BookSnapshot { market, bids, asks, .. } => {
            let m = c.market(*market)?;
            let best = |levels: &[bourse_engine::DepthLevel]| match levels.first() {
                Some(l) => format!("{} ({})", m.price(l.price), m.qty(l.qty)),
                None => "none".to_string(),
            };
            let line = format!(
                "[{}] subscribed: best bid {}, best ask {}",
                m.symbol(),
                best(bids),
                best(asks)
            );
            Some((bourse_net::server::now_ns(), vec![line]))
        }
        Incoming::BookUpdate { market, time_ns, changes, .. } if !no_book => {
            let lines = changes.iter().map(|ch| render::level_change(c, *market, ch)).collect();
            Some((*time_ns, lines))
        }
        _ => None,
    }
}

fn tail(conn: &mut Conn, markets: &[String], no_book: bool) -> Result<(), CliError> {
    let markets: Vec<Market> = if markets.is_empty() {
        conn.catalog.markets.iter().filter_map(|m| conn.catalog.market(m.spec.market)).collect()
    } else {
        markets.iter().map(|text| conn.catalog.find_market(text)).collect::<Result<_, _>>()?
    };
    for m in &markets {
        conn.send(&ClientRequest::Subscribe { market: m.id(), depth: 1 })?;
    }
    let who = match conn.ack.role {
        WireRole::Trader => format!("orders and balances of account {}", conn.ack.account),
        WireRole::Admin => "admin acknowledgements".to_string(),
    };
    let names: Vec<&str> = markets.iter().map(|m| m.symbol()).collect();
    let what = if no_book { "trades" } else { "trades and book changes" };
    let mut out = std::io::stdout().lock();
    let header = format!("streaming {who}; {what} of {} (Ctrl-C to stop)", names.join(", "));
    if writeln!(out, "{header}").is_err() {
        return Ok(());
    }
    // The server closes a connection that sends nothing for its idle timeout.
    let heartbeat = Duration::from_millis(u64::from(conn.ack.heartbeat_interval_ms.max(100)));
    let mut next_heartbeat = Instant::now() + heartbeat;
    loop {
        let wait = next_heartbeat.saturating_duration_since(Instant::now());
        if let Some(message) = conn.poll(wait)? {
            if let Some((time_ns, lines)) = tail_lines(conn, &message, no_book) {
                for line in lines {
                    // A closed stdout (`| head`) ends the stream quietly.
                    if writeln!(out, "{} {line}", render::clock(time_ns)).is_err() {
                        return Ok(());
                    }
                }
            }
        }
        if Instant::now() >= next_heartbeat {
            conn.send(&ClientRequest::Heartbeat { time_ns: bourse_net::server::now_ns() })?;
            next_heartbeat = Instant::now() + heartbeat;
        }
    }
}

// ----- Admin -------------------------------------------------------------------------

fn symbol_arg(text: &str) -> Result<Symbol, CliError> {
    Symbol::new(text).ok_or_else(|| {
        CliError::Input(format!(
            "symbol {text:?} must be 1 to 16 printable ASCII characters without spaces"
        ))
    })
}

/// The admin request `cmd` describes (`None` for `status`, which is a query).
fn admin_request(conn: &Conn, cmd: &AdminCmd) -> Result<Option<AdminRequest>, CliError> {
    let c = &conn.catalog;
    Ok(Some(match cmd {
        AdminCmd::Deposit { account, asset, amount, tx } => {
            let u = c.find_asset(asset)?;
            let amount = u.parse("amount", amount)?;
            AdminRequest::Deposit { tx: *tx, account: *account, asset: u.asset, amount }
        }
        AdminCmd::Withdraw { account, asset, amount, tx } => {
            let u = c.find_asset(asset)?;
            let amount = u.parse("amount", amount)?;
            AdminRequest::WithdrawRequest { tx: *tx, account: *account, asset: u.asset, amount }
        }
        AdminCmd::WithdrawComplete { tx } => AdminRequest::WithdrawComplete { tx: *tx },
        AdminCmd::WithdrawCancel { tx } => AdminRequest::WithdrawCancel { tx: *tx },
        AdminCmd::Transfer { from, to, asset, amount, tx, create_account } => {
            let u = c.find_asset(asset)?;
            let amount = u.parse("amount", amount)?;
            AdminRequest::Transfer {
                tx: *tx,
                from: *from,
                to: *to,
                asset: u.asset,
                amount,
                create_account: *create_account,
            }
        }
        AdminCmd::Halt { market } => AdminRequest::SetMarketStatus {
            market: c.find_market(market)?.id(),
            status: MarketStatus::Halted,
        },
        AdminCmd::Open { market } => AdminRequest::SetMarketStatus {
            market: c.find_market(market)?.id(),
            status: MarketStatus::Open,
        },
        AdminCmd::CreateAsset { asset, symbol, scale } => {
            if *scale > 18 {
                return Err(CliError::Input(format!("scale {scale} is above 18")));
            }
            AdminRequest::CreateAsset { asset: *asset, scale: *scale, symbol: symbol_arg(symbol)? }
        }
        AdminCmd::CreateMarket {
            market,
            symbol,
            base,
            quote,
            tick,
            lot,
            min_notional,
            maker_bps,
            taker_bps,
        } => {
            let base = c.find_asset(base)?;
            let quote = c.find_asset(quote)?;
            AdminRequest::CreateMarket(bourse_engine::MarketSpec {
                market: *market,
                symbol: symbol_arg(symbol)?,
                base: base.asset,
                quote: quote.asset,
                tick_size: quote.parse("--tick", tick)?,
                lot_size: base.parse("--lot", lot)?,
                min_notional: quote.parse("--min-notional", min_notional)?,
                maker_fee_bps: *maker_bps,
                taker_fee_bps: *taker_bps,
            })
        }
        AdminCmd::Status => return Ok(None),
    }))
}

fn admin(conn: &mut Conn, cmd: &AdminCmd) -> Result<(), CliError> {
    let Some(request) = admin_request(conn, cmd)? else {
        return status(conn);
    };
    let x = conn.exchange(&[ClientRequest::Admin(request)])?;
    let id = x.ids[0];
    if let Some(refused) = refusal(conn, &x, id, None) {
        return Err(refused);
    }
    let ack = x
        .find(|m| match m {
            Incoming::Msg(ServerMessage::AdminAck(a)) if a.request_id == id => Some(*a),
            _ => None,
        })
        .ok_or_else(|| no_answer("admin command"))?;
    // The catalog was refreshed after the command, so a new asset or market has a name.
    println!("{}", render::admin_ack(&conn.catalog, &ack));
    Ok(())
}

fn status(conn: &mut Conn) -> Result<(), CliError> {
    let x = conn.exchange(&[ClientRequest::StatusQuery])?;
    let id = x.ids[0];
    if let Some(refused) = refusal(conn, &x, id, None) {
        return Err(refused);
    }
    let report = x
        .find(|m| match m {
            Incoming::Msg(ServerMessage::Status(s)) if s.request_id == id => Some(*s),
            _ => None,
        })
        .ok_or_else(|| no_answer("status query"))?;
    println!("{}", render::status(&report));
    Ok(())
}
