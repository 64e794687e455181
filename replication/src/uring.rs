//! The only unsafe code of this crate: submitting writes and fsyncs to io_uring.
//!
//! Why unsafe is needed: an SQE carries raw pointers to the buffers it writes from, and
//! the kernel reads them asynchronously, so `SubmissionQueue::push` is `unsafe`: the
//! caller must keep every buffer alive and unmoved until the SQE completes.
//!
//! How this module upholds it: `Ring::write_and_sync` borrows all buffers for the whole
//! call and returns only after every SQE it submitted has produced its completion. If
//! waiting for completions fails with anything other than a retryable error, the process
//! is aborted rather than returning while the kernel may still read the buffers.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types, IoUring};

use crate::error::LogError;

/// Smallest ring this module accepts: the longest chain it submits is two writes and two
/// fsyncs.
pub const RING_ENTRIES_MIN: u32 = 4;
/// Largest ring it accepts. Rings are tiny here (one io thread, one chain in flight), and
/// every ring pins memory against RLIMIT_MEMLOCK on older kernels.
pub const RING_ENTRIES_MAX: u32 = 256;
/// Default ring size.
pub const RING_ENTRIES_DEFAULT: u32 = 8;
/// Most writes in one `write_and_sync` call.
pub const WRITES_PER_CALL_MAX: usize = 2;
/// Most fsyncs in one `write_and_sync` call.
pub const SYNCS_PER_CALL_MAX: usize = 2;
/// Most times one operation is resubmitted after EINTR/EAGAIN before giving up.
pub const RETRIES_MAX: u32 = 64;

/// fsync flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// `fdatasync`: data plus the metadata needed to read it back (the file size).
    Data,
    /// `fsync`: everything, including timestamps. Used for directories.
    Full,
}

/// One positioned write.
#[derive(Clone, Copy, Debug)]
pub struct WriteOp<'a> {
    pub fd: RawFd,
    pub offset: u64,
    pub bytes: &'a [u8],
}

/// An io_uring instance owned by one thread.
pub struct Ring {
    ring: IoUring,
    entries: u32,
    /// io_uring_enter calls made, for the statistics.
    pub enters: u64,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("entries", &self.entries).finish()
    }
}

impl Ring {
    /// Sets up a ring, or says why it could not. There is no fallback to plain syscalls.
    pub fn new(entries: u32) -> Result<Ring, LogError> {
        if !(RING_ENTRIES_MIN..=RING_ENTRIES_MAX).contains(&entries) {
            return Err(LogError::Options {
                name: "ring_entries",
                reason: format!("{entries} not in {RING_ENTRIES_MIN}..={RING_ENTRIES_MAX}"),
            });
        }
        let ring = IoUring::new(entries)
            .map_err(|source| LogError::IoUringSetup { ring_entries: entries, source })?;
        Ok(Ring { ring, entries, enters: 0 })
    }

