//! Keeps every thread the daemon does not pin off the shard core. The daemon's main
//! thread narrows its own CPU mask to "every CPU it may use but the shard core" before it
//! starts anything; threads inherit their creator's mask, so the snapshot writer, an
//! unpinned WAL io helper and any library thread stay off the shard core, while the shard
//! thread and the net core pin themselves to their own CPUs afterwards.

use std::sync::OnceLock;

use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

/// The CPUs the process could use before [`keep_off`] narrowed the main thread's mask.
static PROCESS_CPUS: OnceLock<CpuSet> = OnceLock::new();

/// Whether this process may run on `cpu` (pinning a thread there can work): judged by the
/// mask from before [`keep_off`], since the calling thread's own mask may be narrower.
pub fn may_use(cpu: usize) -> bool {
    if cpu >= CpuSet::MAX_CPU {
        return false;
    }
    match PROCESS_CPUS.get() {
        Some(mask) => mask.is_set(cpu),
        None => sched_getaffinity(None).is_ok_and(|mask| mask.is_set(cpu)),
    }
}

/// Removes `shard_cpu` from the calling thread's CPU mask (and so from every thread it
/// starts from now on). Does nothing, and says why, when that would leave no CPU or
/// `shard_cpu` is not in the mask to begin with.
pub fn keep_off(shard_cpu: usize) -> Result<(), String> {
    let mut mask = sched_getaffinity(None).map_err(|e| format!("sched_getaffinity: {e}"))?;
    if shard_cpu >= CpuSet::MAX_CPU || !mask.is_set(shard_cpu) {
        return Err(format!("cpu {shard_cpu} is not in this process's CPU set"));
    }
    if mask.count() < 2 {
        return Err(format!("cpu {shard_cpu} is the only CPU this process may use"));
    }
    let _ = PROCESS_CPUS.set(mask);
    mask.unset(shard_cpu);
    sched_setaffinity(None, &mask).map_err(|e| format!("sched_setaffinity: {e}"))?;
    let check = sched_getaffinity(None).map_err(|e| format!("sched_getaffinity: {e}"))?;
    assert!(!check.is_set(shard_cpu), "the shard core is still in the mask");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_started_after_keep_off_avoids_the_cpu() {
        let before = sched_getaffinity(None).unwrap();
        let Some(cpu) = (0..CpuSet::MAX_CPU).rev().find(|&c| before.is_set(c)) else {
            panic!("no CPU in the mask");
        };
        // On a thread of its own, so the test harness's threads keep their masks.
        let inherited = std::thread::spawn(move || {
            let kept = keep_off(cpu);
            let child = std::thread::spawn(|| sched_getaffinity(None).unwrap()).join().unwrap();
            (kept, child)
        })
        .join()
        .unwrap();
        match inherited {
            (Ok(()), child) => assert!(!child.is_set(cpu) && child.count() == before.count() - 1),
            (Err(why), _) => assert!(before.count() < 2, "{why}"),
        }
        assert!(keep_off(CpuSet::MAX_CPU).is_err());
        assert!(may_use(cpu) && !may_use(CpuSet::MAX_CPU));
    }
}
