//! The checks behind the engine's fuzz targets, kept in one plain function per target so
//! that the same code runs under libFuzzer (nightly, `cargo fuzz run`) and under a stable
//! `cargo test` smoke run: `engine/tests/scenarios/main.rs` includes this file with
//! `#[path]`, and `engine/tests/scenarios/fuzz_smoke.rs` drives it with seeded
//! pseudo-random inputs. A crash found by one is reproduced by the other.
//!
//! This file must stay free of crate-level attributes and of dependencies other than
//! `bourse_engine` and std, because it is compiled both as this crate's root and as a
//! module of the engine's test binary.

use std::collections::BTreeMap;

use bourse_engine::{
    AccountId, AssetId, Balance, Command, Config, Event, EventKind, Exchange, Limits, LogIndex,
    MarketSpec, RejectReason, Symbol,
};

/// Most commands one fuzz input may carry; a bound so one input cannot run for long.
pub const CHUNKS_MAX: usize = 512;

/// Ids the seeded exchange uses; the smoke generator aims its commands at them.
pub const SEED_BTC: AssetId = 1;
pub const SEED_USDT: AssetId = 2;
pub const SEED_ETH: AssetId = 3;
/// BTC/USDT: tick 10_000, lot 10_000 (qptl 1), no fees.
pub const SEED_BTC_USDT: u32 = 1;
/// ETH/USDT: tick 10_000, lot 1_000_000 (qptl 100), maker 10 bps, taker 25 bps.
pub const SEED_ETH_USDT: u32 = 2;
pub const SEED_FEE_ACCOUNT: AccountId = 900;
/// Funded accounts 1..=SEED_ACCOUNTS.
pub const SEED_ACCOUNTS: AccountId = 4;
/// Ledger tx ids 1..=SEED_TXS are used by the seeding deposits.
pub const SEED_TXS: u64 = 12;

/// Small limits, so that fuzzed commands reach every bound quickly.
pub fn seed_limits() -> Limits {
    Limits {
        assets_max: 5,
        markets_max: 4,
        // The fee account, the four traders and one more.
        accounts_max: 6,
        orders_max: 20,
        orders_per_account_max: 8,
        orders_per_market_max: 12,
        price_ticks_max: 1_000_000,
        qty_lots_max: 1_000_000,
        // 1.76e13: the funding (4e12 USDT) fits, and the largest ETH/USDT order
        // (10^6 ticks * 10^6 lots * qptl 100 = 10^14) does not.
        supply_max: 1 << 44,
        // The seeding uses 12.
        transactions_max: 28,
    }
}

/// An exchange with three assets, two markets and four funded accounts, and the last
/// log index used to build it.
pub fn seeded_exchange() -> (Exchange, LogIndex) {
    let config = Config { limits: seed_limits(), fee_account: SEED_FEE_ACCOUNT };
    let mut exchange = match Exchange::new(config) {
        Ok(exchange) => exchange,
        Err(error) => panic!("seed config rejected: {error:?}"),
    };
    let mut commands = vec![
        asset(SEED_BTC, 8, "BTC"),
        asset(SEED_USDT, 6, "USDT"),
        asset(SEED_ETH, 8, "ETH"),
        Command::CreateMarket(MarketSpec {
            market: SEED_BTC_USDT,
            symbol: symbol("BTC/USDT"),
            base: SEED_BTC,
            quote: SEED_USDT,
            tick_size: 10_000,
            lot_size: 10_000,
            min_notional: 1,
            maker_fee_bps: 0,
            taker_fee_bps: 0,
        }),
        Command::CreateMarket(MarketSpec {
            market: SEED_ETH_USDT,
            symbol: symbol("ETH/USDT"),
            base: SEED_ETH,
            quote: SEED_USDT,
            tick_size: 10_000,
            lot_size: 1_000_000,
            min_notional: 10_000,
            maker_fee_bps: 10,
            taker_fee_bps: 25,
        }),
    ];
    let mut tx = 0;
    for account in 1..=SEED_ACCOUNTS {
        for (asset, amount) in
            [(SEED_BTC, 1_000_000_000), (SEED_USDT, 1_000_000_000_000), (SEED_ETH, 100_000_000_000)]
        {
            tx += 1;
            commands.push(Command::Deposit { tx, account, asset, amount });
        }
    }
    assert_eq!(tx, SEED_TXS);
    let mut index = 0;
    let mut out = Vec::new();
    for command in &commands {
        index += 1;
        out.clear();
        let applied = exchange.apply(index, index * 1_000, command, &mut out);
        assert!(applied.is_ok(), "seeding apply failed: {command:?}");
        assert!(
            out.iter().all(|event| !matches!(event.kind, EventKind::Rejected(_))),
            "seeding command rejected: {command:?} -> {out:?}"
        );
    }
    (exchange, index)
}

