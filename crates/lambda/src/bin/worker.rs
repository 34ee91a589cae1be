//! The worker function: SQS FIFO batches, partial failures reported the FIFO way.

// The function binaries share their package's dependencies; each uses only the library.
#![allow(unused_crate_dependencies)]

fn main() -> Result<(), lambda_runtime::Error> {
    booking_lambda::run(booking_lambda::worker::serve)
}
