//! TLS on the client port, end to end against the real server: a certificate made at test
//! time (a CA and a leaf for localhost/127.0.0.1 signed by it), the blocking and the async
//! client over TLS, a plaintext client on the TLS port, and the plaintext-listen rule.
mod live;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bourse_engine::Side;
use bourse_net::client::{BlockingClient, ClientError, Incoming, LogonOptions};
use bourse_net::client_async::AsyncClient;
use bourse_net::config::Config;
use bourse_net::protocol::*;
use bourse_net::server::BackgroundServer;
use bourse_net::tls::{ClientTls, TlsFiles};
use live::*;

/// A CA, and a server certificate for `localhost` and `127.0.0.1` signed by it, as PEM
/// files in a temporary directory.
struct Certs {
    dir: tempfile::TempDir,
    files: TlsFiles,
}

impl Certs {
    fn new() -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), leaf_key.serialize_pem()).unwrap();
        let files = TlsFiles {
            cert_file: dir.path().join("cert.pem"),
            key_file: dir.path().join("key.pem"),
        };
        Certs { dir, files }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn client(&self, server_name: &str) -> ClientTls {
        ClientTls::new(Some(&self.ca_file()), server_name).unwrap()
    }
}

fn tls_server(certs: &Certs) -> BackgroundServer {
    let files = certs.files.clone();
    BackgroundServer::start(demo_config(|c| c.server.tls = Some(files))).expect("server starts")
}

fn connect_tls(
    server: &BackgroundServer,
    tls: &ClientTls,
    key: u64,
) -> Result<BlockingClient, ClientError> {
    BlockingClient::connect_with(server.addr, LogonOptions::demo(key), TIMEOUT, Some(tls))
}

#[test]
fn a_session_over_tls_logs_on_trades_and_gets_its_reports() {
    let certs = Certs::new();
    let server = tls_server(&certs);
    let tls = certs.client("localhost");
    let mut maker = connect_tls(&server, &tls, MAKER).expect("maker logs on over TLS");
    let mut alice = connect_tls(&server, &tls, ALICE).expect("alice logs on over TLS");
    let resting = place(&mut maker, &limit_order(BTC_USDT, Side::Sell, 50_000_000_000, 10_000, 1));
    let taking = place(&mut alice, &limit_order(BTC_USDT, Side::Buy, 50_000_000_000, 10_000, 2));
    let trade = expect(&mut alice, "alice's trade", |m| match m {
        Incoming::Msg(ServerMessage::Trade(t)) if t.order_id == taking.order_id => Some(*t),
        _ => None,
    });
    assert_eq!(trade.qty, 10_000);
    let maker_trade = expect(&mut maker, "maker's trade", |m| match m {
        Incoming::Msg(ServerMessage::Trade(t)) => Some(*t),
        _ => None,
    });
    assert_eq!(maker_trade.order_id, resting.order_id);

    // The async (monoio) client speaks TLS too; the server name may be an IP address.
    let addr = server.addr;
    let by_ip = certs.client("127.0.0.1");
    let accepted = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime")
        .block_on(async move {
            let mut client =
                AsyncClient::connect_with(addr, LogonOptions::demo(BOB), TIMEOUT, Some(&by_ip))
                    .await
                    .expect("async logon over TLS");
            // Bob holds BTC: a sell far above the book rests.
            let order = limit_order(BTC_USDT, Side::Sell, 90_000_000_000, 10_000, 3);
            let request_id = client.send(&order).await.expect("send");
            client
                .recv_until(TIMEOUT, |m| match m {
                    Incoming::Msg(ServerMessage::Accepted(a)) if a.request_id == request_id => {
                        Some(*a)
                    }
                    Incoming::Msg(ServerMessage::Rejected(r)) if r.request_id == request_id => {
                        panic!("rejected: {r:?}")
                    }
                    _ => None,
                })
                .await
                .expect("accepted over TLS")
        });
    assert_eq!(accepted.client_order_id, 3);
    let report = server.stop().expect("stops");
    assert_eq!(report.engine.balance(ALICE, BTC).available, 10_000);
}

