//! Money arithmetic: the only place prices, quantities, notionals and fees are combined.
//!
//! Every function is checked: it returns `None` instead of overflowing, and callers turn
//! that into a typed reject. Products are computed in u128.
//!
//! # Rounding rule
//!
//! Notionals are exact: markets are only created when `tick_size * lot_size` is a
//! multiple of `10^base_scale`, so `notional = ticks * lots * qptl` with an integer
//! `qptl` (quote minor units per tick-lot). The only rounding in the engine is the fee:
//! `fee(notional, bps) = floor(notional * bps / 10_000)`, rounded down per fill in the
//! user's favour. Fees are moved whole from the payer to the fee account, so rounding
//! never creates or destroys value; and since `floor(a) + floor(b) <= floor(a + b)`, a
//! buy's reservation computed on its whole quantity always covers the fees of its fills.

use crate::limits::FEE_BPS_MAX;

/// Basis points in one whole.
pub const BPS_ONE: u128 = 10_000;

/// `ticks * lots * qptl` if it is at most `cap`.
#[inline]
pub fn notional(ticks: u64, lots: u64, qptl: u64, cap: u64) -> Option<u64> {
    let value = (ticks as u128).checked_mul(lots as u128)?.checked_mul(qptl as u128)?;
    if value > cap as u128 {
        return None;
    }
    Some(value as u64)
}

/// `floor(notional * bps / 10_000)`; never more than `notional` for `bps <= 10_000`.
#[inline]
pub fn fee(notional: u64, bps: u32) -> u64 {
    debug_assert!(bps <= FEE_BPS_MAX);
    let value = notional as u128 * bps as u128 / BPS_ONE;
    // bps <= 10_000, so value <= notional, which fits.
    value as u64
}

/// Quote a limit buy of `lots` at `ticks` must hold: notional plus the largest fee it
/// can be charged (at `fee_bps_max`), if that is at most `cap`.
#[inline]
pub fn reserve_buy(ticks: u64, lots: u64, qptl: u64, fee_bps_max: u32, cap: u64) -> Option<u64> {
    let value = notional(ticks, lots, qptl, cap)?;
    let total = value.checked_add(fee(value, fee_bps_max))?;
    if total > cap {
        return None;
    }
    Some(total)
}

/// Base a sell of `lots` must hold.
#[inline]
pub fn reserve_sell(lots: u64, lot_size: u64, cap: u64) -> Option<u64> {
    let value = (lots as u128).checked_mul(lot_size as u128)?;
    if value > cap as u128 {
        return None;
    }
    Some(value as u64)
}

/// Largest number of lots (at most `lots_max`) a market buy with `budget` can pay for at
/// `ticks`, fee included: the largest `l` with `N(l) + fee(N(l), bps) <= budget`.
#[inline]
pub fn affordable_lots(budget: u64, ticks: u64, qptl: u64, bps: u32, lots_max: u64) -> u64 {
    let per_lot = ticks as u128 * qptl as u128;
    if per_lot == 0 {
        return 0;
    }
    let cost = |lots: u128| -> u128 {
        let n = per_lot * lots;
        n + n * bps as u128 / BPS_ONE
    };
    // cost(l) <= l * per_lot * (1 + bps/10_000), so this guess never overshoots; the fee's
    // floor can leave room for at most a few more lots, found by stepping up.
    let mut lots = (budget as u128 * BPS_ONE) / (per_lot * (BPS_ONE + bps as u128));
    lots = lots.min(lots_max as u128);
    while lots < lots_max as u128 && cost(lots + 1) <= budget as u128 {
        lots += 1;
    }
    debug_assert!(cost(lots) <= budget as u128);
    lots as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_rounds_down() {
        assert_eq!(fee(9_999, 1), 0);
        assert_eq!(fee(10_000, 1), 1);
        assert_eq!(fee(19_999, 1), 1);
        assert_eq!(fee(u64::MAX >> 2, 10_000), u64::MAX >> 2);
    }

    #[test]
    fn notional_checks_cap() {
        assert_eq!(notional(3, 4, 5, 60), Some(60));
        assert_eq!(notional(3, 4, 5, 59), None);
        assert_eq!(notional(u64::MAX, u64::MAX, u64::MAX, u64::MAX), None);
    }

    #[test]
    fn reservation_covers_split_fills() {
        // Any split of a buy into fills at or below the limit pays at most its reservation.
        for lots in 1..40u64 {
            for split in 1..lots {
                let total = reserve_buy(7, lots, 13, 25, u64::MAX).unwrap();
                let pay = |l: u64| {
                    let n = notional(7, l, 13, u64::MAX).unwrap();
                    n + fee(n, 25)
                };
                assert!(pay(split) + pay(lots - split) <= total);
            }
        }
    }

    #[test]
    fn affordable_is_maximal() {
        for budget in [0u64, 1, 99, 100, 101, 12_345, 1_000_000] {
            for bps in [0u32, 1, 30, 10_000] {
                let l = affordable_lots(budget, 9, 11, bps, 1 << 40);
                let cost = |l: u64| {
                    let n = 9u128 * 11 * l as u128;
                    n + n * bps as u128 / 10_000
                };
                assert!(cost(l) <= budget as u128);
                assert!(cost(l + 1) > budget as u128);
            }
        }
        assert_eq!(affordable_lots(1_000_000, 1, 1, 0, 5), 5);
    }
}
