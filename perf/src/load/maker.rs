//! One market-maker session, sans-IO: which request to send next, and what each server
//! message means for the session's orders and for the latency figures.
//!
//! The session keeps `quotes_per_market` quote slots per market (even slots bid, odd
//! slots ask). A resting quote sits 1..=`depth_ticks` ticks from a fixed mid on its own
//! side, so post-only quotes never cross each other. Each request is one of:
//!
//! - **quote**: a post-only GTC limit order into an empty slot;
//! - **amend**: a resting quote moves 1-3 ticks (staying on its side) or changes size;
//! - **cancel**: a resting quote is pulled;
//! - **crossing**: a limit IOC (or, less often, GTC) priced 1..=`depth_ticks / 2` ticks
//!   through the mid, so it trades with whatever quotes rest there (self-trade prevention
//!   `CancelMaker`: it skips the session's own quotes and cancels them). A GTC whose
//!   remainder rests is cancelled by the session's next request, as a taker would.
//!
//! The mix says how often each is chosen; when a choice is impossible (no resting quote to
//! amend, every slot busy) the session falls back to another kind, and the report shows
//! the mix that really went out. At most one request per quote slot is in flight.
//!
//! Matching replies to requests: the envelope's request id comes back as `request_id` in
//! `Accepted`, `Rejected` and `Amended`; a cancel is answered by the `Done(Cancelled)` of
//! its order (found by client order id) or by a `Rejected`. Client order ids carry the
//! slot in their low 20 bits, so every lookup is an index, and in-flight requests live in
//! a ring indexed by request id: nothing here allocates after construction.

use std::collections::VecDeque;

use bourse_engine::{DoneReason, MarketId, OrderRef, OrderType, Side, StpMode, TimeInForce};
use bourse_net::client::ClientError;
use bourse_net::protocol::{ClientRequest, Liquidity, NewOrder, RequestId, ServerMessage};

use super::stats::{Kind, Stats};
use crate::rng::SplitMix64;

/// Requests one session may have in flight (a power of two: the ring is indexed by
/// `request_id % INFLIGHT_MAX`). At 25k requests/s per session this is 650 ms of backlog;
/// a server that far behind has already failed the run.
pub const INFLIGHT_MAX: usize = 1 << 14;
/// Crossing orders one session may have open at once (awaiting their last report).
pub const TAKERS_MAX: usize = INFLIGHT_MAX;
/// Markets one run may trade.
pub const MARKETS_MAX: usize = 16;
/// Quote slots per market and session.
pub const QUOTES_PER_MARKET_MAX: usize = 4096;
/// Largest distance of a quote from the mid, in ticks.
pub const DEPTH_TICKS_MAX: u64 = 100_000;
/// Largest quote or crossing size, in lots.
pub const LOTS_MAX: u64 = 1_000;

/// Low bits of a client order id that name the slot; the rest is a generation counter.
const SLOT_BITS: u32 = 20;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// Set in the slot bits of a crossing order's client order id.
const TAKER_FLAG: u64 = 1 << (SLOT_BITS - 1);

const _: () = assert!(INFLIGHT_MAX.is_power_of_two());
const _: () = assert!(MARKETS_MAX * QUOTES_PER_MARKET_MAX < TAKER_FLAG as usize);
const _: () = assert!(TAKERS_MAX < TAKER_FLAG as usize);

/// What the load generator knows of a market: its id, steps, and where to quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarketModel {
    pub market: MarketId,
    pub symbol: &'static str,
    /// Price step, quote minor units per whole base unit.
    pub tick: u64,
    /// Quantity step, base minor units.
    pub lot: u64,
    /// The price quotes centre on.
    pub mid: u64,
}

/// The markets of the demo exchange (`net/config/demo.toml`).
pub fn demo_market(market: MarketId) -> Option<MarketModel> {
    match market {
        // 50,000.00 USDT; tick 0.01 USDT; lot 0.0001 BTC (5 USDT at the mid).
        1 => Some(MarketModel {
            market,
            symbol: "BTC-USDT",
            tick: 10_000,
            lot: 10_000,
            mid: 50_000_000_000,
        }),
        // 3,000.00 USDT; tick 0.01 USDT; lot 0.001 ETH (3 USDT at the mid).
        2 => Some(MarketModel {
            market,
            symbol: "ETH-USDT",
            tick: 10_000,
            lot: 100_000,
            mid: 3_000_000_000,
        }),
        _ => None,
    }
}

/// How often each request kind is chosen, in percent; new quotes take the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    pub amend_pct: u64,
    pub cancel_pct: u64,
    pub cross_pct: u64,
    /// Share of crossing orders that are GTC rather than IOC.
    pub cross_gtc_pct: u64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix { amend_pct: 50, cancel_pct: 15, cross_pct: 10, cross_gtc_pct: 20 }
    }
}

/// The sessions' common settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MakerConfig {
    pub markets: Vec<MarketModel>,
    pub quotes_per_market: usize,
    pub depth_ticks: u64,
    pub quote_lots_max: u64,
    pub cross_lots_max: u64,
    pub mix: Mix,
}

