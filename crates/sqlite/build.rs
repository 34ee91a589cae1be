//! Rebuilds this crate when a migration file is added or changed: `sqlx::migrate!` embeds
//! `migrations/sqlite` at compile time, and without this cargo would not notice a new file there
//! (a build would keep serving the old schema, as happened with migration 0006).

fn main() {
    println!("cargo:rerun-if-changed=../../migrations/sqlite");
}
