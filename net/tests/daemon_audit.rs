//! The real `bourse` daemon's audit lines: logon, refused logon, admin action and logout,
//! each on stderr with the journald priority prefix (`<4>` warning, `<5>` notice) that
//! systemd's stream logging files it under.

mod daemon;

use bourse_net::client::{Incoming, LogonOptions};
use bourse_net::protocol::*;
use daemon::*;

const ALICE: u64 = 200;
const USDT: u32 = 2;

#[test]
fn logons_refusals_and_admin_actions_are_audited_at_their_priorities() {
    let _one = exclusive();
    let dir = TestDir::new("daemon-audit");
    let config = write_config(&dir, "audit", &dir.join("data"), &Settings::memory());
    let mut daemon = Daemon::start(&config);
    let addr = daemon.addr();
    let line = |daemon: &Daemon, what: &str, accept: &dyn Fn(&str) -> bool| -> String {
        daemon
            .wait_for_line(TIMEOUT, accept)
            .unwrap_or_else(|| panic!("no {what} line; stderr:\n{}", daemon.stderr_text()))
    };

    let mut admin = connect(addr, ADMIN);
    line(&daemon, "logon", &|l| l.starts_with("<5>bourse: logon: key 1 (admin) from 127.0.0.1:"));
    let deposit = AdminRequest::Deposit { tx: 4242, account: ALICE, asset: USDT, amount: 1 };
    let request_id = admin.send(&ClientRequest::Admin(deposit)).expect("send the deposit");
    admin
        .recv_until(TIMEOUT, |m| match m {
            Incoming::Msg(ServerMessage::AdminAck(a)) if a.request_id == request_id => Some(()),
            _ => None,
        })
        .expect("the deposit is acknowledged");
    let admin_line = line(&daemon, "admin", &|l| l.starts_with("<5>bourse: admin: key 1 from "));
    assert!(admin_line.contains("Deposit") && admin_line.contains("4242"), "{admin_line}");

    // A logon with the wrong secret is a warning, naming the key it claimed.
    let wrong = LogonOptions { secret: [7; 32], ..LogonOptions::demo(ALICE) };
    assert!(connect_with(addr, wrong).is_err());
    line(&daemon, "refused logon", &|l| {
        l.starts_with("<4>bourse: logon refused: key 200 from 127.0.0.1:")
            && l.ends_with("logon signature does not match")
    });

    admin.send(&ClientRequest::Logout).expect("send the logout");
    line(&daemon, "logout", &|l| {
        l.starts_with("<5>bourse: logout: key 1 from 127.0.0.1:") && l.ends_with(": logged out")
    });
    drop(admin);
    daemon.terminate();
    // Nothing here was a failure of the daemon itself.
    let errors: Vec<String> =
        daemon.stderr_lines().into_iter().filter(|l| l.starts_with("<3>")).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// Sets the daemon's soft limit on open files (`prlimit`, util-linux).
fn set_nofile(pid: u32, soft: usize) {
    let status = std::process::Command::new("prlimit")
        .arg(format!("--nofile={soft}:"))
        .arg("--pid")
        .arg(pid.to_string())
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit --nofile={soft}: --pid {pid}: {status}");
}

#[test]
fn an_accept_failure_storm_prints_one_line_not_one_per_failure() {
    let _one = exclusive();
    let dir = TestDir::new("daemon-accept-storm");
    let config = write_config(&dir, "storm", &dir.join("data"), &Settings::memory());
    let mut daemon = Daemon::start(&config);
    let (addr, pid) = (daemon.addr(), daemon.pid());
    // Room for a few more descriptors only: the accepts after those fail with EMFILE,
    // again and again while the connections wait in the listen backlog.
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc").count();
    set_nofile(pid, open_fds + 4);
    let flood: Vec<std::net::TcpStream> =
        (0..40).map(|_| std::net::TcpStream::connect(addr).expect("connect")).collect();
    let first = daemon
        .wait_for_line(TIMEOUT, |l| l.contains("accept failed"))
        .unwrap_or_else(|| panic!("no accept failure; stderr:\n{}", daemon.stderr_text()));
    let storm_started = std::time::Instant::now();
    assert!(first.starts_with("<3>bourse: accept failed: "), "{first}");
    // The accept loop retries every 10 ms: a storm of about 100 failures a second.
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    let printed = daemon.stderr_lines().iter().filter(|l| l.contains("accept failed")).count();
    // One line per 10 s window at most (the next window's line may have come if this
    // machine stalled for that long).
    let windows = 1 + storm_started.elapsed().as_secs() as usize / 10;
    assert!(printed <= windows, "{printed} accept-failure lines in {windows} window(s)");
    // Once descriptors are free again, the daemon serves as before.
    drop(flood);
    set_nofile(pid, 1024);
    let report = status(addr);
    assert!(report.last_index > 0);
    daemon.terminate();
}

#[test]
fn a_flood_of_refused_connections_prints_one_line() {
    let _one = exclusive();
    let dir = TestDir::new("daemon-refused-flood");
    let config = write_config(&dir, "flood", &dir.join("data"), &Settings::memory());
    let mut daemon = Daemon::start(&config);
    let addr = daemon.addr();
    // 45 connections from one address that never log on: the default
    // unauthenticated_per_ip_max (16) holds, the other 29 are refused.
    let source: std::net::SocketAddr = "127.0.0.2:0".parse().unwrap();
    let started = std::time::Instant::now();
    let flood: Vec<socket2::Socket> = (0..45)
        .map(|_| {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            socket.bind(&source.into()).expect("bind 127.0.0.2");
            socket.connect_timeout(&addr.into(), TIMEOUT).expect("connect");
            socket
        })
        .collect();
    let first = daemon
        .wait_for_line(TIMEOUT, |l| l.contains("refused: too many connections awaiting"))
        .unwrap_or_else(|| panic!("no refusal; stderr:\n{}", daemon.stderr_text()));
    assert!(first.starts_with("<4>bourse: connection from 127.0.0.2:"), "{first}");
    // An honest logon from elsewhere works meanwhile, and its answer comes after every
    // refusal was handled (the daemon accepts in order).
    let report = status(addr);
    assert!(report.last_index > 0);
    let refusals = daemon.stderr_lines().iter().filter(|l| l.contains("refused: too many")).count();
    // One line per 10 s window (a second one only if this machine stalled that long).
    let windows = 1 + started.elapsed().as_secs() as usize / 10;
    assert!((1..=windows).contains(&refusals), "{}", daemon.stderr_text());
    drop(flood);
    daemon.terminate();
}
