//! `loadgen`: the flash-sale tool. The work is in the library (`booking_loadgen`); this is the
//! command line around it. See `loadgen --help`.

// The binary uses the library; the library's dependencies are not this target's business.
#![allow(unused_crate_dependencies)]

use booking_loadgen::{Scenario, idle, parse_from};
use std::process::ExitCode;

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
            match runtime.block_on(booking_loadgen::flash_sale((*opts).clone())) {
                Ok(o) => match booking_loadgen::publish(&opts, threads, &o) {
                    Err(e) => {
                        eprintln!("loadgen: {e}");
                        ExitCode::FAILURE
                    }
                    Ok(()) if o.verification.as_ref().is_some_and(|v| !v.passed()) => {
                        eprintln!("loadgen: the checks FAILED");
                        ExitCode::FAILURE
                    }
                    Ok(()) => ExitCode::SUCCESS,
                },
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Scenario::Sockets(opts) => {
            let json = opts.common.json;
            match runtime.block_on(idle::run(*opts)) {
                Ok(o) => {
                    idle::print(&o);
                    if json {
                        println!("{}", idle::json_line(&o));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Scenario::WaitingRoom(opts) => {
            let json = opts.common.json;
            match runtime.block_on(booking_loadgen::room::run(*opts)) {
                Ok(o) => {
                    booking_loadgen::room::print(&o);
                    if json {
                        println!("{}", booking_loadgen::room::json_line(&o));
                    }
                    if o.passed() {
                        ExitCode::SUCCESS
                    } else {
                        eprintln!("loadgen: the checks FAILED");
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    };
    // Leftover tasks (late POSTs, WebSocket readers) are dropped, not awaited.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}
