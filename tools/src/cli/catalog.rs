//! Reference data as the CLI uses it: assets and markets looked up by symbol or id, and
//! decimal text converted to and from integer minor units exactly
//! (`bourse_engine::decimal`; too many decimals is an error, never a rounding).

use bourse_engine::decimal::{self, ParseError};
use bourse_engine::{AssetId, MarketId, MarketStatus};
use bourse_net::protocol::{AssetInfo, MarketInfo};

use super::CliError;

/// Every asset and market the exchange reported (`Reference`).
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub assets: Vec<AssetInfo>,
    pub markets: Vec<MarketInfo>,
    /// The exchange has more than one reply holds; lookups of the rest fail.
    pub truncated: bool,
}

/// How to show and parse amounts of one asset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Units {
    pub asset: AssetId,
    pub scale: u8,
    /// The symbol, or `#id` for an asset the catalog does not know.
    pub symbol: String,
}

/// A market with its two assets resolved.
#[derive(Clone, Debug)]
pub struct Market {
    pub info: MarketInfo,
    pub base: Units,
    pub quote: Units,
}

impl Catalog {
    /// Units of `asset`; an asset missing from the catalog shows as raw minor units.
    pub fn units(&self, asset: AssetId) -> Units {
        match self.assets.iter().find(|a| a.asset == asset) {
            Some(a) => Units { asset, scale: a.scale, symbol: a.symbol.as_str().to_string() },
            None => Units { asset, scale: 0, symbol: format!("#{asset}") },
        }
    }

    /// The market with id `market`, if the catalog has it.
    pub fn market(&self, market: MarketId) -> Option<Market> {
        let info = *self.markets.iter().find(|m| m.spec.market == market)?;
        Some(Market { info, base: self.units(info.spec.base), quote: self.units(info.spec.quote) })
    }

    /// The market's symbol, or `#id` when unknown.
    pub fn market_name(&self, market: MarketId) -> String {
        match self.market(market) {
            Some(m) => m.info.spec.symbol.as_str().to_string(),
            None => format!("#{market}"),
        }
    }

    /// A market named by symbol (any case) or by numeric id.
    pub fn find_market(&self, text: &str) -> Result<Market, CliError> {
        let found = self
            .markets
            .iter()
            .find(|m| m.spec.symbol.as_str().eq_ignore_ascii_case(text))
            .or_else(|| {
                let id: MarketId = text.parse().ok()?;
                self.markets.iter().find(|m| m.spec.market == id)
            });
        match found {
            Some(info) => Ok(self.market(info.spec.market).expect("found above")),
            None => {
                let known: Vec<&str> =
                    self.markets.iter().map(|m| m.spec.symbol.as_str()).collect();
                Err(CliError::Input(format!(
                    "no market {text:?} on this exchange (markets: {})",
                    list_or_none(&known)
                )))
            }
        }
    }

