//! TLS on the client port (rustls with the `ring` provider, TLS 1.2 and 1.3).
//!
//! The server side is configured by PEM certificate-chain and private-key files
//! (`[server.tls]`), handshakes on the net core through `monoio-rustls`, and bounds
//! each handshake by [`HANDSHAKE_DEADLINE`]. The logon inside stays HMAC-authenticated:
//! TLS adds confidentiality and integrity of the whole session, the HMAC still says which
//! key it is. The client side trusts the CA certificates of a PEM file (`--ca-file`) or,
//! without one, the system's bundle.
//!
//! The async side ([`handshake`], [`TlsReadHalf`], [`TlsWriteHalf`]) is a small adapter
//! of rustls onto monoio's owned-buffer TCP halves, written here rather than taken from
//! `monoio-rustls`, which turns on monoio's default features (the `legacy` driver among
//! them changes how `TcpListener::bind` works outside a runtime, breaking the server). The
//! two halves share the rustls connection through an `Rc<RefCell<_>>` that is never
//! borrowed across an await, so the server's reader and writer tasks run over TLS
//! exactly as over plain TCP ([`ReadBytes`], [`WriteBytes`]). Alerts or key updates the
//! reading side produces go out with the writer's next write.

use std::cell::RefCell;
use std::io::{BufRead, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::tcp::{TcpOwnedReadHalf, TcpOwnedWriteHalf};
use monoio::BufResult;
use rustls::Connection;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, StreamOwned};
use serde::Deserialize;

/// How long a client has to complete the TLS handshake after its TCP connect; then the
/// connection is dropped (it never reached the gateway, so it costs nothing more).
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);

/// Where the system keeps its CA bundle (Debian/Ubuntu, and most others by symlink);
/// the client's default trust when no CA file is given.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `[server.tls]`: the server's certificate chain and private key, PEM files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain, leaf first (PEM).
    pub cert_file: PathBuf,
    /// Private key of the leaf certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// `server.plaintext`: where the client port may run without TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plaintext {
    /// Only on a loopback address (the default): anything else needs `[server.tls]`.
    #[default]
    Loopback,
    /// On any address: the operator protects the network path some other way.
    Allow,
}

/// Whether a listen address may serve plaintext under `policy`; the error says what to
/// do about it.
pub fn check_plaintext(listen: std::net::SocketAddr, policy: Plaintext) -> Result<(), String> {
    if policy == Plaintext::Allow || listen.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "server.listen = \"{listen}\" is not a loopback address and has no TLS: anyone on the \
         path could read or inject into sessions. Add [server.tls] cert_file and key_file \
         (PEM), listen on 127.0.0.1, or set server.plaintext = \"allow\" if the network is \
         protected some other way"
    ))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// The server's TLS configuration from its files; the error names the file and what is
/// wrong with it.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let certs = read_certs(&files.cert_file, "server.tls.cert_file")?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| format!("server.tls.key_file {}: {e}", files.key_file.display()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "server.tls: the key in {} does not fit the certificate in {}: {e}",
                files.key_file.display(),
                files.cert_file.display()
            )
        })?;
    Ok(Arc::new(config))
}

/// What a client needs to speak TLS: whom it trusts and the name it expects.
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl ClientTls {
    /// Trusts the CA certificates in `ca_file` (PEM), or the system bundle without one,
    /// and expects the server's certificate to name `server_name` (a DNS name or an IP
    /// address).
    pub fn new(ca_file: Option<&Path>, server_name: &str) -> Result<ClientTls, String> {
        let ca_file = ca_file.unwrap_or(Path::new(SYSTEM_CA_FILE));
        let mut roots = RootCertStore::empty();
        for cert in read_certs(ca_file, "CA file")? {
            roots.add(cert).map_err(|e| format!("CA file {}: {e}", ca_file.display()))?;
        }
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| format!("TLS server name {server_name:?}: {e}"))?;
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls { config: Arc::new(config), server_name })
    }

    /// The server name for an address when none is given: its IP address.
    pub fn name_of(ip: IpAddr) -> String {
        ip.to_string()
    }
}

/// A blocking client's byte stream: plain TCP or TLS over it.
pub enum BlockingStream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl std::fmt::Debug for BlockingStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BlockingStream::Plain(_) => "BlockingStream::Plain",
            BlockingStream::Tls(_) => "BlockingStream::Tls",
        })
    }
}

impl BlockingStream {
    /// Wraps a connected socket; with TLS, completes the handshake (bounded by the
    /// socket's timeouts, set from `timeout`).
    pub fn open(
        tcp: TcpStream,
        tls: Option<&ClientTls>,
        timeout: Duration,
    ) -> std::io::Result<BlockingStream> {
        let Some(tls) = tls else { return Ok(BlockingStream::Plain(tcp)) };
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let conn = ClientConnection::new(tls.config.clone(), tls.server_name.clone())
            .map_err(std::io::Error::other)?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(BlockingStream::Tls(Box::new(stream)))
    }

