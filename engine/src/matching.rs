//! Order commands: place, amend, cancel and mass cancel, the matching loop with
//! self-trade prevention, and settlement of each fill against the holds.
//!
//! Every command is validated completely before anything changes, so a reject changes
//! nothing. After validation the arithmetic cannot fail; the `expect`s below state
//! invariants (a reservation always covers its fills) and stop the process rather than
//! corrupt balances if one were ever broken.

use crate::command::{CommandKind, PlaceOrder};
use crate::event::*;
use crate::exchange::{Exchange, Level, Market, Order, Out};
use crate::limits::Limits;
use crate::money;
use crate::types::*;

/// The fee account is always the first account created, so its slot is fixed.
pub(crate) const FEE_ACCOUNT_SLOT: u32 = 0;

/// A market's parameters, copied out so the matching loop can mutate the book freely.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Terms {
    pub(crate) market: MarketId,
    pub(crate) base: AssetId,
    pub(crate) quote: AssetId,
    pub(crate) tick_size: u64,
    pub(crate) lot_size: u64,
    pub(crate) qptl: u64,
    pub(crate) maker_bps: u32,
    pub(crate) taker_bps: u32,
    pub(crate) fee_bps_max: u32,
    pub(crate) min_notional: u64,
    pub(crate) supply_max: u64,
}

impl Terms {
    pub(crate) fn of(market: &Market, limits: &Limits) -> Terms {
        Terms {
            market: market.spec.market,
            base: market.spec.base,
            quote: market.spec.quote,
            tick_size: market.spec.tick_size,
            lot_size: market.spec.lot_size,
            qptl: market.qptl,
            maker_bps: market.spec.maker_fee_bps,
            taker_bps: market.spec.taker_fee_bps,
            fee_bps_max: market.fee_bps_max,
            min_notional: market.spec.min_notional,
            supply_max: limits.supply_max,
        }
    }

    /// The asset an order of `side` holds: quote for a buy, base for a sell.
    pub(crate) fn hold_asset(&self, side: Side) -> AssetId {
        match side {
            Side::Buy => self.quote,
            Side::Sell => self.base,
        }
    }

    /// What an open order of `side` with `leaves` lots at `ticks` must hold.
    pub(crate) fn reservation(&self, side: Side, ticks: u64, leaves: u64) -> Option<u64> {
        match side {
            Side::Buy => {
                money::reserve_buy(ticks, leaves, self.qptl, self.fee_bps_max, self.supply_max)
            }
            Side::Sell => money::reserve_sell(leaves, self.lot_size, self.supply_max),
        }
    }

    fn price_ticks(&self, price: u64, limits: &Limits) -> Result<u64, RejectReason> {
        if price % self.tick_size != 0 {
            return Err(RejectReason::PriceNotOnTick);
        }
        let ticks = price / self.tick_size;
        if ticks == 0 || ticks > limits.price_ticks_max {
            return Err(RejectReason::InvalidPrice);
        }
        Ok(ticks)
    }

    fn qty_lots(&self, qty: u64, limits: &Limits) -> Result<u64, RejectReason> {
        if qty % self.lot_size != 0 {
            return Err(RejectReason::QtyNotOnLot);
        }
        let lots = qty / self.lot_size;
        if lots == 0 || lots > limits.qty_lots_max {
            return Err(RejectReason::InvalidQty);
        }
        Ok(lots)
    }
}

/// True if a taker on `side` with `limit_ticks` trades against a maker at `maker_ticks`.
#[inline]
fn crosses(side: Side, limit_ticks: u64, maker_ticks: u64) -> bool {
    match side {
        Side::Buy => maker_ticks <= limit_ticks,
        Side::Sell => maker_ticks >= limit_ticks,
    }
}

/// An order while it executes against the book.
#[derive(Clone, Copy, Debug)]
struct Taker {
    order_id: OrderId,
    client_order_id: ClientOrderId,
    account: u32,
    side: Side,
    stp: StpMode,
    /// Limit in ticks (a market buy: u64::MAX, a market sell: 0).
    limit_ticks: u64,
    /// Open lots (a market buy: unbounded, its budget limits it).
    leaves_lots: u64,
    filled_lots: u64,
    /// Funds still held for it (a market buy: what is left of its budget).
    reserved: u64,
    /// A market buy bounded by a quote budget.
    budget: bool,
    stp_stopped: bool,
    decremented_last: bool,
    budget_exhausted: bool,
}

