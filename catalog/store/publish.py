"""A catalog published for air-gapped use: a compact, checked SQLite file with its checksum,
copied whole from SQLite or built by the migrations and filled row by row from a server."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from catalog.config import DbTarget, parse_target, resolve_target
from catalog.errors import DatabaseError, UsageError, first_line
from catalog.read import connection, statements

BATCH = 5000  # rows read and written at a time: memory stays flat however large the catalog


@dataclass(frozen=True)
class Published:
    """A database file written for air-gapped use, and its checksum."""

    path: Path
    sha256: str
    bytes: int
    images: int
    revision: str


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
    connection.reader(target)  # refuse a database that is not a catalog at this revision
    sidecar = out.with_name(out.name + ".sha256")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:  # a folder this user cannot write, a read-only filesystem
        raise DatabaseError(f"Cannot write {out}: {exc.strerror or exc}.") from None
    os.close(fd)
    temp = Path(name)
    try:
        if target.path is None:
            try:
                copy_to_sqlite(target, temp)
            except DatabaseError as exc:  # it names the temporary file, which will be gone
                reason = str(exc).rsplit(": ", 1)[-1].rstrip(".")
                raise DatabaseError(
                    f"Cannot publish {target.display} to {out}: {reason}."
                ) from None
            _vacuum(temp)
        else:
            conn = sqlite3.connect(f"file:{quote(str(target.path))}?mode=ro", uri=True)
            try:
                conn.execute("VACUUM INTO ?", (str(temp),))  # one consistent snapshot, compacted
            finally:
                conn.close()
        images, revision = _checked(temp)
        temp.chmod(0o644)  # mkstemp's 0600 would hide the published file from other users
        digest = sha256_of(temp)
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
    connection.forget(parse_target(str(out)))  # a cached reader would still see the old file
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
    sidecar = out.with_name(out.name + ".sha256")
    if sidecar.is_symlink() or (sidecar.exists() and not _is_checksum(sidecar)):
        raise UsageError(
            f"Cannot publish to {out}: {sidecar.name} beside it is not a checksum publish "
            "wrote, and publish would replace it; remove it or give another file name."
        )
    if out.exists() and not _is_published_copy(out):
        raise UsageError(
            f"Cannot publish to {out}: it exists and is not a published catalog, which is all "
            "publish replaces; remove it or give another file name."
        )


def _is_checksum(path: Path) -> bool:
    """What publish writes beside a copy: one line, a SHA-256 and a file name."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(1024)
    except OSError:
        return False
    return re.fullmatch(rb"[0-9a-f]{64}  [^\n/]+\n?", text) is not None


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
        # VACUUM INTO adds one to the schema cookie, the only byte that would tell a copy of a
        # copy from the copy: fixed, so that the same catalog publishes to the same bytes. No
        # other connection has this file open to hold a schema read under the old cookie.
        conn.execute("PRAGMA schema_version = 1")
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise DatabaseError(
                f"The copy failed its integrity check ({problems[0]}); nothing was written."
            )
        images = conn.execute(statements.CURRENT_COUNT)
        revision = conn.execute(statements.REVISION)
        return int(images.fetchone()[0]), str(revision.fetchone()[0])
    finally:
        conn.close()


def sha256_of(path: Path) -> str:
    """The file's SHA-256, once it is on disk."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())  # the renamed file must be on disk before it is announced
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def copy_to_sqlite(source: DbTarget, path: Path) -> None:
    """Build ``path`` (empty or absent) by running the migrations to head, then copy every
    table of ``source`` into it from one consistent snapshot, in primary-key order.

    The result is the file an SQLite catalog with the same history holds: same schema and
    revision (the migrations wrote them), same rows and ids (copied). The caller checks the
    source is at head first.
    """
    from sqlalchemy import exc as sa_exc  # for servers only: an SQLite catalog is copied whole
    from sqlalchemy import insert, select

    from catalog.store import db
    from catalog.store.models import Base

    target = parse_target(str(path))
    reading_engine, writing_engine = db.make_engine(source), db.make_engine(target)
    try:
        db.upgrade(writing_engine, target)
        with reading_engine.connect() as reading, writing_engine.begin() as writing:
            # The transaction's first statement: every table is read as of one moment, so a
            # sync committing meanwhile is either wholly in the copy or not at all.
            reading.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            streaming = reading.execution_options(yield_per=BATCH)
            for table in Base.metadata.sorted_tables:  # parents before the rows that refer to them
                rows = streaming.execute(select(table).order_by(*table.primary_key.columns))
                for batch in rows.partitions():
                    writing.execute(insert(table), [row._asdict() for row in batch])
    except sa_exc.SQLAlchemyError as exc:
        raise DatabaseError(
            f"Cannot copy {source.display} into {path}: {first_line(exc)}."
        ) from None
    finally:
        reading_engine.dispose()
        writing_engine.dispose()
