"""Shared fixtures: databases migrated to head in tmp_path, and API-shaped listings."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from catalog import db, readdb
from catalog.config import parse_target

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "pai-api"


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
    yield
    readdb.forget()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """An empty catalog database, built by running the migrations to head."""
    path = tmp_path / "catalog.db"
    target = parse_target(str(path))
    engine = db.make_engine(target)
    db.upgrade(engine, target)
    engine.dispose()
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


PG_ENV = "PAI_CATALOG_TEST_PG"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the server named by PAI_CATALOG_TEST_PG.

    The variable holds a URL to a database where CREATE DATABASE is allowed, for example
    postgresql+psycopg://postgres@127.0.0.1:5432/postgres; without it the test is skipped.
    """
    import os
    import uuid

    admin = os.environ.get(PG_ENV)
    if not admin:
        pytest.skip(
            f"no PostgreSQL server given: set {PG_ENV}="
            "postgresql+psycopg://USER@127.0.0.1:PORT/postgres to run this test"
        )
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = "pai_test_" + uuid.uuid4().hex[:16]
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()
