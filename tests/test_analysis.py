"""Analysis: read-only SQL that cannot write, export and as-of, publish, info and staleness."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import catalog
from catalog.config import SCHEMA_REVISION, parse_target
from catalog.errors import DatabaseError, QueryError, UsageError
from catalog.read import connection
from catalog.read.connection import staleness_warning
from catalog.read.export import CatalogInfo, RegionInfo, export_rows, info
from catalog.read.sql import run_sql
from catalog.store import db, runs
from catalog.store.publish import Published, publish
from catalog.sync.run import import_files
from tests.conftest import api_image
from tests.dbkit import CatalogDb, Databases, dump, sqlite_dump
from tests.test_query import HZ, beijing, fw, hangzhou
from tests.test_readonly import read_only_command
from tests.test_sql_guard import READER, pg_role

DAY = 86400
T1 = 1767225600  # 2026-01-01T00:00:00Z
T2 = T1 + 10 * DAY  # 2026-01-11T00:00:00Z


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(db: CatalogDb) -> tuple[list[str], str | None]:
    """Every row, and on SQLite the file's bytes too."""
    return dump(db), sha256(db.path) if db.path else None


def import_at(
    monkeypatch: pytest.MonkeyPatch, when: int, db: CatalogDb, region: str, listing: Path
) -> None:
    monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", str(when))
    import_files([listing], region, db_option=db.target)


@pytest.fixture
def catalog_file(tmp_path: Path, write_listing: Callable[..., Path]) -> Path:
    """Two regions in a folder of their own, in rollback-journal mode: reading it then leaves
    no -wal/-shm files behind, so any new file in the folder is a write that got through."""
    folder = tmp_path / "catalog"
    folder.mkdir()
    path = folder / "catalog.db"
    import_files([write_listing(hangzhou())], "cn-hangzhou", db_option=str(path))
    import_files([write_listing(beijing())], "cn-beijing", db_option=str(path))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    return path


# run_sql ------------------------------------------------------------------------------------


def test_select_with_parameters(sql_db: str) -> None:
    result = run_sql(
        "SELECT image_id, framework_version FROM v_image "
        "WHERE region = :region AND framework_name = :fw ORDER BY image_id -- the ; is a comment",
        {"region": "cn-beijing", "fw": "PyTorch"},
        db=sql_db,
    )
    assert result.columns == ("image_id", "framework_version")
    assert iter(result.rows) is result.rows  # streamed, not a list
    assert list(result.rows) == [("pt-2120", "2.12.0")]


def test_reads_that_look_like_writes_are_allowed(catalog_file: Path) -> None:
    def rows(sql: str) -> list[tuple[Any, ...]]:
        return list(run_sql(sql, db=str(catalog_file)).rows)

    assert rows("SELECT 'DROP TABLE image; --' AS text") == [("DROP TABLE image; --",)]
    assert rows("SELECT count(*) FROM pragma_table_info('sync_run')") == [(16,)]
    assert rows("SELECT value FROM json_each('[1, 2]')") == [(1,), (2,)]
    assert rows("PRAGMA journal_mode") == [("delete",)]
    assert rows("PRAGMA table_info(image_scope)")[0][1] == "version_id"
    assert rows(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) "
        "SELECT sum(i) FROM n"
    ) == [(6,)]


REFUSED = [
    ("INSERT INTO sync_run (region) VALUES ('x')", "INSERT"),
    ("UPDATE image SET region = 'x'", "UPDATE"),
    ("DELETE FROM image_event", "DELETE"),
    ("WITH gone AS (SELECT 1) DELETE FROM image_label", "DELETE"),
    ("DROP TABLE image", "DROP TABLE"),
    ("drop view v_latest", "DROP VIEW"),
    ("CREATE TABLE notes (text TEXT)", "CREATE TABLE"),
    ("CREATE TEMP VIEW mine AS SELECT 1", "CREATE TEMP VIEW"),
    ("ALTER TABLE image ADD COLUMN note TEXT", "ALTER TABLE"),
    ("ATTACH DATABASE '{folder}/other.db' AS other", "ATTACH"),
    ("VACUUM INTO '{folder}/copy.db'", "VACUUM"),
    ("PRAGMA writable_schema = 1", "PRAGMA writable_schema"),
    ("PRAGMA journal_mode = WAL", "setting PRAGMA journal_mode"),
    ("PRAGMA query_only = OFF", "PRAGMA query_only"),
    ("PRAGMA user_version = 7", "setting PRAGMA user_version"),
    ("BEGIN IMMEDIATE", "BEGIN"),
    ("REINDEX", "REINDEX"),
]