impl MakerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.markets.is_empty() || self.markets.len() > MARKETS_MAX {
            return Err(format!("1..={MARKETS_MAX} markets"));
        }
        if !(2..=QUOTES_PER_MARKET_MAX).contains(&self.quotes_per_market) {
            return Err(format!("quotes per market must be in 2..={QUOTES_PER_MARKET_MAX}"));
        }
        if !(2..=DEPTH_TICKS_MAX).contains(&self.depth_ticks) {
            return Err(format!("depth must be in 2..={DEPTH_TICKS_MAX} ticks"));
        }
        for lots in [self.quote_lots_max, self.cross_lots_max] {
            if !(1..=LOTS_MAX).contains(&lots) {
                return Err(format!("sizes must be in 1..={LOTS_MAX} lots"));
            }
        }
        let m = self.mix;
        if m.amend_pct + m.cancel_pct + m.cross_pct > 100 || m.cross_gtc_pct > 100 {
            return Err("the mix's amend + cancel + cross percentages exceed 100".into());
        }
        for market in &self.markets {
            if market.mid <= market.tick * self.depth_ticks {
                return Err(format!("{}: depth reaches below price zero", market.symbol));
            }
        }
        Ok(())
    }
}

/// Why a session could not send.
#[derive(Debug)]
pub enum EmitError {
    Encode(ClientError),
    /// Every crossing-order slot is waiting for a report and nothing else can be sent.
    Saturated,
}

