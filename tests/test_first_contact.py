"""The first five minutes: typos caught where they are made, answers that say what exists,
--db wherever it is typed, pipes that close early, listings in an order a person reads
(issue 14)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from catalog.cli.main import main
from catalog.config import parse_target
from tests.test_query import fill

CLI = [sys.executable, "-m", "catalog"]
TRAINING = {"system.supported.dlc": "true"}


@pytest.fixture
def db(sqlite_path: Path, write_listing: Any) -> str:
    return fill(str(sqlite_path), write_listing)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "pytroch"], "Error: Unknown framework 'pytroch'. Did you mean 'PyTorch'? "),
        (
            ["list", "--region", "cn-hangzhuo"],
            "Error: No image in region 'cn-hangzhuo'. Did you mean 'cn-hangzhou'? Regions in "
            "the catalog: cn-beijing, cn-hangzhou ",
        ),
        (
            ["versions", "pytorch", "--region", "cn-hangzhuo"],
            "Error: No image in region 'cn-hangzhuo'. Did you mean 'cn-hangzhou'?",
        ),
        (
            ["resolve", "pytorch", "--region", "cn-hangzhuo"],
            "Error: No image in region 'cn-hangzhuo'. Did you mean 'cn-hangzhou'?",
        ),
        (["list", "--accelerator", "tpu"], "Error: Unknown accelerator 'TPU'; the catalog knows "),
    ],
    ids=["list-framework", "list-region", "versions-region", "resolve-region", "accelerator"],
)
def test_a_typo_is_caught_wherever_it_is_typed(db: str, args: list[str], message: str) -> None:
    """list pytroch and list --region cn-hangzhuo printed nothing and exited 0."""
    result = invoke("--db", db, *args)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(message), result.stderr


def test_an_empty_answer_of_known_names_is_still_empty(db: str) -> None:
    result = invoke("--db", db, "list", "deepspeed", "--scope", "develop", "--format", "json")
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])


def test_no_image_for_the_default_accelerator_names_those_there_are(db: str) -> None:
    result = invoke("--db", db, "resolve", "deepspeed", "--region", "cn-hangzhou")
    assert result.exit_code == 1
    assert "; it has images for GPU (--accelerator) " in result.stderr


def test_db_is_taken_after_the_command_too(db: str, tmp_path: Path) -> None:
    before = invoke("--db", db, "versions", "xgboost")
    after = invoke("versions", "xgboost", "--db", db)
    assert after.exit_code == 0 and after.stdout == before.stdout
    other = invoke("--db", str(tmp_path / "nowhere.db"), "versions", "xgboost", "--db", db)
    assert other.stdout == before.stdout  # the one after the command wins
    nested = invoke("db", "current", "--db", db)
    assert nested.exit_code == 0 and db in nested.stdout


@pytest.mark.parametrize("value", ["catalog.db", "sqlite:///catalog.db"])
def test_a_relative_db_names_a_file_in_the_current_folder(
    value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for folder in (tmp_path / "one", tmp_path / "two"):
        folder.mkdir()
        monkeypatch.chdir(folder)
        assert parse_target(value).path == Path.cwd() / "catalog.db"


def test_list_orders_by_framework_then_version(db: str) -> None:
    result = invoke("--db", db, "list", "--format", "json")
    rows = json.loads(result.stdout)
    frameworks = [row["framework_name"].lower() for row in rows]
    assert frameworks == sorted(frameworks)
    torch = [row["framework_version"] for row in rows if row["framework_name"] == "PyTorch"]
    assert torch[0] == "2.12.0"


def test_a_reader_that_stops_reading_is_no_error(db: str) -> None:
    """list | head -1 exited 1 when the output outgrew the pipe's buffer."""
    many = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 200000) "
        "SELECT x FROM c"
    )
    process = subprocess.Popen(
        [*CLI, "--db", db, "sql", many], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stdout.readline() == b'{"x": 1}\n'
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err) == (0, b"")


