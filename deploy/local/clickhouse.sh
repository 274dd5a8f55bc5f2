#!/usr/bin/env bash
# deploy/local/clickhouse.sh: a real ClickHouse HTTP server on 127.0.0.1 for tests and local
# distributed runs, from the chdb wheel the project already pins (no Docker, no server package).
#
# How: chdb-core's clickhouse-local understands `SYSTEM START LISTEN HTTP` (ClickHouse PR 101143).
# One clickhouse-local runs to completion inside `chdb._chdb.query(sql, fmt, path=...)`, reading
# ./config.xml from its working directory (<http_port>, <listen_host>, <users_config>); the SQL is
# the LISTEN statement followed by a query that never ends (one row a second into FORMAT Null), so
# the listener stays up at ~0 CPU until the process is stopped. This is the real ClickHouse engine
# speaking the real HTTP protocol (clickhouse-connect talks to it as to any server), but it is a
# test server: no TLS, no replication, `file()` reads local files. Production runs
# clickhouse/clickhouse-server (docker-compose.yml); the SQL stays valid on the version it pins.
#
# Usage: deploy/local/clickhouse.sh {start|stop|status|restart|url}
#   start    start the server in the background and wait until it answers (no-op if running)
#   stop     SIGTERM (SIGKILL after CLICKHOUSE_STOP_TIMEOUT s); fine if not running
#   status   exit 0 and print pid/port if running and answering, else exit 1
#   restart  stop, then start
#   url      print the warehouse URL for MONEYTRAIL_WAREHOUSE (clickhouse://user:pass@127.0.0.1:port/db)
#
# Environment (defaults in brackets):
#   CLICKHOUSE_PORT           HTTP port on 127.0.0.1                              [8123]
#   CLICKHOUSE_DATA_DIR       data, config, pid and log of this server   [/tmp/moneytrail-clickhouse-$PORT]
#   CLICKHOUSE_USER           the user clients log in as                          [moneytrail]
#   CLICKHOUSE_PASSWORD       its password                                        [moneytrail]
#   CLICKHOUSE_DATABASE       database `url` names (created by `start`)           [moneytrail]
#   CLICKHOUSE_READER_USER    a read-only user (profile readonly: readonly = 2) for BI tools [moneytrail_reader]
#   CLICKHOUSE_READER_PASSWORD its password                                       [moneytrail_reader]
#   CLICKHOUSE_PYTHON         a Python with chdb installed            [.venv/bin/python of this repo]
#   CLICKHOUSE_START_TIMEOUT  seconds to wait for the server to answer            [60]
#   CLICKHOUSE_STOP_TIMEOUT   seconds to wait after SIGTERM before SIGKILL        [20]
#   CLICKHOUSE_CLEAN          1 = `start` stops a running server and wipes the data dir first [0]
#
# Example: CLICKHOUSE_PORT=18123 CLICKHOUSE_CLEAN=1 deploy/local/clickhouse.sh start
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

CLICKHOUSE_PORT="${CLICKHOUSE_PORT:-8123}"
CLICKHOUSE_DATA_DIR="${CLICKHOUSE_DATA_DIR:-/tmp/moneytrail-clickhouse-$CLICKHOUSE_PORT}"
CLICKHOUSE_DATA_DIR="${CLICKHOUSE_DATA_DIR%/}"
CLICKHOUSE_USER="${CLICKHOUSE_USER:-moneytrail}"
CLICKHOUSE_PASSWORD="${CLICKHOUSE_PASSWORD:-moneytrail}"
CLICKHOUSE_DATABASE="${CLICKHOUSE_DATABASE:-moneytrail}"
CLICKHOUSE_READER_USER="${CLICKHOUSE_READER_USER:-moneytrail_reader}"
CLICKHOUSE_READER_PASSWORD="${CLICKHOUSE_READER_PASSWORD:-moneytrail_reader}"
CLICKHOUSE_PYTHON="${CLICKHOUSE_PYTHON:-$REPO/.venv/bin/python}"
CLICKHOUSE_START_TIMEOUT="${CLICKHOUSE_START_TIMEOUT:-60}"
CLICKHOUSE_STOP_TIMEOUT="${CLICKHOUSE_STOP_TIMEOUT:-20}"
CLICKHOUSE_CLEAN="${CLICKHOUSE_CLEAN:-0}"

PID_FILE="$CLICKHOUSE_DATA_DIR/clickhouse.pid"
LOG_FILE="$CLICKHOUSE_DATA_DIR/clickhouse.out"
DB_DIR="$CLICKHOUSE_DATA_DIR/db"

