"""Migrations: one head, reversible, and in step with the models and the reader."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from catalog import db, readdb
from catalog.config import parse_target


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
        return {name for (name,) in rows}
    finally:
        conn.close()


def test_single_head_is_what_the_reader_expects() -> None:
    assert db.head_revision() == readdb.SCHEMA_REVISION


def test_base_head_base_head(tmp_path: Path) -> None:
    path = tmp_path / "roundtrip.db"
    target = parse_target(str(path))
    engine = db.make_engine(target)
    try:
        db.upgrade(engine, target)
        full = tables(path)
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
        assert tables(path) == {"alembic_version"}
        assert db.current_revision(engine) is None
        db.upgrade(engine, target)
        assert tables(path) == full
        assert db.current_revision(engine) == db.head_revision()
    finally:
        engine.dispose()


def test_each_step_down_and_up(tmp_path: Path) -> None:
    from alembic.script import ScriptDirectory

    path = tmp_path / "steps.db"
    target = parse_target(str(path))
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


def test_models_match_migrations(db_path: Path) -> None:
    target = parse_target(str(db_path))
    engine = db.make_engine(target)
    try:
        assert db.schema_differences(engine) == []
    finally:
        engine.dispose()


def test_migration_scripts_do_not_import_the_models() -> None:
    for script in (Path(db.migrations_dir()) / "versions").glob("0*.py"):
        assert "catalog.models" not in script.read_text(), script.name
