//! The real `bourse-cli` binary against a real server (the daemon's server on an
//! ephemeral loopback port, in this process): what it prints, its exit status, and what
//! the exchange ends up holding.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bourse_engine::{Exchange, RejectReason};
use bourse_net::config::Config;
use bourse_net::server::BackgroundServer;

const TIMEOUT: Duration = Duration::from_secs(20);
const ALICE: u64 = 200;
const BOB: u64 = 300;
const BTC: u32 = 1;
const USDT: u32 = 2;

/// The demo exchange on an ephemeral port, stopped when dropped.
struct LiveServer {
    addr: SocketAddr,
    server: Option<BackgroundServer>,
}

impl LiveServer {
    fn demo() -> LiveServer {
        let mut config = Config::demo();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.pin = false;
        config.server.ring_entries = 4096;
        // Tests run servers in parallel: metrics on a free port too.
        config.metrics.listen = "127.0.0.1:0".parse().unwrap();
        let server = BackgroundServer::start(config).expect("server starts");
        LiveServer { addr: server.addr, server: Some(server) }
    }

    /// Stops the server and returns the final engine.
    fn stop(mut self) -> Exchange {
        let report = self.server.take().unwrap().stop().expect("server stops cleanly");
        report.engine.check_invariants().expect("invariants hold");
        report.engine
    }

