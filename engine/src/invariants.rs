//! `check_invariants`: an O(state) audit of everything the engine promises (README,
//! "Invariants"). Used by tests after every command, by the fuzz target, and on every
//! snapshot decode. Never on the hot path.

use std::collections::BTreeMap;

use crate::exchange::{Exchange, TxOutcome};
use crate::matching::{Terms, FEE_ACCOUNT_SLOT};
use crate::types::*;

macro_rules! ensure {
    ($cond:expr, $($why:tt)*) => {
        if !$cond {
            return Err(format!($($why)*));
        }
    };
}

impl Exchange {
    /// Checks conservation per asset, holds against reservations and pending
    /// withdrawals, every book's structure and ordering (never crossed), the order and
    /// account indices and every counter. Returns the first violation found.
    pub fn check_invariants(&self) -> Result<(), String> {
        ensure!(
            self.accounts.get(FEE_ACCOUNT_SLOT as usize).map(|a| a.id) == Some(self.fee_account),
            "the fee account is not the first account"
        );
        ensure!(self.account_index.len() == self.accounts.len(), "account index size mismatch");
        let mut totals = vec![0u128; self.assets.len()];
        for (slot, account) in self.accounts.iter().enumerate() {
            ensure!(
                self.account_slot(account.id) == Some(slot as u32),
                "account {} not indexed",
                account.id
            );
            for (asset, b) in account.balances.iter().enumerate() {
                if b.total() == 0 {
                    continue;
                }
                ensure!(
                    self.asset_ref(asset as AssetId).is_some(),
                    "balance in unknown asset {asset}"
                );
                totals[asset] += b.total() as u128;
            }
        }
        for (asset, total) in totals.iter().enumerate() {
            let supply = self.asset_ref(asset as AssetId).map_or(0, |a| a.supply);
            ensure!(
                *total == supply as u128,
                "asset {asset}: balances sum to {total}, supply is {supply}"
            );
            ensure!(supply <= self.limits.supply_max, "asset {asset}: supply above supply_max");
        }
        let mut held: BTreeMap<(u32, AssetId), u128> = BTreeMap::new();
        let mut per_account = vec![0u32; self.accounts.len()];
        let mut orders_seen = 0u32;
        let mut client_ids = 0usize;
        for market in self.markets.iter().flatten() {
            let terms = Terms::of(market, &self.limits);
            let mut in_market = 0u32;
            for side in [Side::Buy, Side::Sell] {
                let mut level = market.book.best(side);
                let mut levels = 0usize;
                while let Some((price, slot)) = level {
                    let l = &market.book.levels[slot as usize];
                    ensure!(
                        l.price_ticks == price,
                        "market {}: level key {price} holds price {}",
                        terms.market,
                        l.price_ticks
                    );
                    ensure!(
                        l.count > 0 && l.head != NIL,
                        "market {}: empty level {price} in the index",
                        terms.market
                    );
                    let (mut lots, mut count, mut prev, mut at) = (0u64, 0u32, NIL, l.head);
                    while at != NIL {
                        let o = &self.orders[at as usize];
                        ensure!(
                            o.level == slot && o.prev == prev,
                            "order {}: broken level links",
                            o.id
                        );
                        ensure!(
                            o.market == terms.market && o.side == side && o.price_ticks == price,
                            "order {}: wrong place",
                            o.id
                        );
                        ensure!(o.leaves_lots > 0, "order {}: resting with nothing left", o.id);
                        let need = terms.reservation(side, price, o.leaves_lots);
                        ensure!(
                            need == Some(o.reserved),
                            "order {}: reserved {} but needs {need:?}",
                            o.id,
                            o.reserved
                        );
                        ensure!(
                            self.order_index.get(&o.id) == Some(&at),
                            "order {} not indexed",
                            o.id
                        );
                        if o.client_order_id != 0 {
                            client_ids += 1;
                            let found = self.client_index.get(&(o.account, o.client_order_id));
                            ensure!(found == Some(&at), "order {}: client id not indexed", o.id);
                        }
                        *held.entry((o.account, terms.hold_asset(side))).or_default() +=
                            o.reserved as u128;
                        per_account[o.account as usize] += 1;
                        lots += o.leaves_lots;
                        count += 1;
                        prev = at;
                        at = o.next;
                    }
                    ensure!(l.tail == prev, "market {}: level {price} tail mismatch", terms.market);
                    ensure!(
                        l.lots == lots && l.count == count,
                        "market {}: level {price} totals mismatch",
                        terms.market
                    );
                    in_market += count;
                    levels += 1;
                    level = market.book.next_worse(side, price);
                }
                ensure!(
                    levels == market.book.side(side).len(),
                    "market {}: level count mismatch",
                    terms.market
                );
            }
            if let (Some((bid, _)), Some((ask, _))) =
                (market.book.best(Side::Buy), market.book.best(Side::Sell))
            {
                ensure!(
                    bid < ask,
                    "market {}: book crossed (bid {bid} >= ask {ask})",
                    terms.market
                );
            }
            ensure!(
                market.book.orders_open == in_market,
                "market {}: open order count mismatch",
                terms.market
            );
            orders_seen += in_market;
        }
        ensure!(
            orders_seen == self.orders_open,
            "open orders: counted {orders_seen}, counter {}",
            self.orders_open
        );
        ensure!(self.order_index.len() == orders_seen as usize, "order index size mismatch");
        ensure!(self.client_index.len() == client_ids, "client index size mismatch");
        self.check_account_lists(&per_account)?;
        ensure!(self.tx_index.len() == self.txs.len(), "transaction index size mismatch");
        for (at, tx) in self.txs.iter().enumerate() {
            ensure!(
                self.tx_index.get(&tx.tx) == Some(&(at as u32)),
                "transaction {} not indexed",
                tx.tx
            );
            if tx.outcome == TxOutcome::WithdrawPending {
                let slot = self
                    .account_slot(tx.account)
                    .ok_or(format!("withdrawal {} of unknown account", tx.tx))?;
                *held.entry((slot, tx.asset)).or_default() += tx.amount as u128;
            }
        }
        for (slot, account) in self.accounts.iter().enumerate() {
            for (asset, b) in account.balances.iter().enumerate() {
                let expected = held.remove(&(slot as u32, asset as AssetId)).unwrap_or(0);
                ensure!(
                    b.held as u128 == expected,
                    "account {} asset {asset}: held {} but reservations sum to {expected}",
                    account.id,
                    b.held
                );
            }
        }
        ensure!(
            held.values().all(|&v| v == 0),
            "reservations in assets an account has no balance for"
        );
        Ok(())
    }

    fn check_account_lists(&self, per_account: &[u32]) -> Result<(), String> {
        for (slot, account) in self.accounts.iter().enumerate() {
            let (mut count, mut prev, mut at, mut last_id) = (0u32, NIL, account.orders_head, 0);
            while at != NIL {
                let o = &self.orders[at as usize];
                ensure!(
                    o.account == slot as u32 && o.account_prev == prev,
                    "account {}: broken order list",
                    account.id
                );
                ensure!(o.id > last_id, "account {}: order list not in ascending id", account.id);
                last_id = o.id;
                count += 1;
                ensure!(count <= self.orders_open, "account {}: order list loops", account.id);
                prev = at;
                at = o.account_next;
            }
            ensure!(
                account.orders_tail == prev,
                "account {}: order list tail mismatch",
                account.id
            );
            ensure!(
                count == account.orders_open && count == per_account[slot],
                "account {}: open order count mismatch",
                account.id
            );
        }
        Ok(())
    }
}
