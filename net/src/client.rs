//! The Rust client library: what `bourse-cli`, `bourse-load` and the integration tests
//! use to talk to the exchange.
//!
//! [`ClientCodec`] is the sans-IO core (frames in, owned messages out; requests in,
//! frames out; the logon handshake; the last sequence number seen, for resume). Two
//! transports sit on it: [`BlockingClient`] over `std::net::TcpStream` (tools, tests) and
//! the async one in `bourse-load` (monoio). Every message the server sends comes out
//! as an owned [`Incoming`], so callers can keep it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bourse_engine::{AssetId, Balance, DepthLevel, LogIndex, MarketId};
use flatbuffers::VerifierOptions;
use sha2::{Digest, Sha256};

use crate::auth::{self, KeyId, SECRET_BYTES};
use crate::codec::{decode_server, DecodeError, DecodeScratch, EncodeError, Encoder};
use crate::frame::{self, FrameDecoder, FrameError};
use crate::protocol::*;
use crate::wire::PROTOCOL_VERSION;

/// The secret of demo key `key_id` in `net/config/demo.toml`:
/// SHA-256 of "bourse demo key {key_id}". Public, for the demo only.
pub fn demo_secret(key_id: KeyId) -> [u8; SECRET_BYTES] {
    Sha256::digest(format!("bourse demo key {key_id}").as_bytes()).into()
}

/// One server message, owning its lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// Every message without a list.
    Msg(ServerMessage<'static>),
    Balances {
        request_id: RequestId,
        balances: Vec<(AssetId, Balance)>,
    },
    OpenOrders {
        request_id: RequestId,
        orders: Vec<OpenOrderInfo>,
        truncated: bool,
    },
    BookSnapshot {
        request_id: RequestId,
        market: MarketId,
        index: LogIndex,
        bids: Vec<DepthLevel>,
        asks: Vec<DepthLevel>,
    },
    BookUpdate {
        market: MarketId,
        index: LogIndex,
        time_ns: u64,
        changes: Vec<LevelChange>,
    },
    Reference {
        request_id: RequestId,
        assets: Vec<AssetInfo>,
        markets: Vec<MarketInfo>,
        truncated: bool,
    },
}

impl Incoming {
    /// Copies a decoded message out of its scratch space.
    pub fn from_message(message: ServerMessage<'_>) -> Incoming {
        use ServerMessage as M;
        Incoming::Msg(match message {
            M::Balances { request_id, balances } => {
                return Incoming::Balances { request_id, balances: balances.to_vec() }
            }
            M::OpenOrders { request_id, orders, truncated } => {
                return Incoming::OpenOrders { request_id, orders: orders.to_vec(), truncated }
            }
            M::BookSnapshot { request_id, market, index, bids, asks } => {
                return Incoming::BookSnapshot {
                    request_id,
                    market,
                    index,
                    bids: bids.to_vec(),
                    asks: asks.to_vec(),
                }
            }
            M::BookUpdate { market, index, time_ns, changes } => {
                return Incoming::BookUpdate { market, index, time_ns, changes: changes.to_vec() }
            }
            M::Reference { request_id, assets, markets, truncated } => {
                return Incoming::Reference {
                    request_id,
                    assets: assets.to_vec(),
                    markets: markets.to_vec(),
                    truncated,
                }
            }
            M::LogonChallenge { nonce, protocol_version } => {
                M::LogonChallenge { nonce, protocol_version }
            }
            M::LogonAck(x) => M::LogonAck(x),
            M::LogonReject(x) => M::LogonReject(x),
            M::Logout { reason } => M::Logout { reason },
            M::Heartbeat { time_ns } => M::Heartbeat { time_ns },
            M::Accepted(x) => M::Accepted(x),
            M::Rejected(x) => M::Rejected(x),
            M::Trade(x) => M::Trade(x),
            M::Done(x) => M::Done(x),
            M::Amended(x) => M::Amended(x),
            M::MassCancelDone(x) => M::MassCancelDone(x),
            M::BalanceUpdate(x) => M::BalanceUpdate(x),
            M::PublicTrade(x) => M::PublicTrade(x),
            M::Status(x) => M::Status(x),
            M::AdminAck(x) => M::AdminAck(x),
        })
    }
}

/// How to log on.
#[derive(Clone, Copy, Debug)]
pub struct LogonOptions {
    pub key_id: KeyId,
    pub secret: [u8; SECRET_BYTES],
    /// 0 for a new session; otherwise the session to resume.
    pub session_id: SessionId,
    /// First sequence number not yet processed (0: replay nothing).
    pub resume_from_seq: Seq,
    pub cancel_on_disconnect: bool,
}

