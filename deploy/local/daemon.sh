# deploy/local/daemon.sh: sourced by the scripts that run a local server in the background
# (clickhouse.sh, deploy/superset/superset.sh): its pid file, waiting for it to answer, stopping it.
# The caller defines log() and die().

# daemon_pid PID_FILE MARKER: the pid in PID_FILE if that process lives and its command line holds
# MARKER (so a stale pid file never makes us signal a stranger's process)
daemon_pid() {
  local pid
  pid="$([ -f "$1" ] && tr -dc '0-9' <"$1" || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"; then
    echo "$pid"
  fi
}

# daemon_wait_ready PID_FILE MARKER READY_FN TIMEOUT_S LOG_FILE WHAT STOP_FN: wait until READY_FN
# succeeds; if the process exits, or TIMEOUT_S passes (then STOP_FN), show the log's tail and die
daemon_wait_ready() {
  local pid_file=$1 marker=$2 ready=$3 timeout=$4 log_file=$5 what=$6 stop=$7
  local deadline=$((SECONDS + timeout))
  until "$ready"; do
    if [ -z "$(daemon_pid "$pid_file" "$marker")" ]; then
      tail -n 40 "$log_file" >&2 || true
      die "$what exited during start (log: $log_file)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 40 "$log_file" >&2 || true
      "$stop" >/dev/null
      die "$what is not answering after ${timeout}s"
    fi
    sleep 0.2
  done
}

# daemon_stop PID_FILE MARKER TIMEOUT_S: SIGTERM, then SIGKILL (its process group first) after
# TIMEOUT_S; fine when not running
daemon_stop() {
  local pid; pid="$(daemon_pid "$1" "$2")"
  if [ -z "$pid" ]; then
    rm -f "$1"
    log "not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + $3))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  rm -f "$1"
  log "stopped (pid $pid)"
}
