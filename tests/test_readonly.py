"""Air-gapped reads: a read-only file in a read-only folder answers, and nothing is written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from catalog.sync.run import import_files
from tests.test_query import beijing, hangzhou

READS = """
import json, sys
import catalog
db = sys.argv[1]
print(json.dumps({
    "resolve": catalog.retrieve("pytorch", "latest", "GPU", region="cn-beijing", db=db).image_id,
    "versions": catalog.list_versions("pytorch", region="cn-hangzhou", db=db)[:2],
    "count": len(catalog.list_images(image_scope=None, db=db)),
}))
"""
CLI = [sys.executable, "-m", "catalog", "--db"]


def read_only_command(folder: Path, command: list[str]) -> list[str]:
    """Run ``command`` where ``folder`` cannot be written: permissions, plus a read-only mount
    for root, whom permissions do not stop."""
    if os.geteuid() != 0:
        return command
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare(1): cannot make a read-only mount")
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        str(folder),
        *command,
    ]


@pytest.fixture
def readonly_db(tmp_path: Path, write_listing: Any) -> Any:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "catalog.db"
    import_files([write_listing(hangzhou())], "cn-hangzhou", db_option=str(path))
    import_files([write_listing(beijing())], "cn-beijing", db_option=str(path))
    path.chmod(stat.S_IRUSR | stat.S_IRGRP)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    yield path
    folder.chmod(stat.S_IRWXU)
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_reads_work_and_change_nothing(readonly_db: Path) -> None:
    folder = readonly_db.parent
    before = hashlib.sha256(readonly_db.read_bytes()).hexdigest()
    listing = sorted(os.listdir(folder))
    result = subprocess.run(
        read_only_command(folder, [sys.executable, "-c", READS, str(readonly_db)]),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "resolve": "pt-2120",
        "versions": ["2.11.0rc1", "2.10.0"],
        "count": 16,
    }
    for args in (
        ["resolve", "deepspeed", "--region", "cn-beijing", "--accelerator", "gpu"],
        ["versions", "tensorflow"],
        ["list", "--format", "csv"],
        ["show", "xgb"],
    ):
        cli = subprocess.run(
            read_only_command(folder, [*CLI, str(readonly_db), *args]),
            capture_output=True,
            text=True,
            check=False,
        )
        assert cli.returncode == 0, (args, cli.stderr)
        assert cli.stdout
    assert hashlib.sha256(readonly_db.read_bytes()).hexdigest() == before
    assert sorted(os.listdir(folder)) == listing


def test_writes_to_a_read_only_database_fail_cleanly(readonly_db: Path, write_listing: Any) -> None:
    listing = write_listing(hangzhou()[:1])
    folder = readonly_db.parent
    result = subprocess.run(
        read_only_command(
            folder, [*CLI, str(readonly_db), "import", str(listing), "--region", "cn-hangzhou"]
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.stderr
