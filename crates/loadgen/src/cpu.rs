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
    let own_stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_comm = &own_stat[own_stat.rfind(')')? + 2..];
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the state field.
    let own = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(CpuSample {
        busy: total - idle,
        total,
        own,
        cores,
    })
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