impl std::fmt::Display for EmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmitError::Encode(e) => write!(f, "encoding a request: {e}"),
            EmitError::Saturated => write!(
                f,
                "every quote slot and all {TAKERS_MAX} crossing-order slots are waiting for the server"
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct QuoteSlot {
    coid: u64,
    resting: bool,
    /// The request in flight for this slot (0: none) and its kind.
    busy: RequestId,
    busy_kind: Option<Kind>,
    price: u64,
    qty: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct TakerSlot {
    coid: u64,
    in_use: bool,
    /// Accepted and not done yet.
    open: bool,
    filled: bool,
    intended_ns: u64,
    /// The cancel in flight for its resting remainder (0: none).
    cancel: RequestId,
}

#[derive(Clone, Copy, Debug)]
struct Inflight {
    /// 0: the entry is free.
    request_id: RequestId,
    intended_ns: u64,
    kind: Kind,
    /// Quote slot index, or `TAKER_FLAG | taker index`.
    slot: u64,
}

const FREE: Inflight = Inflight { request_id: 0, intended_ns: 0, kind: Kind::Quote, slot: 0 };

/// The next request, chosen but not yet sent.
struct Plan {
    kind: Kind,
    slot: u64,
    request: ClientRequest,
}

/// One market-maker session. Lives on the load generator's runtime thread.
pub struct Maker {
    config: MakerConfig,
    rng: SplitMix64,
    quotes: Vec<QuoteSlot>,
    takers: Vec<TakerSlot>,
    next_taker: usize,
    takers_in_use: usize,
    /// Crossing GTC orders whose remainder may rest: (taker index, client order id).
    cleanup: VecDeque<(usize, u64)>,
    inflight: Vec<Inflight>,
    outstanding: usize,
    generation: u64,
}

impl Maker {
    /// A session with `seed` (each session gets its own). Allocates everything it uses.
    pub fn new(config: MakerConfig, seed: u64) -> Maker {
        assert!(config.validate().is_ok(), "{:?}", config.validate());
        let slots = config.markets.len() * config.quotes_per_market;
        Maker {
            rng: SplitMix64::new(seed),
            quotes: vec![QuoteSlot::default(); slots],
            takers: vec![TakerSlot::default(); TAKERS_MAX],
            next_taker: 0,
            takers_in_use: 0,
            cleanup: VecDeque::with_capacity(TAKERS_MAX),
            inflight: vec![FREE; INFLIGHT_MAX],
            outstanding: 0,
            generation: 0,
            config,
        }
    }

    /// Requests sent and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Quotes resting on the book (as far as the session has heard).
    #[cfg(test)]
    pub fn quotes_resting(&self) -> usize {
        self.quotes.iter().filter(|q| q.resting).count()
    }

    /// Chooses the next request, has `encode` number and batch it, and remembers it as
    /// intended to go out at `intended_ns`.
    pub fn emit(
        &mut self,
        intended_ns: u64,
        stats: &mut Stats,
        encode: impl FnOnce(&ClientRequest) -> Result<RequestId, ClientError>,
    ) -> Result<Kind, EmitError> {
        let plan = self.choose().ok_or(EmitError::Saturated)?;
        let request_id = encode(&plan.request).map_err(EmitError::Encode)?;
        assert!(request_id != 0, "request ids start at 1");
        self.commit(&plan, request_id, intended_ns, stats);
        stats.on_sent(plan.kind, intended_ns);
        Ok(plan.kind)
    }

    fn choose(&mut self) -> Option<Plan> {
        while let Some((t, coid)) = self.cleanup.pop_front() {
            let taker = self.takers[t];
            if taker.in_use && taker.coid == coid && taker.open && taker.cancel == 0 {
                let request = ClientRequest::Cancel(OrderRef::Client(coid));
                return Some(Plan { kind: Kind::Cancel, slot: TAKER_FLAG | t as u64, request });
            }
        }
        let mix = self.config.mix;
        let r = self.rng.below(100);
        let order: [Kind; 3] = if r < mix.cross_pct {
            [Kind::CrossIoc, Kind::Quote, Kind::Amend]
        } else if r < mix.cross_pct + mix.cancel_pct {
            [Kind::Cancel, Kind::Quote, Kind::CrossIoc]
        } else if r < mix.cross_pct + mix.cancel_pct + mix.amend_pct {
            [Kind::Amend, Kind::Quote, Kind::CrossIoc]
        } else {
            [Kind::Quote, Kind::Amend, Kind::CrossIoc]
        };
        order.into_iter().find_map(|kind| self.plan(kind))
    }

    fn plan(&mut self, kind: Kind) -> Option<Plan> {
        match kind {
            Kind::Quote => {
                let q = self.find_quote(|s| s.busy == 0 && !s.resting)?;
                Some(self.plan_quote(q))
            }
            Kind::Amend => {
                let q = self.find_quote(|s| s.busy == 0 && s.resting)?;
                Some(self.plan_amend(q))
            }
            Kind::Cancel => {
                let q = self.find_quote(|s| s.busy == 0 && s.resting)?;
                let request = ClientRequest::Cancel(OrderRef::Client(self.quotes[q].coid));
                Some(Plan { kind, slot: q as u64, request })
            }
            Kind::CrossIoc | Kind::CrossGtc => self.plan_cross(),
        }
    }

    /// A slot satisfying `want`, scanning from a random start.
    fn find_quote(&mut self, want: impl Fn(&QuoteSlot) -> bool) -> Option<usize> {
        let n = self.quotes.len();
        let start = self.rng.below(n as u64) as usize;
        (0..n).map(|i| (start + i) % n).find(|&q| want(&self.quotes[q]))
    }

    /// Market and side of quote slot `q`.
    fn slot_market(&self, q: usize) -> (MarketModel, Side) {
        let per = self.config.quotes_per_market;
        let side = if (q % per) % 2 == 0 { Side::Buy } else { Side::Sell };
        (self.config.markets[q / per], side)
    }

    fn price_at(market: &MarketModel, side: Side, ticks_from_mid: u64) -> u64 {
        match side {
            Side::Buy => market.mid - ticks_from_mid * market.tick,
            Side::Sell => market.mid + ticks_from_mid * market.tick,
        }
    }

    fn next_coid(&mut self, slot: u64) -> u64 {
        self.generation += 1;
        (self.generation << SLOT_BITS) | slot
    }

    fn plan_quote(&mut self, q: usize) -> Plan {
        let (market, side) = self.slot_market(q);
        let ticks = 1 + self.rng.below(self.config.depth_ticks);
        let lots = 1 + self.rng.below(self.config.quote_lots_max);
        let order = NewOrder {
            market: market.market,
            client_order_id: self.next_coid(q as u64),
            side,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            post_only: true,
            price: Self::price_at(&market, side, ticks),
            qty: lots * market.lot,
            quote_budget: 0,
            stp: StpMode::CancelTaker,
        };
        Plan { kind: Kind::Quote, slot: q as u64, request: ClientRequest::NewOrder(order) }
    }

    fn plan_amend(&mut self, q: usize) -> Plan {
        let (market, side) = self.slot_market(q);
        let slot = self.quotes[q];
        let depth = self.config.depth_ticks;
        let lots_max = self.config.quote_lots_max;
        // Two amends in three move the price (a cancel/replace), one changes the size.
        let (price, qty) = if lots_max == 1 || self.rng.below(3) < 2 {
            let ticks = slot.price.abs_diff(market.mid) / market.tick;
            let step = 1 + self.rng.below(3);
            let mut moved = if self.rng.below(2) == 0 {
                ticks.saturating_sub(step).max(1)
            } else {
                (ticks + step).min(depth)
            };
            if moved == ticks {
                moved = if ticks < depth { ticks + 1 } else { ticks - 1 };
            }
            (Self::price_at(&market, side, moved), 0)
        } else {
            let lots = slot.qty / market.lot;
            let mut new_lots = 1 + self.rng.below(lots_max);
            if new_lots == lots {
                new_lots = lots % lots_max + 1;
            }
            (0, new_lots * market.lot)
        };
        let request = ClientRequest::Amend { order: OrderRef::Client(slot.coid), price, qty };
        Plan { kind: Kind::Amend, slot: q as u64, request }
    }

    fn plan_cross(&mut self) -> Option<Plan> {
        if self.takers_in_use == TAKERS_MAX {
            return None;
        }
        let mut t = self.next_taker;
        while self.takers[t].in_use {
            t = (t + 1) % TAKERS_MAX;
        }
        self.next_taker = (t + 1) % TAKERS_MAX;
        let market = self.config.markets[self.rng.below(self.config.markets.len() as u64) as usize];
        let side = if self.rng.below(2) == 0 { Side::Buy } else { Side::Sell };
        let ticks = 1 + self.rng.below((self.config.depth_ticks / 2).max(1));
        let price = match side {
            Side::Buy => market.mid + ticks * market.tick,
            Side::Sell => market.mid - ticks * market.tick,
        };
        let gtc = self.rng.below(100) < self.config.mix.cross_gtc_pct;
        let lots = 1 + self.rng.below(self.config.cross_lots_max);
        let order = NewOrder {
            market: market.market,
            client_order_id: self.next_coid(TAKER_FLAG | t as u64),
            side,
            order_type: OrderType::Limit,
            tif: if gtc { TimeInForce::Gtc } else { TimeInForce::Ioc },
            post_only: false,
            price,
            qty: lots * market.lot,
            quote_budget: 0,
            stp: StpMode::CancelMaker,
        };
        let kind = if gtc { Kind::CrossGtc } else { Kind::CrossIoc };
        Some(Plan { kind, slot: TAKER_FLAG | t as u64, request: ClientRequest::NewOrder(order) })
    }

    fn commit(&mut self, plan: &Plan, request_id: RequestId, intended_ns: u64, stats: &mut Stats) {
        let i = request_id as usize % INFLIGHT_MAX;
        let old = self.inflight[i];
        if old.request_id != 0 {
            // The server is INFLIGHT_MAX requests behind: forget the oldest (the run
            // reports it and fails) and free its slot so the session can go on.
            stats.overwritten += 1;
            self.outstanding -= 1;
            self.release(old);
        }
        self.inflight[i] = Inflight { request_id, intended_ns, kind: plan.kind, slot: plan.slot };
        self.outstanding += 1;
        match (plan.kind, plan.request) {
            (Kind::Quote, ClientRequest::NewOrder(order)) => {
                let q = &mut self.quotes[plan.slot as usize];
                *q = QuoteSlot {
                    coid: order.client_order_id,
                    resting: false,
                    busy: request_id,
                    busy_kind: Some(Kind::Quote),
                    price: order.price,
                    qty: order.qty,
                };
            }
            (Kind::Amend | Kind::Cancel, _) if plan.slot & TAKER_FLAG == 0 => {
                let q = &mut self.quotes[plan.slot as usize];
                q.busy = request_id;
                q.busy_kind = Some(plan.kind);
            }
            (Kind::Cancel, _) => {
                self.takers[(plan.slot & !TAKER_FLAG) as usize].cancel = request_id;
            }
            (Kind::CrossIoc | Kind::CrossGtc, ClientRequest::NewOrder(order)) => {
                self.takers[(plan.slot & !TAKER_FLAG) as usize] = TakerSlot {
                    coid: order.client_order_id,
                    in_use: true,
                    open: false,
                    filled: false,
                    intended_ns,
                    cancel: 0,
                };
                self.takers_in_use += 1;
            }
            (kind, request) => unreachable!("plan {kind:?} with {request:?}"),
        }
    }

    /// Frees the slot of a request that will never be matched (forgotten in-flight entry).
    fn release(&mut self, lost: Inflight) {
        if lost.slot & TAKER_FLAG == 0 {
            let q = &mut self.quotes[lost.slot as usize];
            if q.busy == lost.request_id {
                q.busy = 0;
                q.busy_kind = None;
            }
        } else {
            let t = (lost.slot & !TAKER_FLAG) as usize;
            if lost.kind == Kind::Cancel {
                self.takers[t].cancel = 0;
            }
            self.free_taker_if_finished(t, lost.kind.is_crossing());
        }
    }

    /// The in-flight entry of `request_id`, removed.
    fn take(&mut self, request_id: RequestId) -> Option<Inflight> {
        if request_id == 0 {
            return None;
        }
        let entry = &mut self.inflight[request_id as usize % INFLIGHT_MAX];
        if entry.request_id != request_id {
            return None;
        }
        let found = *entry;
        *entry = FREE;
        self.outstanding -= 1;
        Some(found)
    }

    /// Frees taker slot `t` once nothing more can arrive for it (`force`: it never existed
    /// on the exchange).
    fn free_taker_if_finished(&mut self, t: usize, force: bool) {
        let taker = &mut self.takers[t];
        if taker.in_use && (force || (!taker.open && taker.cancel == 0)) {
            taker.in_use = false;
            taker.open = false;
            self.takers_in_use -= 1;
        }
    }

    /// The slot a client order id names, if it is this session's current order there.
    fn quote_of(&self, coid: u64) -> Option<usize> {
        let slot = coid & SLOT_MASK;
        if slot & TAKER_FLAG != 0 {
            return None;
        }
        let q = slot as usize;
        (q < self.quotes.len() && self.quotes[q].coid == coid).then_some(q)
    }

    fn taker_of(&self, coid: u64) -> Option<usize> {
        let slot = coid & SLOT_MASK;
        if slot & TAKER_FLAG == 0 {
            return None;
        }
        let t = (slot & !TAKER_FLAG) as usize;
        (t < TAKERS_MAX && self.takers[t].in_use && self.takers[t].coid == coid).then_some(t)
    }

    /// Accounts for one server message received at `recv_ns`.
    pub fn on_message(&mut self, message: &ServerMessage<'_>, recv_ns: u64, stats: &mut Stats) {
        stats.messages += 1;
        match message {
            ServerMessage::Accepted(a) => self.on_accepted(a.request_id, a.time_ns, recv_ns, stats),
            ServerMessage::Rejected(r) => {
                let Some(f) = self.take(r.request_id) else {
                    stats.unmatched += 1;
                    return;
                };
                stats.on_ack(f.kind, f.intended_ns, recv_ns, Some(r.cause));
                stats.on_split(f.intended_ns, r.time_ns, recv_ns);
                self.on_rejected(f);
            }
            ServerMessage::Amended(a) => {
                let Some(f) = self.take(a.request_id) else {
                    stats.unmatched += 1;
                    return;
                };
                stats.on_ack(f.kind, f.intended_ns, recv_ns, None);
                stats.on_split(f.intended_ns, a.time_ns, recv_ns);
                if f.kind == Kind::Amend && f.slot & TAKER_FLAG == 0 {
                    let q = &mut self.quotes[f.slot as usize];
                    q.busy = 0;
                    q.busy_kind = None;
                    q.price = a.price;
                    q.qty = a.qty;
                } else {
                    stats.unmatched += 1;
                }
            }
            ServerMessage::Done(d) => {
                stats.on_done(d.reason);
                self.on_done(d.client_order_id, d.reason, d.time_ns, recv_ns, stats);
            }
            ServerMessage::Trade(t) if t.liquidity == Liquidity::Taker => {
                stats.trades_taker += 1;
                if let Some(i) = self.taker_of(t.client_order_id) {
                    let taker = &mut self.takers[i];
                    if !taker.filled {
                        taker.filled = true;
                        stats.on_fill(taker.intended_ns, recv_ns);
                    }
                }
            }
            ServerMessage::Trade(_) => stats.trades_maker += 1,
            _ => {}
        }
    }

    fn on_accepted(
        &mut self,
        request_id: RequestId,
        time_ns: u64,
        recv_ns: u64,
        stats: &mut Stats,
    ) {
        let Some(f) = self.take(request_id) else {
            stats.unmatched += 1;
            return;
        };
        stats.on_ack(f.kind, f.intended_ns, recv_ns, None);
        stats.on_split(f.intended_ns, time_ns, recv_ns);
        match f.kind {
            Kind::Quote => {
                let q = &mut self.quotes[f.slot as usize];
                q.busy = 0;
                q.busy_kind = None;
                q.resting = true;
            }
            Kind::CrossIoc | Kind::CrossGtc => {
                let t = (f.slot & !TAKER_FLAG) as usize;
                self.takers[t].open = true;
                if f.kind == Kind::CrossGtc {
                    // Bounded: one entry per taker slot in use, at most TAKERS_MAX.
                    self.cleanup.push_back((t, self.takers[t].coid));
                }
            }
            Kind::Amend | Kind::Cancel => stats.unmatched += 1,
        }
    }

    fn on_rejected(&mut self, f: Inflight) {
        if f.slot & TAKER_FLAG == 0 {
            let q = &mut self.quotes[f.slot as usize];
            q.busy = 0;
            q.busy_kind = None;
            if f.kind == Kind::Quote {
                q.resting = false;
            }
            return;
        }
        let t = (f.slot & !TAKER_FLAG) as usize;
        if f.kind == Kind::Cancel {
            self.takers[t].cancel = 0;
            self.free_taker_if_finished(t, false);
        } else {
            self.free_taker_if_finished(t, true);
        }
    }

    fn on_done(
        &mut self,
        coid: u64,
        reason: DoneReason,
        time_ns: u64,
        recv_ns: u64,
        stats: &mut Stats,
    ) {
        if let Some(q) = self.quote_of(coid) {
            let slot = self.quotes[q];
            self.quotes[q].resting = false;
            // A cancel is answered by its Done; so is an amend down to the filled size.
            let answers = reason == DoneReason::Cancelled
                && matches!(slot.busy_kind, Some(Kind::Cancel | Kind::Amend));
            if answers {
                if let Some(f) = self.take(slot.busy) {
                    stats.on_ack(f.kind, f.intended_ns, recv_ns, None);
                    stats.on_split(f.intended_ns, time_ns, recv_ns);
                }
                self.quotes[q].busy = 0;
                self.quotes[q].busy_kind = None;
            }
        } else if let Some(t) = self.taker_of(coid) {
            self.takers[t].open = false;
            let cancel = self.takers[t].cancel;
            if cancel != 0 && reason == DoneReason::Cancelled {
                if let Some(f) = self.take(cancel) {
                    stats.on_ack(f.kind, f.intended_ns, recv_ns, None);
                    stats.on_split(f.intended_ns, time_ns, recv_ns);
                }
                self.takers[t].cancel = 0;
            }
            self.free_taker_if_finished(t, false);
        } else {
            stats.unmatched += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use bourse_engine::{CommandKind, RejectReason};
    use bourse_net::protocol::{
        AcceptedReport, AmendedReport, DoneReport, OwnTrade, RejectCause, RejectReport,
    };

    use super::*;

    fn config() -> MakerConfig {
        MakerConfig {
            markets: vec![demo_market(1).unwrap(), demo_market(2).unwrap()],
            quotes_per_market: 4,
            depth_ticks: 10,
            quote_lots_max: 5,
            cross_lots_max: 3,
            mix: Mix::default(),
        }
    }

    /// Stands in for the codec's numbering: request ids from 2 (the logon took 1).
    struct Ids(u64);

    fn emit_one(
        maker: &mut Maker,
        ids: &mut Ids,
        stats: &mut Stats,
    ) -> (Kind, ClientRequest, RequestId) {
        let mut sent = None;
        let kind = maker
            .emit(100, stats, |request| {
                ids.0 += 1;
                sent = Some(*request);
                Ok(ids.0)
            })
            .unwrap();
        (kind, sent.unwrap(), ids.0)
    }

    fn accepted(request_id: RequestId, order: &NewOrder) -> ServerMessage<'static> {
        ServerMessage::Accepted(AcceptedReport {
            request_id,
            order_id: request_id + 1000,
            client_order_id: order.client_order_id,
            market: order.market,
            side: order.side,
            order_type: order.order_type,
            tif: order.tif,
            post_only: order.post_only,
            stp: order.stp,
            price: order.price,
            qty: order.qty,
            quote_budget: 0,
            index: 1,
            time_ns: 1,
        })
    }

    fn done(coid: u64, reason: DoneReason) -> ServerMessage<'static> {
        ServerMessage::Done(DoneReport {
            order_id: 1,
            client_order_id: coid,
            market: 1,
            side: Side::Buy,
            reason,
            filled_qty: 0,
            index: 1,
            time_ns: 1,
        })
    }

    fn rejected(request_id: RequestId, reason: RejectReason) -> ServerMessage<'static> {
        ServerMessage::Rejected(RejectReport {
            request_id,
            refused_type: 0,
            cause: RejectCause::Engine { command: CommandKind::Place, reason },
            order_id: 0,
            client_order_id: 0,
            tx: 0,
            duplicate: false,
            index: 1,
            time_ns: 1,
            shortfall: None,
        })
    }

    #[test]
    fn the_first_requests_fill_empty_slots_with_post_only_quotes_inside_the_depth() {
        let mut maker = Maker::new(config(), 7);
        let mut stats = Stats::default();
        let mut ids = Ids(1);
        // With no resting quote, every choice but a crossing order falls back to a quote.
        let mut quotes = 0;
        for _ in 0..8 {
            let (kind, request, _) = emit_one(&mut maker, &mut ids, &mut stats);
            match (kind, request) {
                (Kind::Quote, ClientRequest::NewOrder(o)) => {
                    quotes += 1;
                    let m = demo_market(o.market).unwrap();
                    assert!(o.post_only && o.tif == TimeInForce::Gtc);
                    let ticks = o.price.abs_diff(m.mid) / m.tick;
                    assert!((1..=10).contains(&ticks) && o.price % m.tick == 0);
                    assert_eq!(o.side == Side::Buy, o.price < m.mid);
                    assert!(o.qty % m.lot == 0 && o.qty > 0);
                }
                (Kind::CrossIoc | Kind::CrossGtc, ClientRequest::NewOrder(o)) => {
                    assert!(!o.post_only);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(quotes >= 5, "{quotes}");
        assert_eq!(maker.outstanding(), 8);
        assert_eq!(stats.sent_all, 8);
    }

    #[test]
    fn acks_are_matched_by_request_id_and_cancels_by_their_done() {
        let mut maker = Maker::new(
            MakerConfig {
                mix: Mix { amend_pct: 0, cancel_pct: 100, cross_pct: 0, cross_gtc_pct: 0 },
                ..config()
            },
            1,
        );
        let mut stats = Stats::default();
        let mut ids = Ids(1);
        // All 8 slots get a quote (no resting order to cancel yet).
        let mut sent = Vec::new();
        for _ in 0..8 {
            let (kind, request, id) = emit_one(&mut maker, &mut ids, &mut stats);
            assert_eq!(kind, Kind::Quote);
            let ClientRequest::NewOrder(order) = request else { panic!() };
            sent.push((id, order));
        }
        // Nothing is free now: the only way out is a crossing order.
        let (kind, ..) = emit_one(&mut maker, &mut ids, &mut stats);
        assert!(kind.is_crossing());
        for (id, order) in &sent {
            maker.on_message(&accepted(*id, order), 5_000, &mut stats);
        }
        assert_eq!(maker.quotes_resting(), 8);
        assert_eq!(stats.acked, 8);
        // Intended at 100 ns, answered at 5,000 ns (within the histogram's 0.1%).
        assert!((4_895..=4_905).contains(&stats.ack.max()), "{}", stats.ack.max());
        // Now a cancel: it is answered by Done(Cancelled) of that client order id.
        let (kind, request, _) = emit_one(&mut maker, &mut ids, &mut stats);
        assert_eq!(kind, Kind::Cancel);
        let ClientRequest::Cancel(OrderRef::Client(coid)) = request else { panic!("{request:?}") };
        maker.on_message(&done(coid, DoneReason::Cancelled), 9_000, &mut stats);
        assert_eq!(stats.acked, 9);
        assert_eq!(maker.quotes_resting(), 7);
        assert_eq!(maker.outstanding(), 1, "only the crossing order is unanswered");
        assert_eq!(stats.unmatched, 0);
    }

    #[test]
    fn a_cancel_that_loses_the_race_to_a_fill_is_answered_by_its_reject() {
        let mut maker = Maker::new(
            MakerConfig {
                mix: Mix { amend_pct: 0, cancel_pct: 100, cross_pct: 0, cross_gtc_pct: 0 },
                ..config()
            },
            3,
        );
        let mut stats = Stats::default();
        let mut ids = Ids(1);
        let (_, request, id) = emit_one(&mut maker, &mut ids, &mut stats);
        let ClientRequest::NewOrder(order) = request else { panic!() };
        maker.on_message(&accepted(id, &order), 1_000, &mut stats);
        let (kind, _, cancel_id) = emit_one(&mut maker, &mut ids, &mut stats);
        assert_eq!(kind, Kind::Cancel);
        // The quote fills before the cancel reaches the engine.
        maker.on_message(&done(order.client_order_id, DoneReason::Filled), 2_000, &mut stats);
        assert_eq!(stats.acked, 1, "a fill does not answer the cancel");
        maker.on_message(&rejected(cancel_id, RejectReason::UnknownOrder), 3_000, &mut stats);
        assert_eq!(stats.acked, 2);
        assert_eq!(stats.rejected, 1);
        assert_eq!(maker.outstanding(), 0);
        assert_eq!(maker.quotes_resting(), 0);
    }

    #[test]
    fn amends_move_a_quote_on_its_own_side_and_take_the_amended_values() {
        let mut maker = Maker::new(
            MakerConfig {
                mix: Mix { amend_pct: 100, cancel_pct: 0, cross_pct: 0, cross_gtc_pct: 0 },
                ..config()
            },
            11,
        );
        let mut stats = Stats::default();
        let mut ids = Ids(1);
        let (_, request, id) = emit_one(&mut maker, &mut ids, &mut stats);
        let ClientRequest::NewOrder(order) = request else { panic!() };
        maker.on_message(&accepted(id, &order), 1_000, &mut stats);
        for round in 0..50u64 {
            let (kind, request, amend_id) = emit_one(&mut maker, &mut ids, &mut stats);
            if kind != Kind::Amend {
                // Other slots still empty get quotes; answer them to keep going.
                let ClientRequest::NewOrder(o) = request else { panic!("{request:?}") };
                maker.on_message(&accepted(amend_id, &o), 1_000, &mut stats);
                continue;
            }
            let ClientRequest::Amend { order: OrderRef::Client(coid), price, qty } = request else {
                panic!("{request:?}")
            };
            assert!(price != 0 || qty != 0);
            let q = (coid & SLOT_MASK) as usize;
            let (market, side) = maker.slot_market(q);
            let new_price = if price == 0 { maker.quotes[q].price } else { price };
            let ticks = new_price.abs_diff(market.mid) / market.tick;
            assert!((1..=10).contains(&ticks), "round {round}: {ticks} ticks");
            assert_eq!(side == Side::Buy, new_price < market.mid);
            let new_qty = if qty == 0 { maker.quotes[q].qty } else { qty };
            let amended = ServerMessage::Amended(AmendedReport {
                request_id: amend_id,
                order_id: 1,
                client_order_id: coid,
                market: market.market,
                side,
                price: new_price,
                qty: new_qty,
                leaves_qty: new_qty,
                priority_kept: false,
                index: 1,
                time_ns: 1,
            });
            maker.on_message(&amended, 2_000, &mut stats);
            assert_eq!(maker.quotes[q].price, new_price);
        }
        assert_eq!(maker.outstanding(), 0);
        assert_eq!(stats.rejected, 0);
        assert!(stats.sent[Kind::Amend.index()] > 30);
    }

    #[test]
    fn crossing_orders_record_their_first_taker_fill_and_gtc_remainders_are_cancelled() {
        let mix = Mix { amend_pct: 0, cancel_pct: 0, cross_pct: 100, cross_gtc_pct: 100 };
        let mut maker = Maker::new(MakerConfig { mix, ..config() }, 5);
        let mut stats = Stats::default();
        let mut ids = Ids(1);
        let (kind, request, id) = emit_one(&mut maker, &mut ids, &mut stats);
        assert_eq!(kind, Kind::CrossGtc);
        let ClientRequest::NewOrder(order) = request else { panic!() };
        let m = demo_market(order.market).unwrap();
        assert_eq!(order.side == Side::Buy, order.price > m.mid, "priced through the mid");
        maker.on_message(&accepted(id, &order), 10_000, &mut stats);
        let trade = |liquidity| {
            ServerMessage::Trade(OwnTrade {
                trade_id: 1,
                market: order.market,
                order_id: 1,
                client_order_id: order.client_order_id,
                side: order.side,
                liquidity,
                price: order.price,
                qty: m.lot,
                fee: 0,
                index: 1,
                time_ns: 1,
            })
        };
        maker.on_message(&trade(Liquidity::Taker), 12_000, &mut stats);
        maker.on_message(&trade(Liquidity::Taker), 13_000, &mut stats);
        assert_eq!(stats.fill.len(), 1, "only the first fill counts");
        assert!(stats.fill.max() >= 11_890 && stats.fill.max() <= 11_910);
        assert_eq!(stats.crosses_filled, 1);
        // The remainder rests: the next request cancels it.
        let (kind, request, cancel_id) = emit_one(&mut maker, &mut ids, &mut stats);
        assert_eq!(kind, Kind::Cancel);
        assert_eq!(request, ClientRequest::Cancel(OrderRef::Client(order.client_order_id)));
        maker.on_message(&done(order.client_order_id, DoneReason::Cancelled), 20_000, &mut stats);
        assert_eq!(maker.outstanding(), 0);
        assert_eq!(maker.takers_in_use, 0);
        assert_eq!(stats.acked, 2);
        let _ = cancel_id;
    }

    #[test]
    fn a_fully_filled_gtc_is_not_cancelled() {
        let mix = Mix { amend_pct: 0, cancel_pct: 0, cross_pct: 100, cross_gtc_pct: 100 };
        let mut maker = Maker::new(MakerConfig { mix, ..config() }, 9);
        let mut stats = Stats::default();
        let mut ids = Ids(1);
        let (_, request, id) = emit_one(&mut maker, &mut ids, &mut stats);
        let ClientRequest::NewOrder(order) = request else { panic!() };
        maker.on_message(&accepted(id, &order), 1, &mut stats);
        maker.on_message(&done(order.client_order_id, DoneReason::Filled), 2, &mut stats);
        let (kind, ..) = emit_one(&mut maker, &mut ids, &mut stats);
        assert_eq!(kind, Kind::CrossGtc, "no cleanup cancel for a finished order");
        assert_eq!(maker.takers_in_use, 1);
    }

    #[test]
    fn an_unanswered_request_is_forgotten_after_a_full_ring_and_counted() {
        let mix = Mix { amend_pct: 0, cancel_pct: 0, cross_pct: 100, cross_gtc_pct: 0 };
        let mut maker = Maker::new(MakerConfig { mix, ..config() }, 2);
        let mut stats = Stats::default();
        let mut ids = Ids(1);
        // Answer everything but the first request, which keeps its taker slot.
        let (_, _, first) = emit_one(&mut maker, &mut ids, &mut stats);
        for _ in 0..INFLIGHT_MAX - 1 {
            let (_, request, id) = emit_one(&mut maker, &mut ids, &mut stats);
            let ClientRequest::NewOrder(order) = request else { panic!() };
            maker.on_message(&rejected(id, RejectReason::InsufficientFunds), 1, &mut stats);
            let _ = order;
        }
        assert_eq!(stats.overwritten, 0);
        assert_eq!(maker.outstanding(), 1);
        emit_one(&mut maker, &mut ids, &mut stats);
        assert_eq!(stats.overwritten, 1, "request {first} was overwritten");
        assert_eq!(maker.outstanding(), 1);
        // A late answer to the forgotten request matches nothing.
        maker.on_message(&rejected(first, RejectReason::UnknownOrder), 1, &mut stats);
        assert_eq!(stats.unmatched, 1);
    }

    #[test]
    fn sessions_with_the_same_seed_send_the_same_requests() {
        let run = |seed| {
            let mut maker = Maker::new(config(), seed);
            let mut stats = Stats::default();
            let mut ids = Ids(1);
            (0..20).map(|_| emit_one(&mut maker, &mut ids, &mut stats).1).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn configs_are_checked() {
        assert!(config().validate().is_ok());
        assert!(MakerConfig { markets: vec![], ..config() }.validate().is_err());
        assert!(MakerConfig { quotes_per_market: 1, ..config() }.validate().is_err());
        assert!(MakerConfig { depth_ticks: 1, ..config() }.validate().is_err());
        assert!(MakerConfig { quote_lots_max: 0, ..config() }.validate().is_err());
        let mix = Mix { amend_pct: 60, cancel_pct: 30, cross_pct: 20, cross_gtc_pct: 0 };
        assert!(MakerConfig { mix, ..config() }.validate().is_err());
        assert!(demo_market(3).is_none());
    }
}
