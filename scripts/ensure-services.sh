#!/usr/bin/env bash
# Makes sure the services the test suite talks to are answering on this machine:
# PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379. Starts them if they are installed
# but down, installs them from Debian's packages if they are absent. Exits non-zero, saying
# what is wrong, if one still does not answer.
set -euo pipefail

log() { echo "[ensure-services] $*"; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then log "$name is answering"; return 0; fi
    sleep 0.5
  done
  log "$name is still not answering"; return 1
}

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if ! command -v pg_isready >/dev/null 2>&1 || ! ls /etc/postgresql >/dev/null 2>&1; then
  log "PostgreSQL is not installed; installing it from Debian's packages"
  apt_install postgresql postgresql-client
fi
if ! pg_up; then
  log "PostgreSQL is down; starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  wait_for PostgreSQL pg_up
else
  log "PostgreSQL is answering"
fi

if ! command -v redis-server >/dev/null 2>&1; then
  log "Redis is not installed; installing it from Debian's packages"
  apt_install redis-server redis-tools
fi
if ! redis_up; then
  log "Redis is down; starting it"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis_up
else
  log "Redis is answering"
fi
