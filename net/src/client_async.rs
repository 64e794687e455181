//! The async client transport: [`ClientCodec`] over a monoio `TcpStream` (io_uring), for
//! load generators and clients that keep many sessions on one thread (`bourse-load`).
//!
//! The pieces, so a caller can put reading and writing in different tasks:
//!
//! - [`RequestBatch`] (sans-IO): requests encoded back to back into one buffer, each with
//!   the next request id, to be written with one socket write.
//! - [`FrameWriter`]: the write half; writes a whole batch buffer with one io_uring send.
//! - [`RequestWriter`]: a batch and a writer together (encode, encode, ..., `flush`).
//! - [`MessageReader`]: the read half; each `read_into` is one socket read, decoded by a
//!   `ClientCodec` into owned [`Incoming`] messages appended to the caller's vector.
//! - [`AsyncClient`]: connect and log on (challenge, HMAC, ack), then use it directly or
//!   `into_split` it.
//!
//! Nothing here allocates per message once warm: the batch buffer, the spare buffer that
//! swaps with it and the read buffer keep their capacity, `Incoming::Msg` holds no heap
//! data, and the caller reuses the output vector. (Messages with lists — balances, open
//! orders, book snapshots and updates — do allocate their lists; order flow has none.)
//! monoio hands buffers to the kernel by value, so the read buffer is copied once into
//! the codec's frame decoder; the codec's own `writable()` slice cannot be lent out to an
//! io_uring operation.
//!
//! Timeouts use monoio's timer: build the runtime with `enable_timer()`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use monoio::io::Splitable;
use monoio::net::tcp::{TcpOwnedReadHalf, TcpOwnedWriteHalf};
use monoio::net::TcpStream;

use crate::client::{ClientCodec, ClientError, Established, Incoming, LogonOptions};
use crate::protocol::{ClientRequest, LogonAck, RequestId, Seq, ServerMessage};
use crate::tls::{ReadBytes, WriteBytes};

/// Bytes one socket read takes at most.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Initial capacity of a batch buffer; it grows (once, during warm-up) if a batch needs
/// more, and keeps what it grew to.
pub const BATCH_BYTES_INITIAL: usize = 64 * 1024;
/// Largest batch [`RequestBatch::push`] builds: a caller that never flushes gets an error
/// instead of unbounded memory.
pub const BATCH_BYTES_MAX: usize = 16 << 20;

/// Requests encoded into one buffer for one write. Sans-IO: it only numbers and encodes.
pub struct RequestBatch {
    codec: ClientCodec,
    bytes: Vec<u8>,
    requests: usize,
}

impl std::fmt::Debug for RequestBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBatch")
            .field("requests", &self.requests)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Default for RequestBatch {
    fn default() -> Self {
        RequestBatch::new()
    }
}

impl RequestBatch {
    pub fn new() -> RequestBatch {
        RequestBatch {
            codec: ClientCodec::new(),
            bytes: Vec::with_capacity(BATCH_BYTES_INITIAL),
            requests: 0,
        }
    }

    /// Appends `request` with the next request id, which it returns. The id is what the
    /// server echoes as `request_id` in the reply.
    pub fn push(&mut self, request: &ClientRequest) -> Result<RequestId, ClientError> {
        if self.bytes.len() >= BATCH_BYTES_MAX {
            return Err(ClientError::Io(std::io::Error::other(format!(
                "request batch over {BATCH_BYTES_MAX} bytes: flush it"
            ))));
        }
        let id = self.codec.encode(request, &mut self.bytes)?;
        self.requests += 1;
        Ok(id)
    }

    /// Requests in the batch.
    pub fn len(&self) -> usize {
        self.requests
    }

    pub fn is_empty(&self) -> bool {
        self.requests == 0
    }

    /// Encoded bytes in the batch.
    pub fn bytes_len(&self) -> usize {
        self.bytes.len()
    }