def test_versions_groups_what_is_one_version(db: str) -> None:
    """versions listed 2.1 and 2.1.0-accl, or 1.12, 1.12.0 and 1.12PAI, as separate lines."""
    plain = invoke(
        "--db", db, "versions", "pytorch", "--accelerator", "gpu", "--scope", "inference"
    )
    assert plain.stdout.splitlines() == ["2.1.2", "2.1    (2.1.0-accl)"]
    detail = invoke(
        "--db", db, "versions", "pytorch", "--accelerator", "gpu", "--scope", "inference",
        "--format", "json",
    )  # fmt: skip
    [first, second] = json.loads(detail.stdout)
    assert second == {
        "version": "2.1",
        "spellings": ["2.1.0-accl"],
        "first_seen": second["first_seen"],
        "regions": ["cn-hangzhou"],
        "accelerators": ["GPU"],
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", second["first_seen"])
    assert first["version"] == "2.1.2" and first["spellings"] == []


def test_a_nightly_build_is_a_prerelease(sqlite_path: Path, write_listing: Any) -> None:
    """resolve acc answered a -nightly build as the latest release."""
    from catalog.sync.run import import_files
    from tests.conftest import api_image

    host = "registry.cn-wulanchabu.aliyuncs.com/pai-dlc/acc"
    listing = [
        api_image("nightly", f"{host}:r2.4.0-cuda12.1.0-py3.10-nightly", TRAINING),
        api_image("release", f"{host}:r2.3.0-cuda12.1.0-py3.10", TRAINING),
    ]
    import_files([write_listing(listing)], "cn-wulanchabu", db_option=str(sqlite_path))
    result = invoke("--db", str(sqlite_path), "resolve", "acc", "--accelerator", "gpu", "--json")
    assert json.loads(result.stdout)["framework_version"] == "2.3.0"
    versions = invoke("--db", str(sqlite_path), "versions", "acc")
    assert versions.stdout.splitlines() == ["2.4.0-nightly", "2.3.0"]  # in semantic order


READS = {
    "resolve": ["resolve", "pytorch", "--accelerator", "gpu", "--region", "cn-hangzhou"],
    "list": ["list", "pytorch"],
    "versions": ["versions", "pytorch"],
    "show": ["show", "pt-2100"],
    "info": ["info"],
    "runs": ["runs"],
    "history": ["history", "pt-2100"],
    "export": ["export"],
    "sql": ["sql", "SELECT region, count(*) AS images FROM v_image GROUP BY region"],
}
ONE = {"resolve", "show", "info"}  # commands that answer with one record


@pytest.mark.parametrize("fmt", ["table", "json", "nl", "csv"])
@pytest.mark.parametrize("command", sorted(READS))
def test_every_read_command_honours_every_format(db: str, command: str, fmt: str) -> None:
    """resolve had no --format, export no table; show, info and resolve --json gave an array
    of one; info --format csv held Python's repr of its regions."""
    result = invoke("--db", db, *READS[command], "--format", fmt)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out and "{'" not in out and "[{'" not in out  # never a Python repr
    if fmt == "json":
        parsed = json.loads(out)
        assert isinstance(parsed, dict if command in ONE else list), parsed
    elif fmt == "nl":
        assert all(isinstance(json.loads(line), dict) for line in out.splitlines())
        if command in ONE:
            assert len(out.splitlines()) == 1
    elif fmt == "csv":
        assert len(out.splitlines()) >= 2  # a header and a row


def test_an_image_with_no_accelerator_or_scope_is_reachable_and_counted(
    sqlite_path: Path, write_listing: Any
) -> None:
    from catalog.sync.run import import_files
    from tests.conftest import api_image

    bare = api_image(
        "bare", "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai/pytorch:2.1.0-py310",
        {"system.framework.PyTorch": "2.1.0"},
    )  # fmt: skip
    import_files([write_listing([bare])], "cn-hangzhou", db_option=str(sqlite_path))
    db = str(sqlite_path)
    hidden = invoke("--db", db, "resolve", "pytorch", "--accelerator", "gpu")
    assert hidden.exit_code == 1
    found = invoke("--db", db, "resolve", "pytorch", "--accelerator", "any", "--scope", "any")
    assert (found.exit_code, found.stdout) == (0, bare["ImageUri"] + "\n"), found.stderr
    [region] = json.loads(invoke("--db", db, "info", "--format", "json").stdout)["regions"]
    assert (region["images"], region["no_accelerator"], region["no_scope"]) == (1, 1, 1)


def test_import_reads_standard_input(sqlite_path: Path, write_listing: Any) -> None:
    from tests.test_query import hangzhou

    listing = write_listing(hangzhou()).read_text()
    args = ["--db", str(sqlite_path), "import", "-", "--region", "cn-hangzhou"]
    result = CliRunner().invoke(main, args, input=listing)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith(f"cn-hangzhou: {len(hangzhou())} seen")
    bad = CliRunner().invoke(main, args, input="[")
    assert (bad.exit_code, bad.stderr.splitlines()[-1]) == (
        1,
        "Error: standard input is not valid JSON (Expecting value: line 1 column 2 (char 1)); "
        "nothing was imported.",
    )


def test_an_import_whose_hosts_name_another_region_is_refused(
    sqlite_path: Path, write_listing: Any
) -> None:
    """--region cn-hangzhuo made a bogus region out of cn-hangzhou images."""
    from tests.test_query import hangzhou

    listing = str(write_listing(hangzhou()))
    result = invoke("--db", str(sqlite_path), "import", listing, "--region", "cn-hangzhuo")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"Error: The images' registry hosts name cn-hangzhou ({len(hangzhou())}), not "
        "cn-hangzhuo; import them with --region cn-hangzhou."
    )
    assert (
        not sqlite_path.exists()
        or "cn-hangzhuo" not in invoke("--db", str(sqlite_path), "runs").stdout
    )


