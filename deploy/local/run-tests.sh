#!/usr/bin/env bash
# The test command (`make test`): starts the real parts, runs every test, stops what it started,
# and exits non-zero on any failure. Under CI=true no test may skip (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
UV=${UV:-uv}
export MONEYTRAIL_TEST_KAFKA_PORT=${MONEYTRAIL_TEST_KAFKA_PORT:-19092}
export MONEYTRAIL_TEST_CLICKHOUSE_PORT=${MONEYTRAIL_TEST_CLICKHOUSE_PORT:-18123}

# Browser tests drive Debian's Chromium (Playwright's own browser download is not used).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: sudo apt-get install chromium" >&2
  fi
fi

started_kafka=0
started_clickhouse=0
cleanup() {
  if [ "$started_kafka" = 1 ]; then
    KAFKA_PORT=$MONEYTRAIL_TEST_KAFKA_PORT bash deploy/local/kafka.sh stop || true
  fi
  if [ "$started_clickhouse" = 1 ]; then
    CLICKHOUSE_PORT=$MONEYTRAIL_TEST_CLICKHOUSE_PORT bash deploy/local/clickhouse.sh stop || true
  fi
}
trap cleanup EXIT

if ! KAFKA_PORT=$MONEYTRAIL_TEST_KAFKA_PORT bash deploy/local/kafka.sh status >/dev/null 2>&1; then
  KAFKA_PORT=$MONEYTRAIL_TEST_KAFKA_PORT KAFKA_CLEAN=1 bash deploy/local/kafka.sh start
  started_kafka=1
fi

# The ClickHouse test server (clickhouse-local from the chdb wheel, HTTP on 127.0.0.1): the warehouse
# tests run on it and on chDB; the distributed integration tests use it as their warehouse.
if ! CLICKHOUSE_PORT=$MONEYTRAIL_TEST_CLICKHOUSE_PORT bash deploy/local/clickhouse.sh status >/dev/null 2>&1; then
  CLICKHOUSE_PORT=$MONEYTRAIL_TEST_CLICKHOUSE_PORT CLICKHOUSE_CLEAN=1 bash deploy/local/clickhouse.sh start
  started_clickhouse=1
fi

"$UV" run --frozen pytest -q -rfEs --durations=10 "$@"
