"""Analysis: read-only SQL, export, a publishable database file, and the catalog's age."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from catalog import readdb, times
from catalog.config import parse_target, resolve_target
from catalog.errors import DatabaseError, UsageError
from catalog.filters import make_filters
from catalog.readdb import staleness_warning as staleness_warning  # the catalog's age, too
from catalog.readsql import SqlResult, execute
from catalog.readsql import run_sql as run_sql  # `pai-catalog sql`, kept where it was

# ImageInfo's fields first, by its names (records.PUBLIC_NAMES), then the catalog's own.
_EXPORT_COLUMNS = """v.id AS version_id, v.name AS image_name, v.uri AS image_uri,
    v.framework AS framework_name, v.framework_version, v.accelerator AS accelerator_type,
    v.python_version, v.image_id, v.region, v.cuda_version, v.os_version, v.scopes, v.official,
    v.parse_status, v.gmt_create_time AS created, v.gmt_modified_time AS modified,
    v.scope_inferred, v.host, v.namespace, v.repository, v.tag, v.digest, v.components,
    v.build_suffix, v.parse_reason, v.description, v.accessibility, v.size,
    v.valid_from AS state_since, l.key AS label_key, l.value AS label_value"""
_REGIONS = """SELECT r.region,
    (SELECT count(*) FROM image_version v WHERE v.region = r.region AND v.valid_to IS NULL)
    AS images,
    (SELECT count(*) FROM image i WHERE i.region = r.region AND i.removed_run_id IS NOT NULL)
    AS removed,
    (SELECT count(*) FROM image_version v WHERE v.region = r.region AND v.valid_to IS NULL
        AND v.accelerator IS NULL) AS no_accelerator,
    (SELECT count(*) FROM image_version v WHERE v.region = r.region AND v.valid_to IS NULL
        AND NOT EXISTS (SELECT 1 FROM image_scope s WHERE s.version_id = v.id)) AS no_scope,
    (SELECT max(s.finished_at) FROM sync_run s WHERE s.region = r.region AND s.status = 'ok')
    AS last_sync,
    (SELECT s.status FROM sync_run s WHERE s.region = r.region ORDER BY s.id DESC LIMIT 1)
    AS last_status
FROM (SELECT DISTINCT region FROM sync_run) r ORDER BY r.region"""


@dataclass(frozen=True)
class Published:
    """A database file written for air-gapped use, and its checksum."""

    path: Path
    sha256: str
    bytes: int
    images: int
    revision: str


@dataclass(frozen=True)
class RegionInfo:
    """One region's images; those with no accelerator or no scope are reached only with
    --accelerator any or --scope any."""

    region: str
    images: int
    removed: int
    no_accelerator: int
    no_scope: int
    last_sync: str | None
    last_status: str | None


@dataclass(frozen=True)
class CatalogInfo:
    database: str
    revision: str
    size_bytes: int | None
    images: int
    regions: tuple[RegionInfo, ...]
    last_sync: str | None
    age_days: float | None


def export_rows(
    *, as_of: datetime | str | None = None, db: str | None = None
) -> Iterator[dict[str, Any]]:
    """The catalog's images (as they stood at ``as_of``), with scopes and labels, by URI."""
    _, where, params = make_filters(None, None, None, None, None, None, None, False, as_of).where()
    target = resolve_target(db)
    readdb.reader(target)  # a file that is not a catalog is refused with the usual message
    if target.path is not None and "as_of" in params:
        params["as_of"] = times.stored(params["as_of"])
    sql = (
        f"SELECT {_EXPORT_COLUMNS} FROM image_version v "
        f"LEFT JOIN image_label l ON l.version_id = v.id WHERE {where} "
        "ORDER BY (v.uri IS NULL), v.uri, v.region, v.image_id, v.id, l.key"
    )
    return _images(execute(target, sql, params))


def _images(result: SqlResult) -> Iterator[dict[str, Any]]:
    """One dict per image version: the query gives one row per label, in version order."""
    image: dict[str, Any] | None = None
    for values in result.rows:
        row = dict(zip(result.columns, values, strict=True))
        key, value = row.pop("label_key"), row.pop("label_value")
        if image is None or image["version_id"] != row["version_id"]:
            if image is not None:
                yield _finished(image)
            image = {**row, "labels": {}}
        if key is not None:
            image["labels"][key] = value
    if image is not None:
        yield _finished(image)


def _finished(image: dict[str, Any]) -> dict[str, Any]:
    del image["version_id"]
    image["scopes"] = image["scopes"].split(",") if image["scopes"] else []
    image["official"] = bool(image["official"])
    image["scope_inferred"] = bool(image["scope_inferred"])
    image["components"] = json.loads(image["components"]) if image["components"] else []
    for name in ("created", "modified", "state_since"):
        image[name] = times.iso(image[name])
    return image


