#!/usr/bin/env bash
# deploy/local/kafka.sh: a real single-node Apache Kafka broker (KRaft mode,
# combined broker+controller) on 127.0.0.1, for tests and local distributed runs.
# No Docker, and no downloads except through Maven Central (`mvn`) and apt.
#
# Usage: deploy/local/kafka.sh {fetch|start|stop|status|restart}
#   fetch    download the Kafka jars and their runtime dependencies into the cache
#   start    fetch if needed, format KRaft storage once, start the broker in the
#            background and wait until it answers (a no-op if it is already running)
#   stop     SIGTERM the broker (SIGKILL after KAFKA_STOP_TIMEOUT s); fine if not running
#   status   exit 0 and print pid/port if the broker is running and answering, else exit 1
#   restart  stop, then start
#
# Environment (defaults in brackets):
#   KAFKA_PORT             client listener, PLAINTEXT on 127.0.0.1        [9092]
#   KAFKA_CONTROLLER_PORT  KRaft controller listener on 127.0.0.1         [KAFKA_PORT+1]
#   KAFKA_DATA_DIR         log dirs, server.properties, pid, broker log   [/tmp/moneytrail-kafka-$KAFKA_PORT]
#   KAFKA_HEAP             JVM heap options                               [-Xmx512m -Xms256m]
#   KAFKA_JVM_OPTS         extra JVM options, appended                    []
#   KAFKA_EXTRA_PROPERTIES extra server.properties lines (newline-separated), appended last []
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer        [60]
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL    [30]
#   KAFKA_CLEAN            1 = `start` wipes KAFKA_DATA_DIR first (fresh broker) [0]
#   MONEYTRAIL_CACHE       jar cache root; jars in kafka-<version>/libs   [$HOME/.cache/moneytrail]
#
# Example: KAFKA_PORT=19092 KAFKA_CLEAN=1 deploy/local/kafka.sh start
set -euo pipefail

# ---------------------------------------------------------------- pinned versions
readonly KAFKA_VERSION="3.9.1"           # org.apache.kafka:kafka_2.13 on Maven Central
readonly SCALA_BINARY_VERSION="2.13"
readonly SLF4J_VERSION="1.7.36"          # the slf4j binding the 3.9.1 distribution ships
readonly RELOAD4J_VERSION="1.2.25"       # the log4j 1.x implementation the distribution ships
readonly DEPENDENCY_PLUGIN_VERSION="3.8.1"

# ---------------------------------------------------------------- configuration
CACHE_ROOT="${MONEYTRAIL_CACHE:-${HOME:-/root}/.cache/moneytrail}"
KAFKA_HOME_DIR="$CACHE_ROOT/kafka-$KAFKA_VERSION"
LIBS_DIR="$KAFKA_HOME_DIR/libs"
FETCH_MARKER="$LIBS_DIR/.fetch-complete"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-}"   # default KAFKA_PORT+1, set in validate_config
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-/tmp/moneytrail-kafka-$KAFKA_PORT}"
KAFKA_HEAP="${KAFKA_HEAP:--Xmx512m -Xms256m}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
KAFKA_EXTRA_PROPERTIES="${KAFKA_EXTRA_PROPERTIES:-}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
KAFKA_CLEAN="${KAFKA_CLEAN:-0}"

KAFKA_DATA_DIR="${KAFKA_DATA_DIR%/}"
PID_FILE="$KAFKA_DATA_DIR/kafka.pid"
SERVER_PROPERTIES="$KAFKA_DATA_DIR/server.properties"
LOG4J_PROPERTIES="$KAFKA_DATA_DIR/log4j.properties"
TOOLS_LOG4J_PROPERTIES="$KAFKA_DATA_DIR/tools-log4j.properties"
LOG_DIRS="$KAFKA_DATA_DIR/kraft-data"     # Kafka's "log.dirs": the topic partitions
BROKER_LOG="$KAFKA_DATA_DIR/server.log"   # what the broker logs (log4j)
CONSOLE_LOG="$KAFKA_DATA_DIR/kafka.out"   # the JVM's stdout/stderr
LOCK_FILE="$KAFKA_DATA_DIR.lock"          # beside the data dir, so KAFKA_CLEAN keeps it

