//! A stand-in OpenID Connect identity provider for tests of token verification with published
//! keys: an RSA (RS256) and an EC P-256 (ES256) signing key made with the system's `openssl`,
//! their public halves served as a JWKS over real HTTP on loopback, with the discovery document
//! that points at it (`/.well-known/openid-configuration`), as Cognito or any OIDC provider
//! serves them.
//!
//! Keys can be added while it runs (a provider rotating its keys), and it counts how often its
//! key set was fetched, so that tests can prove a verifier fetches again only when it meets a
//! key it does not know.

use crate::tls::openssl;
use axum::Json;
use axum::extract::State;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// One signing key of the provider.
struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    key: EncodingKey,
}

#[derive(Default)]
struct Published {
    keys: RwLock<JwkSet>,
    fetches: AtomicUsize,
    issuer: RwLock<String>,
}

pub struct TestIdentityProvider {
    url: String,
    signing: RwLock<Vec<SigningKey>>,
    published: Arc<Published>,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestIdentityProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fresh private key in the DER form jsonwebtoken signs with (PKCS#1 for RSA, PKCS#8 for EC).
fn new_key(algorithm: Algorithm, dir: &Path, name: &str) -> EncodingKey {
    let pem = format!("{name}.pem");
    let der = format!("{name}.der");
    match algorithm {
        Algorithm::RS256 => {
            openssl(&["genrsa", "-traditional", "-out", &pem, "2048"], dir);
            openssl(
                &[
                    "rsa",
                    "-in",
                    &pem,
                    "-traditional",
                    "-outform",
                    "DER",
                    "-out",
                    &der,
                ],
                dir,
            );
            EncodingKey::from_rsa_der(&std::fs::read(dir.join(&der)).expect("the RSA key"))
        }
        Algorithm::ES256 => {
            openssl(
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    &pem,
                ],
                dir,
            );
            // In DER, `genpkey` writes an EC key in its SEC1 form; signing wants PKCS#8.
            openssl(
                &[
                    "pkcs8", "-topk8", "-nocrypt", "-in", &pem, "-outform", "DER", "-out", &der,
                ],
                dir,
            );
            EncodingKey::from_ec_der(&std::fs::read(dir.join(&der)).expect("the EC key"))
        }
        other => panic!("the test provider signs RS256 or ES256, not {other:?}"),
    }
}

/// The public half of a signing key, as a JWKS entry.
fn public_jwk(key: &SigningKey) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&key.key, key.algorithm).expect("a public JWK");
    jwk.common.key_id = Some(key.kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk
}

impl TestIdentityProvider {
    /// A provider on a free loopback port with two keys, `rsa-1` (RS256) and `ec-1` (ES256).
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let published = Arc::new(Published::default());
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(published): State<Arc<Published>>| async move {
                    let issuer = published.issuer.read().unwrap().clone();
                    Json(serde_json::json!({
                        "issuer": issuer,
                        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
                        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                    }))
                }),
            )
            .route(
                "/.well-known/jwks.json",
                get(|State(published): State<Arc<Published>>| async move {
                    published.fetches.fetch_add(1, Ordering::SeqCst);
                    Json(published.keys.read().unwrap().clone())
                }),
            )
            .with_state(published.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the identity provider");
        let url = format!("http://{}", listener.local_addr().unwrap());
        *published.issuer.write().unwrap() = url.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve the JWKS");
        });
        let provider = Self {
            url,
            signing: RwLock::new(Vec::new()),
            published,
            dir,
            task,
        };
        provider.add_key("rsa-1", Algorithm::RS256);
        provider.add_key("ec-1", Algorithm::ES256);
        provider
    }

    /// The issuer (`iss` of its tokens), which is also its base URL.
    pub fn issuer(&self) -> &str {
        &self.url
    }

    /// Where it publishes its keys.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url)
    }

    /// Its key set as it publishes it now.
    pub fn jwks(&self) -> JwkSet {
        self.published.keys.read().unwrap().clone()
    }

    /// How many times its key set was fetched.
    pub fn fetches(&self) -> usize {
        self.published.fetches.load(Ordering::SeqCst)
    }

    /// A new signing key, published from now on (key rotation).
    pub fn add_key(&self, kid: &str, algorithm: Algorithm) {
        let key = SigningKey {
            kid: kid.to_owned(),
            algorithm,
            key: new_key(algorithm, self.dir.path(), kid),
        };
        self.published
            .keys
            .write()
            .unwrap()
            .keys
            .push(public_jwk(&key));
        self.signing.write().unwrap().push(key);
    }

    /// `claims` signed with the key `kid`, its header naming that key and its algorithm.
    pub fn sign(&self, kid: &str, claims: &serde_json::Value) -> String {
        let signing = self.signing.read().unwrap();
        let key = signing
            .iter()
            .find(|k| k.kid == kid)
            .unwrap_or_else(|| panic!("no key {kid}"));
        let mut header = Header::new(key.algorithm);
        header.kid = Some(key.kid.clone());
        encode(&header, claims, &key.key).expect("signing")
    }

    /// A token of this provider for `user`, valid for `ttl_seconds`, for audience `audience`,
    /// in the groups `groups` (as Cognito's `cognito:groups`), signed with `kid`.
    pub fn token(
        &self,
        kid: &str,
        user: &str,
        audience: &str,
        groups: &[&str],
        ttl_seconds: i64,
    ) -> String {
        let now = chrono::Utc::now().timestamp();
        self.sign(
            kid,
            &serde_json::json!({
                "iss": self.url,
                "aud": audience,
                "sub": user,
                "iat": now,
                "exp": now + ttl_seconds,
                "cognito:groups": groups,
            }),
        )
    }
}
