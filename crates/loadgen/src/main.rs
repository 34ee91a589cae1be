//! `loadgen`: drives a running `seatbook` server with hold requests and measures accepted/s,
//! decided/s and the latency from sending POST /api/v1/holds to receiving that request's
//! BOOKING_RESULT on the requester's WebSocket. See `loadgen --help`.

// Unit tests are built with every dev-dependency of the package; each uses only some.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod args;
mod cpu;
mod report;
mod run;
mod sockets;
mod stats;
mod token;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let opts = match args::parse(&argv, std::env::var("JWT_SECRET").ok()) {
        Ok(args::Parsed::Run(o)) => *o,
        Ok(args::Parsed::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("loadgen: {e}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let threads = opts.threads.unwrap_or_else(|| {
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
    eprintln!(
        "loadgen: {} against {} show {}",
        report::mode(&opts),
        opts.base,
        opts.show
    );
    let outcome = runtime.block_on(run::run(opts.clone()));
    // Leftover tasks (late POSTs, WebSocket readers) are dropped, not awaited.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(o) => {
            report::print(&opts, threads, &o);
            if opts.json {
                println!("{}", report::json_line(&opts, threads, &o));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
