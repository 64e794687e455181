//! One logged-on connection to the exchange, and the request/outcome exchange every
//! command uses.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use bourse_net::auth::{KeyId, SECRET_BYTES};
use bourse_net::client::{demo_secret, BlockingClient, ClientError, Incoming, LogonOptions};
use bourse_net::protocol::{ClientRequest, LogonAck, RequestId, ServerMessage, SessionReason};
use bourse_net::tls::ClientTls;

use super::catalog::Catalog;
use super::CliError;

/// Where and as whom to log on.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: String,
    pub key: KeyId,
    /// `None`: the demo secret of `key`.
    pub secret_hex: Option<String>,
    pub timeout: Duration,
    /// `Some`: speak TLS.
    pub tls: Option<TlsTarget>,
}

/// How to speak TLS to the exchange.
#[derive(Clone, Debug, Default)]
pub struct TlsTarget {
    /// CA certificates to trust (PEM); `None`: the system's bundle.
    pub ca_file: Option<std::path::PathBuf>,
    /// The name the certificate must carry; `None`: the host of the address.
    pub name: Option<String>,
}

/// The host part of "host:port" ("[::1]:7400" gives "::1").
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn client_tls(target: &Target) -> Result<Option<ClientTls>, CliError> {
    let Some(tls) = &target.tls else { return Ok(None) };
    let name = tls.name.as_deref().unwrap_or_else(|| host_of(&target.addr));
    ClientTls::new(tls.ca_file.as_deref(), name).map(Some).map_err(|e| {
        CliError::Input(format!("--tls: {e} (give the server's CA with --ca-file FILE)"))
    })
}

/// A logged-on connection with the exchange's reference data.
pub struct Conn {
    client: BlockingClient,
    pub catalog: Catalog,
    pub timeout: Duration,
    pub ack: LogonAck,
}

/// What came back for a batch of requests.
#[derive(Debug)]
pub struct Exchanged {
    /// The request id of each request, in order.
    pub ids: Vec<RequestId>,
    /// Every message that arrived before the barrier's reply, in order.
    pub messages: Vec<Incoming>,
}

impl Exchanged {
    /// The first message `pick` accepts.
    pub fn find<T>(&self, pick: impl FnMut(&Incoming) -> Option<T>) -> Option<T> {
        self.messages.iter().find_map(pick)
    }
}

fn parse_secret(hex_text: &str) -> Result<[u8; SECRET_BYTES], CliError> {
    let bytes = hex::decode(hex_text.trim()).map_err(|e| {
        CliError::Input(format!(
            "the secret (--secret, --secret-file or BOURSE_SECRET) is not hex ({e}); \
             give {SECRET_BYTES} bytes as hex"
        ))
    })?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        CliError::Input(format!(
            "the secret (--secret, --secret-file or BOURSE_SECRET) has {} bytes; a key secret has {SECRET_BYTES} ({} hex digits)",
            b.len(),
            SECRET_BYTES * 2
        ))
    })
}

fn resolve(addr: &str) -> Result<SocketAddr, CliError> {
    let mut addrs = addr.to_socket_addrs().map_err(|e| {
        CliError::Input(format!("--addr {addr:?} is not a host:port address ({e})"))
    })?;
    addrs.next().ok_or_else(|| CliError::Input(format!("--addr {addr:?} resolves to nothing")))
}

/// A connect or logon failure, in words, with what to check.
fn connect_error(target: &Target, error: ClientError) -> CliError {
    let addr = &target.addr;
    let secs = target.timeout.as_secs();
    CliError::Connection(match error {
        ClientError::Io(e) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                format!("cannot connect to {addr}: connection refused — is `make run` running?")
            }
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => format!(
                "cannot connect to {addr}: no answer within {secs} s — is the address right?"
            ),
            std::io::ErrorKind::InvalidData if target.tls.is_some() => {
                format!("TLS handshake with {addr} failed: {e} — check --ca-file and --tls-name")
            }
            _ => format!("cannot connect to {addr}: {e}"),
        },
        ClientError::LogonRejected { reason, .. } => {
            let hint = match reason {
                SessionReason::UnknownKey | SessionReason::BadSignature => {
                    " — check --key and --secret (or --secret-file, BOURSE_SECRET)"
                }
                _ => "",
            };
            format!(
                "logon refused for key {}: {} ({reason:?}, session code {}){hint}",
                target.key,
                reason.describe(),
                reason.code()
            )
        }
        ClientError::Timeout | ClientError::Closed if target.tls.is_none() => format!(
            "{addr} did not complete the logon within {secs} s — is it a bourse server? (does \
             it speak TLS? then add --tls)"
        ),
        ClientError::Timeout => {
            format!("{addr} did not complete the logon within {secs} s — is it a bourse server?")
        }
        ClientError::Frame(_) | ClientError::Decode(_) | ClientError::Unexpected(_) => {
            format!("{addr} does not speak the bourse protocol: {error}")
        }
        other => format!("logon at {addr} failed: {other}"),
    })
}