fn asset(asset: AssetId, scale: u8, text: &str) -> Command {
    Command::CreateAsset { asset, scale, symbol: symbol(text) }
}

fn symbol(text: &str) -> Symbol {
    match Symbol::new(text) {
        Some(symbol) => symbol,
        None => panic!("bad symbol literal {text:?}"),
    }
}

/// Splits fuzz input into chunks, each a one-byte length then that many bytes (the last
/// chunk may be short). One byte is enough: every command fits in `COMMAND_BYTES_MAX`
/// (128) bytes.
pub fn split_chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut chunks = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        if chunks.len() == CHUNKS_MAX {
            break;
        }
        let len = (len as usize).min(tail.len());
        let (chunk, after) = tail.split_at(len);
        chunks.push(chunk);
        rest = after;
    }
    chunks
}

/// The inverse of `split_chunks` for well-formed commands: used to build seed inputs.
pub fn encode_chunks(commands: &[Command]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut body = Vec::new();
    for command in commands {
        body.clear();
        command.encode(&mut body);
        assert!(body.len() <= u8::MAX as usize, "command too long for a chunk");
        data.push(body.len() as u8);
        data.extend_from_slice(&body);
    }
    data
}

/// Fuzz target `apply_commands`: decodes each chunk, applies the valid commands to the
/// seeded exchange and checks, after every command, the engine's own invariants, that
/// every event carries the command's index and time, that the balance events account for
/// every balance change exactly, and that a reject which the README says changes nothing
/// leaves the state exactly as a trivial reject would (`assert_same_as_probe`). At the end
/// a snapshot must restore to the same hash, and replaying an old index must be refused
/// without effect.
pub fn apply_commands(data: &[u8]) -> RunStats {
    let (mut exchange, mut index) = seeded_exchange();
    let mut out = Vec::new();
    let mut stats = RunStats::default();
    for chunk in split_chunks(data) {
        let Ok(command) = Command::decode(chunk) else {
            stats.undecodable += 1;
            continue;
        };
        index += 1;
        let time_ns = index * 1_000;
        let audit = BalanceAudit::capture(&exchange);
        let mut snapshot_before = Vec::new();
        exchange.encode_snapshot(&mut snapshot_before);
        out.clear();
        if let Err(error) = exchange.apply(index, time_ns, &command, &mut out) {
            panic!("apply refused increasing index {index}: {error:?}");
        }
        for event in &out {
            assert_eq!((event.index, event.time_ns), (index, time_ns), "{command:?}: {event:?}");
        }
        if let Err(message) = exchange.check_invariants() {
            panic!("invariant broken after {command:?}: {message}\nevents: {out:?}");
        }
        if let Err(message) = audit.verify(&exchange, &out) {
            panic!("balance events wrong after {command:?}: {message}\nevents: {out:?}");
        }
        if let Some(reason) = plain_reject(&command, &out) {
            let what = format!("reject {reason:?} of {command:?}");
            assert_same_as_probe(&snapshot_before, &exchange, index, time_ns, &what);
        }
        stats.count(&out);
    }
    check_replay_refused(&mut exchange, index);
    check_snapshot_round_trip(&exchange);
    stats
}

