"""docs/SCHEMA.md matches the schema at migration head, and its example queries run."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path

import pytest

from catalog.read.sql import run_sql
from catalog.store.publish import publish
from tests.conftest import ROOT

DOC = ROOT / "docs" / "SCHEMA.md"
SHIPPED = ROOT / "data" / "catalog.db"
# alembic_version belongs to the migration tool; it is documented but not compared.
SKIPPED = {"alembic_version"}
Documented = dict[str, tuple[str, list[tuple[str, str]]]]


def documented(text: str) -> Documented:
    """{name: (kind, [(column, type), ...])} from the '# Tables' and '# Views' sections."""
    found: Documented = {}
    kind = name = None
    for line in text.splitlines():
        if line.startswith("# "):
            kind = {"# Tables": "table", "# Views": "view"}.get(line.strip())
            name = None
        elif line.startswith("## ") and kind is not None:
            name = line[3:].strip()
            assert re.fullmatch(r"\w+", name), f"heading {line!r} is not a table or view name"
            found[name] = (kind, [])
        elif name is not None and line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            found[name][1].append((cells[0].strip("`"), cells[1]))
    return found


def actual(path: Path) -> Documented:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        objects = conn.execute(
            "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
        return {
            name: (kind, [(row[1], row[2]) for row in conn.execute(f'PRAGMA table_info("{name}")')])
            for name, kind in objects
        }
    finally:
        conn.close()


def examples() -> list[str]:
    return re.findall(r"^```sql\n(.*?)^```$", DOC.read_text(), re.S | re.M)


def test_parser_reads_tables_views_and_columns() -> None:
    text = "# Tables\n## t\nText.\n| column | type | meaning |\n| --- | --- | --- |\n"
    text += (
        "| `a` | INTEGER | A. |\n| `b` | TEXT | B \\| C. |\n# Views\n## v\n| `c` | TEXT | C. |\n"
    )
    text += "# Example queries\n## Not a table\n| `x` | y | z |\n"
    assert documented(text) == {
        "t": ("table", [("a", "INTEGER"), ("b", "TEXT")]),
        "v": ("view", [("c", "TEXT")]),
    }


def test_every_table_view_and_column_is_documented(sqlite_path: Path) -> None:
    """The types documented are those SQLite files declare."""
    doc = {k: v for k, v in documented(DOC.read_text()).items() if k not in SKIPPED}
    schema = {k: v for k, v in actual(sqlite_path).items() if k not in SKIPPED}
    assert sorted(doc) == sorted(schema), "tables and views in docs/SCHEMA.md vs the schema"
    for name, (kind, columns) in schema.items():
        doc_kind, doc_columns = doc[name]
        assert doc_kind == kind, f"{name} is a {kind}, documented as a {doc_kind}"
        assert [c for c, _ in doc_columns] == [c for c, _ in columns], f"columns of {name}"
        if kind == "table":  # a view's column types are whatever SQLite infers
            assert doc_columns == columns, f"column types of {name}"


def test_the_document_has_examples() -> None:
    assert 4 <= len(examples()) <= 6


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("published") / "catalog.db"
    publish(out, db=str(SHIPPED))
    return out


@pytest.mark.parametrize("index", range(len(examples())))
@pytest.mark.parametrize("where", ["shipped", "published"])
def test_examples_run(index: int, where: str, published: Path) -> None:
    path = SHIPPED if where == "shipped" else published
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    result = run_sql(examples()[index], db=str(path))
    assert result.columns
    list(result.rows)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
