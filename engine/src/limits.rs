//! Named bounds. Every one of them is enforced with a typed reject where it is reached,
//! and every one is part of the replicated state (a snapshot carries them), because two
//! replicas with different limits would reject differently and diverge.

use serde::{Deserialize, Serialize};

/// Prices inside the book are kept in ticks below `2^PRICE_TICKS_BITS`; the price
/// index is a radix tree of exactly that many bits.
pub const PRICE_TICKS_BITS: u32 = 42;

/// The largest accepted `Limits::supply_max`: small enough that the sum of two
/// balances of the same asset can never overflow a u64, and that any amount fits in an
/// i64 delta.
pub const SUPPLY_MAX_CEILING: u64 = 1 << 62;

/// Largest fee rate, in basis points (100%).
pub const FEE_BPS_MAX: u32 = 10_000;

/// Largest asset scale (decimal places of the minor unit).
pub const SCALE_MAX: u8 = 18;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Asset ids must be below this.
    pub assets_max: u32,
    /// Market ids must be below this.
    pub markets_max: u32,
    /// Accounts that can exist, the fee account included.
    pub accounts_max: u32,
    /// Open (resting) orders in the whole engine.
    pub orders_max: u32,
    /// Open orders of one account, over all markets.
    pub orders_per_account_max: u32,
    /// Open orders in one market, both sides.
    pub orders_per_market_max: u32,
    /// Largest price in ticks (inclusive); at most `2^PRICE_TICKS_BITS - 1`.
    pub price_ticks_max: u64,
    /// Largest order quantity in lots (inclusive).
    pub qty_lots_max: u64,
    /// Largest total supply of one asset (deposits minus completed withdrawals), in
    /// minor units. Bounds every balance and every notional.
    pub supply_max: u64,
    /// Ledger transactions remembered for idempotency (deposits, withdrawals,
    /// transfers); when full, new transactions are rejected.
    pub transactions_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            assets_max: 1024,
            markets_max: 1024,
            accounts_max: 1_000_000,
            orders_max: 4_000_000,
            orders_per_account_max: 10_000,
            orders_per_market_max: 1_000_000,
            price_ticks_max: (1 << PRICE_TICKS_BITS) - 1,
            qty_lots_max: 1 << 40,
            supply_max: SUPPLY_MAX_CEILING,
            transactions_max: 10_000_000,
        }
    }
}

impl Limits {
    /// Checks that the limits are within what the engine's data structures support.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.assets_max == 0 || self.assets_max > 1 << 16 {
            return Err("assets_max must be in 1..=65536");
        }
        if self.markets_max == 0 || self.markets_max > 1 << 16 {
            return Err("markets_max must be in 1..=65536");
        }
        if self.accounts_max == 0 || self.accounts_max >= u32::MAX / 2 {
            return Err("accounts_max must be in 1..2^31");
        }
        if self.orders_max == 0 || self.orders_max >= u32::MAX / 2 {
            return Err("orders_max must be in 1..2^31");
        }
        if self.orders_per_account_max == 0 || self.orders_per_market_max == 0 {
            return Err("per-account and per-market order limits must be positive");
        }
        if self.price_ticks_max == 0 || self.price_ticks_max >= 1 << PRICE_TICKS_BITS {
            return Err("price_ticks_max must be in 1..2^42");
        }
        if self.qty_lots_max == 0 || self.qty_lots_max > SUPPLY_MAX_CEILING {
            return Err("qty_lots_max must be in 1..=2^62");
        }
        if self.supply_max == 0 || self.supply_max > SUPPLY_MAX_CEILING {
            return Err("supply_max must be in 1..=2^62");
        }
        if self.transactions_max == 0 || self.transactions_max >= u32::MAX / 2 {
            return Err("transactions_max must be in 1..2^31");
        }
        Ok(())
    }
}