/// What one input did, so a stable test can check that its inputs reach the interesting
/// paths (a fuzzer has coverage feedback for that; a seeded generator does not).
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    pub undecodable: u32,
    pub applied: u32,
    pub accepted: u32,
    pub trades: u32,
    pub amended: u32,
    pub done: u32,
    pub ledger: u32,
    /// How often each `RejectReason` occurred, indexed by its code.
    pub rejects: BTreeMap<u16, u32>,
}

impl RunStats {
    fn count(&mut self, events: &[Event]) {
        self.applied += 1;
        for event in events {
            match event.kind {
                EventKind::Accepted(_) => self.accepted += 1,
                EventKind::Trade(_) => self.trades += 1,
                EventKind::Amended(_) => self.amended += 1,
                EventKind::Done(_) => self.done += 1,
                EventKind::Ledger(_) => self.ledger += 1,
                EventKind::Rejected(r) => *self.rejects.entry(r.reason.code()).or_default() += 1,
                _ => {}
            }
        }
    }

    pub fn add(&mut self, other: &RunStats) {
        self.undecodable += other.undecodable;
        self.applied += other.applied;
        self.accepted += other.accepted;
        self.trades += other.trades;
        self.amended += other.amended;
        self.done += other.done;
        self.ledger += other.ledger;
        for (&code, &n) in &other.rejects {
            *self.rejects.entry(code).or_default() += n;
        }
    }
}

/// The reason, when `events` is a lone reject that the README says changes nothing.
/// Ledger rejects from UnknownAsset onwards are stored as the tx's outcome (so the
/// state does change, by one remembered transaction), unless they are repeats.
pub fn plain_reject(command: &Command, events: &[Event]) -> Option<RejectReason> {
    let [event] = events else { return None };
    let EventKind::Rejected(rejected) = event.kind else { return None };
    let ledger = matches!(
        command,
        Command::Deposit { .. } | Command::WithdrawRequest { .. } | Command::Transfer { .. }
    );
    let stored = ledger
        && !rejected.duplicate
        && !matches!(
            rejected.reason,
            RejectReason::InvalidTxId
                | RejectReason::TxIdConflict
                | RejectReason::TxIdReusedWithDifferentParams
                | RejectReason::TransactionsLimit
        );
    (!stored).then_some(rejected.reason)
}

/// An account id no test or fuzz input uses, so a cancel for it is the most trivial
/// reject there is (UnknownAccount, the first check).
pub const PROBE_ACCOUNT: AccountId = u64::MAX;

/// Checks that `after` (which has just applied one command at `index`, `time_ns`) is in
/// exactly the state the engine had before it (`snapshot_before`) plus the log position.
///
/// The state hash covers the last log index and time, so every applied command, a reject
/// included, moves it; "a reject changes nothing" therefore means: the state equals what
/// the most trivial reject (a cancel for an unknown account) at the same index and time
/// leaves. That baseline is built by restoring `snapshot_before` and applying the probe.
pub fn assert_same_as_probe(
    snapshot_before: &[u8],
    after: &Exchange,
    index: LogIndex,
    time_ns: u64,
    what: &str,
) {
    let mut baseline = match Exchange::decode_snapshot(snapshot_before) {
        Ok(baseline) => baseline,
        Err(error) => panic!("own snapshot does not decode: {error:?}"),
    };
    let probe = Command::Cancel { account: PROBE_ACCOUNT, order: bourse_engine::OrderRef::Id(0) };
    let mut out = Vec::new();
    assert!(baseline.apply(index, time_ns, &probe, &mut out).is_ok(), "probe refused");
    assert!(
        matches!(out.as_slice(), [Event { kind: EventKind::Rejected(r), .. }]
            if r.reason == RejectReason::UnknownAccount),
        "probe was not a lone UnknownAccount reject: {out:?}"
    );
    assert_eq!(baseline.state_hash(), after.state_hash(), "{what} changed the state");
}

