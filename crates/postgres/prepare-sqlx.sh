#!/usr/bin/env bash
# Regenerates the offline query data of booking-postgres (`.sqlx/` at the workspace root), which
# the `sqlx::query!` macros read instead of a live database (SQLX_OFFLINE=true in
# .cargo/config.toml). Run it after changing a query or a migration in migrations/postgres, and
# commit the result.
#
# Needs sqlx-cli (`cargo install sqlx-cli --version 0.9.0 --no-default-features
# --features postgres,rustls --locked`) and a PostgreSQL server allowed to create databases:
# PREPARE_DATABASE_URL, default postgres://postgres@127.0.0.1:5432. A scratch database is
# created, migrated, described and dropped.
set -euo pipefail
cd "$(dirname "$0")/../.."

base=${PREPARE_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}
export DATABASE_URL="$base/booking_sqlx_prepare_$$"
sqlx database create
trap 'sqlx database drop -y >/dev/null' EXIT
sqlx migrate run --source migrations/postgres

# --workspace: write to <workspace root>/.sqlx. The arguments after `--` go to `cargo check`:
# booking-postgres is the only crate with compile-time checked queries (the root package alone
# would be checked otherwise, and it has none).
SQLX_OFFLINE=false cargo sqlx prepare --workspace -- -p booking-postgres --all-targets
