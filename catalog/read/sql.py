"""Read-only SQL: one statement, refused any write, bounded in time and memory."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from sqlite3 import SQLITE_FUNCTION, SQLITE_READ, SQLITE_RECURSIVE, SQLITE_SELECT
from typing import Any

from catalog.config import DbTarget, resolve_target
from catalog.errors import CatalogError, DatabaseError, QueryError, UsageError, first_line
from catalog.parse import times
from catalog.read import connection
from catalog.read.filters import require_text

SQL_TIMEOUT = 30.0  # seconds a statement of `pai-catalog sql` may run, fetching included
MAX_TIMEOUT = 86_400.0  # a day: PostgreSQL's statement_timeout takes at most 2**31 - 1 ms
SQL_MEMORY = 512 << 20  # bytes of SQLite heap for its sorts and temporary tables
# Strings, quoted names and comments: a ';' or ':name' inside them is not SQL. SQLite's forms,
# then PostgreSQL's: E'' strings with backslash escapes, $tag$ quotes, comments that nest.
_LEXEME = re.compile(
    r"""'(?:[^']|'')*'?|"(?:[^"]|"")*"?|`[^`]*`?|\[[^\]]*\]?|--[^\n]*|/\*.*?(?:\*/|\Z)""", re.S
)
_PG_LEXEME = re.compile(
    r"""--[^\n\r]*|/\*|(?<![\w$])[Ee]'(?:[^'\\]|\\.|'')*'?|'(?:[^']|'')*'?|"(?:[^"]|"")*"?"""
    r"|(?<![\w$])\$(?:[^\W\d]\w*)?\$",
    re.S,
)
_COMMENT_MARK = re.compile(r"/\*|\*/")
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
# Refused before they run: COPY reaches the server's files and programs, the rest would end
# (or outlive) the read-only transaction.
_NEVER = {"COPY", "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE",
          "PREPARE"}  # fmt: skip
_REFUSED = "The sql command only reads: {} is not allowed."
_TIMEOUT = (
    "The query ran past its {:g}-second timeout and was stopped; narrow it, or give "
    "--timeout SECONDS (0 for none)."
)
_MEMORY = (
    "The query needed more than {} MiB of memory for sorting and temporary results; narrow it "
    "with WHERE or LIMIT."
)
# Who is connected, and which roles it can act as that reach past reading the catalog: one
# that owns or may change its tables (REINDEX, LOCK TABLE and ANALYZE run in a read-only
# transaction), a superuser, the server's files and programs (COPY TO PROGRAM, pg_read_file),
# replication slots (which outlive the transaction and hold the server's WAL), or other
# sessions (pg_terminate_backend, which would end a sync's lock session).
_WHO = """SELECT session_user, quote_ident(current_database()),
    quote_ident(coalesce(current_schema(), 'public')),
    (SELECT CASE WHEN rolsuper THEN 'a superuser' WHEN rolreplication THEN 'a replication role'
        WHEN EXISTS (SELECT FROM pg_class c WHERE c.relkind IN ('r', 'p')
            AND c.relnamespace = coalesce(to_regnamespace(current_schema()), 0)
            AND (pg_has_role(session_user, c.relowner, 'MEMBER')
                OR has_table_privilege(session_user, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')))
        THEN 'a role that can write the catalog' END FROM pg_roles WHERE rolname = session_user),
    ARRAY(SELECT rolname::text FROM pg_roles WHERE pg_has_role(session_user, oid, 'MEMBER')
        AND rolname <> session_user AND (rolsuper OR rolreplication OR rolname IN (
            'pg_execute_server_program', 'pg_read_server_files', 'pg_write_server_files',
            'pg_signal_backend'))
        ORDER BY NOT rolsuper, rolname)"""


@dataclass(frozen=True)
class SqlResult:
    """A statement's column names and its rows, streamed."""

    columns: tuple[str, ...]
    rows: Iterator[tuple[Any, ...]]


