//! Properties of the inbound path: any split of a valid byte stream decodes to the same
//! requests, and no input (random, or a valid stream with bytes flipped) panics
//! anything, from the frame decoder to the whole gateway. The last two run the same
//! harness as the cargo-fuzz target (net/fuzz), so it is exercised on stable in CI.
//!
//! Proptest prints the failing input and stores it under proptest-regressions/; set
//! PROPTEST_RNG_SEED to replay a run with a given seed.

mod common;

use bourse_engine::{OrderRef, OrderType, Side, StpMode, TimeInForce};
use bourse_net::codec::{decode_client, Encoder};
use bourse_net::frame::{self, FrameDecoder};
use bourse_net::fuzzing;
use bourse_net::protocol::*;
use common::*;
use proptest::prelude::*;

fn request() -> impl Strategy<Value = ClientRequest> {
    prop_oneof![
        (any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(market, client_order_id, price, qty)| {
                ClientRequest::NewOrder(NewOrder {
                    market,
                    client_order_id,
                    side: Side::Sell,
                    order_type: OrderType::Limit,
                    tif: TimeInForce::Ioc,
                    post_only: false,
                    price,
                    qty,
                    quote_budget: 0,
                    stp: StpMode::CancelBoth,
                })
            }
        ),
        (1..=u64::MAX).prop_map(|id| ClientRequest::Cancel(OrderRef::Id(id))),
        any::<u64>().prop_map(|time_ns| ClientRequest::Heartbeat { time_ns }),
        proptest::option::of(any::<u32>()).prop_map(|market| ClientRequest::MassCancel { market }),
        Just(ClientRequest::BalanceQuery),
    ]
}

/// Cuts `bytes` at the given (sorted, deduplicated) points.
fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([bytes.len()]) {
        pieces.push(&bytes[start..point]);
        start = point;
    }
    pieces
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn any_split_decodes_the_same(
        requests in proptest::collection::vec((any::<u64>(), request()), 1..30),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let mut encoder = Encoder::for_client();
        let mut stream = Vec::new();
        for (id, request) in &requests {
            encoder.encode_client(*id, request, &mut stream).unwrap();
        }
        let options = frame::verifier_options(frame::FRAME_BYTES_MAX);
        let mut decoder = FrameDecoder::new(frame::FRAME_BYTES_MAX);
        let mut decoded = Vec::new();
        for piece in split(&stream, &cuts) {
            let mut rest = piece;
            while !rest.is_empty() {
                let taken = decoder.push(rest);
                rest = &rest[taken..];
                while let Some(frame) = decoder.next_frame().unwrap() {
                    decoded.push(decode_client(frame, &options).unwrap());
                }
            }
        }
        prop_assert_eq!(decoded, requests);
        prop_assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn gateway_sees_the_same_requests_however_bytes_arrive(
        requests in proptest::collection::vec((any::<u64>(), request()), 1..20),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let run = |pieces: &[&[u8]], h: &mut Harness, client: &mut Client| {
            for piece in pieces {
                h.send_raw(client, piece);
            }
            h.take_actions()
        };
        let mut stream = Vec::new();
        let mut encoder = Encoder::for_client();
        for (id, request) in &requests {
            encoder.encode_client(*id, request, &mut stream).unwrap();
        }
        let mut whole = Harness::with_defaults();
        let (mut a, _, _) = whole.logon(TRADER_A, 0, 0, false);
        whole.take_actions();
        let expected = run(&[&stream], &mut whole, &mut a);
        let mut pieces = Harness::with_defaults();
        let (mut b, _, _) = pieces.logon(TRADER_A, 0, 0, false);
        pieces.take_actions();
        let got = run(&split(&stream, &cuts), &mut pieces, &mut b);
        prop_assert_eq!(got, expected);
        prop_assert_eq!(pieces.read_all(&mut b), whole.read_all(&mut a));
    }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2_000)) {
        fuzzing::frame_decoder(&data);
    }

    #[test]
    fn mutated_valid_streams_never_panic(
        requests in proptest::collection::vec((any::<u64>(), request()), 1..10),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        chunking in any::<u8>(),
    ) {
        // The harness's first byte is its control byte; the stream follows.
        let mut stream = vec![chunking];
        let mut encoder = Encoder::for_client();
        for (id, request) in &requests {
            encoder.encode_client(*id, request, &mut stream).unwrap();
        }
        for (at, xor) in flips {
            let at = 1 + at % (stream.len() - 1);
            stream[at] ^= xor;
        }
        fuzzing::frame_decoder(&stream);
    }
}

#[test]
fn fuzz_seeds_run() {
    // The committed seed corpus of the fuzz target (one valid frame of every client
    // message type, and all of them in one stream) goes through the same harness.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/frame_decoder");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        fuzzing::frame_decoder(&bytes);
        seeds += 1;
    }
    assert!(seeds >= 20, "seed corpus missing from {}", dir.display());
    for input in [&[][..], &[7][..], &[0, 4, 0, 0, 0][..], &[0, 100, 0, 0, 0, 0, 0, 0, 0][..]] {
        fuzzing::frame_decoder(input);
    }
}
