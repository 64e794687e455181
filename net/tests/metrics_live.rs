//! The metrics endpoint of the real `bourse` daemon, scraped while orders flow: `/health`
//! and `/ready` answer without a secret, `/metrics` counters rise with the load, every
//! hop of an order has latencies recorded (and the WAL fsync and snapshot stall too),
//! and `/histograms` decodes into the same counts.

mod daemon;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bourse_engine::{OrderType, Side, StpMode, TimeInForce};
use bourse_net::client::{BlockingClient, Incoming};
use bourse_net::protocol::*;
use daemon::*;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

const BTC_USDT: u32 = 1;
/// 50,000.00 USDT, in minor units.
const PRICE: u64 = 50_000_000_000;
const TICK: u64 = 10_000;
const LOT: u64 = 10_000;
/// Orders sent by the load (crossing pairs: half of them trade).
const ORDERS: u64 = 200;

/// One HTTP/1.0 GET; (status code, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect to metrics");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read the reply");
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The value of the sample `name` (exact, labels included) in a Prometheus text body.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.rsplit_once(' ').is_some_and(|(n, _)| n == name))
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
}

fn hop_count(body: &str, hop: &str) -> f64 {
    sample(body, &format!("bourse_hop_latency_count_total{{hop=\"{hop}\"}}")).unwrap_or(0.0)
}

fn order(side: Side, price: u64, cl: u64) -> ClientRequest {
    ClientRequest::NewOrder(NewOrder {
        market: BTC_USDT,
        client_order_id: cl,
        side,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        post_only: false,
        price,
        qty: LOT,
        quote_budget: 0,
        stp: StpMode::CancelTaker,
    })
}

/// Sends `ORDERS` orders one at a time (each waits for its answer): a bid from `buyer`,
/// then a crossing ask from `seller` (another account, so no self-trade prevention), so
/// every ask trades.
fn load(mut buyer: BlockingClient, mut seller: BlockingClient) {
    for cl in 1..=ORDERS {
        let (client, side, price) = if cl % 2 == 1 {
            (&mut buyer, Side::Buy, PRICE)
        } else {
            (&mut seller, Side::Sell, PRICE - TICK)
        };
        let request_id = client.send(&order(side, price, cl)).expect("send");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "no answer to order {cl}");
            match client.recv(TIMEOUT).expect("receive").1 {
                Incoming::Msg(ServerMessage::Accepted(a)) if a.request_id == request_id => break,
                Incoming::Msg(ServerMessage::Rejected(r)) if r.request_id == request_id => {
                    panic!("order {cl} rejected: {r:?}")
                }
                _ => {}
            }
        }
    }
}

