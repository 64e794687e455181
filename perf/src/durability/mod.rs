//! What the durability benches (`wal-bench`, `recovery-bench`) share besides the command
//! stream of [`crate::workload`]:
//!
//! - [`append`]: appending to the WAL as a shard core does, waiting out a full queue;
//! - [`scratch`]: the scratch directory and the file system under it;
//! - [`encode_entry_payload`]: a command as the sequencer writes it into a log entry.

pub mod append;
pub mod scratch;

use bourse_engine::{Command, LogIndex};

use crate::harness::time_ns_for;

/// The command's entry payload as the sequencer writes it: `time_ns` (the harness's
/// synthetic clock for `index`) then `Command::encode`. `scratch` is reused for the
/// command bytes; `out` is cleared first.
pub fn encode_entry_payload(
    index: LogIndex,
    command: &Command,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    scratch.clear();
    command.encode(scratch);
    out.clear();
    bourse_replication::encode_command_payload(out, time_ns_for(index), scratch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Workload, SETUP_COMMANDS};
    use bourse_engine::{Config, Exchange};

    #[test]
    fn the_stream_replays_through_entry_payloads_to_the_shadow_state() {
        let seed = 7;
        println!("seed {seed}");
        let mut workload = Workload::new(seed).unwrap();
        // Through the entry payload encoding, as recovery replays it.
        let mut replay = Exchange::new(Config::default()).unwrap();
        let (mut scratch, mut payload, mut events) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..SETUP_COMMANDS + 3_000 {
            let (index, command) = workload.next_command().unwrap();
            encode_entry_payload(index, &command, &mut scratch, &mut payload);
            let bourse_replication::CommandPayload::Command { time_ns, command_bytes } =
                bourse_replication::decode_command_payload(&payload).unwrap()
            else {
                panic!("a command payload decoded as a no-op");
            };
            assert_eq!(time_ns, time_ns_for(index));
            let decoded = Command::decode(command_bytes).unwrap();
            assert_eq!(decoded, command);
            events.clear();
            replay.apply(index, time_ns, &decoded, &mut events).unwrap();
        }
        assert_eq!(replay.state_hash(), workload.exchange().state_hash());
    }
}