    /// Hands the encoded bytes to the caller in `spare` (which must be empty) and keeps
    /// `spare`'s old buffer for the next batch: two buffers take turns, so a batch can be
    /// filled while the previous one is being written, and neither allocates.
    pub fn swap_out(&mut self, spare: &mut Vec<u8>) {
        assert!(spare.is_empty(), "the spare buffer must be empty");
        std::mem::swap(&mut self.bytes, spare);
        if self.bytes.capacity() == 0 {
            // The spare was lost (a cancelled write keeps its buffer): replace it once.
            self.bytes.reserve(BATCH_BYTES_INITIAL);
        }
        self.requests = 0;
    }
}

/// The sending side of a connection: plain TCP, or TLS over it.
enum WriteHalf {
    Plain(TcpOwnedWriteHalf),
    Tls(crate::tls::TlsWriteHalf),
}

/// The receiving side of a connection: plain TCP, or TLS over it.
enum ReadHalf {
    Plain(TcpOwnedReadHalf),
    Tls(crate::tls::TlsReadHalf),
}

impl ReadHalf {
    async fn read(&mut self, buf: Vec<u8>) -> monoio::BufResult<usize, Vec<u8>> {
        match self {
            ReadHalf::Plain(half) => half.read_bytes(buf).await,
            ReadHalf::Tls(half) => half.read_bytes(buf).await,
        }
    }
}

/// The write half of a connection.
pub struct FrameWriter {
    half: WriteHalf,
}

impl std::fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWriter").finish_non_exhaustive()
    }
}

impl FrameWriter {
    /// Writes all of `bytes` (one io_uring send; more only after a short write) and
    /// returns the buffer, cleared, for reuse.
    pub async fn write_all(&mut self, bytes: Vec<u8>) -> (Result<(), ClientError>, Vec<u8>) {
        let (result, mut bytes) = match &mut self.half {
            WriteHalf::Plain(half) => half.write_all_bytes(bytes).await,
            WriteHalf::Tls(half) => half.write_all_bytes(bytes).await,
        };
        bytes.clear();
        (result.map_err(ClientError::Io), bytes)
    }

    /// Shuts down the sending direction (the server sees end of stream).
    pub async fn shutdown(&mut self) -> Result<(), ClientError> {
        match &mut self.half {
            WriteHalf::Plain(half) => half.shutdown_bytes().await,
            WriteHalf::Tls(half) => half.shutdown_bytes().await,
        }
        .map_err(ClientError::Io)
    }
}

/// A batch and a write half together, for callers that encode and flush from one task.
pub struct RequestWriter {
    batch: RequestBatch,
    frames: FrameWriter,
    spare: Vec<u8>,
}

impl std::fmt::Debug for RequestWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestWriter").field("batch", &self.batch).finish_non_exhaustive()
    }
}

impl RequestWriter {
    /// Adds a request to the batch (nothing is sent until `flush`).
    pub fn encode(&mut self, request: &ClientRequest) -> Result<RequestId, ClientError> {
        self.batch.push(request)
    }

    /// Writes the batch with one write; returns the bytes written.
    pub async fn flush(&mut self) -> Result<usize, ClientError> {
        if self.batch.is_empty() {
            return Ok(0);
        }
        let mut out = std::mem::take(&mut self.spare);
        out.clear();
        self.batch.swap_out(&mut out);
        let n = out.len();
        let (result, out) = self.frames.write_all(out).await;
        self.spare = out;
        result.map(|()| n)
    }

    /// Encodes and sends one request.
    pub async fn send(&mut self, request: &ClientRequest) -> Result<RequestId, ClientError> {
        let id = self.encode(request)?;
        self.flush().await?;
        Ok(id)
    }

    /// The batch and the write half, for callers that fill the batch in one task and
    /// write it in another.
    pub fn into_parts(self) -> (RequestBatch, FrameWriter) {
        (self.batch, self.frames)
    }
}

/// The read half of a connection, decoding with a `ClientCodec`.
pub struct MessageReader {
    half: ReadHalf,
    codec: ClientCodec,
    buf: Vec<u8>,
    /// Messages decoded but not handed out yet (only `recv` leaves any here).
    inbox: VecDeque<(Seq, Incoming)>,
    scratch: Vec<(Seq, Incoming)>,
    /// Bytes of `buf` read but not decoded yet.
    unread: usize,
}

