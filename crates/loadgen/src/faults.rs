//! Faults during a flash sale, on a server the tool started: kill -9 of the server, Redis
//! flushed, Redis stopped (and back empty), PostgreSQL cut off. They are spread evenly over the
//! send window, kinds interleaved, so that each lands on a server under full load; the checks
//! after the run then prove that none of them lost an accepted request, held a seat twice or let
//! a later request overtake an earlier one, and the report says how soon the server took
//! requests again.
//!
//! A PostgreSQL restart is simulated on the run's own database, not done to the server: the
//! database stops taking connections and every connection to it is terminated, for `--outage`
//! seconds. To the seatbook server that is what a restart looks like (transactions aborted,
//! connections refused, then accepted again), while other databases on the same PostgreSQL are
//! untouched. It needs `psql` and a role that may alter the database (its owner or a superuser).

use crate::server::StartedServer;
use serde::Serialize;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// kill -9 of the server, then the same server again on the same port and data.
    Kill,
    /// FLUSHDB on the server's Redis: every seat lock and cached seat map gone at once.
    RedisFlush,
    /// The tool's own Redis killed, and started again empty after the outage.
    RedisStop,
    /// The run's database refusing connections, every open one terminated, for the outage.
    PostgresOutage,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill -9",
            Self::RedisFlush => "Redis flushed",
            Self::RedisStop => "Redis stopped",
            Self::PostgresOutage => "PostgreSQL cut off",
        }
    }
}

/// What to inject during the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    pub kills: usize,
    pub redis_flushes: usize,
    pub redis_stops: usize,
    pub postgres_outages: usize,
    /// How long each Redis stop and PostgreSQL outage lasts.
    pub outage: Duration,
    /// The server delivers every batch to its decider twice (`FAULT_DELIVER_TWICE`).
    pub deliver_twice: bool,
}

impl Faults {
    /// The faults in the order they are injected: kinds interleaved, so that a run of several
    /// kinds does not have all of one kind first.
    pub fn order(&self) -> Vec<FaultKind> {
        let mut left = [
            (FaultKind::Kill, self.kills),
            (FaultKind::RedisFlush, self.redis_flushes),
            (FaultKind::RedisStop, self.redis_stops),
            (FaultKind::PostgresOutage, self.postgres_outages),
        ];
        let mut order = Vec::new();
        while left.iter().any(|&(_, n)| n > 0) {
            for (kind, n) in &mut left {
                if *n > 0 {
                    order.push(*kind);
                    *n -= 1;
                }
            }
        }
        order
    }

    /// How long a fault of `kind` is planned to keep its part away.
    fn planned(&self, kind: FaultKind) -> Duration {
        match kind {
            FaultKind::RedisStop | FaultKind::PostgresOutage => self.outage,
            FaultKind::Kill | FaultKind::RedisFlush => Duration::ZERO,
        }
    }

    /// When each fault begins, after the start of a send window of `window`: the outages laid
    /// end to end with equal stretches of normal load before, between and after them, so that
    /// every fault is followed by load to show the recovery. Refused when the outages would
    /// fill the window.
    pub fn schedule(&self, window: Duration) -> Result<Vec<(FaultKind, Duration)>, String> {
        let order = self.order();
        let away: Duration = order.iter().map(|&k| self.planned(k)).sum();
        if !order.is_empty() && away.mul_f64(1.25) >= window {
            return Err(format!(
                "the send window ({:.1} s) is too short for {:.1} s of outages and the load around them: lengthen --duration or shorten --outage",
                window.as_secs_f64(),
                away.as_secs_f64()
            ));
        }
        let gap = (window - away) / (order.len() as u32 + 1);
        let mut at = Duration::ZERO;
        Ok(order
            .into_iter()
            .map(|kind| {
                at += gap;
                let begins = at;
                at += self.planned(kind);
                (kind, begins)
            })
            .collect())
    }
}

/// One fault as it happened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Injected {
    pub kind: FaultKind,
    /// When it began.
    pub began: Instant,
    /// When what it took away was back: the server listening again, Redis taking connections,
    /// the database open (for a flush, when FLUSHDB returned).
    pub restored: Instant,
}

/// The server `--start` made, shared with the task that injects the faults.
pub(crate) type Shared = Arc<Mutex<StartedServer>>;

/// Injects each fault of `schedule` at its offset from `start`; returns each as it happened.
/// The first fault that cannot be injected ends the run with its cause.
pub(crate) async fn inject(
    server: Shared,
    schedule: Vec<(FaultKind, Duration)>,
    outage: Duration,
    start: Instant,
) -> Result<Vec<Injected>, String> {
    let mut done = Vec::with_capacity(schedule.len());
    for (kind, offset) in schedule {
        tokio::time::sleep_until((start + offset).into()).await;
        let server = server.clone();
        let injected = tokio::task::spawn_blocking(move || {
            let mut server = server.lock().expect("server lock");
            inject_one(&mut server, kind, outage)
        })
        .await
        .map_err(|e| format!("{}: {e}", kind.name()))?
        .map_err(|e| format!("{}: {e}", kind.name()))?;
        done.push(injected);
    }
    Ok(done)
}

