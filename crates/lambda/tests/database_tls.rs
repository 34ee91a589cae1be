//! The deployed functions reach PostgreSQL over TLS and verify it: the URL they build from the
//! RDS secret connects to a TLS server the test starts (its certificate from a throw-away CA,
//! named in `DATABASE_CA_FILE`), and is refused when that CA is not trusted or the server's
//! certificate names another host, where `sslmode=require` would have accepted either.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use booking_core::ports::HoldStore;
use booking_lambda::config::url_from_rds_secret;
use booking_postgres::{PgOptions, PgStore};
use booking_testkit::tls::TestCa;
use booking_testkit::tls_postgres::TlsPostgres;
use std::time::Duration;

/// Connects and asks; the error chain if that failed.
async fn reach(url: &str) -> Result<(), String> {
    let options = PgOptions {
        acquire_timeout: Duration::from_secs(5),
        ..PgOptions::default()
    };
    let store = PgStore::connect(url, options)
        .await
        .map_err(|e| booking_core::Chain(&e).to_string())?;
    store
        .ping()
        .await
        .map_err(|e| booking_core::Chain(&e).to_string())
}

/// Refused because of the server's certificate (not because it is down or unreachable).
async fn refused_for_its_certificate(url: &str) -> bool {
    match reach(url).await {
        Ok(()) => false,
        Err(why) => {
            assert!(
                why.contains("certificate"),
                "refused, but not for the certificate: {why}"
            );
            true
        }
    }
}

#[tokio::test]
async fn the_database_url_verifies_the_server_certificate() {
    let ca = TestCa::new();
    let server = TlsPostgres::start(&ca);
    let secret = |host: &str| {
        serde_json::json!({
            "username": "postgres",
            "password": "p@ss/w:rd",
            "host": host,
            "port": server.port,
            "dbname": "postgres",
        })
        .to_string()
    };
    let ca_file = ca.ca_pem().display().to_string();

    let url = url_from_rds_secret(&secret("127.0.0.1"), Some(&ca_file)).unwrap();
    assert!(url.contains("sslmode=verify-full"), "{url}");
    assert_eq!(
        reach(&url).await,
        Ok(()),
        "trusted CA, right name: connects"
    );

    let unknown_ca = url_from_rds_secret(&secret("127.0.0.1"), None).unwrap();
    assert!(
        refused_for_its_certificate(&unknown_ca).await,
        "a certificate no trusted CA signed is refused"
    );
    let wrong_name = url_from_rds_secret(&secret("localhost"), Some(&ca_file)).unwrap();
    assert!(
        refused_for_its_certificate(&wrong_name).await,
        "a certificate for another name is refused"
    );
    // What the old URL did: encrypted, but any certificate was good enough.
    let require = server.url("127.0.0.1", "sslmode=require");
    assert_eq!(
        reach(&require).await,
        Ok(()),
        "the server itself is up and speaks TLS"
    );
}