def run_sql(
    sql: str,
    params: Mapping[str, str] | None = None,
    *,
    db: str | None = None,
    timeout: float | None = SQL_TIMEOUT,
    max_memory: int | None = SQL_MEMORY,
) -> SqlResult:
    """Run one statement on a connection that can only read; ``params`` bind to ``:name``.

    ``timeout`` seconds (0 or None: no limit) bound the statement, fetching included, and
    Ctrl-C stops it, on the server too. On SQLite, sorts and temporary tables stay in memory
    and ``max_memory`` bytes cap SQLite's heap: its hard heap limit, which is process-wide and
    is only ever lowered. On PostgreSQL the statement runs alone in a read-only transaction,
    and never as a role that can act as a superuser or reach the server's files.
    """
    if timeout is not None and not 0 <= timeout <= MAX_TIMEOUT:  # NaN is neither
        raise UsageError(
            f"The timeout must be from 0 to {MAX_TIMEOUT:g} seconds (0 for none), not {timeout:g}."
        )
    require_text("sql", sql)
    for name, value in (params or {}).items():
        if isinstance(value, str):
            require_text(f"the parameter {name}", value)
    target = resolve_target(db)
    pieces = _lexemes(sql, server=target.path is None)
    bare = "".join(
        text if kind == "sql" else " " if kind == "comment" else "0" for text, kind in pieces
    )
    count = sum(1 for piece in bare.split(";") if piece.strip())
    if count == 0:
        raise UsageError("Give an SQL statement, such as SELECT count(*) FROM v_image.")
    if count > 1:
        raise UsageError(f"Give one statement; this has {count}.")
    first = re.match(r"\W*(\w*)", bare)
    if first and first.group(1).upper() in _NEVER:
        raise UsageError(_REFUSED.format(_statement(bare)))
    values = dict(params or {})
    missing = sorted({name for name in _PARAM.findall(bare) if name not in values})
    if missing:
        shown = ", ".join(f":{name}" for name in missing[:5])
        raise UsageError(f"The query uses {shown} without a value; give each with -p NAME VALUE.")
    return execute(target, sql, values, bare, _Limits(timeout or None, max_memory or None))


@dataclass(frozen=True)
class _Limits:
    timeout: float | None  # seconds
    memory: int | None  # bytes


def _lexemes(sql: str, server: bool) -> list[tuple[str, str]]:
    """``sql`` cut into (text, kind): "sql", "comment", or "text" (a string or a quoted name),
    as SQLite, or PostgreSQL with standard_conforming_strings, reads it."""
    pattern, pos, found = _PG_LEXEME if server else _LEXEME, 0, []
    while match := pattern.search(sql, pos):
        token, end = match.group(), match.end()
        if server and token == "/*":
            end = _comment_end(sql, match.start())
        elif server and token.startswith("$"):
            close = sql.find(token, end)
            end = len(sql) if close < 0 else close + len(token)
        kind = "comment" if token.startswith(("--", "/*")) else "text"
        found += [(sql[pos : match.start()], "sql"), (sql[match.start() : end], kind)]
        pos = end
    return [*found, (sql[pos:], "sql")]


def _comment_end(sql: str, start: int) -> int:
    """Where the PostgreSQL block comment at ``start`` ends: they nest."""
    depth = 0
    for mark in _COMMENT_MARK.finditer(sql, start):
        depth += 1 if mark.group() == "/*" else -1
        if depth == 0:
            return mark.end()
    return len(sql)


def execute(
    target: DbTarget,
    sql: str,
    params: Mapping[str, Any],
    bare: str = "",
    limits: _Limits | None = None,
) -> SqlResult:
    """Run ``sql`` read-only; ``bare`` (the statement without strings and comments) names a
    refused statement, and only ``limits`` make it the guarded statement of ``run_sql``."""
    if target.path is None:
        return _server_execute(target, sql, params, bare, limits)
    denied: list[tuple[int, str | None]] = []  # (action, its first argument)

    def authorize(action: int, arg1: str | None, arg2: str | None, *_: str | None) -> int:
        if action in _READS:
            return sqlite3.SQLITE_OK
        name = (arg1 or "").lower()  # PRAGMA TABLE_INFO is table_info
        if action == sqlite3.SQLITE_PRAGMA and (
            _READ_PRAGMA.fullmatch(name) or (arg2 is None and _QUERY_PRAGMA.fullmatch(name))
        ):
            return sqlite3.SQLITE_OK
        # SQLite 3.40 asks to update the schema table while it declares json_each() or
        # pragma_table_info(); IGNORE lets those run, and SQLite itself refuses a real update.
        if action == sqlite3.SQLITE_UPDATE and arg1 in _SCHEMA_TABLES:
            return sqlite3.SQLITE_IGNORE
        denied.append((action, name))
        return sqlite3.SQLITE_DENY

    # Its own connection, not the cached Reader's: the authorizer must not outlive the query.
    conn = connection.open_sqlite(target.path)
    watch = _Watch(limits.timeout if limits else None)

    def failed(exc: sqlite3.Error | MemoryError) -> BaseException:
        conn.close()
        memory = limits.memory if limits else None
        return _sql_error(exc, bare, denied, target.path, watch, memory)

    try:
        conn.execute("PRAGMA query_only = ON")
        if limits is not None:
            conn.execute("PRAGMA temp_store = MEMORY")  # never a temporary file on the disk
            if limits.memory:
                conn.execute(f"PRAGMA hard_heap_limit = {int(limits.memory)}")
            conn.set_progress_handler(watch.answers.__next__, 10_000)
        conn.set_authorizer(authorize)
        cursor = conn.execute(sql, params)
    except (sqlite3.Error, MemoryError) as exc:
        raise failed(exc) from None
    except BaseException:
        conn.close()
        raise

    def rows() -> Iterator[tuple[Any, ...]]:
        try:
            while batch := cursor.fetchmany(500):
                yield from batch
        except (sqlite3.Error, MemoryError) as exc:
            raise failed(exc) from None
        finally:
            conn.close()

    return SqlResult(tuple(d[0] for d in cursor.description or ()), rows())


