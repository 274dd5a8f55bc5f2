#!/usr/bin/env bash
# deploy/superset/superset.sh: Apache Superset on moneytrail's ClickHouse tables (the live aggregates
# live_money and live_visits), in an environment of its own: never a dependency of moneytrail.
#
# Usage: deploy/superset/superset.sh {install|provision|start|serve|stop|status}
#   install    .superset-venv/ from requirements.txt with uv (skipped when it is up to date)
#   provision  Superset's metadata database (db upgrade), the admin user, roles (init), then the
#              bundle of deploy/superset/bundle/ (database connection, datasets, charts, dashboard)
#              built into a ZIP and imported (import-dashboards; overwrites what it imported before)
#   start      install + provision, then the web server in the background on 127.0.0.1:$SUPERSET_PORT;
#              waits until it answers /health
#   serve      provision, then the web server in the foreground (containers: docker-compose.yml)
#   stop       SIGTERM (SIGKILL after 20 s); fine if not running
#   status     exit 0 if running and answering, else 1
#
# Environment (defaults in brackets):
#   SUPERSET_SECRET_KEY        required for provision/start/serve: signs sessions, encrypts the stored password
#   SUPERSET_ADMIN_USER        [admin]
#   SUPERSET_ADMIN_PASSWORD    required for provision/start/serve
#   SUPERSET_PORT              [8088]
#   SUPERSET_HOST              [127.0.0.1]
#   SUPERSET_DATA_DIR          metadata database, bundle, pid and log   [/tmp/moneytrail-superset-$PORT]
#   SUPERSET_VENV              the environment's folder                  [<repo>/.superset-venv]
#   SUPERSET_CLICKHOUSE_HOST   [127.0.0.1]    SUPERSET_CLICKHOUSE_PORT  [8123] (HTTP)
#   SUPERSET_CLICKHOUSE_USER   [moneytrail_reader] a read-only user (deploy/local/clickhouse.sh makes one)
#   SUPERSET_CLICKHOUSE_PASSWORD [moneytrail_reader]
#   SUPERSET_CLICKHOUSE_DATABASE [moneytrail]
#   SUPERSET_START_TIMEOUT     seconds to wait for the web server        [180]
#   UV                         the uv to install with   [uv on PATH, else <repo>/.tools/bin/uv]
#
# Example: SUPERSET_SECRET_KEY=$(openssl rand -hex 32) SUPERSET_ADMIN_PASSWORD=... deploy/superset/superset.sh start
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

SUPERSET_PORT="${SUPERSET_PORT:-8088}"
SUPERSET_HOST="${SUPERSET_HOST:-127.0.0.1}"
SUPERSET_DATA_DIR="${SUPERSET_DATA_DIR:-/tmp/moneytrail-superset-$SUPERSET_PORT}"
SUPERSET_DATA_DIR="${SUPERSET_DATA_DIR%/}"
SUPERSET_VENV="${SUPERSET_VENV:-$REPO/.superset-venv}"
SUPERSET_ADMIN_USER="${SUPERSET_ADMIN_USER:-admin}"
SUPERSET_START_TIMEOUT="${SUPERSET_START_TIMEOUT:-180}"
export SUPERSET_CLICKHOUSE_HOST="${SUPERSET_CLICKHOUSE_HOST:-127.0.0.1}"
export SUPERSET_CLICKHOUSE_PORT="${SUPERSET_CLICKHOUSE_PORT:-8123}"
export SUPERSET_CLICKHOUSE_USER="${SUPERSET_CLICKHOUSE_USER:-moneytrail_reader}"
export SUPERSET_CLICKHOUSE_PASSWORD="${SUPERSET_CLICKHOUSE_PASSWORD:-moneytrail_reader}"
export SUPERSET_CLICKHOUSE_DATABASE="${SUPERSET_CLICKHOUSE_DATABASE:-moneytrail}"
export SUPERSET_CONFIG_PATH="$HERE/superset_config.py"
export SUPERSET_DATA_DIR
export FLASK_APP=superset
REQUIREMENTS="$HERE/requirements.txt"
STAMP="$SUPERSET_VENV/.moneytrail-requirements.sha256"
PID_FILE="$SUPERSET_DATA_DIR/superset.pid"
LOG_FILE="$SUPERSET_DATA_DIR/superset.out"

log() { printf 'superset: %s\n' "$*"; }
die() { printf 'superset: error: %s\n' "$*" >&2; exit 1; }
# start/stop/status share the pid handling of deploy/local/clickhouse.sh; the compose container
# mounts only deploy/superset and runs `serve` (in the foreground), which needs none of it
# shellcheck source=deploy/local/daemon.sh
if [ -f "$REPO/deploy/local/daemon.sh" ]; then . "$REPO/deploy/local/daemon.sh"; fi

uv_bin() {
  if [ -n "${UV:-}" ]; then echo "$UV"
  elif command -v uv >/dev/null 2>&1; then command -v uv
  elif [ -x "$REPO/.tools/bin/uv" ]; then echo "$REPO/.tools/bin/uv"
  else die "no uv: run 'make setup' (it installs uv into .tools/) or put uv on PATH"
  fi
}

wanted_stamp() { sha256sum "$REQUIREMENTS" | cut -d' ' -f1; }

