//! The command line. Markets and assets are given by symbol ("BTC-USDT", "BTC") or id;
//! prices, quantities and amounts as decimal text ("50000.5", "0.25"), converted exactly
//! with the market's or asset's scale once the reference data is known.

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use super::CliError;

/// The demo's trader key (alice), used when `--key` is not given.
pub const DEFAULT_TRADER_KEY: u64 = 200;
/// The demo's admin key, used by `admin` commands when `--key` is not given.
pub const DEFAULT_ADMIN_KEY: u64 = 1;
/// The environment variable a secret is read from when neither --secret nor --secret-file
/// is given.
pub const SECRET_ENV: &str = "BOURSE_SECRET";
/// The longest `--timeout`, in seconds.
pub const TIMEOUT_SECS_MAX: u64 = 3600;
/// Levels a side `book` shows by default.
pub const BOOK_DEPTH_DEFAULT: u16 = 10;

#[derive(Parser, Debug)]
#[command(
    name = "bourse-cli",
    version = bourse_net::VERSION,
    about = "Trade on and administer a running bourse exchange",
    after_help = "Exit status: 0 done; 1 refused by the exchange; 2 bad input (nothing sent); \
                  3 cannot reach the exchange or log on."
)]
pub struct Cli {
    /// Address of the exchange (host:port).
    #[arg(long, global = true, default_value = "127.0.0.1:7400")]
    pub addr: String,
    /// API key id [default: 200 (demo alice); 1 (demo admin) for `admin` commands].
    #[arg(long, global = true)]
    pub key: Option<u64>,
    /// The key's secret as 64 hex digits (visible to other users in the process list:
    /// prefer --secret-file or BOURSE_SECRET) [default: the demo secret of --key].
    #[arg(long, global = true, value_name = "HEX")]
    pub secret: Option<String>,
    /// A file holding the key's secret (64 hex digits; surrounding whitespace ignored).
    /// Without --secret and --secret-file, the environment variable BOURSE_SECRET is used.
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "secret")]
    pub secret_file: Option<std::path::PathBuf>,
    /// Seconds to wait for the exchange to answer (1..=3600).
    #[arg(long, global = true, default_value_t = 10, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=TIMEOUT_SECS_MAX))]
    pub timeout: u64,
    /// Speak TLS to the exchange (its `[server.tls]` port).
    #[arg(long, global = true)]
    pub tls: bool,
    /// With --tls: trust the CA certificates in this PEM file [default: the system's].
    #[arg(long, global = true, value_name = "FILE", requires = "tls")]
    pub ca_file: Option<std::path::PathBuf>,
    /// With --tls: the name the server's certificate must carry [default: the host of
    /// --addr].
    #[arg(long, global = true, value_name = "NAME", requires = "tls")]
    pub tls_name: Option<String>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Place an order: a limit order (--price), or a market order (--market-order).
    Place(PlaceArgs),
    /// Cancel one open order.
    Cancel(OrderArg),
    /// Change the price and/or total quantity of an open order.
    Amend(AmendArgs),
    /// Cancel all open orders, or those of one market.
    MassCancel {
        /// Only this market's orders.
        #[arg(long)]
        market: Option<String>,
    },
    /// The account's balances.
    Balances,
    /// The account's open orders.
    Orders {
        /// Only this market's orders.
        #[arg(long)]
        market: Option<String>,
    },
    /// The order book of a market, asks above bids.
    Book {
        market: String,
        /// Price levels a side (1..=1000).
        #[arg(long, default_value_t = BOOK_DEPTH_DEFAULT, value_parser = clap::value_parser!(u16).range(1..=1000))]
        depth: u16,
    },
    /// Stream execution reports, balance changes, trades and book changes until Ctrl-C.
    Tail {
        /// Markets whose trades and book changes to show (repeatable) [default: all].
        #[arg(long = "market", value_name = "MARKET")]
        markets: Vec<String>,
        /// Leave out book changes (show trades only).
        #[arg(long)]
        no_book: bool,
    },
    /// The exchange's assets and markets.
    Markets,
    /// Admin commands (admin key; default --key 1).
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Live per-hop latency percentiles of the daemon, from its metrics port (no key).
    Stats(StatsArgs),
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// The daemon's metrics address (its `metrics.listen`).
    #[arg(long, default_value = "127.0.0.1:9400", value_name = "HOST:PORT")]
    pub metrics: String,
    /// Write one `<hop>.hgrm` percentile distribution per hop (microseconds) here.
    #[arg(long, value_name = "DIR")]
    pub hgrm_dir: Option<std::path::PathBuf>,
    /// Then print what each interval of this many seconds recorded, until Ctrl-C.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub watch: Option<u64>,
    /// With --watch: stop after this many intervals.
    #[arg(long, requires = "watch")]
    pub count: Option<u64>,
    /// With --watch: append every interval to this HdrHistogram interval log (.hlog).
    #[arg(long, value_name = "FILE", requires = "watch")]
    pub hlog: Option<std::path::PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum SideArg {
    Buy,
    Sell,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum StpArg {
    /// The incoming order stops; the resting one stays.
    CancelTaker,
    /// The resting order is cancelled; matching goes on.
    CancelMaker,
    /// Both are cancelled.
    CancelBoth,
    /// Both shrink by the smaller quantity, without a trade.
    Decrement,
}

#[derive(Args, Debug)]
pub struct PlaceArgs {
    /// Market symbol or id, e.g. BTC-USDT.
    pub market: String,
    #[arg(value_enum)]
    pub side: SideArg,
    /// Quantity in the base asset, e.g. 0.5 (leave out for a market buy, which --budget
    /// bounds).
    pub qty: Option<String>,
    /// Limit price in the quote asset per whole base unit, e.g. 50000.00.
    #[arg(long)]
    pub price: Option<String>,
    /// Immediate or cancel: what does not fill at once expires.
    #[arg(long, conflicts_with_all = ["fok", "post_only"])]
    pub ioc: bool,
    /// Fill or kill: fills completely at once, or not at all.
    #[arg(long, conflicts_with_all = ["post_only"])]
    pub fok: bool,
    /// Rest only; refused if it would take liquidity.
    #[arg(long)]
    pub post_only: bool,
    /// A market order (no --price): a sell sells the quantity, a buy spends --budget.
    #[arg(long)]
    pub market_order: bool,
    /// Market buy: the most quote to spend, fees included, e.g. 1000.
    #[arg(long)]
    pub budget: Option<String>,
    /// Self-trade prevention against the account's own resting orders.
    #[arg(long, value_enum, default_value_t = StpArg::CancelTaker)]
    pub stp: StpArg,
    /// Your id for the order (unique among your open orders).
    #[arg(long)]
    pub client_id: Option<u64>,
}

/// One order, by exchange id or by client id.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("order").required(true).args(["order_id", "client_id"])))]
pub struct OrderArg {
    /// The exchange's order id.
    #[arg(long)]
    pub order_id: Option<u64>,
    /// The client order id given at placement.
    #[arg(long)]
    pub client_id: Option<u64>,
}

#[derive(Args, Debug)]
pub struct AmendArgs {
    #[command(flatten)]
    pub order: OrderArg,
    /// New limit price.
    #[arg(long)]
    pub price: Option<String>,
    /// New TOTAL quantity, fills included (at or below the filled quantity cancels).
    #[arg(long)]
    pub qty: Option<String>,
    /// The order's market, needed only when it is not among the first open orders the
    /// exchange lists.
    #[arg(long)]
    pub market: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Credit an account (creates it on its first deposit).
    Deposit {
        account: u64,
        /// Asset symbol or id.
        asset: String,
        /// Decimal amount, e.g. 1000.5.
        amount: String,
        /// Ledger transaction id (non-zero; a retry with the same id changes nothing).
        #[arg(long)]
        tx: u64,
    },
    /// Hold funds of an account for a withdrawal (complete or cancel it later by --tx).
    Withdraw {
        account: u64,
        asset: String,
        amount: String,
        #[arg(long)]
        tx: u64,
    },
    /// The held withdrawal --tx left the exchange.
    WithdrawComplete {
        #[arg(long)]
        tx: u64,
    },
    /// Return the held withdrawal --tx to the account.
    WithdrawCancel {
        #[arg(long)]
        tx: u64,
    },
    /// Move available funds between accounts (the receiver must exist unless
    /// --create-account).
    Transfer {
        from: u64,
        to: u64,
        asset: String,
        amount: String,
        #[arg(long)]
        tx: u64,
        /// Open the receiving account if it does not exist yet.
        #[arg(long)]
        create_account: bool,
    },
    /// Stop trading in a market (cancels still work).
    Halt { market: String },
    /// Reopen a halted market.
    Open { market: String },
    /// The exchange's last log index and state hash.
    Status,
    /// Create an asset.
    CreateAsset {
        /// New asset id.
        asset: u32,
        /// Symbol: printable ASCII, 1..=16 bytes.
        symbol: String,
        /// Decimal places of the smallest unit (0..=18).
        scale: u8,
    },
    /// Create a market of two existing assets.
    CreateMarket {
        /// New market id.
        market: u32,
        /// Symbol, e.g. SOL-USDT.
        symbol: String,
        /// Base asset (what is bought and sold), symbol or id.
        base: String,
        /// Quote asset (what prices are in), symbol or id.
        quote: String,
        /// Price step in the quote asset, e.g. 0.01.
        #[arg(long)]
        tick: String,
        /// Quantity step in the base asset, e.g. 0.001.
        #[arg(long)]
        lot: String,
        /// Smallest order value in the quote asset.
        #[arg(long, default_value = "0")]
        min_notional: String,
        /// Maker fee in basis points.
        #[arg(long, default_value_t = 0)]
        maker_bps: u32,
        /// Taker fee in basis points.
        #[arg(long, default_value_t = 0)]
        taker_bps: u32,
    },
}

impl Cli {
    /// The key to log on with: --key, or the demo default for the command.
    pub fn key_id(&self) -> u64 {
        match (self.key, &self.command) {
            (Some(key), _) => key,
            (None, Cmd::Admin(_)) => DEFAULT_ADMIN_KEY,
            (None, _) => DEFAULT_TRADER_KEY,
        }
    }

    /// The secret's hex text, from --secret, --secret-file or `BOURSE_SECRET` (in that
    /// order); `None` means the demo secret of the key.
    pub fn secret_hex(&self) -> Result<Option<String>, CliError> {
        if let Some(text) = &self.secret {
            return Ok(Some(text.clone()));
        }
        if let Some(path) = &self.secret_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::Input(format!("--secret-file {}: cannot read it: {e}", path.display()))
            })?;
            return Ok(Some(text.trim().to_string()));
        }
        match std::env::var(SECRET_ENV) {
            Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_string())),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(CliError::Input(format!("{SECRET_ENV} is not text; give 64 hex digits")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn admin_commands_default_to_the_admin_key() {
        let cli = Cli::parse_from(["bourse-cli", "admin", "status"]);
        assert_eq!(cli.key_id(), DEFAULT_ADMIN_KEY);
        let cli = Cli::parse_from(["bourse-cli", "balances"]);
        assert_eq!(cli.key_id(), DEFAULT_TRADER_KEY);
        let cli = Cli::parse_from(["bourse-cli", "balances", "--key", "300"]);
        assert_eq!(cli.key_id(), 300);
    }

    #[test]
    fn conflicting_flags_are_refused() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        assert!(parse(&["c", "place", "BTC-USDT", "buy", "1", "--price", "1", "--ioc", "--fok"])
            .is_err());
        assert!(parse(&["c", "place", "BTC-USDT", "buy", "1", "--ioc", "--post-only"]).is_err());
        assert!(parse(&["c", "place", "BTC-USDT", "hold", "1"]).is_err());
        assert!(parse(&["c", "cancel"]).is_err(), "cancel needs an order");
        assert!(parse(&["c", "cancel", "--order-id", "1", "--client-id", "2"]).is_err());
        assert!(parse(&["c", "book", "BTC-USDT", "--depth", "0"]).is_err());
        assert!(parse(&["c", "balances", "--timeout", "0"]).is_err());
        assert!(parse(&["c", "balances", "--timeout", "99999999999999"]).is_err());
        let place = parse(&["c", "place", "BTC-USDT", "sell", "0.5", "--stp", "decrement"]);
        assert!(place.is_ok());
    }
}
