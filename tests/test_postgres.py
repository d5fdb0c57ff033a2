"""PostgreSQL as the central catalog: parallel region syncs, the advisory lock, readers during
a sync, publishing SQLite files, and byte-ordered text; on a real server, over real HTTP."""

from __future__ import annotations

import itertools
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import catalog
from catalog.account import Credentials
from catalog.config import SCHEMA_REVISION, parse_target
from catalog.errors import DatabaseError, LockedError
from catalog.read import history
from catalog.read.export import export_rows
from catalog.read.sql import run_sql
from catalog.store import db, schema
from catalog.store.publish import publish
from catalog.sync.client import ClientSettings
from catalog.sync.run import SyncOptions, import_files, sync
from tests.conftest import PG_ENV, ROOT, api_image
from tests.test_sql_guard import READER, pg_role
from tests.test_sync import fake

CREDS = Credentials("test-ak", "test-secret", source="the test")
REGIONS = {"cn-hangzhou": 120, "cn-shanghai": 90, "cn-beijing": 60}
DEADLINE = 60.0  # seconds; a deadlock would hold a thread far longer


@pytest.fixture(autouse=True)
def _no_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")


@pytest.fixture
def servers() -> Iterator[dict[str, Any]]:
    """One fake API per region on 127.0.0.1; each page takes 20 ms, so syncs overlap."""
    apis = {r: fake.FakePaiApi({r: fake.synthetic_images(n, r)}) for r, n in REGIONS.items()}
    for api in apis.values():
        api.faults.latency = 0.02
        api.start()
    try:
        yield apis
    finally:
        for api in apis.values():
            api.stop()


def options(apis: dict[str, Any], regions: tuple[str, ...], **kwargs: Any) -> SyncOptions:
    client = ClientSettings(connect_timeout=1.0, read_timeout=5.0, retries=2, backoff=0.01)
    endpoints = {r: apis[r].url for r in apis}
    return SyncOptions(regions, endpoints, page_size=20, client=client, **kwargs)


