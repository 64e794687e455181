//! What the daemon checks before it recovers anything, and what `--check-config` reports:
//! a configuration can parse and still be unusable for a real operator (no admin key, a
//! data directory the service user cannot write, memory that cannot be locked). Each
//! refusal says what to do. Also `bourse keygen`: a new API key from the OS's randomness.

use std::path::{Path, PathBuf};

use crate::auth::{Role, SECRET_BYTES};
use crate::config::{Config, ConfigError};

/// Key ids `bourse keygen` picks from: readable numbers that stay clear of the small ids
/// operators and the demo choose by hand.
pub const KEYGEN_ID_MIN: u64 = 100_000;
pub const KEYGEN_ID_MAX: u64 = 999_999_999;

/// Checks that `config` can run a real exchange: at least one admin key, key ids
/// unique, and a data directory this user can create or write.
pub fn check_operable(config: &Config) -> Result<(), ConfigError> {
    if !config.keys.iter().any(|k| matches!(k.role, Role::Admin)) {
        return Err(ConfigError(
            "no admin key: nobody could deposit, create markets or halt trading. Run \
             `bourse keygen --role admin` and paste the [[keys]] block it prints into the \
             configuration file"
                .into(),
        ));
    }
    let mut ids: Vec<u64> = config.keys.iter().map(|k| k.key_id).collect();
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(ConfigError(format!(
            "key id {} appears twice in [[keys]]; give each key its own id",
            pair[0]
        )));
    }
    if let Some(dir) = &config.storage.data_dir {
        check_data_dir(dir).map_err(ConfigError)?;
    }
    Ok(())
}

/// The data directory exists and this user can write it, or it can be created: checked by
/// creating (and removing) a file in it or in its nearest existing ancestor.
pub fn check_data_dir(dir: &Path) -> Result<(), String> {
    let fix = format!(
        "create it for the user the daemon runs as (`install -d -o bourse -g bourse -m 0750 \
         {}`) or set storage.data_dir to a directory that user can write",
        dir.display()
    );
    let (existing, creating) = match nearest_existing(dir) {
        Some(found) => found,
        None => return Err(format!("storage.data_dir {}: no such path; {fix}", dir.display())),
    };
    if !existing.is_dir() {
        return Err(format!(
            "storage.data_dir {}: {} is not a directory; {fix}",
            dir.display(),
            existing.display()
        ));
    }
    let probe = existing.join(format!(".bourse-write-check.{}", std::process::id()));
    let created = std::fs::OpenOptions::new().write(true).create_new(true).open(&probe);
    match created {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => {
            let what = if creating {
                format!("cannot be created ({} is not writable: {e})", existing.display())
            } else {
                format!("is not writable ({e})")
            };
            Err(format!("storage.data_dir {} {what}; {fix}", dir.display()))
        }
    }
}

/// `dir` or its nearest ancestor that exists, and whether that is an ancestor.
fn nearest_existing(dir: &Path) -> Option<(PathBuf, bool)> {
    let absolute =
        if dir.is_absolute() { dir.to_path_buf() } else { std::env::current_dir().ok()?.join(dir) };
    let mut at = absolute.as_path();
    let mut creating = false;
    loop {
        if at.symlink_metadata().is_ok() {
            return Some((at.to_path_buf(), creating));
        }
        creating = true;
        at = at.parent()?;
    }
}

/// Locks the process's memory (`mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`), so the
/// hot path never takes a major fault on a page swapped out. `MCL_ONFAULT` locks pages as
/// they are first touched, so the engine's large, mostly untouched slab reservations are
/// not committed. The kernel counts whole mappings against `RLIMIT_MEMLOCK` (unless the
/// process has CAP_IPC_LOCK), so a finite limit without that capability is refused here,
/// before anything starts, rather than failing an allocation later.
pub fn lock_memory() -> Result<(), String> {
    use rustix::mm::{mlockall, MlockAllFlags};
    can_lock_memory()?;
    mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT)
        .map_err(|e| format!("server.lock_memory: mlockall failed: {e}; {LOCK_FIX}"))
}

const LOCK_FIX: &str = "set LimitMEMLOCK=infinity or AmbientCapabilities=CAP_IPC_LOCK (the \
                        shipped unit does both), run `ulimit -l unlimited` before starting \
                        it, or set server.lock_memory = false";

