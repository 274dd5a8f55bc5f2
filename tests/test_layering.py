"""The import rules of the layers (README, "Layout"; issue 12), checked with `ast` over every .py of
the five packages, so a wrong import fails here instead of in a reviewer's head:

- a package imports only the packages below it: schemas/ nothing of ours; collector/ and
  stream_processors/ schemas/ only (so they never import each other); clickhouse/ those three;
  moneytrail/ (the composition root, the CLI) anything, and nothing imports moneytrail/;
- stream_processors/ imports no web framework or ClickHouse client (FastAPI, Starlette, uvicorn,
  clickhouse-connect, chDB), and Faust with its Kafka client (faust, mode, aiokafka) only in
  faust_app.py, its adapter;
- the attribution models (stream_processors/attribution.py, datadriven.py) are pure: the standard
  library, numpy, schemas/ and each other;
- nothing imports a name starting with `_` from another package: not `from x import _name`, not a
  module `x._mod`, not `module._name` on an imported module of another package (within one package,
  its modules may share private helpers).

Every import counts, also inside a function or under `if TYPE_CHECKING:`; an import by a computed
name (importlib) is not seen. `violations` is the checker; the last tests plant each kind of
violation in a throwaway tree and see it caught.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "collector", "stream_processors", "clickhouse", "moneytrail")
# What each package may import of ours (besides itself).
MAY_IMPORT = {
    "schemas": set(),
    "collector": {"schemas"},
    "stream_processors": {"schemas"},
    "clickhouse": {"schemas", "collector", "stream_processors"},
    "moneytrail": {"schemas", "collector", "stream_processors", "clickhouse"},
}
NOT_IN_STREAM_PROCESSORS = {"fastapi", "starlette", "uvicorn", "clickhouse_connect", "chdb"}
FAUST = {"faust", "mode", "aiokafka"}
FAUST_ADAPTER = "stream_processors/faust_app.py"
PURE_MODELS = {"stream_processors/attribution.py", "stream_processors/datadriven.py"}
PURE_MAY_IMPORT = set(sys.stdlib_module_names) | {"numpy", "schemas", "stream_processors"}

# Known violations in files being restructured right now, each with its way out; the last test
# fails when one no longer happens, so the entry is deleted with the fix.
KNOWN: set[str] = set()


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_of(path: Path, root: Path) -> tuple[list[str], list[str]]:
    """(the module's dotted parts, its package's parts) for a file under root."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return parts, parts
    return parts, parts[:-1]