@pytest.mark.parametrize(("sql", "what"), REFUSED)
def test_writes_are_refused_and_change_nothing(catalog_file: Path, sql: str, what: str) -> None:
    folder = catalog_file.parent
    before, listing = sha256(catalog_file), sorted(os.listdir(folder))
    with pytest.raises(UsageError) as caught:
        run_sql(sql.format(folder=folder), db=str(catalog_file))
    assert str(caught.value) == f"The sql command only reads: {what} is not allowed."
    assert sha256(catalog_file) == before
    assert sorted(os.listdir(folder)) == listing


ONE = "Give one statement; this has 2."


@pytest.mark.parametrize(
    ("sql", "params", "error", "message"),
    [
        ("SELECT 1; DROP TABLE image", {}, UsageError, ONE),
        ("SELECT 1;\nSELECT 2;", {}, UsageError, ONE),
        ("SELECT 1; -- done", {}, None, None),
        (
            " ; -- nothing",
            {},
            UsageError,
            "Give an SQL statement, such as SELECT count(*) FROM v_image.",
        ),
        # The database's own words, after "SQL error: ": the statement failed, exit 1.
        (
            "SELEC 1",
            {},
            QueryError,
            {
                "sqlite": 'SQL error: near "SELEC": syntax error.',
                "postgresql": 'SQL error: syntax error at or near "SELEC".',
            },
        ),
        (
            "SELECT * FROM nowhere",
            {},
            QueryError,
            {
                "sqlite": "SQL error: no such table: nowhere.",
                "postgresql": 'SQL error: relation "nowhere" does not exist.',
            },
        ),
        (
            "SELECT :a, :b",
            {"a": "1"},
            UsageError,
            "The query uses :b without a value; give each with -p NAME VALUE.",
        ),
        # A colon or a percent sign inside a string is text, on either backend.
        ("SELECT ':b', :a", {"a": "1"}, None, None),
        (
            "SELECT count(*), '100%' FROM v_image WHERE image_uri NOT LIKE '%:latest'",
            {},
            None,
            None,
        ),
    ],
)
def test_statement_errors(
    source: CatalogDb,
    sql_db: str,
    sql: str,
    params: dict[str, str],
    error: type[Exception] | None,
    message: str | dict[str, str] | None,
) -> None:
    before = fingerprint(source)
    if error is None:
        assert list(run_sql(sql, params, db=sql_db).rows)
    else:
        with pytest.raises(error) as caught:
            run_sql(sql, params, db=sql_db)
        if isinstance(message, dict):
            message = message[source.backend]
        assert str(caught.value) == message
    assert fingerprint(source) == before


def test_sql_on_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match=r"^No catalog database at "):
        run_sql("SELECT 1", db=str(tmp_path / "none.db"))
    assert os.listdir(tmp_path) == []


# export_rows --------------------------------------------------------------------------------