/// What [`lock_memory`] checks before it locks anything (`--check-config` runs it too):
/// an unlimited locked-memory limit, or CAP_IPC_LOCK.
pub fn can_lock_memory() -> Result<(), String> {
    use rustix::process::{getrlimit, Resource};
    let limit = getrlimit(Resource::Memlock);
    if let (Some(bytes), false) = (limit.current, has_ipc_lock()) {
        return Err(format!(
            "server.lock_memory: the locked-memory limit is {} KiB and the process lacks \
             CAP_IPC_LOCK, and the engine's reservations need more; {LOCK_FIX}",
            bytes / 1024
        ));
    }
    Ok(())
}

/// CAP_IPC_LOCK in the effective set (from /proc/self/status): the kernel then ignores
/// the locked-memory limit.
fn has_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// A new API key: what `bourse keygen` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewKey {
    pub id: u64,
    pub secret: [u8; SECRET_BYTES],
    pub role: Role,
}

impl NewKey {
    /// A key with a random id (unless `id` is given) and a random secret, both from the
    /// operating system's randomness.
    pub fn generate(id: Option<u64>, role: Role) -> Result<NewKey, String> {
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret).map_err(|e| format!("no randomness for a secret: {e}"))?;
        let id = match id {
            Some(id) => id,
            None => {
                let mut bytes = [0u8; 8];
                getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for an id: {e}"))?;
                KEYGEN_ID_MIN + u64::from_le_bytes(bytes) % (KEYGEN_ID_MAX - KEYGEN_ID_MIN + 1)
            }
        };
        assert!(secret.iter().any(|&b| b != 0), "getrandom returned zeros");
        Ok(NewKey { id, secret, role })
    }

    pub fn secret_hex(&self) -> String {
        hex::encode(self.secret)
    }

    /// The `[[keys]]` block to paste into the configuration.
    pub fn toml(&self) -> String {
        let (role, account) = match self.role {
            Role::Admin => ("admin", String::new()),
            Role::Trader { account } => ("trader", format!("account = {account}\n")),
        };
        format!(
            "[[keys]]\nid = {}\nsecret = \"{}\"\nrole = \"{role}\"\n{account}",
            self.id,
            self.secret_hex()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_keys(keys: &str, data_dir: Option<&Path>) -> Config {
        let storage = data_dir
            .map(|d| format!("[storage]\ndata_dir = {:?}\n", d.to_str().unwrap()))
            .unwrap_or_default();
        Config::from_toml(&format!("{storage}{keys}")).expect("parses")
    }

    #[test]
    fn a_config_without_an_admin_key_is_refused() {
        let trader = NewKey::generate(Some(7), Role::Trader { account: 200 }).unwrap();
        let err = check_operable(&with_keys(&trader.toml(), None)).unwrap_err().to_string();
        assert!(err.contains("no admin key") && err.contains("bourse keygen"), "{err}");
        let admin = NewKey::generate(None, Role::Admin).unwrap();
        let both = format!("{}{}", trader.toml(), admin.toml());
        check_operable(&with_keys(&both, None)).expect("an admin key is enough");
        check_operable(&Config::demo()).expect("the demo is operable");
    }

    #[test]
    fn generated_keys_parse_back_and_differ() {
        let a = NewKey::generate(None, Role::Admin).unwrap();
        let b = NewKey::generate(None, Role::Admin).unwrap();
        assert_ne!(a.secret, b.secret);
        assert!((KEYGEN_ID_MIN..=KEYGEN_ID_MAX).contains(&a.id));
        let config = with_keys(&format!("{}{}", a.toml(), b.toml()), None);
        assert_eq!(config.keys[0].key_id, a.id);
        assert_eq!(config.keys[0].secret, a.secret);
        let dup = NewKey { id: a.id, ..b.clone() };
        let err = check_operable(&with_keys(&format!("{}{}", a.toml(), dup.toml()), None));
        assert!(err.unwrap_err().to_string().contains("appears twice"));
    }

    #[test]
    fn a_data_dir_under_a_file_is_refused() {
        let file = std::env::temp_dir().join(format!("bourse-preflight-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        let admin = NewKey::generate(None, Role::Admin).unwrap();
        let err = check_operable(&with_keys(&admin.toml(), Some(&file.join("data"))));
        let text = err.unwrap_err().to_string();
        assert!(text.contains("is not a directory") && text.contains("install -d"), "{text}");
        let dir = std::env::temp_dir().join(format!("bourse-preflight-d-{}", std::process::id()));
        check_operable(&with_keys(&admin.toml(), Some(&dir.join("a/b")))).expect("creatable");
        assert!(!dir.exists(), "the check creates nothing");
        std::fs::remove_file(&file).unwrap();
    }
}
