"""Migrations: one head, reversible, and in step with the models and the reader."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect

from catalog.config import SCHEMA_REVISION, known_revision, parse_target
from catalog.errors import DatabaseError
from catalog.store import db
from catalog.store.models import VIEWS
from catalog.sync.run import import_files
from tests.conftest import api_image
from tests.dbkit import CatalogDb

URI = "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai/pytorch:2.1-gpu-py310-cu121-ubuntu22.04"


def tables(catalog: CatalogDb) -> set[str]:
    """The database's tables and views."""
    with catalog.engine.connect() as conn:
        found = inspect(conn)
        names = {*found.get_table_names(), *found.get_view_names()}
    catalog.close()
    return names


def test_the_code_reads_and_writes_the_newest_migration() -> None:
    """config.SCHEMA_REVISION is Alembic's single head, and every revision before it is one
    the code knows how to upgrade from (ids that count up from 0001)."""
    script = ScriptDirectory(db.migrations_dir())
    assert script.get_heads() == [SCHEMA_REVISION]
    revisions = sorted(s.revision for s in script.walk_revisions())
    assert revisions == [f"{n:04d}" for n in range(1, len(revisions) + 1)]
    assert all(known_revision(r) for r in revisions) and not known_revision("0000")
    assert not known_revision(f"{int(SCHEMA_REVISION) + 1:04d}")


def test_base_head_base_head(empty_db: CatalogDb) -> None:
    target = parse_target(empty_db.target)
    engine = db.make_engine(target)
    try:
        db.upgrade(engine, target)
        full = tables(empty_db)
        assert {
            "sync_run",
            "image",
            "image_version",
            "image_label",
            "image_scope",
            "image_event",
        } <= full
        assert {"v_image", "v_image_event", "v_latest"} <= full
        db.downgrade(engine, target, "base")
        assert tables(empty_db) == {"alembic_version"}
        assert db.current_revision(engine) is None
        db.upgrade(engine, target)
        assert tables(empty_db) == full
        assert db.current_revision(engine) == SCHEMA_REVISION
    finally:
        engine.dispose()


def test_each_step_down_and_up(empty_db: CatalogDb) -> None:
    from alembic.script import ScriptDirectory

    target = parse_target(empty_db.target)
    engine = db.make_engine(target)
    revisions = [r.revision for r in ScriptDirectory(db.migrations_dir()).walk_revisions()][::-1]
    try:
        for revision in revisions:
            db.upgrade(engine, target, revision)
            assert db.current_revision(engine) == revision
        for revision in reversed(revisions):
            db.downgrade(engine, target, "-1")
            assert db.current_revision(engine) != revision
    finally:
        engine.dispose()


def test_models_match_migrations(catalog_db: CatalogDb) -> None:
    target = parse_target(catalog_db.target)
    engine = db.make_engine(target)
    try:
        assert db.schema_differences(engine) == []
        with engine.connect() as conn:  # every view the migrations make, and no other
            assert sorted(inspect(conn).get_view_names()) == sorted(VIEWS)
    finally:
        engine.dispose()


def test_migration_scripts_do_not_import_the_models() -> None:
    for script in (Path(db.migrations_dir()) / "versions").glob("0*.py"):
        assert "catalog.models" not in script.read_text(), script.name


