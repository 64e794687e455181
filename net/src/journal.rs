//! A bounded journal of one session's sequenced server messages, for resume.
//!
//! Every sequenced message of a session is appended here as its encoded frame, with
//! consecutive sequence numbers. Delivery to a live connection reads from the journal
//! (see `gateway`), and a client that reconnects asks for everything from a sequence
//! number on. The journal keeps at most `messages_max` frames and `bytes_max` bytes,
//! dropping the oldest first; storage is two ring buffers that grow up to those bounds
//! and are then reused, so a warmed-up journal never allocates.

use std::collections::VecDeque;

use crate::protocol::Seq;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalLimits {
    /// Most frames kept.
    pub messages_max: usize,
    /// Most bytes of frames kept; at least one largest frame.
    pub bytes_max: usize,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Offset of the frame in the stream of all bytes ever appended.
    offset: u64,
    len: u32,
}

#[derive(Debug)]
pub struct Journal {
    limits: JournalLimits,
    /// Sequence number of `entries[0]`; when empty, equal to `next_seq`.
    first_seq: Seq,
    next_seq: Seq,
    entries: VecDeque<Entry>,
    bytes: VecDeque<u8>,
    /// Stream offset of `bytes[0]`.
    bytes_offset: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// Messages from `from` on are no longer all retained.
    #[error("sequence {from} is older than the oldest retained, {oldest}")]
    TooOld { from: Seq, oldest: Seq, next: Seq },
    /// `from` is beyond the next sequence number.
    #[error("sequence {from} is beyond the next sequence number, {next}")]
    Ahead { from: Seq, next: Seq },
}

impl Journal {
    /// An empty journal whose first message will get sequence number 1.
    pub fn new(limits: JournalLimits) -> Journal {
        assert!(limits.messages_max >= 1);
        assert!(limits.bytes_max >= 1);
        Journal {
            limits,
            first_seq: 1,
            next_seq: 1,
            entries: VecDeque::new(),
            bytes: VecDeque::new(),
            bytes_offset: 0,
        }
    }

    /// An empty journal whose first message will get sequence number `next_seq` (a
    /// stream restored from a snapshot continues its numbering).
    pub fn starting_at(limits: JournalLimits, next_seq: Seq) -> Journal {
        assert!(next_seq >= 1);
        Journal { first_seq: next_seq, next_seq, ..Journal::new(limits) }
    }

    pub fn limits(&self) -> JournalLimits {
        self.limits
    }

    /// The sequence number the next appended frame must carry.
    pub fn next_seq(&self) -> Seq {
        self.next_seq
    }

