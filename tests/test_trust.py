"""Trust: one write lock for every writer, a failed first run never hides the shipped catalog,
SIGTERM ends a sync as Ctrl-C does, mass changes are refused, and paths stay paths."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from catalog.cli.main import main
from catalog.config import parse_target, shipped_db_path
from catalog.errors import DatabaseError, LockedError, SafetyError, UsageError
from catalog.parse import records
from catalog.store import db as database
from catalog.store import locks, runs
from catalog.store.publish import publish
from catalog.store.writer import apply_listing
from catalog.sync.run import import_files, sync, sync_options
from tests.conftest import ROOT, api_image
from tests.dbkit import CatalogDb, dump
from tests.test_readonly import read_only_command
from tests.test_sync import CREDS, REGION, fake
from tests.test_sync_cli import ENV

CLI = [sys.executable, "-m", "catalog"]
OFFICIAL_GPU = {
    "system.official": "true",
    "system.supported.dlc": "true",
    "system.chipType": "GPU",
    "system.framework.PyTorch": "2.1.0",
}


def images(count: int, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return [
        api_image(
            f"img-{i}",
            f"dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai/pytorch-training:2.1.{i}-gpu-py310",
            OFFICIAL_GPU if labels is None else labels,
        )
        for i in range(count)
    ]


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env)


def wait_for(test: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not test():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def slow_server() -> Iterator[Any]:
    """A region of 300 images served slowly enough to stop a sync half-way."""
    with fake.FakePaiApi({REGION: fake.synthetic_images(300, REGION)}) as api:
        api.faults.latency = 0.2
        yield api


def sync_command(db: str, api: Any, *args: str) -> list[str]:
    return [
        *CLI, "--db", db, "sync", "--region", REGION, "--endpoint", api.url,
        "--page-size", "10", "--workers", "1", "--backoff", "0", *args,
    ]  # fmt: skip


# One write lock for every writer -------------------------------------------------------------


def writer_args(name: str, db: str, listing: Path) -> list[str]:
    return {
        "sync": ["--db", db, "sync", "--region", REGION, "--endpoint", "http://127.0.0.1:9"],
        "import": ["--db", db, "import", str(listing), "--region", REGION],
        "db upgrade": ["--db", db, "db", "upgrade"],
        "db reparse": ["--db", db, "db", "reparse"],
    }[name]


@pytest.mark.parametrize("writer", ["sync", "import", "db upgrade", "db reparse"])
def test_every_writer_takes_the_same_lock(
    empty_db: CatalogDb, write_listing: Any, writer: str
) -> None:
    listing = write_listing(images(3))
    if writer != "db upgrade":  # the others need a catalog; an upgrade needs work to do
        assert invoke("--db", empty_db.target, "db", "upgrade").exit_code == 0
    target = parse_target(empty_db.target)
    with locks.write_lock(target, [REGION], holder="sync"):
        result = invoke(*writer_args(writer, empty_db.target, listing), env=ENV)
    assert result.exit_code == 75  # EX_TEMPFAIL: try later
    if empty_db.backend == "sqlite":
        holder = re.escape(f"A pai-catalog sync (pid {os.getpid()}) is writing {empty_db.display}")
    else:  # the session that holds the lock names itself; its pid is the server's
        where = f"{REGION} in " if writer in ("sync", "import") else ""
        holder = r"A pai-catalog sync \(server pid \d+\) is writing " + re.escape(
            where + empty_db.display
        )
    done = re.escape("; let it finish, or pass --wait to start when it does.\n")
    assert re.fullmatch(f"Error: {holder}{done}", result.stderr), result.stderr


def test_an_import_waits_for_the_lock_with_wait(catalog_db: CatalogDb, write_listing: Any) -> None:
    listing = write_listing(images(3))
    target = parse_target(catalog_db.target)
    results: list[Any] = []
    with locks.write_lock(target, [REGION], holder="sync"):
        args = ["--db", catalog_db.target, "import", str(listing), "--region", REGION, "--wait"]
        waiting = threading.Thread(target=lambda: results.append(invoke(*args)))
        waiting.start()
        time.sleep(0.5)
        assert not results  # still waiting
    waiting.join(timeout=30)
    assert results[0].exit_code == 0, results[0].output
    assert catalog_db.rows("SELECT count(*) FROM v_image") == [(3,)]


@pytest.mark.slow
def test_an_import_during_a_failing_first_sync_is_never_lost(
    tmp_path: Path, write_listing: Any
) -> None:
    """The reproduction from the field: a first sync against a server that always throttles,
    an import started meanwhile. The import used to commit, then the sync's cleanup deleted
    the new database with the import's rows in it."""
    env = {**os.environ, **ENV, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    user_db = tmp_path / "xdg" / "pai-catalog" / "catalog.db"
    listing = write_listing(images(38))
    with fake.FakePaiApi({REGION: fake.synthetic_images(20, REGION)}) as api:
        api.faults.throttle_first = 10**6
        api.faults.retry_after_ms = 300
        sync = subprocess.Popen(
            [*CLI, "sync", "--region", REGION, "--endpoint", api.url, "--retries", "8",
             "--backoff", "0.05"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lock = user_db.with_name("catalog.db.lock")
        wait_for(lambda: lock.exists() and "sync" in lock.read_text())
        importing = [*CLI, "import", str(listing), "--region", REGION]
        refused = subprocess.run(importing, env=env, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 75  # try later
        assert refused.stderr.startswith(f"Error: A pai-catalog sync (pid {sync.pid}) is writing")
        waited = subprocess.Popen(
            [*importing, "--wait"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        _, sync_err = sync.communicate(timeout=60)
        _, import_err = waited.communicate(timeout=60)
    assert sync.returncode == 1, sync_err
    assert waited.returncode == 0, import_err
    assert "38 added" in import_err
    stored = CatalogDb.file(user_db)
    assert stored.rows("SELECT count(*) FROM v_image") == [(38,)]
    assert stored.rows("SELECT source, status FROM sync_run ORDER BY id") == [
        ("sync", "failed"),
        ("import", "ok"),
    ]
    answered = subprocess.run(
        [*CLI, "versions", "pytorch"], env=env, capture_output=True, text=True, timeout=60
    )
    assert answered.stdout == "2.1.0\n" and answered.stderr == ""  # from the user's catalog


# A first run that fails, or is killed, never hides the shipped catalog -------------------------


def shipped_answer(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [*CLI, "versions", "xgboost"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("how", ["failed", "SIGKILL"])
def test_a_first_sync_that_fails_or_is_killed_leaves_the_shipped_catalog_answering(
    tmp_path: Path, slow_server: Any, how: str
) -> None:
    env = {**os.environ, **ENV, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    user_db = tmp_path / "xdg" / "pai-catalog" / "catalog.db"
    expected = shipped_answer(env)
    assert expected.stdout  # no catalog of the user's yet: the shipped one says what it is
    assert expected.stderr.startswith("Note: the shipped catalog (")
    command = [*CLI, "sync", "--region", REGION, "--endpoint", slow_server.url]
    if how == "failed":
        slow_server.faults.always_error = "InvalidAccessKeyId.NotFound"
        assert subprocess.run(command, env=env, capture_output=True, timeout=60).returncode == 1
    else:
        process = subprocess.Popen([*command, "--page-size", "10", "--workers", "1"], env=env)
        wait_for(lambda: user_db.exists())
        time.sleep(0.5)
        process.kill()
        process.wait()
    assert user_db.exists()  # a catalog whose history keeps the failed run, if it got that far
    answered = shipped_answer(env)
    assert answered.stdout == expected.stdout
    assert answered.stderr == (
        f"Note: your catalog {user_db} holds no successful sync or import yet, so the shipped "
        f"catalog ({shipped_db_path().absolute()}) answered; run 'pai-catalog sync' to fill "
        "yours.\n"
    )
    slow_server.faults.always_error = None
    slow_server.faults.latency = 0
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    now = subprocess.run(
        [*CLI, "versions", "xgboost"], env=env, capture_output=True, text=True, timeout=60
    )
    assert now.stderr == "" and now.stdout != expected.stdout  # the user's catalog answers


def test_a_new_catalog_appears_whole_and_leftovers_of_a_killed_creation_go(
    tmp_path: Path, write_listing: Any
) -> None:
    path = tmp_path / "new" / "catalog.db"
    path.parent.mkdir()
    stale = path.with_name(".catalog.db.new-999999")
    stale.write_bytes(b"half a schema")
    import_files([write_listing(images(2))], REGION, db_option=str(path))
    assert not list(path.parent.glob(".*"))
    assert CatalogDb.file(path).rows("SELECT count(*) FROM v_image") == [(2,)]


# SIGTERM ends a sync as Ctrl-C does ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "row", "line"),
    [
        (signal.SIGTERM, "terminated (SIGTERM)", "Terminated (SIGTERM)"),
        (signal.SIGINT, "interrupted (SIGINT)", "Interrupted (SIGINT)"),
    ],
)
def test_a_signal_rolls_the_sync_back_records_why_and_frees_the_lock(
    catalog_db: CatalogDb, slow_server: Any, signum: int, row: str, line: str
) -> None:
    env = {**os.environ, **ENV}
    slow_server.faults.latency = 0
    first = subprocess.run(sync_command(catalog_db.target, slow_server), env=env, timeout=120)
    assert first.returncode == 0
    before = dump(catalog_db, skip=("sync_run",))
    slow_server.faults.latency = 0.2
    slow_server.faults.drift_after = 0
    slow_server.faults.drift_insert = 5
    asked = len(slow_server.requests)
    process = subprocess.Popen(
        sync_command(catalog_db.target, slow_server), env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: len(slow_server.requests) > asked + 3)  # stored pages under way
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert err == f"Error: {line}; nothing was left half-written.\n"
    assert dump(catalog_db, skip=("sync_run",)) == before
    assert catalog_db.rows("SELECT status, error FROM sync_run ORDER BY id DESC LIMIT 1") == [
        ("failed", row)
    ]
    with locks.write_lock(parse_target(catalog_db.target), [REGION]):
        pass  # free at once: no --wait needed


# Mass changes are refused like mass removals ---------------------------------------------------


def test_a_listing_that_changes_what_most_images_mean_is_refused(
    catalog_db: CatalogDb, write_listing: Any
) -> None:
    import_files([write_listing(images(10))], REGION, db_option=catalog_db.target)
    before = dump(catalog_db, skip=("sync_run",))
    unlabelled = write_listing(images(10, labels={"system.origin": "PAI"}))
    with pytest.raises(SafetyError) as caught:
        import_files([unlabelled], REGION, db_option=catalog_db.target)
    message = (
        f"{REGION}: this run would change the official flag, scopes or accelerator of 10 of 10 "
        "live images (100%); nothing was written. If the change is real, run again with "
        "--allow-mass-change."
    )
    assert str(caught.value) == message
    assert dump(catalog_db, skip=("sync_run",)) == before
    assert catalog_db.rows("SELECT status, error FROM sync_run ORDER BY id DESC LIMIT 1") == [
        ("failed", message)
    ]
    cli = invoke("--db", catalog_db.target, "import", str(unlabelled), "--region", REGION)
    assert cli.exit_code == 1 and cli.stderr == f"Error: {message}\n"
    allowed = invoke(
        "--db", catalog_db.target, "import", str(unlabelled), "--region", REGION,
        "--allow-mass-change",
    )  # fmt: skip
    assert allowed.exit_code == 0, allowed.output
    assert catalog_db.rows("SELECT count(*) FROM v_image WHERE official") == [(0,)]


@pytest.mark.parametrize(("moved", "refused"), [(5, False), (6, False), (7, True)])
def test_the_mass_change_guard_counts_over_a_fifth(
    catalog_db: CatalogDb, write_listing: Any, moved: int, refused: bool
) -> None:
    import_files([write_listing(images(30))], REGION, db_option=catalog_db.target)
    listing = images(30)
    for image in listing[:moved]:  # 6 of 30 is 20%, not over it; 7 is
        for label in image["Labels"]:
            if label["Key"] == "system.official":
                label["Value"] = "false"
    if refused:
        with pytest.raises(SafetyError, match=f" of {moved} of 30 live images "):
            import_files([write_listing(listing)], REGION, db_option=catalog_db.target)
    else:
        stats = import_files([write_listing(listing)], REGION, db_option=catalog_db.target)
        assert stats.changed == moved


# Paths are paths -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a?b.db", "e%20f.db", "g#h.db"])
def test_a_file_name_is_never_read_as_a_url(
    tmp_path: Path, write_listing: Any, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    folder = tmp_path / "w"
    folder.mkdir()
    monkeypatch.chdir(folder)
    listing = write_listing(images(2))
    for db in (name, str(folder / name)):
        result = invoke("--db", db, "import", str(listing), "--region", REGION)
        assert result.exit_code == 0, result.output
        assert invoke("--db", db, "versions", "pytorch").stdout == "2.1.0\n"
    upgraded = invoke("--db", str(folder / ("new-" + name)), "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    names = sorted(p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm")))
    assert names == sorted([name, f"{name}.lock", f"new-{name}", f"new-{name}.lock"])


# A writer that cannot write says why, in one line ----------------------------------------------


def test_a_database_held_by_another_program_is_reported_not_crashed_on(
    sqlite_path: Path, write_listing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = write_listing(images(2))
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 100)
    other = sqlite3.connect(sqlite_path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")  # the sqlite3 shell, say, in a write transaction
        result = invoke("--db", str(sqlite_path), "import", str(listing), "--region", REGION)
        assert result.exit_code == 1
        assert result.stderr == (
            f"Error: {sqlite_path} is locked by a program other than pai-catalog beyond the "
            "0.1 s wait (an sqlite3 shell in a transaction, say); end that transaction and try "
            "again.\n"
        )
        # Past the opening checks, the writer itself: its error, not an AttributeError.
        engine = database.make_engine(parse_target(str(sqlite_path)))
        try:
            run = runs.RunInfo(REGION, "import")
            with pytest.raises(DatabaseError) as caught:
                apply_listing(engine, run, records.load_files([listing]))
            assert str(caught.value) == f"Could not store the {REGION} listing: database is locked."
        finally:
            engine.dispose()
    finally:
        other.close()
    stats = import_files([listing], REGION, db_option=str(sqlite_path))
    assert stats.added == 2


@pytest.mark.parametrize(
    "args",
    [
        ["import", "LISTING", "--region", REGION],
        ["sync", "--region", REGION, "--endpoint", "http://127.0.0.1:9"],
        ["db", "reparse"],
        ["db", "upgrade", "--revision", "0006"],
    ],
    ids=["import", "sync", "reparse", "upgrade"],
)
def test_a_read_only_copy_is_refused_in_one_line(
    tmp_path: Path, write_listing: Any, args: list[str]
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "catalog.db"
    listing = write_listing(images(2))
    import_files([listing], REGION, db_option=str(path))
    if args[:2] == ["db", "upgrade"]:
        CatalogDb.file(path).execute("UPDATE alembic_version SET version_num = '0006'")
        args = ["db", "upgrade"]
    before = path.read_bytes()
    os.chmod(folder, 0o555)
    os.chmod(path, 0o444)
    try:
        command = [*CLI, "--db", str(path), *[str(listing) if a == "LISTING" else a for a in args]]
        env = {**os.environ, **ENV}
        result = subprocess.run(
            read_only_command(folder, command), env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        os.chmod(folder, 0o755)
        os.chmod(path, 0o644)
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"Error: Cannot write {path}: the file is read-only; copy it somewhere writable, or "
        "point --db at a catalog you can write.\n"
    )
    assert path.read_bytes() == before


def test_a_new_catalog_in_a_read_only_folder_is_refused_in_one_line(
    tmp_path: Path, write_listing: Any
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    listing = write_listing(images(2))
    os.chmod(folder, 0o555)
    try:
        command = [*CLI, "--db", str(folder / "new.db"), "import", str(listing), "--region", REGION]
        result = subprocess.run(
            read_only_command(folder, command), capture_output=True, text=True, timeout=60
        )
    finally:
        os.chmod(folder, 0o755)
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"Error: Cannot write {folder / 'new.db'}: its folder is read-only, and a catalog keeps "
        "its journal beside it; copy it somewhere writable, or point --db at a catalog you can "
        "write.\n"
    )
    assert list(folder.iterdir()) == []


# An endpoint's password is a secret ----------------------------------------------------------


def test_an_endpoint_with_a_password_is_refused_without_showing_it(
    catalog_db: CatalogDb, slow_server: Any
) -> None:
    host = slow_server.url.split("://", 1)[1]
    for endpoint in (f"http://reader:hunter2-secret@{host}", f"cn-hangzhou=http://hunter2@{host}"):
        result = invoke(
            "--db", catalog_db.target, "sync", "--region", REGION, "--endpoint", endpoint,
            env=ENV,
        )  # fmt: skip
        assert result.exit_code == 2
        assert result.stderr.endswith(
            f"Error: The endpoint http://***@{host} holds a user name or password, which the "
            "API does not take (requests are signed with your access key); remove it.\n"
        )
    assert catalog_db.rows("SELECT count(*) FROM sync_run") == [(0,)]


def test_an_endpoint_password_given_in_python_is_masked_in_the_run_and_the_log(
    catalog_db: CatalogDb, slow_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    slow_server.faults.latency = 0
    host = slow_server.url.split("://", 1)[1]
    options = sync_options(regions=[REGION], retries=0, backoff=0)
    options = dataclasses.replace(options, endpoints={"": f"http://reader:hunter2@{host}"})
    with caplog.at_level(logging.DEBUG, logger="catalog"):
        [result] = sync(options, db_option=catalog_db.target, credentials=CREDS)
    assert not result.ok  # requests sent the user part as Basic authorization
    assert "hunter2" not in caplog.text + str(result)
    rows = catalog_db.rows("SELECT detail, error FROM sync_run")
    assert rows[0][0] == f"http://reader:***@{host}" and "hunter2" not in json.dumps(rows)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_does_not_wait_for_a_request_that_hangs(
    catalog_db: CatalogDb, slow_server: Any, signum: int
) -> None:
    """systemd gives a stopped unit TimeoutStopSec before SIGKILL: a sync stopped while a
    request hangs must not sit out the request's read timeout."""
    # The request hangs, and would time out, long after the guard below: a stopped sync
    # that waited for it would not end in time.
    slow_server.faults.hang_first = 1000
    slow_server.faults.hang_seconds = 600
    process = subprocess.Popen(
        sync_command(catalog_db.target, slow_server, "--timeout", "600"),
        env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: slow_server.faults.hang_first < 1000)  # the server holds a request
    process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the stopped sync waited for the hanging request")
    assert process.returncode == 1 and err.startswith("Error: ") and err.count("\n") == 1
    [(status, error)] = catalog_db.rows("SELECT status, error FROM sync_run")
    assert status == "failed" and error.endswith(
        "(SIGTERM)" if signum == signal.SIGTERM else "(SIGINT)"
    )


# The lock file is the catalog's, whatever names it ---------------------------------------------


def test_a_lock_file_that_is_a_symbolic_link_is_refused_and_its_target_untouched(
    sqlite_path: Path, write_listing: Any, tmp_path: Path
) -> None:
    """Root's cron job would have truncated whatever file a planted link named."""
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    lock = sqlite_path.with_name(sqlite_path.name + ".lock")
    lock.unlink(missing_ok=True)
    lock.symlink_to(victim)
    result = invoke(
        "--db", str(sqlite_path), "import", str(write_listing(images(2))), "--region", REGION
    )
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == (
        f"Error: Cannot lock {sqlite_path}: cannot open {lock} (it is a symbolic link; remove "
        "it), or point --db at a catalog in another folder.\n"
    )
    assert victim.read_text() == "keep me\n"


def test_a_lock_file_that_is_no_file_is_refused(sqlite_path: Path, write_listing: Any) -> None:
    lock = sqlite_path.with_name(sqlite_path.name + ".lock")
    lock.unlink(missing_ok=True)
    os.mkfifo(lock)  # opening a FIFO for writing would have blocked until a reader came
    result = invoke(
        "--db", str(sqlite_path), "import", str(write_listing(images(2))), "--region", REGION
    )
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: Cannot lock {sqlite_path}: {lock} is not a regular file; remove it, or point "
        "--db at a catalog in another folder.\n",
    )


def test_two_names_of_one_catalog_share_its_lock(
    sqlite_path: Path, write_listing: Any, tmp_path: Path
) -> None:
    """A symbolic link to the catalog had a lock of its own: two writers at once."""
    alias = tmp_path / "elsewhere" / "alias.db"
    alias.parent.mkdir()
    alias.symlink_to(sqlite_path)
    with locks.write_lock(parse_target(str(alias)), [REGION], holder="sync"):
        result = invoke(
            "--db", str(sqlite_path), "import", str(write_listing(images(2))), "--region", REGION
        )
    assert result.exit_code == 75
    assert result.stderr.startswith(f"Error: A pai-catalog sync (pid {os.getpid()}) is writing ")
    assert not alias.with_name("alias.db.lock").exists()


def test_a_device_is_no_catalog(write_listing: Any) -> None:
    result = invoke("--db", os.devnull, "import", str(write_listing(images(2))), "--region", REGION)
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: Cannot write {os.devnull}: it is not a regular file; point --db at a catalog "
        "file.\n",
    )


# A PostgreSQL lock lost under a run stores nothing ---------------------------------------------

END_LOCK_SESSIONS = """SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM (
    SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())) AS held"""


def test_a_sync_whose_lock_session_ends_stores_nothing(pg_url: str, slow_server: Any) -> None:
    """The advisory locks live in a session of their own; when a server ended it (an admin,
    idle_session_timeout), a second writer could start, and the first still committed."""
    env = {**os.environ, **ENV}
    slow_server.faults.latency = 0
    assert subprocess.run(sync_command(pg_url, slow_server), env=env, timeout=120).returncode == 0
    catalog = CatalogDb(pg_url)
    before = dump(catalog, skip=("sync_run",))
    slow_server.faults.latency = 0.2
    slow_server.faults.drift_after = 0
    slow_server.faults.drift_insert = 5
    asked = len(slow_server.requests)
    process = subprocess.Popen(
        sync_command(pg_url, slow_server), env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: len(slow_server.requests) > asked + 3)
        assert catalog.rows(END_LOCK_SESSIONS) == [(1,)]  # one session holds them all
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 1
    lost = (
        f"The write lock on {catalog.display} was lost while the run was under way (its database "
        "session ended), so another writer may have started; nothing was stored: run again."
    )
    assert lost in err
    assert dump(catalog, skip=("sync_run",)) == before
    assert catalog.rows("SELECT status, error FROM sync_run ORDER BY id DESC LIMIT 1") == [
        ("failed", lost)
    ]
    catalog.close()


def test_a_lock_held_on_sqlite_or_postgresql_confirms_while_held(catalog_db: CatalogDb) -> None:
    with locks.write_lock(parse_target(catalog_db.target), [REGION]) as held:
        held.confirm()  # the control for the test above: a lock still held raises nothing


# What a user gives is read as given ------------------------------------------------------------


def test_runs_info_and_publish_show_a_catalog_whose_first_sync_failed(
    tmp_path: Path, slow_server: Any
) -> None:
    """Reads about images fall back to the shipped catalog; reads about the catalog itself
    showed the shipped one's runs, not the failure the user came to look at."""
    user_db = tmp_path / "xdg" / "pai-catalog" / "catalog.db"
    slow_server.faults.always_error = "InvalidAccessKeyId.NotFound"
    failed = invoke("sync", "--region", REGION, "--endpoint", slow_server.url, env=ENV)
    assert failed.exit_code == 1 and user_db.exists()
    runs_out = invoke("runs", "--format", "json")
    assert runs_out.exit_code == 0 and runs_out.stderr == ""
    [run] = json.loads(runs_out.stdout)
    assert (run["region"], run["status"]) == (REGION, "failed")
    info = invoke("info", "--format", "json")
    assert json.loads(info.stdout)["database"] == str(user_db)
    published = invoke("publish", str(tmp_path / "copy.db"))
    assert published.exit_code == 0, published.stderr
    assert CatalogDb.file(tmp_path / "copy.db").rows("SELECT count(*) FROM sync_run") == [(1,)]


def test_an_empty_db_option_is_an_error_and_an_empty_variable_is_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = invoke("--db", "", "versions", "xgboost")
    assert result.exit_code == 2
    assert result.stderr.endswith(
        "Error: The database name is empty; give a file path or an SQLAlchemy URL.\n"
    )
    monkeypatch.setenv("PAI_CATALOG_DB", "")
    shipped = invoke("versions", "xgboost")
    assert shipped.exit_code == 0 and shipped.stdout


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://reader:p@ss@127.0.0.1:5432/pai", None),
        ("postgresql+psycopg://reader:secret@127.0.0.1:99999/pai", "port"),
        ("postgresql+psycopg://reader:secret@[::1/pai", "port"),
        ("postgresql+psycopg://reader:secret@host:abc/pai", "port"),
    ],
    ids=["raw-at", "port-range", "bracket", "port-text"],
)
def test_a_malformed_database_url_is_one_line_without_its_password(
    url: str, shown: str | None
) -> None:
    """A raw '@' sent the rest of the password to DNS as a host name; a bad port was a
    ValueError traceback."""
    result = invoke("--db", url, "versions", "pytorch")
    assert result.exit_code == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr and "secret" not in result.stderr
    assert "ss@127" not in result.stderr
    last = result.stderr.splitlines()[-1]
    if shown is None:
        assert last == (
            "Error: The password in postgresql+psycopg://reader:***@127.0.0.1:5432/pai holds a "
            "raw '@'; write it as %40, or keep it in PGPASSWORD or ~/.pgpass."
        )
    else:
        assert last.startswith("Error: Cannot read the host and port of postgresql+psycopg://")


@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        ("http://127.0.0.1:9/v1/a=b", {"": "http://127.0.0.1:9/v1/a=b"}),
        ("cn-hangzhou=http://127.0.0.1:9/x=y", {"cn-hangzhou": "http://127.0.0.1:9/x=y"}),
    ],
)
def test_an_equals_sign_in_an_endpoint_stays_in_its_url(given: str, parsed: dict[str, str]) -> None:
    from catalog.sync.client import parse_endpoints

    assert parse_endpoints([given]) == parsed


@pytest.mark.parametrize(
    "endpoint",
    ["http://127.0.0.1:9/?token=hunter2", "http://127.0.0.1:9/#hunter2", "http://127.0.0.1:99999"],
    ids=["query", "fragment", "port"],
)
def test_an_endpoint_with_a_query_fragment_or_bad_port_is_refused(
    catalog_db: CatalogDb, endpoint: str
) -> None:
    result = invoke(
        "--db", catalog_db.target, "sync", "--region", REGION, "--endpoint", endpoint, env=ENV
    )  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    if endpoint.endswith("99999"):
        assert last == (
            f"Error: '{endpoint}' is not an endpoint; give a URL with a scheme, such as "
            "http://127.0.0.1:8123, or REGION=URL."
        )
    else:
        assert "hunter2" not in result.stderr
        assert last.endswith(
            "has a query or a fragment; give the API's base URL only (scheme, host, port and path)."
        )


def test_db_upgrade_never_moves_a_catalog_backwards(sqlite_path: Path) -> None:
    before = sqlite_path.read_bytes()
    result = invoke("--db", str(sqlite_path), "db", "upgrade", "--revision", "0006")
    assert result.exit_code == 1
    head = CatalogDb.file(sqlite_path).rows("SELECT version_num FROM alembic_version")[0][0]
    assert result.stderr == (
        f"Error: {sqlite_path} is at revision {head}, past '0006': db upgrade only moves a "
        "catalog forward.\n"
    )
    assert sqlite_path.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["list", "xgboost", "--as-of", "0001-01-01T00:00:00+14:00"],
            "0001-01-01T00:00:00+14:00 falls outside the years 1 to 9999 in UTC; give a time "
            "within them.",
        ),
        (
            ["resolve", "xgboost", "--region", "cn-hangzhou", "--max-age", "nan"],
            "Invalid value for '--max-age': give a number of days, not nan.",
        ),
    ],
    ids=["as-of-before-year-1", "max-age-nan"],
)
def test_numbers_and_times_past_the_edges_are_one_line(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == f"Error: {message}"


@pytest.mark.parametrize("days", ["inf", "1e300"])
def test_a_maximum_age_past_any_date_never_warns(
    days: str, sqlite_path: Path, write_listing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """timedelta(days=inf) raised OverflowError, a traceback."""
    monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", "1767225600")  # synced on 2026-01-01
    import_files([write_listing(images(2))], REGION, db_option=str(sqlite_path))
    monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", str(1767225600 + 4000 * 86400))
    args = ["--db", str(sqlite_path), "resolve", "pytorch", "--accelerator", "gpu"]
    old = invoke(*args, "--max-age", "7")
    assert old.exit_code == 0 and old.stderr.startswith("Warning: the catalog was last updated")
    result = invoke(*args, "--max-age", days)
    assert (result.exit_code, result.stderr) == (0, "") and result.stdout


def test_a_reparse_whose_lock_session_ends_commits_nothing(pg_url: str, write_listing: Any) -> None:
    from catalog.store.reparse import reparse_rows

    import_files([write_listing(images(3))], REGION, db_option=pg_url)
    catalog = CatalogDb(pg_url)
    catalog.execute("UPDATE image_version SET python_version = '9.9'")  # work for reparse
    before = dump(catalog)
    target = parse_target(pg_url)
    engine = database.make_engine(target)
    try:
        with locks.write_lock(target, holder="db reparse") as held:
            assert catalog.rows(END_LOCK_SESSIONS) == [(1,)]
            with pytest.raises(LockedError, match="was lost while the run was under way"):
                reparse_rows(engine, held.confirm)
    finally:
        engine.dispose()
    assert dump(catalog) == before
    catalog.close()


# A third look: what a fresh reviewer still found ---------------------------------------------


def test_publish_never_replaces_what_is_no_regular_file(sqlite_path: Path, tmp_path: Path) -> None:
    """As root, publish /dev/null replaced the system's /dev/null with a catalog."""
    import_files([write_json(tmp_path, images(2))], REGION, db_option=str(sqlite_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    result = invoke("--db", str(sqlite_path), "publish", str(fifo))
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (
        2,
        f"Error: Cannot publish to {fifo}: it is not a regular file; give a file path.",
    )
    with pytest.raises(UsageError, match="it is not a regular file"):
        publish(folder, db=str(sqlite_path))  # the CLI refuses it before, too
    assert fifo.is_fifo() and folder.is_dir() and list(folder.iterdir()) == []
    assert not (tmp_path / "fifo.sha256").exists()


def test_publish_replaces_only_a_published_copy(sqlite_path: Path, tmp_path: Path) -> None:
    """publish notes.txt, or publish onto another catalog, replaced it without a word."""
    import_files([write_json(tmp_path, images(2))], REGION, db_option=str(sqlite_path))
    notes = tmp_path / "notes.txt"
    notes.write_text("important\n")
    other = tmp_path / "other.db"
    shutil.copyfile(sqlite_path, other)  # a catalog that syncs (WAL), not a published copy
    before = other.read_bytes()
    for victim in (notes, other):
        result = invoke("--db", str(sqlite_path), "publish", str(victim))
        assert (result.exit_code, result.stderr.splitlines()[-1]) == (
            2,
            f"Error: Cannot publish to {victim}: it exists and is not a published catalog, "
            "which is all publish replaces; remove it or give another file name.",
        )
    assert notes.read_text() == "important\n" and other.read_bytes() == before
    copy = tmp_path / "copy.db"
    for _ in range(2):  # a published copy is replaced by the next one
        result = invoke("--db", str(sqlite_path), "publish", str(copy))
        assert result.exit_code == 0, result.stderr


def test_publish_refuses_a_path_whose_leftover_wal_would_corrupt_the_copy(
    sqlite_path: Path, tmp_path: Path
) -> None:
    import_files([write_json(tmp_path, images(2))], REGION, db_option=str(sqlite_path))
    out = tmp_path / "live.db"
    out.write_bytes(b"")
    (tmp_path / "live.db-wal").write_bytes(b"frames of another catalog")
    result = invoke("--db", str(sqlite_path), "publish", str(out))
    assert result.exit_code == 2
    assert "live.db-wal beside it belongs to a catalog in use" in result.stderr
    assert out.read_bytes() == b""


def write_json(folder: Path, listing: list[dict[str, Any]]) -> Path:
    path = folder / f"listing-{len(list(folder.glob('listing-*')))}.json"
    path.write_text(json.dumps({"Images": listing, "TotalCount": len(listing)}), "utf-8")
    return path


def test_a_lock_file_that_is_a_hard_link_is_refused_and_its_target_untouched(
    sqlite_path: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("DATA\n")
    lock = sqlite_path.with_name(sqlite_path.name + ".lock")
    lock.unlink(missing_ok=True)
    os.link(victim, lock)
    result = invoke(
        "--db", str(sqlite_path), "import", str(write_json(tmp_path, images(2))), "--region", REGION
    )  # fmt: skip
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: Cannot lock {sqlite_path}: {lock} has another name (a hard link); remove it, "
        "or point --db at a catalog in another folder.\n",
    )
    assert victim.read_text() == "DATA\n"


def test_a_catalog_with_two_names_is_refused_to_writers(sqlite_path: Path, tmp_path: Path) -> None:
    """Each hard-link name had its own lock and -wal: a committed run was lost."""
    other = tmp_path / "other-name.db"
    os.link(sqlite_path, other)
    for db in (sqlite_path, other):
        listing = write_json(tmp_path, images(2))
        result = invoke("--db", str(db), "import", str(listing), "--region", REGION)
        assert (result.exit_code, result.stderr) == (
            1,
            f"Error: Cannot write {db}: the file has 2 names (hard links), and SQLite keeps one "
            "catalog consistent under one name only; copy it, or remove the other names.\n",
        )
    reads = invoke("--db", str(other), "info", "--format", "json")
    assert reads.exit_code == 0  # reading is fine


def test_a_password_with_a_slash_is_never_shown() -> None:
    url = "postgresql+psycopg://writer:wpa/ssXYZ9@127.0.0.1:9/nodb"
    result = invoke("--db", url, "info")
    assert result.exit_code == 1
    assert "ssXYZ9" not in result.stderr and "writer:***@127.0.0.1:9" in result.stderr


def test_a_session_holding_the_lock_by_hand_is_named(pg_url: str, write_listing: Any) -> None:
    """A reader that took the catalog's advisory lock in sql was reported as another
    pai-catalog command."""
    import psycopg
    from sqlalchemy.engine import make_url

    import_files([write_listing(images(2))], REGION, db_option=pg_url)
    plain = make_url(pg_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(plain, autocommit=True, application_name="psql") as other:
        pid = other.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        other.execute("SELECT pg_advisory_lock(%s, 0)", (locks._SYNC_LOCKS,))
        result = invoke("--db", pg_url, "db", "reparse")
    role = make_url(pg_url).username
    assert result.exit_code == 75  # try later
    assert result.stderr == (
        f"Error: Another session (role {role}, application 'psql', server pid {pid}) holds the "
        f"write lock on {CatalogDb(pg_url).display}; wait for it to end, or ask its owner to end "
        "it (pg_terminate_backend, by someone allowed to).\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["db", "upgrade", "--revision", ""],
            "Error: Give a revision: head, or an id such as 0007.",
        ),
        (["runs", "--limit", "99999999999999999999999"], "Error: Invalid value for '--limit'"),
        (["diff", "99999999999999999999999", "1"], "Error: Invalid value for '[RUN_A]'"),
        (["versions", ""], "Error: Give a framework name, such as PyTorch or TensorFlow."),
    ],
    ids=["revision", "limit", "diff", "versions"],
)
def test_more_mistakes_are_one_line(sqlite_path: Path, args: list[str], message: str) -> None:
    """Each was a traceback (alembic's AssertionError, OverflowError), or, for versions '',
    the versions of every framework mixed together."""
    result = invoke("--db", str(sqlite_path), *args)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(message), result.stderr


def test_an_import_of_a_fifo_is_refused_at_once(catalog_db: CatalogDb, tmp_path: Path) -> None:
    fifo = tmp_path / "listing.json"
    os.mkfifo(fifo)
    command = [*CLI, "--db", catalog_db.target, "import", str(fifo), "--region", REGION]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)  # it hung
    assert (done.returncode, done.stderr) == (
        1,
        f"Error: {fifo} is not a regular file; import saved responses.\n",
    )


@pytest.mark.parametrize("value", [{}, "", 0, False, None], ids=repr)
def test_images_that_are_no_list_are_refused_not_read_as_empty(
    catalog_db: CatalogDb, tmp_path: Path, value: Any
) -> None:
    """{"Images": {}} was an empty listing: every image marked removed, exit 0."""
    import_files([write_json(tmp_path, images(3))], REGION, db_option=catalog_db.target)
    before = dump(catalog_db, skip=("sync_run",))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Images": value, "TotalCount": 3}), "utf-8")
    result = invoke("--db", catalog_db.target, "import", str(bad), "--region", REGION)
    assert result.exit_code == 1
    assert "Images must be a list" in result.stderr
    assert dump(catalog_db, skip=("sync_run",)) == before


def test_a_lone_carriage_return_never_reaches_the_terminal_in_csv() -> None:
    import io

    from catalog.cli.output import Format, render

    out = io.StringIO()
    render([{"d": "line1\r\nFAKE\rOVERWRITE"}], Format.CSV, out)
    assert out.getvalue() == 'd\n"line1\r\nFAKE\\rOVERWRITE"\n'


@pytest.mark.parametrize(
    ("endpoints", "message"),
    [
        (
            ["cn-beijing=http://127.0.0.1:9"],
            "Error: --endpoint names cn-beijing but not cn-hangzhou, which would go to the live "
            "API; give it an endpoint too (REGION=URL), or sync only the regions named.",
        ),
        (
            ["http://127.0.0.1:9", "http://127.0.0.1:10"],
            "Error: Two --endpoint options for every region; give one per region.",
        ),
        (["=http://127.0.0.1:9"], "names no region before '='; write REGION=URL."),
    ],
    ids=["stray-region", "twice", "no-region"],
)
def test_an_endpoint_that_would_leave_a_region_on_the_live_api_is_refused(
    sqlite_path: Path, endpoints: list[str], message: str
) -> None:
    """A misspelt REGION= sent the region's crawl, with real credentials, to aliyuncs.com."""
    args = ["--db", str(sqlite_path), "sync", "--region", REGION]
    for endpoint in endpoints:
        args += ["--endpoint", endpoint]
    result = invoke(*args, env=ENV)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1].endswith(message)


def test_a_sync_refused_for_want_of_a_region_leaves_no_file(tmp_path: Path) -> None:
    new = tmp_path / "new.db"
    result = invoke("--db", str(new), "sync", env=ENV)
    assert result.exit_code == 2
    assert list(tmp_path.iterdir()) == []


def test_sql_help_names_every_refused_role() -> None:
    text = " ".join(invoke("sql", "--help").stdout.split())
    assert (
        "a role that can write the catalog, a superuser, a replication role and members of "
        "pg_read_server_files, pg_write_server_files, pg_execute_server_program or "
        "pg_signal_backend are refused." in text
    )


def test_no_write_changes_the_shipped_catalog(tmp_path: Path) -> None:
    """--db naming the installed data/catalog.db let db reparse turn it to WAL and rewrite it,
    leaving a lock, -wal and -shm in the package."""
    shipped = ROOT / "data" / "catalog.db"
    before = shipped.read_bytes()
    listing = write_json(tmp_path, images(1))
    for args in (["db", "reparse"], ["import", str(listing), "--region", REGION],
                 ["db", "upgrade"], ["db", "forget-region", REGION, "--yes"]):  # fmt: skip
        result = invoke("--db", str(shipped), *args)
        assert result.exit_code == 2, (args, result.output)
        assert "is the catalog shipped with pai-catalog, which no command changes" in result.stderr
    assert shipped.read_bytes() == before
    assert not any(shipped.with_name(shipped.name + s).exists() for s in ("-wal", "-shm", ".lock"))
