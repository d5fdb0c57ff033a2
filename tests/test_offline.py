"""The read path stays offline and light: no requests, no SQLAlchemy for SQLite files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from catalog.sync.run import import_files
from tests.test_query import hangzhou

PROBE = """
import sys, json
from catalog.cli.main import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    sys.stderr.write(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in
        ('requests', 'sqlalchemy', 'alembic', 'urllib3', 'http', 'socket'))) + "\\n")
"""


def loaded_modules(*args: str) -> tuple[str, list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    )
    return result.stdout, json.loads(result.stderr.strip().splitlines()[-1])


def test_resolve_imports_no_network_or_orm(sqlite_path: Path, write_listing: Any) -> None:
    """An SQLite file is read with the standard library alone, whatever the backend tested."""
    import_files([write_listing(hangzhou())], "cn-hangzhou", db_option=str(sqlite_path))
    for args in (
        ["--db", str(sqlite_path), "resolve", "pytorch", "--accelerator", "gpu", "--json"],
        ["--db", str(sqlite_path), "list", "--format", "nl"],
        ["--db", str(sqlite_path), "versions", "tensorflow"],
    ):
        out, modules = loaded_modules(*args)
        assert out
        assert modules == [], args


def test_library_import_is_light() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import catalog, sys; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('requests', 'sqlalchemy', 'alembic', 'click')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"
