"""Analysis: read-only SQL, export, a publishable database file, and the catalog's age."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from sqlite3 import SQLITE_FUNCTION, SQLITE_READ, SQLITE_RECURSIVE, SQLITE_SELECT
from typing import Any
from urllib.parse import quote

from catalog import readdb
from catalog.config import DbTarget, parse_target, resolve_target, utcnow
from catalog.errors import CatalogError, DatabaseError, UsageError
from catalog.filters import make_filters
from catalog.readdb import staleness_warning as staleness_warning  # the catalog's age, too
from catalog.readdb import stored_moment

_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime in SQLite
# Strings, quoted names and comments: a ';' or ':name' inside them is not SQL.
_LEXEME = re.compile(
    r"""'(?:[^']|'')*'?|"(?:[^"]|"")*"?|`[^`]*`?|\[[^\]]*\]?|--[^\n]*|/\*.*?(?:\*/|\Z)""", re.S
)
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")  # not a PostgreSQL cast such as x::int
_READS = {SQLITE_SELECT, SQLITE_READ, SQLITE_FUNCTION, SQLITE_RECURSIVE}
# Pragmas that only read, with or without an argument; the second kind only without a value.
_READ_PRAGMA = re.compile(r"\w+_list|\w+_x?info|foreign_key_check|integrity_check|quick_check")
_QUERY_PRAGMA = re.compile(r"journal_mode|\w+_version|page_count|page_size|encoding|\w+_options")
_SCHEMA_TABLES = ("sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema")
# How a statement begins: "DROP TABLE", "CREATE TEMP VIEW", "INSERT".
_STATEMENT = re.compile(
    r"\s*((?:CREATE|DROP|ALTER)\b.*?\b(?:TABLE|VIEW|INDEX|TRIGGER)\b|\w+)", re.I
)
_REFUSED = "The sql command only reads: {} is not allowed."
_EXPORT_COLUMNS = """v.id AS version_id, v.image_id, v.region, v.uri, v.name, v.framework,
    v.framework_version, v.accelerator, v.python_version, v.cuda_version, v.os_version, v.scopes,
    v.official, v.scope_inferred, v.host, v.namespace, v.repository, v.tag, v.digest,
    v.components, v.build_suffix, v.parse_status, v.parse_reason, v.description, v.accessibility,
    v.size, v.gmt_create_time, v.gmt_modified_time, v.valid_from AS state_since,
    l.key AS label_key, l.value AS label_value"""
_REGIONS = """SELECT r.region,
    (SELECT count(*) FROM image_version v WHERE v.region = r.region AND v.valid_to IS NULL)
    AS images,
    (SELECT count(*) FROM image i WHERE i.region = r.region AND i.removed_run_id IS NOT NULL)
    AS removed,
    (SELECT max(s.finished_at) FROM sync_run s WHERE s.region = r.region AND s.status = 'ok')
    AS last_sync,
    (SELECT s.status FROM sync_run s WHERE s.region = r.region ORDER BY s.id DESC LIMIT 1)
    AS last_status
FROM (SELECT DISTINCT region FROM sync_run) r ORDER BY r.region"""


@dataclass(frozen=True)
class SqlResult:
    """A statement's column names and its rows, streamed."""

    columns: tuple[str, ...]
    rows: Iterator[tuple[Any, ...]]


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
    region: str
    images: int
    removed: int
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


def run_sql(
    sql: str, params: Mapping[str, str] | None = None, *, db: str | None = None
) -> SqlResult:
    """Run one statement on a connection that can only read; ``params`` bind to ``:name``."""
    bare = _LEXEME.sub(lambda m: " " if m.group().startswith(("--", "/*")) else "0", sql)
    count = sum(1 for piece in bare.split(";") if piece.strip())
    if count == 0:
        raise UsageError("Give an SQL statement, such as SELECT count(*) FROM v_image.")
    if count > 1:
        raise UsageError(f"Give one statement; this has {count}.")
    values = dict(params or {})
    missing = sorted({name for name in _PARAM.findall(bare) if name not in values})
    if missing:
        shown = ", ".join(f":{name}" for name in missing[:5])
        raise UsageError(f"The query uses {shown} without a value; give each with -p NAME VALUE.")
    return _execute(resolve_target(db), sql, values, bare)


