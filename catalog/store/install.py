"""The receiving end of publish: check a published catalog file and put it in place of the
catalog, atomically, keeping the one it replaces as a single backup."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from catalog.config import SCHEMA_REVISION, DbTarget, known_revision, parse_target, resolve_target
from catalog.errors import DatabaseError, UsageError
from catalog.parse import times
from catalog.read import connection
from catalog.store import db, locks

BACKUP = ".previous"  # catalog.db.previous: the catalog the last install replaced


@dataclass(frozen=True)
class RegionChange:
    """How one region differs between the catalog in place and the one installed."""

    region: str
    added: int
    removed: int
    last_sync_before: datetime | None
    last_sync_after: datetime | None


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
    check and be a pai-catalog database; one at an older schema revision is upgraded on the
    copy, one at a newer revision refused. It may not be older than the catalog in place in any
    region (its last successful sync), unless ``allow_older``. A reader sees the old catalog or
    the new one, never a mix; the old one is kept beside it as ``<name>.previous``.
    """
    path = Path(source).expanduser().absolute()
    if not str(source).strip() or not path.is_file():
        raise UsageError(f"{path} is not a file; give the published catalog to install.")
    target, where = _file_target(db_option)
    if verify:
        _verify_checksum(path)
    db.check_writable(target)
    db.make_folder(where)
    with (
        locks.write_lock(target, wait=wait, holder="db install"),
        _copy_beside(path, where) as copy,
    ):
        revision = _check(copy, path)
        if revision != SCHEMA_REVISION:
            engine = db.make_engine(parse_target(str(copy)))
            try:
                db.upgrade(engine, parse_target(str(copy)))
            finally:
                engine.dispose()
            _rollback_journal(copy)
        changes = _changes(where, copy)
        older = [c for c in changes if _is_older(c)]
        if older and not allow_older:
            shown = ", ".join(
                f"{c.region} (last synced {times.iso(c.last_sync_after) or 'never'} here, "
                f"{times.iso(c.last_sync_before)} in place)"
                for c in older[:5]
            )
            raise UsageError(
                f"{path} is older than {where} in {shown}; nothing was installed. "
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
        raise UsageError(f"There is no {backup.name} beside {where}: nothing to roll back to.")
    db.check_writable(target)
    with locks.write_lock(target, wait=wait, holder="db install"):
        revision = _check(backup, backup)
        if revision != SCHEMA_REVISION:
            raise DatabaseError(
                f"{backup} is at schema revision {revision}; this pai-catalog reads "
                f"{SCHEMA_REVISION}: install it again instead of rolling back to it."
            )
        changes = _changes(where, backup)
        _settle(where)
        spare = _spare_name(where)
        if where.exists():
            os.link(where, spare)
        os.replace(backup, where)
        if spare.exists():
            os.replace(spare, backup)
        _sync_folder(where.parent)
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
    target = resolve_target(db_option, write=True)
    if target.path is None:
        raise UsageError(
            "db install puts a published file in place of a file catalog; a PostgreSQL "
            "catalog is filled by sync or import instead."
        )
    return target, target.path


def _verify_checksum(path: Path) -> None:
    sidecar = path.with_name(path.name + ".sha256")
    try:
        line = sidecar.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise UsageError(
            f"No checksum {sidecar.name} beside {path}: copy it with the catalog (publish "
            "writes it), or pass --no-verify to install without checking."
        ) from None
    expected = line.split()[0].lower() if line.split() else ""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise UsageError(
            f"{path} does not match its checksum in {sidecar.name}: the copy is damaged or "
            "not the file published; nothing was installed."
        )


@contextmanager
def _copy_beside(path: Path, target: Path) -> Iterator[Path]:
    """A private copy of ``path`` in ``target``'s folder (so that a rename puts it in place),
    removed unless it was put in place."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.install.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    copy = Path(name)
    try:
        shutil.copyfile(path, copy)
        copy.chmod(0o644)
        yield copy
    except OSError as exc:
        raise DatabaseError(f"Cannot install {path} as {target}: {exc.strerror or exc}.") from None
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            copy.with_name(copy.name + suffix).unlink(missing_ok=True)


def _check(copy: Path, shown: Path) -> str:
    """The schema revision of a sound pai-catalog file this code can read or upgrade."""
    try:
        conn = sqlite3.connect(f"file:{quote(str(copy))}?mode=ro", uri=True)
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
    revision = str(rows[0][0]) if len(rows) == 1 else ""
    if not known_revision(revision):
        raise DatabaseError.newer_revision(str(shown), revision or "none")
    return revision


def _rollback_journal(path: Path) -> None:
    """A migrated copy back in the journal mode a published file has (no -wal beside it)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()


_REGION_STATE = """SELECT r.region,
    (SELECT max(s.finished_at) FROM sync_run s WHERE s.region = r.region AND s.status = 'ok')
    AS last_sync
FROM (SELECT DISTINCT region FROM sync_run) r"""
_CURRENT = "SELECT region, image_id FROM image_version WHERE valid_to IS NULL"


def _state(path: Path) -> tuple[dict[str, datetime | None], dict[str, set[str]]]:
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    try:
        last = {region: times.parse(when) for region, when in conn.execute(_REGION_STATE)}
        current: dict[str, set[str]] = {}
        for region, image_id in conn.execute(_CURRENT):
            current.setdefault(region, set()).add(image_id)
    finally:
        conn.close()
    return last, current


def _changes(old: Path, new: Path) -> list[RegionChange]:
    """Per region, what installing ``new`` over ``old`` adds and removes."""
    before_last: dict[str, datetime | None] = {}
    before: dict[str, set[str]] = {}
    if old.exists() and old.stat().st_size > 0:
        try:  # a catalog in place that cannot be read is replaced, and kept as the backup
            _check(old, old)
            before_last, before = _state(old)
        except (DatabaseError, sqlite3.Error):
            pass
    after_last, after = _state(new)
    return [
        RegionChange(
            region,
            added=len(after.get(region, set()) - before.get(region, set())),
            removed=len(before.get(region, set()) - after.get(region, set())),
            last_sync_before=before_last.get(region),
            last_sync_after=after_last.get(region),
        )
        for region in sorted({*before_last, *after_last, *before, *after})
    ]


def _is_older(change: RegionChange) -> bool:
    """The new file holds this region as of an earlier sync than the catalog in place (or not
    at all)."""
    if change.last_sync_before is None:
        return False
    return change.last_sync_after is None or change.last_sync_after < change.last_sync_before


def _moved(change: RegionChange) -> bool:
    return change.last_sync_before != change.last_sync_after


def _count(path: Path) -> int:
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    try:
        return int(
            conn.execute("SELECT count(*) FROM image_version WHERE valid_to IS NULL").fetchone()[0]
        )
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
    finally:
        conn.close()
    if busy:
        raise DatabaseError(
            f"Cannot install over {path}: a reader kept its -wal busy beyond the "
            f"{db.BUSY_TIMEOUT_MS / 1000:g} s wait; try again."
        )


def _spare_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.previous.tmp")


def _replace(target: Path, copy: Path) -> Path | None:
    """Rename ``copy`` over ``target`` (atomic: a reader opens the old file or the new one),
    after keeping ``target`` as the single backup; where the backup is."""
    _settle(target)
    backup = target.with_name(target.name + BACKUP)
    kept = target.exists() and target.stat().st_size > 0
    if kept:
        spare = _spare_name(target)
        spare.unlink(missing_ok=True)
        os.link(target, spare)  # the old catalog keeps a name while the new one takes its own
        os.replace(spare, backup)
    with open(copy, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(copy, target)
    _sync_folder(target.parent)
    return backup if kept else None


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