log() { printf 'clickhouse: %s\n' "$*"; }
die() { printf 'clickhouse: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=deploy/local/daemon.sh
. "$HERE/daemon.sh"

validate() {
  [[ "$CLICKHOUSE_PORT" =~ ^[0-9]+$ ]] || die "CLICKHOUSE_PORT must be a number"
  [[ "$CLICKHOUSE_USER" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "CLICKHOUSE_USER must be a plain name"
  [[ "$CLICKHOUSE_DATABASE" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "CLICKHOUSE_DATABASE must be a plain name"
  [[ "$CLICKHOUSE_PASSWORD" != *[\<\>\&]* ]] || die "CLICKHOUSE_PASSWORD may not contain < > &"
  [[ "$CLICKHOUSE_READER_USER" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "CLICKHOUSE_READER_USER must be a plain name"
  [[ "$CLICKHOUSE_READER_PASSWORD" != *[\<\>\&]* ]] || die "CLICKHOUSE_READER_PASSWORD may not contain < > &"
  [ -x "$CLICKHOUSE_PYTHON" ] || die "no Python at $CLICKHOUSE_PYTHON (run 'make setup', or set CLICKHOUSE_PYTHON)"
}

running_pid() { daemon_pid "$PID_FILE" moneytrail-clickhouse-server; }

ping_ok() {
  "$CLICKHOUSE_PYTHON" - "$CLICKHOUSE_PORT" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/ping", timeout=2) as r:
    sys.exit(0 if r.read().strip() == b"Ok." else 1)
EOF
}

sql() {  # runs one statement as the configured user; prints the answer
  "$CLICKHOUSE_PYTHON" - "$CLICKHOUSE_PORT" "$CLICKHOUSE_USER" "$CLICKHOUSE_PASSWORD" "$1" <<'EOF'
import base64, sys, urllib.request
port, user, password, statement = sys.argv[1:5]
req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=statement.encode(), method="POST")
req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
with urllib.request.urlopen(req, timeout=30) as r:
    sys.stdout.write(r.read().decode())
EOF
}

write_configs() {
  mkdir -p "$DB_DIR"
  # `default` is the user chdb's own import-time connection uses inside the server process; it has
  # no password (chdb cannot pass one), so it is kept to loopback like the listener itself.
  cat >"$CLICKHOUSE_DATA_DIR/users.xml" <<EOF
<clickhouse>
  <profiles>
    <default/>
    <!-- BI tools (deploy/superset): reads only; query settings may still be set per query -->
    <readonly><readonly>2</readonly></readonly>
  </profiles>
  <quotas><default/></quotas>
  <users>
    <default>
      <no_password/>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
    <${CLICKHOUSE_USER}>
      <password>${CLICKHOUSE_PASSWORD}</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </${CLICKHOUSE_USER}>
    <${CLICKHOUSE_READER_USER}>
      <password>${CLICKHOUSE_READER_PASSWORD}</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>readonly</profile>
      <quota>default</quota>
    </${CLICKHOUSE_READER_USER}>
  </users>
</clickhouse>
EOF
  cat >"$CLICKHOUSE_DATA_DIR/config.xml" <<EOF
<clickhouse>
  <http_port>${CLICKHOUSE_PORT}</http_port>
  <listen_host>127.0.0.1</listen_host>
  <users_config>users.xml</users_config>
  <path>${DB_DIR}/</path>
  <tmp_path>${DB_DIR}/tmp/</tmp_path>
  <user_files_path>${DB_DIR}/user_files/</user_files_path>
</clickhouse>
EOF
}

cmd_start() {
  validate
  if [ "$CLICKHOUSE_CLEAN" = 1 ]; then
    cmd_stop >/dev/null
    rm -rf "$CLICKHOUSE_DATA_DIR"
  elif [ -n "$(running_pid)" ] && ping_ok; then
    log "already running (pid $(running_pid), port $CLICKHOUSE_PORT)"
    return 0
  fi
  mkdir -p "$CLICKHOUSE_DATA_DIR"
  write_configs
  [ -f "$LOG_FILE" ] && mv -f "$LOG_FILE" "$LOG_FILE.1"
  # The first argv word names the process, so `status`/`stop` never act on a stranger's pid.
  (
    cd "$CLICKHOUSE_DATA_DIR"
    exec setsid "$CLICKHOUSE_PYTHON" -c '
import sys
import chdb._chdb as engine  # reads ./config.xml: port, listen host, users
sql = ("SYSTEM START LISTEN HTTP; "
       "SELECT sleepEachRow(1) FROM system.numbers "
       "SETTINGS max_block_size = 1, max_execution_time = 0 FORMAT Null")
engine.query(sql, "TabSeparated", path=sys.argv[1])
' "$DB_DIR" moneytrail-clickhouse-server </dev/null >"$LOG_FILE" 2>&1
  ) &
  echo $! >"$PID_FILE"
  daemon_wait_ready "$PID_FILE" moneytrail-clickhouse-server ping_ok "$CLICKHOUSE_START_TIMEOUT" "$LOG_FILE" \
    "the ClickHouse server on 127.0.0.1:$CLICKHOUSE_PORT" cmd_stop
  sql "CREATE DATABASE IF NOT EXISTS $CLICKHOUSE_DATABASE" >/dev/null
  log "running (pid $(running_pid), http://127.0.0.1:$CLICKHOUSE_PORT, database $CLICKHOUSE_DATABASE, data $DB_DIR)"
}

cmd_stop() { daemon_stop "$PID_FILE" moneytrail-clickhouse-server "$CLICKHOUSE_STOP_TIMEOUT"; }

cmd_status() {
  local pid; pid="$(running_pid)"
  if [ -n "$pid" ] && ping_ok; then
    log "running (pid $pid, port $CLICKHOUSE_PORT)"
    return 0
  fi
  log "not running on port $CLICKHOUSE_PORT"
  return 1
}

cmd_url() {
  printf 'clickhouse://%s:%s@127.0.0.1:%s/%s\n' "$CLICKHOUSE_USER" "$CLICKHOUSE_PASSWORD" "$CLICKHOUSE_PORT" "$CLICKHOUSE_DATABASE"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  restart) cmd_stop; cmd_start ;;
  url) cmd_url ;;
  *) echo "usage: $0 {start|stop|status|restart|url}" >&2; exit 2 ;;
esac