def test_forget_region_asks_only_once_it_holds_the_write_lock(db: str) -> None:
    """With a sync writing, forget-region asked first and only then said another writer held the
    lock: a yes that did nothing. It now takes the lock, then asks."""
    from catalog.store.locks import write_lock

    with write_lock(parse_target(db), holder="sync"):
        asked = CliRunner().invoke(
            main, ["--db", db, "db", "forget-region", "cn-beijing"], input="y\n"
        )
    assert asked.exit_code == 75, asked.output
    assert "Forget cn-beijing" not in asked.stdout
    assert "is writing" in asked.stderr


def test_a_region_can_be_forgotten_after_asking(db: str) -> None:
    from tests.dbkit import CatalogDb

    catalog = CatalogDb.file(Path(db))
    beijing = catalog.rows("SELECT count(*) FROM image WHERE region = 'cn-beijing'")[0][0]
    asked = CliRunner().invoke(main, ["--db", db, "db", "forget-region", "cn-beijing"], input="n\n")
    assert asked.exit_code == 1 and "Aborted" in asked.stderr
    assert "Forget cn-beijing: " in asked.stdout and beijing > 0
    assert catalog.rows("SELECT count(*) FROM image WHERE region = 'cn-beijing'") == [(beijing,)]
    done = invoke("--db", db, "db", "forget-region", "CN-Beijing", "--yes")
    assert done.exit_code == 0, done.stderr
    assert done.stdout == f"{db}: forgot cn-beijing, its {beijing} images and their history\n"
    for table in ("image", "image_version", "sync_run"):
        assert catalog.rows(f"SELECT count(*) FROM {table} WHERE region = 'cn-beijing'") == [(0,)]
    assert catalog.rows("SELECT count(*) FROM image WHERE region = 'cn-hangzhou'")[0][0] > 0
    unknown = invoke("--db", db, "db", "forget-region", "cn-beijing", "--yes")
    assert unknown.exit_code == 2
    assert unknown.stderr.splitlines()[-1] == (
        f"Error: cn-beijing is not in {db}. Its regions: cn-hangzhou."
    )