    /// Writes every op in full at its offset, then syncs each of `syncs` in order. In the
    /// common case this is one linked chain and one `io_uring_enter`; a short write breaks
    /// the chain, and the rest is then finished one operation at a time.
    pub fn write_and_sync(
        &mut self,
        writes: &[WriteOp<'_>],
        syncs: &[(RawFd, SyncKind)],
    ) -> io::Result<()> {
        assert!(writes.len() <= WRITES_PER_CALL_MAX && syncs.len() <= SYNCS_PER_CALL_MAX);
        assert!(writes.iter().all(|w| w.bytes.len() <= u32::MAX as usize));
        let total = writes.len() + syncs.len();
        assert!(total as u32 <= self.entries);
        if total == 0 {
            return Ok(());
        }
        let mut sqes = Vec::with_capacity(total);
        for (k, w) in writes.iter().enumerate() {
            sqes.push(write_sqe(w, 0).user_data(k as u64));
        }
        for (k, &(fd, kind)) in syncs.iter().enumerate() {
            sqes.push(sync_sqe(fd, kind).user_data((writes.len() + k) as u64));
        }
        let last = sqes.len() - 1;
        for sqe in &mut sqes[..last] {
            *sqe = sqe.clone().flags(squeue::Flags::IO_LINK);
        }
        let mut results = [0i32; WRITES_PER_CALL_MAX + SYNCS_PER_CALL_MAX];
        self.submit_all(&sqes, &mut results[..total]);
        let chain_ok = writes.iter().enumerate().all(|(k, w)| results[k] == w.bytes.len() as i32)
            && results[writes.len()..total].iter().all(|&r| r == 0);
        if chain_ok {
            return Ok(());
        }
        self.finish_slowly(writes, syncs, &results[..total])
    }

    /// Completes a chain that was cut short: resumes each write where it stopped and runs
    /// every fsync on its own. Real errors (EIO, ENOSPC...) are returned.
    fn finish_slowly(
        &mut self,
        writes: &[WriteOp<'_>],
        syncs: &[(RawFd, SyncKind)],
        results: &[i32],
    ) -> io::Result<()> {
        for (k, w) in writes.iter().enumerate() {
            let mut done = match results[k] {
                n if n >= 0 => n as usize,
                n if is_retryable(-n) => 0,
                n => return Err(io::Error::from_raw_os_error(-n)),
            };
            let mut retries = 0;
            while done < w.bytes.len() {
                let rest =
                    WriteOp { fd: w.fd, offset: w.offset + done as u64, bytes: &w.bytes[done..] };
                let mut result = [0i32; 1];
                self.submit_all(&[write_sqe(&rest, 0)], &mut result);
                match result[0] {
                    0 => {
                        return Err(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "io_uring write wrote 0 bytes",
                        ))
                    }
                    n if n > 0 => done += n as usize,
                    n if is_retryable(-n) && retries < RETRIES_MAX => retries += 1,
                    n => return Err(io::Error::from_raw_os_error(-n)),
                }
            }
        }
        for &(fd, kind) in syncs {
            let mut retries = 0;
            loop {
                let mut result = [0i32; 1];
                self.submit_all(&[sync_sqe(fd, kind)], &mut result);
                match result[0] {
                    0 => break,
                    n if is_retryable(-n) && retries < RETRIES_MAX => retries += 1,
                    n => return Err(io::Error::from_raw_os_error(-n)),
                }
            }
        }
        Ok(())
    }

    /// Submits `sqes` (user data = position in `results`) and waits for all of their
    /// completions, storing each result.
    fn submit_all(&mut self, sqes: &[squeue::Entry], results: &mut [i32]) {
        assert_eq!(sqes.len(), results.len());
        assert!(self.ring.completion().is_empty(), "stale completions in the ring");
        {
            let mut queue = self.ring.submission();
            for sqe in sqes {
                // SAFETY: the buffers named by these SQEs are borrowed by our caller for
                // the whole call, and this function returns only after every SQE pushed
                // here has completed (the loop below, or abort).
                let pushed = unsafe { queue.push(sqe) };
                assert!(pushed.is_ok(), "submission queue full (chain longer than the ring)");
            }
        }
        let mut completed = 0;
        while completed < sqes.len() {
            let want = sqes.len() - completed;
            self.enters += 1;
            if let Err(e) = self.ring.submit_and_wait(want) {
                if !is_retryable(e.raw_os_error().unwrap_or(0)) {
                    // Returning now could free buffers the kernel still reads.
                    eprintln!("bourse-replication: io_uring_enter failed ({e}); aborting");
                    std::process::abort();
                }
            }
            for cqe in self.ring.completion() {
                let slot = cqe.user_data() as usize;
                assert!(slot < results.len(), "completion for an unknown request");
                results[slot] = cqe.result();
                completed += 1;
            }
        }
    }
}

fn is_retryable(errno: i32) -> bool {
    errno == libc::EINTR
        || errno == libc::EAGAIN
        || errno == libc::EBUSY
        || errno == libc::ECANCELED
}

fn write_sqe(w: &WriteOp<'_>, user_data: u64) -> squeue::Entry {
    opcode::Write::new(types::Fd(w.fd), w.bytes.as_ptr(), w.bytes.len() as u32)
        .offset(w.offset)
        .build()
        .user_data(user_data)
}

fn sync_sqe(fd: RawFd, kind: SyncKind) -> squeue::Entry {
    let flags = match kind {
        SyncKind::Data => types::FsyncFlags::DATASYNC,
        SyncKind::Full => types::FsyncFlags::empty(),
    };
    opcode::Fsync::new(types::Fd(fd)).flags(flags).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn writes_and_syncs_through_the_ring() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        let mut ring = Ring::new(RING_ENTRIES_DEFAULT).expect("io_uring must be available");
        let a = vec![1u8; 5000];
        let b = vec![2u8; 300];
        let writes = [
            WriteOp { fd: file.as_raw_fd(), offset: 0, bytes: &a },
            WriteOp { fd: file.as_raw_fd(), offset: 5000, bytes: &b },
        ];
        ring.write_and_sync(&writes, &[(file.as_raw_fd(), SyncKind::Data)]).expect("write");
        let back = std::fs::read(&path).expect("read");
        assert_eq!(back.len(), 5300);
        assert!(back[..5000].iter().all(|&x| x == 1) && back[5000..].iter().all(|&x| x == 2));
        assert_eq!(ring.enters, 1, "one linked chain, one enter");
    }

    #[test]
    fn a_write_error_is_returned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ro");
        std::fs::write(&path, b"x").expect("create");
        let file = std::fs::File::open(&path).expect("open read-only");
        let mut ring = Ring::new(RING_ENTRIES_DEFAULT).expect("ring");
        let writes = [WriteOp { fd: file.as_raw_fd(), offset: 0, bytes: b"abc" }];
        let err = ring.write_and_sync(&writes, &[(file.as_raw_fd(), SyncKind::Data)]);
        assert_eq!(err.map_err(|e| e.raw_os_error()), Err(Some(libc::EBADF)));
    }

    #[test]
    fn ring_size_is_bounded() {
        assert!(matches!(Ring::new(2), Err(LogError::Options { .. })));
        assert!(matches!(Ring::new(RING_ENTRIES_MAX * 2), Err(LogError::Options { .. })));
    }
}
