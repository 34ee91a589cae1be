//! Host and own CPU use over the send window, from `/proc` (Linux; absent elsewhere), so a
//! report says how contended the machine was: the load tool shares the cores with the server
//! and with anything else running.

/// `/proc` times are in USER_HZ, which the kernel ABI fixes at 100 per second.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    /// Host ticks spent busy (everything but idle and iowait), all cores.
    busy: u64,
    /// Host ticks in total, all cores.
    total: u64,
    /// This process's user + system ticks.
    own: u64,
    /// CPUs the host reports.
    cores: usize,
}

/// Share of the host over an interval, in cores (1.0 = one core fully busy).
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    pub cores: usize,
    pub host_busy_cores: f64,
    pub loadgen_cores: f64,
}

impl CpuUse {
    pub fn others_cores(&self) -> f64 {
        (self.host_busy_cores - self.loadgen_cores).max(0.0)
    }
}

pub fn sample() -> Option<CpuSample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = v.iter().take(8).sum();
    let cores = stat
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("cpu"))
        .count()
        .max(1);
    let idle = v[3] + v[4];
    let own = process_ticks(std::process::id())?;
    Some(CpuSample {
        busy: total - idle,
        total,
        own,
        cores,
    })
}

/// User + system ticks of process `pid` (all its threads; not its children).
pub fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let after_comm = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// [`process_ticks`] of each of `pids`.
pub fn processes_ticks(pids: &[u32]) -> Vec<Option<u64>> {
    pids.iter().map(|&p| process_ticks(p)).collect()
}

/// The summed CPU of `pids` between two readings of [`process_ticks`], in seconds; `None`
/// if any process could not be read either time.
pub fn processes_seconds(before: &[Option<u64>], after: &[Option<u64>]) -> Option<f64> {
    let mut ticks = 0;
    for (a, b) in before.iter().zip(after) {
        ticks += b.as_ref()?.checked_sub(*a.as_ref()?)?;
    }
    Some(ticks as f64 / TICKS_PER_SECOND)
}

pub fn between(a: Option<CpuSample>, b: Option<CpuSample>, seconds: f64) -> Option<CpuUse> {
    let (a, b) = (a?, b?);
    if seconds <= 0.0 {
        return None;
    }
    let cores = b.cores;
    let total_ticks = (b.total - a.total) as f64;
    let busy_share = if total_ticks > 0.0 {
        (b.busy - a.busy) as f64 / total_ticks
    } else {
        0.0
    };
    Some(CpuUse {
        cores,
        host_busy_cores: busy_share * cores as f64,
        loadgen_cores: (b.own - a.own) as f64 / TICKS_PER_SECOND / seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_cpu_is_read_and_summed() {
        let me = process_ticks(std::process::id()).expect("this process's /proc entry");
        // Burn a little CPU so that the second reading is not below the first.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let later = process_ticks(std::process::id()).unwrap();
        assert!(later >= me);
        let seconds = processes_seconds(&[Some(me), Some(100)], &[Some(later), Some(150)]).unwrap();
        assert!((seconds - (later - me + 50) as f64 / 100.0).abs() < 1e-9);
        assert_eq!(
            processes_seconds(&[None], &[Some(1)]),
            None,
            "unreadable before"
        );
        assert_eq!(processes_seconds(&[Some(5)], &[None]), None, "gone after");
        assert_eq!(process_ticks(u32::MAX), None, "no such process");
    }
}