def on_a_terminal(args: list[str], columns: int) -> list[str]:
    """The command's lines as a terminal of ``columns`` shows them (a real pseudo-terminal)."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns)}
    process = subprocess.Popen([*CLI, *args], stdout=child_fd, stderr=subprocess.PIPE, env=env)
    os.close(child_fd)
    chunks = []
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the terminal closed: the command is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main_fd)
    assert process.wait(timeout=60) == 0
    return b"".join(chunks).decode().replace("\r\n", "\n").splitlines()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux pseudo-terminal")
def test_tables_fit_the_terminal_unless_asked_for_in_full(db: str) -> None:
    wide = on_a_terminal(["--db", db, "list", "--region", "cn-hangzhou"], 300)
    assert wide[0].startswith("image_uri") and all(len(line) <= 300 for line in wide)
    assert not any("…" in line for line in wide)  # a URI is never cut: it is copied to pull
    runs = on_a_terminal(["--db", db, "runs"], 140)
    assert runs[0].startswith("run_id") and all(len(line) <= 140 for line in runs)
    whole = on_a_terminal(["--db", db, "--full-width", "list", "--region", "cn-hangzhou"], 140)
    assert whole[0].startswith("image_uri") and max(len(line) for line in whole) > 140


def test_a_table_too_wide_for_the_terminal_prints_a_block_per_row(db: str) -> None:
    """At 80 columns, list ran to 118 characters with every URI cut to 'dsw…64361782', and
    runs cut its times to '202…0:27:17Z'."""
    lines = on_a_terminal(["--db", db, "list", "--region", "cn-hangzhou"], 80)
    listed = json.loads(invoke("--db", db, "list", "--region", "cn-hangzhou", "--format",
                               "json").stdout)  # fmt: skip
    assert lines[0] == "-[ 1 ]-" and not any("…" in line for line in lines)
    uris = [line.split(" | ", 1)[1] for line in lines if line.startswith("image_uri ")]
    assert uris == [image["image_uri"] for image in listed]
    runs = on_a_terminal(["--db", db, "runs"], 80)
    started = [line.split(" | ", 1)[1] for line in runs if line.startswith("started_at ")]
    assert started and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t) for t in started)


# What a second reviewer found ------------------------------------------------------------------


def test_list_keeps_the_labels_it_prints(db: str) -> None:
    """Piped (newline JSON by default), list printed "labels": {} for every image."""
    import catalog

    piped = invoke("--db", db, "list", "pytorch", "--region", "cn-hangzhou")
    rows = [json.loads(line) for line in piped.stdout.splitlines()]
    assert rows and all(row["labels"] for row in rows)
    assert all(image.labels for image in catalog.list_images("pytorch", db=db))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"framework_name": 5},
        {"framework_name": "PyTorch", "framework_version": 2.1},
        {"framework_name": "PyTorch", "region": 1},
        {"framework_name": "PyTorch", "python_version": 3.10},
    ],
    ids=["framework", "version", "region", "python"],
)
def test_an_argument_that_is_no_text_is_a_value_error(db: str, kwargs: dict[str, Any]) -> None:
    """Each was an AttributeError ('float' object has no attribute 'strip')."""
    import catalog

    with pytest.raises(ValueError, match=r"must be text, not "):
        catalog.retrieve(**kwargs, db=db)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"framework_name": ["PyTorch"]}, r"^framework_name must be text, not \['PyTorch'\]\.$"),
        ({"as_of": 5}, r"^as_of must be a date, a time or ISO 8601 text, not 5\.$"),
        ({"db": 5}, r"^db must be a file path or an SQLAlchemy URL, not 5\.$"),
    ],
    ids=["list", "as-of-number", "db-number"],
)
def test_arguments_of_other_types_are_value_errors(kwargs: dict[str, Any], message: str) -> None:
    """A TypeError (unhashable list) and AttributeErrors escaped every except clause."""
    import catalog

    for call in (catalog.retrieve, catalog.list_images, catalog.list_versions):
        with pytest.raises(ValueError, match=message):
            call(**{"framework_name": "PyTorch", **kwargs})


def test_a_path_and_a_date_are_taken(db: str) -> None:
    """db=Path(...) and as_of=date(...) were AttributeErrors."""
    import datetime

    import catalog

    by_text = catalog.list_images("pytorch", None, db=db, as_of="2100-01-01")
    by_objects = catalog.list_images("pytorch", None, db=Path(db), as_of=datetime.date(2100, 1, 1))
    assert by_objects == by_text and by_text


def test_the_scope_an_image_of_every_scope_answers_with_is_training(
    sqlite_path: Path, write_listing: Any
) -> None:
    """list and show said develop, the first scope in alphabetical order."""
    from catalog.sync.run import import_files
    from tests.conftest import api_image

    every = {"system.supported.dlc": "true", "system.supported.eas": "true",
             "system.supported.dsw": "true"}  # fmt: skip
    uri = "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai/pytorch:2.1.0-gpu-py310"
    import_files([write_listing([api_image("all", uri, every)])], "cn-hangzhou",
                 db_option=str(sqlite_path))  # fmt: skip
    [listed] = json.loads(invoke("--db", str(sqlite_path), "list", "--format", "json").stdout)
    shown = json.loads(invoke("--db", str(sqlite_path), "show", "all", "--format", "json").stdout)
    assert listed["scopes"] == ["develop", "inference", "training"]
    assert listed["image_scope"] == shown["image_scope"] == "training"


def test_history_finds_an_image_by_the_other_host_form_resolve_printed(db: str) -> None:
    """show took either host form; history only the stored one."""
    other = invoke("--db", db, "resolve", "pytorch", "--accelerator", "gpu",
                    "--region", "cn-hangzhou", "--vpc").stdout.strip()  # fmt: skip
    stored = invoke("--db", db, "resolve", "pytorch", "--accelerator", "gpu",
                    "--region", "cn-hangzhou").stdout.strip()  # fmt: skip
    assert other != stored
    by_other = invoke("--db", db, "history", other, "--format", "json")
    assert by_other.exit_code == 0, by_other.stderr
    assert by_other.stdout == invoke("--db", db, "history", stored, "--format", "json").stdout


def test_a_database_or_credentials_file_that_cannot_be_used_is_a_runtime_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import catalog

    with pytest.raises(RuntimeError):
        catalog.retrieve("pytorch", db=str(tmp_path / "nowhere" / "x.db"))
    home = tmp_path / "home"
    (home / ".aliyun").mkdir(parents=True)
    (home / ".aliyun" / "config.json").write_text("{bad json")
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(RuntimeError, match=r"config\.json is not valid JSON"):
        catalog.retrieve("xgboost")


def test_versions_and_list_keep_to_the_bound_region(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """versions listed every region's versions while resolve answered from the bound one."""
    monkeypatch.setenv("PAI_CATALOG_REGION", "cn-beijing")
    bound = invoke("--db", db, "versions", "pytorch", "--format", "json")
    assert {r for v in json.loads(bound.stdout) for r in v["regions"]} == {"cn-beijing"}
    listed = invoke("--db", db, "list", "--format", "json")
    assert {row["region"] for row in json.loads(listed.stdout)} == {"cn-beijing"}
    every = invoke("--db", db, "list", "--region", "any", "--format", "json")
    assert {row["region"] for row in json.loads(every.stdout)} == {"cn-beijing", "cn-hangzhou"}