impl Taker {
    /// How it ends after matching: `None` means it rests (GTC with lots left).
    fn end(&self, rest_allowed: bool) -> Option<DoneReason> {
        if self.stp_stopped {
            return Some(DoneReason::SelfTradePrevented);
        }
        if self.budget {
            let filled = self.filled_lots > 0 && self.budget_exhausted;
            return Some(if filled { DoneReason::Filled } else { DoneReason::Expired });
        }
        if self.leaves_lots == 0 {
            let reason = if self.decremented_last {
                DoneReason::SelfTradePrevented
            } else {
                DoneReason::Filled
            };
            return Some(reason);
        }
        if rest_allowed {
            None
        } else {
            Some(DoneReason::Expired)
        }
    }
}

/// A place command that passed validation.
struct PlaceChecked {
    account: u32,
    terms: Terms,
    ticks: u64,
    lots: u64,
    reserve: u64,
}

fn order_reject(
    command: CommandKind,
    account: AccountId,
    order_id: OrderId,
    client_order_id: ClientOrderId,
    reason: RejectReason,
) -> EventKind {
    EventKind::Rejected(Rejected {
        command,
        account,
        order_id,
        client_order_id,
        tx: 0,
        reason,
        duplicate: false,
        shortfall: None,
    })
}

/// `event` (a reject) with what an `InsufficientFunds` reject fell short of.
fn with_shortfall(mut event: EventKind, shortfall: Option<Shortfall>) -> EventKind {
    if let EventKind::Rejected(r) = &mut event {
        assert_eq!(shortfall.is_some(), r.reason == RejectReason::InsufficientFunds);
        r.shortfall = shortfall;
    }
    event
}

fn ref_ids(order: OrderRef) -> (OrderId, ClientOrderId) {
    match order {
        OrderRef::Id(id) => (id, 0),
        OrderRef::Client(client) => (0, client),
    }
}

impl Exchange {
    // ----- place -----

    pub(crate) fn place(&mut self, p: &PlaceOrder, out: &mut Out) {
        let mut shortfall = None;
        match self.validate_place(p, &mut shortfall) {
            Err(reason) => out.push(with_shortfall(
                order_reject(CommandKind::Place, p.account, 0, p.client_order_id, reason),
                shortfall,
            )),
            Ok(checked) => self.execute_place(p, checked, out),
        }
    }

    /// Checks a new order; on `InsufficientFunds` it also sets `shortfall`.
    fn validate_place(
        &self,
        p: &PlaceOrder,
        shortfall: &mut Option<Shortfall>,
    ) -> Result<PlaceChecked, RejectReason> {
        let market = self.market_ref(p.market).ok_or(RejectReason::UnknownMarket)?;
        if market.status == MarketStatus::Halted {
            return Err(RejectReason::MarketHalted);
        }
        let account = self.account_slot(p.account).ok_or(RejectReason::UnknownAccount)?;
        let terms = Terms::of(market, &self.limits);
        let limit = p.order_type == OrderType::Limit;
        let shape_ok = match (p.order_type, p.side) {
            (OrderType::Limit, _) => {
                p.quote_budget == 0 && (!p.post_only || p.tif == TimeInForce::Gtc)
            }
            (OrderType::Market, side) => {
                let common = p.tif == TimeInForce::Ioc && p.price == 0 && !p.post_only;
                let sided = match side {
                    Side::Buy => p.qty == 0 && p.quote_budget > 0 && p.stp != StpMode::Decrement,
                    Side::Sell => p.qty > 0 && p.quote_budget == 0,
                };
                common && sided
            }
        };
        if !shape_ok {
            return Err(RejectReason::InvalidOrder);
        }
        let ticks = if limit { terms.price_ticks(p.price, &self.limits)? } else { 0 };
        let market_buy = !limit && p.side == Side::Buy;
        let lots = if market_buy { 0 } else { terms.qty_lots(p.qty, &self.limits)? };
        if market_buy && p.quote_budget > self.limits.supply_max {
            return Err(RejectReason::InvalidAmount);
        }
        let reserve = if limit {
            let notional = money::notional(ticks, lots, terms.qptl, terms.supply_max)
                .ok_or(RejectReason::NotionalTooLarge)?;
            let reserve =
                terms.reservation(p.side, ticks, lots).ok_or(RejectReason::NotionalTooLarge)?;
            if notional < terms.min_notional {
                return Err(RejectReason::BelowMinNotional);
            }
            reserve
        } else if market_buy {
            if p.quote_budget < terms.min_notional {
                return Err(RejectReason::BelowMinNotional);
            }
            p.quote_budget
        } else {
            terms.reservation(Side::Sell, 0, lots).ok_or(RejectReason::NotionalTooLarge)?
        };
        if p.client_order_id != 0 && self.client_index.contains_key(&(account, p.client_order_id)) {
            return Err(RejectReason::DuplicateClientOrderId);
        }
        if limit && p.tif == TimeInForce::Gtc {
            if self.accounts[account as usize].orders_open >= self.limits.orders_per_account_max {
                return Err(RejectReason::OrdersPerAccountLimit);
            }
            if market.book.orders_open >= self.limits.orders_per_market_max {
                return Err(RejectReason::OrdersPerMarketLimit);
            }
            if self.orders_open >= self.limits.orders_max {
                return Err(RejectReason::OrdersLimit);
            }
        }
        *shortfall = self.shortfall(account, terms.hold_asset(p.side), reserve);
        if shortfall.is_some() {
            return Err(RejectReason::InsufficientFunds);
        }
        if p.post_only {
            if let Some((best, _)) = market.book.best(p.side.opposite()) {
                if crosses(p.side, ticks, best) {
                    return Err(RejectReason::PostOnlyWouldTake);
                }
            }
        }
        Ok(PlaceChecked { account, terms, ticks, lots, reserve })
    }

