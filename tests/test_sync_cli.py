"""`pai-catalog sync` as a user runs it: summary lines, JSON, exit codes, kills and locks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from catalog.cli.main import main
from tests.dbkit import CatalogDb
from tests.test_sync import REGION, SECRET, dump, fake, runs, served_ids, stored_ids

ENV = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "test-ak",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
    "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
    "ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true",
}


@pytest.fixture
def server() -> Any:
    with fake.FakePaiApi({REGION: fake.synthetic_images(120, REGION)}) as api:
        yield api


def cli(db: CatalogDb, api: Any, *args: str, env: dict[str, str] | None = None) -> Any:
    base = ["--db", db.target, "sync", "--region", REGION, "--endpoint", api.url]
    return CliRunner().invoke(main, [*base, "--backoff", "0", *args], env={**ENV, **(env or {})})


def test_summary_line(server: Any, catalog_db: CatalogDb) -> None:
    result = cli(catalog_db, server, "--page-size", "50")
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert line.startswith("cn-hangzhou: 120 seen, 120 added, 0 changed, 0 removed, 6 pages, ")
    assert line.endswith(" s")


def test_json_summary_and_quiet(server: Any, catalog_db: CatalogDb) -> None:
    result = cli(catalog_db, server, "--json")
    assert result.exit_code == 0
    [summary] = json.loads(result.stdout)
    assert (summary["region"], summary["ok"], summary["seen"], summary["added"]) == (
        REGION, True, 120, 120,
    )  # fmt: skip
    quiet = cli(catalog_db, server, "--quiet")
    assert (quiet.exit_code, quiet.output) == (0, "")


def test_failure_exits_1_without_the_secret(server: Any, catalog_db: CatalogDb) -> None:
    result = cli(catalog_db, server, env={"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "wrong-secret-xyz"})
    assert result.exit_code == 1
    assert "SignatureDoesNotMatch" in result.output
    assert "wrong-secret-xyz" not in result.output and SECRET not in result.output


def test_missing_credentials(server: Any, catalog_db: CatalogDb, tmp_path: Path) -> None:
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "",
        "HOME": str(tmp_path),
    }
    result = cli(catalog_db, server, env=env)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in result.output


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("--endpoint", "localhost:1"), "is not an endpoint"),
        (("--page-size", "0"), "Invalid value for '--page-size'"),
        (("--workers", "99"), "Invalid value for '--workers'"),
        (("--region", "Nowhere!"), "is not a region id"),
    ],
)
def test_usage_errors(server: Any, catalog_db: CatalogDb, args: tuple[str, ...], text: str) -> None:
    result = cli(catalog_db, server, *args)
    assert result.exit_code == 2
    assert text in result.output


@pytest.mark.slow
def test_sigkill_mid_sync_leaves_the_catalog_intact(server: Any, catalog_db: CatalogDb) -> None:
    assert cli(catalog_db, server).exit_code == 0
    before = dump(catalog_db)
    server.faults.drift_after = 0
    server.faults.drift_insert = 7
    server.faults.latency = 0.2
    env = {**os.environ, **ENV}
    command = [
        sys.executable, "-m", "catalog", "--db", catalog_db.target, "sync", "--region", REGION,
        "--endpoint", server.url, "--page-size", "10", "--workers", "1",
    ]  # fmt: skip
    for delay in (0.3, 1.0):
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL
        assert dump(catalog_db) == before
    server.faults.latency = 0.0
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert stored_ids(catalog_db) == served_ids(server)
    assert runs(catalog_db)[-1][:3] == ("ok", 127, 7)


@pytest.mark.slow
def test_a_second_sync_waits_or_exits(server: Any, sqlite_path: Path) -> None:
    server.faults.latency = 0.1
    env = {**os.environ, **ENV}
    command = [
        sys.executable, "-m", "catalog", "--db", str(sqlite_path), "sync", "--region", REGION,
        "--endpoint", server.url, "--page-size", "10", "--workers", "1",
    ]  # fmt: skip
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lock = sqlite_path.with_name(sqlite_path.name + ".lock")
    deadline = time.monotonic() + 30
    # The holder names itself in the lock file once it holds the lock.
    while not (lock.exists() and lock.read_text() == f"{first.pid} sync\n"):
        assert first.poll() is None and time.monotonic() < deadline, first.returncode
        time.sleep(0.05)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 75  # EX_TEMPFAIL: another sync holds the lock, try later
    assert second.stderr == (
        f"Error: A pai-catalog sync (pid {first.pid}) is writing {sqlite_path}; let it finish, "
        "or pass --wait to start when it does.\n"
    )
    waiting = subprocess.run(
        [*command, "--wait"], env=env, capture_output=True, text=True, timeout=120
    )
    assert first.wait(timeout=60) == 0
    assert waiting.returncode == 0, waiting.stderr
    statuses = CatalogDb.file(sqlite_path).rows("SELECT status FROM sync_run ORDER BY id")
    assert statuses == [("ok",), ("ok",)]


def test_cap_throttling_and_drift_together(server: Any, catalog_db: CatalogDb) -> None:
    server.faults.page_size_cap = 25
    server.faults.throttle_every = 3
    server.faults.throttle_status = 429
    server.faults.retry_after_ms = 20
    server.faults.drift_after = 2
    server.faults.drift_insert = 2
    server.faults.drift_delete = 2
    result = cli(catalog_db, server, "--page-size", "100", "--retries", "8")
    assert result.exit_code == 0, result.output
    assert stored_ids(catalog_db) == served_ids(server)
    before = dump(catalog_db)
    server.faults.always_error = "Throttling.User"
    failed = cli(catalog_db, server, "--retries", "2")
    assert failed.exit_code == 1
    assert "failed after 3 attempts: HTTP 429 Throttling.User" in failed.output
    added = [line for line in dump(catalog_db) if line not in before]
    assert len(added) == 1 and added[0].startswith("sync_run ") and "status='failed'" in added[0]
    assert stored_ids(catalog_db) == served_ids(server)