def test_a_framework_whose_images_all_left_says_so(sqlite_path: Path, write_listing: Any) -> None:
    from catalog.sync.run import import_files
    from tests.test_query import hangzhou

    db = str(sqlite_path)
    import_files([write_listing(hangzhou())], "cn-hangzhou", db_option=db)
    left = [i for i in hangzhou() if "xgboost" not in i["ImageUri"]]
    import_files([write_listing(left)], "cn-hangzhou", db_option=db)
    result = invoke("--db", db, "list", "xgboost")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: Every xgboost image has left the API's listing; --include-removed shows them"
    )
    assert invoke("--db", db, "list", "xgboost", "--include-removed").exit_code == 0


def test_the_shipped_catalog_warning_is_public_and_said_once_per_process() -> None:
    code = (
        "import warnings, catalog\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as heard:\n"
        "    warnings.simplefilter('always')\n"
        "    for _ in range(3):\n"
        "        catalog.retrieve('xgboost', region='cn-hangzhou')\n"
        "        catalog.list_versions('xgboost')\n"
        "print(*(w.category.__name__ for w in heard))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    # The second read said an UnsyncedCatalogWarning with no reason in it.
    assert (done.returncode, done.stdout) == (0, "ShippedCatalogWarning\n"), done.stderr


def test_a_blob_prints_as_hex(db: str) -> None:
    for fmt, expected in (("csv", "b\n00ff\n"), ("nl", '{"b": "00ff"}\n')):
        result = invoke("--db", db, "sql", "SELECT x'00ff' AS b", "--format", fmt)
        assert result.stdout == expected  # not Python's b'\x00\xff'


def test_a_version_known_only_by_its_variants_is_written_as_they_write_it(
    sqlite_path: Path, write_listing: Any
) -> None:
    from catalog.sync.run import import_files
    from tests.conftest import api_image

    host = "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai/pytorch-training"
    images = [
        api_image("pai", f"{host}:1.8PAI-gpu-py36-cu101-ubuntu18.04", TRAINING),
        api_image("rc", f"{host}:2.0.0rc2.a8ec486.20260305pai-gpu-py310", TRAINING),
    ]
    import_files([write_listing(images)], "cn-hangzhou", db_option=str(sqlite_path))
    result = invoke("--db", str(sqlite_path), "versions", "pytorch")
    # Not 1.8.0, a spelling no image has; and not 2.0.0, a release there is none of.
    assert result.stdout == "2.0.0rc2  (2.0.0rc2.a8ec486.20260305pai)\n1.8       (1.8PAI)\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["runs", "--region", "cn-hangzhuo"],
            "Error: No run of region 'cn-hangzhuo'. Did you mean 'cn-hangzhou'?",
        ),
        (
            ["diff", "--region", "cn-hangzhuo"],
            "Error: No run of region 'cn-hangzhuo'. Did you mean 'cn-hangzhou'?",
        ),
        (["db", "forget-region", "cn-hangzho", "--yes"], "Error: cn-hangzho is not in "),
        (
            ["resolve", "pytorch", "--vpc", "--public"],
            "Error: --vpc and --public disagree; give one of them.",
        ),
        (
            ["resolve", "pytorch", "--json", "--format", "csv"],
            "Error: --json and --format csv disagree; give one of them.",
        ),
    ],
    ids=["runs", "diff", "forget", "vpc-public", "json-csv"],
)
def test_more_typos_and_contradictions_are_caught(db: str, args: list[str], message: str) -> None:
    result = invoke("--db", db, *args)
    assert result.exit_code in (1, 2) and result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith(message), result.stderr
    if args[:2] == ["db", "forget-region"]:
        assert "Did you mean 'cn-hangzhou'?" in result.stderr


