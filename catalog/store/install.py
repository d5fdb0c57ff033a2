"""The receiving end of publish: check a published catalog file and put it in place of the
catalog, atomically, keeping the one it replaces as a single backup."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from catalog.config import SCHEMA_REVISION, DbTarget, known_revision, parse_target, resolve_target
from catalog.errors import DatabaseError, InputError, SafetyError, UsageError
from catalog.parse import times
from catalog.read import connection, statements
from catalog.store import db, locks
from catalog.store.publish import sha256_of

BACKUP = ".previous"  # catalog.db.previous: the catalog the last install replaced
_TEMPORARY = (".install.", ".previous.")  # in the names of the files an install writes first


@dataclass(frozen=True)
class RegionChange:
    """How one region differs between the catalog in place and the one installed."""

    region: str
    added: int
    removed: int
    last_sync_before: datetime | None
    last_sync_after: datetime | None
    # when the region's digests (what tags point at) were last checked, in place and in the file
    last_digests_before: datetime | None = None
    last_digests_after: datetime | None = None


@dataclass(frozen=True)
class Installed:
    """What ``db install`` did: the catalog it wrote, from which file, and what changed."""

    database: str
    source: str
    revision: str
    upgraded_from: str | None  # the file's revision, when it was older and upgraded
    images: int
    changes: tuple[RegionChange, ...]
    backup: str | None  # where the catalog it replaced is kept
    unchanged: bool = False  # the file was the catalog in place already: nothing was done


def install(
    source: Path | str,
    *,
    db_option: str | None = None,
    verify: bool = True,
    allow_older: bool = False,
    wait: bool = False,
) -> Installed:
    """Put the published catalog ``source`` in place of the catalog (or ``db_option``).

    The file must match its ``.sha256`` (unless ``verify`` is false), pass SQLite's integrity
    check and be a pai-catalog database whose schema matches the models; one at an older
    revision is upgraded on the copy, one at a newer revision refused. It may not be older than
    the catalog in place in any region (its last successful sync), nor lack one of its regions,
    unless ``allow_older``. A reader sees the old catalog or the new one, never a mix; the old
    one is kept beside it as ``<name>.previous``.
    """
    if not str(source).strip():
        raise UsageError("Give the published catalog FILE to install.")
    path = Path(source).expanduser().absolute()
    if not path.is_file():
        raise InputError(f"{path} is not a file; give the published catalog to install.")
    target, where = _file_target(db_option)
    expected = _expected_checksum(path) if verify else None
    db.check_writable(target)
    db.make_folder(where)
    with locks.write_lock(target, wait=wait, holder="db install"):
        _clean(where)
        if where.exists() and os.path.samefile(path, where):
            raise UsageError(f"{path} is the catalog in place; give a published copy to install.")
        with _copy_beside(path, where) as (copy, digest):
            if expected is not None and digest != expected:
                raise InputError(
                    f"{path} does not match its checksum in {path.name}.sha256: the copy is "
                    "damaged or not the file published; nothing was installed."
                )
            if where.is_file() and where.stat().st_size and sha256_of(where) == digest:
                return Installed(
                    str(where), str(path), SCHEMA_REVISION, None, _count(where), (), None, True
                )
            revision = _check(copy, path)
            if revision != SCHEMA_REVISION:
                _upgrade(copy)
            _check_models(copy, path)
            _settle(where)
            changes = _changes(where, copy, path)
            older = [c for c in changes if _is_older(c)]
            if older and not allow_older:
                raise SafetyError(
                    f"{path} is older than {where}: {_older(older)}; nothing was installed. "
                    "Pass --allow-older to install it anyway."
                )
            images = _count(copy)
            backup = _replace(where, copy)
    connection.forget(target)
    return Installed(
        database=str(where),
        source=str(path),
        revision=SCHEMA_REVISION,
        upgraded_from=None if revision == SCHEMA_REVISION else revision,
        images=images,
        changes=tuple(c for c in changes if c.added or c.removed or _moved(c)),
        backup=None if backup is None else str(backup),
    )


def rollback(*, db_option: str | None = None, wait: bool = False) -> Installed:
    """Put back the catalog the last install replaced; the one in place becomes the backup, so
    that a second rollback undoes the first."""
    target, where = _file_target(db_option)
    backup = where.with_name(where.name + BACKUP)
    if not backup.is_file():
        raise InputError(f"There is no {backup.name} beside {where}: nothing to roll back to.")
    db.check_writable(target)
    with locks.write_lock(target, wait=wait, holder="db install"):
        _clean(where)
        revision = _check(backup, backup)
        if revision != SCHEMA_REVISION:
            raise DatabaseError(
                f"{backup} is at schema revision {revision}; this pai-catalog reads "
                f"{SCHEMA_REVISION}: install it again instead of rolling back to it."
            )
        _settle(where)
        changes = _changes(where, backup, backup)
        coming = _temporary(where, "install")
        os.replace(backup, coming)  # so that _replace can keep the catalog in place as the backup
        try:
            _replace(where, coming)
        except BaseException:
            if coming.exists():
                os.replace(coming, backup)  # the backup as it was
            raise
    connection.forget(target)
    return Installed(
        database=str(where),
        source=str(backup),
        revision=revision,
        upgraded_from=None,
        images=_count(where),
        changes=tuple(c for c in changes if c.added or c.removed or _moved(c)),
        backup=str(backup) if backup.exists() else None,
    )


def _file_target(db_option: str | None) -> tuple[DbTarget, Path]:
    """The catalog to install into, and its file: a symbolic link's target, so that the link
    goes on naming the catalog."""
    target = resolve_target(db_option, write=True)
    if target.path is None:
        raise UsageError(
            "db install puts a published file in place of a file catalog; a PostgreSQL "
            "catalog is filled by sync or import instead."
        )
    return target, target.path.resolve() if target.path.is_symlink() else target.path


def _expected_checksum(path: Path) -> str:
    sidecar = path.with_name(path.name + ".sha256")
    try:
        words = sidecar.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        raise InputError(
            f"No checksum {sidecar.name} beside {path}: copy it with the catalog (publish "
            "writes it), or pass --no-verify to install without checking."
        ) from None
    return words[0].lower() if words else ""


def _temporary(where: Path, kind: str) -> Path:
    return where.with_name(f".{where.name}.{kind}.{os.getpid()}.tmp")


def _clean(where: Path) -> None:
    """Remove what a killed install left beside the catalog; the write lock is held, so no
    install is under way."""
    for leftover in where.parent.glob(f".{where.name}.*.tmp"):
        if any(kind in leftover.name for kind in _TEMPORARY):
            for suffix in ("", "-journal", "-wal", "-shm"):
                leftover.with_name(leftover.name + suffix).unlink(missing_ok=True)


@contextmanager
def _removed_unless_kept(path: Path) -> Iterator[None]:
    try:
        yield
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)


@contextmanager
def _copy_beside(path: Path, where: Path) -> Iterator[tuple[Path, str]]:
    """A private copy of ``path`` in ``where``'s folder (so that a rename puts it in place),
    and the SHA-256 of what was copied; removed unless it was put in place."""
    copy = _temporary(where, "install")
    with _removed_unless_kept(copy):
        try:
            digest = _copy_file(path, copy)
        except OSError as exc:
            raise DatabaseError(
                f"Cannot install {path} as {where}: {exc.strerror or exc}."
            ) from None
        yield copy, digest


def _copy_file(source: Path, out: Path) -> str:
    """Copy ``source`` to ``out`` (0644, on disk), hashing the bytes copied."""
    digest = hashlib.sha256()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with open(source, "rb") as reading, os.fdopen(fd, "wb") as writing:
        while chunk := reading.read(1 << 20):
            digest.update(chunk)
            writing.write(chunk)
        writing.flush()
        os.fsync(writing.fileno())
    return digest.hexdigest()


def _open(path: Path) -> sqlite3.Connection:
    """A file no one writes while the lock is held, read without a -wal or -shm beside it."""
    return sqlite3.connect(f"file:{quote(str(path))}?immutable=1", uri=True)


def _check(path: Path, shown: Path) -> str:
    """The schema revision of a sound pai-catalog file this code can read or upgrade."""
    try:
        conn = _open(path)
        try:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise DatabaseError.corrupt(str(shown), problems[0])
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            ).fetchone()
            if found is None:
                raise DatabaseError.not_a_catalog(str(shown), "no schema revision", empty=False)
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise DatabaseError.corrupt(str(shown), str(exc)) from None
    if len(rows) != 1:
        raise DatabaseError.corrupt(str(shown), f"{len(rows)} schema revisions")
    revision = str(rows[0][0])
    if not known_revision(revision):
        raise DatabaseError.newer_revision(str(shown), revision)
    return revision


def _upgrade(copy: Path) -> None:
    """Migrate the copy to this code's schema, then give it back a published file's journal
    mode (no -wal beside it)."""
    target = parse_target(str(copy))
    engine = db.make_engine(target)
    try:
        db.upgrade(engine, target)
    finally:
        engine.dispose()
    conn = sqlite3.connect(copy)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()


def _check_models(copy: Path, shown: Path) -> None:
    """Refuse a file whose tables or views are not what its revision says (dropped, altered)."""
    from sqlalchemy import exc as sa_exc

    engine = db.make_engine(parse_target(str(copy)))
    try:
        differences = db.schema_differences(engine)
    except (DatabaseError, sa_exc.SQLAlchemyError) as exc:
        raise DatabaseError.corrupt(str(shown), str(exc).rsplit(": ", 1)[-1].rstrip(".")) from None
    finally:
        engine.dispose()
    if differences:
        shown_first = "; ".join(str(d) for d in differences[:3])
        raise DatabaseError.not_a_catalog(
            str(shown), f"its schema differs from the models: {shown_first}", empty=False
        )


_Times = dict[str, datetime | None]


def _state(path: Path, shown: Path) -> tuple[_Times, _Times, dict[str, set[str]]]:
    try:
        conn = _open(path)
        try:
            rows = conn.execute(statements.LAST_SYNCS).fetchall()
            checked = conn.execute(statements.LAST_DIGESTS).fetchall()
            current: dict[str, set[str]] = {}
            for region, image_id in conn.execute(statements.CURRENT_IMAGES):
                current.setdefault(region, set()).add(image_id)
        finally:
            conn.close()
        return (
            {region: times.parse(when) for region, when in rows},
            {region: times.parse(when) for region, when in checked},
            current,
        )
    except (sqlite3.Error, ValueError) as exc:
        raise DatabaseError.corrupt(str(shown), str(exc)) from None


def _changes(old: Path, new: Path, shown: Path) -> list[RegionChange]:
    """Per region, what installing ``new`` over ``old`` adds and removes. A catalog in place
    that is not a sound pai-catalog database is not replaced: it may be another program's."""
    before_last: _Times = {}
    before_checked: _Times = {}
    before: dict[str, set[str]] = {}
    if old.exists() and old.stat().st_size > 0:
        _check(old, old)
        before_last, before_checked, before = _state(old, old)
    after_last, after_checked, after = _state(new, shown)
    return [
        RegionChange(
            region,
            added=len(after.get(region, set()) - before.get(region, set())),
            removed=len(before.get(region, set()) - after.get(region, set())),
            last_sync_before=before_last.get(region),
            last_sync_after=after_last.get(region),
            last_digests_before=before_checked.get(region),
            last_digests_after=after_checked.get(region),
        )
        for region in sorted({*before_last, *after_last, *before, *after})
    ]