#[test]
fn a_plaintext_or_untrusting_client_is_closed_and_the_server_keeps_serving() {
    let certs = Certs::new();
    let server = tls_server(&certs);

    // Plaintext bytes where a ClientHello belongs: the server closes the connection (it
    // may first send a TLS alert); it never sends a logon challenge in the clear.
    let mut raw = std::net::TcpStream::connect(server.addr).unwrap();
    raw.set_read_timeout(Some(TIMEOUT)).unwrap();
    raw.write_all(b"\x10\x00\x00\x00plaintext bourse frame, not TLS").unwrap();
    let mut got = Vec::new();
    let end = raw.read_to_end(&mut got);
    assert!(
        end.is_ok() || matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the server closes a plaintext client, it does not leave it waiting: {end:?}"
    );
    assert!(got.len() < 64 && got.first().is_none_or(|b| *b == 0x15), "at most an alert: {got:?}");

    // A client that does not trust the server's certificate fails its handshake.
    let other = Certs::new();
    let err = connect_tls(&server, &other.client("localhost"), ALICE).expect_err("untrusted");
    assert!(matches!(err, ClientError::Io(_)), "{err:?}");
    // A name the certificate does not cover fails too.
    let err = connect_tls(&server, &certs.client("example.com"), ALICE).expect_err("bad name");
    assert!(matches!(err, ClientError::Io(_)), "{err:?}");

    // Others still log on and are served.
    let mut alice = connect_tls(&server, &certs.client("localhost"), ALICE).expect("logon");
    let request_id = alice.send(&ClientRequest::BalanceQuery).expect("send");
    expect(&mut alice, "balances", |m| match m {
        Incoming::Balances { request_id: id, .. } if *id == request_id => Some(()),
        _ => None,
    });
    server.stop().expect("stops");
}

#[test]
fn the_handshake_has_a_deadline_and_a_failed_one_frees_the_connection() {
    let certs = Certs::new();
    let files = certs.files.clone();
    let server = BackgroundServer::start(demo_config(|c| {
        c.server.tls = Some(files);
        c.gateway.connections_max = 2;
    }))
    .expect("server starts");
    // Two silent clients hold both connection slots until the handshake deadline.
    let silent: Vec<_> =
        (0..2).map(|_| std::net::TcpStream::connect(server.addr).unwrap()).collect();
    for mut s in silent {
        s.set_read_timeout(Some(TIMEOUT + bourse_net::tls::HANDSHAKE_DEADLINE)).unwrap();
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf);
        assert!(
            matches!(n, Ok(0))
                || matches!(&n, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "a client that never handshakes is closed: {n:?}"
        );
    }
    // Their slots are free again.
    let mut alice = connect_tls(&server, &certs.client("localhost"), ALICE).expect("logon");
    alice.send(&ClientRequest::Logout).unwrap();
    server.stop().expect("stops");
}

fn config_text(server: &str) -> String {
    format!("[server]\n{server}\n")
}

