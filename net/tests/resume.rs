//! Resume, exactly once: whatever happens (messages while the client is away, partial
//! reads, dropped connections, a new connection taking over a live one, a client that
//! crashes and forgets what it processed), a client that resumes from "the first
//! sequence number I have not processed" receives every message from there on, each
//! once, in order, identical to the first delivery.
//!
//! Proptest prints the failing script and stores it under proptest-regressions/; set
//! PROPTEST_RNG_SEED to replay a run with a given seed.

mod common;

use std::collections::BTreeMap;

use bourse_net::protocol::*;
use bourse_net::session::GatewayConfig;
use common::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    /// The engine emits `n` balance changes for the account.
    Events(u8),
    /// The client reads and processes up to `n` frames.
    Read(u8),
    /// The socket dies; unread bytes are lost.
    Drop,
    /// The client reconnects and resumes (if it is not connected, or even if it is:
    /// a takeover of its own live session).
    Resume,
    /// The client crashes and forgets the last `n` messages it processed.
    Forget(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1..20u8).prop_map(Step::Events),
        3 => (1..30u8).prop_map(Step::Read),
        1 => Just(Step::Drop),
        1 => Just(Step::Resume),
        1 => (1..5u8).prop_map(Step::Forget),
    ]
}

struct Model {
    client: Option<Client>,
    session_id: SessionId,
    /// Last sequence number processed by the client.
    processed: Seq,
    /// What each sequence number carried when first seen.
    seen: BTreeMap<Seq, Got>,
    /// Events emitted so far (the expected stream: event k is seq k).
    emitted: u64,
}

impl Model {
    fn accept(&mut self, batch: Vec<(Seq, Got)>) {
        for (seq, got) in batch {
            assert_eq!(
                seq,
                self.processed + 1,
                "gap or duplicate: got {seq} after {}",
                self.processed
            );
            let Got::Msg(ServerMessage::BalanceUpdate(update)) = &got else { panic!("{got:?}") };
            // Event k carries available = k, so content and numbering agree.
            assert_eq!(update.available, seq);
            if let Some(first) = self.seen.get(&seq) {
                assert_eq!(first, &got, "seq {seq} changed between deliveries");
            }
            self.seen.insert(seq, got);
            self.processed = seq;
        }
    }

    fn resume(&mut self, h: &mut Harness) {
        let (client, ack, replay) = h.logon(TRADER_A, self.session_id, self.processed + 1, false);
        assert_eq!(ack.session_id, self.session_id);
        assert_eq!(ack.next_seq, self.emitted + 1);
        assert_eq!(ack.replay_from, self.processed + 1);
        assert_eq!(ack.replay_count, self.emitted - self.processed);
        // Whatever replay arrived with the ack has been read and is processed now.
        self.accept(replay);
        self.client = Some(client);
    }
}

fn run(steps: &[Step]) {
    let config = GatewayConfig {
        // Big enough that nothing is evicted: this property is about exactly-once.
        journal: bourse_net::journal::JournalLimits { messages_max: 100_000, bytes_max: 64 << 20 },
        ..GatewayConfig::default()
    };
    let mut h = Harness::new(config);
    let (client, ack, _) = h.logon(TRADER_A, 0, 0, false);
    let mut model = Model {
        client: Some(client),
        session_id: ack.session_id,
        processed: 0,
        seen: BTreeMap::new(),
        emitted: 0,
    };
    for step in steps {
        match step {
            Step::Events(n) => {
                for _ in 0..*n {
                    model.emitted += 1;
                    let k = model.emitted;
                    h.events(None, &[balance_event(k, ACCOUNT_A, k)]);
                }
            }
            Step::Read(n) => {
                if let Some(mut client) = model.client.take() {
                    let batch = h.read_frames(&mut client, *n as usize);
                    model.accept(batch);
                    model.client = Some(client);
                }
            }
            Step::Drop => {
                if let Some(client) = model.client.take() {
                    h.gw.on_disconnected(client.conn, h.now_ns, &mut h.actions);
                }
            }
            Step::Resume => {
                // A takeover leaves the old socket to be closed by the server.
                let old = model.client.take();
                model.resume(&mut h);
                if let Some(old) = old {
                    h.gw.on_disconnected(old.conn, h.now_ns, &mut h.actions);
                }
            }
            Step::Forget(n) => {
                model.processed = model.processed.saturating_sub(*n as u64);
                // A client that forgot must reconnect to get those messages again.
                if let Some(client) = model.client.take() {
                    h.gw.on_disconnected(client.conn, h.now_ns, &mut h.actions);
                }
                model.resume(&mut h);
            }
        }
        h.take_actions();
    }
    // In the end the client resumes once more and reads everything: it has processed
    // every message exactly once, in order.
    if let Some(client) = model.client.take() {
        h.gw.on_disconnected(client.conn, h.now_ns, &mut h.actions);
    }
    model.resume(&mut h);
    let mut client = model.client.take().unwrap();
    let rest = h.read_all(&mut client);
    model.accept(rest);
    assert_eq!(model.processed, model.emitted);
    assert_eq!(model.seen.len() as u64, model.emitted);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn resume_delivers_every_message_exactly_once(steps in proptest::collection::vec(step(), 0..60)) {
        run(&steps);
    }
}

#[test]
fn resume_scripted() {
    use Step::*;
    run(&[
        Events(5),
        Read(2),
        Drop,
        Events(3),
        Resume,
        Read(1),
        Resume,
        Read(100),
        Forget(4),
        Events(2),
        Read(3),
        Drop,
    ]);
}