def _is_older(change: RegionChange) -> bool:
    """The new file holds this region as of an earlier sync than the catalog in place, or not
    at all."""
    if change.last_sync_before is None:
        return False
    if change.last_sync_after is None or change.last_sync_after < change.last_sync_before:
        return True
    # The same listing, with digests checked earlier: it would pin tags to what they were.
    return change.last_sync_after == change.last_sync_before and _digests_older(change)


def _digests_older(change: RegionChange) -> bool:
    if change.last_digests_before is None:
        return False
    after = change.last_digests_after
    return after is None or after < change.last_digests_before


def _older(changes: list[RegionChange]) -> str:
    said = [_why_older(c) for c in changes[:5]]
    return "; ".join(said) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")


def _why_older(c: RegionChange) -> str:
    if c.last_sync_after is None:
        return f"it does not hold {c.region}"
    if c.last_sync_after != c.last_sync_before:
        return (
            f"{c.region} was last synced {times.iso(c.last_sync_after)} in it, "
            f"{times.iso(c.last_sync_before)} in place"
        )
    checked = times.iso(c.last_digests_after) if c.last_digests_after else "never"
    return (
        f"{c.region}'s digests were last checked {checked} in it, "
        f"{times.iso(c.last_digests_before)} in place"
    )


def _moved(change: RegionChange) -> bool:
    return change.last_sync_before != change.last_sync_after


