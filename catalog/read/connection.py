"""Read-only database access: stdlib sqlite3 for files, SQLAlchemy only for server URLs."""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from catalog.config import (
    SCHEMA_REVISION,
    DbTarget,
    known_revision,
    resolve_target,
    shipped_db_path,
    utcnow,
)
from catalog.errors import DatabaseError, UsageError, first_line
from catalog.parse import times
from catalog.read import statements
from catalog.read.filters import encodes

ENV_MAX_AGE = "PAI_CATALOG_MAX_AGE"
DEFAULT_MAX_AGE = 7.0  # days

# The migration revision this code reads; tests check it against the migrations' head.
_OPEN: dict[str, Reader] = {}
_SERIALS = itertools.count(1)


class Reader:
    """Runs SELECTs with ``:name`` parameters and returns rows as dicts."""

    def __init__(self, target: DbTarget) -> None:
        self.target = target
        self._sqlite: sqlite3.Connection | None = None
        self._engine: Any = None
        self.identity: tuple[int, int] | None = None
        self.serial = next(_SERIALS)
        if target.path is not None:
            self._sqlite = open_sqlite(target.path)
            self.identity = _identity(target.path)
        else:
            self._engine = _open_engine(target)
        self._check_revision()

    def generation(self) -> tuple[int, int] | None:
        """A value that changes whenever another connection commits to the file (None for
        servers), so results read before can be reused until then.

        data_version counts from 1 on every new connection, so the reader's own serial number
        comes with it: answers from a reader that was replaced never match a new one.
        """
        if self._sqlite is None:
            return None
        return (self.serial, int(self._sqlite.execute("PRAGMA data_version").fetchone()[0]))

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        params = dict(params or {})
        try:
            if self._sqlite is not None:
                for name, value in params.items():
                    if isinstance(value, datetime):
                        params[name] = times.stored(value)
                cursor = self._sqlite.execute(sql, params)
                names = [d[0] for d in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            return self._server_rows(sql, params)
        except sqlite3.DatabaseError as exc:
            raise _sqlite_error(exc, self.target) from None
        except UnicodeDecodeError:
            raise DatabaseError.not_text(self.target.display) from None
        except UnicodeEncodeError:  # a value from bytes that are not UTF-8 (a terminal's, say)
            shown = [v for v in params.values() if isinstance(v, str) and not encodes(v)]
            raise UsageError(f"{shown[0] if shown else sql!r} is not UTF-8 text.") from None

    def _server_rows(self, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        from sqlalchemy import exc as sa_exc
        from sqlalchemy import text

        try:
            conn = self._engine.connect()
        except sa_exc.SQLAlchemyError as exc:
            raise _Unreachable(
                f"Cannot connect to {self.target.display} ({first_line(exc)}); check that the "
                "server is running and the URL is right."
            ) from None
        try:
            with conn:
                return [dict(row._mapping) for row in conn.execute(text(sql), params)]
        except sa_exc.SQLAlchemyError as exc:
            raise DatabaseError(f"Cannot read {self.target.display}: {first_line(exc)}.") from None

    @property
    def dialect(self) -> str:
        """ "sqlite", or the server's SQLAlchemy dialect name."""
        return "sqlite" if self._sqlite is not None else str(self._engine.dialect.name)

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        rows = self.rows(sql, params)
        return next(iter(rows[0].values())) if rows else None

    def _check_revision(self) -> None:
        try:
            revision = self.scalar(statements.REVISION)
        except _Unreachable:
            raise
        except DatabaseError as exc:
            if self.dialect == "sqlite" and self.scalar(statements.TABLES):
                raise DatabaseError.not_a_catalog(
                    self.target.display, "it has tables and no alembic_version", empty=False
                ) from exc
            raise DatabaseError.not_a_catalog(
                self.target.display, "no schema revision", empty=True
            ) from exc
        if revision == SCHEMA_REVISION:
            return
        if not known_revision(str(revision)):
            raise DatabaseError.newer_revision(self.target.display, str(revision))
        raise DatabaseError(
            f"{self.target.display} is at schema revision {revision}, this pai-catalog reads "
            f"{SCHEMA_REVISION}; run 'pai-catalog db upgrade'."
        )

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._engine is not None:
            self._engine.dispose()


class _Unreachable(DatabaseError):
    """The server did not answer: not a sign that the database is not a catalog."""


def open_sqlite(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise DatabaseError(
            f"No catalog database at {path}; run 'pai-catalog import' or 'pai-catalog sync', "
            "or point --db / PAI_CATALOG_DB at a catalog file."
        )
    base = "file:" + quote(str(path))
    try:
        conn = sqlite3.connect(base + "?mode=ro", uri=True, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or os.access(path.parent, os.W_OK):
            raise DatabaseError(
                f"Cannot read {path}: {exc} (a sync may be holding it); try again."
            ) from None
        # A WAL database in a read-only folder cannot get its -shm file; nobody can write
        # there either, so reading it as immutable is safe.
        try:
            conn = sqlite3.connect(base + "?immutable=1", uri=True, check_same_thread=False)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            raise _sqlite_error(exc, DbTarget(url="", path=path)) from None
    except sqlite3.DatabaseError as exc:
        raise _sqlite_error(exc, DbTarget(url="", path=path)) from None
    except UnicodeDecodeError:
        raise DatabaseError.not_text(str(path)) from None
    return conn


def _open_engine(target: DbTarget) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy import exc as sa_exc

    try:
        return create_engine(target.url)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
        raise DatabaseError(f"Cannot open {target.display}: {exc}") from None


def _sqlite_error(exc: sqlite3.DatabaseError, target: DbTarget) -> DatabaseError:
    message = str(exc)
    if "not a database" in message or "malformed" in message:
        return DatabaseError.corrupt(target.display, message)
    return DatabaseError(f"Cannot read {target.display}: {message}.")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def reader(target: DbTarget) -> Reader:
    """A shared reader per database, so repeated lookups skip the open and the checks (a
    warm retrieve() takes 7 us with it, 490 us without).

    A file replaced under the same name (a new published copy) is opened afresh.
    """
    key = target.url
    existing = _OPEN.get(key)
    if (
        existing is not None
        and target.path is not None
        and _identity(target.path) != existing.identity
    ):
        forget(target)
        existing = None
    if existing is None:
        existing = _OPEN[key] = Reader(target)
    return existing


def forget(target: DbTarget | None = None) -> None:
    """Close cached readers (all, or one database's), e.g. after the file was replaced."""
    keys: Sequence[str] = list(_OPEN) if target is None else [target.url]
    for key in keys:
        found = _OPEN.pop(key, None)
        if found is not None:
            found.close()


def staleness_warning(max_age_days: float | None = None, *, db: str | None = None) -> str | None:
    """One sentence when the catalog's last successful sync is ``max_age_days`` old or older,
    naming the remedy that fits; else None.

    ``max_age_days`` defaults to PAI_CATALOG_MAX_AGE, else 7; 0 never warns. The shipped
    catalog is never warned about: it says once that it is a demonstration instead. A copy
    that cannot be written (a published file on an air-gapped machine) is refreshed by
    installing a newer copy, not by a sync. Here rather than with the other analyses:
    ``resolve`` asks after every answer, and this module is already loaded by then."""
    if max_age_days is None:
        max_age_days = max_age_from_environment()
    if not max_age_days >= 0:  # NaN is neither more nor less
        raise UsageError(f"The maximum age must be 0 days or more, not {max_age_days}.")
    target = resolve_target(db)
    if max_age_days == 0 or target.path == shipped_db_path().absolute():
        return None
    last = last_sync(reader(target))
    if last is None:
        return "Warning: the catalog has never been synced; run 'pai-catalog sync' to fill it."
    if (utcnow() - last).total_seconds() < max_age_days * 86_400:  # infinity never warns
        return None
    if target.path is not None and _published(target.path):
        remedy = "install a newer published copy (pai-catalog publish, where it syncs)"
    else:
        remedy = "run 'pai-catalog sync' to refresh it"
    return f"Warning: the catalog was {updated(last)}; {remedy}."


def _published(path: Path) -> bool:
    """Whether a catalog file is a published copy, which no sync refreshes: publish writes
    it with a rollback journal (header bytes 18-19 are 1; a synced catalog's WAL makes them
    2), and it is often installed read-only."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return False
    return header[18:20] == b"\x01\x01" or not os.access(path, os.W_OK)


def max_age_from_environment() -> float:
    """PAI_CATALOG_MAX_AGE in days, 7 when unset."""
    value = os.environ.get(ENV_MAX_AGE, "").strip()
    try:
        return float(value) if value else DEFAULT_MAX_AGE
    except ValueError:
        raise UsageError(f"{ENV_MAX_AGE} must be a number of days, not {value!r}.") from None


def last_sync(db: Reader) -> datetime | None:
    """When the catalog's last successful run ended (naive UTC); None if it never had one."""
    return times.parse(db.scalar(statements.LAST_SYNC))


def age_days(last: datetime) -> float:
    """How old a catalog last updated at ``last`` is, in days."""
    return (utcnow() - last).total_seconds() / 86_400


def updated(last: datetime) -> str:
    """'last updated 2026-11-27, 1 day ago': whole days, as a person counts them."""
    days = int(age_days(last))
    return f"last updated {last:%Y-%m-%d}, {days} day{'' if days == 1 else 's'} ago"


def catalog_age(db: Reader) -> str:
    """'catalog last updated 2026-11-27, 1 day ago', or that it has never been synced."""
    last = last_sync(db)
    return "the catalog has never been synced" if last is None else f"catalog {updated(last)}"
