//! Command-line options, parsed by hand (`--flag value` or `--flag=value`).

use crate::token::{DEV_JWT_SECRET, GRAND_HALL};
use std::net::IpAddr;
use std::time::Duration;

pub const USAGE: &str = "\
loadgen: drives a RUNNING seatbook server with POST /api/v1/holds and measures the latency from
sending the POST to receiving that request's BOOKING_RESULT on the requester's WebSocket.

usage: loadgen [options]

  --base URL           server base URL (default http://127.0.0.1:3000); only loopback hosts
                       (127.0.0.1, localhost, [::1]) unless --allow-remote
  --show ID            show to load (default the 500-seat demo Grand Hall)
  --rate N             requests/s offered, open loop: sends are scheduled at fixed intervals
                       whatever the responses (default 5000); 0 = closed loop: --concurrency
                       workers send back to back as fast as the server answers
  --duration SECS      length of the send window (default 10, at most 3600)
  --users N            distinct users `<prefix><n>`, one WebSocket each (default 200)
  --seats N            random distinct seats per request (default 1)
  --concurrency N      most POSTs in flight at once (default 256); in open loop a send that
                       finds the limit reached is skipped and counted, not delayed
  --secret S           HS256 secret for the locally minted JWTs (default: JWT_SECRET from the
                       environment if set, else the development secret)
  --drain SECS         after sending stops, wait at most this long for outstanding POST
                       answers and BOOKING_RESULTs (default 10, at most 600)
  --max-requests N     hard cap on requests sent (default 10000000)
  --timeout SECS       per-POST timeout (default 30)
  --user-prefix P      user id prefix (default load-)
  --subscribe          also subscribe every WebSocket to the show (SEATS_CHANGED traffic)
  --threads N          tokio worker threads (default: one per core)
  --seed N             random seed for user/seat picks (default: from the clock)
  --server-pid PID     a process of the server (repeatable, or comma-separated: the server,
                       and PostgreSQL's and Redis's processes to count the databases too);
                       reports their CPU over the load and the drain per decided request
  --quiet              no per-second progress lines on stderr
  --json               print a one-line JSON summary as the last line of stdout
  --allow-remote       allow a --base whose host is not loopback
  -h, --help           this text
";

#[derive(Debug, Clone)]
pub struct Options {
    pub base: String,
    pub ws_base: String,
    pub show: String,
    /// Requests/s offered; 0 = closed loop.
    pub rate: f64,
    pub duration: Duration,
    pub users: usize,
    pub seats: usize,
    pub concurrency: usize,
    pub secret: String,
    pub secret_source: &'static str,
    pub drain: Duration,
    pub max_requests: u64,
    pub timeout: Duration,
    pub user_prefix: String,
    pub subscribe: bool,
    pub threads: Option<usize>,
    pub seed: u64,
    pub quiet: bool,
    pub json: bool,
    /// `--server-pid`: processes whose CPU is counted as the server's.
    pub server_pids: Vec<u32>,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Options>),
    Help,
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{flag} needs a number, got {value:?}"))
}