    /// Runs `bourse-cli --addr <server> args...` to completion.
    fn cli(&self, args: &[&str]) -> Run {
        run_cli(&self.addr.to_string(), args)
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let run = self.cli(args);
        assert_eq!(run.code, 0, "{args:?} failed:\n{run}");
        run.stdout
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

fn cli_command(addr: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bourse-cli"));
    command.args(["--addr", addr, "--timeout", "10"]).args(args);
    command
}

fn run_cli(addr: &str, args: &[&str]) -> Run {
    let output = cli_command(addr, args).output().expect("bourse-cli runs");
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(output.stdout).expect("utf-8"),
        stderr: String::from_utf8(output.stderr).expect("utf-8"),
    }
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn book_place_cross_amend_cancel_and_balances() {
    let server = LiveServer::demo();
    // The maker (key 100) quotes both sides.
    let out =
        server.cli_ok(&["--key", "100", "place", "BTC-USDT", "sell", "0.5", "--price", "50100"]);
    assert!(out.contains("sell 0.5 BTC @ 50100.00 USDT"), "{out}");
    assert!(out.contains("rests on the book: 0.5 BTC open, 0 BTC filled"), "{out}");
    server.cli_ok(&["--key", "100", "place", "BTC-USDT", "sell", "0.3", "--price", "50000.5"]);
    server.cli_ok(&["--key", "100", "place", "BTC-USDT", "buy", "1", "--price", "49900"]);

    // The ladder: asks from the top down, the spread, then bids.
    let book = server.cli_ok(&["book", "BTC-USDT"]);
    let lines: Vec<&str> = book.lines().collect();
    assert!(lines[0].starts_with("BTC-USDT order book"), "{book}");
    assert!(lines[1].contains("price (USDT)") && lines[1].contains("qty (BTC)"), "{book}");
    let words = |line: &str| line.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(words(lines[2]), ["ask", "50100.00", "0.5000", "1"], "{book}");
    assert_eq!(words(lines[3]), ["ask", "50000.50", "0.3000", "1"], "{book}");
    assert!(lines[4].contains("spread 100.50 USDT"), "{book}");
    assert_eq!(words(lines[5]), ["bid", "49900.00", "1.0000", "1"], "{book}");

    // Alice's buy crosses both asks: two fills at the makers' prices, then done.
    let out =
        server.cli_ok(&["place", "BTC-USDT", "buy", "0.6", "--price", "50100", "--client-id", "5"]);
    assert!(out.contains("accepted order 4 (client 5): buy 0.6 BTC @ 50100.00 USDT"), "{out}");
    // 0.3 BTC at 50000.50 is 15000.15 USDT; the 5 bps taker fee is 7.500075 USDT.
    assert!(out.contains("bought 0.3 BTC @ 50000.50 USDT as taker, fee 7.500075 USDT"), "{out}");
    assert!(out.contains("bought 0.3 BTC @ 50100.00 USDT as taker, fee 7.515 USDT"), "{out}");
    assert!(out.contains("order 4 (client 5) filled: 0.6 BTC in all"), "{out}");

    let balances = server.cli_ok(&["balances"]);
    assert!(balances.starts_with("balances of account 200"), "{balances}");
    let btc = lines_with(&balances, "BTC");
    assert_eq!(btc.len(), 1, "{balances}");
    assert_eq!(words(btc[0]), ["BTC", "0.6", "0", "0.6"], "{balances}");
    // 100000 - 15000.15 - 7.500075 - 15030 - 7.515 = 69954.834925
    let usdt = lines_with(&balances, "USDT");
    assert_eq!(words(usdt[0]), ["USDT", "69954.834925", "0", "69954.834925"], "{balances}");

    // The maker amends its bid by client-less id, then cancels it.
    let out = server.cli_ok(&["--key", "100", "amend", "--order-id", "3", "--qty", "0.5"]);
    assert!(
        out.contains("amended order 3: now buy 0.5 BTC @ 49900.00 USDT, 0.5 BTC open"),
        "{out}"
    );
    assert!(out.contains("time priority kept"), "{out}");
    assert!(out.contains("before: buy 1 BTC @ 49900.00 USDT"), "{out}");
    let out = server.cli_ok(&["--key", "100", "amend", "--order-id", "3", "--price", "49950.25"]);
    assert!(out.contains("now buy 0.5 BTC @ 49950.25 USDT"), "{out}");
    assert!(out.contains("time priority lost"), "{out}");
    let orders = server.cli_ok(&["--key", "100", "orders"]);
    assert_eq!(lines_with(&orders, "BTC-USDT").len(), 2, "{orders}");
    let out = server.cli_ok(&["--key", "100", "cancel", "--order-id", "3"]);
    assert!(
        out.contains("cancelled order 3: buy 0.5 BTC @ 49950.25 USDT (0 BTC had filled)"),
        "{out}"
    );
    // Cancelling it again is the engine's UnknownOrder.
    let again = server.cli(&["--key", "100", "cancel", "--order-id", "3"]);
    assert_eq!(again.code, 1, "{again}");
    assert!(again.stderr.contains("UnknownOrder"), "{again}");

    // Amending the half-filled 50100 ask down to what already filled cancels it.
    let out = server.cli_ok(&["--key", "100", "amend", "--order-id", "1", "--qty", "0.3"]);
    assert!(out.contains("order 1 cancelled (0.3 BTC had filled)"), "{out}");
    assert!(out.contains("the new quantity is not above the 0.3 BTC already filled"), "{out}");
    let orders = server.cli_ok(&["--key", "100", "orders"]);
    assert_eq!(orders, "no open orders\n");

    let engine = server.stop();
    assert_eq!(engine.balance(ALICE, BTC).available, 60_000_000);
    assert_eq!(engine.balance(ALICE, USDT).available, 69_954_834_925);
    assert!(engine.open_orders(100).is_empty());
}

#[test]
fn a_reject_exits_non_zero_with_the_reason_and_its_code() {
    let server = LiveServer::demo();
    // Alice has 100000 USDT; 100 BTC at 50000 is far more.
    let run = server.cli(&["place", "BTC-USDT", "buy", "100", "--price", "50000"]);
    assert_eq!(run.code, 1, "{run}");
    let reason = RejectReason::InsufficientFunds;
    assert!(run.stderr.contains(reason.describe()), "{run}");
    assert!(run.stderr.contains(&format!("engine code {}", reason.code())), "{run}");
    assert!(run.stderr.contains("InsufficientFunds"), "{run}");
    // It says how much was needed (5,000,000 USDT and the taker fee) and was available.
    assert!(run.stderr.contains(", needed 500"), "{run}");
    assert!(run.stderr.contains("USDT, available 100000 USDT"), "{run}");
    // Off the tick: the engine's PriceNotOnTick.
    let run = server.cli(&["place", "BTC-USDT", "buy", "0.1", "--price", "50000.005"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("PriceNotOnTick"), "{run}");
    assert!(run.stderr.contains("BTC-USDT prices go in steps of 0.01 USDT"), "{run}");
    let run = server.cli(&["place", "BTC-USDT", "buy", "0.00001", "--price", "50000"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("QtyNotOnLot") && run.stderr.contains("0.0001 BTC"), "{run}");
    // An admin key may not trade; the error says which key to use.
    let run = server.cli(&["--key", "1", "place", "BTC-USDT", "buy", "0.1", "--price", "50000"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("NotPermitted") && run.stderr.contains("admin key"), "{run}");
    let engine = server.stop();
    assert!(engine.open_orders(ALICE).is_empty());
}

#[test]
fn too_many_decimals_are_refused_before_anything_is_sent() {
    let server = LiveServer::demo();
    let run = server.cli(&["place", "BTC-USDT", "buy", "0.123456789", "--price", "50000"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("\"0.123456789\" has more than 8 decimal places"), "{run}");
    assert!(run.stderr.contains("nothing was sent"), "{run}");
    let run = server.cli(&["place", "BTC-USDT", "buy", "0.1", "--price", "50000.0000001"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("more than 6 decimal places"), "{run}");
    let run = server.cli(&["admin", "deposit", "200", "USDT", "1.0000001", "--tx", "9"]);
    assert_eq!(run.code, 2, "{run}");
    let run = server.cli(&["place", "BTC-USDT", "buy", "1e3", "--price", "50000"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("not a decimal number"), "{run}");
    // Nothing but the demo's bootstrap was ever applied.
    let bootstrap = Config::demo().bootstrap.len() as u64;
    let status = server.cli_ok(&["admin", "status"]);
    assert!(status.contains(&format!("last log index {bootstrap}\n")), "{status}");
    let engine = server.stop();
    assert_eq!(engine.last_index(), bootstrap);
    assert!(engine.open_orders(ALICE).is_empty(), "no order reached the engine");
    assert_eq!(engine.balance(ALICE, USDT).available, 100_000_000_000, "no deposit either");
}

#[test]
fn admin_deposit_is_exact_and_idempotent() {
    let server = LiveServer::demo();
    let out = server.cli_ok(&["admin", "deposit", "200", "USDT", "1000.25", "--tx", "500"]);
    assert_eq!(out.trim(), "deposited 1000.25 USDT to account 200 (tx 500)");
    let out = server.cli_ok(&["admin", "deposit", "200", "usdt", "1000.25", "--tx", "500"]);
    assert!(out.contains("a repeat: tx 500 had already been applied, nothing changed"), "{out}");
    // By asset id too, to a new account.
    server.cli_ok(&["admin", "deposit", "4242", "1", "0.00000001", "--tx", "501"]);
    let out = server
        .cli_ok(&["--key", "1", "admin", "transfer", "200", "300", "USDT", "0.25", "--tx", "502"]);
    assert!(
        out.contains("transferred 0.25 USDT from account 200 to account 300 (tx 502)"),
        "{out}"
    );
    // A trader key may not run admin commands.
    let run = server.cli(&["--key", "200", "admin", "deposit", "200", "USDT", "1", "--tx", "503"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("trader key"), "{run}");
    let status = server.cli_ok(&["admin", "status"]);
    assert!(status.contains("state hash"), "{status}");
    let engine = server.stop();
    assert_eq!(engine.balance(ALICE, USDT).available, 100_000_000_000 + 1_000_250_000 - 250_000);
    assert_eq!(engine.balance(BOB, USDT).available, 250_000);
    assert_eq!(engine.balance(4242, BTC).available, 1);
    let hash = hex_of(engine.state_hash());
    assert!(status.contains(&hash), "status showed the final state hash:\n{status}\n{hash}");
}

/// A tx id reused with other parameters is a reject (exit 1), never "a repeat"; the same
/// parameters still are; a transfer to a new account needs --create-account; a shortfall
/// says how much was needed and available, as decimals.
#[test]
fn reused_tx_ids_unknown_receivers_and_shortfalls_are_clear_rejects() {
    let server = LiveServer::demo();
    server.cli_ok(&["admin", "deposit", "200", "USDT", "2500.5", "--tx", "1001"]);
    let run = server.cli(&["admin", "deposit", "200", "USDT", "5", "--tx", "1001"]);
    assert_eq!(run.code, 1, "{run}");
    let reason = RejectReason::TxIdReusedWithDifferentParams;
    assert!(run.stderr.contains(reason.describe()), "{run}");
    assert!(run.stderr.contains(&format!("engine code {}", reason.code())), "{run}");
    assert!(run.stderr.contains("use a new --tx"), "{run}");
    assert!(!run.stdout.contains("deposited"), "{run}");
    let out = server.cli_ok(&["admin", "deposit", "200", "USDT", "2500.5", "--tx", "1001"]);
    assert!(out.contains("a repeat: tx 1001 had already been applied"), "{out}");
    // Every tx-id command: a withdrawal and a transfer too.
    server.cli_ok(&["admin", "withdraw", "200", "USDT", "0.5", "--tx", "1002"]);
    let run = server.cli(&["admin", "withdraw", "200", "USDT", "0.75", "--tx", "1002"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("TxIdReusedWithDifferentParams"), "{run}");

    // 4343 does not exist: refused with a hint, then created on request.
    let transfer = ["admin", "transfer", "200", "4343", "USDT", "1", "--tx", "1003"];
    let run = server.cli(&transfer);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("UnknownReceiver"), "{run}");
    assert!(run.stderr.contains("--create-account"), "{run}");
    let run = server.cli(&[&transfer[..7], &["1004", "--create-account"]].concat());
    assert_eq!(run.code, 0, "{run}");
    let run = server.cli(&["admin", "transfer", "200", "4343", "USDT", "2", "--tx", "1004"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("TxIdReusedWithDifferentParams"), "{run}");

    // 100000 + 2500.5 - 0.5 held - 1 sent = 102499 USDT available.
    let run = server.cli(&["admin", "withdraw", "200", "USDT", "200000.25", "--tx", "1005"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("InsufficientFunds"), "{run}");
    assert!(run.stderr.contains("needed 200000.25 USDT, available 102499 USDT"), "{run}");

    let engine = server.stop();
    assert_eq!(engine.balance(ALICE, USDT).available, 102_499_000_000);
    assert_eq!(engine.balance(ALICE, USDT).held, 500_000);
    assert_eq!(engine.balance(4343, USDT).available, 1_000_000);
}

fn hex_of(bytes: [u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn admin_creates_markets_halts_them_and_markets_lists_them() {
    let server = LiveServer::demo();
    let out = server.cli_ok(&["admin", "create-asset", "4", "SOL", "9"]);
    assert!(out.contains("created asset 4 SOL with 9 decimal places"), "{out}");
    let out = server.cli_ok(&[
        "admin",
        "create-market",
        "3",
        "SOL-USDT",
        "SOL",
        "USDT",
        "--tick",
        "0.001",
        "--lot",
        "0.01",
        "--min-notional",
        "1",
        "--maker-bps",
        "1",
        "--taker-bps",
        "3",
    ]);
    assert!(out.contains("created market 3 SOL-USDT"), "{out}");
    let markets = server.cli_ok(&["markets"]);
    let sol = lines_with(&markets, "SOL-USDT");
    assert_eq!(sol.len(), 1, "{markets}");
    assert!(sol[0].contains("0.001 USDT") && sol[0].contains("0.01 SOL"), "{markets}");
    assert!(sol[0].contains("1/3") && sol[0].ends_with("open"), "{markets}");

    let out = server.cli_ok(&["admin", "halt", "BTC-USDT"]);
    assert!(out.contains("market BTC-USDT is now halted"), "{out}");
    let run = server.cli(&["place", "BTC-USDT", "buy", "0.1", "--price", "50000"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("MarketHalted"), "{run}");
    server.cli_ok(&["admin", "open", "1"]);
    server.cli_ok(&["place", "BTC-USDT", "buy", "0.1", "--price", "50000"]);
    let engine = server.stop();
    assert_eq!(engine.markets().len(), 3);
    assert_eq!(engine.open_orders(ALICE).len(), 1);
}

#[test]
fn market_orders_and_mass_cancel() {
    let server = LiveServer::demo();
    server.cli_ok(&["--key", "100", "place", "BTC-USDT", "sell", "1", "--price", "50000"]);
    server.cli_ok(&["--key", "100", "place", "ETH-USDT", "sell", "1", "--price", "3000"]);
    // A budget-bounded market buy: 1000 USDT buys 0.0199 BTC (995 + 0.4975 fee).
    let out = server.cli_ok(&["place", "BTC-USDT", "buy", "--market-order", "--budget", "1000"]);
    assert!(out.contains("market buy on BTC-USDT, spending at most 1000 USDT"), "{out}");
    assert!(out.contains("bought 0.0199 BTC @ 50000.00 USDT as taker, fee 0.4975 USDT"), "{out}");
    // A market sell with nothing to sell into expires unfilled.
    let out =
        server.cli_ok(&["--key", "300", "place", "BTC-USDT", "sell", "0.01", "--market-order"]);
    assert!(out.contains("expired unfilled"), "{out}");
    // A market buy needs a budget, not a quantity.
    let run = server.cli(&["place", "BTC-USDT", "buy", "0.1", "--market-order"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("--budget"), "{run}");

    let out = server.cli_ok(&["--key", "100", "mass-cancel", "--market", "ETH-USDT"]);
    assert!(out.contains("1 open order cancelled on ETH-USDT"), "{out}");
    let out = server.cli_ok(&["--key", "100", "mass-cancel"]);
    assert!(out.contains("1 open order cancelled on every market"), "{out}");
    assert!(out.contains("cancelled (0.0199 BTC had filled)"), "{out}");
    let engine = server.stop();
    assert!(engine.open_orders(100).is_empty());
    assert_eq!(engine.balance(ALICE, BTC).available, 1_990_000);
}

#[test]
fn a_bad_key_or_no_server_is_a_clear_error() {
    let server = LiveServer::demo();
    let run = server.cli(&["--key", "999", "balances"]);
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stderr.contains("logon refused for key 999: unknown API key"), "{run}");
    let wrong = "00".repeat(32);
    let run = server.cli(&["--key", "200", "--secret", &wrong, "balances"]);
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stderr.contains("signature does not match"), "{run}");
    assert!(run.stderr.contains("check --key and --secret"), "{run}");
    let run = server.cli(&["--secret", "xyz", "balances"]);
    assert_eq!(run.code, 2, "{run}");
    let addr = server.addr.to_string();
    drop(server.stop());
    // Nothing listens there any more.
    let run = run_cli(&addr, &["balances"]);
    assert_eq!(run.code, 3, "{run}");
    let expected = format!("cannot connect to {addr}: connection refused — is `make run` running?");
    assert!(run.stderr.contains(&expected), "{run}");
}

/// `bourse-cli` with extra environment variables (and none inherited of its own).
fn run_cli_env(addr: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = cli_command(addr, args);
    command.env_remove("BOURSE_SECRET").envs(env.iter().copied());
    let output = command.output().expect("bourse-cli runs");
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(output.stdout).expect("utf-8"),
        stderr: String::from_utf8(output.stderr).expect("utf-8"),
    }
}

#[test]
fn secrets_come_from_a_file_or_the_environment() {
    let server = LiveServer::demo();
    let addr = server.addr.to_string();
    let dir = std::env::temp_dir().join(format!("bourse-cli-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good");
    let wrong = dir.join("wrong");
    std::fs::write(&good, format!("{}\n", hex::encode(bourse_net::client::demo_secret(BOB))))
        .unwrap();
    std::fs::write(&wrong, "00".repeat(32)).unwrap();
    let good_path = good.to_str().unwrap();
    let wrong_path = wrong.to_str().unwrap();

    let run = run_cli_env(&addr, &[], &["--key", "300", "--secret-file", good_path, "balances"]);
    assert_eq!(run.code, 0, "{run}");
    // The file is what is used: a wrong one is refused by the exchange.
    let run = run_cli_env(&addr, &[], &["--key", "300", "--secret-file", wrong_path, "balances"]);
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stderr.contains("signature does not match"), "{run}");
    // So is the environment, when no flag names a secret.
    let zeros = "00".repeat(32);
    let env = [("BOURSE_SECRET", zeros.as_str())];
    let run = run_cli_env(&addr, &env, &["--key", "300", "balances"]);
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stderr.contains("signature does not match"), "{run}");
    // A flag wins over the environment.
    let run = run_cli_env(&addr, &env, &["--key", "300", "--secret-file", good_path, "balances"]);
    assert_eq!(run.code, 0, "{run}");
    // A file that cannot be read is bad input; nothing is sent.
    let missing = dir.join("missing");
    let args = ["--key", "300", "--secret-file", missing.to_str().unwrap(), "balances"];
    let run = run_cli_env(&addr, &[], &args);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("--secret-file") && run.stderr.contains("cannot read"), "{run}");
    std::fs::remove_dir_all(&dir).unwrap();
    drop(server.stop());
}

#[test]
fn version_names_the_commit() {
    let run = run_cli_env("127.0.0.1:1", &[], &["--version"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.stdout.trim(), format!("bourse-cli {}", bourse_net::VERSION), "{run}");
    assert!(bourse_net::VERSION.contains("(commit "), "{}", bourse_net::VERSION);
}

/// A running `bourse-cli tail`, its stdout lines arriving on a channel.
struct Tail {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Tail {
    fn start(addr: &str, args: &[&str]) -> Tail {
        let mut child = cli_command(addr, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tail starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Tail { child, lines, seen: Vec::new() }
    }

    /// Waits for a line containing `needle`; returns it.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => {
                    panic!("tail never printed {needle:?}; it printed:\n{}", self.seen.join("\n"))
                }
            }
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tail_streams_reports_balances_and_market_data() {
    let server = LiveServer::demo();
    let addr = server.addr.to_string();
    let mut tail = Tail::start(&addr, &["tail", "--market", "BTC-USDT"]);
    tail.wait_for("streaming orders and balances of account 200");
    tail.wait_for("[BTC-USDT] subscribed");
    server.cli_ok(&["--key", "100", "place", "BTC-USDT", "sell", "0.5", "--price", "50000"]);
    tail.wait_for("[BTC-USDT] book ask 50000.00 USDT now 0.5 BTC (1 order)");
    server.cli_ok(&["place", "BTC-USDT", "buy", "0.2", "--price", "50000", "--client-id", "8"]);
    tail.wait_for("accepted order 2 (client 8): buy 0.2 BTC @ 50000.00 USDT");
    tail.wait_for("bought 0.2 BTC @ 50000.00 USDT as taker, fee 5 USDT (order 2, client 8");
    tail.wait_for("[BTC-USDT] trade 0.2 BTC @ 50000.00 USDT (buyer took");
    tail.wait_for("balance BTC: available +0.2 BTC = 0.2 (trade 1)");
    tail.wait_for("order 2 (client 8) filled: 0.2 BTC in all");
    tail.wait_for("[BTC-USDT] book ask 50000.00 USDT now 0.3 BTC (1 order)");
    server.cli_ok(&["admin", "deposit", "200", "USDT", "12.5", "--tx", "900"]);
    tail.wait_for("balance USDT: available +12.5 USDT");
    // The maker's own execution reports are not alice's.
    assert!(!tail.seen.iter().any(|l| l.contains("sold")), "{:?}", tail.seen);
    // Lines are stamped with the time of day.
    let stamped = tail.seen.iter().filter(|l| l.as_bytes().get(2) == Some(&b':')).count();
    assert!(stamped >= 8, "{:?}", tail.seen);
    drop(tail);
    server.stop();
}

#[test]
fn stats_prints_hop_percentiles_and_writes_hgrm_files_and_an_interval_log() {
    let server = LiveServer::demo();
    let metrics = server.server.as_ref().unwrap().metrics_addr().expect("metrics serve");
    server.cli_ok(&["--key", "100", "place", "BTC-USDT", "sell", "0.5", "--price", "50100"]);
    server.cli_ok(&["place", "BTC-USDT", "buy", "0.1", "--price", "50100"]);
    let dir = std::env::temp_dir().join(format!("bourse-cli-stats-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let hlog = dir.join("stats.hlog");
    std::fs::create_dir_all(&dir).unwrap();
    let metrics = metrics.to_string();
    let hgrm_dir = dir.join("hgrm");
    let (hgrm_dir_text, hlog_text) = (hgrm_dir.to_str().unwrap(), hlog.to_str().unwrap());
    // The net core publishes its latencies at most every 100 ms: wait (bounded) until the
    // apply -> write hop of the orders above has reached the metrics thread.
    let deadline = Instant::now() + TIMEOUT;
    let out = loop {
        let out = server.cli_ok(&["stats", "--metrics", &metrics, "--hgrm-dir", hgrm_dir_text]);
        let counted = |hop: &str| {
            out.lines()
                .find(|l| l.split_whitespace().next() == Some(hop))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if ["read_to_ring", "ring_to_sequenced", "apply", "apply_to_write"]
            .iter()
            .all(|hop| counted(hop) >= 2)
        {
            break out;
        }
        assert!(Instant::now() < deadline, "hops never counted:\n{out}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(out.contains("p50") && out.contains("p99.99") && out.contains("max"), "{out}");
    for hop in ["read_to_ring", "ring_to_sequenced", "sequenced_to_committed", "apply"] {
        let parsed = bourse_net::hgrm::parse_file(&hgrm_dir.join(format!("{hop}.hgrm")))
            .unwrap_or_else(|e| panic!("{hop}.hgrm: {e}"));
        assert!(parsed.total_count >= 2, "{hop}: {}", parsed.total_count);
    }
    let watched = server.cli_ok(&[
        "stats",
        "--metrics",
        &metrics,
        "--watch",
        "1",
        "--count",
        "2",
        "--hlog",
        hlog_text,
    ]);
    assert!(watched.contains("interval 2"), "{watched}");
    let log = std::fs::read(&hlog).unwrap();
    let tags: Vec<String> =
        hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&log)
            .filter_map(|e| match e.expect("the interval log parses") {
                hdrhistogram::serialization::interval_log::LogEntry::Interval(i) => {
                    i.tag().map(|t| t.as_str().to_string())
                }
                _ => None,
            })
            .collect();
    assert_eq!(tags.len(), 2 * 7, "{tags:?}");
    assert!(tags.iter().any(|t| t == "apply"), "{tags:?}");
    // A daemon without metrics there: exit 3 and a clear message.
    let run = server.cli(&["stats", "--metrics", "127.0.0.1:1"]);
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stderr.contains("metrics at 127.0.0.1:1"), "{run}");
    let _ = std::fs::remove_dir_all(&dir);
    server.stop();
}