def publish(out: Path, *, db: str | None = None) -> Published:
    """Write a compact, checked copy of the catalog to ``out``, atomically, with a .sha256.

    From SQLite, the file is copied whole; from a server, the migrations build a new file and
    every row is copied in, so both give the same file for the same history.
    """
    if not str(out).strip():
        raise UsageError("Give the file to publish to, such as catalog-2026-12-01.db.")
    target = resolve_target(db, own=True)
    out = Path(out).expanduser().absolute()
    if target.path is not None and out.resolve() == target.path.resolve():
        raise UsageError(f"Cannot publish {target.path} onto itself; give another output file.")
    if not out.parent.is_dir():
        raise UsageError(f"The folder {out.parent} does not exist; create it or choose another.")
    _check_replaceable(out)
    readdb.reader(target)  # refuse a database that is not a catalog at this revision
    sidecar = out.with_name(out.name + ".sha256")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:  # a folder this user cannot write, a read-only filesystem
        raise DatabaseError(f"Cannot write {out}: {exc.strerror or exc}.") from None
    os.close(fd)
    temp = Path(name)
    try:
        if target.path is None:
            from catalog.sqlitecopy import copy_to_sqlite  # SQLAlchemy, for servers only

            copy_to_sqlite(target, temp)
            _vacuum(temp)
        else:
            conn = sqlite3.connect(f"file:{quote(str(target.path))}?mode=ro", uri=True)
            try:
                conn.execute("VACUUM INTO ?", (str(temp),))  # one consistent snapshot, compacted
            finally:
                conn.close()
        images, revision = _checked(temp)
        temp.chmod(0o644)  # mkstemp's 0600 would hide the published file from other users
        digest = _sha256(temp)
        temp.with_name(temp.name + ".sha256").write_text(f"{digest}  {out.name}\n", "utf-8")
        sidecar.unlink(missing_ok=True)  # never an old checksum beside a new file
        os.replace(temp, out)
        os.replace(temp.with_name(temp.name + ".sha256"), sidecar)
    except sqlite3.Error as exc:
        raise DatabaseError(f"Cannot publish {target.display} to {out}: {exc}.") from None
    except OSError as exc:
        raise DatabaseError(f"Cannot write {out}: {exc.strerror or exc}.") from None
    finally:
        for suffix in ("", "-journal", "-wal", "-shm", ".sha256"):
            temp.with_name(temp.name + suffix).unlink(missing_ok=True)
    readdb.forget(parse_target(str(out)))  # a cached reader would still see the old file
    return Published(out, digest, out.stat().st_size, images, revision)


def _check_replaceable(out: Path) -> None:
    """Refuse an ``out`` that a rename would wrongly replace: anything but a regular file (a
    device such as /dev/null, a folder, a FIFO), or a catalog in use, whose -wal SQLite would
    replay onto the new file and so corrupt it."""
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise UsageError(f"Cannot publish to {out}: it is not a regular file; give a file path.")
    for suffix in ("-wal", "-journal"):
        beside = out.with_name(out.name + suffix)
        if beside.exists():
            raise UsageError(
                f"Cannot publish to {out}: {beside.name} beside it belongs to a catalog in use "
                "or one that was not closed cleanly; publish elsewhere, or open that catalog "
                "once (pai-catalog info) so SQLite folds it in."
            )
    if out.exists() and not _is_published_copy(out):
        raise UsageError(
            f"Cannot publish to {out}: it exists and is not a published catalog, which is all "
            "publish replaces; remove it or give another file name."
        )


def _is_published_copy(path: Path) -> bool:
    """What publish writes: an SQLite file in rollback-journal mode (header bytes 18 and 19
    are 1; a catalog that syncs uses WAL) holding a pai-catalog schema revision."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
        if header[:16] != b"SQLite format 3\x00" or header[18:20] != b"\x01\x01":
            return False
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
        try:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            ).fetchone()
        finally:
            conn.close()
    except (OSError, sqlite3.Error):
        return False
    return found is not None


def _vacuum(path: Path) -> None:
    """Compact a file written row by row, as VACUUM INTO compacts a copied one."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("VACUUM")
    finally:
        conn.close()


def _checked(path: Path) -> tuple[int, str]:
    """(current images, revision) of a fresh copy, after making it a single, sound file."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")  # a read-only reader needs no -wal/-shm
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise DatabaseError(
                f"The copy failed its integrity check ({problems[0]}); nothing was written."
            )
        images = conn.execute("SELECT count(*) FROM image_version WHERE valid_to IS NULL")
        revision = conn.execute("SELECT version_num FROM alembic_version")
        return int(images.fetchone()[0]), str(revision.fetchone()[0])
    finally:
        conn.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())  # the renamed file must be on disk before it is announced
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def info(*, db: str | None = None) -> CatalogInfo:
    """Where the catalog is, its revision, and each region's images and last successful sync."""
    target = resolve_target(db, own=True)
    handle = readdb.reader(target)
    rows = handle.rows(_REGIONS)
    regions = tuple(RegionInfo(**{**row, "last_sync": times.iso(row["last_sync"])}) for row in rows)
    last = max((m for m in map(times.parse, (row["last_sync"] for row in rows)) if m), default=None)
    return CatalogInfo(
        database=target.display,
        revision=str(handle.scalar("SELECT version_num FROM alembic_version")),
        size_bytes=target.path.stat().st_size if target.path is not None else None,
        images=sum(region.images for region in regions),
        regions=regions,
        last_sync=times.iso(last),
        age_days=None if last is None else round(readdb.age_days(last), 2),
    )