def in_threads(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at once, each in its own thread; their results, or the error raised."""
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def worker(index: int) -> None:
        start.wait()
        try:
            results[index] = calls[index]()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert not any(thread.is_alive() for thread in threads), "a sync never finished: deadlock?"
    return results


def rows(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def run_spans(url: str, region: str) -> list[tuple[Any, ...]]:
    """(started, finished, status) of the region's runs, in order."""
    sql = "SELECT started_at, finished_at, status FROM sync_run WHERE region = :r ORDER BY id"
    return rows(url, sql, r=region)


def test_three_regions_sync_in_parallel_on_a_new_database(
    pg_url: str, servers: dict[str, Any]
) -> None:
    # Each worker finds the database empty and migrates it: the migration lock lets one do it.
    calls = [
        lambda r=region: sync(options(servers, (r,)), db_option=pg_url, credentials=CREDS)
        for region in REGIONS
    ]
    results = in_threads(*calls)
    for region, outcome in zip(REGIONS, results, strict=True):
        assert isinstance(outcome, list), outcome
        [result] = outcome
        assert (result.region, result.ok, result.error) == (region, True, None)
        assert (result.seen, result.added, result.removed) == (REGIONS[region],) * 2 + (0,)
    counted = rows(pg_url, "SELECT region, count(*) FROM v_image GROUP BY region ORDER BY region")
    assert counted == sorted(REGIONS.items())
    assert rows(pg_url, "SELECT status, count(*) FROM sync_run GROUP BY status") == [("ok", 3)]
    spans = [run_spans(pg_url, region)[0][:2] for region in REGIONS]
    # They ran side by side: some run started before another had finished.
    assert any(a[0] < b[1] and b[0] < a[1] for a in spans for b in spans if a is not b)
    assert schema.check_catalog(pg_url).revision == SCHEMA_REVISION


ADVISORY = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def test_killed_worker_leaves_no_lock_and_worker_processes_run_side_by_side(
    pg_url: str, servers: dict[str, Any]
) -> None:
    env = {
        **os.environ,
        "PAI_CATALOG_DB": pg_url,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "test-ak",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "test-secret",
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
        "ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true",
    }

    def worker(region: str) -> subprocess.Popen[str]:
        command = [
            sys.executable, "-m", "catalog", "sync", "--region", region, "--json",
            "--endpoint", f"{region}={servers[region].url}", "--page-size", "20",
        ]  # fmt: skip
        return subprocess.Popen(command, env=env, stdout=PIPE, stderr=PIPE, text=True)

    schema.upgrade_catalog(pg_url)
    servers["cn-hangzhou"].faults.latency = 3.0
    victim = worker("cn-hangzhou")
    deadline = time.monotonic() + DEADLINE
    while rows(pg_url, ADVISORY) != [(2,)] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rows(pg_url, ADVISORY) == [(2,)], "the worker never took its locks"
    victim.kill()  # SIGKILL, holding its locks: the server drops them with the session
    victim.communicate()
    servers["cn-hangzhou"].faults.latency = 0.02
    workers = {region: worker(region) for region in REGIONS}
    for region, process in workers.items():
        out, err = process.communicate(timeout=DEADLINE)
        assert process.returncode == 0, err
        [summary] = json.loads(out)
        assert (summary["region"], summary["ok"]) == (region, True)
        assert (summary["seen"], summary["added"]) == (REGIONS[region],) * 2
    counted = rows(pg_url, "SELECT region, count(*) FROM v_image GROUP BY region ORDER BY region")
    assert counted == sorted(REGIONS.items())


def _holding(pg_url: str, apis: dict[str, Any], region: str) -> tuple[threading.Thread, list[Any]]:
    """A sync of ``region`` running in a thread, once it holds its locks (the catalog's,
    shared, and the region's); and the list its results will be put in."""
    found: list[Any] = []

    def run() -> None:
        found.extend(sync(options(apis, (region,)), db_option=pg_url, credentials=CREDS))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + DEADLINE
    while rows(pg_url, ADVISORY) != [(2,)] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rows(pg_url, ADVISORY) == [(2,)], "the first sync never took its locks"
    return thread, found


def test_one_region_never_syncs_twice_at_once(
    pg_url: str, servers: dict[str, Any], tmp_path: Path
) -> None:
    region = "cn-hangzhou"
    schema.upgrade_catalog(pg_url)
    servers[region].faults.latency = 3.0  # its first page keeps the first sync going
    first, first_results = _holding(pg_url, servers, region)
    display = parse_target(pg_url).display
    with pytest.raises(LockedError) as caught:
        sync(options(servers, (region,)), db_option=pg_url, credentials=CREDS)
    holder = r"A pai-catalog sync \(server pid \d+\) is writing "  # the lock session's name
    assert re.fullmatch(
        holder + re.escape(f"{region} in {display}; let it finish, or pass --wait to start when "
                           "it does."),
        str(caught.value),
    ), caught.value  # fmt: skip
    # Syncing every known region needs the whole catalog: refused too.
    whole = f"^{holder}{re.escape(display)}; "
    with pytest.raises(LockedError, match=whole):
        sync(options(servers, ()), db_option=pg_url, credentials=CREDS)
    # An import of the region is refused, or waits for the sync with wait=True.
    listing = _listing(tmp_path, "listing.json", servers[region].images(region))
    with pytest.raises(LockedError, match=f"^{holder}{region} "):
        import_files([listing], region, db_option=pg_url)
    importing = threading.Thread(
        target=lambda: import_files([listing], region, db_option=pg_url, wait=True), daemon=True
    )
    importing.start()
    # Another region is not held up.
    [other] = sync(options(servers, ("cn-beijing",)), db_option=pg_url, credentials=CREDS)
    assert other.ok and first.is_alive() and importing.is_alive()
    servers[region].faults.latency = 0.02
    first.join(DEADLINE)
    importing.join(DEADLINE)
    assert [r.ok for r in first_results] == [True] and not importing.is_alive()
    # With --wait, two syncs of one region both run, one after the other.
    results = in_threads(
        *[
            lambda: sync(
                options(servers, (region,), wait=True), db_option=pg_url, credentials=CREDS
            )
            for _ in range(2)
        ]
    )
    assert [[r.ok for r in outcome] for outcome in results] == [[True], [True]]
    spans = run_spans(pg_url, region)
    assert [status for *_, status in spans] == ["ok"] * 4  # sync, import, sync, sync
    for earlier, later in itertools.pairwise(spans):
        assert earlier[1] <= later[0], f"runs interleaved: {spans}"
    latest = "SELECT count(*) FROM image_version WHERE is_latest AND region = :r"
    assert rows(pg_url, latest, r=region) == [(REGIONS[region],)]


def _listing(tmp_path: Path, name: str, images: list[dict[str, Any]]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"Images": images, "TotalCount": len(images)}), "utf-8")
    return path


