#!/usr/bin/env bash
# A throwaway PostgreSQL for the store's tests: the index suite runs on SQLite and on
# this server. Idempotent: installs Debian's `postgresql` if missing, creates a cluster in
# $RMBUILD_PG_DIR once, starts it if it is not running, and creates the test database.
#
#   export RMBUILD_TEST_POSTGRES_URL="$(bash .ci/postgres.sh)"   # prints the URL on stdout
#   source .ci/postgres.sh                                        # or: exports it
#
# Tuned for tests, never for data: fsync off, trust auth, loopback only.
_rmb_pg_main() {
  local dir="${RMBUILD_PG_DIR:-${TMPDIR:-/tmp}/rmbuild-pg}"
  local port="${RMBUILD_PG_PORT:-54329}"
  local db=rmbuild_test
  local bin run=()

  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -z "$bin" ] || [ ! -x "$bin/pg_ctl" ]; then
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
    echo "postgres.sh: installing postgresql (apt-get)" >&2
    "${sudo[@]}" apt-get update -qq >&2 || return 1
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq postgresql >&2 || return 1
    bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  fi
  # The server refuses to run as root: as root, run it as the package's `postgres` user.
  if [ "$(id -u)" -eq 0 ]; then
    run=(runuser -u postgres --)
  fi
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    "${run[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >&2 \
      || return 1
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  fi
  if ! "${run[@]}" "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >&2 \
      || { tail -n 20 "$dir/server.log" >&2; return 1; }
  fi
  if ! "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -Atqc \
    "SELECT 1 FROM pg_database WHERE datname = '$db'" postgres | grep -q 1; then
    "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE $db" postgres >&2 \
      || return 1
  fi
  RMBUILD_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/$db"
}

if _rmb_pg_main; then
  if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    export RMBUILD_TEST_POSTGRES_URL
    echo "RMBUILD_TEST_POSTGRES_URL=$RMBUILD_TEST_POSTGRES_URL" >&2
  else
    echo "$RMBUILD_TEST_POSTGRES_URL"
  fi
else
  echo "postgres.sh: could not start PostgreSQL" >&2
  [ "${BASH_SOURCE[0]}" != "$0" ] && return 1
  exit 1
fi