impl std::fmt::Debug for MessageReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageReader").field("codec", &self.codec).finish_non_exhaustive()
    }
}

impl MessageReader {
    fn new(half: ReadHalf) -> MessageReader {
        MessageReader {
            half,
            codec: ClientCodec::new(),
            buf: Vec::with_capacity(READ_BUFFER_BYTES),
            inbox: VecDeque::new(),
            scratch: Vec::new(),
            unread: 0,
        }
    }

    /// One socket read (unless messages from an earlier `recv` are waiting): every
    /// complete message is appended to `out`, in order; returns how many. Ok(0) means the
    /// read ended inside a frame. The end of the stream is `Err(Closed)`. A server
    /// `Logout` is handed out like any message (it is always the last one).
    pub async fn read_into(
        &mut self,
        out: &mut Vec<(Seq, Incoming)>,
    ) -> Result<usize, ClientError> {
        if !self.inbox.is_empty() {
            let n = self.inbox.len();
            out.extend(self.inbox.drain(..));
            return Ok(n);
        }
        self.read_bytes().await?;
        self.decode_into(out)
    }

    /// The first half of `read_into`: one socket read, kept for `decode_into`. Callers
    /// that timestamp arrivals read the clock between the two, so that decoding a large
    /// read does not count as waiting for it. Returns the bytes read; the end of the
    /// stream is `Err(Closed)`.
    pub async fn read_bytes(&mut self) -> Result<usize, ClientError> {
        if self.unread != 0 {
            return Err(ClientError::Io(std::io::Error::other(
                "read_bytes called again before decode_into",
            )));
        }
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() == 0 {
            // A read cancelled by a timeout took the buffer with it.
            buf.reserve(READ_BUFFER_BYTES);
        }
        buf.clear();
        let (result, buf) = self.half.read(buf).await;
        self.buf = buf;
        match result {
            Ok(0) => Err(ClientError::Closed),
            Ok(n) => {
                self.unread = n;
                Ok(n)
            }
            Err(e) => Err(ClientError::Io(e)),
        }
    }

    /// The second half of `read_into`: decodes the bytes of the last `read_bytes`,
    /// appending every complete message to `out`; returns how many.
    pub fn decode_into(&mut self, out: &mut Vec<(Seq, Incoming)>) -> Result<usize, ClientError> {
        let n = std::mem::take(&mut self.unread);
        let before = out.len();
        self.codec.push(&self.buf[..n], out)?;
        Ok(out.len() - before)
    }

    /// The next message, waiting up to `timeout`. A `Logout` is `Err(LoggedOut)`. After
    /// `Err(Timeout)` the connection is unusable: the cancelled read may have taken bytes
    /// off the socket that no one will decode.
    pub async fn recv(&mut self, timeout: Duration) -> Result<(Seq, Incoming), ClientError> {
        let deadline = monoio::time::Instant::now() + timeout;
        loop {
            if let Some(next) = self.inbox.pop_front() {
                if let Incoming::Msg(ServerMessage::Logout { reason }) = next.1 {
                    return Err(ClientError::LoggedOut(reason));
                }
                return Ok(next);
            }
            let mut scratch = std::mem::take(&mut self.scratch);
            let read = monoio::time::timeout_at(deadline, self.read_into(&mut scratch)).await;
            self.inbox.extend(scratch.drain(..));
            self.scratch = scratch;
            match read {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_elapsed) => return Err(ClientError::Timeout),
            }
        }
    }

    /// Highest sequence number received.
    pub fn last_seq(&self) -> Seq {
        self.codec.last_seq
    }
}

/// A logged-on connection.
pub struct AsyncClient {
    pub writer: RequestWriter,
    pub reader: MessageReader,
    pub established: Established,
}

impl std::fmt::Debug for AsyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncClient").field("established", &self.established).finish()
    }
}

impl AsyncClient {
    /// Connects and logs on; fails with the server's reason if the logon is refused. The
    /// logon takes request id 1, so the caller's first request has id 2.
    pub async fn connect(
        addr: SocketAddr,
        options: LogonOptions,
        timeout: Duration,
    ) -> Result<AsyncClient, ClientError> {
        AsyncClient::connect_with(addr, options, timeout, None).await
    }