def test_readers_and_a_sync_never_wait_for_each_other(pg_url: str, tmp_path: Path) -> None:
    uri = "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai/pytorch-training:{}-gpu-py310"
    images = [api_image(f"image-{v}", uri.format(v)) for v in ("2.1.0", "2.2.0")]
    import_files([_listing(tmp_path, "a.json", images)], "cn-hangzhou", db_option=pg_url)
    engine = db.make_engine(parse_target(pg_url))
    try:
        # A sync's transaction, left open: a new run, every image version rewritten.
        with engine.connect() as writing:
            writing.execute(text("LOCK TABLE image_version IN ROW EXCLUSIVE MODE"))
            writing.execute(text("UPDATE image_version SET framework_version = '9.9.9'"))
            writing.execute(
                text(
                    "INSERT INTO sync_run (region, source, started_at, status) "
                    "VALUES ('cn-hangzhou', 'sync', now(), 'running')"
                )
            )
            answers = in_threads(
                lambda: catalog.retrieve("pytorch", "latest", "GPU", db=pg_url).framework_version,
                lambda: [i.framework_version for i in catalog.list_images(db=pg_url)],
                lambda: [r.status for r in history.runs(db=pg_url)],
                lambda: sum(1 for _ in export_rows(db=pg_url)),
            )
            writing.rollback()
        # Readers saw the last committed catalog, not the open transaction.
        assert answers == ["2.2.0", ["2.2.0", "2.1.0"], ["ok"], 2]
        # A reader's open transaction does not hold up a sync that changes what it read.
        with engine.connect() as reading:
            reading.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            reading.execute(text("SELECT * FROM v_image")).all()
            later = [*images[1:], api_image("image-2.3.0", uri.format("2.3.0"))]
            [stats] = in_threads(
                lambda: import_files(
                    [_listing(tmp_path, "b.json", later)], "cn-hangzhou", db_option=pg_url
                )
            )
            assert (stats.added, stats.removed) == (1, 1)
            assert len(reading.execute(text("SELECT * FROM v_image")).all()) == 2
    finally:
        engine.dispose()
    assert catalog.retrieve("pytorch", "latest", "GPU", db=pg_url).framework_version == "2.3.0"


def _same_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *targets: str) -> None:
    """Import one history into each target at the same times: two regions; an image removed,
    changed and added; the removed ones restored."""
    snapshot = ROOT / "data" / "snapshot"
    first = json.loads((snapshot / "cn-hangzhou.json").read_text("utf-8"))["Images"]
    later = [dict(image) for image in first[3:]]  # three removed
    later[0]["Description"] = "changed"
    later.append(
        api_image("image-new", "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai/xgboost:1.6.0")
    )
    history = [
        ("cn-hangzhou", _listing(tmp_path, "h1.json", first)),
        ("cn-shanghai", snapshot / "cn-shanghai.json"),
        ("cn-hangzhou", _listing(tmp_path, "h2.json", later)),
        ("cn-hangzhou", _listing(tmp_path, "h3.json", first)),  # the three come back
    ]
    for step, (region, path) in enumerate(history):
        monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", str(1_767_225_600 + 3600 * step))
        for target in targets:
            import_files([path], region, db_option=target)


