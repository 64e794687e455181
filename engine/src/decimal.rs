//! Decimal text <-> integer minor units, exactly (no floating point). For people and
//! config files only; the engine itself never parses text.

/// Formats `value` minor units with `scale` decimal places: `format(150_000_000, 8)` is
/// `"1.50000000"`.
pub fn format(value: u64, scale: u8) -> String {
    if scale == 0 {
        return value.to_string();
    }
    let unit = 10u128.pow(scale as u32);
    let whole = value as u128 / unit;
    let frac = value as u128 % unit;
    format!("{whole}.{frac:0width$}", width = scale as usize)
}

/// Like `format`, with trailing zeros of the fraction removed (keeping at least `keep`
/// decimals).
pub fn format_trim(value: u64, scale: u8, keep: usize) -> String {
    let mut text = format(value, scale);
    if let Some(dot) = text.find('.') {
        while text.len() > dot + 1 + keep && text.ends_with('0') {
            text.pop();
        }
        if text.ends_with('.') {
            text.pop();
        }
    }
    text
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    NotANumber(String),
    TooManyDecimals { text: String, scale: u8 },
    TooLarge(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Empty => write!(f, "empty number"),
            ParseError::NotANumber(t) => write!(f, "{t:?} is not a decimal number"),
            ParseError::TooManyDecimals { text, scale } => {
                write!(f, "{text:?} has more than {scale} decimal places")
            }
            ParseError::TooLarge(t) => write!(f, "{t:?} is too large"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses a non-negative decimal like `"0.015"` into minor units at `scale`
/// (`parse("0.015", 8) == Ok(1_500_000)`). More decimals than `scale` is an error, never
/// a silent rounding.
pub fn parse(text: &str, scale: u8) -> Result<u64, ParseError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ParseError::Empty);
    }
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
        return Err(ParseError::NotANumber(text.to_string()));
    }
    if frac.len() > scale as usize {
        return Err(ParseError::TooManyDecimals { text: text.to_string(), scale });
    }
    let too_large = || ParseError::TooLarge(text.to_string());
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| too_large())? };
    let frac_value: u128 =
        if frac.is_empty() { 0 } else { frac.parse().map_err(|_| too_large())? };
    let value = whole
        .checked_mul(10u128.pow(scale as u32))
        .and_then(|w| w.checked_add(frac_value * 10u128.pow((scale as usize - frac.len()) as u32)))
        .ok_or_else(too_large)?;
    u64::try_from(value).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(format(150_000_000, 8), "1.50000000");
        assert_eq!(format_trim(150_000_000, 8, 2), "1.50");
        assert_eq!(format(7, 0), "7");
        assert_eq!(parse("0.015", 8), Ok(1_500_000));
        assert_eq!(parse("12", 2), Ok(1200));
        assert_eq!(parse(".5", 1), Ok(5));
        assert!(matches!(parse("0.001", 2), Err(ParseError::TooManyDecimals { .. })));
        assert!(matches!(parse("1e5", 2), Err(ParseError::NotANumber(_))));
        assert!(matches!(parse("-1", 2), Err(ParseError::NotANumber(_))));
        assert!(matches!(parse("99999999999999999999", 0), Err(ParseError::TooLarge(_))));
    }

    proptest! {
        #[test]
        fn round_trip(value in any::<u64>(), scale in 0u8..=18) {
            prop_assert_eq!(parse(&format(value, scale), scale), Ok(value));
        }
    }
}