    fn execute_place(&mut self, p: &PlaceOrder, c: PlaceChecked, out: &mut Out) {
        let order_id = self.next_order_id;
        self.next_order_id += 1;
        out.push(EventKind::Accepted(Accepted {
            order_id,
            client_order_id: p.client_order_id,
            account: p.account,
            market: p.market,
            side: p.side,
            order_type: p.order_type,
            tif: p.tif,
            post_only: p.post_only,
            stp: p.stp,
            price: p.price,
            qty: p.qty,
            quote_budget: p.quote_budget,
        }));
        let market_order = p.order_type == OrderType::Market;
        let mut taker = Taker {
            order_id,
            client_order_id: p.client_order_id,
            account: c.account,
            side: p.side,
            stp: p.stp,
            limit_ticks: match (market_order, p.side) {
                (false, _) => c.ticks,
                (true, Side::Buy) => u64::MAX,
                (true, Side::Sell) => 0,
            },
            leaves_lots: if market_order && p.side == Side::Buy { u64::MAX } else { c.lots },
            filled_lots: 0,
            reserved: 0,
            budget: market_order && p.side == Side::Buy,
            stp_stopped: false,
            decremented_last: false,
            budget_exhausted: false,
        };
        if p.tif == TimeInForce::Fok && !self.fok_fillable(&c.terms, &taker) {
            // Killed before anything was held or touched.
            self.finish_unrested(&c.terms, &taker, DoneReason::Expired, out);
            return;
        }
        let hold = c.reserve as i64;
        let hold_asset = c.terms.hold_asset(p.side);
        self.change_balance(
            c.account,
            hold_asset,
            -hold,
            hold,
            BalanceReason::OrderHold(order_id),
            out,
        );
        taker.reserved = c.reserve;
        self.match_taker(&c.terms, &mut taker, out);
        let rest_allowed = !market_order && p.tif == TimeInForce::Gtc;
        match taker.end(rest_allowed) {
            Some(reason) => self.finish_unrested(&c.terms, &taker, reason, out),
            None => {
                let slot = self.alloc_order(Order {
                    id: order_id,
                    client_order_id: p.client_order_id,
                    price_ticks: c.ticks,
                    leaves_lots: taker.leaves_lots,
                    filled_lots: taker.filled_lots,
                    reserved: taker.reserved,
                    account: c.account,
                    market: p.market,
                    level: NIL,
                    prev: NIL,
                    next: NIL,
                    account_prev: NIL,
                    account_next: NIL,
                    side: p.side,
                    stp: p.stp,
                    post_only: p.post_only,
                });
                self.index_order(slot);
                self.rest(&c.terms, slot, out);
            }
        }
    }

    /// Whether a FOK taker can fill completely now (README, "STP"): counts other
    /// accounts' lots in matching order within the limit; an own order ends the count
    /// unless the taker's mode is CancelMaker, which skips it.
    fn fok_fillable(&self, terms: &Terms, t: &Taker) -> bool {
        let market = self.market_ref(terms.market).expect("market");
        let maker_side = t.side.opposite();
        let mut need = t.leaves_lots;
        let mut level = market.book.best(maker_side);
        while let Some((price, slot)) = level {
            if !crosses(t.side, t.limit_ticks, price) {
                return false;
            }
            let mut at = market.book.levels[slot as usize].head;
            while at != NIL {
                let o = &self.orders[at as usize];
                if o.account == t.account {
                    if t.stp != StpMode::CancelMaker {
                        return false;
                    }
                } else if o.leaves_lots >= need {
                    return true;
                } else {
                    need -= o.leaves_lots;
                }
                at = o.next;
            }
            level = market.book.next_worse(maker_side, price);
        }
        false
    }

    // ----- matching -----