class _Watch:
    """SQLite's progress handler: it stops the statement at its deadline, or on a signal."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.signal: BaseException | None = None
        self.answers = self._answers()
        next(self.answers)

    def _answers(self) -> Iterator[int]:
        """1 to stop. A generator because sqlite3 swallows what a handler raises, leaving only
        "interrupted": Ctrl-C's KeyboardInterrupt (or SIGTERM's) is raised where the handler
        resumes, at this yield, so it lands inside the try and is kept."""
        answer = 0
        while True:
            try:
                yield answer
                answer = int(self.deadline is not None and time.monotonic() > self.deadline)
            except GeneratorExit:
                return
            except BaseException as exc:
                self.signal, answer = exc, 1

    def stopped(self) -> BaseException:
        """Why SQLite said "interrupted": a signal, or the deadline."""
        if self.signal is not None:
            return self.signal
        if self.deadline is not None and time.monotonic() > self.deadline:
            return QueryError(_TIMEOUT.format(self.timeout))
        return KeyboardInterrupt()  # a signal that struck where it could not be kept


def _sql_error(
    exc: sqlite3.Error | MemoryError,
    bare: str,
    denied: list[tuple[int, str | None]],
    path: Path | None = None,
    watch: _Watch | None = None,
    memory: int | None = None,
) -> BaseException:
    message = str(exc)
    if isinstance(exc, MemoryError):
        return QueryError(
            _MEMORY.format(memory >> 20) if memory else "The query ran out of memory."
        )
    if watch is not None and message == "interrupted":
        return watch.stopped()
    if denied and denied[0][0] == sqlite3.SQLITE_PRAGMA:
        name = denied[0][1] or ""
        setting = "setting " if _QUERY_PRAGMA.fullmatch(name) else ""
        return UsageError(_REFUSED.format(f"{setting}PRAGMA {name}"))
    if denied or "readonly database" in message:
        return UsageError(_REFUSED.format(_statement(bare)))
    if isinstance(exc, sqlite3.ProgrammingError) and "one statement" in message:
        return UsageError("Give one statement; this has more than one.")
    if "not a database" in message or "malformed" in message or "disk I/O" in message:
        # The file, not the statement, is at fault.
        return DatabaseError.corrupt(str(path or "The database"), message)
    return QueryError(f"SQL error: {message.rstrip('.')}.")


def _statement(bare: str) -> str:
    """What a refused statement is, in its author's words: DROP TABLE, CREATE TEMP VIEW, ..."""
    match = _STATEMENT.match(bare)
    name = " ".join(match.group(1).upper().split()) if match else ""
    if name in ("", "WITH", "SELECT", "VALUES", "EXPLAIN"):  # the write comes further in
        found = re.search(r"\b(INSERT|UPDATE|DELETE|REPLACE)\b", bare, re.I)
        name = found.group(1).upper() if found else "this statement"
    return name


