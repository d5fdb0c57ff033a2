"""docs/SCHEMA.md matches the schema at migration head, and its example queries run."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from catalog.read.datasette import Column, Example, Relation, documented, examples, schema_doc
from catalog.read.sql import run_sql
from catalog.store.publish import publish
from tests.conftest import ROOT

DOC = ROOT / "docs" / "SCHEMA.md"
SHIPPED = ROOT / "data" / "catalog.db"
# alembic_version belongs to the migration tool; it is documented but not compared.
SKIPPED = {"alembic_version"}
# The values the examples' named parameters get here and in tests/test_datasette.py.
PARAMS = {"framework": "PyTorch", "region": "cn-hangzhou"}
Documented = dict[str, tuple[str, list[tuple[str, str]]]]
EXAMPLES = examples(DOC.read_text())


def bound(example: Example) -> dict[str, str]:
    """PARAMS that the example's SQL names."""
    return {name: value for name, value in PARAMS.items() if f":{name}" in example.sql}


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


def test_parser_reads_tables_views_and_columns() -> None:
    text = "# Tables\n## t\nText that\nwraps.\n\nA second one.\n\n"
    text += "| column | type | meaning |\n| --- | --- | --- |\n"
    text += (
        "| `a` | INTEGER | A. |\n| `b` | TEXT | B \\| C. |\n# Views\n## v\n| `c` | TEXT | C. |\n"
    )
    text += "# Example queries\n## Not a table\n| `x` | y | z |\n"
    assert documented(text) == {
        "t": Relation(
            "table",
            "Text that wraps.\n\nA second one.",
            (Column("a", "INTEGER", "A."), Column("b", "TEXT", "B | C.")),
        ),
        "v": Relation("view", "", (Column("c", "TEXT", "C."),)),
    }


def test_parser_reads_examples() -> None:
    text = "# Tables\n## t\n```sql\nSELECT 0;\n```\n# Example queries\n\nHow they look.\n\n"
    text += "## one_a: The first\n\nWhat it\nanswers.\n\n```sql\nSELECT 1\nFROM t;\n```\n"
    text += "## two: The second\n```sql\nSELECT :region;\n```\n"
    assert examples(text) == (
        Example("one_a", "The first", "What it answers.", "SELECT 1\nFROM t;"),
        Example("two", "The second", "", "SELECT :region;"),
    )
    with pytest.raises(ValueError, match="needs a '## name: title' heading"):
        examples("# Example queries\n## A title alone\n```sql\nSELECT 1;\n```\n")
    with pytest.raises(ValueError, match="Example names repeat"):
        examples("# Example queries\n" + "## a: A\n```sql\nSELECT 1;\n```\n" * 2)


def test_every_table_view_and_column_is_documented(sqlite_path: Path) -> None:
    """The types documented are those SQLite files declare."""
    doc = {
        name: (relation.kind, [(c.name, c.type) for c in relation.columns])
        for name, relation in documented(DOC.read_text()).items()
        if name not in SKIPPED
    }
    schema = {k: v for k, v in actual(sqlite_path).items() if k not in SKIPPED}
    assert sorted(doc) == sorted(schema), "tables and views in docs/SCHEMA.md vs the schema"
    for name, (kind, columns) in schema.items():
        doc_kind, doc_columns = doc[name]
        assert doc_kind == kind, f"{name} is a {kind}, documented as a {doc_kind}"
        assert [c for c, _ in doc_columns] == [c for c, _ in columns], f"columns of {name}"
        if kind == "table":  # a view's column types are whatever SQLite infers
            assert doc_columns == columns, f"column types of {name}"


def test_every_table_view_and_column_is_described() -> None:
    for name, relation in documented(DOC.read_text()).items():
        assert relation.description, f"{name} has no description"
        assert all(column.meaning for column in relation.columns), f"a column of {name}"


def test_the_installed_document_is_this_one() -> None:
    """What publish --datasette reads, installed as catalog.docs or from a checkout."""
    assert schema_doc() == DOC.read_text()


def test_the_document_has_examples() -> None:
    assert 4 <= len(EXAMPLES) <= 6
    assert all(example.title and example.description for example in EXAMPLES)
    uses = {name for example in EXAMPLES for name in bound(example)}
    assert uses == set(PARAMS), "the examples show both named parameters"


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("published") / "catalog.db"
    publish(out, db=str(SHIPPED))
    return out


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.name for example in EXAMPLES])
@pytest.mark.parametrize("where", ["shipped", "published"])
def test_examples_run(example: Example, where: str, published: Path) -> None:
    path = SHIPPED if where == "shipped" else published
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    result = run_sql(example.sql, bound(example), db=str(path))
    assert result.columns
    rows = list(result.rows)
    if bound(example):  # the shipped catalog has PyTorch images, and GPU ones in cn-hangzhou
        assert rows
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