    fn match_taker(&mut self, terms: &Terms, t: &mut Taker, out: &mut Out) {
        let maker_side = t.side.opposite();
        while t.leaves_lots > 0 {
            let book = &self.markets[terms.market as usize].as_ref().expect("market").book;
            let Some((price_ticks, level_slot)) = book.best(maker_side) else { break };
            if !crosses(t.side, t.limit_ticks, price_ticks) {
                break;
            }
            let maker_slot = book.levels[level_slot as usize].head;
            let maker = self.orders[maker_slot as usize];
            if maker.account == t.account {
                match t.stp {
                    StpMode::CancelTaker => {
                        t.stp_stopped = true;
                        break;
                    }
                    StpMode::CancelMaker => {
                        self.remove_resting(terms, maker_slot, DoneReason::SelfTradePrevented, out);
                        t.decremented_last = false;
                    }
                    StpMode::CancelBoth => {
                        self.remove_resting(terms, maker_slot, DoneReason::SelfTradePrevented, out);
                        t.stp_stopped = true;
                        break;
                    }
                    StpMode::Decrement => {
                        let lots = t.leaves_lots.min(maker.leaves_lots);
                        t.leaves_lots -= lots;
                        t.decremented_last = true;
                        if lots == maker.leaves_lots {
                            self.remove_resting(
                                terms,
                                maker_slot,
                                DoneReason::SelfTradePrevented,
                                out,
                            );
                        } else {
                            self.reduce_resting(terms, maker_slot, lots, out);
                        }
                    }
                }
                continue;
            }
            let mut lots = t.leaves_lots.min(maker.leaves_lots);
            if t.budget {
                lots = money::affordable_lots(
                    t.reserved,
                    price_ticks,
                    terms.qptl,
                    terms.taker_bps,
                    lots,
                );
                if lots == 0 {
                    t.budget_exhausted = true;
                    break;
                }
            }
            self.fill(terms, t, maker_slot, price_ticks, lots, out);
            t.decremented_last = false;
        }
    }

    /// Executes one fill of `lots` between taker `t` and the maker at `maker_slot`, at
    /// the maker's price, and settles it.
    fn fill(
        &mut self,
        terms: &Terms,
        t: &mut Taker,
        maker_slot: u32,
        price_ticks: u64,
        lots: u64,
        out: &mut Out,
    ) {
        let maker = self.orders[maker_slot as usize];
        debug_assert_eq!(maker.price_ticks, price_ticks);
        let notional = money::notional(price_ticks, lots, terms.qptl, terms.supply_max)
            .expect("a fill's notional is within a reservation");
        let taker_fee = money::fee(notional, terms.taker_bps);
        let maker_fee = money::fee(notional, terms.maker_bps);
        let base_qty = lots * terms.lot_size;
        let trade_id = self.next_trade_id;
        self.next_trade_id += 1;
        out.push(EventKind::Trade(Trade {
            trade_id,
            market: terms.market,
            price: price_ticks * terms.tick_size,
            qty: base_qty,
            taker_side: t.side,
            maker_order_id: maker.id,
            taker_order_id: t.order_id,
            maker_client_order_id: maker.client_order_id,
            taker_client_order_id: t.client_order_id,
            maker_account: self.accounts[maker.account as usize].id,
            taker_account: self.accounts[t.account as usize].id,
            maker_fee,
            taker_fee,
        }));
        let reason = BalanceReason::Trade(trade_id);
        // Taker side: its fill is paid out of its own reservation.
        match t.side {
            Side::Buy => {
                let cost = notional + taker_fee;
                t.reserved =
                    t.reserved.checked_sub(cost).expect("taker reservation covers its fill");
                self.change_balance(t.account, terms.quote, 0, -(cost as i64), reason, out);
                self.change_balance(t.account, terms.base, base_qty as i64, 0, reason, out);
            }
            Side::Sell => {
                t.reserved =
                    t.reserved.checked_sub(base_qty).expect("taker reservation covers its fill");
                self.change_balance(t.account, terms.base, 0, -(base_qty as i64), reason, out);
                self.change_balance(
                    t.account,
                    terms.quote,
                    (notional - taker_fee) as i64,
                    0,
                    reason,
                    out,
                );
            }
        }
        if !t.budget {
            t.leaves_lots -= lots;
        }
        t.filled_lots += lots;
        // Maker side: its reservation shrinks to exactly what its remainder needs.
        let maker_leaves = maker.leaves_lots - lots;
        let reserved = match maker.side {
            Side::Sell => {
                self.change_balance(maker.account, terms.base, 0, -(base_qty as i64), reason, out);
                self.change_balance(
                    maker.account,
                    terms.quote,
                    (notional - maker_fee) as i64,
                    0,
                    reason,
                    out,
                );
                maker.reserved.checked_sub(base_qty).expect("maker reservation covers its fill")
            }
            Side::Buy => {
                let cost = notional + maker_fee;
                let need = terms
                    .reservation(Side::Buy, price_ticks, maker_leaves)
                    .expect("a remainder's reservation fits");
                let release = maker
                    .reserved
                    .checked_sub(cost)
                    .and_then(|left| left.checked_sub(need))
                    .expect("maker reservation covers its fill");
                self.change_balance(
                    maker.account,
                    terms.quote,
                    release as i64,
                    -((cost + release) as i64),
                    reason,
                    out,
                );
                self.change_balance(maker.account, terms.base, base_qty as i64, 0, reason, out);
                need
            }
        };
        let fees = taker_fee + maker_fee;
        if fees > 0 {
            self.change_balance(
                FEE_ACCOUNT_SLOT,
                terms.quote,
                fees as i64,
                0,
                BalanceReason::Fee(trade_id),
                out,
            );
        }
        let m = &mut self.orders[maker_slot as usize];
        m.leaves_lots = maker_leaves;
        m.filled_lots += lots;
        m.reserved = reserved;
        let level = self.level_mut(terms.market, maker.level);
        level.lots -= lots;
        if maker_leaves == 0 {
            self.remove_resting(terms, maker_slot, DoneReason::Filled, out);
        } else {
            let update = self.level_update(terms, maker.side, maker.level);
            out.push(EventKind::Level(update));
        }
    }

