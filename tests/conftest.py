"""Shared fixtures: catalog databases at migration head, on SQLite or PostgreSQL; listings."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from catalog.read import connection
from tests.dbkit import CatalogDb, Databases, migrated_file
from tests.registrykit import running_gate, running_registry

ROOT = Path(__file__).resolve().parents[1]
# Reference data kept with the tests, with its provenance in fixtures/README.md.
FIXTURES = ROOT / "tests" / "fixtures"
# An admin URL of a PostgreSQL server: the catalog tests then run on it instead of SQLite.
PG_ENV = "PAI_CATALOG_TEST_PG"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="Run the long reliability suite: every fault pair, more kill points, more fuzzing.",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--long"):
        from hypothesis import settings

        # Tests that set their own max_examples keep it; the rest fuzz fifty times longer.
        settings.register_profile("long", max_examples=5000, deadline=None)
        settings.load_profile("long")


@pytest.fixture
def long_run(request: pytest.FixtureRequest) -> bool:
    """Whether --long was given: long fuzz and kill runs, for local use rather than CI."""
    return bool(request.config.getoption("--long"))


def api_image(
    image_id: str,
    uri: str,
    labels: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """One ListImages element, as the API would send it."""
    record: dict[str, Any] = {"ImageId": image_id, "ImageUri": uri, "Name": uri.rsplit("/", 1)[-1]}
    record.update(fields)
    record["Labels"] = [{"Key": k, "Value": v} for k, v in (labels or {}).items()]
    return record


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test reads the developer's own catalog or environment."""
    monkeypatch.delenv("PAI_CATALOG_DB", raising=False)
    monkeypatch.delenv("PAI_CATALOG_BUILD_TIME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    # Nor a region or an age the developer's shell or aliyun CLI would bind.
    for name in ("PAI_CATALOG_REGION", "ALIBABA_CLOUD_REGION_ID", "ALIBABA_CLOUD_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PAI_CATALOG_MAX_AGE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    yield
    connection.forget()


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    """Where catalog databases are made: PostgreSQL when PAI_CATALOG_TEST_PG names a server,
    else SQLite files."""
    made = Databases(os.environ.get(PG_ENV) or None)
    yield made
    made.close()


@pytest.fixture
def catalog_db(databases: Databases, tmp_path: Path) -> Iterator[CatalogDb]:
    """An empty catalog at migration head, on the backend under test."""
    made = databases.migrated(tmp_path)
    yield made
    connection.forget()
    databases.drop(made)


@pytest.fixture
def empty_db(databases: Databases, tmp_path: Path) -> Iterator[CatalogDb]:
    """A database with no tables, on the backend under test (on SQLite, no file yet)."""
    made = databases.empty(tmp_path)
    yield made
    connection.forget()
    databases.drop(made)


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    """An empty catalog at migration head in an SQLite file, for tests of the file itself
    (locks, WAL, raw bytes, published copies): they run on SQLite whatever the backend."""
    path = tmp_path / "catalog.db"
    migrated_file(path)
    return path


@pytest.fixture
def write_listing(tmp_path: Path) -> Callable[..., Path]:
    """Write a ListImages body to a file and return its path."""
    counter = iter(range(10_000))

    def write(
        images: list[dict[str, Any]], total: int | None = -1, name: str | None = None
    ) -> Path:
        body: dict[str, Any] = {"RequestId": "test", "Images": images}
        if total is not None:
            body["TotalCount"] = len(images) if total == -1 else total
        path = tmp_path / (name or f"listing-{next(counter)}.json")
        path.write_text(json.dumps(body), encoding="utf-8")
        return path

    return write


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the server named by PAI_CATALOG_TEST_PG.

    The variable holds a URL to a database where CREATE DATABASE is allowed, for example
    postgresql+psycopg://postgres@127.0.0.1:5432/postgres; without it the test is skipped.
    """
    admin = os.environ.get(PG_ENV)
    if not admin:
        pytest.skip(
            f"no PostgreSQL server given: set {PG_ENV}="
            "postgresql+psycopg://USER@127.0.0.1:PORT/postgres to run this test"
        )
    made = Databases(admin)
    try:
        yield made.empty(tmp_path).target
    finally:
        connection.forget()
        made.close()


@contextmanager
def _hang_guard(seconds: float) -> Iterator[None]:
    def hung(_signum: int, _frame: Any) -> None:
        pytest.fail(f"still running after {seconds:g} s: it hangs")

    # SIGALRM reaches the main thread even inside a regular expression or a blocked write:
    # both check for signals, so the test fails instead of hanging the suite.
    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def hang_guard() -> Callable[[float], AbstractContextManager[None]]:
    """``with hang_guard(60):`` fails the test if the block has not ended in 60 s. A guard
    against a hang, set far above the block's usual time: never a measure of its speed."""
    if not hasattr(signal, "setitimer"):
        pytest.skip("needs SIGALRM")
    return _hang_guard


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a real registry on 127.0.0.1 (Debian's docker-registry), shared by the
    tests, which push images under names of their own."""
    with running_registry(tmp_path_factory.mktemp("registry")) as host:
        yield host


@pytest.fixture
def gate(registry: str) -> Iterator[str]:
    """host:port of a loopback gate in front of ``registry`` that issues bearer challenges."""
    with running_gate(registry) as host:
        yield host
