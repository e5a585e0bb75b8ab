#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 for the
# write-behind crash test, with a database `test` that user `postgres`
# (password `postgres`, or trust authentication) can use.
#
# When one already answers, this only says so. Otherwise it installs Debian's
# `postgresql` package if needed, starts its cluster, sets the password and
# creates the database. The tests never depend on what the database holds:
# they create and drop their own tables.
set -euo pipefail

conn="host=127.0.0.1 port=5432 user=postgres password=postgres dbname=test connect_timeout=3"

if command -v psql >/dev/null 2>&1 && PGPASSWORD=postgres psql "$conn" -qAtc 'select 1' >/dev/null 2>&1; then
    echo "PostgreSQL present on 127.0.0.1:5432"
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "error: not root and sudo is missing; cannot set up PostgreSQL" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "PostgreSQL not found: installing Debian's postgresql package"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" apt-get install -y postgresql
fi

version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
if [ -z "$version" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    "${sudo[@]}" pg_createcluster "$version" main
fi
"${sudo[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        su postgres -c "$*"
    else
        sudo -u postgres sh -c "$*"
    fi
}

for _ in $(seq 1 30); do
    if as_postgres "psql -qAtc 'select 1'" >/dev/null 2>&1; then
        break
    fi
    sleep 1
done
as_postgres "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\""
as_postgres "psql -qAtc \"SELECT 1 FROM pg_database WHERE datname = 'test'\"" | grep -q 1 || as_postgres "createdb test"

if PGPASSWORD=postgres psql "$conn" -qAtc 'select 1' >/dev/null 2>&1; then
    echo "PostgreSQL ready on 127.0.0.1:5432"
else
    echo "error: PostgreSQL did not come up on 127.0.0.1:5432" >&2
    exit 1
fi
