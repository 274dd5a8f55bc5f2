#!/usr/bin/env bash
# The superset service of docker-compose.yml (image apache/superset, deploy/superset mounted at
# /app/deploy/superset): adds clickhouse-connect (the pinned version of requirements.txt, once, into
# the superset-data volume: the image does not ship it), then provisions and serves with superset.sh.
set -euo pipefail
LIB=/app/superset_home/pylib
REQ=/app/deploy/superset/requirements.txt
export PYTHONPATH="$LIB${PYTHONPATH:+:$PYTHONPATH}"
if ! /app/.venv/bin/python -c "import clickhouse_connect" 2>/dev/null; then
  # clickhouse-connect and the two compression libraries it needs that Superset does not
  # shellcheck disable=SC2046
  set -- $(grep -E '^(clickhouse-connect|lz4|backports-zstd)==' "$REQ")
  if command -v uv >/dev/null 2>&1; then
    uv pip install --quiet --python /app/.venv/bin/python --target "$LIB" --no-deps "$@"
  else
    /app/.venv/bin/python -m pip install --quiet --target "$LIB" --no-deps "$@"
  fi
fi
export SUPERSET_VENV=/app/.venv SUPERSET_HOST=0.0.0.0 SUPERSET_PORT=8088 SUPERSET_DATA_DIR=/app/superset_home
exec bash /app/deploy/superset/superset.sh serve
