"""The architecture as a rule over packages (README, "Architecture"): two pipelines over one pure
core, every import pointing down.

    cli  ->  sync  ->  store  ->  read  ->  parse
     \\________\\_________\\_________\\_______\\->  errors, config, account

A package imports its own modules and those of the packages below it, never one above: parsing
needs no database, reading never writes or reaches the network, the store never crawls, and only
the command line words things for a person.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import catalog

PACKAGE = Path(catalog.__file__).parent
CORE = {"errors", "config", "account"}
RANK = {"parse": 1, "read": 2, "store": 3, "sync": 4, "cli": 5}
# Third-party packages each part may not import: never, or not at the top of a module (where
# every command that reads would pay for the import).
NEVER = {
    "core": {"alembic", "click"},
    "parse": {"sqlalchemy", "requests", "alembic", "click"},
    "read": {"requests", "alembic", "click"},
    "store": {"requests", "click"},
    "sync": {"click"},
    "cli": {"sqlalchemy", "requests", "alembic"},
    "face": {"sqlalchemy", "requests", "alembic", "click"},
}
NOT_AT_TOP = {
    "core": {"sqlalchemy", "requests"},
    "read": {"sqlalchemy"},
    "store/pages": {"sqlalchemy"},  # the page helper process starts with none of it
}


def part(path: Path) -> str:
    """core, face (the public API's __init__ and __main__), or the package a module is in."""
    inside = path.relative_to(PACKAGE).parts
    if len(inside) > 1:
        return inside[0]
    return "core" if path.stem in CORE else "face"


def rank(name: str) -> int:
    return {"core": 0, "face": 9}.get(name, RANK.get(name, -1))


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imports(path: Path) -> list[tuple[str, bool, list[str]]]:
    """(module, at_top_level, names) for every import in the file; ``from catalog.read import
    images`` is the module catalog.read.images."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [alias.name for alias in node.names]
            if node.module.split(".")[-1] in RANK or node.module == "catalog":
                found += [(f"{node.module}.{name}", id(node) in top, []) for name in names]
            else:
                found.append((node.module, id(node) in top, names))
    return found


def target_part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "catalog" or len(parts) < 2:
        return None
    if parts[1] in RANK:
        return parts[1]
    return "core" if parts[1] in CORE else "face"


def test_every_module_belongs_to_a_part() -> None:
    assert {part(path) for path in modules()} == {"core", "face", *RANK}
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(
        RANK
    )


def test_imports_point_down() -> None:
    upward = []
    for path in modules():
        here = part(path)
        for module, _, _ in imports(path):
            there = target_part(module)
            if there is not None and there != here and rank(there) > rank(here):
                upward.append(f"{path.relative_to(PACKAGE)} -> {module}")
    assert upward == []


def test_parsing_imports_nothing_of_ours_but_errors() -> None:
    found = [
        f"{path.name} -> {module}"
        for path in PACKAGE.glob("parse/*.py")
        for module, _, _ in imports(path)
        if target_part(module) not in (None, "parse") and module != "catalog.errors"
    ]
    assert found == []


def test_the_face_offers_reads_only() -> None:
    """``import catalog`` is the Python API: it reads, so it never loads a writer."""
    found = [
        module
        for module, _, _ in imports(PACKAGE / "__init__.py")
        if target_part(module) not in (None, "core", "read")
    ]
    assert found == []


def test_the_command_line_calls_only_public_names() -> None:
    found = [
        f"{path.name}: {module}.{name}"
        for path in PACKAGE.glob("cli/*.py")
        for module, _, names in imports(path)
        for name in names or [module.rsplit(".", 1)[-1]]
        if target_part(module) not in (None, "cli")
        and name.startswith("_")
        and not name.startswith("__")
    ]
    assert found == []


def test_third_party_imports_stay_where_they_belong() -> None:
    found = []
    for path in modules():
        here = part(path)
        key = f"{here}/{path.stem}"
        late = NOT_AT_TOP.get(here, set()) | NOT_AT_TOP.get(key, set())
        for module, at_top, _ in imports(path):
            root = module.split(".")[0]
            if root in NEVER[here] or (at_top and root in late):
                found.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert found == []


def test_reads_assemble_their_statements_in_one_module() -> None:
    """read/statements holds the statements; read/sql runs an analyst's own, and
    read/connection only probes the file it opens."""
    found = [
        path.name
        for path in PACKAGE.glob("read/*.py")
        if path.stem not in ("statements", "sql", "connection")
        and re.search(r"\bSELECT\b|\bFROM image|\bWHERE\b", path.read_text())
    ]
    assert found == []
