//! The operator's path with the real binary: `make install` into a DESTDIR, then the
//! README's walkthrough (`bourse keygen`, `--check-config`) as an unprivileged user, the
//! systemd notification protocol (READY, STATUS, WATCHDOG, STOPPING), and
//! `server.lock_memory`. These tests run as root (CI does): they change users with
//! `setpriv` and set file owners.

mod daemon;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use daemon::{exclusive, write_config, Daemon, Settings, TestDir, TIMEOUT};

const BOURSE: &str = env!("CARGO_BIN_EXE_bourse");

/// A directory under /tmp that the unprivileged user can traverse, removed on drop
/// (also when the test fails).
struct OpenDir(PathBuf);

impl OpenDir {
    fn new(name: &str) -> OpenDir {
        let path = std::env::temp_dir().join(format!("bourse-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test directory");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        OpenDir(path)
    }
}

impl Drop for OpenDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// The group id of the unprivileged user the tests run the daemon as.
fn nobody_gid() -> u32 {
    let out = run(Command::new("id").args(["-g", "nobody"]));
    assert!(out.status.success(), "no user nobody: {}", text(&out.stderr));
    text(&out.stdout).trim().parse().expect("a group id")
}

/// `bourse args...` as user nobody (its own group only), with the locked-memory limit
/// at 1 MiB and no capabilities.
fn as_nobody(binary: &Path, args: &[&str]) -> Output {
    as_nobody_with(&[], binary, args)
}

/// The same as the unit runs it: with CAP_IPC_LOCK as an ambient capability
/// (`AmbientCapabilities=CAP_IPC_LOCK`).
fn as_service(binary: &Path, args: &[&str]) -> Output {
    as_nobody_with(&["--inh-caps=+ipc_lock", "--ambient-caps=+ipc_lock"], binary, args)
}

fn as_nobody_with(caps: &[&str], binary: &Path, args: &[&str]) -> Output {
    let gid = nobody_gid().to_string();
    run(Command::new("prlimit")
        .args(["--memlock=1048576:1048576", "setpriv", "--reuid=nobody", "--regid", &gid])
        .arg("--clear-groups")
        .args(caps)
        .arg("--")
        .arg(binary)
        .args(args))
}

fn mode_owner(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.mode() & 0o7777, meta.uid(), meta.gid())
}