@pytest.fixture
def history(catalog_db: CatalogDb, write_listing: Callable[..., Path], monkeypatch: Any) -> str:
    """T1: pt and tf; T2: pt's labels change, tf is removed, ds is added."""
    pt = f"{HZ}/pytorch:2.1.0-gpu-py310-cu121-ubuntu22.04"
    tf = f"{HZ}/tensorflow-training:2.3-cpu-py36-ubuntu18.04"
    ds = f"{HZ}/deepspeed:0.14.0-gpu-py310-cu121-ubuntu22.04"
    first = [
        api_image("pt", pt, fw("PyTorch", "2.1.0", "GPU", "training")),
        api_image("tf", tf, {"system.official": "true"}),
    ]
    second = [
        api_image("pt", pt, fw("PyTorch", "2.1.0", "GPU", "training", "develop")),
        api_image("ds", ds, fw("DeepSpeed", "0.14.0", "GPU", "training")),
    ]
    import_at(monkeypatch, T1, catalog_db, "cn-hangzhou", write_listing(first))
    import_at(monkeypatch, T2, catalog_db, "cn-hangzhou", write_listing(second))
    return catalog_db.target


def summary(rows: Iterator[dict[str, Any]]) -> list[tuple[str, list[str], int, str]]:
    return [(r["image_id"], r["scopes"], len(r["labels"]), r["state_since"]) for r in rows]


def test_export_now_and_as_of(history: str) -> None:
    now = [
        ("ds", ["training"], 4, "2026-01-11T00:00:00Z"),
        ("pt", ["develop", "training"], 5, "2026-01-11T00:00:00Z"),
    ]
    then = [
        ("pt", ["training"], 4, "2026-01-01T00:00:00Z"),
        ("tf", ["training"], 1, "2026-01-01T00:00:00Z"),
    ]
    assert summary(export_rows(db=history)) == now
    assert summary(export_rows(as_of="2026-01-05", db=history)) == then
    # valid_from <= T < valid_to: at T2 itself the new states hold
    assert summary(export_rows(as_of="2026-01-11T00:00:00Z", db=history)) == now
    assert summary(export_rows(as_of="2025-12-31", db=history)) == []


def test_export_row_shape(history: str) -> None:
    rows = list(export_rows(as_of="2026-01-05", db=history))
    assert rows[1] == {
        "image_name": "tensorflow-training:2.3-cpu-py36-ubuntu18.04",
        "image_uri": f"{HZ}/tensorflow-training:2.3-cpu-py36-ubuntu18.04",
        "framework_name": "TensorFlow",
        "framework_version": "2.3",
        "accelerator_type": "CPU",
        "python_version": "3.6",
        "image_id": "tf",
        "region": "cn-hangzhou",
        "cuda_version": None,
        "os_version": "ubuntu18.04",
        "scopes": ["training"],
        "official": True,
        "parse_status": "ok",
        "created": None,
        "modified": None,
        "scope_inferred": True,
        "host": "dsw-registry.cn-hangzhou.cr.aliyuncs.com",
        "namespace": "pai",
        "repository": "tensorflow-training",
        "tag": "2.3-cpu-py36-ubuntu18.04",
        "digest": None,
        "components": [],
        "build_suffix": None,
        "parse_reason": None,
        "description": None,
        "accessibility": None,
        "size": None,
        "manifest_digest": None,
        "platforms": [],
        "state_since": "2026-01-01T00:00:00Z",
        "labels": {"system.official": "true"},
    }
    assert rows[0]["labels"] == {
        "system.chipType": "GPU",
        "system.framework.PyTorch": "2.1.0",
        "system.official": "true",
        "system.supported.dlc": "true",
    }


def test_export_checks_as_of_at_once(history: str) -> None:
    with pytest.raises(UsageError, match=r"^'yesterday' is not an ISO 8601 date or time; "):
        export_rows(as_of="yesterday", db=history)


# publish ------------------------------------------------------------------------------------


def fill(target: str, write_listing: Callable[..., Path]) -> None:
    import_files([write_listing(hangzhou())], "cn-hangzhou", db_option=target)
    import_files([write_listing(beijing())], "cn-beijing", db_option=target)


@pytest.fixture
def source(
    databases: Databases, tmp_path: Path, write_listing: Callable[..., Path]
) -> Iterator[CatalogDb]:
    """A catalog as a sync leaves it (in WAL mode, on SQLite), on the backend under test."""
    made = databases.empty(tmp_path / "src")
    fill(made.target, write_listing)
    yield made
    connection.forget()
    databases.drop(made)


