//! Test harness: a gateway plus scripted clients that speak the real wire format
//! through the client-side codec, so every test goes through encode, frame, verify and
//! decode exactly as a real client would.
#![allow(dead_code)]

use bourse_engine::{
    AccountId, AssetId, Balance, BalanceChange, BalanceReason, DepthLevel, Event, EventKind,
    LogIndex, MarketId, Side,
};
use bourse_net::auth::{self, ApiKey, KeyId, KeyStore, Role};
use bourse_net::codec::{decode_server, DecodeScratch, Encoder};
use bourse_net::frame::{self, FrameDecoder};
use bourse_net::protocol::*;
use bourse_net::session::{Action, ConnId, Gateway, GatewayConfig};
use bourse_net::wire::PROTOCOL_VERSION;

pub const TRADER_A: KeyId = 1;
pub const ACCOUNT_A: AccountId = 100;
pub const TRADER_B: KeyId = 2;
pub const ACCOUNT_B: AccountId = 200;
/// A second key of account A (another trading program of the same owner).
pub const TRADER_A2: KeyId = 3;
pub const ADMIN: KeyId = 9;

pub fn secret(key_id: KeyId) -> [u8; 32] {
    [key_id as u8 ^ 0x3c; 32]
}

pub fn keys() -> KeyStore {
    KeyStore::new([
        ApiKey {
            key_id: TRADER_A,
            secret: secret(TRADER_A),
            role: Role::Trader { account: ACCOUNT_A },
        },
        ApiKey {
            key_id: TRADER_B,
            secret: secret(TRADER_B),
            role: Role::Trader { account: ACCOUNT_B },
        },
        ApiKey {
            key_id: TRADER_A2,
            secret: secret(TRADER_A2),
            role: Role::Trader { account: ACCOUNT_A },
        },
        ApiKey { key_id: ADMIN, secret: secret(ADMIN), role: Role::Admin },
    ])
    .unwrap()
}

/// A decoded server message that owns its lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Got {
    Msg(ServerMessage<'static>),
    Balances(RequestId, Vec<(AssetId, Balance)>),
    OpenOrders(RequestId, Vec<OpenOrderInfo>, bool),
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
        changes: Vec<LevelChange>,
    },
    Reference(RequestId, Vec<AssetInfo>, Vec<MarketInfo>, bool),
}

