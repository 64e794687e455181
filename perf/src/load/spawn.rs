//! Child processes `bourse-load` starts: the `bourse` daemon or the `tcp-echo` server, each
//! on an ephemeral port (`--listen 127.0.0.1:0`). The child says where it listens on its
//! stderr (`...: listening on ADDR`), which is read here, so no port is guessed and none
//! can be taken by someone else in between. Every line the child prints is passed on with
//! its name in front. `stop` sends SIGTERM (the daemon shuts down cleanly and prints its
//! final log index and state hash) and waits; a child still running then is killed, and so
//! is one whose `Child` is dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a child may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a child may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running child process.
pub struct Child {
    name: &'static str,
    child: Option<std::process::Child>,
    pub addr: SocketAddr,
}

/// The address in a line such as `bourse: listening on 127.0.0.1:7400`.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("listening on ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Starts `program args...` and waits until it says where it listens.
pub fn start(name: &'static str, program: &Path, args: &[String]) -> Result<Child, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let (tx, rx) = mpsc::channel();
    // The thread lives until the child closes its stderr (it exits); it keeps the pipe
    // drained so the child never blocks on a full pipe.
    std::thread::Builder::new()
        .name(format!("{name}-stderr"))
        .spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("  [{name}] {line}");
                if let Some(addr) = parse_listening(&line) {
                    let _ = tx.send(addr);
                }
            }
        })
        .map_err(|e| format!("stderr reader thread: {e}"))?;
    let mut child = Child { name, child: Some(child), addr: "0.0.0.0:0".parse().expect("addr") };
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(addr) => {
            child.addr = addr;
            Ok(child)
        }
        Err(_) => Err(format!(
            "{} did not say where it listens within {START_TIMEOUT:?}",
            program.display()
        )),
    }
}

impl Child {
    /// SIGTERM, then wait for the exit (SIGKILL after `STOP_TIMEOUT`).
    pub fn stop(mut self) -> Result<ExitStatus, String> {
        let mut child = self.child.take().expect("a child is stopped once");
        let pid = rustix::process::Pid::from_child(&child);
        if let Err(e) = rustix::process::kill_process(pid, rustix::process::Signal::TERM) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("SIGTERM to {}: {e}; killed", self.name));
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{} ignored SIGTERM for {STOP_TIMEOUT:?}; killed",
                        self.name
                    ));
                }
                Err(e) => return Err(format!("waiting for {}: {e}", self.name)),
            }
        }
    }

    #[cfg(test)]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_address_in_the_listening_line() {
        assert_eq!(
            parse_listening("bourse: listening on 127.0.0.1:7400"),
            Some("127.0.0.1:7400".parse().unwrap())
        );
        assert_eq!(
            parse_listening("tcp-echo: listening on 127.0.0.1:41234 (cpu 0)"),
            Some("127.0.0.1:41234".parse().unwrap())
        );
        assert_eq!(parse_listening("bourse: net core pinned to cpu 0"), None);
        assert_eq!(parse_listening("listening on nowhere"), None);
    }

    #[test]
    fn starts_and_stops_a_child_that_prints_its_address() {
        let script = "echo 'x: listening on 127.0.0.1:9' >&2; exec sleep 30";
        let child = start("sh", Path::new("/bin/sh"), &["-c".into(), script.into()]).unwrap();
        assert_eq!(child.addr, "127.0.0.1:9".parse().unwrap());
        assert!(child.pid() > 0);
        let status = child.stop().unwrap();
        assert!(!status.success(), "sleep ends by the signal");
    }

    #[test]
    fn a_child_that_never_listens_is_an_error_not_a_hang() {
        let err = start("true", Path::new("/bin/true"), &[]).err().unwrap();
        assert!(err.contains("did not say"), "{err}");
    }
}
