//! The api function: `lambda_http` serving the shared axum router.

use booking_lambda::{api, init_tracing};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let app = api::app_from_env().await?;
    lambda_http::run(app).await
}