def test_regions_given_with_commas_are_explained(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["--db", str(tmp_path / "x.db"), "sync"],
        env={"PAI_CATALOG_REGIONS": "cn-hangzhou,cn-shanghai"},
    )
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1].endswith("(several are separated by spaces).")


def test_a_relative_state_home_is_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from catalog.config import state_dir

    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert state_dir() == tmp_path / ".local" / "state" / "pai-catalog"


def test_a_sync_of_a_misspelt_region_stores_nothing(sqlite_path: Path) -> None:
    """sync --region cn-hangzhuo against an endpoint serving cn-hangzhou stored its listing
    as a new region, exit 0."""
    from tests.test_sync import fake
    from tests.test_sync_cli import ENV

    with fake.FakePaiApi({"cn-hangzhou": fake.synthetic_images(5, "cn-hangzhou")}) as api:
        args = ["--db", str(sqlite_path), "sync", "--region", "cn-hangzhuo", "--endpoint", api.url]
        result = CliRunner().invoke(main, args, env=ENV)
    assert result.exit_code == 1
    assert result.stderr.endswith(
        "The listing's registry hosts name cn-hangzhou (5), not cn-hangzhuo; nothing was "
        "stored: is the region cn-hangzhou?\n"
    )
    from tests.dbkit import CatalogDb

    assert CatalogDb.file(sqlite_path).rows("SELECT count(*) FROM image") == [(0,)]


OLD_NAMES = {"uri", "name", "framework", "accelerator", "scope", "gmt_create_time"}


