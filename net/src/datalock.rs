//! One daemon per data directory: an exclusive `flock` on `data_dir/LOCK`.
//!
//! Two processes appending to one log would each number their entries from the same
//! index and overwrite each other's segments; nothing downstream could tell. So the
//! daemon takes this lock before it reads anything in the data directory (before
//! recovery) and holds it for its whole life: the lock is tied to the open file, so the
//! kernel releases it when the process exits, however it exits (`kill -9` included),
//! and a stale `LOCK` file never blocks a restart. The file names the holder's pid, so
//! a refused second daemon can say who holds the directory.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "LOCK";
/// Modes of the directories (0750) and files (0640) the daemon creates: the same as
/// the log's and the snapshot store's.
pub use bourse_replication::fsutil::{DIR_MODE, FILE_MODE};
/// Bytes of the lock file read to find the holder's pid (a pid and a newline).
const LOCK_TEXT_BYTES_MAX: u64 = 64;

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    path: PathBuf,
    /// Holds the `flock`; never read after it is written.
    _file: File,
}

impl DataDirLock {
    /// Creates `data_dir` (mode 0750) if missing, then takes the lock without waiting.
    /// Refused at once if another process holds it, with a message naming its pid.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, String> {
        DirBuilder::new().recursive(true).mode(DIR_MODE).create(data_dir).map_err(|e| {
            format!(
                "cannot create data directory {}: {e} (create it, owned by the user bourse runs as, mode 0750)",
                data_dir.display()
            )
        })?;
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(|e| format!("cannot open the data directory lock {}: {e}", path.display()))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let holder = read_holder(&mut file);
                return Err(format!(
                    "data directory {} is in use by another bourse process ({holder}, holding {}); \
                     one daemon per data directory",
                    data_dir.display(),
                    path.display()
                ));
            }
            Err(e) => {
                return Err(format!("cannot lock {}: {e}", path.display()));
            }
        }
        // Ours now: record who holds it (advisory text for the next process to read).
        let pid = std::process::id();
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(format!("{pid}\n").as_bytes()));
        written.map_err(|e| format!("cannot write the lock file {}: {e}", path.display()))?;
        assert_eq!(holder_pid(&mut file), Some(pid), "the lock file names this process");
        Ok(DataDirLock { path, _file: file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// "pid N", or why the holder is unknown.
fn read_holder(file: &mut File) -> String {
    match holder_pid(file) {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_string(),
    }
}

/// The pid written in the lock file, if it holds one.
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(LOCK_TEXT_BYTES_MAX).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "bourse-datalock-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_and_freed_on_drop() {
        let dir = temp_dir("second");
        let first = DataDirLock::acquire(&dir).expect("the first lock");
        // flock locks belong to the open file description: a second open in the same
        // process conflicts exactly as another process would.
        let refused = DataDirLock::acquire(&dir).expect_err("the second lock is refused");
        assert!(refused.contains(&format!("pid {}", std::process::id())), "{refused}");
        assert!(refused.contains("in use"), "{refused}");
        drop(first);
        let again = DataDirLock::acquire(&dir).expect("free again once dropped");
        let mode = std::fs::metadata(again.path()).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777 & !FILE_MODE, 0, "lock file mode {mode:o}");
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777 & !DIR_MODE, 0, "data dir mode {mode:o}");
        drop(again);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