fn check_replay_refused(exchange: &mut Exchange, index: LogIndex) {
    let hash = exchange.state_hash();
    let mut out = Vec::new();
    let command = Command::MassCancel { account: 1, market: None };
    assert!(exchange.apply(index, 0, &command, &mut out).is_err(), "index {index} reused");
    assert!(out.is_empty(), "a refused apply emitted {out:?}");
    assert_eq!(hash, exchange.state_hash(), "a refused apply changed the state");
    assert_eq!(exchange.last_index(), index);
}

fn check_snapshot_round_trip(exchange: &Exchange) {
    let mut bytes = Vec::new();
    exchange.encode_snapshot(&mut bytes);
    let restored = match Exchange::decode_snapshot(&bytes) {
        Ok(restored) => restored,
        Err(error) => panic!("own snapshot does not decode: {error:?}"),
    };
    assert_eq!(restored.state_hash(), exchange.state_hash(), "snapshot changed the state hash");
    if let Err(message) = restored.check_invariants() {
        panic!("restored snapshot breaks invariants: {message}");
    }
}

/// Fuzz target `decode_command`: decoding arbitrary bytes never panics, and what decodes
/// round-trips through `encode` at the value level within `COMMAND_BYTES_MAX`. (Byte
/// equality is not required: the varint codec may accept more than one spelling of a
/// value, but it must always re-encode to one that decodes to the same command.)
pub fn decode_command(data: &[u8]) {
    let Ok(command) = Command::decode(data) else { return };
    let mut bytes = Vec::new();
    command.encode(&mut bytes);
    assert!(
        bytes.len() <= bourse_engine::command::COMMAND_BYTES_MAX,
        "{command:?} encodes to {} bytes",
        bytes.len()
    );
    assert!(bytes.len() <= data.len(), "{command:?} re-encodes longer than its input");
    match Command::decode(&bytes) {
        Ok(again) => assert_eq!(again, command, "round trip changed the command"),
        Err(error) => panic!("{command:?} re-encodes to undecodable bytes: {error:?}"),
    }
}

/// Checks that the `Balance` events of one command explain every balance change: each
/// event's after-values equal the previous value plus its deltas, the last event of each
/// (account, asset) equals the balance now, and every balance without an event is
/// unchanged. (Events with zero deltas are tolerated here; `fees.rs` has a scenario for
/// them.)
#[derive(Debug)]
pub struct BalanceAudit {
    before: BTreeMap<(AccountId, AssetId), Balance>,
}

impl BalanceAudit {
    pub fn capture(exchange: &Exchange) -> BalanceAudit {
        let mut before = BTreeMap::new();
        for account in exchange.accounts() {
            for (asset, balance) in exchange.balances(account) {
                before.insert((account, asset), balance);
            }
        }
        BalanceAudit { before }
    }

    pub fn verify(&self, exchange: &Exchange, events: &[Event]) -> Result<(), String> {
        let mut tracked = self.before.clone();
        for event in events {
            let EventKind::Balance(change) = event.kind else { continue };
            let key = (change.account, change.asset);
            let prev = tracked.get(&key).copied().unwrap_or_default();
            let available = prev.available as i128 + change.delta_available as i128;
            let held = prev.held as i128 + change.delta_held as i128;
            if available != change.available as i128 || held != change.held as i128 {
                return Err(format!("{change:?} does not follow from {prev:?}"));
            }
            tracked.insert(key, Balance { available: change.available, held: change.held });
        }
        let now = BalanceAudit::capture(exchange).before;
        let keys: std::collections::BTreeSet<_> = tracked.keys().chain(now.keys()).collect();
        for key in keys {
            let expected = tracked.get(key).copied().unwrap_or_default();
            let actual = now.get(key).copied().unwrap_or_default();
            if expected != actual {
                return Err(format!("{key:?}: events say {expected:?}, engine has {actual:?}"));
            }
        }
        Ok(())
    }
}
