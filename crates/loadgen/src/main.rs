//! `loadgen`: the flash-sale tool. The work is in the library (`booking_loadgen`); this is the
//! command line around it. See `loadgen --help`.

// The binary uses the library; the library's dependencies are not this target's business.
#![allow(unused_crate_dependencies)]

use booking_loadgen::{Scenario, idle, parse_from};
use std::process::ExitCode;

/// The tool allocates a few small buffers per request on every worker thread (request, headers,
/// answers, WebSocket frames); glibc's allocator was ~15 % of its samples.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let scenario = match parse_from(std::env::args_os(), std::env::var("JWT_SECRET").ok()) {
        Ok(s) => s,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let common = match &scenario {
        Scenario::FlashSale(o) => &o.common,
        Scenario::Sockets(o) => &o.common,
        Scenario::WaitingRoom(o) => &o.common,
        Scenario::Steady(o) => &o.common,
    };
    let threads = common.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match scenario {
        Scenario::FlashSale(opts) => {
            eprintln!(
                "loadgen: flash sale, {}; {} users; {}",
                booking_loadgen::report::mode(&opts),
                opts.users,
                booking_loadgen::report::workload(&opts)
            );
            finish(
                runtime.block_on(booking_loadgen::flash_sale((*opts).clone())),
                |o| booking_loadgen::publish(&opts, threads, o),
                |o| o.verification.as_ref().is_none_or(|v| v.passed()),
            )
        }
        Scenario::Sockets(opts) => {
            let json = opts.common.json;
            finish(
                runtime.block_on(idle::run(*opts)),
                |o| {
                    idle::print(o);
                    if json {
                        println!("{}", idle::json_line(o));
                    }
                    Ok(())
                },
                |_| true,
            )
        }
        Scenario::WaitingRoom(opts) => {
            let json = opts.common.json;
            finish(
                runtime.block_on(booking_loadgen::room::run(*opts)),
                |o| {
                    booking_loadgen::room::print(o);
                    if json {
                        println!("{}", booking_loadgen::room::json_line(o));
                    }
                    Ok(())
                },
                booking_loadgen::room::RoomOutcome::passed,
            )
        }
        Scenario::Steady(opts) => finish(
            runtime.block_on(booking_loadgen::steady::run(*opts)),
            booking_loadgen::steady::publish,
            booking_loadgen::steady::SteadyOutcome::passed,
        ),
    };
    // Leftover tasks (late POSTs, WebSocket readers) are dropped, not awaited.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// A scenario's exit status: its outcome published (printed, and written where asked), then 0
/// when its checks passed, 1 when the run failed, publishing failed or a check failed.
fn finish<O>(
    outcome: Result<O, String>,
    publish: impl FnOnce(&O) -> Result<(), String>,
    passed: impl FnOnce(&O) -> bool,
) -> ExitCode {
    let failed = |e: String| {
        eprintln!("loadgen: {e}");
        ExitCode::FAILURE
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    if let Err(e) = publish(&outcome) {
        return failed(e);
    }
    if passed(&outcome) {
        ExitCode::SUCCESS
    } else {
        failed("the checks FAILED".into())
    }
}