    /// The socket under it (timeouts).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            BlockingStream::Plain(s) => s,
            BlockingStream::Tls(s) => &s.sock,
        }
    }
}

impl Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            BlockingStream::Plain(s) => s.read(buf),
            BlockingStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for BlockingStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            BlockingStream::Plain(s) => s.write(buf),
            BlockingStream::Tls(s) => s.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            BlockingStream::Plain(s) => s.write_all(buf),
            BlockingStream::Tls(s) => {
                s.write_all(buf)?;
                s.flush()
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            BlockingStream::Plain(s) => s.flush(),
            BlockingStream::Tls(s) => s.flush(),
        }
    }
}

/// Bytes ciphertext reads take at most (a TLS record is at most ~16.7 KiB).
const TLS_READ_BYTES: usize = 32 * 1024;

/// The receiving side of a connection, for the net core's and the async client's loops:
/// plain TCP, or TLS over it.
#[allow(async_fn_in_trait)]
pub trait ReadBytes {
    /// Appends what arrived (at most `buf`'s spare capacity) to `buf`; Ok(0) is the end
    /// of the stream.
    async fn read_bytes(&mut self, buf: Vec<u8>) -> BufResult<usize, Vec<u8>>;
}

/// The sending side of a connection: plain TCP, or TLS over it.
#[allow(async_fn_in_trait)]
pub trait WriteBytes {
    /// Sends all of `buf`.
    async fn write_all_bytes(&mut self, buf: Vec<u8>) -> BufResult<(), Vec<u8>>;
    /// Ends the sending direction (TLS: after a close_notify).
    async fn shutdown_bytes(&mut self) -> std::io::Result<()>;
}

impl ReadBytes for TcpOwnedReadHalf {
    #[inline]
    async fn read_bytes(&mut self, buf: Vec<u8>) -> BufResult<usize, Vec<u8>> {
        self.read(buf).await
    }
}

impl WriteBytes for TcpOwnedWriteHalf {
    #[inline]
    async fn write_all_bytes(&mut self, buf: Vec<u8>) -> BufResult<(), Vec<u8>> {
        let (result, buf) = self.write_all(buf).await;
        (result.map(|_| ()), buf)
    }

    async fn shutdown_bytes(&mut self) -> std::io::Result<()> {
        self.shutdown().await
    }
}

fn tls_error(e: rustls::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// The reading half of a TLS connection over monoio TCP.
pub struct TlsReadHalf {
    tcp: TcpOwnedReadHalf,
    conn: Rc<RefCell<Connection>>,
    /// Ciphertext read from the socket; `net[pos..]` is not yet given to rustls.
    net: Vec<u8>,
    pos: usize,
}

/// The writing half of a TLS connection over monoio TCP.
pub struct TlsWriteHalf {
    tcp: TcpOwnedWriteHalf,
    conn: Rc<RefCell<Connection>>,
    /// Ciphertext to send, reused.
    out: Vec<u8>,
}

impl std::fmt::Debug for TlsReadHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsReadHalf")
    }
}

impl std::fmt::Debug for TlsWriteHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsWriteHalf")
    }
}

impl TlsReadHalf {
    /// Gives rustls the next piece of pending ciphertext, or reads more from the socket;
    /// Ok(false) at the end of the stream.
    async fn pump(&mut self) -> std::io::Result<bool> {
        if self.pos < self.net.len() {
            let mut conn = self.conn.borrow_mut();
            let mut pending = &self.net[self.pos..];
            let taken = conn.read_tls(&mut pending)?;
            if taken == 0 {
                // rustls takes nothing only when its buffers are full: never loop on it.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "TLS: the peer's records overflow the receive buffer",
                ));
            }
            self.pos += taken;
            conn.process_new_packets().map_err(tls_error)?;
            return Ok(true);
        }
        let mut net = std::mem::take(&mut self.net);
        net.clear();
        if net.capacity() == 0 {
            net.reserve(TLS_READ_BYTES);
        }
        self.pos = 0;
        let (result, net) = self.tcp.read(net).await;
        self.net = net;
        Ok(result? > 0)
    }
}

