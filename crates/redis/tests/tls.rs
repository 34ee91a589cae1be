//! `rediss://` against a real TLS-only `redis-server` the test starts with a certificate from a
//! throw-away CA: trusted through that CA, the mirror and the rate limiter work; without it (the
//! system's trust store), or under a host name the certificate does not name, the connection is
//! refused. So the client verifies the server, and TLS is not merely switched on.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use booking_core::ShowId;
use booking_core::ports::{RateLimiter, SeatMirror};
use booking_core::rate::{RateRule, RateVerdict};
use booking_redis::RedisMirror;
use booking_testkit::redis::PrivateRedis;
use booking_testkit::tls::TestCa;

#[tokio::test]
async fn rediss_verifies_the_server_certificate() {
    let ca = TestCa::new();
    let server = PrivateRedis::start_tls(&ca);
    let url = server.url();
    assert!(url.starts_with("rediss://127.0.0.1:"), "{url}");

    let trusted = RedisMirror::connect_trusting(&url, Some(&ca.ca_bytes()))
        .await
        .expect("a server signed by the trusted CA");
    trusted.ping().await.unwrap();
    let show = ShowId::new_random();
    assert!(trusted.rebuild(show, &[], &[], 0).await.unwrap());
    let rule = RateRule::new(1, std::time::Duration::from_secs(60), 1);
    let limiter = trusted.rate_limiter();
    assert_eq!(
        limiter.acquire("tls", &rule).await.unwrap(),
        RateVerdict::Allowed
    );

    // Refused for the certificate, not for anything else (the server is up: see above).
    let refusal = |answer: Result<RedisMirror, booking_core::MirrorError>| match answer {
        Ok(_) => panic!("connected"),
        Err(e) => booking_core::Chain(&e).to_string(),
    };
    let untrusted = refusal(RedisMirror::connect(&url).await);
    assert!(
        untrusted.contains("certificate"),
        "a certificate no trusted CA signed must be refused: {untrusted}"
    );
    let wrong_name = url.replace("127.0.0.1", "localhost");
    let mismatched =
        refusal(RedisMirror::connect_trusting(&wrong_name, Some(&ca.ca_bytes())).await);
    assert!(
        mismatched.contains("certificate"),
        "a certificate for another name must be refused: {mismatched}"
    );
}
