# Apache Superset's configuration for moneytrail (read through SUPERSET_CONFIG_PATH, which
# deploy/superset/superset.sh sets). Everything that differs between installations comes from the
# environment; no secret is written here.
#
#   SUPERSET_SECRET_KEY   required: signs sessions and encrypts the stored ClickHouse password
#   SUPERSET_DATA_DIR     where the metadata database (SQLite) lives, unless SUPERSET_DATABASE_URI
#   SUPERSET_DATABASE_URI Superset's own metadata database (e.g. postgresql://...), optional
import os
from pathlib import Path

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]  # refuse to start without one
_DATA_DIR = Path(os.environ.get("SUPERSET_DATA_DIR", Path.home() / ".superset"))
SQLALCHEMY_DATABASE_URI = os.environ.get("SUPERSET_DATABASE_URI") or f"sqlite:///{_DATA_DIR / 'superset.db'}"

APP_NAME = "moneytrail BI"
# Live numbers: no result cache anywhere, so a chart shows what ClickHouse holds when it is drawn.
CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
# Filter state and explore form data need a real (in-process) cache to work at all.
FILTER_STATE_CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 86400}
EXPLORE_FORM_DATA_CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 86400}

FEATURE_FLAGS = {"ALERT_REPORTS": False, "DASHBOARD_RBAC": False, "ENABLE_TEMPLATE_PROCESSING": False}
# Served on 127.0.0.1 (or behind your TLS proxy): no HTTPS redirect here, the default CSP stays on.
TALISMAN_ENABLED = True
CONTENT_SECURITY_POLICY_WARNING = False
SESSION_COOKIE_SAMESITE = "Lax"
WTF_CSRF_ENABLED = True
ROW_LIMIT = 50000
