"""runs, diff and history through the command line, in every output format."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from click.testing import CliRunner

from catalog.cli.main import main
from tests.test_history import db  # noqa: F401  (the fixture: a history of seven runs)


def run(path: str, *args: str) -> Any:
    return CliRunner().invoke(main, ["--db", path, *args])


def test_runs_json_lists_every_run_newest_first(db: str) -> None:  # noqa: F811
    result = run(db, "runs", "--format", "json")
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)
    assert [(r["run_id"], r["region"], r["status"]) for r in runs] == [
        (7, "cn-beijing", "ok"), (6, "cn-hangzhou", "ok"), (5, "cn-hangzhou", "ok"),
        (4, "cn-hangzhou", "failed"), (3, "cn-hangzhou", "ok"), (2, "cn-beijing", "ok"),
        (1, "cn-hangzhou", "ok"),
    ]  # fmt: skip


def test_runs_table_and_filters(db: str) -> None:  # noqa: F811
    result = run(db, "runs", "--status", "failed", "--format", "table")
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["run_id", "region", "source", "status"]
    assert len(lines) == 3 and lines[2].split()[:4] == ["4", "cn-hangzhou", "import", "failed"]


def test_diff_csv_and_nl(db: str) -> None:  # noqa: F811
    result = run(db, "diff", "1", "3", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [(r["kind"], r["image_id"], r["changed_fields"]) for r in rows] == [
        ("added", "pt-2110", ""), ("changed", "pt-290", "labels"),
        ("changed", "tf-215", "size"), ("removed", "xgb", ""),
    ]  # fmt: skip
    lines = run(db, "diff", "1", "3", "--format", "nl").output.splitlines()
    changed = json.loads(lines[2])
    assert (changed["before"], changed["after"]) == ({"size": 100}, {"size": 200})


def test_history_of_one_image(db: str) -> None:  # noqa: F811
    result = run(db, "history", "xgb", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [(e["run_id"], e["kind"]) for e in json.loads(result.stdout)] == [
        (1, "added"), (3, "removed"), (5, "restored"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        pytest.param(("diff", "4", "6"), 2, "Error: Run 4 failed"),
        (("diff", "x"), 2, "Invalid value for '[RUN_A]'"),
        (("history", "nope"), 1, "Error: "),
        (("runs", "--limit", "0"), 2, "Invalid value for '--limit'"),
    ],
)
def test_errors(db: str, args: tuple[str, ...], code: int, text: str) -> None:  # noqa: F811
    result = run(db, *args)
    assert result.exit_code == code
    assert text in result.output
    assert "Traceback" not in result.output