    /// Takes `lots` off a resting order without a trade (STP decrement, amend down),
    /// releasing what its smaller remainder no longer needs. It keeps its place.
    fn reduce_resting(&mut self, terms: &Terms, slot: u32, lots: u64, out: &mut Out) {
        let o = self.orders[slot as usize];
        assert!(lots > 0 && lots < o.leaves_lots);
        let leaves = o.leaves_lots - lots;
        let need =
            terms.reservation(o.side, o.price_ticks, leaves).expect("a smaller reservation fits");
        let release = o.reserved.checked_sub(need).expect("reservation covers the remainder");
        if release > 0 {
            let asset = terms.hold_asset(o.side);
            self.change_balance(
                o.account,
                asset,
                release as i64,
                -(release as i64),
                BalanceReason::OrderRelease(o.id),
                out,
            );
        }
        let order = &mut self.orders[slot as usize];
        order.leaves_lots = leaves;
        order.reserved = need;
        self.level_mut(terms.market, o.level).lots -= lots;
        let update = self.level_update(terms, o.side, o.level);
        out.push(EventKind::Level(update));
    }

    // ----- resting, removing -----

    /// Puts an indexed, off-book order at the back of its level, trimming a buy's
    /// reservation to what its remainder needs at its limit.
    fn rest(&mut self, terms: &Terms, slot: u32, out: &mut Out) {
        let o = self.orders[slot as usize];
        let need = terms
            .reservation(o.side, o.price_ticks, o.leaves_lots)
            .expect("a remainder's reservation fits");
        let release =
            o.reserved.checked_sub(need).expect("reservation covers the resting remainder");
        if release > 0 {
            let asset = terms.hold_asset(o.side);
            self.change_balance(
                o.account,
                asset,
                release as i64,
                -(release as i64),
                BalanceReason::OrderRelease(o.id),
                out,
            );
            self.orders[slot as usize].reserved = need;
        }
        let update = self.link_to_level(terms, slot);
        out.push(EventKind::Level(update));
    }

    /// Removes a resting order: off its level, out of every index, its reservation
    /// released, `Done` emitted.
    fn remove_resting(&mut self, terms: &Terms, slot: u32, reason: DoneReason, out: &mut Out) {
        let update = self.unlink_from_level(terms, slot);
        self.retire(terms, slot, reason, out);
        out.push(EventKind::Level(update));
    }

    /// Ends an indexed order that is not on a level: unindexes it, releases what it
    /// holds, emits `Done` and frees its slot.
    fn retire(&mut self, terms: &Terms, slot: u32, reason: DoneReason, out: &mut Out) {
        let o = self.orders[slot as usize];
        debug_assert_eq!(o.level, NIL);
        self.unindex_order(slot);
        let taker_like = Taker {
            order_id: o.id,
            client_order_id: o.client_order_id,
            account: o.account,
            side: o.side,
            stp: o.stp,
            limit_ticks: o.price_ticks,
            leaves_lots: o.leaves_lots,
            filled_lots: o.filled_lots,
            reserved: o.reserved,
            budget: false,
            stp_stopped: false,
            decremented_last: false,
            budget_exhausted: false,
        };
        self.finish_unrested(terms, &taker_like, reason, out);
        self.free_order(slot);
    }

