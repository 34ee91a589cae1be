//! The flash-sale tool behind `loadgen`: drives a `seatbook` server the way a sale's crowd does,
//! measures it (throughput, POST → WebSocket result latency, the server's and its own CPU per
//! request) and then checks what a booking system must never get wrong: no seat in two live
//! holds, every accepted request decided exactly once (WebSocket and polling agreeing), and
//! contested seats going to the earliest request.
//!
//! It is a library as well as a program so that the test suite runs the same flash sale, with
//! the same checks, as people run from the command line (`tests/flash_sale.rs`).
//!
//! The tool is a client: it speaks the API's contract and does not link the server's crates.

// Unit tests are built with every dev-dependency of the package; each uses only some.
#![cfg_attr(test, allow(unused_crate_dependencies))]
// The report's `json!` object has more keys than the default limit expands.
#![recursion_limit = "256"]

// The `loadgen` binary's global allocator; the library itself allocates through whichever the
// program that links it installs.
use mimalloc as _;

pub mod args;
mod collect;
mod cpu;
pub mod faults;
pub mod idle;
mod plot;
mod progress;
pub mod report;
pub mod room;
pub mod run;
mod server;
mod sockets;
pub mod stats;
pub mod steady;
mod token;
pub mod verify;

pub use args::{Options, Scenario, parse_from};
pub use run::Outcomes;

/// Runs a flash sale (starting the server first when the options say so).
pub async fn flash_sale(opts: Options) -> Result<Outcomes, String> {
    run::run(opts).await
}

/// After a flash sale: the printed report, and the `--json`, `--report` and `--plot` outputs.
pub fn publish(opts: &Options, threads: usize, o: &Outcomes) -> Result<(), String> {
    report::print(opts, threads, o);
    if let Some(path) = &opts.report {
        let text = serde_json::to_string_pretty(&report::full(opts, threads, o))
            .map_err(|e| format!("--report: {e}"))?;
        std::fs::write(path, text).map_err(|e| format!("--report {}: {e}", path.display()))?;
        println!("report written to {}", path.display());
    }
    if let Some(path) = &opts.plot {
        let title = format!(
            "flash sale: {} users, {}, {}",
            opts.users,
            report::mode(opts),
            report::workload(opts)
        );
        plot::draw(path, &title, &o.book.timeline)?;
        println!("plot written to {}", path.display());
    }
    if opts.common.json {
        println!("{}", report::json_line(opts, threads, o));
    }
    Ok(())
}
