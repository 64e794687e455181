//! Appending to the WAL as a shard core does: one producer, contiguous indices, one term,
//! and back-pressure by waiting for `durable_index` when the queue is full.

use std::time::Duration;

use bourse_replication::{AppendError, WalHandle};

/// Every entry has term 1: one node, one term.
pub const TERM: u64 = 1;

/// How long a full queue may wait for `durable_index` to move before the run is called
/// stuck (the io thread writes at least one batch per fsync, so seconds mean a dead disk).
pub const FULL_WAIT: Duration = Duration::from_secs(10);

/// Appends entry `index`. While the queue is full (`AppendError::Full`: nothing was
/// queued) it waits for `durable_index` to move, which is when the io thread has taken
/// the queue as its next batch, and retries; each wait is counted in `fulls`.
pub fn append_waiting(
    wal: &mut WalHandle,
    index: u64,
    payload: &[u8],
    fulls: &mut u64,
) -> Result<(), String> {
    loop {
        match wal.append(TERM, index, payload) {
            Ok(()) => return Ok(()),
            Err(AppendError::Full { .. }) => {
                *fulls += 1;
                let durable = wal.durable_index();
                if !wal.wait_durable(durable + 1, FULL_WAIT).map_err(|e| e.to_string())? {
                    return Err(format!(
                        "queue full and durable_index stuck at {durable} for {FULL_WAIT:?}"
                    ));
                }
            }
            Err(e) => return Err(format!("append {index}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bourse_replication::{Wal, WalOptions};

    #[test]
    fn a_small_queue_fills_and_every_entry_still_lands_in_order() {
        let dir = tempfile::tempdir().unwrap();
        // The smallest queue allowed holds one largest entry: 64 KiB payloads fill it
        // after a handful, so Full happens and must be waited out.
        let options = WalOptions {
            queue_bytes_max: bourse_replication::format::ENTRY_BYTES_MAX,
            ..WalOptions::default()
        };
        let (mut wal, _) = Wal::open(dir.path(), options).unwrap();
        let payload = vec![7u8; 64 << 10];
        let mut fulls = 0;
        for index in 1..=200 {
            append_waiting(&mut wal, index, &payload, &mut fulls).unwrap();
        }
        assert!(fulls > 0, "the queue never filled");
        assert!(wal.wait_durable(200, Duration::from_secs(30)).unwrap());
        assert_eq!(wal.close().unwrap().appends, 200);
        // A gap is refused with a message, not a panic or a hang.
        let (mut wal, recovered) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(recovered.next_index(), 201);
        assert!(append_waiting(&mut wal, 203, &payload, &mut fulls).is_err());
    }
}
