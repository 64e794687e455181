//! The harness behind the `frame_decoder` cargo-fuzz target (net/fuzz) and the stable
//! proptests that run it without nightly (net/tests/frames.rs). Public so both call the
//! same code; not part of the protocol API.
//!
//! The first input byte is a control byte (read sizes, cancel-on-disconnect); the rest is
//! the byte stream. The stream goes through every inbound path: the frame decoder (split
//! into reads of a control-chosen size), the verifier, both typed decoders, and a whole
//! gateway, once before logon and once right after a valid logon so that logged-on
//! request handling is reached too. Nothing may panic, and the gateway's bounds must hold.

use bourse_engine::Command;

use crate::auth::{self, ApiKey, KeyStore, Role, NONCE_BYTES};
use crate::codec::{decode_client, decode_server, DecodeScratch, Encoder};
use crate::frame::{self, FrameDecoder};
use crate::protocol::{ClientRequest, Logon};
use crate::session::{Action, Gateway, GatewayConfig, CONTROL_RESERVE_BYTES};
use crate::wire::PROTOCOL_VERSION;

const FUZZ_KEY_ID: u64 = 7;
const FUZZ_SECRET: [u8; 32] = [0x5a; 32];
const FUZZ_NONCE: [u8; NONCE_BYTES] = [0xa5; NONCE_BYTES];

/// Runs one fuzz input: a control byte, then the byte stream. Panics only if the code
/// under test misbehaves.
pub fn frame_decoder(data: &[u8]) {
    let (control, stream) = data.split_first().map_or((0, data), |(c, s)| (*c, s));
    decode_stream(control, stream, frame::FRAME_BYTES_MAX);
    decode_stream(control, stream, 64);
    drive_gateway(control, stream, false);
    drive_gateway(control, stream, true);
}

/// Splits `stream` into reads whose size comes from the control byte, so the fuzzer
/// also explores how frames straddle reads.
fn chunks(control: u8, stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    stream.chunks((control as usize % 61) + 1)
}

fn decode_stream(control: u8, stream: &[u8], frame_bytes_max: usize) {
    let mut decoder = FrameDecoder::new(frame_bytes_max);
    let options = frame::verifier_options(frame_bytes_max);
    let server_options = frame::verifier_options(frame::SERVER_FRAME_BYTES_MAX);
    let mut scratch = DecodeScratch::default();
    for chunk in chunks(control, stream) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let taken = decoder.push(rest);
            rest = &rest[taken..];
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => {
                        assert!(frame.len() <= frame::FRAME_HEADER_BYTES + frame_bytes_max);
                        let _ = frame::verify(frame, &options);
                        let _ = decode_client(frame, &options);
                        let _ = decode_server(frame, &server_options, &mut scratch);
                    }
                    Ok(None) => break,
                    // A framing error ends the stream for good.
                    Err(_) => return,
                }
            }
            if taken == 0 {
                return;
            }
        }
    }
}

fn drive_gateway(control: u8, stream: &[u8], log_on_first: bool) {
    let key =
        ApiKey { key_id: FUZZ_KEY_ID, secret: FUZZ_SECRET, role: Role::Trader { account: 1 } };
    let admin = ApiKey { key_id: FUZZ_KEY_ID + 1, secret: FUZZ_SECRET, role: Role::Admin };
    let Ok(keys) = KeyStore::new([key, admin]) else { unreachable!("two distinct keys") };
    let config = GatewayConfig::default();
    let Ok(mut gateway) = Gateway::new(config, keys, 0) else {
        unreachable!("the default configuration is valid")
    };
    let mut actions = Vec::new();
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    let Ok(conn) = gateway.on_connect(0, peer, FUZZ_NONCE, &mut actions) else {
        unreachable!("first connection")
    };
    if log_on_first {
        let logon = Logon {
            protocol_version: PROTOCOL_VERSION,
            key_id: FUZZ_KEY_ID,
            signature: auth::sign(&FUZZ_SECRET, &FUZZ_NONCE, FUZZ_KEY_ID),
            session_id: 0,
            resume_from_seq: 0,
            cancel_on_disconnect: control & 0x80 != 0,
        };
        let mut frame = Vec::new();
        let encoded =
            Encoder::for_client().encode_client(1, &ClientRequest::Logon(logon), &mut frame);
        assert!(encoded.is_ok());
        gateway.on_bytes(conn, 1, &frame, &mut actions);
        assert!(gateway.session_of(conn).is_some(), "the harness logon must succeed");
    }
    let mut now_ns = 2;
    for chunk in chunks(control, stream) {
        gateway.on_bytes(conn, now_ns, chunk, &mut actions);
        now_ns += 1_000_000;
        gateway.on_tick(now_ns, &mut actions);
        let pending = gateway.outbound(conn).len();
        assert!(pending <= config.outbound_bytes_max + CONTROL_RESERVE_BYTES);
        // Read half of what is pending, as a slow client would.
        gateway.consume_outbound(conn, pending / 2, now_ns, &mut actions);
    }
    for action in &actions {
        if let Action::Submit { command, .. } = action {
            // Whatever the bytes said, a trader key only ever acts for its own account.
            match command {
                Command::Place(place) => assert_eq!(place.account, 1),
                Command::Cancel { account, .. }
                | Command::Amend { account, .. }
                | Command::MassCancel { account, .. } => assert_eq!(*account, 1),
                other => panic!("a trader key produced an admin command: {other:?}"),
            }
        }
    }
    gateway.on_disconnected(conn, now_ns, &mut actions);
    assert_eq!(gateway.stats().connections, 0);
}
