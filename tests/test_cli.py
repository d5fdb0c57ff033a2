"""The command line through CliRunner: output, formats, exit codes, error lines."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from catalog import ImageInfo
from catalog.cli.main import main
from tests.dbkit import CatalogDb
from tests.test_query import HZ, beijing, hangzhou


@pytest.fixture
def db(catalog_db: CatalogDb, write_listing: Any) -> str:
    runner = CliRunner()
    for region, images in (("cn-hangzhou", hangzhou()), ("cn-beijing", beijing())):
        result = runner.invoke(
            main,
            ["--db", catalog_db.target, "import", str(write_listing(images)), "--region", region],
        )
        assert result.exit_code == 0, result.output
    return catalog_db.target


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env)


def test_resolve_prints_the_uri(db: str) -> None:
    result = run("--db", db, "resolve", "pytorch", "2.9", "--accelerator", "gpu")
    assert result.exit_code == 0
    assert result.output == f"{HZ}/pytorch:2.9.0-gpu-py311-cu121-ubuntu22.04\n"


def test_resolve_json_keys_are_image_info_fields(db: str) -> None:
    result = run(
        "--db",
        db,
        "resolve",
        "pytorch",
        "latest",
        "--accelerator",
        "gpu",
        "--region",
        "cn-beijing",
        "--json",
    )
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert list(data) == [f.name for f in fields(ImageInfo)]
    assert data["image_id"] == "pt-2120"


def test_db_from_environment(db: str) -> None:
    result = run("resolve", "xgboost", env={"PAI_CATALOG_DB": db})
    assert result.exit_code == 0
    assert "xgboost-training:1.5.0" in result.output


def test_missing_version_exits_1_with_one_error_line(db: str) -> None:
    result = run("--db", db, "resolve", "tensorflow", "0.01")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: No tensorflow version matches '0.01' for accelerator CPU")
    assert "available versions: 2.3, 1.15 (" in lines[0]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("resolve",), "Missing argument 'FRAMEWORK'"),
        (("resolve", "pytorch", "--scope", "serving"), "'serving' is not one of"),
        (("resolve", "pytorch", "--python", "snake"), "'snake' is not a Python version"),
        (("list", "--format", "xml"), "'xml' is not one of"),
        (("resolve", "pytorch", "--as-of", "soon"), "'soon' is not an ISO 8601 date"),
        (("nonsense",), "No such command 'nonsense'"),
    ],
)
def test_usage_errors_exit_2(db: str, args: tuple[str, ...], text: str) -> None:
    result = run("--db", db, *args)
    assert result.exit_code == 2
    assert text in result.output
    assert "Traceback" not in result.output


def test_versions_one_per_line(db: str) -> None:
    result = run("--db", db, "versions", "PyTorch", "--accelerator", "GPU", "--scope", "inference")
    # One line a version: the build variant 2.1.0-accl is 2.1's, not a line of its own.
    assert result.output == "2.1.2\n2.1    (2.1.0-accl)\n"


@pytest.mark.parametrize("fmt", ["json", "nl", "csv", "table"])
def test_list_formats(db: str, fmt: str) -> None:
    result = run("--db", db, "list", "pytorch", "--scope", "inference", "--format", fmt)
    assert result.exit_code == 0, result.output
    out = result.output
    if fmt == "json":
        uris = [row["image_uri"] for row in json.loads(out)]
    elif fmt == "nl":
        uris = [json.loads(line)["image_uri"] for line in out.splitlines()]
    elif fmt == "csv":
        uris = [row["image_uri"] for row in csv.DictReader(io.StringIO(out))]
    else:
        uris = [line.split()[0] for line in out.splitlines()[2:]]
    assert uris == [
        f"{HZ}/pytorch-inference:2.1.2-gpu-py310-cu121-ubuntu22.04",
        f"{HZ}/pytorch-inference:2.1.0-accl-gpu-py310-cu121-ubuntu22.04",
        f"{HZ}/pytorch-inference:2.1-gpu-py310-cu121-ubuntu22.04",
    ]


def test_list_empty_json_is_a_list(db: str) -> None:
    result = run(
        "--db", db, "list", "pytorch", "--region", "cn-hangzhou", "--python", "2.7",
        "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []


def test_show_labels(db: str) -> None:
    result = run("--db", db, "show", "xgb")
    assert result.exit_code == 0
    assert "  system.framework = XGBoost 1.6.0\n" in result.output
    assert "framework_version: 1.6.0\n" in result.output


def test_import_reports_one_line_on_stderr(catalog_db: CatalogDb, write_listing: Any) -> None:
    path = write_listing(hangzhou())
    result = run("--db", catalog_db.target, "import", str(path), "--region", "cn-hangzhou")
    assert result.exit_code == 0
    assert (
        result.output
        == "cn-hangzhou: 14 seen, 14 added, 0 changed, 0 removed, 0 restored (run 1)\n"
    )


def test_import_of_missing_file_is_an_error(catalog_db: CatalogDb, tmp_path: Path) -> None:
    result = run(
        "--db", catalog_db.target, "import", str(tmp_path / "nope.json"), "--region", "cn-hangzhou"
    )
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: Cannot read {tmp_path / 'nope.json'}: No such file")


def test_corrupt_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_text("hello" * 1000)
    result = run("--db", str(bad), "resolve", "pytorch")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {bad} is corrupt or not an SQLite database (file is not a database); "
        "restore it from a copy or point --db at another file.\n"
    )


def test_missing_database(tmp_path: Path) -> None:
    result = run("--db", str(tmp_path / "none.db"), "versions", "pytorch")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: No catalog database at {tmp_path / 'none.db'}; run")
    assert not (tmp_path / "none.db").exists()


def test_database_at_another_revision(catalog_db: CatalogDb) -> None:
    catalog_db.execute("UPDATE alembic_version SET version_num = '0001'")
    result = run("--db", catalog_db.target, "resolve", "pytorch")
    assert result.exit_code == 1
    assert (
        "is at schema revision 0001, this pai-catalog reads 0010; run 'pai-catalog db upgrade'"
        in result.output
    )


def test_db_commands(empty_db: CatalogDb) -> None:
    path = empty_db.display
    result = run("--db", empty_db.target, "db", "upgrade")
    assert result.output == f"{path}: upgraded from an empty database to revision 0010\n"
    assert run("--db", empty_db.target, "db", "upgrade").output == (
        f"{path}: already at revision 0010\n"
    )
    assert run("--db", empty_db.target, "db", "current").output == (
        f"{path}: revision 0010 (at head)\n"
    )
    result = run("--db", empty_db.target, "db", "check")
    assert result.exit_code == 0
    assert result.output == f"{path}: revision 0010, schema matches the models\n"


def test_db_check_fails_on_drift(catalog_db: CatalogDb) -> None:
    catalog_db.execute("DROP INDEX ix_image_version_uri")
    result = run("--db", catalog_db.target, "db", "check")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {catalog_db.display} differs from the models: ")


def test_foreign_database_is_not_migrated(empty_db: CatalogDb) -> None:
    empty_db.execute("CREATE TABLE customers (id INTEGER)")
    result = run("--db", empty_db.target, "db", "upgrade")
    assert result.exit_code == 1
    assert "is not a pai-catalog database (it has tables and no alembic_version)" in result.output
    assert empty_db.rows("SELECT count(*) FROM customers") == [(0,)]


def test_help_for_every_command() -> None:
    for args in (
        ["--help"],
        ["resolve", "--help"],
        ["list", "--help"],
        ["versions", "--help"],
        ["show", "--help"],
        ["import", "--help"],
        ["db", "--help"],
        ["db", "upgrade", "--help"],
        ["db", "current", "--help"],
        ["db", "check", "--help"],
    ):
        result = run(*args)
        assert result.exit_code == 0, args
        assert "Usage: " in result.output


def test_failed_first_import_leaves_no_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"Images": [{"ImageId": "x", "Size": "big"}]}')
    user_db = tmp_path / "xdg" / "pai-catalog" / "catalog.db"
    result = run("import", str(bad), "--region", "cn-hangzhou")
    assert result.exit_code == 1
    assert not user_db.exists()
    # so reads still fall back to the shipped catalog
    assert run("versions", "pytorch").exit_code == 0


def test_unknown_revision_to_upgrade_to(empty_db: CatalogDb) -> None:
    result = run("--db", empty_db.target, "db", "upgrade", "--revision", "nonsense")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: Unknown revision 'nonsense'; give head, or an id from 0001 to 0010."
    )


def test_database_from_a_newer_version(catalog_db: CatalogDb, write_listing: Any) -> None:
    catalog_db.execute("UPDATE alembic_version SET version_num = '9999'")
    for args in (["db", "upgrade"], ["import", str(write_listing([])), "--region", "cn-hangzhou"]):
        result = run("--db", catalog_db.target, *args)
        assert result.exit_code == 1, args
        assert result.output == (
            f"Error: {catalog_db.display} is at schema revision 9999, which this pai-catalog "
            "does not know: it was written by a newer version; upgrade pai-catalog.\n"
        )


def test_database_folder_that_cannot_exist(write_listing: Any) -> None:
    result = run(
        "--db", "/proc/nope/catalog.db", "import", str(write_listing([])), "--region", "cn-hangzhou"
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: Cannot create the folder for /proc/nope/catalog.db: ")


def test_server_url_without_a_driver() -> None:
    result = run("--db", "nosuchdb://u:hunter2@localhost/x", "versions", "pytorch")
    assert result.exit_code == 1
    assert result.output.startswith("Error: Cannot open nosuchdb://u:***@localhost/x")
    assert "hunter2" not in result.output


def test_every_command_is_in_the_readme() -> None:
    import click

    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    names: list[str] = []
    for name, command in main.commands.items():
        if isinstance(command, click.Group):
            names += [f"{name} {sub}" for sub in command.commands]
        else:
            names.append(name)
    missing = [
        n
        for n in names
        if f"pai-catalog {n.split()[0]}" not in readme or n.split()[-1] not in readme
    ]
    assert missing == []
    for name in names:
        assert run(*name.split(), "--help").exit_code == 0