@pytest.fixture
def source_file(tmp_path: Path, write_listing: Callable[..., Path]) -> Path:
    """The same catalog in an SQLite file."""
    path = tmp_path / "src" / "catalog.db"
    fill(str(path), write_listing)
    return path


@pytest.fixture
def sql_db(source: CatalogDb) -> Iterator[str]:
    """What ``sql`` connects to for ``source``: the file, or on PostgreSQL a role that can only
    read (``sql`` refuses a superuser)."""
    if source.path is not None:
        yield source.target
        return
    with pg_role(source.target, *READER) as url:
        yield url


def test_publish_writes_a_checked_copy_and_its_checksum(source: CatalogDb, tmp_path: Path) -> None:
    out = tmp_path / "out" / "pai.db"
    out.parent.mkdir()
    published = publish(out, db=source.target)
    digest = sha256(out)
    assert published == Published(
        out,
        digest,
        out.stat().st_size,
        len(hangzhou()) + len(beijing()),
        SCHEMA_REVISION,
    )
    assert (tmp_path / "out" / "pai.db.sha256").read_text() == f"{digest}  pai.db\n"
    assert sorted(os.listdir(out.parent)) == ["pai.db", "pai.db.sha256"]
    conn = sqlite3.connect(out)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    assert dump(CatalogDb.file(out)) == dump(source)
    if source.path is not None:  # the schema too; VACUUM may reorder it
        assert sorted(sqlite_dump(out)) == sorted(sqlite_dump(source.path))
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_publishing_a_published_copy_gives_the_same_bytes(
    source: CatalogDb, tmp_path: Path
) -> None:
    """Each publish of a publish added one to the schema cookie, so that a copy passed along
    had a new checksum at every hop."""
    first = publish(tmp_path / "a.db", db=source.target)
    second = publish(tmp_path / "b.db", db=str(first.path))
    third = publish(tmp_path / "c.db", db=str(second.path))
    assert second.sha256 == third.sha256 == sha256(tmp_path / "c.db")
    if source.path is not None:  # from a server, the first copy is built the same way
        assert first.sha256 == second.sha256


@pytest.mark.parametrize("beside", ["text", "folder"])
def test_publish_replaces_only_a_checksum_it_wrote(
    source: CatalogDb, tmp_path: Path, beside: str
) -> None:
    """publish y.db replaced any y.db.sha256 without a look; a folder of that name gave an
    error naming y.db."""
    out = tmp_path / "out"
    out.mkdir()
    sidecar = out / "y.db.sha256"
    if beside == "text":
        sidecar.write_text("important\n")
    else:
        sidecar.mkdir()
    with pytest.raises(UsageError) as caught:
        publish(out / "y.db", db=source.target)
    assert str(caught.value) == (
        f"Cannot publish to {out / 'y.db'}: y.db.sha256 beside it is not a checksum "
        "publish wrote, and publish would replace it; remove it or give another file name."
    )
    assert sorted(os.listdir(out)) == ["y.db.sha256"]
    assert beside == "folder" or sidecar.read_text() == "important\n"


def test_publish_replaces_an_older_copy(
    source: CatalogDb, tmp_path: Path, write_listing: Callable[..., Path]
) -> None:
    out = tmp_path / "out" / "pai.db"
    out.parent.mkdir()
    first = publish(out, db=source.target)
    assert list(run_sql("SELECT count(*) FROM v_image", db=str(out)).rows) == [(16,)]
    assert (
        len(catalog.list_images(image_scope=None, db=str(out))) == 16
    )  # caches a reader of the first copy
    import_files([write_listing(beijing()[:1])], "cn-beijing", db_option=source.target)
    second = publish(out, db=source.target)
    assert (first.images, second.images) == (16, 15)
    assert second.sha256 == sha256(out) != first.sha256
    assert (out.parent / "pai.db.sha256").read_text() == f"{second.sha256}  pai.db\n"
    assert sorted(os.listdir(out.parent)) == ["pai.db", "pai.db.sha256"]
    assert len(catalog.list_images(image_scope=None, db=str(out))) == 15


