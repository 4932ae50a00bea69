#!/usr/bin/env bash
# A private PostgreSQL server for the case store (tests and a one-machine team setup).
#
# Idempotent: installs Debian's `postgresql` when no server binaries are found, creates a
# cluster in $TIANLUO_PG_DIR (default /tmp/tianluo-pg) owned by user `postgres`, starts it
# on 127.0.0.1:$TIANLUO_PG_PORT (default 54329) with a private socket directory (so it never
# collides with a system cluster), creates role and database `tianluo` (password `tianluo`,
# allowed to create databases: the test suite makes one per test module), and prints the
# SQLAlchemy URL on stdout. Everything else goes to stderr.
set -euo pipefail

PGDIR=${TIANLUO_PG_DIR:-/tmp/tianluo-pg}
PORT=${TIANLUO_PG_PORT:-54329}
HOST=127.0.0.1
DATA="$PGDIR/data"
SOCK="$PGDIR/run"
LOG="$PGDIR/server.log"

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    # Debian keeps the server binaries off PATH, one folder per major version.
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$d" && -x "$d/pg_ctl" && -x "$d/initdb" ]]; then
        echo "$d"
        return 0
    fi
    return 1
}

BIN=$(find_bindir || true)
if [[ -z "$BIN" ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        log "PostgreSQL server binaries (pg_ctl, initdb) are missing and installing them needs root:"
        log "run 'apt-get install -y postgresql' as root, then this script again"
        exit 1
    fi
    log "installing PostgreSQL (apt-get install -y postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y postgresql >&2
    BIN=$(find_bindir) || { log "apt-get installed postgresql but pg_ctl/initdb were not found"; exit 1; }
fi

# The server refuses to run as root: run it as `postgres` when we are root, else as ourselves.
if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    OWNER=postgres
    as_owner() { runuser -u postgres -- "$@"; }
else
    OWNER=$(id -un)
    as_owner() { "$@"; }
fi

mkdir -p "$PGDIR"
chown "$OWNER" "$PGDIR"
chmod 0700 "$PGDIR"

# One caller at a time: test processes started together must not race initdb or start.
exec 9>"$PGDIR.lock"
flock 9

if [[ ! -s "$DATA/PG_VERSION" ]]; then
    log "initialising a cluster in $DATA"
    rm -rf "$DATA"
    as_owner "$BIN/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >&2
fi
as_owner mkdir -p "$SOCK"

if ! as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    log "starting the server on $HOST:$PORT (log: $LOG)"
    # The server would inherit every descriptor we hold (our lock, the caller's pipes) and keep
    # them open for its lifetime: start it from a subshell that has closed all but 0-2.
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            if [[ $fd -gt 2 ]]; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
            -o "-c listen_addresses=$HOST -p $PORT -k $SOCK" start >&2
    ) || {
        log "the server did not start; the end of $LOG:"
        tail -n 20 "$LOG" >&2 || true
        exit 1
    }
fi

psql_su() { as_owner psql -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d postgres "$@"; }

if [[ -z $(psql_su -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'tianluo'") ]]; then
    log "creating role tianluo"
    psql_su -c "CREATE ROLE tianluo LOGIN CREATEDB PASSWORD 'tianluo'"
fi
if [[ -z $(psql_su -tAc "SELECT 1 FROM pg_database WHERE datname = 'tianluo'") ]]; then
    log "creating database tianluo"
    psql_su -c "CREATE DATABASE tianluo OWNER tianluo"
fi

echo "postgresql+psycopg://tianluo:tianluo@$HOST:$PORT/tianluo"
