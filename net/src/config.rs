//! The daemon's configuration: a TOML file whose every field has a working default. With
//! no file at all the server runs the demo exchange (`net/config/demo.toml`, compiled in):
//! two markets, funded demo accounts and demo API keys.
//!
//! Amounts, prices and sizes are written as decimals in whole units ("0.01", "10") and
//! converted exactly to minor units with each asset's scale; a value with more decimals
//! than the asset has is an error, never rounded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use bourse_engine::{decimal, AccountId, AssetId, Command, Limits, MarketId, MarketSpec, Symbol};
use serde::Deserialize;

use crate::auth::{ApiKey, Role, SECRET_BYTES};
use crate::ratelimit::RateLimit;
use crate::session::GatewayConfig;

/// The demo configuration, used when no file is given.
pub const DEMO_TOML: &str = include_str!("../config/demo.toml");

/// Transaction ids of bootstrap deposits: the top bit set, then the deposit's position,
/// so they never collide with ids an operator or a client chooses below 2^63.
pub const BOOTSTRAP_TX_BASE: u64 = 1 << 63;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub gateway: GatewaySection,
    #[serde(default)]
    pub engine: EngineSection,
    #[serde(default)]
    pub assets: Vec<AssetEntry>,
    #[serde(default)]
    pub markets: Vec<MarketEntry>,
    #[serde(default)]
    pub accounts: Vec<AccountEntry>,
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
    #[serde(default)]
    pub metrics: MetricsSection,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Trading port.
    pub listen: SocketAddr,
    /// CPU of the net core (io_uring runtime: accept, frames, sessions).
    pub net_core: usize,
    /// CPU of the shard core (sequencer and engine; spins while busy).
    pub shard_core: usize,
    /// CPU of the WAL io helper thread (shares the net core by default).
    pub io_core: usize,
    /// Pin the threads to those CPUs (skipped, with a warning, for a CPU that does not
    /// exist).
    pub pin: bool,
    /// Capacity of each SPSC ring between the net core and the shard core, in entries.
    pub ring_entries: usize,
    /// How long the shard core waits for work before it parks.
    pub shard_idle_spin_us: u64,
    /// How it waits: "spin" (busy-spin; the default, for a core nothing else runs on) or
    /// "yield" (offer the CPU to other runnable threads at each turn). On the 2-vCPU
    /// development VM, with the load generator sharing the CPUs, five alternating
    /// bourse-load runs gave median order-to-ack p99 915 us (spin) vs 1585 us (yield).
    pub shard_idle: ShardIdle,
    /// Lock all memory (`mlockall`, pages locked as first touched) so the hot path never
    /// faults on a swapped-out page. Needs an unlimited locked-memory limit
    /// (LimitMEMLOCK=infinity); the daemon refuses to start if locking fails.
    pub lock_memory: bool,
    /// `[server.tls]`: TLS on the client port, from PEM certificate and key files.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Where the client port may run without TLS: "loopback" (the default) or "allow".
    pub plaintext: crate::tls::Plaintext,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardIdle {
    Spin,
    Yield,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1:7400".parse().expect("valid address"),
            net_core: 0,
            shard_core: 1,
            io_core: 0,
            pin: true,
            ring_entries: 1 << 16,
            shard_idle_spin_us: 50,
            shard_idle: ShardIdle::Spin,
            lock_memory: false,
            tls: None,
            plaintext: crate::tls::Plaintext::Loopback,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Acknowledge once sequenced; the log is written asynchronously (or not at all
    /// without a data directory).
    Memory,
    /// Acknowledge after the command's log entry is fsynced.
    Disk,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Where the log and snapshots live. Empty: nothing is kept (memory only).
    pub data_dir: Option<PathBuf>,
    pub durability: Durability,
    /// Take a snapshot after this many log entries (0: never by count).
    pub snapshot_every_entries: u64,
    /// Take a snapshot after this many seconds with new entries (0: never by time).
    pub snapshot_every_secs: u64,
    /// Snapshots kept on disk.
    pub snapshots_keep: usize,
    /// `memory` durability only: the WAL writes and fsyncs at most once per this many
    /// microseconds, so far fewer wake-ups and fsyncs compete with the cores serving
    /// clients. Acknowledgements never wait for it; it lengthens the window a crash can
    /// lose by at most this much. 0 writes as soon as anything is queued. At most 100000.
    pub flush_interval_us: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            data_dir: None,
            durability: Durability::Memory,
            snapshot_every_entries: 1_000_000,
            snapshot_every_secs: 300,
            snapshots_keep: 3,
            flush_interval_us: 1_000,
        }
    }
}