def test_a_migration_stopped_half_way_leaves_the_database_as_it_was(empty_db: CatalogDb) -> None:
    target = parse_target(empty_db.target)
    engine = db.make_engine(target)

    def stop_at_the_views(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("CREATE VIEW"):  # 0002, after the tables
            raise RuntimeError("stopped half-way")

    try:
        db.upgrade(engine, target, "0001")
        before = tables(empty_db)
        event.listen(engine, "before_cursor_execute", stop_at_the_views)
        with pytest.raises(RuntimeError, match="stopped half-way"):
            db.upgrade(engine, target)
        event.remove(engine, "before_cursor_execute", stop_at_the_views)
        # No view and no other change: the file is at 0001 as it was.
        assert tables(empty_db) == before and db.current_revision(engine) == "0001"
        db.downgrade(engine, target, "base")
        event.listen(engine, "before_cursor_execute", stop_at_the_views)
        with pytest.raises(RuntimeError, match="stopped half-way"):
            db.upgrade(engine, target)
        event.remove(engine, "before_cursor_execute", stop_at_the_views)
        assert tables(empty_db) <= {"alembic_version"} and db.current_revision(engine) is None
        db.upgrade(engine, target)
        assert db.current_revision(engine) == SCHEMA_REVISION
    finally:
        engine.dispose()


def test_an_upgrade_with_nothing_to_do_does_not_wait_for_a_writer(
    sqlite_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short busy timeout: an upgrade that asked for the write lock would fail, naming it.
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 50)
    target = parse_target(str(sqlite_path))
    engine = db.make_engine(target)
    writer = sqlite3.connect(sqlite_path)
    try:
        writer.execute("BEGIN IMMEDIATE")  # a sync storing its listing
        db.upgrade(engine, target)
        assert db.current_revision(engine) == SCHEMA_REVISION
        # What the upgrade would have met, had it asked for the lock: the writer's.
        with pytest.raises(DatabaseError, match=r"beyond the 0\.05 s wait"):
            db.downgrade(engine, target, "base")
    finally:
        writer.rollback()
        writer.close()
        engine.dispose()


def test_0008_and_0009_convert_times_and_event_field_names_both_ways(
    catalog_db: CatalogDb, write_listing: Any
) -> None:
    """A catalog written before 0008 held '2026-12-05 13:14:04.617208' beside the API's
    '...T...Z', and events named table columns ('uri'); the views said uri and framework."""
    image = api_image("img-1", URI, {"system.official": "true", "system.supported.dlc": "true"})
    import_files([write_listing([image])], "cn-hangzhou", db_option=catalog_db.target)
    image["ImageUri"] = URI + "-b"
    import_files([write_listing([image])], "cn-hangzhou", db_option=catalog_db.target)
    target = parse_target(catalog_db.target)
    engine = db.make_engine(target)

    def now() -> list[tuple[Any, ...]]:
        return [
            *catalog_db.rows("SELECT started_at, finished_at FROM sync_run ORDER BY id"),
            *catalog_db.rows("SELECT valid_from, valid_to FROM image_version ORDER BY id"),
            *catalog_db.rows("SELECT changed_fields FROM image_event WHERE kind = 'changed'"),
        ]

    try:
        head = now()
        db.downgrade(engine, target, "0007")
        old = now()
        db.upgrade(engine, target)
    finally:
        engine.dispose()
    assert now() == head
    assert head[-1] == ('["image_uri"]',) and old[-1] == ('["uri"]',)
    if catalog_db.backend == "sqlite":  # a server holds timestamps, which have no text form
        iso = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
        stored = [value for row in head[:-1] for value in row if value is not None]
        assert len(stored) == 7 and all(iso.fullmatch(value) for value in stored), head
        assert old[0][0] == head[0][0].replace("T", " ").replace("Z", "")
    names = catalog_db.dicts("SELECT * FROM v_latest")[0].keys()
    assert {"framework_name", "image_scope", "accelerator_type", "image_uri", "created"} <= names
    for view in ("v_image", "v_image_event", "v_latest"):
        assert (
            not {"uri", "framework", "accelerator", "name"}
            & catalog_db.dicts(f"SELECT * FROM {view}")[0].keys()
        )


def test_writing_to_a_catalog_at_head_does_not_load_alembic(catalog_db: CatalogDb) -> None:
    """Alembic (0.1 s to import) is for changing a schema; an import or a sync into a catalog
    already at head reads the revision itself."""
    code = (
        "import sys\n"
        "from catalog.config import parse_target\n"
        "from catalog.store import db\n"
        "with db.writable(parse_target(sys.argv[1])):\n"
        "    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, catalog_db.target], capture_output=True, text=True, check=True
    )
    assert done.stdout == "[]\n"