#[test]
fn plaintext_listens_only_on_loopback_unless_the_operator_allows_it() {
    let err = Config::from_toml(&config_text("listen = \"0.0.0.0:7400\"")).unwrap_err().0;
    assert!(err.contains("not a loopback address") && err.contains("[server.tls]"), "{err}");
    Config::from_toml(&config_text("listen = \"0.0.0.0:7400\"\nplaintext = \"allow\"")).unwrap();
    Config::from_toml(&config_text("listen = \"127.0.0.1:7400\"")).unwrap();
    // The server checks it too (`bourse --listen` overrides the file's address).
    let open = demo_config(|c| c.server.listen = "0.0.0.0:0".parse().unwrap());
    match BackgroundServer::start(open) {
        Err(bourse_net::server::ServerError::Config(e)) => {
            assert!(e.contains("server.plaintext"), "{e}")
        }
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(_) => panic!("a plaintext server on 0.0.0.0 must not start"),
    }

    let certs = Certs::new();
    let with_tls = |cert: &Path, key: &Path| {
        format!(
            "[server]\nlisten = \"0.0.0.0:7400\"\n[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        )
    };
    let config = Config::from_toml(&with_tls(&certs.files.cert_file, &certs.files.key_file))
        .expect("TLS on 0.0.0.0 is fine");
    assert!(config.server.tls.is_some());
    let missing = certs.dir.path().join("missing.pem");
    let err = Config::from_toml(&with_tls(&missing, &certs.files.key_file)).unwrap_err().0;
    assert!(err.contains("cert_file") && err.contains("missing.pem"), "{err}");
    // A key that is not the certificate's.
    let other = Certs::new();
    let err =
        Config::from_toml(&with_tls(&certs.files.cert_file, &other.files.key_file)).unwrap_err().0;
    assert!(err.contains("does not fit"), "{err}");
}

/// The demo config as a file, listening on every address with `[server.tls]` (or
/// without, to be refused).
fn daemon_config(certs: &Certs, tls: bool) -> PathBuf {
    let mut text = bourse_net::config::DEMO_TOML.to_string();
    let server = "[server]\n";
    let at = text.find(server).expect("the demo config has a [server] table");
    text.insert_str(
        at + server.len(),
        "listen = \"0.0.0.0:0\"\npin = false\nring_entries = 4096\n",
    );
    // Any later `listen`/`pin`/`ring_entries` of the demo's [server] would clash: drop them.
    let mut in_server = false;
    let mut seen = std::collections::HashSet::new();
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.starts_with('[') {
            in_server = line.trim() == "[server]";
        }
        let key = line.split('=').next().unwrap_or("").trim().to_string();
        if in_server
            && ["listen", "pin", "ring_entries"].contains(&key.as_str())
            && !seen.insert(key)
        {
            continue;
        }
        lines.push(line.to_string());
    }
    let mut text = lines.join("\n");
    if tls {
        text.push_str(&format!(
            "\n[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            certs.files.cert_file.display().to_string(),
            certs.files.key_file.display().to_string()
        ));
    }
    let path = certs.dir.path().join(if tls { "tls.toml" } else { "plain.toml" });
    std::fs::write(&path, text).unwrap();
    path
}

/// The real daemon binary: on 0.0.0.0 with TLS it serves a TLS session; without TLS it
/// refuses to start, and `--check-config` says why.
#[test]
fn the_daemon_serves_tls_on_every_address_and_refuses_plaintext_there() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let certs = Certs::new();

    let plain = daemon_config(&certs, false);
    let out = Command::new(env!("CARGO_BIN_EXE_bourse"))
        .arg("--config")
        .arg(&plain)
        .arg("--check-config")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "plaintext on 0.0.0.0 is refused: {stderr}");
    assert!(stderr.contains("server.plaintext = \"allow\""), "{stderr}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_bourse"))
        .arg("--config")
        .arg(daemon_config(&certs, true))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed on every path out of this test, panics included.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let _child = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("bourse: listening on ") {
                let _ = tx.send(addr.trim().parse::<std::net::SocketAddr>().unwrap());
            }
        }
    });
    let listening = rx.recv_timeout(TIMEOUT).expect("the daemon listens");
    assert!(listening.ip().is_unspecified(), "{listening}");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], listening.port()));
    let tls = certs.client("localhost");
    let mut alice =
        BlockingClient::connect_with(addr, LogonOptions::demo(ALICE), TIMEOUT, Some(&tls))
            .expect("logon over TLS to the daemon");
    let accepted = place(&mut alice, &limit_order(BTC_USDT, Side::Buy, 40_000_000_000, 10_000, 9));
    assert_eq!(accepted.client_order_id, 9);
}