def _execute(target: DbTarget, sql: str, params: Mapping[str, Any], bare: str) -> SqlResult:
    if target.path is None:
        return _server_execute(target, sql, params, bare)
    denied: list[tuple[int, str | None]] = []  # (action, its first argument)

    def authorize(action: int, arg1: str | None, arg2: str | None, *_: str | None) -> int:
        if action in _READS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and (
            _READ_PRAGMA.fullmatch(arg1 or "")
            or (arg2 is None and _QUERY_PRAGMA.fullmatch(arg1 or ""))
        ):
            return sqlite3.SQLITE_OK
        # SQLite 3.40 asks to update the schema table while it declares json_each() or
        # pragma_table_info(); IGNORE lets those run, and SQLite itself refuses a real update.
        if action == sqlite3.SQLITE_UPDATE and arg1 in _SCHEMA_TABLES:
            return sqlite3.SQLITE_IGNORE
        denied.append((action, arg1))
        return sqlite3.SQLITE_DENY

    # Its own connection, not the cached Reader's: the authorizer must not outlive the query.
    conn = readdb.open_sqlite(target.path)
    try:
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(authorize)
        cursor = conn.execute(sql, params)
    except sqlite3.Error as exc:
        conn.close()
        raise _sql_error(exc, bare, denied, target.path) from None

    def rows() -> Iterator[tuple[Any, ...]]:
        try:
            while batch := cursor.fetchmany(500):
                yield from batch
        except sqlite3.Error as exc:
            raise _sql_error(exc, bare, denied, target.path) from None
        finally:
            conn.close()

    return SqlResult(tuple(d[0] for d in cursor.description or ()), rows())


def _sql_error(
    exc: sqlite3.Error, bare: str, denied: list[tuple[int, str | None]], path: Path | None = None
) -> CatalogError:
    if denied and denied[0][0] == sqlite3.SQLITE_PRAGMA:
        name = denied[0][1] or ""
        setting = "setting " if _QUERY_PRAGMA.fullmatch(name) else ""
        return UsageError(_REFUSED.format(f"{setting}PRAGMA {name}"))
    if denied or "readonly database" in str(exc):
        return UsageError(_REFUSED.format(_statement(bare)))
    message = str(exc)
    if "not a database" in message or "malformed" in message or "disk I/O" in message:
        # The file, not the statement, is at fault.
        return DatabaseError(
            f"{path or 'The database'} is corrupt or not an SQLite database ({message}); "
            "restore it from a copy or point --db at another file."
        )
    return UsageError(f"SQL error: {message.rstrip('.')}.")


def _statement(bare: str) -> str:
    """What a refused statement is, in its author's words: DROP TABLE, CREATE TEMP VIEW, ..."""
    match = _STATEMENT.match(bare)
    name = " ".join(match.group(1).upper().split()) if match else ""
    if name in ("", "WITH", "SELECT", "VALUES", "EXPLAIN"):  # the write comes further in
        found = re.search(r"\b(INSERT|UPDATE|DELETE|REPLACE)\b", bare, re.I)
        name = found.group(1).upper() if found else "this statement"
    return name


def _server_execute(target: DbTarget, sql: str, params: Mapping[str, Any], bare: str) -> SqlResult:
    from sqlalchemy import create_engine
    from sqlalchemy import exc as sa_exc

    try:
        engine = create_engine(target.url)
        if engine.dialect.name != "postgresql":
            raise UsageError(f"The sql command reads SQLite or PostgreSQL, not {target.display}.")
        conn = engine.connect()
    except (sa_exc.SQLAlchemyError, ImportError) as exc:
        raise DatabaseError(f"Cannot open {target.display}: {_first_line(exc)}.") from None
    try:
        # The transaction's first statement, so the server refuses every write after it. No
        # stream_results: its server-side cursor would turn a refused write into a syntax error.
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        result = conn.exec_driver_sql(_pyformat(sql), dict(params))
    except sa_exc.SQLAlchemyError as exc:
        conn.close()
        raise _server_error(exc, bare) from None

    def rows() -> Iterator[tuple[Any, ...]]:
        try:
            rows = result if result.returns_rows else ()
            yield from (tuple(_as_sqlite(value) for value in row) for row in rows)
        except sa_exc.SQLAlchemyError as exc:
            raise _server_error(exc, bare) from None
        finally:
            conn.close()  # rolls back: nothing was meant to be kept
            engine.dispose()

    return SqlResult(tuple(result.keys()) if result.returns_rows else (), rows())