fn within<T: PartialOrd + std::fmt::Display + Copy>(
    flag: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, String> {
    if v < lo || v > hi {
        return Err(format!("{flag} must be between {lo} and {hi}, got {v}"));
    }
    Ok(v)
}

fn seconds(flag: &str, value: &str, lo: f64, hi: f64) -> Result<Duration, String> {
    let v: f64 = number(flag, value)?;
    if !v.is_finite() {
        return Err(format!("{flag} must be a finite number of seconds"));
    }
    Ok(Duration::from_secs_f64(within(flag, v, lo, hi)?))
}

/// Parses the arguments after the program name. `env_secret` is `JWT_SECRET`, if set.
pub fn parse(args: &[String], env_secret: Option<String>) -> Result<Parsed, String> {
    let mut base = "http://127.0.0.1:3000".to_owned();
    let mut show = GRAND_HALL.to_string();
    let mut rate = 5000.0;
    let mut duration = Duration::from_secs(10);
    let mut users = 200usize;
    let mut seats = 1usize;
    let mut concurrency = 256usize;
    let mut secret: Option<String> = None;
    let mut drain = Duration::from_secs(10);
    let mut max_requests = 10_000_000u64;
    let mut timeout = Duration::from_secs(30);
    let mut user_prefix = "load-".to_owned();
    let mut subscribe = false;
    let mut threads = None;
    let mut seed = None;
    let mut quiet = false;
    let mut json = false;
    let mut allow_remote = false;
    let mut server_pids = Vec::new();

    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        match flag {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--base" => base = value()?,
            "--show" => show = value()?,
            "--rate" => {
                let v: f64 = number(flag, &value()?)?;
                if !v.is_finite() {
                    return Err("--rate must be finite".into());
                }
                rate = within(flag, v, 0.0, 1_000_000.0)?;
            }
            "--duration" => duration = seconds(flag, &value()?, 0.1, 3600.0)?,
            "--users" => users = within(flag, number(flag, &value()?)?, 1, 100_000)?,
            "--seats" => seats = within(flag, number(flag, &value()?)?, 1, 1000)?,
            "--concurrency" => concurrency = within(flag, number(flag, &value()?)?, 1, 100_000)?,
            "--secret" => secret = Some(value()?),
            "--drain" => drain = seconds(flag, &value()?, 0.0, 600.0)?,
            "--max-requests" => {
                max_requests = within(flag, number(flag, &value()?)?, 1, 1_000_000_000)?
            }
            "--timeout" => timeout = seconds(flag, &value()?, 0.1, 3600.0)?,
            "--user-prefix" => user_prefix = value()?,
            "--threads" => threads = Some(within(flag, number(flag, &value()?)?, 1, 1024)?),
            "--seed" => seed = Some(number(flag, &value()?)?),
            "--server-pid" => {
                for pid in value()?.split(',') {
                    server_pids.push(number::<u32>(flag, pid)?);
                }
            }
            "--subscribe" | "--quiet" | "--json" | "--allow-remote" if inline.is_some() => {
                return Err(format!("{flag} takes no value"));
            }
            "--subscribe" => subscribe = true,
            "--quiet" => quiet = true,
            "--json" => json = true,
            "--allow-remote" => allow_remote = true,
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }

    let (secret, secret_source) = match (secret, env_secret) {
        (Some(s), _) => (s, "--secret"),
        (None, Some(s)) if !s.is_empty() => (s, "JWT_SECRET"),
        _ => (DEV_JWT_SECRET.to_owned(), "development default"),
    };
    if secret.is_empty() {
        return Err("--secret must not be empty".into());
    }
    let (base, ws_base) = check_base(&base, allow_remote)?;
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    Ok(Parsed::Run(Box::new(Options {
        base,
        ws_base,
        show,
        rate,
        duration,
        users,
        seats,
        concurrency,
        secret,
        secret_source,
        drain,
        max_requests,
        timeout,
        user_prefix,
        subscribe,
        threads,
        seed,
        quiet,
        json,
        server_pids,
    })))
}

/// Validates the base URL; returns it without a trailing slash and its `ws://` twin.
fn check_base(base: &str, allow_remote: bool) -> Result<(String, String), String> {
    let url =
        reqwest::Url::parse(base).map_err(|e| format!("--base {base:?} is not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "--base must be an http:// URL (this build has no TLS), got {base:?}"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "--base must not have a query or fragment, got {base:?}"
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("--base {base:?} has no host"))?;
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback && !allow_remote {
        return Err(format!(
            "--base host {host:?} is not loopback (127.0.0.1, localhost, [::1]); pass --allow-remote to load a remote server"
        ));
    }
    let http = url.as_str().trim_end_matches('/').to_owned();
    let ws = format!("ws://{}", &http["http://".len()..]);
    Ok((http, ws))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn run(a: &[&str]) -> Result<Options, String> {
        match parse(&args(a), None)? {
            Parsed::Run(o) => Ok(*o),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults() {
        let o = run(&[]).unwrap();
        assert_eq!(o.base, "http://127.0.0.1:3000");
        assert_eq!(o.ws_base, "ws://127.0.0.1:3000");
        assert_eq!(o.show, "5e0c1a6e-8f1e-4c3a-9b2d-000000000001");
        assert_eq!(o.users, 200);
        assert_eq!(o.seats, 1);
        assert_eq!(o.concurrency, 256);
        assert_eq!(o.drain, Duration::from_secs(10));
        assert_eq!(o.secret, DEV_JWT_SECRET);
        assert!(!o.json);
    }

    #[test]
    fn server_processes_are_listed_or_repeated() {
        assert!(run(&[]).unwrap().server_pids.is_empty());
        let o = run(&["--server-pid", "10,11", "--server-pid=12"]).unwrap();
        assert_eq!(o.server_pids, [10, 11, 12]);
        assert!(run(&["--server-pid", "ten"]).is_err());
    }

    #[test]
    fn flags_and_values() {
        let o = run(&[
            "--rate",
            "0",
            "--duration=2.5",
            "--users",
            "3",
            "--json",
            "--base",
            "http://localhost:1234/",
        ])
        .unwrap();
        assert_eq!(o.rate, 0.0);
        assert_eq!(o.duration, Duration::from_millis(2500));
        assert_eq!(o.users, 3);
        assert!(o.json);
        assert_eq!(o.base, "http://localhost:1234");
        assert_eq!(o.ws_base, "ws://localhost:1234");
        assert!(matches!(parse(&args(&["--help"]), None), Ok(Parsed::Help)));
        assert!(run(&["--rate"]).is_err());
        assert!(run(&["--bogus"]).is_err());
        assert!(run(&["--users", "0"]).is_err());
        assert!(run(&["--json=1"]).is_err());
    }

    #[test]
    fn secret_precedence() {
        let Parsed::Run(o) = parse(&[], Some("env".into())).unwrap() else {
            panic!()
        };
        assert_eq!(o.secret, "env");
        let Parsed::Run(o) = parse(&args(&["--secret", "flag"]), Some("env".into())).unwrap()
        else {
            panic!()
        };
        assert_eq!(o.secret, "flag");
    }

    #[test]
    fn only_loopback_without_allow_remote() {
        assert!(run(&["--base", "http://[::1]:3000"]).is_ok());
        assert!(run(&["--base", "http://127.0.0.1"]).is_ok());
        assert!(run(&["--base", "http://example.com"]).is_err());
        assert!(run(&["--base", "http://10.0.0.1:3000"]).is_err());
        assert!(run(&["--base", "http://example.com", "--allow-remote"]).is_ok());
        assert!(run(&["--base", "https://127.0.0.1"]).is_err());
    }
}
