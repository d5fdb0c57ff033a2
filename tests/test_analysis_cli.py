"""sql, export, publish, info and the staleness warning through the command line."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from catalog.cli.main import main
from catalog.sync.run import import_files
from tests.dbkit import CatalogDb, dump
from tests.test_query import beijing, hangzhou
from tests.test_sql_guard import READER, pg_role


@pytest.fixture
def db(catalog_db: CatalogDb, write_listing: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", "1767225600")  # 2026-01-01
    import_files([write_listing(hangzhou())], "cn-hangzhou", db_option=catalog_db.target)
    import_files([write_listing(beijing())], "cn-beijing", db_option=catalog_db.target)
    monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", "1768089600")  # 2026-01-11
    return catalog_db.target


def fingerprint(db: str) -> tuple[list[str], str | None]:
    """Every row, and on SQLite the file's bytes too."""
    catalog = CatalogDb(db)
    path = catalog.path
    return dump(catalog), hashlib.sha256(path.read_bytes()).hexdigest() if path else None


def run(path: str, *args: str) -> Any:
    return CliRunner().invoke(main, ["--db", path, *args])


@pytest.fixture
def sql_db(db: str) -> Iterator[str]:
    """What sql connects to: the file, or on PostgreSQL a role that can only read."""
    if CatalogDb(db).path is not None:
        yield db
        return
    with pg_role(db, *READER) as url:
        yield url


def test_sql_with_parameters_in_every_format(sql_db: str) -> None:
    statement = "SELECT image_id, region FROM v_image WHERE region = :r ORDER BY image_id"
    result = run(sql_db, "sql", statement, "-p", "r", "cn-beijing", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.output == "image_id,region\nds-bj,cn-beijing\npt-2120,cn-beijing\n"
    as_json = json.loads(
        run(sql_db, "sql", statement, "-p", "r", "cn-beijing", "--format", "json").output
    )
    assert as_json == [
        {"image_id": "ds-bj", "region": "cn-beijing"},
        {"image_id": "pt-2120", "region": "cn-beijing"},
    ]
    empty = run(sql_db, "sql", "SELECT image_id FROM v_image WHERE 1 = 0", "--format", "csv")
    assert empty.output == "image_id\n"


# A refused write is a usage error (exit 2); SQLite's own statements are, to PostgreSQL, syntax
# errors: a statement that failed (exit 1).
@pytest.mark.parametrize(
    ("statement", "exits"),
    [("DELETE FROM image", (2, 2)), ("DROP TABLE image", (2, 2)),
     ("ATTACH DATABASE 'x.db' AS x", (2, 1)), ("PRAGMA writable_schema = 1", (2, 1)),
     ("SELECT 1; DROP TABLE image", (2, 2)), ("COPY image TO STDOUT", (2, 2))],
)  # fmt: skip
def test_sql_refuses_writes_and_changes_nothing(
    db: str, sql_db: str, statement: str, exits: tuple[int, int]
) -> None:
    before = fingerprint(db)
    result = run(sql_db, "sql", statement)
    assert result.exit_code == exits[CatalogDb(db).path is None]
    assert result.stderr.startswith("Usage: " if result.exit_code == 2 else "Error: ")
    assert result.stderr.count("Error: ") == 1 and "Traceback" not in result.output
    assert fingerprint(db) == before


def test_export_csv_and_as_of(db: str) -> None:
    rows = list(csv.DictReader(io.StringIO(run(db, "export", "--format", "csv").output)))
    assert len(rows) == len(hangzhou()) + len(beijing())
    early = json.loads(run(db, "export", "--as-of", "2025-12-31").output)
    assert early == []


def test_publish_and_read_the_copy(db: str, tmp_path: Path) -> None:
    out = tmp_path / "published" / "catalog.db"
    out.parent.mkdir()
    result = run(db, "publish", str(out))
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert result.output == (
        f"{out}: 16 images, schema revision 0010, {out.stat().st_size} bytes, sha256 {digest}\n"
    )
    assert (out.parent / "catalog.db.sha256").read_text() == f"{digest}  catalog.db\n"
    copy = run(str(out), "resolve", "deepspeed", "--accelerator", "gpu", "--region", "cn-beijing")
    assert copy.exit_code == 0 and "deepspeed" in copy.output
    refused = run(db, "publish", db)
    assert refused.exit_code != 0 and "Error: " in refused.output


def test_info(db: str) -> None:
    result = run(db, "info", "--format", "json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)  # one record: an object
    assert (found["revision"], found["images"], found["last_sync"]) == (
        "0010", 16, "2026-01-01T00:00:00Z",
    )  # fmt: skip
    assert [r["region"] for r in found["regions"]] == ["cn-beijing", "cn-hangzhou"]
    table = run(db, "info", "--format", "table")
    assert "revision  : 0010" in table.output and "cn-hangzhou" in table.output
    piped = run(db, "info")  # not a terminal: nl, as --help says (it printed the table)
    assert json.loads(piped.stdout)["revision"] == "0010"


def test_resolve_warns_when_the_catalog_is_old(db: str) -> None:
    result = CliRunner().invoke(main, ["--db", db, "resolve", "xgboost"])
    assert result.exit_code == 0
    assert result.stdout.endswith("xgboost-training:1.5.0-cpu-py36-ubuntu18.04\n")
    assert result.stderr == (
        "Warning: the catalog was last updated 2026-01-01, 10 days ago; "
        "run 'pai-catalog sync' to refresh it.\n"
    )
    fresh = CliRunner().invoke(main, ["--db", db, "resolve", "xgboost", "--max-age", "30"])
    assert fresh.stderr == ""


def test_a_read_only_published_copy_answers_every_read_command(db: str, tmp_path: Path) -> None:
    import os
    import stat
    import subprocess
    import sys

    from tests.test_readonly import read_only_command

    folder = tmp_path / "airgap"
    folder.mkdir()
    out = folder / "catalog.db"
    assert run(db, "publish", str(out)).exit_code == 0
    out.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    base = [sys.executable, "-m", "catalog", "--db", str(out)]
    try:
        for args in (
            ["resolve", "pytorch", "--accelerator", "gpu", "--region", "cn-hangzhou"],
            ["list", "--format", "csv"],
            ["versions", "tensorflow"],
            ["sql", "SELECT count(*) AS n FROM v_image", "--format", "csv"],
            ["history", "xgb", "--format", "csv"],
            ["info", "--format", "json"],
        ):
            result = subprocess.run(
                read_only_command(folder, [*base, *args]),
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "PAI_CATALOG_BUILD_TIME": "1768089600"},
            )
            assert result.returncode == 0, (args, result.stderr)
            assert result.stdout.strip(), args
        assert sorted(os.listdir(folder)) == ["catalog.db", "catalog.db.sha256"]
    finally:
        folder.chmod(stat.S_IRWXU)