def _pyformat(sql: str) -> str:
    """The statement in the driver's own style: ':name' outside strings, quoted names and
    comments becomes '%(name)s' and every '%' is doubled, so "':b'" or "LIKE '%:latest'" stay
    text, as they do in SQLite."""
    pieces, last = [], 0
    for match in _LEXEME.finditer(sql):
        pieces.append(_PARAM.sub(r"%(\1)s", sql[last : match.start()].replace("%", "%%")))
        pieces.append(match.group().replace("%", "%%"))
        last = match.end()
    pieces.append(_PARAM.sub(r"%(\1)s", sql[last:].replace("%", "%%")))
    return "".join(pieces)


def _as_sqlite(value: Any) -> Any:
    """A server's value as SQLite gives the same stored value (times as SQLAlchemy's text,
    booleans as 0 and 1, numerics as numbers), so a query prints the same on both."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        return value.strftime(_SQLITE_TIME)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _first_line(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0].rstrip(".")


def _server_error(exc: Exception, bare: str) -> UsageError:
    orig = getattr(exc, "orig", None)
    if "25006" in (getattr(orig, "pgcode", None), getattr(orig, "sqlstate", None)):
        return UsageError(_REFUSED.format(_statement(bare)))  # read_only_sql_transaction
    return UsageError(f"SQL error: {_first_line(exc)}.")


def export_rows(
    *, as_of: datetime | str | None = None, db: str | None = None
) -> Iterator[dict[str, Any]]:
    """The catalog's images (as they stood at ``as_of``), with scopes and labels, by URI."""
    _, where, cached = make_filters(None, None, None, None, None, None, None, False, as_of).where()
    params = dict(cached)  # where() may hand out a shared, cached dict
    target = resolve_target(db)
    readdb.reader(target)  # a file that is not a catalog is refused with the usual message
    if target.path is not None and "as_of" in params:
        params["as_of"] = params["as_of"].strftime(_SQLITE_TIME)
    sql = (
        f"SELECT {_EXPORT_COLUMNS} FROM image_version v "
        f"LEFT JOIN image_label l ON l.version_id = v.id WHERE {where} "
        "ORDER BY (v.uri IS NULL), v.uri, v.region, v.image_id, v.id, l.key"
    )
    return _images(_execute(target, sql, params, ""))


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
    image["state_since"] = _iso(image["state_since"])
    return image


def publish(out: Path, *, db: str | None = None) -> Published:
    """Write a compact, checked copy of the catalog to ``out``, atomically, with a .sha256.

    From SQLite, the file is copied whole; from a server, the migrations build a new file and
    every row is copied in, so both give the same file for the same history.
    """
    target = resolve_target(db)
    out = Path(out).expanduser().absolute()
    if target.path is not None and out.resolve() == target.path.resolve():
        raise UsageError(f"Cannot publish {target.path} onto itself; give another output file.")
    if not out.parent.is_dir():
        raise UsageError(f"The folder {out.parent} does not exist; create it or choose another.")
    readdb.reader(target)  # refuse a database that is not a catalog at this revision
    sidecar = out.with_name(out.name + ".sha256")
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
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
    target = resolve_target(db)
    handle = readdb.reader(target)
    rows = handle.rows(_REGIONS)
    regions = tuple(RegionInfo(**{**row, "last_sync": _iso(row["last_sync"])}) for row in rows)
    last = max(
        (m for m in map(stored_moment, (row["last_sync"] for row in rows)) if m), default=None
    )
    return CatalogInfo(
        database=target.display,
        revision=str(handle.scalar("SELECT version_num FROM alembic_version")),
        size_bytes=target.path.stat().st_size if target.path is not None else None,
        images=sum(region.images for region in regions),
        regions=regions,
        last_sync=_iso(last),
        age_days=None if last is None else round((utcnow() - last).total_seconds() / 86400, 2),
    )


def _iso(value: Any) -> str | None:
    moment = stored_moment(value)
    return None if moment is None else f"{moment:%Y-%m-%dT%H:%M:%SZ}"
