"""The db commands: create or migrate a catalog, and show or check its schema revision."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exc as sa_exc

from catalog.config import SCHEMA_REVISION, DbTarget, known_revision, resolve_target
from catalog.errors import DatabaseError, UsageError, quoted
from catalog.store.db import (
    check_writable,
    create_file,
    current_revision_safe,
    make_engine,
    reached,
    schema_differences,
    translate,
    upgrade,
)
from catalog.store.locks import write_lock


def _existing(option: str | None) -> DbTarget:
    target = resolve_target(option, own=True)
    if target.path is not None and not target.path.is_file():
        raise DatabaseError(
            f"No database at {target.path}; create it with 'pai-catalog db upgrade'."
        )
    return target


@dataclass(frozen=True)
class SchemaState:
    """A catalog's schema revision beside the code's (head); after an upgrade, the one before."""

    database: str
    revision: str | None
    head: str = SCHEMA_REVISION
    before: str | None = None


def upgrade_catalog(
    option: str | None, revision: str = "head", *, wait: bool = False
) -> SchemaState:
    """``db upgrade``: create or migrate the (writable) database. It takes the write lock only
    when there is something to do."""
    if not revision.strip():
        raise UsageError("Give a revision: head, or an id such as 0007.")
    if revision != "head" and not known_revision(revision):
        raise UsageError(
            f"Unknown revision {quoted(revision)}; give head, or an id from 0001 to "
            f"{SCHEMA_REVISION}."
        )
    target = resolve_target(option, write=True)
    check_writable(target)
    before = _revision_of(target)
    if not reached(before, revision):
        with write_lock(target, wait=wait, holder="db upgrade"):
            before = _revision_of(target)  # another writer may have migrated it meanwhile
            if target.path is not None and not target.path.exists():
                create_file(target, revision)
            elif not reached(before, revision):
                engine = make_engine(target)
                try:
                    upgrade(engine, target, revision)
                finally:
                    engine.dispose()
    after = _revision_of(target)
    if not reached(after, revision):
        raise DatabaseError(
            f"{target.display} is at revision {after}, past {revision!r}: db upgrade only "
            "moves a catalog forward."
        )
    return SchemaState(target.display, after, before=before)


def _revision_of(target: DbTarget) -> str | None:
    """The database's revision; None for an empty one, or a file not created yet."""
    if target.path is not None and not target.path.exists():
        return None
    engine = make_engine(target)
    try:
        return current_revision_safe(engine, target)
    finally:
        engine.dispose()


def schema_state(option: str | None) -> SchemaState:
    """``db current``: the database's revision beside the code's head."""
    target = _existing(option)
    engine = make_engine(target)
    try:
        revision = current_revision_safe(engine, target)
    finally:
        engine.dispose()
    return SchemaState(target.display, revision)


def check_catalog(option: str | None) -> SchemaState:
    """``db check``: fail unless the database is at head and matches the models."""
    target = _existing(option)
    engine = make_engine(target)
    try:
        revision = current_revision_safe(engine, target)
        head = SCHEMA_REVISION
        if revision != head:
            raise DatabaseError(
                f"{target.display} is at revision {revision or 'none'}, not head {head}; "
                "run 'pai-catalog db upgrade'."
            )
        differences = schema_differences(engine)
    except sa_exc.SQLAlchemyError as exc:
        raise translate(exc, target) from None
    finally:
        engine.dispose()
    if differences:
        shown = "; ".join(str(d) for d in differences[:5])
        raise DatabaseError(f"{target.display} differs from the models: {shown}.")
    return SchemaState(target.display, revision)
