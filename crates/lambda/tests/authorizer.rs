//! The api function in `AUTH_MODE=authorizer`: the caller is whoever API Gateway's JWT
//! authorizer verified (its `sub` and `role` claims in the request context), and nothing a client
//! sends can stand in for that. Driven through the real router and middleware, on PostgreSQL.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use booking_app::auth::AdminClaim;
use booking_app::{App, BookingConfig, Stores};
use booking_lambda::api::caller_from_authorizer;
use booking_testkit::postgres::TestDatabase;
use lambda_http::RequestExt;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
use lambda_http::request::RequestContext;
use serde_json::json;
use std::sync::Arc;
use tower::ServiceExt;

/// The request context API Gateway hands over, with these verified claims (none: no authorizer
/// ran, as on a public route).
fn context(claims: Option<serde_json::Value>) -> RequestContext {
    let mut context = json!({
        "routeKey": "$default",
        "stage": "$default",
        "http": { "method": "GET", "path": "/api/v1/admin/queues" },
        "timeEpoch": 0,
    });
    if let Some(claims) = claims {
        context["authorizer"] = json!({ "jwt": { "claims": claims, "scopes": null } });
    }
    RequestContext::ApiGatewayV2(
        serde_json::from_value::<ApiGatewayV2httpRequestContext>(context).expect("a context"),
    )
}

async fn status_of(app: &axum::Router, context: RequestContext, bearer: Option<&str>) -> u16 {
    let mut request = Request::get("/api/v1/admin/queues");
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Body::empty())
        .unwrap()
        .with_request_context(context);
    app.clone()
        .oneshot(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_authorizers_claims_decide_who_calls() {
    let db = TestDatabase::create().await;
    // As the function wires itself without a JWT secret: no bearer token verifies here.
    let app = App::builder(
        Stores::of(Arc::new(db.store().clone())),
        BookingConfig::default(),
    )
    .build()
    .router()
    .layer(axum::middleware::from_fn(|request, next| {
        // The admin role comes from a claim only the identity provider sets: a Cognito group.
        let groups = AdminClaim {
            name: "cognito:groups".into(),
            value: "admin".into(),
        };
        caller_from_authorizer(Arc::new(groups), request, next)
    }));

    // As API Gateway passes a list claim on: one string.
    let admin = context(Some(
        json!({ "sub": "ops", "cognito:groups": "[fans admin]" }),
    ));
    assert_eq!(status_of(&app, admin, None).await, StatusCode::OK.as_u16());
    let user = context(Some(json!({ "sub": "alice", "cognito:groups": "[fans]" })));
    assert_eq!(
        status_of(&app, user, None).await,
        403,
        "not in the admin group"
    );
    let self_declared = context(Some(json!({ "sub": "alice", "role": "admin" })));
    assert_eq!(
        status_of(&app, self_declared, None).await,
        403,
        "a claim other than the configured one grants nothing"
    );
    assert_eq!(status_of(&app, context(None), None).await, 401, "nobody");
    let invalid = context(Some(
        json!({ "sub": "has space", "cognito:groups": "[admin]" }),
    ));
    assert_eq!(
        status_of(&app, invalid, None).await,
        401,
        "a subject that is not a user id is anonymous"
    );
    // A token a client signed itself is no substitute for the authorizer.
    let forged = booking_app::Authenticator::hs256(b"a secret the client chose").mint(
        &"ops".parse().unwrap(),
        true,
        chrono::Duration::hours(1),
    );
    assert_eq!(status_of(&app, context(None), Some(&forged)).await, 401);
}
