//! `loadgen sockets`: many idle WebSockets, each opened and proven live with ping → pong, held
//! open for a while, and the server's resident memory read from `/proc` before and after: what
//! one more waiting customer costs the server in memory, the figure that sizes a machine for a
//! crowd that mostly waits.

use crate::args::SocketOptions;
use crate::sockets::open;
use crate::{server, token};
use futures_util::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};

/// WebSockets opened at once.
const CONNECT_PARALLELISM: usize = 32;

/// Resident memory of `pid` in bytes (Linux).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What the run found.
#[derive(Debug)]
pub struct SocketsOutcome {
    pub opened: usize,
    pub connect_time: Duration,
    pub server_rss_before: Option<u64>,
    pub server_rss_after: Option<u64>,
    pub loadgen_rss_before: Option<u64>,
    pub loadgen_rss_after: Option<u64>,
    pub started: Option<String>,
}

impl SocketsOutcome {
    pub fn server_bytes_per_socket(&self) -> Option<f64> {
        per_socket(self.server_rss_before, self.server_rss_after, self.opened)
    }
    pub fn loadgen_bytes_per_socket(&self) -> Option<f64> {
        per_socket(self.loadgen_rss_before, self.loadgen_rss_after, self.opened)
    }
}

fn per_socket(before: Option<u64>, after: Option<u64>, n: usize) -> Option<f64> {
    let (b, a) = (before?, after?);
    (n > 0).then(|| (a as f64 - b as f64) / n as f64)
}

pub async fn run(mut o: SocketOptions) -> Result<SocketsOutcome, String> {
    let server;
    (o.base, o.ws_base, server) = server::reach(&mut o.common, o.count).await?;
    let started = server.as_ref().map(|s| format!("pid {}", s.pid));
    let server_pid = o.common.server_pids.first().copied();
    let me = std::process::id();
    let ttl = chrono::Duration::seconds(o.hold.as_secs() as i64 + 3600);
    let server_rss_before = server_pid.and_then(rss_bytes);
    let loadgen_rss_before = rss_bytes(me);
    let began = Instant::now();
    let opened = futures_util::stream::iter(1..=o.count)
        .map(|n| {
            let who = format!("{}{n}", o.user_prefix);
            let token = token::mint(&o.common.secret, &who, false, ttl);
            let ws_base = o.ws_base.clone();
            async move { open(&ws_base, &token, &who, None).await }
        })
        .buffer_unordered(CONNECT_PARALLELISM)
        .collect::<Vec<_>>()
        .await;
    let connect_time = began.elapsed();
    let mut sockets = Vec::with_capacity(opened.len());
    for s in opened {
        sockets.push(s?);
    }
    if !o.common.quiet {
        eprintln!(
            "loadgen: {} WebSockets open and answering ping in {:.0} ms; holding them {:.1} s",
            sockets.len(),
            connect_time.as_secs_f64() * 1e3,
            o.hold.as_secs_f64()
        );
    }
    tokio::time::sleep(o.hold).await;
    let server_rss_after = server_pid.and_then(rss_bytes);
    let loadgen_rss_after = rss_bytes(me);
    let opened = sockets.len();
    let closes = sockets
        .into_iter()
        .map(|mut s| async move { crate::sockets::close(&mut s).await });
    futures_util::future::join_all(closes).await;
    server::stop(server).await;
    Ok(SocketsOutcome {
        opened,
        connect_time,
        server_rss_before,
        server_rss_after,
        loadgen_rss_before,
        loadgen_rss_after,
        started,
    })
}

fn mib(b: Option<u64>) -> String {
    b.map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
}

pub fn print(o: &SocketsOutcome) {
    println!("== loadgen sockets ==");
    println!(
        "  opened          {} idle WebSockets (ping/pong each) in {:.0} ms{}",
        o.opened,
        o.connect_time.as_secs_f64() * 1e3,
        o.started
            .as_ref()
            .map(|s| format!("; server started by loadgen ({s})"))
            .unwrap_or_default()
    );
    match o.server_bytes_per_socket() {
        Some(b) => println!(
            "  server RSS      {} -> {} = {:.1} KiB per socket",
            mib(o.server_rss_before),
            mib(o.server_rss_after),
            b / 1024.0
        ),
        None => println!("  server RSS      unknown (pass --server-pid, or --start)"),
    }
    if let Some(b) = o.loadgen_bytes_per_socket() {
        println!(
            "  loadgen RSS     {} -> {} = {:.1} KiB per socket",
            mib(o.loadgen_rss_before),
            mib(o.loadgen_rss_after),
            b / 1024.0
        );
    }
}

pub fn json_line(o: &SocketsOutcome) -> String {
    json!({
        "opened": o.opened,
        "connectMs": o.connect_time.as_secs_f64() * 1e3,
        "serverRssBefore": o.server_rss_before,
        "serverRssAfter": o.server_rss_after,
        "serverBytesPerSocket": o.server_bytes_per_socket(),
        "loadgenBytesPerSocket": o.loadgen_bytes_per_socket(),
        "started": o.started,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(rss_bytes(std::process::id()).is_some_and(|b| b > 0));
        assert_eq!(rss_bytes(u32::MAX), None);
        assert_eq!(per_socket(Some(1000), Some(3000), 4), Some(500.0));
        assert_eq!(per_socket(None, Some(3000), 4), None);
    }
}