cmd_install() {
  if [ -x "$SUPERSET_VENV/bin/superset" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(wanted_stamp)" ]; then
    log "environment up to date ($SUPERSET_VENV)"
    return 0
  fi
  local uv; uv="$(uv_bin)"
  local t0=$SECONDS
  rm -f "$STAMP"
  "$uv" venv -q --allow-existing --python 3.11 "$SUPERSET_VENV"
  "$uv" pip install -q --python "$SUPERSET_VENV/bin/python" -r "$REQUIREMENTS"
  wanted_stamp >"$STAMP"
  log "installed into $SUPERSET_VENV in $((SECONDS - t0)) s"
}

need_secrets() {
  [ -n "${SUPERSET_SECRET_KEY:-}" ] || die "set SUPERSET_SECRET_KEY (e.g. openssl rand -hex 32)"
  [ -n "${SUPERSET_ADMIN_PASSWORD:-}" ] || die "set SUPERSET_ADMIN_PASSWORD"
  [[ "$SUPERSET_PORT" =~ ^[0-9]+$ ]] || die "SUPERSET_PORT must be a number"
  [ -x "$SUPERSET_VENV/bin/superset" ] || die "no Superset in $SUPERSET_VENV: run '$0 install'"
}

superset_cli() { "$SUPERSET_VENV/bin/superset" "$@"; }

cmd_provision() {
  need_secrets
  mkdir -p "$SUPERSET_DATA_DIR"
  local t0=$SECONDS
  superset_cli db upgrade >"$SUPERSET_DATA_DIR/provision.log" 2>&1 || { tail -n 40 "$SUPERSET_DATA_DIR/provision.log" >&2; die "db upgrade failed"; }
  # create-admin says so and exits 0 when the user exists
  superset_cli fab create-admin --username "$SUPERSET_ADMIN_USER" --firstname Admin --lastname moneytrail \
    --email "$SUPERSET_ADMIN_USER@localhost" --password "$SUPERSET_ADMIN_PASSWORD" >>"$SUPERSET_DATA_DIR/provision.log" 2>&1 \
    || { tail -n 40 "$SUPERSET_DATA_DIR/provision.log" >&2; die "create-admin failed"; }
  superset_cli init >>"$SUPERSET_DATA_DIR/provision.log" 2>&1 || { tail -n 40 "$SUPERSET_DATA_DIR/provision.log" >&2; die "init failed"; }
  "$SUPERSET_VENV/bin/python" "$HERE/build_bundle.py" "$HERE/bundle" "$SUPERSET_DATA_DIR/moneytrail-bundle.zip"
  superset_cli import-dashboards -p "$SUPERSET_DATA_DIR/moneytrail-bundle.zip" -u "$SUPERSET_ADMIN_USER" \
    >>"$SUPERSET_DATA_DIR/provision.log" 2>&1 || { tail -n 60 "$SUPERSET_DATA_DIR/provision.log" >&2; die "import-dashboards failed"; }
  rm -f "$SUPERSET_DATA_DIR/moneytrail-bundle.zip"  # it holds the ClickHouse password
  log "provisioned in $((SECONDS - t0)) s (ClickHouse $SUPERSET_CLICKHOUSE_USER@$SUPERSET_CLICKHOUSE_HOST:$SUPERSET_CLICKHOUSE_PORT/$SUPERSET_CLICKHOUSE_DATABASE)"
}

running_pid() { daemon_pid "$PID_FILE" gunicorn; }

health_ok() {
  "$SUPERSET_VENV/bin/python" - "$SUPERSET_HOST" "$SUPERSET_PORT" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/health", timeout=2) as r:
    sys.exit(0 if r.read().strip() == b"OK" else 1)
EOF
}

gunicorn_args() {
  # one worker (the filter-state cache is in process), threads for the dashboard's parallel queries
  echo --bind "$SUPERSET_HOST:$SUPERSET_PORT" --workers 1 --worker-class gthread --threads 8 --timeout 120 \
       --limit-request-line 0 --limit-request-field_size 0 "superset.app:create_app()"
}

cmd_serve() {
  cmd_provision
  # shellcheck disable=SC2046
  exec "$SUPERSET_VENV/bin/gunicorn" $(gunicorn_args)
}

cmd_start() {
  cmd_install
  need_secrets
  if [ -n "$(running_pid)" ] && health_ok; then
    log "already running (pid $(running_pid), http://$SUPERSET_HOST:$SUPERSET_PORT)"
    return 0
  fi
  cmd_provision
  [ -f "$LOG_FILE" ] && mv -f "$LOG_FILE" "$LOG_FILE.1"
  # shellcheck disable=SC2046
  setsid "$SUPERSET_VENV/bin/gunicorn" $(gunicorn_args) </dev/null >"$LOG_FILE" 2>&1 &
  echo $! >"$PID_FILE"
  daemon_wait_ready "$PID_FILE" gunicorn health_ok "$SUPERSET_START_TIMEOUT" "$LOG_FILE" \
    "Superset on $SUPERSET_HOST:$SUPERSET_PORT" cmd_stop
  log "running (pid $(running_pid), http://$SUPERSET_HOST:$SUPERSET_PORT, user $SUPERSET_ADMIN_USER, data $SUPERSET_DATA_DIR)"
}

cmd_stop() { daemon_stop "$PID_FILE" gunicorn 20; }

cmd_status() {
  local pid; pid="$(running_pid)"
  if [ -n "$pid" ] && health_ok; then
    log "running (pid $pid, http://$SUPERSET_HOST:$SUPERSET_PORT)"
    return 0
  fi
  log "not running on $SUPERSET_HOST:$SUPERSET_PORT"
  return 1
}

case "${1:-}" in
  install) cmd_install ;;
  provision) cmd_provision ;;
  start) cmd_start ;;
  serve) cmd_serve ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 {install|provision|start|serve|stop|status}" >&2; exit 2 ;;
esac
