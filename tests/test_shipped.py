"""The shipped catalog: at migration head, equal to a rebuild, and answering the README's job."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from catalog import db, readdb
from catalog.cli import main
from catalog.config import parse_target, shipped_db_path
from tests.conftest import ROOT, SHARED
from tests.dbkit import sqlite_dump

SHIPPED = ROOT / "data" / "catalog.db"


def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_snapshot", ROOT / "scripts" / "build_snapshot.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_finds_the_shipped_file() -> None:
    assert shipped_db_path().resolve() == SHIPPED.resolve()


def test_shipped_database_is_at_head_and_matches_the_models() -> None:
    target = parse_target(str(SHIPPED))
    engine = db.make_engine(target)
    try:
        assert db.current_revision(engine) == db.head_revision() == readdb.SCHEMA_REVISION
        assert db.schema_differences(engine) == []
    finally:
        engine.dispose()


def test_shipped_database_equals_a_rebuild(tmp_path: Path) -> None:
    rebuilt = tmp_path / "rebuilt.db"
    builder().build_database(ROOT / "data" / "snapshot", rebuilt)
    assert sqlite_dump(rebuilt) == sqlite_dump(SHIPPED)


def test_snapshot_equals_a_rebuild_from_the_public_list(tmp_path: Path) -> None:
    tsv = SHARED / "public-images.tsv"
    if not tsv.is_file():
        pytest.skip(f"{tsv} is not here; the snapshot is checked where shared/ is")
    out = tmp_path / "snapshot"
    builder().build_snapshot(tsv, out)
    committed = sorted(p.name for p in (ROOT / "data" / "snapshot").glob("*.json"))
    assert sorted(p.name for p in out.glob("*.json")) == committed
    for name in committed:
        assert (out / name).read_text() == (ROOT / "data" / "snapshot" / name).read_text(), name


def test_readme_job_on_the_shipped_database() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["resolve", "pytorch", "latest", "--accelerator", "gpu", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["framework_name"] == "PyTorch"
    assert info["accelerator_type"] == "GPU"
    assert "training" in info["scopes"]
    missing = runner.invoke(main, ["resolve", "tensorflow", "0.01"])
    assert missing.exit_code == 1
    assert missing.output.startswith(
        "Error: No tensorflow version matches '0.01' for accelerator CPU, scope training; "
        "available versions: "
    )


def test_reading_and_checking_leave_the_shipped_file_alone() -> None:
    before = SHIPPED.read_bytes()
    runner = CliRunner()
    for args in (
        ["resolve", "xgboost", "--region", "cn-hangzhou"],
        ["db", "current"],
        ["db", "check"],
        ["list"],
    ):
        result = runner.invoke(main, ["--db", str(SHIPPED), *args])
        assert result.exit_code == 0, (args, result.output)
    assert SHIPPED.read_bytes() == before
    assert sorted(p.name for p in SHIPPED.parent.iterdir() if p.name.startswith("catalog.db")) == [
        "catalog.db"
    ]