impl ReadBytes for TlsReadHalf {
    async fn read_bytes(&mut self, mut buf: Vec<u8>) -> BufResult<usize, Vec<u8>> {
        loop {
            {
                let mut conn = self.conn.borrow_mut();
                let mut reader = conn.reader();
                match reader.fill_buf() {
                    Ok(chunk) => {
                        // Empty: the peer closed the session cleanly (close_notify).
                        let n = chunk.len().min(buf.capacity() - buf.len());
                        buf.extend_from_slice(&chunk[..n]);
                        reader.consume(n);
                        return (Ok(n), buf);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return (Err(e), buf),
                }
            }
            match self.pump().await {
                Ok(true) => {}
                Ok(false) => return (Ok(0), buf),
                Err(e) => return (Err(e), buf),
            }
        }
    }
}

impl TlsWriteHalf {
    /// Sends every TLS record rustls has queued.
    async fn flush_tls(&mut self) -> std::io::Result<()> {
        loop {
            self.out.clear();
            {
                let mut conn = self.conn.borrow_mut();
                while conn.wants_write() {
                    conn.write_tls(&mut self.out)?;
                }
            }
            if self.out.is_empty() {
                return Ok(());
            }
            let out = std::mem::take(&mut self.out);
            let (result, out) = self.tcp.write_all(out).await;
            self.out = out;
            result?;
        }
    }
}

impl WriteBytes for TlsWriteHalf {
    async fn write_all_bytes(&mut self, buf: Vec<u8>) -> BufResult<(), Vec<u8>> {
        let mut done = 0;
        while done < buf.len() {
            {
                let mut conn = self.conn.borrow_mut();
                // rustls takes what fits under its send-buffer limit.
                match conn.writer().write(&buf[done..]) {
                    Ok(n) => done += n,
                    Err(e) => return (Err(e), buf),
                }
            }
            if let Err(e) = self.flush_tls().await {
                return (Err(e), buf);
            }
        }
        (Ok(()), buf)
    }

    async fn shutdown_bytes(&mut self) -> std::io::Result<()> {
        self.conn.borrow_mut().send_close_notify();
        self.flush_tls().await?;
        self.tcp.shutdown().await
    }
}

/// Runs a TLS handshake (either side) over `tcp` and returns the connection's halves.
/// The caller bounds it in time. On failure the alert rustls queued is sent (best
/// effort) before the error returns.
pub async fn handshake(
    tcp: monoio::net::TcpStream,
    conn: Connection,
) -> std::io::Result<(TlsReadHalf, TlsWriteHalf)> {
    let (read, write) = tcp.into_split();
    let conn = Rc::new(RefCell::new(conn));
    let mut reader = TlsReadHalf {
        tcp: read,
        conn: conn.clone(),
        net: Vec::with_capacity(TLS_READ_BYTES),
        pos: 0,
    };
    let mut writer = TlsWriteHalf { tcp: write, conn: conn.clone(), out: Vec::new() };
    loop {
        writer.flush_tls().await?;
        if !conn.borrow().is_handshaking() {
            return Ok((reader, writer));
        }
        match reader.pump().await {
            Ok(true) => {}
            Ok(false) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the TLS handshake",
                ))
            }
            Err(e) => {
                let _ = writer.flush_tls().await;
                return Err(e);
            }
        }
    }
}

/// The server side of a handshake with `config`.
pub async fn accept(
    tcp: monoio::net::TcpStream,
    config: Arc<ServerConfig>,
) -> std::io::Result<(TlsReadHalf, TlsWriteHalf)> {
    let conn = rustls::ServerConnection::new(config).map_err(tls_error)?;
    handshake(tcp, Connection::Server(conn)).await
}

/// The client side of a handshake with `tls`.
pub async fn connect(
    tcp: monoio::net::TcpStream,
    tls: &ClientTls,
) -> std::io::Result<(TlsReadHalf, TlsWriteHalf)> {
    let conn =
        ClientConnection::new(tls.config.clone(), tls.server_name.clone()).map_err(tls_error)?;
    handshake(tcp, Connection::Client(conn)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_only_on_loopback_unless_allowed() {
        let any = "0.0.0.0:7400".parse().unwrap();
        let err = check_plaintext(any, Plaintext::Loopback).unwrap_err();
        assert!(err.contains("[server.tls]") && err.contains("plaintext = \"allow\""), "{err}");
        assert!(check_plaintext(any, Plaintext::Allow).is_ok());
        assert!(check_plaintext("127.0.0.1:7400".parse().unwrap(), Plaintext::Loopback).is_ok());
        assert!(check_plaintext("[::1]:7400".parse().unwrap(), Plaintext::Loopback).is_ok());
    }

    #[test]
    fn missing_files_are_named() {
        let files = TlsFiles {
            cert_file: "/nonexistent/cert.pem".into(),
            key_file: "/nonexistent/key.pem".into(),
        };
        let err = server_config(&files).unwrap_err();
        assert!(err.contains("server.tls.cert_file /nonexistent/cert.pem"), "{err}");
        let err = ClientTls::new(Some(Path::new("/nonexistent/ca.pem")), "localhost").unwrap_err();
        assert!(err.contains("CA file /nonexistent/ca.pem"), "{err}");
    }
}