fn make_install(destdir: &Path, group: u32) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    let bin_dir = Path::new(BOURSE).parent().expect("the binary's directory");
    let out = run(Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(root)
        .arg("install")
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg("PROFILE=debug")
        .arg(format!("BIN_DIR={}", bin_dir.display()))
        .arg("BINS=bourse")
        .arg(format!("BOURSE_GROUP={group}")));
    assert!(
        out.status.success(),
        "make install failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

#[test]
fn install_then_the_walkthrough_as_the_service_user() {
    let dir = OpenDir::new("install");
    let destdir = dir.0.join("root");
    let gid = nobody_gid();
    make_install(&destdir, gid);
    let config = destdir.join("etc/bourse/bourse.toml");
    let bourse = destdir.join("usr/local/bin/bourse");
    // The config holds secrets: root may write it, the service's group may read it.
    assert_eq!(mode_owner(&config), (0o640, 0, gid));
    assert_eq!(mode_owner(&destdir.join("etc/bourse")), (0o750, 0, gid));
    assert_eq!(mode_owner(&bourse).0, 0o755);
    assert_eq!(mode_owner(&destdir.join("etc/systemd/system/bourse.service")).0, 0o644);
    assert_eq!(mode_owner(&destdir.join("usr/local/lib/bourse/tune.sh")).0, 0o755);
    let config_arg = config.to_str().unwrap();

    // The shipped config is readable by the service user, and refused: it has no keys.
    let out = as_nobody(&bourse, &["--config", config_arg, "--check-config"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no admin key") && stderr.contains("bourse keygen"), "{stderr}");

    // Walkthrough: a key from `bourse keygen`, and the data directory moved into the
    // test's tree (systemd's StateDirectory= creates /var/lib/bourse for the real thing).
    let keygen = run(Command::new(&bourse).args(["keygen", "--role", "admin"]));
    assert!(keygen.status.success(), "{}", text(&keygen.stderr));
    let block = text(&keygen.stdout);
    assert!(block.starts_with("[[keys]]\nid = ") && block.contains("role = \"admin\""), "{block}");
    let data_dir = destdir.join("var/lib/bourse");
    std::fs::create_dir_all(data_dir.parent().unwrap()).unwrap();
    let shipped = std::fs::read_to_string(&config).unwrap();
    assert!(shipped.contains("data_dir = \"/var/lib/bourse\""), "{shipped}");
    let edited = shipped.replace("/var/lib/bourse", data_dir.to_str().unwrap()) + &block;
    std::fs::write(&config, edited).unwrap();

    // The service user cannot create the data directory under a root-owned parent:
    // refused, with the command that fixes it.
    let out = as_nobody(&bourse, &["--config", config_arg, "--check-config"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot be created") && stderr.contains("install -d"), "{stderr}");
    assert!(!data_dir.exists(), "--check-config creates nothing");

    // What StateDirectory= does.
    std::fs::create_dir(&data_dir).unwrap();
    let chown = run(Command::new("chown").arg(format!("nobody:{gid}")).arg(&data_dir));
    assert!(chown.status.success(), "{}", text(&chown.stderr));
    // The configuration is ok. The shipped config locks memory, which needs what the
    // unit grants: from a shell that is a warning.
    let out = as_nobody(&bourse, &["--config", config_arg, "--check-config"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("warning") && stderr.contains("server.lock_memory"), "{stderr}");
    assert!(stderr.contains("CAP_IPC_LOCK"), "{stderr}");
    // As the unit runs it (ambient CAP_IPC_LOCK), there is nothing to warn about.
    let out = as_service(&bourse, &["--config", config_arg, "--check-config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("warning"), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration ok (1 keys"), "{}", text(&out.stdout));

    // A config the service user cannot read (the old root:root install) says so.
    let chgrp = run(Command::new("chgrp").arg("0").arg(&config));
    assert!(chgrp.status.success());
    let out = as_nobody(&bourse, &["--config", config_arg, "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("Permission denied"), "{}", text(&out.stderr));

    // Installing again keeps the operator's config (and gives it back to the group).
    make_install(&destdir, gid);
    assert_eq!(mode_owner(&config), (0o640, 0, gid));
    let kept = std::fs::read_to_string(&config).unwrap();
    assert!(kept.contains(&block), "the existing config was replaced:\n{kept}");
}

#[test]
fn every_binary_of_this_package_names_its_commit() {
    let out = run(Command::new(BOURSE).arg("--version"));
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), format!("bourse {}", bourse_net::VERSION));
    assert!(bourse_net::VERSION.contains("(commit "), "{}", bourse_net::VERSION);
    let out = run(Command::new(BOURSE).args(["keygen", "--role", "trader"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("needs --account"), "{}", text(&out.stderr));
}

/// Receives datagrams until `want` has arrived (true) or the time runs out (false).
fn wait_for(socket: &UnixDatagram, seen: &mut Vec<String>, want: &str) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    let mut buffer = [0u8; 4096];
    while !seen.iter().any(|m| m.lines().any(|l| l == want)) {
        if Instant::now() >= deadline {
            return false;
        }
        if let Ok(n) = socket.recv(&mut buffer) {
            seen.push(text(&buffer[..n]));
        }
    }
    true
}

#[test]
fn systemd_hears_ready_status_watchdog_and_stopping() {
    let _one = exclusive();
    let dir = TestDir::new("notify");
    let config = write_config(&dir, "notify", &dir.join("data"), &Settings::disk());
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let env = [("NOTIFY_SOCKET", socket_path.to_str().unwrap()), ("WATCHDOG_USEC", "400000")];
    let mut bourse = Daemon::launch_env(&config, &env);
    let mut seen = Vec::new();
    assert!(wait_for(&socket, &mut seen, "READY=1"), "no READY=1; got {seen:?}");
    let ready = seen.iter().position(|m| m.contains("READY=1")).unwrap();
    assert!(seen[..ready].iter().any(|m| m.contains("STATUS=recovering")), "{seen:?}");
    assert!(seen[ready].contains("STATUS=ready: accepting connections on 127.0.0.1:"), "{seen:?}");
    // By the time it is ready it has printed where it listens.
    assert!(bourse.stderr_text().contains("bourse: listening on "), "{}", bourse.stderr_text());
    // The net core feeds the watchdog (every 200 ms here).
    seen.clear();
    assert!(wait_for(&socket, &mut seen, "WATCHDOG=1"), "no WATCHDOG=1; got {seen:?}");
    bourse.signal("TERM");
    assert!(wait_for(&socket, &mut seen, "STOPPING=1"), "no STOPPING=1; got {seen:?}");
    let status = bourse.wait_exit(TIMEOUT).expect("it stops");
    assert!(status.success(), "{status:?}: {}", bourse.stderr_text());
}

/// A memory-only demo config with `server.lock_memory = true`.
fn lock_memory_config(dir: &Path) -> PathBuf {
    let mut file: toml::Table = bourse_net::config::DEMO_TOML.parse().unwrap();
    let server = file.get_mut("server").and_then(|v| v.as_table_mut()).unwrap();
    server.insert("listen".into(), "127.0.0.1:0".into());
    server.insert("pin".into(), false.into());
    server.insert("ring_entries".into(), 4096.into());
    server.insert("lock_memory".into(), true.into());
    let path = dir.join("lock.toml");
    std::fs::write(&path, toml::to_string(&file).unwrap()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|l| l.starts_with(field)).expect("the field");
    line[field.len()..].trim().trim_end_matches(" kB").trim().parse().expect("a number")
}

#[test]
fn lock_memory_locks_pages_as_touched_without_committing_reservations() {
    let _one = exclusive();
    let dir = OpenDir::new("lock-memory");
    let config = lock_memory_config(&dir.0);
    // Root holds CAP_IPC_LOCK, which lifts the locked-memory limit.
    let mut bourse = Daemon::start(&config);
    assert!(bourse.stderr_text().contains("memory locked"), "{}", bourse.stderr_text());
    let locked_kib = status_kib(bourse.pid(), "VmLck:");
    let rss_kib = status_kib(bourse.pid(), "VmRSS:");
    // Every mapping is locked, but only what was touched is resident: MCL_ONFAULT.
    assert!(locked_kib > 0, "nothing locked");
    assert!(
        rss_kib * 2 < locked_kib,
        "reservations were committed: rss {rss_kib} KiB, locked {locked_kib} KiB"
    );
    let status = bourse.wait_exit(Duration::ZERO);
    assert!(status.is_none(), "it exited: {status:?}");
    bourse.terminate();

    // Without CAP_IPC_LOCK and with a finite limit, it refuses to start, saying how to fix it.
    let out = as_nobody(Path::new(BOURSE), &["--config", config.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("server.lock_memory") && stderr.contains("LimitMEMLOCK=infinity"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
}

/// The CPUs in a `Cpus_allowed_list` ("0-2,5").
fn cpu_list(text: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(first.parse::<usize>().unwrap()..=last.parse::<usize>().unwrap());
    }
    cpus
}

#[test]
fn unpinned_threads_stay_off_the_shard_core() {
    let _one = exclusive();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(cpus >= 2, "this test needs two CPUs (net core 0, shard core 1); found {cpus}");
    let dir = TestDir::new("affinity");
    let config = write_config(&dir, "affinity", &dir.join("data"), &Settings::memory());
    let mut file: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    let server = file.get_mut("server").and_then(|v| v.as_table_mut()).unwrap();
    server.insert("pin".into(), true.into());
    server.insert("net_core".into(), 0.into());
    server.insert("shard_core".into(), 1.into());
    std::fs::write(&config, toml::to_string(&file).unwrap()).unwrap();
    let mut bourse = Daemon::start(&config);
    let stderr = bourse.stderr_text();
    assert!(stderr.contains("unpinned threads kept off cpu 1"), "{stderr}");
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{}/task", bourse.pid())).unwrap() {
        let task = task.unwrap().path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap().trim().to_string();
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap();
        threads.push((name, cpu_list(list)));
    }
    // The shard thread pins itself once it runs; wait for its line before judging it.
    let pinned = bourse.wait_for_line(TIMEOUT, |l| l.contains("shard core pinned to cpu 1"));
    assert!(pinned.is_some(), "{}", bourse.stderr_text());
    assert!(threads.iter().any(|(name, _)| name == "bourse-snapshot"), "{threads:?}");
    for (name, cpus) in &threads {
        if name == "bourse-shard" {
            continue;
        }
        assert!(!cpus.contains(&1), "{name} may run on the shard core: {threads:?}");
    }
    bourse.terminate();
}