    /// An asset named by symbol (any case) or by numeric id.
    pub fn find_asset(&self, text: &str) -> Result<Units, CliError> {
        let found =
            self.assets.iter().find(|a| a.symbol.as_str().eq_ignore_ascii_case(text)).or_else(
                || {
                    let id: AssetId = text.parse().ok()?;
                    self.assets.iter().find(|a| a.asset == id)
                },
            );
        match found {
            Some(a) => Ok(self.units(a.asset)),
            None => {
                let known: Vec<&str> = self.assets.iter().map(|a| a.symbol.as_str()).collect();
                Err(CliError::Input(format!(
                    "no asset {text:?} on this exchange (assets: {})",
                    list_or_none(&known)
                )))
            }
        }
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

impl Units {
    /// Parses a decimal amount of this asset exactly; `what` names it in errors.
    pub fn parse(&self, what: &str, text: &str) -> Result<u64, CliError> {
        decimal::parse(text, self.scale).map_err(|e| {
            CliError::Input(match e {
                ParseError::TooManyDecimals { .. } => format!(
                    "{what} {text:?} has more than {} decimal places ({} is counted in units of \
                     {}); nothing was sent",
                    self.scale,
                    self.symbol,
                    one_minor_unit(self.scale),
                ),
                ParseError::Empty => format!("{what} is empty"),
                ParseError::NotANumber(_) => {
                    format!("{what} {text:?} is not a decimal number (write it like 0.25 or 1500)")
                }
                ParseError::TooLarge(_) => format!("{what} {text:?} is too large"),
            })
        })
    }

    /// `value` minor units without trailing zeros: "0.5".
    pub fn amount(&self, value: u64) -> String {
        decimal::format_trim(value, self.scale, 0)
    }

    /// `value` minor units with the symbol: "0.5 BTC".
    pub fn show(&self, value: u64) -> String {
        format!("{} {}", self.amount(value), self.symbol)
    }

    /// A signed change: "+0.5 BTC", "-12.25 USDT".
    pub fn show_delta(&self, delta: i64) -> String {
        let sign = if delta < 0 { "-" } else { "+" };
        format!("{sign}{}", self.show(delta.unsigned_abs()))
    }
}

/// "0.00000001" for scale 8, "1" for scale 0.
fn one_minor_unit(scale: u8) -> String {
    decimal::format(1, scale)
}

/// Decimal places of `step` minor units at `scale`: 10_000 at scale 6 is 0.01, so 2.
pub fn step_decimals(step: u64, scale: u8) -> usize {
    if step == 0 {
        return scale as usize;
    }
    let mut zeros = 0usize;
    let mut rest = step;
    while rest % 10 == 0 && zeros < scale as usize {
        rest /= 10;
        zeros += 1;
    }
    scale as usize - zeros
}

impl Market {
    pub fn symbol(&self) -> &str {
        self.info.spec.symbol.as_str()
    }

    pub fn id(&self) -> MarketId {
        self.info.spec.market
    }

    /// Decimals a price of this market shows (those of its tick).
    pub fn price_decimals(&self) -> usize {
        step_decimals(self.info.spec.tick_size, self.quote.scale)
    }

    /// Decimals a quantity of this market shows in tables (those of its lot).
    pub fn qty_decimals(&self) -> usize {
        step_decimals(self.info.spec.lot_size, self.base.scale)
    }

    /// A price (quote minor units per whole base unit) is parsed at the quote's scale.
    pub fn parse_price(&self, text: &str) -> Result<u64, CliError> {
        self.quote.parse("price", text)
    }

    /// A quantity is parsed at the base's scale.
    pub fn parse_qty(&self, text: &str) -> Result<u64, CliError> {
        self.base.parse("quantity", text)
    }

    /// "50000.00" (the tick's decimals at least).
    pub fn price_number(&self, price: u64) -> String {
        decimal::format_trim(price, self.quote.scale, self.price_decimals())
    }

    /// "50000.00 USDT".
    pub fn price(&self, price: u64) -> String {
        format!("{} {}", self.price_number(price), self.quote.symbol)
    }

    /// "0.5 BTC".
    pub fn qty(&self, qty: u64) -> String {
        self.base.show(qty)
    }

    /// "0.5000" (the lot's decimals, for columns).
    pub fn qty_number(&self, qty: u64) -> String {
        decimal::format_trim(qty, self.base.scale, self.qty_decimals())
    }

    pub fn status_word(&self) -> &'static str {
        status_word(self.info.status)
    }
}

pub fn status_word(status: MarketStatus) -> &'static str {
    match status {
        MarketStatus::Open => "open",
        MarketStatus::Halted => "halted",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bourse_engine::{MarketSpec, Symbol};

    /// BTC, USDT and the BTC-USDT market of the demo exchange (shared by the render tests).
    pub(crate) fn demo() -> Catalog {
        let asset =
            |asset, scale, symbol| AssetInfo { asset, scale, symbol: Symbol::new(symbol).unwrap() };
        let spec = MarketSpec {
            market: 1,
            symbol: Symbol::new("BTC-USDT").unwrap(),
            base: 1,
            quote: 2,
            tick_size: 10_000,
            lot_size: 10_000,
            min_notional: 1_000_000,
            maker_fee_bps: 2,
            taker_fee_bps: 5,
        };
        Catalog {
            assets: vec![asset(1, 8, "BTC"), asset(2, 6, "USDT")],
            markets: vec![MarketInfo { spec, status: MarketStatus::Open }],
            truncated: false,
        }
    }

    #[test]
    fn markets_and_assets_by_symbol_or_id() {
        let catalog = demo();
        assert_eq!(catalog.find_market("BTC-USDT").unwrap().id(), 1);
        assert_eq!(catalog.find_market("btc-usdt").unwrap().id(), 1);
        assert_eq!(catalog.find_market("1").unwrap().id(), 1);
        let err = catalog.find_market("DOGE-USDT").unwrap_err().to_string();
        assert!(err.contains("no market \"DOGE-USDT\"") && err.contains("BTC-USDT"), "{err}");
        assert_eq!(catalog.find_asset("usdt").unwrap().asset, 2);
        assert_eq!(catalog.find_asset("1").unwrap().symbol, "BTC");
        assert!(catalog.find_asset("7").is_err());
        assert_eq!(catalog.units(9).symbol, "#9");
    }

    #[test]
    fn decimals_are_exact_and_too_many_places_are_refused() {
        let m = demo().find_market("BTC-USDT").unwrap();
        assert_eq!(m.parse_price("50000.5").unwrap(), 50_000_500_000);
        assert_eq!(m.parse_qty("0.25").unwrap(), 25_000_000);
        assert_eq!(m.price(50_000_000_000), "50000.00 USDT");
        assert_eq!(m.price(50_000_500_000), "50000.50 USDT");
        assert_eq!(m.qty(50_000_000), "0.5 BTC");
        assert_eq!(m.qty_number(50_000_000), "0.5000");
        let err = m.parse_qty("0.123456789").unwrap_err().to_string();
        assert!(err.contains("more than 8 decimal places"), "{err}");
        assert!(err.contains("0.00000001"), "{err}");
        let err = m.parse_price("1e5").unwrap_err().to_string();
        assert!(err.contains("not a decimal number"), "{err}");
        assert!(m.parse_price("-5").is_err());
    }

    #[test]
    fn step_decimals_follow_the_step() {
        assert_eq!(step_decimals(10_000, 6), 2);
        assert_eq!(step_decimals(1, 6), 6);
        assert_eq!(step_decimals(1_000_000, 6), 0);
        assert_eq!(step_decimals(50_000_000, 6), 0);
        assert_eq!(step_decimals(0, 3), 3);
        assert_eq!(m_units().show_delta(-150), "-1.5 USD");
    }

    fn m_units() -> Units {
        Units { asset: 5, scale: 2, symbol: "USD".to_string() }
    }
}