/// A failure after the logon, in words.
fn lost(error: ClientError, timeout: Duration) -> CliError {
    CliError::Connection(match error {
        ClientError::LoggedOut(reason) => format!(
            "the exchange closed the connection: {} ({reason:?}, session code {})",
            reason.describe(),
            reason.code()
        ),
        ClientError::Closed => "the exchange closed the connection".to_string(),
        ClientError::Timeout => {
            format!("no answer from the exchange within {} s", timeout.as_secs())
        }
        other => format!("connection to the exchange failed: {other}"),
    })
}

impl Conn {
    /// Connects, logs on and fetches the reference data.
    pub fn open(target: &Target) -> Result<Conn, CliError> {
        let secret = match &target.secret_hex {
            Some(text) => parse_secret(text)?,
            None => demo_secret(target.key),
        };
        let addr = resolve(&target.addr)?;
        let options = LogonOptions { secret, ..LogonOptions::demo(target.key) };
        let tls = client_tls(target)?;
        let client = BlockingClient::connect_with(addr, options, target.timeout, tls.as_ref())
            .map_err(|e| connect_error(target, e))?;
        let ack = client.established.ack;
        let mut conn = Conn { client, catalog: Catalog::default(), timeout: target.timeout, ack };
        conn.exchange(&[])?;
        Ok(conn)
    }

    /// Sends `requests`, then a `ReferenceQuery` in the same write, and collects every
    /// message up to the reference reply (which refreshes the catalog). The exchange
    /// answers queries in order with commands, so everything the requests caused is in
    /// the result.
    pub fn exchange(&mut self, requests: &[ClientRequest]) -> Result<Exchanged, CliError> {
        let mut batch = requests.to_vec();
        batch.push(ClientRequest::ReferenceQuery);
        let mut ids = self.client.send_batch(&batch).map_err(|e| lost(e, self.timeout))?;
        let barrier = ids.pop().expect("the barrier was sent");
        let deadline = Instant::now() + self.timeout;
        let mut messages = Vec::new();
        loop {
            let message = self.recv(deadline)?;
            match message {
                Incoming::Reference { request_id, assets, markets, truncated }
                    if request_id == barrier =>
                {
                    self.catalog = Catalog { assets, markets, truncated };
                    return Ok(Exchanged { ids, messages });
                }
                Incoming::Msg(ServerMessage::Rejected(r)) if r.request_id == barrier => {
                    return Err(CliError::Connection(format!(
                        "the exchange refused the reference query: {}",
                        super::render::reject_reason(&r)
                    )));
                }
                other => messages.push(other),
            }
        }
    }

    /// The next message before `deadline`; heartbeats are skipped.
    pub fn recv(&mut self, deadline: Instant) -> Result<Incoming, CliError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (_, message) = self.client.recv(left).map_err(|e| lost(e, self.timeout))?;
            if !matches!(message, Incoming::Msg(ServerMessage::Heartbeat { .. })) {
                return Ok(message);
            }
        }
    }

    /// The next message within `wait`, or `None` when nothing came (heartbeats count as
    /// nothing). For streaming.
    pub fn poll(&mut self, wait: Duration) -> Result<Option<Incoming>, CliError> {
        match self.client.recv(wait) {
            Ok((_, Incoming::Msg(ServerMessage::Heartbeat { .. }))) => Ok(None),
            Ok((_, message)) => Ok(Some(message)),
            Err(ClientError::Timeout) => Ok(None),
            Err(e) => Err(lost(e, self.timeout)),
        }
    }

    /// Sends one request without waiting; returns its request id.
    pub fn send(&mut self, request: &ClientRequest) -> Result<RequestId, CliError> {
        self.client.send(request).map_err(|e| lost(e, self.timeout))
    }

    /// Logs out (best effort: the command's outcome is already known).
    pub fn close(mut self) {
        let _ = self.client.send(&ClientRequest::Logout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_must_be_32_hex_bytes() {
        let good = "ab".repeat(32);
        assert_eq!(parse_secret(&good).unwrap(), [0xab; 32]);
        let err = parse_secret("abc").unwrap_err().to_string();
        assert!(err.contains("not hex"), "{err}");
        let err = parse_secret("abcd").unwrap_err().to_string();
        assert!(err.contains("has 2 bytes") && err.contains("64 hex digits"), "{err}");
    }

    #[test]
    fn the_tls_name_defaults_to_the_host() {
        assert_eq!(host_of("localhost:7400"), "localhost");
        assert_eq!(host_of("10.0.0.5:7400"), "10.0.0.5");
        assert_eq!(host_of("[::1]:7400"), "::1");
    }

    #[test]
    fn addresses_must_parse() {
        assert!(resolve("127.0.0.1:7400").is_ok());
        let err = resolve("nonsense").unwrap_err().to_string();
        assert!(err.contains("--addr \"nonsense\""), "{err}");
    }

    #[test]
    fn a_closed_port_says_what_to_check() {
        // Bind then drop a listener: its port is very likely closed right after.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let target = Target {
            addr: format!("127.0.0.1:{port}"),
            key: 200,
            secret_hex: None,
            timeout: Duration::from_secs(2),
            tls: None,
        };
        let err = Conn::open(&target).err().expect("nothing listens there");
        let text = err.to_string();
        assert!(text.contains("connection refused — is `make run` running?"), "{text}");
        assert_eq!(err.exit_code(), 3);
    }
}
