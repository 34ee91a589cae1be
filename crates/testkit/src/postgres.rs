//! Fresh, throw-away databases for tests (this crate's and any other crate's that wants a real
//! PostgreSQL).
//!
//! [`TestDatabase::create`] makes a uniquely named database on the server named by
//! `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`, then the same
//! with user `root`), migrates it and connects a [`PgStore`] to it; dropping the guard drops the
//! database, also when the test panics. Tests can therefore run in parallel and leave nothing
//! behind; databases left by a killed test run are dropped by a later run once they are
//! [`STALE_AFTER`] old.
//!
//! If the server cannot be reached the helpers panic with how to start it: a test that needs
//! PostgreSQL fails, it never silently skips.
//!
//! The DDL here (`CREATE DATABASE`, `DROP DATABASE`) takes identifiers, which cannot be bound
//! as parameters, so these few statements are runtime queries; names are generated here, never
//! taken from input.

use booking_postgres::{PgOptions, PgStore};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Name prefix of every database this module creates.
pub const PREFIX: &str = "booking_test_";

/// A test database older than this was left behind by a killed run and may be dropped.
pub const STALE_AFTER: Duration = Duration::from_secs(2 * 3600);

/// The admin URLs tried, in order: `TEST_DATABASE_URL` if set, else the local server as user
/// `postgres`, then as `root`.
pub fn admin_urls() -> Vec<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => vec![url],
        _ => vec![
            "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
            "postgres://root@127.0.0.1:5432/postgres".to_owned(),
        ],
    }
}

fn how_to_start(tried: &[(String, String)]) -> String {
    let attempts: Vec<String> = tried
        .iter()
        .map(|(url, err)| format!("  {url}: {err}"))
        .collect();
    format!(
        "PostgreSQL is not reachable, and these tests need it (they never skip):\n{}\n\
         Start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
         or `bash scripts/ensure-services.sh`, or point TEST_DATABASE_URL at a server \
         (postgres://user@host:port/db, a role allowed to CREATE DATABASE).",
        attempts.join("\n")
    )
}

/// `url` with its database (the path) replaced by `database`; user, password, host, port and
/// query parameters are kept.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Connects to the admin database (the first of [`admin_urls`] that answers). Panics, saying
/// how to start PostgreSQL, if none does.
pub async fn admin_connection() -> (PgConnectOptions, PgConnection) {
    let (options, _, conn) = admin_connection_with_url().await;
    (options, conn)
}

async fn admin_connection_with_url() -> (PgConnectOptions, String, PgConnection) {
    let mut tried = Vec::new();
    for url in admin_urls() {
        let options: PgConnectOptions = match url.parse() {
            Ok(options) => options,
            Err(e) => {
                tried.push((url, format!("not a PostgreSQL URL: {e}")));
                continue;
            }
        };
        match options.connect().await {
            Ok(conn) => return (options, url, conn),
            Err(e) => tried.push((url, e.to_string())),
        }
    }
    panic!("{}", how_to_start(&tried));
}

/// A DDL statement naming a database: only names of this module's own shape are ever spliced
/// into SQL, so nothing can be injected.
fn ddl(template: &str, name: &str) -> sqlx::AssertSqlSafe<String> {
    assert!(
        name.starts_with(PREFIX)
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "not a test database name: {name:?}"
    );
    sqlx::AssertSqlSafe(template.replace("{name}", name))
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Drops databases of this module that a killed test run left behind.
async fn drop_stale(admin: &mut PgConnection) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
    )
    .bind(PREFIX)
    .fetch_all(&mut *admin)
    .await
    else {
        return;
    };
    let now = unix_seconds();
    for name in names {
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        let valid = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid && created.is_some_and(|c| now.saturating_sub(c) > STALE_AFTER.as_secs()) {
            let _ = sqlx::query(ddl(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)",
                &name,
            ))
            .execute(&mut *admin)
            .await;
        }
    }
}

/// A database that exists as long as this guard: created, migrated and connected by
/// [`TestDatabase::create`], dropped (with every connection still open to it) on drop.
pub struct TestDatabase {
    name: String,
    url: String,
    admin: PgConnectOptions,
    options: PgConnectOptions,
    store: PgStore,
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestDatabase {
    /// A fresh, migrated database with a store of default options (a smaller pool).
    pub async fn create() -> Self {
        Self::create_with(PgOptions {
            max_connections: 8,
            ..PgOptions::default()
        })
        .await
    }

    /// A fresh, migrated database with a store of the given options.
    pub async fn create_with(store_options: PgOptions) -> Self {
        let db = Self::create_empty(store_options).await;
        db.store.migrate().await.expect("migrate a test database");
        db
    }

    /// A fresh database without the schema (for testing migrations).
    pub async fn create_empty(store_options: PgOptions) -> Self {
        let (admin, admin_url, mut conn) = admin_connection_with_url().await;
        drop_stale(&mut conn).await;
        let name = format!(
            "{PREFIX}{}_{}_{}",
            unix_seconds(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        sqlx::query(ddl("CREATE DATABASE \"{name}\"", &name))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = conn.close().await;
        let options = admin.clone().database(&name);
        let store = PgStore::connect_with(options.clone(), store_options)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to test database {name}: {e}"));
        Self {
            url: with_database(&admin_url, &name),
            name,
            admin,
            options,
            store,
        }
    }

    pub fn store(&self) -> &PgStore {
        &self.store
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection URL for the database (the admin URL with this database's name), e.g. for
    /// a server process started by the test.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Connection options for the database (to open more stores or raw connections to it).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// Another store on the same database, with its own pool and intake writer (a second
    /// "worker process").
    pub async fn another_store(&self, options: PgOptions) -> PgStore {
        PgStore::connect_with(self.options.clone(), options)
            .await
            .expect("connect another store")
    }

    /// A raw connection to the database, outside any store.
    pub async fn raw_connection(&self) -> PgConnection {
        self.options
            .connect()
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on from within; a thread
        // with its own small runtime does the work. `WITH (FORCE)` ends the connections the
        // store's pool (and any other) still has open.
        let admin = self.admin.clone();
        let name = std::mem::take(&mut self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            runtime.block_on(async move {
                let mut conn = admin.connect().await?;
                sqlx::query(ddl(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)",
                    &name,
                ))
                .execute(&mut conn)
                .await?;
                conn.close().await
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop a test database: {e}"),
            Err(_) => eprintln!("could not drop a test database: the dropping thread panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn urls_get_the_database_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database(
                "postgres://u:p@h/db?sslmode=disable&application_name=a",
                "x"
            ),
            "postgres://u:p@h/x?sslmode=disable&application_name=a"
        );
        assert_eq!(
            with_database("postgres://u@h:5433", "x"),
            "postgres://u@h:5433/x"
        );
        assert_eq!(
            with_database("postgres://u@h:5433?a=b", "x"),
            "postgres://u@h:5433/x?a=b"
        );
    }
}