impl LogonOptions {
    /// A new session with a demo key.
    pub fn demo(key_id: KeyId) -> LogonOptions {
        LogonOptions {
            key_id,
            secret: demo_secret(key_id),
            session_id: 0,
            resume_from_seq: 0,
            cancel_on_disconnect: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame from the server: {0:?}")]
    Frame(FrameError),
    #[error("undecodable message from the server: {0:?}")]
    Decode(DecodeError),
    #[error("request does not encode: {0:?}")]
    Encode(EncodeError),
    #[error("logon refused: {reason} ({text})")]
    LogonRejected { reason: SessionReason, text: String, oldest_seq: Seq, next_seq: Seq },
    #[error("the server closed the connection: {0}")]
    LoggedOut(SessionReason),
    #[error("the server closed the connection")]
    Closed,
    #[error("unexpected message during logon: {0:?}")]
    Unexpected(Box<Incoming>),
    #[error("timed out waiting for the server")]
    Timeout,
}

/// The sans-IO client: framing, verification, decoding, encoding, sequence tracking.
pub struct ClientCodec {
    decoder: FrameDecoder,
    encoder: Encoder,
    scratch: DecodeScratch,
    verifier: VerifierOptions,
    next_request_id: RequestId,
    /// Highest sequence number received (0: none yet).
    pub last_seq: Seq,
}

impl std::fmt::Debug for ClientCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCodec").field("last_seq", &self.last_seq).finish_non_exhaustive()
    }
}

impl Default for ClientCodec {
    fn default() -> Self {
        ClientCodec::new()
    }
}

impl ClientCodec {
    pub fn new() -> ClientCodec {
        ClientCodec {
            decoder: FrameDecoder::new(frame::SERVER_FRAME_BYTES_MAX),
            encoder: Encoder::for_client(),
            scratch: DecodeScratch::default(),
            verifier: frame::verifier_options(frame::SERVER_FRAME_BYTES_MAX),
            next_request_id: 1,
            last_seq: 0,
        }
    }

    /// Appends `request`'s frame to `out` with a fresh request id, which it returns.
    pub fn encode(
        &mut self,
        request: &ClientRequest,
        out: &mut Vec<u8>,
    ) -> Result<RequestId, ClientError> {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.encoder.encode_client(request_id, request, out).map_err(ClientError::Encode)?;
        Ok(request_id)
    }

    /// The logon answering `challenge_nonce`.
    pub fn logon_request(options: &LogonOptions, nonce: &[u8; 32]) -> ClientRequest {
        ClientRequest::Logon(Logon {
            protocol_version: PROTOCOL_VERSION,
            key_id: options.key_id,
            signature: auth::sign(&options.secret, nonce, options.key_id),
            session_id: options.session_id,
            resume_from_seq: options.resume_from_seq,
            cancel_on_disconnect: options.cancel_on_disconnect,
        })
    }

    /// The nonce of the server's first message, which must be its logon challenge.
    pub fn challenge_nonce(first: Incoming) -> Result<[u8; 32], ClientError> {
        match first {
            Incoming::Msg(ServerMessage::LogonChallenge { nonce, .. }) => Ok(nonce),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// The server's answer to a logon: the ack, or why it refused.
    pub fn logon_outcome(answer: Incoming) -> Result<LogonAck, ClientError> {
        match answer {
            Incoming::Msg(ServerMessage::LogonAck(ack)) => Ok(ack),
            Incoming::Msg(ServerMessage::LogonReject(r)) => Err(ClientError::LogonRejected {
                reason: r.reason,
                text: r.reason.describe().to_string(),
                oldest_seq: r.oldest_seq,
                next_seq: r.next_seq,
            }),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// Buffer space to read socket bytes into; then `commit(n)`.
    pub fn writable(&mut self) -> &mut [u8] {
        self.decoder.writable()
    }

    pub fn commit(&mut self, n: usize) {
        self.decoder.commit(n)
    }

    /// Feeds bytes read from the socket.
    pub fn push(
        &mut self,
        mut bytes: &[u8],
        out: &mut Vec<(Seq, Incoming)>,
    ) -> Result<(), ClientError> {
        while !bytes.is_empty() {
            let taken = self.decoder.push(bytes);
            bytes = &bytes[taken..];
            self.drain(out)?;
        }
        Ok(())
    }

    /// Decodes every complete frame buffered so far.
    pub fn drain(&mut self, out: &mut Vec<(Seq, Incoming)>) -> Result<(), ClientError> {
        loop {
            let frame = match self.decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(e) => return Err(ClientError::Frame(e)),
            };
            let (seq, message) = decode_server(frame, &self.verifier, &mut self.scratch)
                .map_err(ClientError::Decode)?;
            if seq != 0 {
                self.last_seq = self.last_seq.max(seq);
            }
            out.push((seq, Incoming::from_message(message)));
        }
    }
}

/// What a logon established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Established {
    pub ack: LogonAck,
}

/// A blocking client over `std::net::TcpStream`.
pub struct BlockingClient {
    stream: crate::tls::BlockingStream,
    codec: ClientCodec,
    out: Vec<u8>,
    inbox: std::collections::VecDeque<(Seq, Incoming)>,
    scratch: Vec<(Seq, Incoming)>,
    pub established: Established,
}

impl std::fmt::Debug for BlockingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingClient")
            .field("established", &self.established)
            .finish_non_exhaustive()
    }
}