JAVA=""

log() { printf 'kafka: %s\n' "$*"; }
now_ms() { local t="${EPOCHREALTIME/[.,]/}"; printf '%s\n' "$((t / 1000))"; }
die() { printf 'kafka: error: %s\n' "$*" >&2; exit 1; }

validate_config() {
    local name value
    [[ "$KAFKA_PORT" =~ ^[0-9]+$ ]] || die "KAFKA_PORT must be a number, got '$KAFKA_PORT'"
    KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((10#$KAFKA_PORT + 1))}"
    for name in KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_START_TIMEOUT KAFKA_STOP_TIMEOUT; do
        value="${!name}"
        [[ "$value" =~ ^[0-9]+$ ]] || die "$name must be a number, got '$value'"
    done
    ((KAFKA_PORT > 0 && KAFKA_PORT < 65536)) || die "KAFKA_PORT out of range: $KAFKA_PORT"
    ((KAFKA_CONTROLLER_PORT > 0 && KAFKA_CONTROLLER_PORT < 65536)) \
        || die "KAFKA_CONTROLLER_PORT out of range: $KAFKA_CONTROLLER_PORT"
    ((KAFKA_PORT != KAFKA_CONTROLLER_PORT)) || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"
    case "$KAFKA_DATA_DIR" in
        "" | / | "${HOME:-/root}" | /tmp | /root | /home) die "refusing to use KAFKA_DATA_DIR='$KAFKA_DATA_DIR'" ;;
    esac
}

# ---------------------------------------------------------------- prerequisites
ensure_tools() {
    # $1 = "mvn" when Maven is needed too (fetch), else only Java.
    local need_mvn="${1:-}"
    local missing=0
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        JAVA="$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then
        JAVA="$(command -v java)"
    else
        missing=1
    fi
    if [[ "$need_mvn" == "mvn" ]] && ! command -v mvn >/dev/null 2>&1; then
        missing=1
    fi
    if ((missing)); then
        log "java or mvn missing: installing openjdk-17-jre-headless and maven with apt-get"
        local sudo=()
        if [[ "$(id -u)" -ne 0 ]]; then
            command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install java/maven"
            sudo=(sudo)
        fi
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-upgrade openjdk-17-jre-headless maven
        hash -r
        JAVA="$(command -v java)" || die "java still missing after apt-get install"
    fi
}

# ---------------------------------------------------------------- fetch
write_pom() {
    cat >"$KAFKA_HOME_DIR/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by deploy/local/kafka.sh: only used to resolve the broker's jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>moneytrail.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>${KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_${SCALA_BINARY_VERSION}</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <!-- command line tools (kafka-topics, console producer/consumer), without the
         Kafka Connect runtime (Jetty, Jersey, ...) that only the connect tools use -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>${KAFKA_VERSION}</version>
      <exclusions>
        <exclusion>
          <groupId>org.apache.kafka</groupId>
          <artifactId>connect-runtime</artifactId>
        </exclusion>
        <exclusion>
          <groupId>com.fasterxml.jackson.jaxrs</groupId>
          <artifactId>jackson-jaxrs-json-provider</artifactId>
        </exclusion>
      </exclusions>
    </dependency>
    <!-- logging backend: slf4j -> reload4j (log4j 1.x API), as the Kafka distribution ships -->
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>${SLF4J_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>ch.qos.reload4j</groupId>
      <artifactId>reload4j</artifactId>
      <version>${RELOAD4J_VERSION}</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>${DEPENDENCY_PLUGIN_VERSION}</version>
      </plugin>
    </plugins>
  </build>
</project>
EOF
}

check_libs() {
    # Every jar the broker cannot start without, plus exactly one slf4j binding.
    local jar
    for jar in "kafka_${SCALA_BINARY_VERSION}-${KAFKA_VERSION}.jar" "kafka-clients-${KAFKA_VERSION}.jar" \
        "kafka-raft-${KAFKA_VERSION}.jar" "kafka-metadata-${KAFKA_VERSION}.jar" \
        "kafka-tools-${KAFKA_VERSION}.jar" "slf4j-reload4j-${SLF4J_VERSION}.jar" \
        "reload4j-${RELOAD4J_VERSION}.jar"; do
        [[ -f "$1/$jar" ]] || die "fetch incomplete: $jar missing in $1"
    done
    local bindings
    bindings="$(find "$1" -maxdepth 1 \( -name 'logback-classic-*.jar' -o -name 'slf4j-log4j12-*.jar' \
        -o -name 'log4j-slf4j*-impl-*.jar' -o -name 'slf4j-simple-*.jar' \) -printf '%f ')"
    [[ -z "$bindings" ]] || die "fetch pulled in extra slf4j bindings: $bindings"
}

fetch() {
    if [[ -f "$FETCH_MARKER" ]]; then
        return 0
    fi
    ensure_tools mvn
    mkdir -p "$KAFKA_HOME_DIR"
    # One fetch at a time per cache dir (two test runs may start at once).
    exec 8>"$KAFKA_HOME_DIR.lock"
    flock 8
    if [[ -f "$FETCH_MARKER" ]]; then
        exec 8>&-
        return 0
    fi
    log "fetching Apache Kafka $KAFKA_VERSION and its runtime dependencies from Maven Central into $LIBS_DIR"
    write_pom
    local tmp="$KAFKA_HOME_DIR/libs.tmp.$$"
    rm -rf "$tmp"
    if ! mvn -q -B -Dstyle.color=never -f "$KAFKA_HOME_DIR/pom.xml" \
        "org.apache.maven.plugins:maven-dependency-plugin:${DEPENDENCY_PLUGIN_VERSION}:copy-dependencies" \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_HOME_DIR/mvn.log" 2>&1; then
        tail -n 40 "$KAFKA_HOME_DIR/mvn.log" >&2
        rm -rf "$tmp"
        die "mvn could not fetch org.apache.kafka:kafka_${SCALA_BINARY_VERSION}:${KAFKA_VERSION}"
    fi
    check_libs "$tmp"
    rm -rf "$LIBS_DIR"
    mv "$tmp" "$LIBS_DIR"
    date -u +%Y-%m-%dT%H:%M:%SZ >"$FETCH_MARKER"
    exec 8>&-
    log "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS_DIR" | cut -f1)) into $LIBS_DIR"
}

