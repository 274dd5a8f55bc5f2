"""Builds the Superset import bundle (a ZIP of YAML: metadata.yaml, databases/, datasets/, charts/,
dashboards/, all under one root folder, as `superset import-dashboards -p` reads it) from the source
YAML in deploy/superset/bundle/. The database file gets its connection from the environment
(SUPERSET_CLICKHOUSE_HOST, _PORT, _USER, _PASSWORD, _DATABASE); nothing else changes.

    python build_bundle.py deploy/superset/bundle /tmp/bundle.zip
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path
from urllib.parse import quote

ROOT_FOLDER = "moneytrail_superset"
KEYS = ("HOST", "PORT", "USER", "PASSWORD", "DATABASE")


def clickhouse_uri(env: dict[str, str]) -> str:
    """clickhouse-connect's SQLAlchemy dialect (clickhousedb://) over ClickHouse's HTTP port."""
    v = {k: env[f"SUPERSET_CLICKHOUSE_{k}"] for k in KEYS}
    return (f"clickhousedb://{quote(v['USER'], safe='')}:{quote(v['PASSWORD'], safe='')}"
            f"@{v['HOST']}:{int(v['PORT'])}/{quote(v['DATABASE'], safe='')}")


def build(source: Path, target: Path, env: dict[str, str]) -> list[str]:
    files = sorted(p for p in source.rglob("*.yaml") if p.is_file())
    names = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in files:
            rel = path.relative_to(source).as_posix()
            text = path.read_text()
            if rel.startswith("databases/"):
                text = text.replace("__CLICKHOUSE_URI__", clickhouse_uri(env))
            assert "__" not in text.split("sqlalchemy_uri:")[-1].split("\n")[0], f"{rel}: a placeholder is left"
            bundle.writestr(f"{ROOT_FOLDER}/{rel}", text)
            names.append(rel)
    os.chmod(target, 0o600)  # it holds the ClickHouse password
    return names


if __name__ == "__main__":
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    written = build(src, dst, dict(os.environ))
    print(f"superset: bundle {dst} ({len(written)} files)")