def test_publish_refuses_its_source(source_file: Path) -> None:
    source = source_file
    before = sha256(source)
    listing = sorted(os.listdir(source.parent))
    link = source.with_name("link.db")
    link.symlink_to(source)
    for out in (source, link):
        with pytest.raises(UsageError) as caught:
            publish(out, db=str(source))
        assert str(caught.value) == (
            f"Cannot publish {source} onto itself; give another output file."
        )
    link.unlink()
    assert sha256(source) == before
    assert sorted(os.listdir(source.parent)) == listing


def test_publish_leaves_nothing_when_it_fails(source: CatalogDb, tmp_path: Path) -> None:
    missing = tmp_path / "missing" / "pai.db"
    with pytest.raises(UsageError) as caught:
        publish(missing, db=source.target)
    assert str(caught.value) == (
        f"The folder {missing.parent} does not exist; create it or choose another."
    )
    assert not missing.parent.exists()
    # The copy fails half-written (no file may grow past 8 KiB, root's included): the
    # temporary file goes, and nothing is left but what was there.
    folder = tmp_path / "busy"
    folder.mkdir()
    code = (
        "import resource, signal, sys\n"
        "from catalog.config import parse_target\n"
        "from catalog.errors import DatabaseError\n"
        "from catalog.read.connection import reader\n"
        "from catalog.store.publish import publish\n"
        "reader(parse_target(sys.argv[2]))  # the source opened, its -shm written\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))\n"
        "try:\n"
        "    publish(sys.argv[1], db=sys.argv[2])\n"
        "except DatabaseError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder / "pai.db"), source.target],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith(f"Cannot publish {source.display} to {folder / 'pai.db'}: ")
    assert os.listdir(folder) == []


def test_publish_from_a_non_catalog_or_postgresql_writes_nothing(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (a)").connection.close()
    with pytest.raises(DatabaseError, match="is not a pai-catalog database"):
        publish(tmp_path / "pai.db", db=str(other))
    with pytest.raises(DatabaseError) as caught:  # nothing listens on port 1
        publish(tmp_path / "pai.db", db="postgresql+psycopg://me:secret@127.0.0.1:1/c")
    assert str(caught.value).startswith(
        "Cannot connect to postgresql+psycopg://me:***@127.0.0.1:1/c"
    )
    assert os.listdir(tmp_path) == ["other.db"]


READS = """
import json, os, sqlite3, sys
import catalog
from catalog.read.connection import staleness_warning
from catalog.read.export import export_rows, info
from catalog.read.sql import run_sql
path = sys.argv[1]
LATEST = "SELECT image_id FROM v_latest WHERE region = :region ORDER BY image_id"
conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
print(json.dumps({
    "writable": os.access(path, os.W_OK),
    "immutable": conn.execute("SELECT count(*) FROM v_image").fetchone()[0],
    "resolve": catalog.retrieve("pytorch", "latest", "GPU", region="cn-beijing", db=path).image_id,
    "versions": catalog.list_versions("pytorch", region="cn-hangzhou", db=path)[:2],
    "list": len(catalog.list_images(image_scope=None, db=path)),
    "sql": list(run_sql(LATEST, {"region": "cn-beijing"}, db=path).rows),
    "export": sum(1 for _ in export_rows(db=path)),
    "info": info(db=path).images,
    "stale": staleness_warning(100000, db=path),
}))
"""


def test_a_published_file_answers_on_a_read_only_filesystem(
    source: CatalogDb, tmp_path: Path
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    out = folder / "pai.db"
    publish(out, db=source.target)
    before, listing = sha256(out), sorted(os.listdir(folder))
    out.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        result = subprocess.run(
            read_only_command(folder, [sys.executable, "-c", READS, str(out)]),
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {
            "writable": False,
            "immutable": 16,
            "resolve": "pt-2120",
            "versions": ["2.11.0rc1", "2.10.0"],
            "list": 16,
            "sql": [["ds-bj"], ["pt-2120"]],
            "export": 16,
            "info": 16,
            "stale": None,
        }
        shell = shutil.which("sqlite3")
        if shell is not None:
            query = "SELECT count(*) FROM image_event;"
            cli = subprocess.run(
                read_only_command(folder, [shell, "-readonly", f"file:{out}?immutable=1", query]),
                capture_output=True,
                text=True,
                check=False,
            )
            assert (cli.returncode, cli.stdout.strip()) == (0, "16"), cli.stderr
    finally:
        folder.chmod(stat.S_IRWXU)
    assert sha256(out) == before
    assert sorted(os.listdir(folder)) == listing


# info and staleness -------------------------------------------------------------------------


def test_info_counts_regions_and_ages(
    catalog_db: CatalogDb, write_listing: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import_at(monkeypatch, T1, catalog_db, "cn-hangzhou", write_listing(hangzhou()))
    import_at(monkeypatch, T1, catalog_db, "cn-beijing", write_listing(beijing()))
    import_at(monkeypatch, T2, catalog_db, "cn-hangzhou", write_listing(hangzhou()[1:]))
    target = parse_target(catalog_db.target)
    engine = db.make_engine(target)
    runs.record_failure(engine, runs.RunInfo("cn-beijing", "sync"), "the API timed out")
    engine.dispose()
    monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", str(T2 + 2 * DAY + 12 * 3600))
    found = info(db=catalog_db.target)
    path = catalog_db.path
    assert found == CatalogInfo(
        database=catalog_db.display,
        revision=SCHEMA_REVISION,
        size_bytes=path.stat().st_size if path else None,  # a server has no file to measure
        images=len(hangzhou()) - 1 + len(beijing()),
        regions=(
            RegionInfo("cn-beijing", len(beijing()), 0, 0, 0, "2026-01-01T00:00:00Z", "failed"),
            RegionInfo("cn-hangzhou", len(hangzhou()) - 1, 1, 0, 0, "2026-01-11T00:00:00Z", "ok"),
        ),
        last_sync="2026-01-11T00:00:00Z",
        age_days=2.5,
    )


def test_info_of_an_empty_catalog(catalog_db: CatalogDb) -> None:
    found = info(db=catalog_db.target)
    assert (found.images, found.regions, found.last_sync, found.age_days) == (0, (), None, None)


@pytest.mark.parametrize(
    ("now", "max_age", "expected"),
    [
        (T1 + 8 * DAY, 7, "2026-01-01, 8 days ago"),
        (T1 + 8 * DAY, 8, "2026-01-01, 8 days ago"),
        (T1 + 8 * DAY, 8.5, None),
        (T1 + DAY + 3600, 1, "2026-01-01, 1 day ago"),
        (T1 + 400 * DAY, 0, None),  # 0 never warns (it warned even on a fresh catalog)
        (T1 + 3600, 7, None),
    ],
)
def test_staleness_warning(
    catalog_db: CatalogDb,
    write_listing: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    now: int,
    max_age: float,
    expected: str | None,
) -> None:
    import_at(monkeypatch, T1, catalog_db, "cn-hangzhou", write_listing(hangzhou()))
    monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", str(now))
    warning = staleness_warning(max_age, db=catalog_db.target)
    if expected is None:
        assert warning is None
    else:
        assert warning == (
            f"Warning: the catalog was last updated {expected}; "
            "run 'pai-catalog sync' to refresh it."
        )


def test_staleness_of_a_catalog_never_synced(catalog_db: CatalogDb) -> None:
    assert staleness_warning(7, db=catalog_db.target) == (
        "Warning: the catalog has never been synced; run 'pai-catalog sync' to fill it."
    )
    with pytest.raises(UsageError) as caught:
        staleness_warning(-1, db=catalog_db.target)
    assert str(caught.value) == "The maximum age must be 0 days or more, not -1."