# ---------------------------------------------------------------- process helpers
read_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    [[ -n "$pid" ]] || return 1
    printf '%s\n' "$pid"
}

# True when $1 is a live java process running kafka.Kafka with this data dir's config.
is_our_broker() {
    local pid="$1" cmdline
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "java" ]] || return 1
    cmdline="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    grep -qxF "kafka.Kafka" <<<"$cmdline" && grep -qxF "$SERVER_PROPERTIES" <<<"$cmdline"
}

# Prints the broker's pid if it is running; removes a stale pid file.
running_pid() {
    local pid
    pid="$(read_pid)" || return 1
    if is_our_broker "$pid"; then
        printf '%s\n' "$pid"
        return 0
    fi
    rm -f "$PID_FILE"
    return 1
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

broker_started_logged() {
    [[ -f "$BROKER_LOG" ]] && grep -q "Kafka Server started" "$BROKER_LOG"
}

show_logs() {
    if [[ -s "$CONSOLE_LOG" ]]; then
        echo "----- last 20 lines of $CONSOLE_LOG -----" >&2
        tail -n 20 "$CONSOLE_LOG" >&2
    fi
    echo "----- last 50 lines of $BROKER_LOG -----" >&2
    tail -n 50 "$BROKER_LOG" >&2 2>/dev/null || echo "(no broker log)" >&2
    echo "-----" >&2
}

lock_data_dir() {
    mkdir -p "$(dirname "$LOCK_FILE")"
    exec 9>"$LOCK_FILE"
    flock 9
}

# ---------------------------------------------------------------- configuration files
write_configs() {
    mkdir -p "$KAFKA_DATA_DIR" "$LOG_DIRS"
    cat >"$SERVER_PROPERTIES" <<EOF
# Generated by deploy/local/kafka.sh on every start: edit the script, not this file.
# Single-node KRaft test broker (combined broker + controller) on 127.0.0.1.
node.id=1
process.roles=broker,controller
controller.quorum.voters=1@127.0.0.1:${KAFKA_CONTROLLER_PORT}
listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT},CONTROLLER://127.0.0.1:${KAFKA_CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT}
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=${LOG_DIRS}

# one node: every replication factor and ISR is 1
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
auto.create.topics.enable=true
delete.topic.enable=true
group.initial.rebalance.delay.ms=0

# log.flush.* left at Kafka's defaults (the OS page cache decides)
log.retention.hours=24
log.retention.bytes=-1
log.segment.bytes=104857600
log.retention.check.interval.ms=300000
EOF
    if [[ -n "$KAFKA_EXTRA_PROPERTIES" ]]; then
        printf '\n# KAFKA_EXTRA_PROPERTIES\n%s\n' "$KAFKA_EXTRA_PROPERTIES" >>"$SERVER_PROPERTIES"
    fi

    cat >"$LOG4J_PROPERTIES" <<EOF
# Generated by deploy/local/kafka.sh: the broker logs to ${BROKER_LOG}
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=${BROKER_LOG}
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.zookeeper=WARN
EOF

    cat >"$TOOLS_LOG4J_PROPERTIES" <<EOF
# Generated by deploy/local/kafka.sh: for the one-shot tools (storage format)
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

# A Kafka Uuid in its string form: 16 random bytes, URL-safe base64 without padding
# (22 chars), not starting with '-' (Kafka's own Uuid.randomUuid avoids that too).
new_cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" == -* || "$id" == "AAAAAAAAAAAAAAAAAAAAAA" || "$id" == "AAAAAAAAAAAAAAAAAAAAAQ" ]] || break
    done
    printf '%s\n' "$id"
}