    /// [`AsyncClient::connect`], over TLS when `tls` is given (the handshake, bounded by
    /// `timeout`, then the HMAC logon inside it).
    pub async fn connect_with(
        addr: SocketAddr,
        options: LogonOptions,
        timeout: Duration,
        tls: Option<&crate::tls::ClientTls>,
    ) -> Result<AsyncClient, ClientError> {
        let stream = match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
            Ok(stream) => stream?,
            Err(_elapsed) => return Err(ClientError::Timeout),
        };
        stream.set_nodelay(true)?;
        let (read_half, write_half) = match tls {
            None => {
                let (read, write) = stream.into_split();
                (ReadHalf::Plain(read), WriteHalf::Plain(write))
            }
            Some(tls) => {
                let handshake = crate::tls::connect(stream, tls);
                let (read, write) = match monoio::time::timeout(timeout, handshake).await {
                    Ok(halves) => halves?,
                    Err(_elapsed) => return Err(ClientError::Timeout),
                };
                (ReadHalf::Tls(read), WriteHalf::Tls(write))
            }
        };
        let mut client = AsyncClient {
            writer: RequestWriter {
                batch: RequestBatch::new(),
                frames: FrameWriter { half: write_half },
                spare: Vec::with_capacity(BATCH_BYTES_INITIAL),
            },
            reader: MessageReader::new(read_half),
            established: Established { ack: LogonAck::default() },
        };
        let nonce = ClientCodec::challenge_nonce(client.reader.recv(timeout).await?.1)?;
        client.writer.send(&ClientCodec::logon_request(&options, &nonce)).await?;
        let ack = ClientCodec::logon_outcome(client.reader.recv(timeout).await?.1)?;
        client.established = Established { ack };
        Ok(client)
    }

    /// Encodes and sends one request; returns its request id.
    pub async fn send(&mut self, request: &ClientRequest) -> Result<RequestId, ClientError> {
        self.writer.send(request).await
    }

    /// The next message, waiting up to `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Result<(Seq, Incoming), ClientError> {
        self.reader.recv(timeout).await
    }

    /// Waits for the first message `pick` accepts; the others are dropped.
    pub async fn recv_until<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&Incoming) -> Option<T>,
    ) -> Result<T, ClientError> {
        let deadline = monoio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(monoio::time::Instant::now());
            let (_, message) = self.reader.recv(left).await?;
            if let Some(found) = pick(&message) {
                return Ok(found);
            }
        }
    }

    /// The two halves, for a reader task and a writer task.
    pub fn into_split(self) -> (RequestWriter, MessageReader) {
        (self.writer, self.reader)
    }
}

#[cfg(test)]
mod tests {

    use bourse_engine::{OrderType, Side, StpMode, TimeInForce};

    use super::*;
    use crate::config::Config;
    use crate::protocol::NewOrder;
    use crate::server::BackgroundServer;

    const TIMEOUT: Duration = Duration::from_secs(10);
    /// A demo load-generator key (account 1001, richly funded).
    const LOAD_KEY: u64 = 1001;

    /// The demo exchange on an ephemeral port, unpinned, on its own threads.
    fn test_server() -> BackgroundServer {
        let mut config = Config::demo();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.pin = false;
        config.server.ring_entries = 4096;
        BackgroundServer::start(config).expect("server starts")
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("io_uring runtime")
            .block_on(future)
    }

    /// A post-only bid on BTC-USDT far below any ask: it rests and is acknowledged.
    fn quote(client_order_id: u64, ticks_below: u64) -> ClientRequest {
        ClientRequest::NewOrder(NewOrder {
            market: 1,
            client_order_id,
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            post_only: true,
            price: 40_000_000_000 - ticks_below * 10_000,
            qty: 10_000,
            quote_budget: 0,
            stp: StpMode::CancelTaker,
        })
    }