def test_one_vocabulary_in_every_output_and_view(db: str, write_listing: Any) -> None:
    """list/show/resolve said image_uri and framework_name while export, diff, history and the
    views said uri and framework; the times of one image came in three forms."""
    from tests.test_query import hangzhou

    changed = hangzhou()
    changed[0]["ImageUri"] += "-b"  # a second run of cn-hangzhou that changes one URI
    run = invoke("--db", db, "import", str(write_listing(changed)), "--region", "cn-hangzhou")
    assert run.exit_code == 0, run.stderr
    image_id = changed[0]["ImageId"]
    shown = json.loads(invoke("--db", db, "show", image_id, "--format", "json").stdout)
    [exported] = [
        row
        for row in json.loads(invoke("--db", db, "export", "--format", "json").stdout)
        if row["image_id"] == image_id
    ]
    shared = {"image_name", "image_uri", "framework_name", "framework_version",
              "accelerator_type", "python_version", "region", "created"}  # fmt: skip
    assert {name: exported[name] for name in shared} == {name: shown[name] for name in shared}
    header = invoke("--db", db, "export", "--format", "csv").stdout.splitlines()[0].split(",")
    [change] = json.loads(invoke("--db", db, "diff", "--format", "json").stdout)
    events = json.loads(invoke("--db", db, "history", image_id, "--format", "json").stdout)
    assert change["image_uri"] == shown["image_uri"] and change["changed_fields"] == ["image_uri"]
    assert events[-1]["changed_fields"] == ["image_uri"]
    views = {
        view: set(
            json.loads(
                invoke("--db", db, "sql", f"SELECT * FROM {view}", "--format", "json").stdout
            )[0]
        )
        for view in ("v_image", "v_image_event", "v_latest")
    }
    for names in (
        set(shown),
        set(exported),
        set(header),
        set(change),
        set(events[0]),
        *views.values(),
    ):
        assert not names & OLD_NAMES, names & OLD_NAMES
    assert {"image_uri", "framework_name", "accelerator_type", "image_scope"} <= views["v_latest"]
    # One time form: ISO 8601 UTC with a Z, stored (SQLite text) and printed.
    stored = json.loads(invoke("--db", db, "sql",
        "SELECT started_at, finished_at, valid_from, gmt_create_time FROM image_version "
        "JOIN sync_run ON sync_run.id = valid_from_run_id", "--format", "json").stdout)  # fmt: skip
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", value)
        for row in stored for value in row.values() if value is not None
    ), stored  # fmt: skip
    printed = [
        shown["created"],
        exported["state_since"],
        change.get("run_started_at"),
        events[0]["run_started_at"],
    ]
    printed += [
        run["started_at"]
        for run in json.loads(invoke("--db", db, "runs", "--format", "json").stdout)
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t) for t in printed if t), printed


def test_an_empty_version_is_an_error_not_latest(db: str) -> None:
    result = invoke("--db", db, "resolve", "pytorch", "", "--region", "cn-hangzhou")
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (
        2,
        "Error: The version is empty; ask for latest, 2.1.0, 2.1 or a range like >=2.0,<2.2.",
    )


# What a second look found ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resolve", "pytorch", "--accelerator", ""], "Error: --accelerator is empty; "),
        (["versions", "pytorch", "--region", ""], "Error: --region is empty; "),
        (["list", "--python", " "], "Error: --python is empty; "),
        (
            ["resolve", "pytorch", "--as-of", "2020-01-01"],
            "Error: The catalog's history starts at 2026-",
        ),
        (["list", "pytorch", "--as-of", "2020-01-01"], "Error: The catalog's history starts at "),
    ],
    ids=["empty-accelerator", "empty-region", "blank-python", "resolve-before", "list-before"],
)
def test_an_empty_value_or_a_time_before_the_history_is_said(
    db: str, args: list[str], message: str
) -> None:
    """--accelerator '' answered for CPU, --region '' as if none was given; --as-of before
    the first run said 'Unknown framework ... Known frameworks: none', or listed nothing."""
    result = invoke("--db", db, *args)
    assert result.exit_code in (1, 2) and result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith(message), result.stderr


def test_an_endpoint_that_is_no_text_is_a_value_error(db: str) -> None:
    import catalog

    for call in (catalog.retrieve, catalog.list_images):
        with pytest.raises(ValueError, match=r"^endpoint must be text, not 1\.$"):
            call("pytorch", endpoint=1, db=db)


def test_csv_writes_booleans_as_json_does(db: str) -> None:
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(invoke("--db", db, "export", "--format", "csv").stdout)))
    assert rows and {row["official"] for row in rows} <= {"true", "false"}


