//! The hot paths allocate nothing once warmed up: framing, encoding, decoding, and a
//! gateway carrying orders in and execution reports out.
//!
//! A counting global allocator (the only unsafe code in this crate's tests: it forwards
//! to the system allocator and bumps a counter) counts allocations made by this thread
//! while armed.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bourse_engine::{OrderType, Side, StpMode, TimeInForce};
use bourse_net::codec::{decode_client, Encoder};
use bourse_net::frame::{self, FrameDecoder};
use bourse_net::journal::JournalLimits;
use bourse_net::protocol::*;
use bourse_net::session::GatewayConfig;
use common::*;

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// const-initialised thread-local Cell, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    COUNT.with(Cell::get)
}

fn order(i: u64) -> ClientRequest {
    ClientRequest::NewOrder(NewOrder {
        market: 5,
        client_order_id: i,
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        post_only: false,
        price: 50_000 + i,
        qty: 10,
        quote_budget: 0,
        stp: StpMode::CancelTaker,
    })
}

#[test]
fn framing_and_codec_do_not_allocate_after_warm_up() {
    let mut encoder = Encoder::for_client();
    let mut server_encoder = Encoder::for_server();
    let mut decoder = FrameDecoder::new(frame::FRAME_BYTES_MAX);
    let options = frame::verifier_options(frame::FRAME_BYTES_MAX);
    let mut out = Vec::with_capacity(1 << 16);
    let mut round = |i: u64, out: &mut Vec<u8>| {
        out.clear();
        encoder.encode_client(i, &order(i), out).unwrap();
        encoder
            .encode_client(i, &ClientRequest::Cancel(bourse_engine::OrderRef::Id(i + 1)), out)
            .unwrap();
        let report = RejectReport::session(i, 7, SessionReason::RateLimited);
        server_encoder.encode_server(i, &ServerMessage::Rejected(report), out).unwrap();
        let mut rest = &out[..];
        let mut decoded = 0;
        while !rest.is_empty() {
            let n = decoder.push(rest);
            rest = &rest[n..];
            while let Some(frame) = decoder.next_frame().unwrap() {
                if decoded < 2 {
                    assert!(decode_client(frame, &options).is_ok());
                }
                decoded += 1;
            }
        }
        assert_eq!(decoded, 3);
    };
    for i in 0..10 {
        round(i, &mut out);
    }
    let count = allocations(|| {
        for i in 10..10_000 {
            round(i, &mut out);
        }
    });
    assert_eq!(count, 0);
}

#[test]
fn gateway_steady_state_does_not_allocate() {
    let config = GatewayConfig {
        journal: JournalLimits { messages_max: 64, bytes_max: 1 << 17 },
        ..GatewayConfig::default()
    };
    let mut h = Harness::new(config);
    let (mut a, ack, _) = h.logon(TRADER_A, 0, 0, false);
    let mut requests = Vec::with_capacity(1 << 12);
    let mut encoder = Encoder::for_client();
    h.actions.reserve(64);
    let mut step = |h: &mut Harness, i: u64, requests: &mut Vec<u8>| {
        // One order in...
        requests.clear();
        encoder.encode_client(i, &order(i), requests).unwrap();
        h.gw.on_bytes(a.conn, h.now_ns, requests, &mut h.actions);
        assert_eq!(h.actions.len(), 1);
        h.actions.clear();
        // ...its reports out (fills the journal to its bound, then recycles it)...
        let origin =
            bourse_net::session::Origin { conn: a.conn, session_id: ack.session_id, request_id: i };
        let events = [balance_event(i, ACCOUNT_A, i), trade_event(i, ACCOUNT_B, ACCOUNT_A)];
        h.gw.on_events(Some(origin), &events, h.now_ns, &mut h.actions);
        // ...and written to the socket.
        let pending = h.gw.outbound(a.conn).len();
        h.gw.consume_outbound(a.conn, pending, h.now_ns, &mut h.actions);
        h.now_ns += 1_000_000;
    };
    for i in 1..=200 {
        step(&mut h, i, &mut requests);
    }
    let count = allocations(|| {
        for i in 201..=5_000 {
            step(&mut h, i, &mut requests);
        }
    });
    assert_eq!(count, 0);
    // The connection really carried everything: it is still logged on and up to date.
    assert_eq!(h.gw.session_of(a.conn), Some(ack.session_id));
    assert!(h.read_all(&mut a).is_empty());
}

#[test]
fn the_counter_counts() {
    // Without this, a broken counter would make the tests above pass vacuously.
    let count = allocations(|| {
        std::hint::black_box(vec![1u8; 10]);
    });
    assert_eq!(count, 1);
}
