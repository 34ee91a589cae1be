//! What the functions read from their environment, and the secrets they fetch at cold start.
//!
//! Secrets never sit in the template or in environment variables in production: the functions
//! get the ARN of a Secrets Manager secret and read it once per process. For local runs (and
//! tests) the plain variables (`DATABASE_URL`, `JWT_SECRET`) are accepted instead.

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    /// A secret could not be read, or does not hold what it should.
    #[error("secret {arn}: {what}")]
    Secret {
        arn: String,
        what: &'static str,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error(transparent)]
    Booking(#[from] booking_app::ConfigError),
}

/// A required variable.
pub fn required(name: &'static str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError::Missing(name)),
    }
}

/// An optional variable (unset and empty are the same).
pub fn optional(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The RDS-managed secret's JSON shape.
#[derive(Deserialize)]
struct DatabaseSecret {
    username: String,
    password: String,
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default = "default_dbname")]
    dbname: String,
}

fn default_port() -> u16 {
    5432
}

fn default_dbname() -> String {
    "postgres".to_owned()
}

/// Reads a secret's string value.
async fn secret_string(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<String, ConfigError> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| ConfigError::Secret {
            arn: arn.to_owned(),
            what: "cannot be read",
            source: Some(Box::new(e)),
        })?;
    out.secret_string()
        .map(str::to_owned)
        .ok_or_else(|| ConfigError::Secret {
            arn: arn.to_owned(),
            what: "is not a string secret",
            source: None,
        })
}

/// Percent-encodes a URL user-info part (passwords may hold `@`, `/`, `:`…).
fn encode_userinfo(part: &str) -> String {
    part.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The PostgreSQL URL: `DATABASE_URL`, or built from the secret `DATABASE_SECRET_ARN` (see
/// [`url_from_rds_secret`]; the CA bundle from `DATABASE_CA_FILE`).
pub async fn database_url(sdk: &aws_config::SdkConfig) -> Result<String, ConfigError> {
    if let Some(url) = optional("DATABASE_URL") {
        return Ok(url);
    }
    let arn = required("DATABASE_SECRET_ARN")?;
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let text = secret_string(&client, &arn).await?;
    url_from_rds_secret(&text, optional("DATABASE_CA_FILE").as_deref()).map_err(|e| {
        ConfigError::Secret {
            arn: arn.clone(),
            what: "is not in the RDS JSON shape (username, password, host, port, dbname)",
            source: Some(Box::new(e)),
        }
    })
}

/// The URL for an RDS secret (its JSON shape: `username`, `password`, `host`, `port`, `dbname`):
/// TLS with the server's certificate and host name verified (`sslmode=verify-full`), against the
/// CA certificates in `ca_file` (the RDS CA bundle, PEM) when given, else the public roots built
/// into the TLS library (which RDS's CAs are not among: without the bundle, RDS is refused).
/// `require` would encrypt but accept any certificate: anyone who can answer for the host would
/// read every password and booking.
pub fn url_from_rds_secret(json: &str, ca_file: Option<&str>) -> Result<String, serde_json::Error> {
    let secret: DatabaseSecret = serde_json::from_str(json)?;
    let root = ca_file.map_or(String::new(), |path| {
        format!("&sslrootcert={}", encode_userinfo(path))
    });
    Ok(format!(
        "postgres://{}:{}@{}:{}/{}?sslmode=verify-full{root}",
        encode_userinfo(&secret.username),
        encode_userinfo(&secret.password),
        secret.host,
        secret.port,
        encode_userinfo(&secret.dbname)
    ))
}

/// A key given as `plain` itself (tests, the emulator), else as the Secrets Manager secret
/// named by `arn`; `None` when neither is set.
async fn key_from_env(
    sdk: &aws_config::SdkConfig,
    plain: &'static str,
    arn: &'static str,
) -> Result<Option<String>, ConfigError> {
    if let Some(secret) = optional(plain) {
        return Ok(Some(secret));
    }
    let Some(arn) = optional(arn) else {
        return Ok(None);
    };
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    secret_string(&client, &arn).await.map(Some)
}

/// The HS256 key: `JWT_SECRET`, or the secret `JWT_SECRET_ARN`.
pub async fn jwt_secret(sdk: &aws_config::SdkConfig) -> Result<String, ConfigError> {
    key_from_env(sdk, "JWT_SECRET", "JWT_SECRET_ARN")
        .await?
        .ok_or(ConfigError::Missing("JWT_SECRET_ARN"))
}

/// The waiting rooms' admission key: `ADMISSION_SECRET`, or the secret `ADMISSION_SECRET_ARN`;
/// `None` when neither is set.
pub async fn admission_secret(sdk: &aws_config::SdkConfig) -> Result<Option<String>, ConfigError> {
    key_from_env(sdk, "ADMISSION_SECRET", "ADMISSION_SECRET_ARN").await
}

/// How the api function learns who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Verify the `Authorization: Bearer` token in the function (HS256, `JWT_SECRET`).
    Bearer,
    /// Trust the claims of the HTTP API's JWT authorizer (the gateway verified the token).
    Authorizer,
}

impl AuthMode {
    /// Whether the function needs the token key: only when it verifies tokens itself.
    pub fn token_key(self) -> crate::wiring::TokenKey {
        match self {
            Self::Bearer => crate::wiring::TokenKey::Fetch,
            Self::Authorizer => crate::wiring::TokenKey::NotNeeded,
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        match optional("AUTH_MODE").as_deref() {
            None | Some("bearer") => Ok(Self::Bearer),
            Some("authorizer") => Ok(Self::Authorizer),
            Some(other) => Err(ConfigError::Invalid {
                name: "AUTH_MODE",
                reason: format!("{other:?}: expected bearer or authorizer"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_encoded_into_the_url() {
        assert_eq!(encode_userinfo("p@ss:w/rd%"), "p%40ss%3Aw%2Frd%25");
        assert_eq!(encode_userinfo("plain-Pass_1.~"), "plain-Pass_1.~");
    }
}