format_storage() {
    [[ -f "$LOG_DIRS/meta.properties" ]] && return 0
    local cluster_id
    cluster_id="$(new_cluster_id)"
    log "formatting KRaft storage in $LOG_DIRS (cluster id $cluster_id)"
    "$JAVA" -Xmx256m -Dlog4j.configuration="file:$TOOLS_LOG4J_PROPERTIES" -cp "$LIBS_DIR/*" \
        kafka.tools.StorageTool format -t "$cluster_id" -c "$SERVER_PROPERTIES" --ignore-formatted \
        >"$KAFKA_DATA_DIR/format.out" 2>&1 || {
        cat "$KAFKA_DATA_DIR/format.out" >&2
        die "formatting KRaft storage failed"
    }
}

# ---------------------------------------------------------------- commands
wait_ready() {
    local pid="$1" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! is_our_broker "$pid"; then
            echo "kafka: the broker (pid $pid) exited during startup" >&2
            show_logs
            rm -f "$PID_FILE"
            return 1
        fi
        if port_open "$KAFKA_PORT" && broker_started_logged; then
            return 0
        fi
        sleep 0.25
    done
    echo "kafka: the broker (pid $pid) did not answer on 127.0.0.1:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s" >&2
    show_logs
    kill_broker "$pid" 5
    return 1
}

# SIGTERM, wait up to $2 seconds, then SIGKILL. Only ever signals our own broker pid.
kill_broker() {
    local pid="$1" grace="$2" deadline
    is_our_broker "$pid" || { rm -f "$PID_FILE"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + grace))
    while is_our_broker "$pid" && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if is_our_broker "$pid"; then
        log "pid $pid still running after ${grace}s: sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while [[ -e "/proc/$pid" ]] && is_our_broker "$pid"; do
            sleep 0.1
        done
    fi
    rm -f "$PID_FILE"
}

cmd_fetch() {
    fetch
    log "Apache Kafka $KAFKA_VERSION jars in $LIBS_DIR"
}