impl BlockingClient {
    /// Connects and logs on; fails with the server's reason if the logon is refused.
    pub fn connect(
        addr: SocketAddr,
        options: LogonOptions,
        timeout: Duration,
    ) -> Result<BlockingClient, ClientError> {
        BlockingClient::connect_with(addr, options, timeout, None)
    }

    /// [`BlockingClient::connect`], over TLS when `tls` is given (the handshake, then the
    /// HMAC logon inside it).
    pub fn connect_with(
        addr: SocketAddr,
        options: LogonOptions,
        timeout: Duration,
        tls: Option<&crate::tls::ClientTls>,
    ) -> Result<BlockingClient, ClientError> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        let stream = crate::tls::BlockingStream::open(stream, tls, timeout)?;
        let mut client = BlockingClient {
            stream,
            codec: ClientCodec::new(),
            out: Vec::with_capacity(4096),
            inbox: Default::default(),
            scratch: Vec::new(),
            // Replaced by the real ack below; never visible to callers.
            established: Established { ack: LogonAck::default() },
        };
        let nonce = ClientCodec::challenge_nonce(client.recv(timeout)?.1)?;
        client.send(&ClientCodec::logon_request(&options, &nonce))?;
        let ack = ClientCodec::logon_outcome(client.recv(timeout)?.1)?;
        client.established = Established { ack };
        Ok(client)
    }

    /// Sends one request; returns its request id.
    pub fn send(&mut self, request: &ClientRequest) -> Result<RequestId, ClientError> {
        self.out.clear();
        let id = self.codec.encode(request, &mut self.out)?;
        self.stream.write_all(&self.out)?;
        Ok(id)
    }

    /// Sends several requests in one write.
    pub fn send_batch(
        &mut self,
        requests: &[ClientRequest],
    ) -> Result<Vec<RequestId>, ClientError> {
        self.out.clear();
        let mut ids = Vec::with_capacity(requests.len());
        for request in requests {
            ids.push(self.codec.encode(request, &mut self.out)?);
        }
        self.stream.write_all(&self.out)?;
        Ok(ids)
    }

    /// The next message, waiting up to `timeout`. A server `Logout` is an error naming
    /// its reason.
    pub fn recv(&mut self, timeout: Duration) -> Result<(Seq, Incoming), ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(next) = self.inbox.pop_front() {
                if let Incoming::Msg(ServerMessage::Logout { reason }) = next.1 {
                    return Err(ClientError::LoggedOut(reason));
                }
                return Ok(next);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout);
            }
            self.stream.tcp().set_read_timeout(Some(left))?;
            let buf = self.codec.writable();
            let n = match self.stream.read(buf) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(ClientError::Timeout)
                }
                Err(e) => return Err(e.into()),
            };
            self.codec.commit(n);
            self.codec.drain(&mut self.scratch)?;
            self.inbox.extend(self.scratch.drain(..));
        }
    }

    /// Waits for the first message `pick` accepts, keeping the others for later `recv`s.
    pub fn recv_until<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&Incoming) -> Option<T>,
    ) -> Result<T, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Ok((seq, message)) => match pick(&message) {
                    Some(found) => break Ok(found),
                    None => skipped.push((seq, message)),
                },
                Err(e) => break Err(e),
            }
        };
        for item in skipped.into_iter().rev() {
            self.inbox.push_front(item);
        }
        result
    }

    /// Highest sequence number received.
    pub fn last_seq(&self) -> Seq {
        self.codec.last_seq
    }
}