/// Scrapes until `done` holds for the body (bounded by `TIMEOUT`); returns that body.
fn scrape_until(addr: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, body) = get(addr, "/metrics");
        assert_eq!(status, 200);
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what} never showed; last scrape:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_health_ready_and_hop_histograms_of_a_loaded_daemon() {
    let _one = exclusive();
    let dir = TestDir::new("metrics-live");
    let data = dir.join("data");
    let config = write_config(&dir, "metrics", &data, &Settings::memory());
    // The daemon's own interval log too.
    let hlog = dir.join("latency.hlog");
    let mut file: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    let metrics_table = file.get_mut("metrics").and_then(|m| m.as_table_mut()).unwrap();
    metrics_table.insert("hlog_file".into(), hlog.to_str().unwrap().into());
    std::fs::write(&config, toml::to_string(&file).unwrap()).unwrap();
    let mut daemon = Daemon::start(&config);
    let metrics = daemon.metrics_addr();

    assert_eq!(get(metrics, "/health"), (200, "ok\n".to_string()));
    assert_eq!(get(metrics, "/ready").0, 200, "ready once the trading port listens");
    assert_eq!(get(metrics, "/nope").0, 404);
    let before = scrape_until(metrics, "the bootstrap", |b| {
        sample(b, "bourse_applied_index").is_some_and(|i| i > 0.0)
    });
    let placed_before = sample(&before, "bourse_commands_total{kind=\"place\"}").unwrap_or(0.0);
    let trades_before = sample(&before, "bourse_trades_total").unwrap_or(0.0);

    let (buyer, seller) = (connect(daemon.addr(), 1001), connect(daemon.addr(), 1002));
    let loader = std::thread::spawn(move || load(buyer, seller));
    // Scraped while the load runs: every scrape answers, ready stays 200.
    while !loader.is_finished() {
        assert_eq!(get(metrics, "/ready").0, 200);
        let (status, body) = get(metrics, "/metrics");
        assert_eq!(status, 200);
        assert!(body.ends_with("# EOF\n"));
        std::thread::sleep(Duration::from_millis(20));
    }
    loader.join().expect("the load ran");
    daemon.signal("USR1");

    let after = scrape_until(metrics, "the load and a snapshot", |b| {
        let placed = sample(b, "bourse_commands_total{kind=\"place\"}").unwrap_or(0.0);
        placed >= placed_before + ORDERS as f64
            && ["read_to_ring", "ring_to_sequenced", "sequenced_to_committed", "apply"]
                .iter()
                .all(|hop| hop_count(b, hop) >= 1.0)
            && hop_count(b, "apply_to_write") >= 1.0
            && hop_count(b, "wal_sync") >= 1.0
            && hop_count(b, "snapshot_stall") >= 1.0
    });
    let trades = sample(&after, "bourse_trades_total").unwrap_or(0.0) - trades_before;
    assert!(trades >= (ORDERS / 2) as f64, "{trades} trades for {ORDERS} crossing orders");
    assert!(sample(&after, "bourse_logons_total").unwrap() >= 2.0);
    assert!(sample(&after, "bourse_frames_in_total").unwrap() >= ORDERS as f64);
    assert!(sample(&after, "bourse_wal_appends_total").unwrap() >= ORDERS as f64);
    assert!(sample(&after, "bourse_wal_fsyncs_total").unwrap() >= 1.0);
    assert!(sample(&after, "bourse_snapshots_total").unwrap() >= 1.0);
    let applied = sample(&after, "bourse_applied_index").unwrap();
    assert!(sample(&after, "bourse_last_index").unwrap() >= applied);
    assert!(sample(&after, "bourse_durable_index").is_some());
    assert!(sample(&after, "bourse_open_orders").is_some());
    // A read -> ring latency per order at most once (it is measured at the ring push).
    let read_to_ring = hop_count(&after, "read_to_ring");
    assert!(read_to_ring <= placed_before + ORDERS as f64 + 1.0, "{read_to_ring}");
    let p50 = sample(&after, "bourse_hop_latency_nanoseconds{hop=\"apply\",quantile=\"0.5\"}");
    assert!(p50.is_some_and(|v| v > 0.0), "apply p50: {p50:?}");

    // `/histograms`: one line per hop, hex of a V2 histogram with the counts above.
    let (status, body) = get(metrics, "/histograms");
    assert_eq!(status, 200);
    let mut deserializer = hdrhistogram::serialization::Deserializer::new();
    let mut hops = 0;
    for line in body.lines() {
        let (hop, hex) = line.split_once(' ').expect("<hop> <hex>");
        let bytes = hex::decode(hex).expect("hex");
        let hist: hdrhistogram::Histogram<u64> =
            deserializer.deserialize(&mut bytes.as_slice()).expect("a V2 histogram");
        assert!(hist.len() as f64 >= hop_count(&after, hop), "{hop}: {}", hist.len());
        hops += 1;
    }
    assert_eq!(hops, 7, "{body}");

    // The interval log (one interval per second per hop with latencies) shows the load.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let log = std::fs::read(&hlog).unwrap_or_default();
        let tags: Vec<String> = IntervalLogIterator::new(&log)
            .filter_map(|e| match e {
                Ok(LogEntry::Interval(i)) => i.tag().map(|t| t.as_str().to_string()),
                _ => None,
            })
            .collect();
        if tags.iter().any(|t| t == "apply") && tags.iter().any(|t| t == "apply_to_write") {
            break;
        }
        assert!(Instant::now() < deadline, "no intervals in {}: {tags:?}", hlog.display());
        std::thread::sleep(Duration::from_millis(100));
    }

    let stderr = daemon.terminate();
    assert!(!stderr.contains("metrics are off"), "{stderr}");
}
