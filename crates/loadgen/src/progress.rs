//! What the run shows while it runs: an `indicatif` bar with the last second's rates on a
//! terminal, or one plain line per second when stderr is a file or a pipe (CI logs), or nothing
//! with `--quiet`. Counted from the tool's own numbers: reading the server's queue statistics
//! every second would cost the server under measurement a full count each time. Each scenario
//! says what its line shows ([`Progress::lines`]).

use crate::run::Ctx;
use crate::stats::Snapshot;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The running display; [`Progress::finish`] ends it.
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// The flash sale's display: POST rates and what is outstanding.
    pub fn start(ctx: &Arc<Ctx>, start: Instant) -> Self {
        let ctx = ctx.clone();
        let (quiet, window) = (ctx.opts.common.quiet, ctx.opts.duration);
        let mut last = Snapshot::default();
        Self::lines(quiet, window, start, move |dt| {
            if ctx.stopped.load(Ordering::Relaxed) {
                return None;
            }
            let s = ctx.stats.snapshot();
            let text = line(&s, &last, dt);
            last = s;
            Some(text)
        })
    }

    /// A display of any run with a `window`-long load from `start`: once a second, `next`
    /// (given the seconds since its last call) says what to show, or `None` once the run is
    /// over.
    pub fn lines(
        quiet: bool,
        window: Duration,
        start: Instant,
        next: impl FnMut(f64) -> Option<String> + Send + 'static,
    ) -> Self {
        if quiet {
            return Self {
                task: None,
                bar: None,
            };
        }
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(window.as_secs().max(1));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} s  {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let task = tokio::spawn(run(window, start, bar.clone(), next));
        Self {
            task: Some(task),
            bar,
        }
    }

    pub fn finish(self) {
        if let Some(t) = self.task {
            t.abort();
        }
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

fn line(s: &Snapshot, last: &Snapshot, dt: f64) -> String {
    format!(
        "sent {:6.0}/s accepted {:6.0}/s rejected {:5.0}/s decided {:6.0}/s | in flight {:4} awaiting results {:6}{}",
        (s.sent - last.sent) as f64 / dt,
        (s.accepted - last.accepted) as f64 / dt,
        (s.rejected - last.rejected) as f64 / dt,
        (s.decided - last.decided) as f64 / dt,
        s.in_flight,
        s.waiting_result,
        if s.skipped > last.skipped {
            format!(" skipped +{}", s.skipped - last.skipped)
        } else {
            String::new()
        },
    )
}

async fn run(
    window: Duration,
    start: Instant,
    bar: Option<ProgressBar>,
    mut next: impl FnMut(f64) -> Option<String>,
) {
    let mut tick = tokio::time::interval_at(
        (start + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_at = start;
    loop {
        tick.tick().await;
        let now = Instant::now();
        let Some(text) = next((now - last_at).as_secs_f64().max(1e-9)) else {
            return;
        };
        let elapsed = (now - start).as_secs_f64();
        match &bar {
            Some(b) => {
                b.set_position((elapsed as u64).min(b.length().unwrap_or(0)));
                b.set_message(if now - start > window {
                    format!("draining | {text}")
                } else {
                    text
                });
            }
            None => eprintln!("[{elapsed:6.1}s] {text}"),
        }
        last_at = now;
    }
}