cmd_start() {
    fetch
    ensure_tools
    lock_data_dir

    local pid
    if pid="$(running_pid)"; then
        if [[ "$KAFKA_CLEAN" == "1" ]]; then
            log "KAFKA_CLEAN=1: stopping the running broker (pid $pid) for a fresh one"
            kill_broker "$pid" "$KAFKA_STOP_TIMEOUT"
        elif port_open "$KAFKA_PORT" && broker_started_logged; then
            log "Apache Kafka $KAFKA_VERSION broker already running on 127.0.0.1:$KAFKA_PORT (pid $pid)"
            return 0
        else
            log "broker (pid $pid) is running but not answering yet: waiting"
            wait_ready "$pid" || exit 1
            log "Apache Kafka $KAFKA_VERSION broker started on 127.0.0.1:$KAFKA_PORT (pid $pid)"
            return 0
        fi
    fi

    if [[ "$KAFKA_CLEAN" == "1" && -d "$KAFKA_DATA_DIR" ]]; then
        log "KAFKA_CLEAN=1: wiping $KAFKA_DATA_DIR"
        rm -rf "$KAFKA_DATA_DIR"
    fi

    local port
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        if port_open "$port"; then
            die "127.0.0.1:$port is already in use by another process (not this script's broker in $KAFKA_DATA_DIR)"
        fi
    done

    write_configs
    format_storage

    # Keep the previous run's log beside it, so "Kafka Server started" is from this run.
    if [[ -f "$BROKER_LOG" ]]; then
        mv -f "$BROKER_LOG" "$BROKER_LOG.1"
    fi
    : >"$BROKER_LOG"

    local heap=() extra=()
    read -r -a heap <<<"$KAFKA_HEAP"
    read -r -a extra <<<"$KAFKA_JVM_OPTS"
    local started_ms
    started_ms="$(now_ms)"
    rm -f "$PID_FILE"
    # setsid + nohup: the broker outlives this script and its terminal. The inner shell
    # writes its own pid, then execs java (same pid), so the pid file is exact even if
    # setsid had to fork. fd 9 (the lock) is closed so the broker does not hold it.
    # shellcheck disable=SC2016  # $$, $1 and $@ are for the inner shell
    setsid nohup bash -c 'echo "$$" >"$1"; shift; exec "$@"' kafka-launch "$PID_FILE" \
        "$JAVA" "${heap[@]}" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true -Dkafka.logs.dir="$KAFKA_DATA_DIR" \
        -Dlog4j.configuration="file:$LOG4J_PROPERTIES" ${extra[@]+"${extra[@]}"} \
        -cp "$LIBS_DIR/*" kafka.Kafka "$SERVER_PROPERTIES" \
        </dev/null >"$CONSOLE_LOG" 2>&1 9>&- &

    local i
    for ((i = 0; i < 100; i++)); do
        if pid="$(read_pid)" && is_our_broker "$pid"; then
            break
        fi
        pid=""
        sleep 0.05
    done
    if [[ -z "$pid" ]]; then
        echo "kafka: the broker process did not come up" >&2
        show_logs
        exit 1
    fi

    wait_ready "$pid" || exit 1
    log "Apache Kafka $KAFKA_VERSION broker started on 127.0.0.1:$KAFKA_PORT (pid $pid), ready in $(($(now_ms) - started_ms)) ms; data in $KAFKA_DATA_DIR"
}

cmd_stop() {
    lock_data_dir
    local pid
    if ! pid="$(running_pid)"; then
        log "no broker running for $KAFKA_DATA_DIR (port $KAFKA_PORT)"
        return 0
    fi
    log "stopping the broker on 127.0.0.1:$KAFKA_PORT (pid $pid)"
    kill_broker "$pid" "$KAFKA_STOP_TIMEOUT"
    log "stopped"
}

cmd_status() {
    local pid
    if ! pid="$(running_pid)"; then
        log "not running (port $KAFKA_PORT, data dir $KAFKA_DATA_DIR)"
        return 1
    fi
    if port_open "$KAFKA_PORT" && broker_started_logged; then
        log "running: Apache Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (pid $pid), data dir $KAFKA_DATA_DIR"
        return 0
    fi
    log "process $pid is up but not answering on 127.0.0.1:$KAFKA_PORT (starting, or broken: see $BROKER_LOG)"
    return 1
}

main() {
    local cmd="${1:-}"
    validate_config
    case "$cmd" in
        fetch) cmd_fetch ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        restart)
            cmd_stop
            exec 9>&-
            cmd_start
            ;;
        -h | --help | help)
            sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
            ;;
        *)
            echo "usage: $0 {fetch|start|stop|status|restart}" >&2
            exit 2
            ;;
    esac
}

main "$@"
