//! The authorizer function: the WebSocket API's `$connect` REQUEST authorizer
//! (`AUTH_MODE=authorizer`).

// The function binaries share their package's dependencies; each uses only the library.
#![allow(unused_crate_dependencies)]

fn main() -> Result<(), lambda_runtime::Error> {
    booking_lambda::run(booking_lambda::authorizer::serve)
}