    /// Releases what a finished order still holds and emits its `Done`.
    fn finish_unrested(&mut self, terms: &Terms, t: &Taker, reason: DoneReason, out: &mut Out) {
        if t.reserved > 0 {
            let asset = terms.hold_asset(t.side);
            let amount = t.reserved as i64;
            self.change_balance(
                t.account,
                asset,
                amount,
                -amount,
                BalanceReason::OrderRelease(t.order_id),
                out,
            );
        }
        out.push(EventKind::Done(Done {
            order_id: t.order_id,
            client_order_id: t.client_order_id,
            account: self.accounts[t.account as usize].id,
            market: terms.market,
            side: t.side,
            reason,
            filled_qty: t.filled_lots * terms.lot_size,
        }));
    }

    // ----- cancel, mass cancel -----

    /// The open order `order` of the account at `account`, if it is theirs.
    fn find_order(&self, account: u32, order: OrderRef) -> Option<u32> {
        let slot = match order {
            OrderRef::Id(id) => *self.order_index.get(&id)?,
            OrderRef::Client(0) => return None,
            OrderRef::Client(client) => *self.client_index.get(&(account, client))?,
        };
        (self.orders[slot as usize].account == account).then_some(slot)
    }

    pub(crate) fn cancel(&mut self, account: AccountId, order: OrderRef, out: &mut Out) {
        let (order_id, client_order_id) = ref_ids(order);
        let found = self
            .account_slot(account)
            .ok_or(RejectReason::UnknownAccount)
            .and_then(|slot| self.find_order(slot, order).ok_or(RejectReason::UnknownOrder));
        match found {
            Err(reason) => out.push(order_reject(
                CommandKind::Cancel,
                account,
                order_id,
                client_order_id,
                reason,
            )),
            Ok(slot) => {
                let terms = self.terms_of(slot);
                self.remove_resting(&terms, slot, DoneReason::Cancelled, out);
            }
        }
    }

    pub(crate) fn mass_cancel(
        &mut self,
        account: AccountId,
        market: Option<MarketId>,
        out: &mut Out,
    ) {
        let Some(slot) = self.account_slot(account) else {
            out.push(order_reject(
                CommandKind::MassCancel,
                account,
                0,
                0,
                RejectReason::UnknownAccount,
            ));
            return;
        };
        if let Some(m) = market {
            if self.market_ref(m).is_none() {
                out.push(order_reject(
                    CommandKind::MassCancel,
                    account,
                    0,
                    0,
                    RejectReason::UnknownMarket,
                ));
                return;
            }
        }
        let mut count = 0u32;
        let mut at = self.accounts[slot as usize].orders_head;
        while at != NIL {
            let next = self.orders[at as usize].account_next;
            if market.is_none_or(|m| self.orders[at as usize].market == m) {
                let terms = self.terms_of(at);
                self.remove_resting(&terms, at, DoneReason::Cancelled, out);
                count += 1;
            }
            at = next;
        }
        out.push(EventKind::MassCancelled { account, market, count });
    }

    // ----- amend -----

    pub(crate) fn amend(
        &mut self,
        account: AccountId,
        order: OrderRef,
        price: u64,
        qty: u64,
        out: &mut Out,
    ) {
        let (order_id, client_order_id) = ref_ids(order);
        let reject =
            |reason| order_reject(CommandKind::Amend, account, order_id, client_order_id, reason);
        let found = self
            .account_slot(account)
            .ok_or(RejectReason::UnknownAccount)
            .and_then(|slot| self.find_order(slot, order).ok_or(RejectReason::UnknownOrder));
        let slot = match found {
            Err(reason) => return out.push(reject(reason)),
            Ok(slot) => slot,
        };
        let o = self.orders[slot as usize];
        let reject =
            |reason| order_reject(CommandKind::Amend, account, o.id, o.client_order_id, reason);
        let terms = self.terms_of(slot);
        let mut shortfall = None;
        match self.validate_amend(&terms, &o, price, qty, &mut shortfall) {
            Err(reason) => out.push(with_shortfall(reject(reason), shortfall)),
            Ok(AmendPlan::Cancel) => self.remove_resting(&terms, slot, DoneReason::Cancelled, out),
            Ok(AmendPlan::Change { ticks, leaves, reserve }) => {
                self.execute_amend(&terms, slot, ticks, leaves, reserve, out)
            }
        }
    }