def _absolute(node: ast.ImportFrom, package: list[str]) -> str:
    if not node.level:
        return node.module or ""
    base = package[:len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_module(dotted: str, root: Path) -> bool:
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _check_file(path: Path, root: Path, packages: tuple[str, ...]) -> list[str]:
    rel = path.relative_to(root).as_posix()
    module, package = _module_of(path, root)
    own = module[0]
    tree = ast.parse(path.read_text(), rel)
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> dotted module of another of our packages

    def imported(dotted: str, line: int, names: list[str] = ()) -> None:
        parts = dotted.split(".")
        top = parts[0]
        where = f"{rel}:{line}"
        if top in packages:
            if top != own and top not in MAY_IMPORT.get(own, set(packages)):
                found.append(f"{where}: {own}/ may not import {top}/ ({dotted})")
            if top != own:
                for part in parts[1:]:
                    if _is_private(part):
                        found.append(f"{where}: imports private module {dotted} of another package")
                        break
                for name in names:
                    if _is_private(name):
                        found.append(f"{where}: imports private name {name} from {dotted}")
        if own == "stream_processors":
            if top in NOT_IN_STREAM_PROCESSORS:
                found.append(f"{where}: stream_processors/ may not import {top}")
            if top in FAUST and rel != FAUST_ADAPTER:
                found.append(f"{where}: {top} only in {FAUST_ADAPTER}")
        if rel in PURE_MODELS and top not in PURE_MAY_IMPORT:
            found.append(f"{where}: the pure models import only the standard library, numpy and schemas/, not {top}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                imported(a.name, node.lineno)
                top = a.name.split(".")[0]
                if top in packages and top != own:
                    aliases[a.asname or top] = a.name if a.asname else top
        elif isinstance(node, ast.ImportFrom):
            dotted = _absolute(node, package)
            names = [a.name for a in node.names]
            imported(dotted, node.lineno, names)
            top = dotted.split(".")[0]
            if top in packages and top != own:
                for a in node.names:
                    if _is_module(f"{dotted}.{a.name}", root):
                        aliases[a.asname or a.name] = f"{dotted}.{a.name}"
    # module._name on a module of another package (after the walk: aliases are file-wide)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            chain, value = [node.attr], node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in aliases:
                dotted = ".".join([aliases[value.id], *reversed(chain[1:])])
                found.append(f"{rel}:{node.lineno}: uses private name {node.attr} of {dotted}")
    return found


def violations(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """Every broken import rule under root, as 'file:line: what'."""
    out: list[str] = []
    for name in packages:
        for path in sorted((root / name).rglob("*.py")):
            out.extend(_check_file(path, root, packages))
    return out


def _without_line(v: str) -> str:
    """'file:line: what' -> 'file: what' (lines move; KNOWN names the file and the import)."""
    file, _, rest = v.partition(":")
    return f"{file}:{rest.partition(':')[2]}"


def test_the_packages_keep_the_import_rules():
    found = [v for v in violations() if _without_line(v) not in KNOWN]
    assert found == [], "\n".join(found)


def test_every_known_exception_still_happens():
    stale = KNOWN - {_without_line(v) for v in violations()}
    assert not stale, f"fixed, so delete from KNOWN in tests/test_layering.py: {sorted(stale)}"


# ---------------------------------------------------------------------------------------------
# The checker itself, on a throwaway tree


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name in PACKAGES:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "__init__.py").write_text("")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CLEAN = {
    "schemas/envelope.py": "import orjson\nfrom dataclasses import dataclass\n",
    "collector/app.py": "import fastapi\nfrom schemas.envelope import Envelope\n",
    "stream_processors/attribution.py": "from decimal import Decimal\n\ndef _helper(): ...\ndef public(): ...\n",
    "stream_processors/datadriven.py": "import numpy as np\nfrom .attribution import public\n",
    "stream_processors/persons.py": "import orjson\nfrom .attribution import _helper\nfrom . import attribution\n"
                                    "x = attribution._helper\n",
    "stream_processors/faust_app.py": "import faust\nfrom aiokafka.admin import AIOKafkaAdminClient\n",
    "clickhouse/datadriven.py": "import chdb\nfrom stream_processors.attribution import public\n"
                                "from stream_processors import attribution\nx = attribution.public\n",
    "moneytrail/root.py": "from collector import app\nfrom clickhouse import datadriven\nimport stream_processors\n",
}


def test_a_tree_that_keeps_the_rules_passes(tmp_path):
    assert violations(_tree(tmp_path, CLEAN)) == []


@pytest.mark.parametrize("rel, text, expected", [
    ("schemas/touch.py", "from collector.app import x\n", "schemas/touch.py:1: schemas/ may not import collector/"),
    ("schemas/touch.py", "import moneytrail.settings\n", "schemas/ may not import moneytrail/"),
    ("collector/ingest.py", "def f():\n    from stream_processors import steps\n",
     "collector/ingest.py:2: collector/ may not import stream_processors/"),
    ("stream_processors/steps.py", "from collector.bodies import parse\n",
     "stream_processors/ may not import collector/"),
    ("stream_processors/steps.py", "from clickhouse import reports\n", "stream_processors/ may not import clickhouse/"),
    ("clickhouse/sink.py", "from moneytrail.settings import Settings\n", "clickhouse/ may not import moneytrail/"),
    ("stream_processors/outputs.py", "from starlette.responses import Response\n",
     "stream_processors/ may not import starlette"),
    ("stream_processors/outputs.py", "import clickhouse_connect\n", "stream_processors/ may not import clickhouse_connect"),
    ("stream_processors/outputs.py", "import chdb\n", "stream_processors/ may not import chdb"),
    ("stream_processors/embedded.py", "import faust\n", "faust only in stream_processors/faust_app.py"),
    ("stream_processors/embedded.py", "from mode.utils.logging import cry\n", "mode only in"),
    ("stream_processors/datadriven.py", "import numpy\nimport orjson\n",
     "stream_processors/datadriven.py:2: the pure models import only the standard library, numpy and schemas/, "
     "not orjson"),
    ("clickhouse/datadriven.py", "from stream_processors.attribution import public, _helper\n",
     "clickhouse/datadriven.py:1: imports private name _helper from stream_processors.attribution"),
    ("moneytrail/cli.py", "def report():\n    from collector.app import _csv\n",
     "moneytrail/cli.py:2: imports private name _csv from collector.app"),
    ("clickhouse/datadriven.py", "from stream_processors._private import x\n",
     "imports private module stream_processors._private of another package"),
    ("clickhouse/datadriven.py", "from stream_processors import attribution\ny = attribution._helper(1)\n",
     "clickhouse/datadriven.py:2: uses private name _helper of stream_processors.attribution"),
    ("clickhouse/datadriven.py", "import stream_processors.attribution as a\ny = a._helper\n",
     "uses private name _helper of stream_processors.attribution"),
    ("clickhouse/datadriven.py", "import stream_processors.attribution\ny = stream_processors.attribution._helper\n",
     "uses private name _helper of stream_processors.attribution"),
])
def test_a_planted_violation_is_caught(tmp_path, rel, text, expected):
    found = violations(_tree(tmp_path, {**CLEAN, rel: text}))
    assert len(found) >= 1 and any(expected in v for v in found), found


def test_relative_imports_are_resolved(tmp_path):
    files = {**CLEAN, "stream_processors/rules/__init__.py": "from .. import attribution\nfrom ..attribution import _helper\n"}
    assert violations(_tree(tmp_path, files)) == []  # one package: private helpers may be shared
    files["clickhouse/maintenance/__init__.py"] = "from ..sink import x\n"
    files["clickhouse/maintenance/jobs.py"] = "from . import _cron\nfrom stream_processors.attribution import _helper\n"
    assert violations(_tree(tmp_path, files)) == [
        "clickhouse/maintenance/jobs.py:2: imports private name _helper from stream_processors.attribution"]
