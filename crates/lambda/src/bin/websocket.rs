//! The websocket function: `$connect`, `$disconnect` and `$default` of the WebSocket API.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use booking_lambda::{init_tracing, websocket::WebSocketRoutes};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let routes = &*Box::leak(Box::new(WebSocketRoutes::from_env().await?));
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            Ok::<ApiGatewayProxyResponse, Error>(routes.handle(event.payload).await)
        },
    ))
    .await
}
