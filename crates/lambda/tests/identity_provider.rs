//! Tokens of an identity provider, verified with the keys it publishes: the same checks as the
//! shared-key tokens (time, issuer, audience, lifetime), RS256 and ES256, each key pinned to its
//! own algorithm, and key rotation picked up by fetching the set again, but not more often than
//! allowed. Against a real JWKS served over HTTP on loopback.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use booking_app::auth::{AdminClaim, Authenticator, TokenRules};
use booking_lambda::authorizer::ProviderKeys;
use booking_testkit::idp::TestIdentityProvider;
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::time::Duration;

const AUDIENCE: &str = "seatbook-web";

fn rules(idp: &TestIdentityProvider) -> TokenRules {
    TokenRules {
        issuer: Some(idp.issuer().to_owned()),
        audience: Some(AUDIENCE.to_owned()),
        admin: AdminClaim {
            name: "cognito:groups".into(),
            value: "admin".into(),
        },
        ..TokenRules::default()
    }
}

fn message(result: Result<booking_app::auth::Caller, booking_app::error::ApiError>) -> String {
    result.expect_err("refused").message
}

#[tokio::test]
async fn published_keys_verify_the_providers_tokens_and_nothing_else() {
    let idp = TestIdentityProvider::start().await;
    let auth = Authenticator::from_jwks(&idp.jwks(), rules(&idp)).expect("usable keys");
    let now = chrono::Utc::now().timestamp();

    for kid in ["rsa-1", "ec-1"] {
        let caller = auth
            .verify(&idp.token(kid, "alice", AUDIENCE, &["fans"], 300))
            .unwrap_or_else(|e| panic!("{kid}: {}", e.message));
        assert_eq!(caller.user_id.as_str(), "alice");
        assert!(!caller.is_admin);
    }
    assert!(
        auth.verify(&idp.token("ec-1", "ops", AUDIENCE, &["admin"], 300))
            .unwrap()
            .is_admin,
        "the provider's group makes the admin"
    );
    // A Cognito access token names its app client in `client_id` and has no `aud`.
    let access = idp.sign(
        "rsa-1",
        &json!({"iss": idp.issuer(), "client_id": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}),
    );
    assert!(auth.verify(&access).is_ok(), "client_id stands for aud");

    // Signed with the shared development key: no published key has no kid, nor signs HS256.
    let shared = Authenticator::hs256(booking_app::auth::DEV_JWT_SECRET.as_bytes()).mint(
        &"alice".parse().unwrap(),
        true,
        chrono::Duration::minutes(5),
    );
    assert_eq!(
        message(auth.verify(&shared)),
        "token is signed by an unknown key"
    );
    // The EC key's id on an RS256 signature: each key verifies only its own algorithm.
    let claims =
        json!({"iss": idp.issuer(), "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300});
    let rsa = idp.sign("rsa-1", &claims);
    let mut parts: Vec<String> = rsa.split('.').map(str::to_owned).collect();
    let header = json!({"alg": "RS256", "kid": "ec-1", "typ": "JWT"}).to_string();
    parts[0] = base64url(header.as_bytes());
    assert_eq!(
        message(auth.verify(&parts.join("."))),
        "token algorithm is not accepted"
    );
    // Another key's signature under this key's id.
    let ec = idp.sign("ec-1", &claims);
    let forged = format!(
        "{}.{}",
        &rsa[..rsa.rfind('.').unwrap()],
        &ec[ec.rfind('.').unwrap() + 1..]
    );
    assert!(auth.verify(&forged).is_err(), "signature of another key");

    let refused = [
        (
            "token issuer is not accepted",
            json!({"iss": "https://evil.example", "aud": AUDIENCE, "sub": "alice", "exp": now + 300}),
        ),
        (
            "token audience is not accepted",
            json!({"iss": idp.issuer(), "aud": "another-app", "sub": "alice", "exp": now + 300}),
        ),
        (
            "token audience is not accepted",
            json!({"iss": idp.issuer(), "client_id": "another-app", "sub": "alice", "exp": now + 300}),
        ),
        (
            "token has expired",
            json!({"iss": idp.issuer(), "aud": AUDIENCE, "sub": "alice", "exp": now - 60}),
        ),
        (
            "token is not valid yet (nbf)",
            json!({"iss": idp.issuer(), "aud": AUDIENCE, "sub": "alice", "exp": now + 7200, "nbf": now + 3600}),
        ),
        (
            "token lives longer than this service accepts",
            json!({"iss": idp.issuer(), "aud": AUDIENCE, "sub": "alice", "exp": now + 30 * 86_400}),
        ),
        (
            "token subject is not a valid user id",
            json!({"iss": idp.issuer(), "aud": AUDIENCE, "sub": "not a user", "exp": now + 300}),
        ),
    ];
    for (why, claims) in refused {
        assert_eq!(
            message(auth.verify(&idp.sign("rsa-1", &claims))),
            why,
            "{claims}"
        );
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_it_signs_and_no_more_often_than_allowed() {
    let idp = TestIdentityProvider::start().await;
    // Found through the issuer's discovery document.
    let keys = ProviderKeys::fetch(None, rules(&idp))
        .await
        .expect("the key set");
    assert_eq!(idp.fetches(), 1);
    idp.add_key("rsa-2", Algorithm::RS256);
    let rotated = idp.token("rsa-2", "alice", AUDIENCE, &[], 300);

    // Within the refetch interval a token naming an unknown key fetches nothing.
    let patient = keys.refetching_after(Duration::from_secs(3_600));
    assert_eq!(
        patient.verify_until(&rotated).await.unwrap_err().message,
        "token is signed by an unknown key"
    );
    assert_eq!(idp.fetches(), 1, "no fetch within the interval");

    let eager = patient.refetching_after(Duration::ZERO);
    let (caller, _) = eager.verify_until(&rotated).await.expect("the rotated key");
    assert_eq!(caller.user_id.as_str(), "alice");
    assert_eq!(idp.fetches(), 2);
    // A known key needs no fetch.
    eager
        .verify_until(&idp.token("rsa-1", "alice", AUDIENCE, &[], 300))
        .await
        .unwrap();
    assert_eq!(idp.fetches(), 2);

    // Straight from a configured JWKS URL, too.
    let direct = ProviderKeys::fetch(Some(idp.jwks_url()), rules(&idp))
        .await
        .unwrap();
    direct.verify_until(&rotated).await.unwrap();
}
