"""Imports point one way: parsing never needs a database, reading never needs the network."""

from __future__ import annotations

import ast
from pathlib import Path

import catalog

PACKAGE = Path(catalog.__file__).parent
# Lower layers never import higher ones.
LAYER = {
    "errors": 0,
    "config": 0,
    "text": 0,
    "times": 0,
    "versions": 1,
    "records": 1,
    "signer": 1,
    "credentials": 1,
    "uri": 1,
    "tags": 2,
    "client": 2,
    "crawl": 2,
    "models": 3,
    "pages": 3,
    "db": 4,
    "locks": 4,
    "bulk": 4,
    "runs": 5,
    "store": 5,
    "schema": 5,
    "reparse": 5,
    "sqlitecopy": 5,
    "sync": 6,
    "readdb": 6,
    "filters": 6,
    "region": 6,
    "imageinfo": 6,
    "versionlist": 6,
    "explain": 6,
    "query": 7,
    "history": 7,
    "analysis": 7,
    "readsql": 7,
    "output": 7,
    "clikit": 8,
    "cli_history": 8,
    "cli_write": 8,
    "cli": 9,
    "__init__": 10,
    "__main__": 10,
}
# Third-party modules a module may not import at all (even lazily).
FORBIDDEN = {
    "tags": {"sqlalchemy", "requests", "alembic"},
    "uri": {"sqlalchemy", "requests", "alembic"},
    "versions": {"sqlalchemy", "requests", "alembic"},
    "records": {"sqlalchemy", "requests", "alembic"},
    "text": {"sqlalchemy", "requests", "alembic"},
    "times": {"sqlalchemy", "requests", "alembic"},
    "pages": {"sqlalchemy", "requests", "alembic"},
    "query": {"sqlalchemy", "requests", "alembic"},
    "output": {"sqlalchemy", "requests", "alembic"},
    "cli": {"sqlalchemy", "requests", "alembic"},
    "clikit": {"sqlalchemy", "requests", "alembic"},
    "cli_history": {"sqlalchemy", "requests", "alembic"},
    "cli_write": {"sqlalchemy", "requests", "alembic"},
    "readdb": {"requests", "alembic"},
    "filters": {"sqlalchemy", "requests", "alembic"},
    "region": {"sqlalchemy", "requests", "alembic"},
    "imageinfo": {"sqlalchemy", "requests", "alembic"},
    "versionlist": {"sqlalchemy", "requests", "alembic"},
    "explain": {"sqlalchemy", "requests", "alembic"},
    "history": {"sqlalchemy", "requests", "alembic"},
    "analysis": {"requests", "alembic"},
    "readsql": {"requests", "alembic"},
    "signer": {"sqlalchemy", "requests", "alembic"},
    "crawl": {"sqlalchemy", "requests", "alembic"},
    "client": {"sqlalchemy", "alembic"},
    "credentials": {"sqlalchemy", "alembic"},
}


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at_top_level) for every import in the file."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "catalog":
                found += [(f"catalog.{alias.name}", id(node) in top) for alias in node.names]
            else:
                found.append((node.module, id(node) in top))
    return found


def test_every_module_has_a_layer() -> None:
    assert {p.stem for p in PACKAGE.glob("*.py")} == set(LAYER)


def test_imports_point_one_way() -> None:
    backward = []
    for path in PACKAGE.glob("*.py"):
        for module, _ in imports(path):
            parts = module.split(".")
            inside = parts[0] == "catalog" and len(parts) > 1 and parts[1] in LAYER
            if inside and LAYER[parts[1]] > LAYER[path.stem]:
                backward.append(f"{path.stem} -> {parts[1]}")
    assert backward == []


def test_forbidden_dependencies() -> None:
    found = []
    for name, banned in FORBIDDEN.items():
        for module, _ in imports(PACKAGE / f"{name}.py"):
            if module.split(".")[0] in banned:
                found.append(f"{name} imports {module}")
    assert found == []


def test_modules_stay_small() -> None:
    sizes = {p.stem: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 450} == {}