pub fn to_owned(message: ServerMessage<'_>) -> Got {
    use ServerMessage as M;
    Got::Msg(match message {
        M::Balances { request_id, balances } => {
            return Got::Balances(request_id, balances.to_vec())
        }
        M::OpenOrders { request_id, orders, truncated } => {
            return Got::OpenOrders(request_id, orders.to_vec(), truncated)
        }
        M::BookSnapshot { request_id, market, index, bids, asks } => {
            return Got::BookSnapshot {
                request_id,
                market,
                index,
                bids: bids.to_vec(),
                asks: asks.to_vec(),
            }
        }
        M::BookUpdate { market, index, changes, .. } => {
            return Got::BookUpdate { market, index, changes: changes.to_vec() }
        }
        M::Reference { request_id, assets, markets, truncated } => {
            return Got::Reference(request_id, assets.to_vec(), markets.to_vec(), truncated)
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

/// The client side of one connection.
pub struct Client {
    pub conn: ConnId,
    pub nonce: [u8; 32],
    decoder: FrameDecoder,
    encoder: Encoder,
    scratch: DecodeScratch,
    options: flatbuffers::VerifierOptions,
}

pub struct Harness {
    pub gw: Gateway,
    pub actions: Vec<Action>,
    pub now_ns: u64,
    nonces: u8,
}

impl Harness {
    pub fn new(config: GatewayConfig) -> Harness {
        Harness {
            gw: Gateway::new(config, keys(), 0).unwrap(),
            actions: Vec::new(),
            now_ns: 1_000,
            nonces: 0,
        }
    }

    pub fn with_defaults() -> Harness {
        Harness::new(GatewayConfig::default())
    }

    /// Opens a connection (from 127.0.0.1) and reads the logon challenge.
    pub fn connect(&mut self) -> Client {
        self.connect_from([127, 0, 0, 1])
    }

    /// Tries to open a connection from `ip` (a fresh port each time): the gateway's answer.
    pub fn try_connect_from(
        &mut self,
        ip: [u8; 4],
    ) -> Result<ConnId, bourse_net::session::ConnectError> {
        self.nonces = self.nonces.wrapping_add(1);
        let nonce = [self.nonces; 32];
        let peer = std::net::SocketAddr::from((ip, 10_000 + self.nonces as u16));
        self.gw.on_connect(self.now_ns, peer, nonce, &mut self.actions)
    }

    /// Opens a connection from `ip` and reads the logon challenge.
    pub fn connect_from(&mut self, ip: [u8; 4]) -> Client {
        self.try_client_from(ip).unwrap()
    }

    /// Like `connect_from`, or the gateway's refusal.
    pub fn try_client_from(
        &mut self,
        ip: [u8; 4],
    ) -> Result<Client, bourse_net::session::ConnectError> {
        let conn = self.try_connect_from(ip)?;
        let nonce = [self.nonces; 32];
        let mut client = Client {
            conn,
            nonce: [0; 32],
            decoder: FrameDecoder::new(frame::SERVER_FRAME_BYTES_MAX),
            encoder: Encoder::for_client(),
            scratch: DecodeScratch::default(),
            options: frame::verifier_options(frame::SERVER_FRAME_BYTES_MAX),
        };
        let got = self.read_all(&mut client);
        match got.as_slice() {
            [(0, Got::Msg(ServerMessage::LogonChallenge { nonce: n, protocol_version }))] => {
                assert_eq!(*protocol_version, PROTOCOL_VERSION);
                client.nonce = *n;
            }
            other => panic!("expected a challenge, got {other:?}"),
        }
        assert_eq!(client.nonce, nonce);
        Ok(client)
    }

    pub fn logon_request(
        client: &Client,
        key_id: KeyId,
        session_id: SessionId,
        resume_from_seq: Seq,
        cod: bool,
    ) -> ClientRequest {
        ClientRequest::Logon(Logon {
            protocol_version: PROTOCOL_VERSION,
            key_id,
            signature: auth::sign(&secret(key_id), &client.nonce, key_id),
            session_id,
            resume_from_seq,
            cancel_on_disconnect: cod,
        })
    }

    /// Connects and logs on; returns the client, the ack and what followed it (replay).
    pub fn logon(
        &mut self,
        key_id: KeyId,
        session_id: SessionId,
        resume_from_seq: Seq,
        cod: bool,
    ) -> (Client, LogonAck, Vec<(Seq, Got)>) {
        let mut client = self.connect();
        let request = Self::logon_request(&client, key_id, session_id, resume_from_seq, cod);
        self.send(&mut client, 1, &request);
        let mut got = self.read_all(&mut client);
        assert!(!got.is_empty(), "no answer to logon");
        match got.remove(0) {
            (0, Got::Msg(ServerMessage::LogonAck(ack))) => (client, ack, got),
            other => panic!("expected a logon ack, got {other:?}"),
        }
    }

    pub fn send(&mut self, client: &mut Client, request_id: RequestId, request: &ClientRequest) {
        let mut bytes = Vec::new();
        client.encoder.encode_client(request_id, request, &mut bytes).unwrap();
        self.send_raw(client, &bytes);
    }

    pub fn send_raw(&mut self, client: &mut Client, bytes: &[u8]) {
        self.gw.on_bytes(client.conn, self.now_ns, bytes, &mut self.actions);
    }

    /// Reads and decodes everything the gateway has for this client.
    pub fn read_all(&mut self, client: &mut Client) -> Vec<(Seq, Got)> {
        self.read_frames(client, usize::MAX)
    }

    /// Reads at most `frames_max` whole frames, leaving the rest unread in the gateway.
    pub fn read_frames(&mut self, client: &mut Client, frames_max: usize) -> Vec<(Seq, Got)> {
        let mut out = Vec::new();
        loop {
            let pending = self.gw.outbound(client.conn);
            // Take whole frames only, as many as allowed.
            let mut take = 0;
            let mut count = 0;
            while count < frames_max - out.len() {
                let Some(header) = pending.get(take..take + 4) else { break };
                let len = 4 + u32::from_le_bytes(header.try_into().unwrap()) as usize;
                if take + len > pending.len() {
                    break;
                }
                take += len;
                count += 1;
            }
            if take == 0 {
                return out;
            }
            let bytes = pending[..take].to_vec();
            self.gw.consume_outbound(client.conn, take, self.now_ns, &mut self.actions);
            assert_eq!(client.decoder.push(&bytes), bytes.len());
            while let Some(frame) = client.decoder.next_frame().unwrap() {
                let (seq, message) =
                    decode_server(frame, &client.options, &mut client.scratch).unwrap();
                out.push((seq, to_owned(message)));
            }
            if out.len() >= frames_max {
                return out;
            }
        }
    }

    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    pub fn tick(&mut self, advance_ns: u64) {
        self.now_ns += advance_ns;
        self.gw.on_tick(self.now_ns, &mut self.actions);
    }

    pub fn events(&mut self, origin: Option<bourse_net::session::Origin>, events: &[Event]) {
        self.gw.on_events(origin, events, self.now_ns, &mut self.actions);
    }
}

pub fn close_reason(actions: &[Action], conn: ConnId) -> Option<SessionReason> {
    actions.iter().find_map(|a| match a {
        Action::Close { conn: c, reason } if *c == conn => Some(*reason),
        _ => None,
    })
}

/// A balance-log event for `account` (index makes each one distinct).
pub fn balance_event(index: LogIndex, account: AccountId, available: u64) -> Event {
    Event {
        index,
        time_ns: index * 10,
        kind: EventKind::Balance(BalanceChange {
            account,
            asset: 1,
            delta_available: 1,
            delta_held: 0,
            available,
            held: 0,
            reason: BalanceReason::Deposit(index),
        }),
    }
}

pub fn trade_event(index: LogIndex, maker: AccountId, taker: AccountId) -> Event {
    Event {
        index,
        time_ns: index * 10,
        kind: EventKind::Trade(bourse_engine::Trade {
            trade_id: 77,
            market: 5,
            price: 50_000,
            qty: 3,
            taker_side: Side::Buy,
            maker_order_id: 11,
            taker_order_id: 12,
            maker_client_order_id: 111,
            taker_client_order_id: 112,
            maker_account: maker,
            taker_account: taker,
            maker_fee: 4,
            taker_fee: 9,
        }),
    }
}
