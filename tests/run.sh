#!/usr/bin/env bash
# Set up and run the whole test suite:
#   bash tests/run.sh [pytest args]
#
# The index tests run on SQLite and on a real PostgreSQL. Unless RMBUILD_TEST_POSTGRES_URL names
# a server already, this starts a throwaway one on loopback (.ci/postgres.sh: Debian's package,
# installed as root where missing) and stops it afterwards. Where none can be started, the
# PostgreSQL runs skip and the last line says so, with the command that runs them.
# RMBUILD_TEST_POSTGRES=0 skips that step on purpose.
set -euo pipefail
RMBUILD_EXTRAS="${RMBUILD_EXTRAS:-onnx,openvino,iree,ray,serve,sign,dev}"
source "$(dirname "${BASH_SOURCE[0]}")/../.ci/venv.sh"

started_pg=""
pg_note=""
if [ -z "${RMBUILD_TEST_POSTGRES_URL:-}" ] && [ "${RMBUILD_TEST_POSTGRES:-1}" != 0 ]; then
  pg_dir="${RMBUILD_PG_DIR:-${TMPDIR:-/tmp}/rmbuild-pg}"
  pg_was_running=""
  [ -f "$pg_dir/data/postmaster.pid" ] && pg_was_running=1
  if url="$(bash .ci/postgres.sh 2>"${TMPDIR:-/tmp}/rmbuild-pg-start.log")"; then
    export RMBUILD_TEST_POSTGRES_URL="$url"
    [ -z "$pg_was_running" ] && started_pg="$pg_dir"
  else
    pg_note="tests/run.sh: PostgreSQL could not be started ($(tail -n 1 \
"${TMPDIR:-/tmp}/rmbuild-pg-start.log")): the PostgreSQL runs of the index tests were skipped; \
run them with: RMBUILD_TEST_POSTGRES_URL=\"\$(bash .ci/postgres.sh)\" bash tests/run.sh"
  fi
fi

stop_pg() {
  if [ -n "$started_pg" ]; then
    local bin
    bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    if [ "$(id -u)" -eq 0 ]; then
      runuser -u postgres -- "$bin/pg_ctl" -D "$started_pg/data" -m fast stop >/dev/null 2>&1 || true
    else
      "$bin/pg_ctl" -D "$started_pg/data" -m fast stop >/dev/null 2>&1 || true
    fi
  fi
}
trap stop_pg EXIT

rc=0
python -m pytest -q "$@" || rc=$?
[ -n "$pg_note" ] && echo "$pg_note" >&2
exit "$rc"
