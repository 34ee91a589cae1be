//! The websocket function: `$connect`, `$disconnect` and `$default` of the WebSocket API.

// The function binaries share their package's dependencies; each uses only the library.
#![allow(unused_crate_dependencies)]

fn main() -> Result<(), lambda_runtime::Error> {
    booking_lambda::run(booking_lambda::websocket::serve)
}