    fn validate_amend(
        &self,
        terms: &Terms,
        o: &Order,
        price: u64,
        qty: u64,
        shortfall: &mut Option<Shortfall>,
    ) -> Result<AmendPlan, RejectReason> {
        let market = self.market_ref(o.market).expect("open order in a missing market");
        if market.status == MarketStatus::Halted {
            return Err(RejectReason::MarketHalted);
        }
        if price == 0 && qty == 0 {
            return Err(RejectReason::AmendNoChange);
        }
        let ticks =
            if price == 0 { o.price_ticks } else { terms.price_ticks(price, &self.limits)? };
        let total_now = o.leaves_lots + o.filled_lots;
        let total = if qty == 0 { total_now } else { terms.qty_lots(qty, &self.limits)? };
        if ticks == o.price_ticks && total == total_now {
            return Err(RejectReason::AmendNoChange);
        }
        if total <= o.filled_lots {
            return Ok(AmendPlan::Cancel);
        }
        let leaves = total - o.filled_lots;
        let notional = money::notional(ticks, total, terms.qptl, terms.supply_max)
            .ok_or(RejectReason::NotionalTooLarge)?;
        let reserve =
            terms.reservation(o.side, ticks, leaves).ok_or(RejectReason::NotionalTooLarge)?;
        if notional < terms.min_notional {
            return Err(RejectReason::BelowMinNotional);
        }
        if o.post_only {
            if let Some((best, _)) = market.book.best(o.side.opposite()) {
                if crosses(o.side, ticks, best) {
                    return Err(RejectReason::PostOnlyWouldTake);
                }
            }
        }
        if reserve > o.reserved {
            *shortfall = self.shortfall(o.account, terms.hold_asset(o.side), reserve - o.reserved);
            if shortfall.is_some() {
                return Err(RejectReason::InsufficientFunds);
            }
        }
        Ok(AmendPlan::Change { ticks, leaves, reserve })
    }

    fn execute_amend(
        &mut self,
        terms: &Terms,
        slot: u32,
        ticks: u64,
        leaves: u64,
        reserve: u64,
        out: &mut Out,
    ) {
        let o = self.orders[slot as usize];
        let in_place = ticks == o.price_ticks && leaves < o.leaves_lots;
        out.push(EventKind::Amended(Amended {
            order_id: o.id,
            client_order_id: o.client_order_id,
            account: self.accounts[o.account as usize].id,
            market: o.market,
            side: o.side,
            price: ticks * terms.tick_size,
            qty: (leaves + o.filled_lots) * terms.lot_size,
            leaves_qty: leaves * terms.lot_size,
            priority_kept: in_place,
        }));
        if in_place {
            self.reduce_resting(terms, slot, o.leaves_lots - leaves, out);
            return;
        }
        // Off the book, re-reserve, match as a taker, then rest at the back or finish.
        let update = self.unlink_from_level(terms, slot);
        let asset = terms.hold_asset(o.side);
        if reserve > o.reserved {
            let more = (reserve - o.reserved) as i64;
            self.change_balance(o.account, asset, -more, more, BalanceReason::OrderHold(o.id), out);
        } else if reserve < o.reserved {
            let less = (o.reserved - reserve) as i64;
            self.change_balance(
                o.account,
                asset,
                less,
                -less,
                BalanceReason::OrderRelease(o.id),
                out,
            );
        }
        out.push(EventKind::Level(update));
        let mut taker = Taker {
            order_id: o.id,
            client_order_id: o.client_order_id,
            account: o.account,
            side: o.side,
            stp: o.stp,
            limit_ticks: ticks,
            leaves_lots: leaves,
            filled_lots: o.filled_lots,
            reserved: reserve,
            budget: false,
            stp_stopped: false,
            decremented_last: false,
            budget_exhausted: false,
        };
        self.match_taker(terms, &mut taker, out);
        let order = &mut self.orders[slot as usize];
        order.price_ticks = ticks;
        order.leaves_lots = taker.leaves_lots;
        order.filled_lots = taker.filled_lots;
        order.reserved = taker.reserved;
        match taker.end(true) {
            None => self.rest(terms, slot, out),
            Some(reason) => self.retire(terms, slot, reason, out),
        }
    }

    // ----- slabs, lists, indices -----

    pub(crate) fn terms_of(&self, slot: u32) -> Terms {
        let market = self.orders[slot as usize].market;
        Terms::of(self.market_ref(market).expect("open order in a missing market"), &self.limits)
    }

    fn level_mut(&mut self, market: MarketId, level: u32) -> &mut Level {
        &mut self.markets[market as usize].as_mut().expect("market").book.levels[level as usize]
    }

    fn level_update(&self, terms: &Terms, side: Side, level: u32) -> LevelUpdate {
        let l = &self.markets[terms.market as usize].as_ref().expect("market").book.levels
            [level as usize];
        LevelUpdate {
            market: terms.market,
            side,
            price: l.price_ticks * terms.tick_size,
            qty: l.lots * terms.lot_size,
            orders: l.count,
        }
    }

