"""Staleness that helps: a synced catalog past its age names the remedy that fits, 0 never
warns, and the shipped catalog says once that it is a demonstration (issue 14)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from catalog.cli.main import main
from catalog.sync.run import import_files
from tests.test_analysis import DAY, T1
from tests.test_query import hangzhou

RESOLVE = ["resolve", "xgboost", "--region", "cn-hangzhou"]


@pytest.fixture
def synced(
    sqlite_path: Path, write_listing: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A catalog last synced on 2026-01-01, read ten days later."""
    monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", str(T1))
    import_files([write_listing(hangzhou())], "cn-hangzhou", db_option=str(sqlite_path))
    monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", str(T1 + 10 * DAY))
    return sqlite_path


def resolve(db: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--db", str(db), *RESOLVE, *args], env=env)
    assert result.stdout, result.stderr
    return result.exit_code, result.stderr


def test_a_synced_catalog_past_its_age_asks_for_a_sync(synced: Path) -> None:
    assert resolve(synced) == (
        0,
        "Warning: the catalog was last updated 2026-01-01, 10 days ago; run 'pai-catalog sync' "
        "to refresh it.\n",
    )


@pytest.mark.parametrize(("given", "warned"), [("0", False), ("11", False), ("9.5", True)])
def test_the_age_comes_from_the_environment_and_0_never_warns(
    synced: Path, given: str, warned: bool
) -> None:
    """--max-age 0 warned even on a fresh catalog; the variable did not exist."""
    _, err = resolve(synced, env={"PAI_CATALOG_MAX_AGE": given})
    assert bool(err) is warned
    assert resolve(synced, "--max-age", "0", env={"PAI_CATALOG_MAX_AGE": "1"}) == (0, "")


def test_a_published_copy_asks_for_a_newer_copy_not_a_sync(synced: Path, tmp_path: Path) -> None:
    """An air-gapped machine cannot sync: it installs a newer published file."""
    copy = tmp_path / "published.db"
    result = CliRunner().invoke(main, ["--db", str(synced), "publish", str(copy)])
    assert result.exit_code == 0, result.stderr
    assert resolve(copy)[1] == (
        "Warning: the catalog was last updated 2026-01-01, 10 days ago; install a newer "
        "published copy (pai-catalog publish, where it syncs).\n"
    )


def test_the_shipped_catalog_never_nags_and_says_once_what_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", str(T1 + 4000 * DAY))  # long past any age
    runner = CliRunner()
    first = runner.invoke(main, RESOLVE)
    assert first.exit_code == 0 and "run 'pai-catalog sync' to refresh" not in first.stderr
    assert first.stderr.startswith("Note: the shipped catalog (")
    assert "a demonstration reconstructed from public documentation" in first.stderr
    for _ in range(3):  # a loop of calls: said once
        again = runner.invoke(main, RESOLVE)
        assert (again.exit_code, again.stderr) == (0, "")


def test_the_note_is_said_every_time_where_nothing_can_be_remembered(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = tmp_path / "state-file"
    state.write_text("not a folder")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    for _ in range(2):
        result = CliRunner().invoke(main, RESOLVE)
        assert result.exit_code == 0 and result.stderr.startswith("Note: the shipped catalog")


def test_a_malformed_max_age_variable_is_one_line(synced: Path) -> None:
    result = CliRunner().invoke(
        main, ["--db", str(synced), *RESOLVE], env={"PAI_CATALOG_MAX_AGE": "soon"}
    )
    assert result.exit_code == 2 and "'--max-age': 'soon'" in result.stderr
    assert result.stderr.endswith("(from PAI_CATALOG_MAX_AGE).\n")  # it named only the option
    assert "Traceback" not in result.stderr