/// The metrics endpoint (`/metrics`, `/health`, `/ready`, `/histograms`) and the
/// per-hop latency histograms (net/README.md, "Metrics").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Serve the endpoint at all (false: no metrics thread, no port).
    pub enabled: bool,
    /// Its own HTTP port; keep it off the public network (no authentication).
    pub listen: SocketAddr,
    /// Record per-hop latency histograms (false: no clock reads for them on the order
    /// path; counters and gauges are still served).
    pub histograms: bool,
    /// Append one interval per second per hop to this HdrHistogram interval log (`.hlog`).
    pub hlog_file: Option<PathBuf>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            enabled: true,
            listen: "127.0.0.1:9400".parse().expect("valid address"),
            histograms: true,
            hlog_file: None,
        }
    }
}

/// Overrides of the gateway's bounds and timers; unset fields keep their defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    pub frame_bytes_max: Option<usize>,
    pub heartbeat_interval_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub logon_timeout_ms: Option<u64>,
    pub rate_per_sec: Option<u32>,
    pub rate_burst: Option<u32>,
    pub outbound_bytes_max: Option<usize>,
    pub connections_max: Option<usize>,
    /// Connections awaiting a logon at once (all peers); see `GatewayConfig`.
    pub unauthenticated_max: Option<usize>,
    /// Connections awaiting a logon from one IP address.
    pub unauthenticated_per_ip_max: Option<usize>,
    /// Logged-on connections of one API key.
    pub connections_per_key_max: Option<usize>,
    pub journal_messages_max: Option<usize>,
    pub journal_bytes_max: Option<usize>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    pub fee_account: AccountId,
    pub assets_max: Option<u32>,
    pub markets_max: Option<u32>,
    pub accounts_max: Option<u32>,
    pub orders_max: Option<u32>,
    pub orders_per_account_max: Option<u32>,
    pub orders_per_market_max: Option<u32>,
    pub transactions_max: Option<u32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetEntry {
    pub id: AssetId,
    pub symbol: String,
    pub scale: u8,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketEntry {
    pub id: MarketId,
    pub symbol: String,
    pub base: String,
    pub quote: String,
    /// Price step in quote units, e.g. "0.01".
    pub tick_size: String,
    /// Quantity step in base units, e.g. "0.0001".
    pub lot_size: String,
    /// Smallest order value in quote units.
    #[serde(default = "zero")]
    pub min_notional: String,
    #[serde(default)]
    pub maker_fee_bps: u32,
    #[serde(default)]
    pub taker_fee_bps: u32,
}

fn zero() -> String {
    "0".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountEntry {
    pub id: AccountId,
    /// Asset symbol -> amount in whole units, deposited at first start.
    #[serde(default)]
    pub deposits: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub id: u64,
    /// 32 bytes, hex.
    pub secret: String,
    /// "admin" or "trader".
    pub role: String,
    /// The account a trader key acts for.
    #[serde(default)]
    pub account: Option<AccountId>,
}

/// A configuration, checked and converted: everything the server needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerSection,
    pub storage: StorageSection,
    pub gateway: GatewayConfig,
    pub engine: bourse_engine::Config,
    pub keys: Vec<ApiKey>,
    /// Commands that set up assets, markets and deposits on a fresh exchange.
    pub bootstrap: Vec<Command>,
    pub metrics: MetricsSection,
}

/// What is wrong with a configuration, in words an operator can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("config: {0}")]
pub struct ConfigError(pub String);

fn err(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

impl Config {
    /// The demo configuration.
    pub fn demo() -> Config {
        Config::from_toml(DEMO_TOML).expect("the compiled-in demo config is valid")
    }

    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        Config::from_toml(&text).map_err(|e| err(format!("{}: {}", path.display(), e.0)))
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        file.resolve()
    }
}

impl FileConfig {
    fn resolve(self) -> Result<Config, ConfigError> {
        let engine = self.engine.resolve()?;
        let gateway = self.gateway.resolve()?;
        if self.server.ring_entries < 1024 || self.server.ring_entries > 1 << 24 {
            return Err(err("server.ring_entries must be in 1024..=16777216"));
        }
        match &self.server.tls {
            Some(files) => drop(crate::tls::server_config(files).map_err(err)?),
            None => crate::tls::check_plaintext(self.server.listen, self.server.plaintext)
                .map_err(err)?,
        }
        if self.storage.snapshots_keep == 0 {
            return Err(err("storage.snapshots_keep must be at least 1"));
        }
        if self.storage.flush_interval_us
            > bourse_replication::BATCH_INTERVAL_MAX.as_micros() as u64
        {
            return Err(err("storage.flush_interval_us must be at most 100000"));
        }
        let mut bootstrap = Vec::new();
        let mut scales: BTreeMap<&str, (AssetId, u8)> = BTreeMap::new();
        for a in &self.assets {
            let symbol = Symbol::new(&a.symbol)
                .ok_or_else(|| err(format!("asset {}: bad symbol {:?}", a.id, a.symbol)))?;
            if scales.insert(a.symbol.as_str(), (a.id, a.scale)).is_some() {
                return Err(err(format!("asset symbol {} appears twice", a.symbol)));
            }
            bootstrap.push(Command::CreateAsset { asset: a.id, scale: a.scale, symbol });
        }
        let asset = |name: &str, what: &str| {
            scales.get(name).copied().ok_or_else(|| err(format!("{what}: unknown asset {name:?}")))
        };
        let amount = |text: &str, scale: u8, what: &str| {
            decimal::parse(text, scale).map_err(|e| err(format!("{what}: {e}")))
        };
        for m in &self.markets {
            let what = format!("market {}", m.symbol);
            let (base, base_scale) = asset(&m.base, &what)?;
            let (quote, quote_scale) = asset(&m.quote, &what)?;
            let symbol =
                Symbol::new(&m.symbol).ok_or_else(|| err(format!("{what}: bad symbol")))?;
            bootstrap.push(Command::CreateMarket(MarketSpec {
                market: m.id,
                symbol,
                base,
                quote,
                tick_size: amount(&m.tick_size, quote_scale, &format!("{what} tick_size"))?,
                lot_size: amount(&m.lot_size, base_scale, &format!("{what} lot_size"))?,
                min_notional: amount(
                    &m.min_notional,
                    quote_scale,
                    &format!("{what} min_notional"),
                )?,
                maker_fee_bps: m.maker_fee_bps,
                taker_fee_bps: m.taker_fee_bps,
            }));
        }
        let mut tx = BOOTSTRAP_TX_BASE;
        for account in &self.accounts {
            for (name, text) in &account.deposits {
                let what = format!("account {} deposit of {name}", account.id);
                let (asset, scale) = asset(name, &what)?;
                let value = amount(text, scale, &what)?;
                tx += 1;
                bootstrap.push(Command::Deposit { tx, account: account.id, asset, amount: value });
            }
        }
        let keys = self.keys.iter().map(KeyEntry::resolve).collect::<Result<Vec<_>, _>>()?;
        let metrics = self.metrics;
        Ok(Config {
            server: self.server,
            storage: self.storage,
            gateway,
            engine,
            keys,
            bootstrap,
            metrics,
        })
    }
}

impl EngineSection {
    fn resolve(&self) -> Result<bourse_engine::Config, ConfigError> {
        let d = Limits::default();
        let limits = Limits {
            assets_max: self.assets_max.unwrap_or(d.assets_max),
            markets_max: self.markets_max.unwrap_or(d.markets_max),
            accounts_max: self.accounts_max.unwrap_or(d.accounts_max),
            orders_max: self.orders_max.unwrap_or(d.orders_max),
            orders_per_account_max: self.orders_per_account_max.unwrap_or(d.orders_per_account_max),
            orders_per_market_max: self.orders_per_market_max.unwrap_or(d.orders_per_market_max),
            transactions_max: self.transactions_max.unwrap_or(d.transactions_max),
            ..d
        };
        limits.validate().map_err(|why| err(format!("engine: {why}")))?;
        Ok(bourse_engine::Config { limits, fee_account: self.fee_account })
    }
}

impl GatewaySection {
    fn resolve(&self) -> Result<GatewayConfig, ConfigError> {
        let d = GatewayConfig::default();
        let ms = |v: Option<u64>, default_ns: u64| v.map_or(default_ns, |ms| ms * 1_000_000);
        let mut journal = d.journal;
        journal.messages_max = self.journal_messages_max.unwrap_or(journal.messages_max);
        journal.bytes_max = self.journal_bytes_max.unwrap_or(journal.bytes_max);
        let config = GatewayConfig {
            frame_bytes_max: self.frame_bytes_max.unwrap_or(d.frame_bytes_max),
            heartbeat_interval_ns: ms(self.heartbeat_interval_ms, d.heartbeat_interval_ns),
            idle_timeout_ns: ms(self.idle_timeout_ms, d.idle_timeout_ns),
            logon_timeout_ns: ms(self.logon_timeout_ms, d.logon_timeout_ns),
            rate: RateLimit {
                rate_per_sec: self.rate_per_sec.unwrap_or(d.rate.rate_per_sec),
                burst: self.rate_burst.unwrap_or(d.rate.burst),
            },
            outbound_bytes_max: self.outbound_bytes_max.unwrap_or(d.outbound_bytes_max),
            connections_max: self.connections_max.unwrap_or(d.connections_max),
            unauthenticated_max: self.unauthenticated_max.unwrap_or(d.unauthenticated_max),
            unauthenticated_per_ip_max: self
                .unauthenticated_per_ip_max
                .unwrap_or(d.unauthenticated_per_ip_max),
            connections_per_key_max: self
                .connections_per_key_max
                .unwrap_or(d.connections_per_key_max),
            journal,
            ..d
        };
        config.validate().map_err(|e| err(format!("gateway: {e}")))?;
        Ok(config)
    }
}

impl KeyEntry {
    fn resolve(&self) -> Result<ApiKey, ConfigError> {
        let what = format!("key {}", self.id);
        let bytes = hex::decode(self.secret.trim())
            .map_err(|e| err(format!("{what}: secret is not hex: {e}")))?;
        let secret: [u8; SECRET_BYTES] = bytes.try_into().map_err(|_| {
            err(format!("{what}: secret must be {SECRET_BYTES} bytes (64 hex digits)"))
        })?;
        let role = match (self.role.as_str(), self.account) {
            ("admin", None) => Role::Admin,
            ("admin", Some(_)) => return Err(err(format!("{what}: an admin key has no account"))),
            ("trader", Some(account)) => Role::Trader { account },
            ("trader", None) => return Err(err(format!("{what}: a trader key needs an account"))),
            (other, _) => {
                return Err(err(format!("{what}: role {other:?} is not \"admin\" or \"trader\"")))
            }
        };
        Ok(ApiKey { key_id: self.id, secret, role })
    }
}