    pub(crate) fn alloc_order(&mut self, order: Order) -> u32 {
        if self.orders_free != NIL {
            let slot = self.orders_free;
            self.orders_free = self.orders[slot as usize].next;
            self.orders[slot as usize] = order;
            slot
        } else {
            self.orders.push(order);
            (self.orders.len() - 1) as u32
        }
    }

    fn free_order(&mut self, slot: u32) {
        let o = &mut self.orders[slot as usize];
        o.id = 0;
        o.level = NIL;
        o.next = self.orders_free;
        self.orders_free = slot;
    }

    /// Adds a new open order to its account's list (at the tail: order ids only grow),
    /// the id indices and the open-order counters.
    pub(crate) fn index_order(&mut self, slot: u32) {
        let o = self.orders[slot as usize];
        let account = &mut self.accounts[o.account as usize];
        let tail = account.orders_tail;
        account.orders_tail = slot;
        if tail == NIL {
            account.orders_head = slot;
        } else {
            debug_assert!(self.orders[tail as usize].id < o.id);
            self.orders[tail as usize].account_next = slot;
        }
        let order = &mut self.orders[slot as usize];
        order.account_prev = tail;
        order.account_next = NIL;
        self.accounts[o.account as usize].orders_open += 1;
        self.markets[o.market as usize].as_mut().expect("market").book.orders_open += 1;
        self.orders_open += 1;
        let previous = self.order_index.insert(o.id, slot);
        assert!(previous.is_none(), "order id indexed twice");
        if o.client_order_id != 0 {
            let previous = self.client_index.insert((o.account, o.client_order_id), slot);
            assert!(previous.is_none(), "client order id indexed twice");
        }
    }

    fn unindex_order(&mut self, slot: u32) {
        let o = self.orders[slot as usize];
        if o.account_prev == NIL {
            self.accounts[o.account as usize].orders_head = o.account_next;
        } else {
            self.orders[o.account_prev as usize].account_next = o.account_next;
        }
        if o.account_next == NIL {
            self.accounts[o.account as usize].orders_tail = o.account_prev;
        } else {
            self.orders[o.account_next as usize].account_prev = o.account_prev;
        }
        self.accounts[o.account as usize].orders_open -= 1;
        self.markets[o.market as usize].as_mut().expect("market").book.orders_open -= 1;
        self.orders_open -= 1;
        let removed = self.order_index.remove(&o.id);
        assert_eq!(removed, Some(slot));
        if o.client_order_id != 0 {
            let removed = self.client_index.remove(&(o.account, o.client_order_id));
            assert_eq!(removed, Some(slot));
        }
    }

    /// Appends an order at the tail of the level for its price (creating the level).
    pub(crate) fn link_to_level(&mut self, terms: &Terms, slot: u32) -> LevelUpdate {
        let o = self.orders[slot as usize];
        debug_assert_eq!(o.level, NIL);
        let book = &mut self.markets[terms.market as usize].as_mut().expect("market").book;
        let level_slot = book.level_for(o.side, o.price_ticks);
        let level = &mut book.levels[level_slot as usize];
        let tail = level.tail;
        level.tail = slot;
        if tail == NIL {
            level.head = slot;
        }
        level.lots += o.leaves_lots;
        level.count += 1;
        if tail != NIL {
            self.orders[tail as usize].next = slot;
        }
        let order = &mut self.orders[slot as usize];
        order.level = level_slot;
        order.prev = tail;
        order.next = NIL;
        self.level_update(terms, o.side, level_slot)
    }

    /// Takes an order off its level (dropping the level if it empties).
    fn unlink_from_level(&mut self, terms: &Terms, slot: u32) -> LevelUpdate {
        let o = self.orders[slot as usize];
        assert!(o.level != NIL, "order is not on a level");
        if o.prev != NIL {
            self.orders[o.prev as usize].next = o.next;
        }
        if o.next != NIL {
            self.orders[o.next as usize].prev = o.prev;
        }
        let book = &mut self.markets[terms.market as usize].as_mut().expect("market").book;
        let level = &mut book.levels[o.level as usize];
        if level.head == slot {
            level.head = o.next;
        }
        if level.tail == slot {
            level.tail = o.prev;
        }
        level.lots -= o.leaves_lots;
        level.count -= 1;
        let update = LevelUpdate {
            market: terms.market,
            side: o.side,
            price: level.price_ticks * terms.tick_size,
            qty: level.lots * terms.lot_size,
            orders: level.count,
        };
        if level.count == 0 {
            book.drop_level(o.side, o.level);
        }
        let order = &mut self.orders[slot as usize];
        order.level = NIL;
        order.prev = NIL;
        order.next = NIL;
        update
    }
}

enum AmendPlan {
    /// The new total is at or below what filled: the order is cancelled.
    Cancel,
    Change {
        ticks: u64,
        leaves: u64,
        reserve: u64,
    },
}