fn inject_one(
    server: &mut StartedServer,
    kind: FaultKind,
    outage: Duration,
) -> Result<Injected, String> {
    // From the moment the part is gone: a stop or an outage counts from when it took effect.
    let mut began = Instant::now();
    match kind {
        FaultKind::Kill => {
            server.crash_and_restart()?;
        }
        FaultKind::RedisFlush => {
            let url = server
                .options()
                .redis_url
                .clone()
                .ok_or("the server has no Redis")?;
            run(Command::new("redis-cli").args(["-u", &url, "FLUSHDB"]))?;
        }
        FaultKind::RedisStop => {
            let redis = server
                .own_redis
                .as_mut()
                .ok_or("only the tool's own Redis can be stopped (leave out --redis-url)")?;
            redis.kill();
            began = Instant::now();
            std::thread::sleep(outage);
            redis.run()?;
        }
        FaultKind::PostgresOutage => {
            let url = server
                .options()
                .database_url
                .clone()
                .ok_or("the server has no PostgreSQL")?;
            let closed = ClosedDatabase::close(&url)?;
            began = Instant::now();
            std::thread::sleep(outage);
            closed.open()?;
        }
    }
    Ok(Injected {
        kind,
        began,
        restored: Instant::now(),
    })
}

/// The run's database, closed to connections until [`ClosedDatabase::open`] (or drop).
struct ClosedDatabase {
    maintenance_url: String,
    name: String,
    open: bool,
}

impl ClosedDatabase {
    fn close(database_url: &str) -> Result<Self, String> {
        let mut url = reqwest::Url::parse(database_url)
            .map_err(|e| format!("the database URL cannot be parsed: {e}"))?;
        let name = url.path().trim_start_matches('/').to_owned();
        if name.is_empty() || name == "postgres" {
            return Err(
                "the database URL must name the run's own database (not postgres)".to_owned(),
            );
        }
        url.set_path("/postgres");
        let closed = Self {
            maintenance_url: url.to_string(),
            name,
            open: false,
        };
        closed.sql(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
            identifier(&closed.name)
        ))?;
        closed.sql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = {} AND pid <> pg_backend_pid()",
            literal(&closed.name)
        ))?;
        Ok(closed)
    }

    fn open(mut self) -> Result<(), String> {
        self.reopen()
    }

    fn reopen(&mut self) -> Result<(), String> {
        self.sql(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
            identifier(&self.name)
        ))?;
        self.open = true;
        Ok(())
    }

    fn sql(&self, statement: &str) -> Result<(), String> {
        run(Command::new("psql")
            .arg(&self.maintenance_url)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", statement])
            .env("PGCONNECT_TIMEOUT", "5"))
    }
}

impl Drop for ClosedDatabase {
    fn drop(&mut self) {
        if !self.open
            && let Err(e) = self.reopen()
        {
            eprintln!("loadgen: could not open database {} again: {e}", self.name);
        }
    }
}

fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Runs a client program (redis-cli, psql) to its end; its stderr is the error.
fn run(command: &mut Command) -> Result<(), String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let out = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_interleaved_and_each_is_injected_as_often_as_asked() {
        let f = Faults {
            kills: 3,
            redis_flushes: 1,
            postgres_outages: 2,
            ..Faults::default()
        };
        use FaultKind::*;
        assert_eq!(
            f.order(),
            [Kill, RedisFlush, PostgresOutage, Kill, PostgresOutage, Kill]
        );
        assert!(Faults::default().order().is_empty());
        assert!(
            Faults {
                deliver_twice: true,
                ..Faults::default()
            }
            .order()
            .is_empty()
        );
    }

    #[test]
    fn outages_are_laid_out_with_equal_load_around_them_and_must_fit_the_window() {
        let s = Duration::from_secs;
        let f = Faults {
            redis_flushes: 1,
            redis_stops: 1,
            postgres_outages: 1,
            outage: s(2),
            ..Faults::default()
        };
        use FaultKind::*;
        // 10 s window, 4 s of outages: 1.5 s of load before, between and after.
        let ms = Duration::from_millis;
        assert_eq!(
            f.schedule(s(10)).unwrap(),
            [
                (RedisFlush, ms(1500)),
                (RedisStop, ms(3000)),
                (PostgresOutage, ms(6500))
            ]
        );
        assert!(f.schedule(s(5)).is_err(), "4 s of outages in a 5 s window");
        assert!(Faults::default().schedule(ms(100)).unwrap().is_empty());
    }

    #[test]
    fn names_are_quoted_for_sql() {
        assert_eq!(identifier("load\"fs"), "\"load\"\"fs\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
