"""The shipped catalog: at migration head, equal to a rebuild, and answering the README's job."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from catalog.cli.main import main
from catalog.config import SCHEMA_REVISION, parse_target, shipped_db_path
from catalog.store import db
from tests.conftest import FIXTURES, ROOT
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
        assert db.current_revision(engine) == SCHEMA_REVISION
        assert db.schema_differences(engine) == []
    finally:
        engine.dispose()


@pytest.mark.slow
def test_shipped_database_equals_a_rebuild(tmp_path: Path) -> None:
    rebuilt = tmp_path / "rebuilt.db"
    builder().build_database(ROOT / "data" / "snapshot", rebuilt)
    assert sqlite_dump(rebuilt) == sqlite_dump(SHIPPED)


def test_snapshot_equals_a_rebuild_from_the_public_list(tmp_path: Path) -> None:
    tsv = FIXTURES / "public-images.tsv"
    out = tmp_path / "snapshot"
    builder().build_snapshot(tsv, out)
    committed = sorted(p.name for p in (ROOT / "data" / "snapshot").glob("*.json"))
    assert sorted(p.name for p in out.glob("*.json")) == committed
    for name in committed:
        assert (out / name).read_text() == (ROOT / "data" / "snapshot" / name).read_text(), name


def shipped_build_time() -> datetime:
    """When the shipped catalog was last synced (built): the clock its age is measured from."""
    conn = sqlite3.connect(f"file:{SHIPPED}?mode=ro", uri=True)
    try:
        [(last,)] = conn.execute("SELECT max(finished_at) FROM sync_run WHERE status = 'ok'")
    finally:
        conn.close()
    return datetime.fromisoformat(last).replace(tzinfo=timezone.utc)


def pin_clock(monkeypatch: pytest.MonkeyPatch, days_after_build: float) -> None:
    """Today, as the catalog sees it: this many days after the shipped catalog was built."""
    moment = shipped_build_time() + timedelta(days=days_after_build)
    monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", str(int(moment.timestamp())))


@pytest.mark.parametrize("days_after_build", [1, 400])
def test_readme_job_on_the_shipped_database(
    monkeypatch: pytest.MonkeyPatch, days_after_build: int
) -> None:
    pin_clock(monkeypatch, days_after_build)
    runner = CliRunner()
    readme = ["resolve", "pytorch", "latest", "--accelerator", "gpu", "--region", "cn-hangzhou"]
    result = runner.invoke(main, [*readme, "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)  # data only: a staleness warning goes to stderr
    assert info["framework_name"] == "PyTorch"
    assert info["accelerator_type"] == "GPU"
    assert "training" in info["scopes"]
    # Never "run sync" on the shipped catalog, however old (an air-gapped machine cannot):
    # it says once, not on every call, that it is a demonstration.
    assert result.stderr == (
        f"Note: the shipped catalog ({shipped_db_path().absolute()}) answered: a demonstration "
        "reconstructed from public documentation, not PAI's live list; run 'pai-catalog sync' "
        "to build your own, or point PAI_CATALOG_DB at a published copy.\n"
    )
    again = runner.invoke(main, [*readme, "--json"])
    assert (again.stdout, again.stderr) == (result.stdout, "")
    missing = runner.invoke(main, ["resolve", "tensorflow", "0.01"])
    assert missing.exit_code == 1
    assert missing.stdout == ""
    assert missing.stderr.startswith(
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
