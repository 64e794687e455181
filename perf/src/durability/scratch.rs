//! Where the durability benches write: a fresh scratch directory (removed at the end
//! unless kept), and what file system it is on, since an fsync figure means nothing
//! without the disk under it (and nothing at all on tmpfs).

use std::path::{Path, PathBuf};

/// Largest `/proc/self/mountinfo` read (a few KiB on a normal machine; containers with
/// thousands of mounts stay far below this).
const MOUNTINFO_BYTES_MAX: usize = 4 << 20;

/// File systems whose fsync does not reach a disk: figures measured there are flagged.
const VOLATILE_FILE_SYSTEMS: [&str; 3] = ["tmpfs", "ramfs", "devtmpfs"];

/// A scratch directory: a fresh `<prefix>XXXXXX` inside the parent the user named (or
/// the system temp dir), so the bench never deletes a directory it did not create.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Scratch {
    /// Creates the directory. With `keep`, it is left in place at the end (its path is
    /// printed by the caller).
    pub fn create(parent: Option<&Path>, prefix: &str, keep: bool) -> Result<Scratch, String> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        std::fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&parent)
            .map_err(|e| format!("scratch directory in {}: {e}", parent.display()))?;
        if keep {
            return Ok(Scratch { path: dir.keep(), dir: None });
        }
        let path = dir.path().to_path_buf();
        Ok(Scratch { dir: Some(dir), path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether dropping this removes the directory.
    pub fn removed_on_drop(&self) -> bool {
        self.dir.is_some()
    }

    /// The report's last line: `removing PATH`, or `kept PATH` with `keep`.
    pub fn end_line(&self) -> String {
        let verb = if self.removed_on_drop() { "removing" } else { "kept" };
        format!("{verb} {}", self.path.display())
    }
}

/// One mount from `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b));
        if escaped {
            let value = bytes[i + 1..i + 4].iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one mountinfo line: `id parent major:minor root mount-point options
/// [optional fields...] - fs-type source super-options`. `None` if malformed.
fn parse_mount(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = before.split(' ').nth(4)?;
    let mut rest = after.split(' ');
    let fs_type = rest.next()?;
    let source = rest.next()?;
    if mount_point.is_empty() || fs_type.is_empty() {
        return None;
    }
    Some(Mount {
        mount_point: PathBuf::from(unescape(mount_point)),
        fs_type: fs_type.to_string(),
        source: unescape(source),
    })
}

/// The mount holding `path` (the longest mount point that is a prefix of it; the last
/// such line wins, as a later mount hides an earlier one).
fn mount_of(mountinfo: &str, path: &Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for mount in mountinfo.lines().filter_map(parse_mount) {
        if !path.starts_with(&mount.mount_point) {
            continue;
        }
        let longer = best
            .as_ref()
            .is_none_or(|b| mount.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len());
        if longer {
            best = Some(mount);
        }
    }
    best
}

/// The file system under `path`, from this process's view of the mounts.
pub fn filesystem_of(path: &Path) -> Option<Mount> {
    let path = std::fs::canonicalize(path).ok()?;
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    if text.len() > MOUNTINFO_BYTES_MAX {
        return None;
    }
    mount_of(&text, &path)
}

/// One line for a report: the directory, its file system, and a warning where fsync
/// cannot mean anything.
pub fn describe_filesystem(path: &Path) -> String {
    match filesystem_of(path) {
        Some(m) if VOLATILE_FILE_SYSTEMS.contains(&m.fs_type.as_str()) => format!(
            "directory {} is on {} ({}, mounted at {}): WARNING, fsync there reaches no disk; pass --dir on the disk to measure",
            path.display(),
            m.fs_type,
            m.source,
            m.mount_point.display()
        ),
        Some(m) => format!(
            "directory {} is on {} ({}, mounted at {})",
            path.display(),
            m.fs_type,
            m.source,
            m.mount_point.display()
        ),
        None => format!("directory {} (file system unknown)", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
35 22 0:30 / /tmp rw,nosuid shared:2 - tmpfs tmpfs rw
36 22 0:31 / /data\\040disk rw - xfs /dev/nvme0n1 rw
garbage line without separator
37 22 0:32 / /tmpx rw - ext4 /dev/vdb rw
";

    #[test]
    fn finds_the_longest_mount_prefix() {
        let of = |p: &str| mount_of(SAMPLE, Path::new(p)).unwrap();
        assert_eq!(of("/work/main").fs_type, "ext4");
        assert_eq!(of("/work/main").source, "/dev/vda");
        assert_eq!(of("/tmp/bench").fs_type, "tmpfs");
        assert_eq!(of("/tmp").mount_point, PathBuf::from("/tmp"));
        // A path component match, not a string prefix: /tmpx is its own mount, and
        // /tmpy is on the root.
        assert_eq!(of("/tmpx/a").source, "/dev/vdb");
        assert_eq!(of("/tmpy/a").source, "/dev/vda");
        // Escaped spaces in mount points.
        assert_eq!(of("/data disk/log").fs_type, "xfs");
    }

    #[test]
    fn malformed_lines_are_skipped_not_fatal() {
        assert_eq!(parse_mount("garbage"), None);
        assert_eq!(parse_mount("1 2 3 4 - "), None);
        assert_eq!(parse_mount(""), None);
        assert_eq!(unescape("a\\040b\\"), "a b\\");
        assert_eq!(unescape("\\999"), "\\999");
        assert!(mount_of("", Path::new("/")).is_none());
    }

    #[test]
    fn scratch_is_fresh_and_removed_unless_kept() {
        let parent = tempfile::tempdir().unwrap();
        let scratch = Scratch::create(Some(parent.path()), "x-", false).unwrap();
        let path = scratch.path().to_path_buf();
        assert!(path.is_dir() && path.starts_with(parent.path()));
        assert!(scratch.removed_on_drop());
        assert_eq!(scratch.end_line(), format!("removing {}", path.display()));
        std::fs::write(path.join("f"), b"1").unwrap();
        drop(scratch);
        assert!(!path.exists());
        let kept = Scratch::create(Some(parent.path()), "y-", true).unwrap();
        let kept_path = kept.path().to_path_buf();
        assert!(!kept.removed_on_drop());
        assert_eq!(kept.end_line(), format!("kept {}", kept_path.display()));
        drop(kept);
        assert!(kept_path.is_dir());
        assert!(describe_filesystem(parent.path()).contains("directory"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machines_mounts_parse() {
        let dir = tempfile::tempdir().unwrap();
        let mount = filesystem_of(dir.path()).expect("the temp dir is on some mount");
        assert!(dir.path().canonicalize().unwrap().starts_with(&mount.mount_point));
        assert!(!mount.fs_type.is_empty());
    }
}