def test_every_read_answers_the_same_on_both(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_db = str(tmp_path / "catalog.db")
    _same_history(tmp_path, monkeypatch, sqlite_db, pg_url)
    reads: list[Callable[[str], Any]] = [
        lambda d: catalog.list_images(include_removed=True, labels=True, db=d),
        lambda d: catalog.list_images("pytorch", accelerator_type="gpu", db=d),
        lambda d: catalog.list_versions("tensorflow", db=d),
        lambda d: catalog.retrieve("pytorch", "2", "GPU", region="cn-shanghai", db=d),
        lambda d: list(export_rows(db=d)),
        lambda d: list(export_rows(as_of="2026-01-01T01:30:00Z", db=d)),
        lambda d: history.runs(db=d),
        lambda d: history.diff(db=d),
        lambda d: history.diff(1, 4, db=d),
        lambda d: [catalog.show(i.image_id, db=d) for i in catalog.list_images(db=d)[:5]],
        lambda d: history.image_history("image-new", db=d),
    ]
    for read in reads:
        assert read(pg_url) == read(sqlite_db)
    # sql refuses a superuser: on PostgreSQL it reads as a role that can only read.
    with pg_role(pg_url, *READER) as reader:
        for query in ("SELECT * FROM sync_run", "SELECT * FROM v_image ORDER BY image_uri, region"):
            on_pg = list(run_sql(query, db=reader).rows)
            assert on_pg == list(run_sql(query, db=sqlite_db).rows)


def test_publish_from_postgresql_equals_publish_from_sqlite(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_db = str(tmp_path / "catalog.db")
    _same_history(tmp_path, monkeypatch, sqlite_db, pg_url)
    from_sqlite = publish(tmp_path / "from-sqlite.db", db=sqlite_db)
    from_pg = publish(tmp_path / "from-pg.db", db=pg_url)
    assert (from_pg.images, from_pg.revision) == (from_sqlite.images, from_sqlite.revision)
    assert from_pg.revision == SCHEMA_REVISION
    dumps = []
    for published in (from_sqlite, from_pg):
        conn = sqlite3.connect(published.path)
        dumps.append(list(conn.iterdump()))
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        conn.close()
        digest = published.path.with_name(published.path.name + ".sha256").read_text("utf-8")
        assert digest == f"{published.sha256}  {published.path.name}\n"
    assert len(dumps[0]) > 500 and any("'changed'" in line for line in dumps[0])
    assert dumps[1] == dumps[0]
    # The published file answers like its source.
    assert catalog.list_images(db=str(from_pg.path), include_removed=True) == catalog.list_images(
        db=pg_url, include_removed=True
    )


def _locale_database(admin: str) -> Iterator[str]:
    """A new database on the server whose text order is a language's, not bytes."""
    name = "pai_test_" + uuid.uuid4().hex[:16]
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    options = (
        "LC_COLLATE 'en_US.utf8' LC_CTYPE 'en_US.utf8'",
        "LOCALE_PROVIDER icu ICU_LOCALE 'en-US'",
    )
    try:
        with engine.connect() as conn:
            for option in options:
                try:
                    conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE template0 {option}'))
                    break
                except Exception:  # this server lacks that locale; try the next
                    continue
            else:
                pytest.skip("the server has neither the en_US.utf8 locale nor ICU's en-US")
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@pytest.fixture
def locale_url() -> Iterator[str]:
    import os

    admin = os.environ.get(PG_ENV)
    if not admin:
        pytest.skip(f"no PostgreSQL server given: set {PG_ENV} to run this test")
    yield from _locale_database(admin)


PREFIX = (
    "SELECT framework_version FROM image_version "
    "WHERE version_key >= :low AND version_key < :high ORDER BY version_key DESC"
)


def test_version_keys_compare_as_bytes_whatever_the_locale(locale_url: str, tmp_path: Path) -> None:
    uri = "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai/{}:{}-gpu-py310"
    versions = ("2.1.0", "2.1.2", "2.1.3rc1", "2.10.0", "2.9.1")
    images = [api_image(f"image-{v}", uri.format("pytorch-training", v)) for v in versions]
    # Two images tying on version and time: only their URIs order them.
    images += [
        api_image(f"image-{repo}", uri.format(repo, "1.6.0"), {"system.framework.XGBoost": "1.6.0"})
        for repo in ("Xgb", "xga")
    ]
    listing = _listing(tmp_path, "a.json", images)
    sqlite_db = str(tmp_path / "catalog.db")
    for target in (sqlite_db, locale_url):
        import_files([listing], "cn-hangzhou", db_option=target)
    bounds = {"low": "11211", "high": "11211~"}  # the "2.1" prefix, as filters.version_clause
    engine = db.make_engine(parse_target(locale_url))
    try:
        # As the database's locale orders text (revision 0006), '~' sorts before digits.
        db.downgrade(engine, parse_target(locale_url), "0006")
        assert rows(locale_url, PREFIX, **bounds) == []
        db.upgrade(engine, parse_target(locale_url))
    finally:
        engine.dispose()
    assert rows(locale_url, PREFIX, **bounds) == [("2.1.3rc1",), ("2.1.2",), ("2.1.0",)]
    assert catalog.retrieve("pytorch", "2.1", "GPU", db=locale_url).framework_version == "2.1.2"
    assert catalog.list_versions("pytorch", db=locale_url) == catalog.list_versions(
        "pytorch", db=sqlite_db
    )
    for framework in ("pytorch", "xgboost"):
        assert [i.image_uri for i in catalog.list_images(framework, db=locale_url)] == [
            i.image_uri for i in catalog.list_images(framework, db=sqlite_db)
        ]


def test_db_check_names_a_collation_that_differs(pg_url: str) -> None:
    schema.upgrade_catalog(pg_url)
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("DROP VIEW v_image; DROP VIEW v_latest"))  # they read the column
        conn.execute(
            text('ALTER TABLE image_version ALTER COLUMN version_key TYPE text COLLATE "default"')
        )
    engine.dispose()
    with pytest.raises(DatabaseError) as caught:
        schema.check_catalog(pg_url)
    assert "('modify_collation', 'image_version', 'version_key', 'default', 'C')" in str(
        caught.value
    )


def test_an_unreachable_server_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://me:secret@127.0.0.1:1/catalog"  # nothing listens on port 1
    uri = "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai/xgboost:1.6.0"
    listing = _listing(tmp_path, "a.json", [api_image("image-1", uri)])
    nowhere = SyncOptions(("cn-hangzhou",), {"": "http://127.0.0.1:9"})
    calls: list[Callable[[], Any]] = [
        lambda: import_files([listing], "cn-hangzhou", db_option=url),
        lambda: sync(nowhere, db_option=url, credentials=CREDS),
        lambda: schema.upgrade_catalog(url),
        lambda: schema.check_catalog(url),
        lambda: catalog.list_images(db=url),
        lambda: publish(tmp_path / "out.db", db=url),
        lambda: list(run_sql("SELECT 1", db=url).rows),
    ]
    for call in calls:
        with pytest.raises(DatabaseError) as caught:
            call()
        message = str(caught.value)
        assert "me:***@127.0.0.1:1/catalog" in message and "secret" not in message
        assert "\n" not in message and "Connection refused" in message
    assert sorted(os.listdir(tmp_path)) == ["a.json"]
