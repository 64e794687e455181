//! Small durable-file helpers used off the hot path (hard state, snapshots, repairs).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::LogError;

/// Suffix of files being written; a leftover one is a write that never completed.
pub const TEMP_SUFFIX: &str = ".tmp";
/// Mode of every file the log and the snapshot store create: owner read-write, group
/// read (operators' tools), nothing for others. The umask can only narrow it.
pub const FILE_MODE: u32 = 0o640;
/// Mode of every directory they create.
pub const DIR_MODE: u32 = 0o750;

/// Makes the directory's entries (creations, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> Result<(), LogError> {
    let handle = File::open(dir).map_err(|e| LogError::io("open directory", dir, e))?;
    handle.sync_all().map_err(|e| LogError::io("fsync directory", dir, e))
}

/// Writes `parts` (concatenated) to `dir/name` atomically: a temp file is written and
/// fsynced, renamed over the target, and the directory is fsynced. A crash leaves either
/// the old file or the new one, never a mix (plus possibly a stale temp file, which
/// readers ignore and writers overwrite).
pub fn write_atomic(dir: &Path, name: &str, parts: &[&[u8]]) -> Result<PathBuf, LogError> {
    let target = dir.join(name);
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&temp)
        .map_err(|e| LogError::io("create", &temp, e))?;
    // A stale temp file keeps the mode it was created with: narrow it too.
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
        .map_err(|e| LogError::io("chmod", &temp, e))?;
    for part in parts {
        file.write_all(part).map_err(|e| LogError::io("write", &temp, e))?;
    }
    file.sync_all().map_err(|e| LogError::io("fsync", &temp, e))?;
    drop(file);
    fs::rename(&temp, &target).map_err(|e| LogError::io("rename into place", &target, e))?;
    sync_dir(dir)?;
    Ok(target)
}

/// Creates `dir` (and parents) if missing, and makes its creation durable.
pub fn ensure_dir(dir: &Path) -> Result<(), LogError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| LogError::io("create directory", dir, e))?;
    sync_dir(dir)?;
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}