def _server_execute(
    target: DbTarget, sql: str, params: Mapping[str, Any], bare: str, limits: _Limits | None
) -> SqlResult:
    from sqlalchemy import create_engine
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.engine import make_url

    try:
        import psycopg

        url = make_url(target.url)
        if url.get_backend_name() != "postgresql":
            raise UsageError(f"The sql command reads SQLite or PostgreSQL, not {target.display}.")
        # psycopg 3, whatever driver the URL names: its protocol refuses a second statement.
        dialect = create_engine(url.set(drivername="postgresql+psycopg")).dialect
        cargs, cparams = dialect.create_connect_args(url)
        conn = psycopg.connect(*cargs, **cparams, autocommit=True)
    except (ImportError, sa_exc.SQLAlchemyError) as exc:
        raise DatabaseError(f"Cannot open {target.display}: {first_line(exc)}.") from None
    except psycopg.Error as exc:
        raise DatabaseError(f"Cannot open {target.display}: {first_line(exc)}.") from None
    text, names = _numbered(sql)
    cursor = psycopg.RawCursor(conn)
    try:
        _begin(conn, limits)
        # The extended query protocol runs one statement, or refuses the text.
        stream = cursor.stream(text, [params[name] for name in names])
        try:
            first = next(stream, None)
        except psycopg.ProgrammingError as exc:
            if exc.sqlstate is not None:
                raise
            first = None  # a statement without rows (SET, DO): stream() says so this way
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            raise UsageError(_REFUSED.format(_statement(bare)))  # it ended the transaction
        described = cursor.description
        columns = tuple(c.name for c in described) if described else _described(conn, text)
    except psycopg.Error as exc:
        conn.close()
        raise _server_error(exc, bare, limits) from None
    except BaseException:
        conn.close()
        raise

    def rows() -> Iterator[tuple[Any, ...]]:
        try:
            if first is not None:
                yield tuple(_as_sqlite(value) for value in first)
            for row in stream:
                yield tuple(_as_sqlite(value) for value in row)
        except psycopg.Error as exc:
            raise _server_error(exc, bare, limits) from None
        finally:
            # A generator, typed as an Iterator: closing it cancels a statement still running.
            stream.close()  # type: ignore[attr-defined]
            conn.close()

    return SqlResult(columns, rows())


def _begin(conn: Any, limits: _Limits | None) -> None:
    """Open a transaction that stays read-only, with the limits; with ``limits``, refuse a
    role that reaches past the catalog."""
    conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    conn.execute("BEGIN READ ONLY")
    settings = {"standard_conforming_strings": "on"}  # strings read as _lexemes reads them
    if conn.info.server_version >= 140000:  # a killed client's statement stops within a second
        settings["client_connection_check_interval"] = "1000"
    if limits is not None and limits.timeout:
        settings["statement_timeout"] = str(max(1, round(limits.timeout * 1000)))
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))
    user, database, schema, itself, roles = conn.execute(_WHO).fetchone()
    if limits is not None and (itself or roles):
        why = itself or "a member of " + ", ".join(roles[:5])
        raise QueryError(
            f"The sql command does not run as {user} ({why}), whose statements reach past "
            "reading the catalog; connect as a role that can only read: CREATE ROLE "
            f"catalog_reader LOGIN PASSWORD '...'; GRANT CONNECT ON DATABASE {database} TO "
            f"catalog_reader; GRANT USAGE ON SCHEMA {schema} TO catalog_reader; GRANT SELECT ON "
            f"ALL TABLES IN SCHEMA {schema} TO catalog_reader."
        )


def _numbered(sql: str) -> tuple[str, list[str]]:
    """The statement with each ':name' outside strings, quoted names and comments as $1, $2,
    ..., and the names in that order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    pieces = _lexemes(sql, server=True)
    return "".join(_PARAM.sub(number, t) if k == "sql" else t for t, k in pieces), names


def _described(conn: Any, text: str) -> tuple[str, ...]:
    """The statement's column names, without running it again (psycopg's stream() keeps none
    when there are no rows); it ran already, so its locks are held and this is quick."""
    encoding = conn.info.encoding
    conn.pgconn.prepare(b"", text.encode(encoding))
    found = conn.pgconn.describe_prepared(b"")
    return tuple((found.fname(i) or b"").decode(encoding) for i in range(found.nfields))


def _as_sqlite(value: Any) -> Any:
    """A server's value as SQLite gives the same stored value (times as SQLAlchemy's text,
    booleans as 0 and 1, numerics as numbers), so a query prints the same on both."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        return times.stored(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return float(value)  # NaN and Infinity, as SQLite gives them
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _server_error(exc: Exception, bare: str, limits: _Limits | None) -> CatalogError:
    state, message = getattr(exc, "sqlstate", None), first_line(exc)
    if state == "25006":  # read_only_sql_transaction
        return UsageError(_REFUSED.format(_statement(bare)))
    if "multiple commands" in message:
        return UsageError("Give one statement; this has more than one.")
    if state == "57014" and limits is not None and limits.timeout and "timeout" in message:
        return QueryError(_TIMEOUT.format(limits.timeout))
    return QueryError(f"SQL error: {message}.")
