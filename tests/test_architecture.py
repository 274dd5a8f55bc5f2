"""ARCHITECTURE.md stays true: every file it names exists, and every `file:Name` or `file:Class.method`
it names is defined there (a move that forgets the page fails here)."""

from __future__ import annotations

import ast
import re

from tests.conftest import ROOT

PAGE = ROOT / "ARCHITECTURE.md"
REF = re.compile(r"`([a-z_][a-z0-9_/]*\.(?:py|sql))(?::([A-Za-z_][A-Za-z0-9_.]*))?`")


def _defined(path, dotted: str) -> bool:
    tree = ast.parse(path.read_text())
    scope: list[ast.stmt] = tree.body
    for part in dotted.split("."):
        assigned = {t.id for n in scope if isinstance(n, (ast.Assign, ast.AnnAssign))
                    for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
        if part in assigned:  # a module-level name such as reports.NAMES
            return True
        found = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                      and n.name == part), None)
        if found is None:  # a closure inside a function (a Faust agent, a route) counts too
            found = next((n for n in ast.walk(ast.Module(body=scope, type_ignores=[]))
                          if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part),
                         None)
        if found is None:
            return False
        scope = found.body
    return True


def _references() -> list[tuple[str, str | None]]:
    return [(m.group(1), m.group(2)) for m in REF.finditer(PAGE.read_text())]


def test_every_file_and_name_the_page_points_at_exists():
    refs = _references()
    assert len(refs) > 20  # the page names the path of a pageview and a payment
    missing = []
    for file, name in refs:
        candidates = [ROOT / file] + [p for p in ROOT.glob(f"*/**/{file}") if ".venv" not in p.parts]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            missing.append(file)
        elif name and path.suffix == ".py" and not _defined(path, name):
            missing.append(f"{file}:{name}")
    assert not missing, f"ARCHITECTURE.md names what is not there: {missing}"
