//! `bourse-cli --tls` against a real TLS server (the daemon's server on an ephemeral
//! loopback port, in this process) with a certificate made at test time.

use std::path::Path;
use std::process::Command;

use bourse_net::config::Config;
use bourse_net::server::BackgroundServer;
use bourse_net::tls::TlsFiles;

/// A CA and a server certificate for `localhost`/`127.0.0.1` signed by it, written to
/// `dir` as ca.pem, cert.pem and key.pem.
fn make_certs(dir: &Path) -> TlsFiles {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
    TlsFiles { cert_file: dir.join("cert.pem"), key_file: dir.join("key.pem") }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli(addr: &str, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_bourse-cli"))
        .args(["--addr", addr, "--timeout", "10"])
        .args(args)
        .output()
        .expect("bourse-cli runs");
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(output.stdout).expect("utf-8"),
        stderr: String::from_utf8(output.stderr).expect("utf-8"),
    }
}

#[test]
fn bourse_cli_speaks_tls_with_a_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_certs(dir.path());
    let mut config = Config::demo();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.pin = false;
    config.server.ring_entries = 4096;
    config.server.tls = Some(files);
    let server = BackgroundServer::start(config).expect("server starts");
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let by_ip = server.addr.to_string();
    let by_name = format!("localhost:{}", server.addr.port());

    // By name (the certificate's DNS name), and by IP address with the name given.
    let run = cli(&by_name, &["--tls", "--ca-file", ca, "balances"]);
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("USDT"), "alice's balances: {}", run.stdout);
    let run = cli(&by_ip, &["--tls", "--ca-file", ca, "--tls-name", "localhost", "markets"]);
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("BTC-USDT"), "{}", run.stdout);

    // A name the certificate does not carry: the handshake fails, exit 3, and it says why.
    let run = cli(&by_ip, &["--tls", "--ca-file", ca, "--tls-name", "example.com", "balances"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("TLS handshake"), "{}", run.stderr);
    // Plaintext to the TLS port: refused (exit 3) with a hint to add --tls.
    let run = cli(&by_ip, &["balances"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("--tls"), "{}", run.stderr);
    // A CA file that is not there is bad input (exit 2): nothing was sent.
    let run = cli(&by_ip, &["--tls", "--ca-file", "/nonexistent/ca.pem", "balances"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("/nonexistent/ca.pem"), "{}", run.stderr);
    // --ca-file alone asks for --tls.
    let run = cli(&by_ip, &["--ca-file", ca, "balances"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("--tls"), "{}", run.stderr);
    server.stop().expect("stops");
}