def _count(path: Path) -> int:
    conn = _open(path)
    try:
        return int(conn.execute(statements.CURRENT_COUNT).fetchone()[0])
    finally:
        conn.close()


def _settle(path: Path) -> None:
    """Fold a catalog's -wal into it and empty the -wal, so that no -wal of the old file is
    left to be read with the new one; refuse one with a hot rollback journal."""
    if not path.exists():
        return
    if path.with_name(path.name + "-journal").exists():
        raise DatabaseError(
            f"{path} has a rollback journal beside it (a write that did not finish); open it "
            "once (pai-catalog info) so SQLite rolls it back, then install again."
        )
    if not path.with_name(path.name + "-wal").exists():
        return
    conn = sqlite3.connect(path, timeout=db.BUSY_TIMEOUT_MS / 1000)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error as exc:
        raise DatabaseError.corrupt(str(path), str(exc)) from None
    finally:
        conn.close()
    if busy:
        raise DatabaseError(
            f"Cannot install over {path}: a reader kept its -wal busy beyond the "
            f"{db.BUSY_TIMEOUT_MS / 1000:g} s wait; try again."
        )


def _replace(where: Path, copy: Path) -> Path | None:
    """Rename ``copy`` over ``where`` (atomic: a reader opens the old file or the new one),
    after copying ``where`` to the single backup; where the backup is. No step leaves the
    catalog with a second name, which writers refuse."""
    backup = where.with_name(where.name + BACKUP)
    kept = where.exists() and where.stat().st_size > 0
    if kept:
        spare = _temporary(where, "previous")
        with _removed_unless_kept(spare):
            _copy_file(where, spare)
            os.replace(spare, backup)
    os.replace(copy, where)
    _sync_folder(where.parent)
    return backup if kept else None


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
