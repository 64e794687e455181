//! Every decoder of file bytes returns an error, never panics, on any input: random bytes
//! and valid encodings with random damage.

use bourse_replication::format::{decode_entry, decode_segment_header, encode_entry, EntryKind};
use bourse_replication::snapshot::read_snapshot_file;
use bourse_replication::{decode_command_payload, HardStateRecord, Membership};
use proptest::prelude::*;

fn damaged(mut bytes: Vec<u8>, flips: &[(usize, u8)], cut: usize) -> Vec<u8> {
    for &(at, mask) in flips {
        if !bytes.is_empty() {
            let at = at % bytes.len();
            bytes[at] ^= mask;
        }
    }
    let keep = bytes.len().saturating_sub(cut % 8);
    bytes.truncate(keep);
    bytes
}

proptest! {
    #[test]
    fn entries_and_headers(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_entry(&bytes);
        let _ = decode_segment_header(&bytes);
        let _ = HardStateRecord::decode(&bytes);
        let _ = Membership::decode(&bytes);
        let _ = decode_command_payload(&bytes);
    }

    #[test]
    fn damaged_entries_are_errors_or_exact(
        payload in proptest::collection::vec(any::<u8>(), 0..100),
        flips in proptest::collection::vec((any::<usize>(), 1u8..), 0..3),
        cut in any::<usize>(),
    ) {
        let mut original = Vec::new();
        encode_entry(&mut original, 3, 9, EntryKind::Normal, &payload);
        let bytes = damaged(original.clone(), &flips, cut);
        if let Ok((entry, used)) = decode_entry(&bytes) {
            // Only an undamaged encoding decodes (two flips may cancel out).
            prop_assert_eq!(&bytes, &original);
            prop_assert_eq!((entry.term, entry.index, entry.payload, used), (3, 9, &payload[..], bytes.len()));
        }
    }

    #[test]
    fn damaged_hard_state(
        voters in proptest::collection::vec(any::<u64>(), 0..5),
        flips in proptest::collection::vec((any::<usize>(), 1u8..), 1..3),
    ) {
        let record = HardStateRecord { term: 1, vote: 2, commit: 3, membership: Membership { voters, ..Membership::default() } };
        let original = record.encode().expect("encode");
        let bytes = damaged(original.clone(), &flips, 0);
        match HardStateRecord::decode(&bytes) {
            Ok(decoded) => prop_assert!(bytes == original && decoded == record),
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn damaged_snapshot_files(
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        flips in proptest::collection::vec((any::<usize>(), 1u8..), 0..3),
        cut in any::<usize>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = bourse_replication::SnapshotStore::open(dir.path(), 3).expect("store");
        let info = store.write(5, 1, &[9; 32], &Membership::default(), &payload).expect("write");
        let original = std::fs::read(&info.path).expect("read");
        let bytes = damaged(original.clone(), &flips, cut);
        std::fs::write(&info.path, &bytes).expect("write back");
        match read_snapshot_file(&info.path) {
            Ok(loaded) => {
                prop_assert!(bytes == original);
                prop_assert_eq!(loaded.payload, payload);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