    #[test]
    fn logs_on_and_matches_acks_to_request_ids_in_a_batch() {
        let server = test_server();
        let addr = server.addr;
        let acked = block_on(async move {
            let mut client = AsyncClient::connect(addr, LogonOptions::demo(LOAD_KEY), TIMEOUT)
                .await
                .expect("logon");
            assert_eq!(client.established.ack.account, LOAD_KEY);
            assert!(client.established.ack.rate_per_sec > 0);
            // 100 requests in one write: each ack names its own request id.
            let mut ids = Vec::new();
            for i in 0..100u64 {
                ids.push(client.writer.encode(&quote(i + 1, i)).unwrap());
            }
            assert_eq!(ids[0], 2, "the logon took request id 1");
            let written = client.writer.flush().await.unwrap();
            assert!(written > 100 * 40, "one write of the whole batch: {written} bytes");
            let mut acked = Vec::new();
            while acked.len() < ids.len() {
                let (_, message) = client.recv(TIMEOUT).await.expect("ack");
                match message {
                    Incoming::Msg(ServerMessage::Accepted(a)) => {
                        // Client order id i + 1 went out with request id i + 2.
                        assert_eq!(a.request_id, a.client_order_id + 1);
                        acked.push(a.request_id);
                    }
                    Incoming::Msg(ServerMessage::Rejected(r)) => panic!("rejected: {r:?}"),
                    _ => {}
                }
            }
            acked
        });
        assert_eq!(acked, (2..102).collect::<Vec<_>>());
        let report = server.stop().expect("server stops cleanly");
        assert_eq!(report.engine.open_orders(LOAD_KEY).len(), 100);
    }

    #[test]
    fn split_halves_work_from_two_tasks() {
        let server = test_server();
        let addr = server.addr;
        let accepted = block_on(async move {
            let client = AsyncClient::connect(addr, LogonOptions::demo(LOAD_KEY), TIMEOUT)
                .await
                .expect("logon");
            let (writer, mut reader) = client.into_split();
            let (mut batch, mut frames) = writer.into_parts();
            let sender = monoio::spawn(async move {
                let mut spare = Vec::new();
                for round in 0..10u64 {
                    for i in 0..10 {
                        batch.push(&quote(round * 10 + i + 1, i)).unwrap();
                    }
                    assert_eq!(batch.len(), 10);
                    batch.swap_out(&mut spare);
                    assert!(batch.is_empty() && batch.bytes_len() == 0);
                    let (result, buf) = frames.write_all(spare).await;
                    result.unwrap();
                    assert!(buf.is_empty());
                    spare = buf;
                }
                frames
            });
            let mut accepted = 0;
            let mut out = Vec::new();
            while accepted < 100 {
                reader.read_into(&mut out).await.expect("read");
                for (_, message) in out.drain(..) {
                    if let Incoming::Msg(ServerMessage::Accepted(_)) = message {
                        accepted += 1;
                    }
                }
            }
            let mut frames = sender.await;
            frames.shutdown().await.unwrap();
            assert!(reader.last_seq() >= 100, "sequenced reports counted");
            accepted
        });
        assert_eq!(accepted, 100);
        drop(server);
    }

    #[test]
    fn a_wrong_secret_is_refused_with_the_reason() {
        let server = test_server();
        let addr = server.addr;
        let result = block_on(async move {
            let mut options = LogonOptions::demo(LOAD_KEY);
            options.secret[0] ^= 1;
            AsyncClient::connect(addr, options, TIMEOUT).await.map(|_| ())
        });
        match result {
            Err(ClientError::LogonRejected { reason, .. }) => {
                assert_eq!(reason, crate::protocol::SessionReason::BadSignature)
            }
            other => panic!("expected a logon reject, got {other:?}"),
        }
        drop(server);
    }

    #[test]
    fn connecting_to_a_closed_port_fails_instead_of_hanging() {
        // Bind and drop a listener: nothing listens on that port afterwards.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let result = block_on(async move {
            AsyncClient::connect(addr, LogonOptions::demo(LOAD_KEY), Duration::from_secs(2))
                .await
                .map(|_| ())
        });
        assert!(result.is_err(), "{result:?}");
    }
}