    /// The oldest retained sequence number (`next_seq` when nothing is retained).
    pub fn oldest_seq(&self) -> Seq {
        self.first_seq
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes_len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends the frame that carries sequence number `next_seq()`, dropping the oldest
    /// frames to stay within bounds, and returns its sequence number.
    pub fn append(&mut self, frame: &[u8]) -> Seq {
        assert!(!frame.is_empty() && frame.len() <= self.limits.bytes_max, "frame over bound");
        while self.entries.len() >= self.limits.messages_max
            || self.bytes.len() + frame.len() > self.limits.bytes_max
        {
            self.drop_oldest();
        }
        let offset = self.bytes_offset + self.bytes.len() as u64;
        self.bytes.extend(frame);
        self.entries.push_back(Entry { offset, len: frame.len() as u32 });
        let seq = self.next_seq;
        self.next_seq += 1;
        debug_assert_eq!(self.first_seq + self.entries.len() as u64, self.next_seq);
        seq
    }

    fn drop_oldest(&mut self) {
        let Some(entry) = self.entries.pop_front() else {
            unreachable!("bounds are at least one frame, so an empty journal has room");
        };
        debug_assert_eq!(entry.offset, self.bytes_offset);
        self.bytes.drain(..entry.len as usize);
        self.bytes_offset += entry.len as u64;
        self.first_seq += 1;
    }

    /// Checks that a client can resume from `from` (the first sequence number it has not
    /// processed): everything from there to `next_seq()` must still be retained.
    pub fn check_resume(&self, from: Seq) -> Result<(), ResumeError> {
        if from > self.next_seq {
            return Err(ResumeError::Ahead { from, next: self.next_seq });
        }
        if from < self.first_seq {
            return Err(ResumeError::TooOld { from, oldest: self.first_seq, next: self.next_seq });
        }
        Ok(())
    }

    /// The frame with sequence number `seq`, as (up to) two slices of the ring buffer.
    pub fn get(&self, seq: Seq) -> Option<(&[u8], &[u8])> {
        if seq < self.first_seq || seq >= self.next_seq {
            return None;
        }
        let entry = self.entries[(seq - self.first_seq) as usize];
        let start = (entry.offset - self.bytes_offset) as usize;
        let end = start + entry.len as usize;
        let (front, back) = self.bytes.as_slices();
        Some(if end <= front.len() {
            (&front[start..end], &[][..])
        } else if start >= front.len() {
            (&back[start - front.len()..end - front.len()], &[][..])
        } else {
            (&front[start..], &back[..end - front.len()])
        })
    }

    /// Length in bytes of the frame with sequence number `seq`.
    pub fn frame_len(&self, seq: Seq) -> Option<usize> {
        if seq < self.first_seq || seq >= self.next_seq {
            return None;
        }
        Some(self.entries[(seq - self.first_seq) as usize].len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(parts: (&[u8], &[u8])) -> Vec<u8> {
        [parts.0, parts.1].concat()
    }

    #[test]
    fn keeps_the_newest_within_bounds() {
        let mut journal = Journal::new(JournalLimits { messages_max: 3, bytes_max: 10 });
        for i in 1..=5u8 {
            assert_eq!(journal.append(&[i; 3]), i as u64);
        }
        assert_eq!(journal.oldest_seq(), 3);
        assert_eq!(journal.next_seq(), 6);
        assert_eq!(journal.get(2), None);
        assert_eq!(joined(journal.get(3).unwrap()), vec![3; 3]);
        assert_eq!(joined(journal.get(5).unwrap()), vec![5; 3]);
        // Byte bound: a 7-byte frame leaves room for one 3-byte frame only.
        journal.append(&[6; 7]);
        assert_eq!(journal.oldest_seq(), 5);
        assert_eq!(journal.bytes_len(), 10);
        assert_eq!(joined(journal.get(6).unwrap()), vec![6; 7]);
    }

    #[test]
    fn resume_bounds() {
        let mut journal = Journal::new(JournalLimits { messages_max: 2, bytes_max: 100 });
        assert_eq!(journal.check_resume(1), Ok(()));
        assert_eq!(journal.check_resume(2), Err(ResumeError::Ahead { from: 2, next: 1 }));
        for _ in 0..3 {
            journal.append(b"abc");
        }
        assert_eq!(
            journal.check_resume(1),
            Err(ResumeError::TooOld { from: 1, oldest: 2, next: 4 })
        );
        assert_eq!(journal.check_resume(2), Ok(()));
        assert_eq!(journal.check_resume(4), Ok(()));
        assert_eq!(journal.check_resume(5), Err(ResumeError::Ahead { from: 5, next: 4 }));
    }

    #[test]
    fn frames_survive_ring_wraparound() {
        let mut journal = Journal::new(JournalLimits { messages_max: 1000, bytes_max: 64 });
        for i in 0..500u32 {
            let frame: Vec<u8> = (0..(i % 13 + 1)).map(|b| (b + i) as u8).collect();
            let seq = journal.append(&frame);
            assert_eq!(joined(journal.get(seq).unwrap()), frame);
            assert_eq!(journal.frame_len(seq), Some(frame.len()));
            assert!(journal.bytes_len() <= 64);
        }
    }
}