def test_the_shipped_note_under_w_error_fails_every_call_alike() -> None:
    """Under -W error the first call raised the warning and the second answered in silence."""
    code = (
        "import warnings, catalog\n"
        "warnings.simplefilter('error')\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        catalog.retrieve('xgboost', region='cn-hangzhou')\n"
        "    except catalog.ShippedCatalogWarning:\n"
        "        print('warned')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "warned\nwarned\n"), done.stderr


# --- a third look: a new user's and an attacker's findings after the package rework ------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resolve", "\udcff\udcfe"], "Error: framework_name is not UTF-8 text: '\\udcff\\udcfe'."),
        (["resolve", "pytorch", "--os", "\udcff"], "Error: os is not UTF-8 text: '\\udcff'."),
        (["show", "\udcff"], "Error: uri_or_id is not UTF-8 text: '\\udcff'."),
        (["history", "\udcff"], "Error: uri_or_id is not UTF-8 text: '\\udcff'."),
        (["list", "--region", "\udcff"], "Error: region is not UTF-8 text: '\\udcff'."),
        (["sql", "select '\udcff'"], "Error: sql is not UTF-8 text: \"select '\\udcff'\"."),
    ],
    ids=["resolve", "os", "show", "history", "list", "sql"],
)
def test_an_argument_that_is_not_utf8_is_one_line(db: str, args: list[str], message: str) -> None:
    """Bytes a terminal could not decode (sys.argv holds them as lone surrogates) ended in a
    UnicodeEncodeError traceback from the database driver."""
    done = subprocess.run(
        [*CLI, "--db", db, *[a.encode("utf-8", "surrogateescape") for a in args]],  # type: ignore[misc]
        capture_output=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.decode().splitlines()[-1] == message


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (None, "Give an image URI or ImageId, such as one pai-catalog list shows."),
        (b"x", "uri_or_id must be text, not b'x'."),
        ("  ", "Give an image URI or ImageId, such as one pai-catalog list shows."),
    ],
)
def test_show_refuses_a_uri_that_is_no_text(db: str, uri: Any, message: str) -> None:
    """show(None) was an AttributeError, show(b"x") a TypeError, show("") a not-found."""
    import catalog
    from catalog.errors import UsageError

    with pytest.raises(UsageError) as caught:
        catalog.show(uri, db=db)
    assert str(caught.value) == message


def test_another_apps_database_is_named_so_by_readers_and_writers(tmp_path: Path) -> None:
    """Readers said "if it is empty, create one in it with db upgrade" of a file full of another
    application's tables, where writers said it was not a catalog."""
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (a)").connection.close()
    said = {invoke("--db", str(other), *args).stderr.splitlines()[-1] for args in (
        ["resolve", "pytorch"], ["db", "upgrade"], ["db", "current"]
    )}  # fmt: skip
    assert said == {
        f"Error: {other} is not a pai-catalog database (it has tables and no alembic_version); "
        "point --db at another file."
    }


def test_a_truncated_catalog_is_corrupt_to_readers_and_writers(db: str, tmp_path: Path) -> None:
    """Writers said "Cannot use the database ...: database disk image is malformed." where
    readers said the file was corrupt and what to do."""
    broken = tmp_path / "broken.db"
    broken.write_bytes(Path(db).read_bytes()[:50_000])
    said = {invoke("--db", str(broken), *args).stderr.splitlines()[-1] for args in (
        ["resolve", "pytorch"], ["db", "check"], ["db", "current"]
    )}  # fmt: skip
    assert said == {
        f"Error: {broken} is corrupt or not an SQLite database (database disk image is "
        "malformed); restore it from a copy or point --db at another file."
    }


def test_a_huge_argument_makes_no_huge_error(db: str) -> None:
    """A 1,000,000-character framework name gave an error as long."""
    import catalog

    with pytest.raises(catalog.UnsupportedError) as caught:
        catalog.retrieve("x" * 1_000_000, region="cn-hangzhou", db=db)
    assert len(str(caught.value)) < 1000 and "(1000002 characters)" in str(caught.value)


@pytest.mark.parametrize("revision", ["bogus", "0099", ""])
def test_db_upgrade_refuses_a_revision_it_does_not_know_as_a_usage_error(
    sqlite_path: Path, revision: str
) -> None:
    """--revision bogus exited 1 in Alembic's words while --revision '' was a usage error."""
    before = sqlite_path.read_bytes()
    done = invoke("--db", str(sqlite_path), "db", "upgrade", "--revision", revision)
    assert done.exit_code == 2
    assert done.stderr.splitlines()[-1] in (
        f"Error: Unknown revision {revision!r}; give head, or an id from 0001 to 0010.",
        "Error: Give a revision: head, or an id such as 0007.",
    )
    assert sqlite_path.read_bytes() == before
