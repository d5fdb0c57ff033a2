"""Write-side database access: engines, migrations to head, and schema checks."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import IO, Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, inspect, text
from sqlalchemy import exc as sa_exc

from catalog.config import DbTarget, resolve_target
from catalog.errors import DatabaseError, LockedError

# First keys of pai-catalog's PostgreSQL advisory locks: syncs (the second key is 0 for the
# whole catalog, else a hash of the region), and migrations. "PAIC" and "PAIM" in ASCII.
_SYNC_LOCKS = 0x50414943
_MIGRATION_LOCK = 0x5041494D


def migrations_dir() -> str:
    """Where the Alembic scripts are: inside the installed package, or beside it in a checkout."""
    try:
        return str(resources.files("catalog.migrations"))
    except ModuleNotFoundError:  # a checkout on sys.path without an install
        return str(Path(__file__).resolve().parents[1] / "migrations")


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", migrations_dir())
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(migrations_dir())
    heads = script.get_heads()
    if len(heads) != 1:
        raise DatabaseError(f"The migrations have {len(heads)} heads; expected exactly one.")
    return str(heads[0])


# How long a write waits for SQLite's own lock, held by a writer that is not pai-catalog (the
# sqlite3 shell, say): pai-catalog's writers wait for each other's lock file instead.
BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")
    cursor.close()


def make_engine(target: DbTarget) -> Engine:
    """An engine for writing; for SQLite, the file's folder is created if needed."""
    if target.path is not None:
        _make_folder(target.path)
    try:
        # A file's URL is built from its path, not parsed from text: "?" or "%20" in a file
        # name would otherwise be read as a query or an escape, and another file written.
        url = target.url if target.path is None else URL.create("sqlite", database=str(target.path))
        engine = create_engine(url)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
        raise DatabaseError(f"Cannot open {target.display}: {exc}.") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _translate(exc: Exception, target: DbTarget) -> DatabaseError:
    original = getattr(exc, "orig", exc)
    if isinstance(original, sqlite3.DatabaseError) and "not a database" in str(original):
        return DatabaseError(
            f"{target.display} is not an SQLite database (it may be corrupt); "
            "point --db at a catalog file or move this one away."
        )
    if isinstance(original, sqlite3.OperationalError) and "database is locked" in str(original):
        return DatabaseError(
            f"{target.display} is locked by a program other than pai-catalog beyond the "
            f"{BUSY_TIMEOUT_MS / 1000:g} s wait (an sqlite3 shell in a transaction, say); end "
            "that transaction and try again."
        )
    # A server's message can run to several lines (psycopg adds a hint): the first says it.
    reason = str(original).strip().splitlines()[0] if str(original).strip() else repr(original)
    return DatabaseError(f"Cannot use the database {target.display}: {reason}.")


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, target: DbTarget, revision: str = "head") -> None:
    """Migrate the database to ``revision`` in one transaction (``target`` names it in
    messages)."""
    _migrate(engine, target, "upgrade", revision)


def downgrade(engine: Engine, target: DbTarget, revision: str) -> None:
    _migrate(engine, target, "downgrade", revision)


def _migrate(engine: Engine, target: DbTarget, way: str, revision: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    try:
        if _reached(current_revision(engine), revision):
            return  # nothing to do, so no write lock to wait for
        with _one_transaction(engine) as conn:
            _serialize_migrations(conn)
            getattr(command, way)(_alembic_config(conn), revision)
    except CommandError as exc:
        raise DatabaseError(f"Cannot {way} {target.display} to {revision!r}: {exc}.") from None
    except sa_exc.SQLAlchemyError as exc:
        raise _translate(exc, target) from None


@contextmanager
def _one_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection whose every statement, DDL included, commits or rolls back as one. The
    SQLite driver begins a transaction only before data changes and runs DDL outside one, so
    that a migration stopped half-way would leave half a schema; there the transaction is
    begun by hand."""
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection if engine.dialect.name == "sqlite" else None
        level = getattr(raw, "isolation_level", None)
        try:
            if raw is not None:
                raw.isolation_level = None  # the driver leaves BEGIN and COMMIT to us
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            if raw is not None:
                raw.isolation_level = level


def _serialize_migrations(conn: Connection) -> None:
    """On PostgreSQL, one migration at a time: workers starting together on an empty database
    would otherwise all create the tables. The lock ends with the migration's transaction, and
    Alembic then reads the revision the first worker committed."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:space, 0)"), {"space": _MIGRATION_LOCK})


def schema_differences(engine: Engine) -> list[Any]:
    """What differs between the models and the database (empty when they agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from catalog.models import Base

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata)) + _collation_differences(conn)


def _collation_differences(conn: Connection) -> list[tuple[str, ...]]:
    """Columns whose collation is not the models' one; Alembic does not compare collations."""
    from catalog.models import Base

    inspector = inspect(conn)
    found: list[tuple[str, ...]] = []
    for table in Base.metadata.sorted_tables:
        actual = {
            column["name"]: getattr(column["type"], "collation", None)
            for column in inspector.get_columns(table.name)
        }
        for column in table.columns:
            wanted = getattr(column.type.dialect_impl(conn.dialect), "collation", None)
            if column.name in actual and actual[column.name] != wanted:
                collation = actual[column.name] or "default"
                found.append(
                    ("modify_collation", table.name, column.name, collation, wanted or "default")
                )
    return found


@contextmanager
def writable(target: DbTarget) -> Iterator[Engine]:
    """An engine on a database at migration head, created or upgraded as needed; the caller
    holds the write lock. A new SQLite catalog is built beside its path and put in place
    whole, so that neither a reader nor a later run ever finds half a schema."""
    if target.path is not None:
        check_writable(target)
        if not target.path.exists():
            create_file(target)
    engine = make_engine(target)
    try:
        if current_revision_safe(engine, target) != head_revision():
            upgrade(engine, target)
        if engine.dialect.name == "sqlite":
            _wal(engine, target)
        yield engine
    finally:
        engine.dispose()


def _wal(engine: Engine, target: DbTarget) -> None:
    """Readers keep reading while a sync writes; the mode stays with the file."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode = WAL")
    except sa_exc.SQLAlchemyError as exc:
        raise _translate(exc, target) from None


def check_writable(target: DbTarget) -> None:
    """Refuse, in one line, an SQLite catalog that cannot be written: a read-only file (a
    published copy, say), or a folder where its journal cannot be created."""
    path = target.path
    if path is None:
        return
    folder = path.parent
    if path.exists() and not os.access(path, os.W_OK):
        raise DatabaseError(
            f"Cannot write {path}: the file is read-only; copy it somewhere writable, or point "
            "--db at a catalog you can write."
        )
    if folder.is_dir() and not os.access(folder, os.W_OK):
        raise DatabaseError(
            f"Cannot write {path}: its folder is read-only, and a catalog keeps its journal "
            "beside it; copy it somewhere writable, or point --db at a catalog you can write."
        )


def create_file(target: DbTarget, revision: str = "head") -> None:
    """Build a new SQLite catalog at ``revision`` in a file beside ``target.path``, then link it
    into place; a catalog already there (or one that appears meanwhile) is left as it is.
    Creation is not interrupted half-way by anything but the loss of this process, whose
    leftover is a hidden file that the next creation removes."""
    assert target.path is not None
    path = target.path
    _make_folder(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.new-*"):
        stale.unlink(missing_ok=True)  # a creation killed half-way: we hold the write lock
    temp = path.with_name(f".{path.name}.new-{os.getpid()}")
    temp_target = DbTarget(url="", path=temp)
    try:
        engine = make_engine(temp_target)
        try:
            upgrade(engine, target, revision)  # its messages name the catalog, not the file
            _wal(engine, target)
        finally:
            engine.dispose()  # the last connection checkpoints and removes the -wal file
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)  # never over a catalog that exists
    except OSError as exc:
        raise DatabaseError(f"Cannot create {path}: {exc.strerror or exc}.") from None
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            temp.with_name(temp.name + suffix).unlink(missing_ok=True)


def _make_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        raise DatabaseError(f"Cannot create the folder for {path}: {reason}.") from None


def current_revision_safe(engine: Engine, target: DbTarget) -> str | None:
    try:
        if not inspect(engine).has_table("alembic_version") and _has_foreign_tables(engine):
            raise DatabaseError(
                f"{target.display} is a database but not a pai-catalog one "
                "(it has tables and no alembic_version); point --db at another file."
            )
        revision = current_revision(engine)
    except sa_exc.SQLAlchemyError as exc:
        raise _translate(exc, target) from None
    except UnicodeDecodeError:
        raise DatabaseError.not_text(target.display) from None
    if revision is not None and revision not in _known_revisions():
        raise DatabaseError(
            f"{target.display} is at schema revision {revision}, which this pai-catalog does "
            "not know: it was written by a newer version; upgrade pai-catalog."
        )
    return revision


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory(migrations_dir()).walk_revisions()}


def _has_foreign_tables(engine: Engine) -> bool:
    return bool(inspect(engine).get_table_names())


def _existing(option: str | None) -> DbTarget:
    target = resolve_target(option)
    if target.path is not None and not target.path.is_file():
        raise DatabaseError(
            f"No database at {target.path}; create it with 'pai-catalog db upgrade'."
        )
    return target


def upgrade_command(option: str | None, revision: str = "head", *, wait: bool = False) -> str:
    """``db upgrade``: create or migrate the (writable) database; says what it did. It takes
    the write lock only when there is something to do."""
    target = resolve_target(option, write=True)
    check_writable(target)
    before = _revision_of(target)
    if not _reached(before, revision):
        with write_lock(target, wait=wait, holder="db upgrade"):
            if target.path is not None and not target.path.exists():
                create_file(target, revision)
            else:
                engine = make_engine(target)
                try:
                    upgrade(engine, target, revision)
                finally:
                    engine.dispose()
    after = _revision_of(target)
    if before == after:
        return f"{target.display}: already at revision {after}"
    return f"{target.display}: upgraded from {before or 'an empty database'} to revision {after}"


def _revision_of(target: DbTarget) -> str | None:
    """The database's revision; None for an empty one, or a file not created yet."""
    if target.path is not None and not target.path.exists():
        return None
    engine = make_engine(target)
    try:
        return current_revision_safe(engine, target)
    finally:
        engine.dispose()


def _reached(current: str | None, revision: str) -> bool:
    """Whether a database at ``current`` is at ``revision`` (head, base, or a revision id)."""
    wanted = head_revision() if revision == "head" else revision
    return current == (None if wanted == "base" else wanted)


def current_command(option: str | None) -> str:
    """``db current``: the database's revision beside the code's head."""
    target = _existing(option)
    engine = make_engine(target)
    try:
        revision = current_revision_safe(engine, target)
    finally:
        engine.dispose()
    head = head_revision()
    state = "at head" if revision == head else f"head is {head}"
    return f"{target.display}: revision {revision or 'none'} ({state})"


def check_command(option: str | None) -> str:
    """``db check``: fail unless the database is at head and matches the models."""
    target = _existing(option)
    engine = make_engine(target)
    try:
        revision = current_revision_safe(engine, target)
        head = head_revision()
        if revision != head:
            raise DatabaseError(
                f"{target.display} is at revision {revision or 'none'}, not head {head}; "
                "run 'pai-catalog db upgrade'."
            )
        differences = schema_differences(engine)
    except sa_exc.SQLAlchemyError as exc:
        raise _translate(exc, target) from None
    finally:
        engine.dispose()
    if differences:
        shown = "; ".join(str(d) for d in differences[:5])
        raise DatabaseError(f"{target.display} differs from the models: {shown}.")
    return f"{target.display}: revision {revision}, schema matches the models"


@contextmanager
def write_lock(
    target: DbTarget, regions: Sequence[str] = (), *, wait: bool = False, holder: str = "sync"
) -> Iterator[None]:
    """Hold the catalog's write lock, which every writer takes (sync, import, db upgrade and
    db reparse): a second writer fails at once, or waits with ``wait``.

    SQLite uses an flock on a file beside the database, one writer per file, which names its
    holder (pid and ``holder``) for the message a second writer gets; the kernel drops it if
    the holder dies, so a killed writer never leaves a stale lock. PostgreSQL uses session
    advisory locks, one per region, so that syncs of different regions run side by side;
    without ``regions`` (every region, db upgrade or db reparse) the whole catalog is locked.
    """
    if target.path is None:
        with _advisory_locks(target, regions, wait=wait):
            yield
        return
    import fcntl

    check_writable(target)
    lock_path = target.path.with_name(target.path.name + ".lock")
    try:
        _make_folder(target.path)
        handle = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise DatabaseError(
            f"Cannot lock {target.display}: cannot create {lock_path} "
            f"({exc.strerror or exc}); make its folder writable, or point --db at a catalog "
            "in a writable folder."
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockedError(_locked(target.display, _holder(handle))) from None
        try:
            _announce(handle, f"{os.getpid()} {holder}")
            yield
        finally:
            _announce(handle, "")
            fcntl.flock(handle, fcntl.LOCK_UN)


def _announce(handle: IO[str], text: str) -> None:
    """Say in the lock file who holds it (nothing when released); best effort."""
    try:
        handle.truncate(0)
        handle.write(text + "\n" if text else "")
        handle.flush()
    except OSError:
        pass


def _holder(handle: IO[str]) -> str | None:
    """Who holds the lock, as its holder wrote it: "pai-catalog sync (pid 4242)"."""
    try:
        handle.seek(0)
        pid, _, command = handle.read(200).strip().partition(" ")
    except (OSError, UnicodeDecodeError):
        return None
    return f"pai-catalog {command} (pid {pid})" if pid.isdigit() and command else None


def _locked(display: str, holder: str | None, region: str = "") -> str:
    who = f"A {holder}" if holder else "Another pai-catalog command"
    where = f"{region} in " if region else ""
    return (
        f"{who} is writing {where}{display}; let it finish, or pass --wait to start when it does."
    )


def _advisory_lock(conn: Connection, key: int, *, shared: bool, wait: bool) -> bool:
    """Take one lock (the try_ form returns at once); whether it was taken."""
    name = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
    name += "_shared" if shared else ""
    result = conn.execute(text(f"SELECT {name}(:space, :key)"), {"space": _SYNC_LOCKS, "key": key})
    return wait or bool(result.scalar())


def _region_key(region: str) -> int:
    """A region's second lock key: a 32-bit hash that is never 0, the whole catalog's key."""
    digest = hashlib.sha256(region.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big", signed=True) or 1


@contextmanager
def _advisory_locks(target: DbTarget, regions: Sequence[str], *, wait: bool) -> Iterator[None]:
    """Every sync shares the catalog's lock and holds its regions' locks alone; a sync of the
    whole catalog holds the catalog's lock alone. Locks are taken in one order, so two
    waiting syncs never deadlock, on a connection of their own that ends with the sync (or
    with its process: the server then drops the locks)."""
    engine = make_engine(target)
    if engine.dialect.name != "postgresql":
        engine.dispose()
        yield
        return
    wanted = [(True, 0, "")] + [(False, _region_key(r), r) for r in sorted(set(regions))]
    if not regions:
        wanted = [(False, 0, "")]
    try:
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except sa_exc.SQLAlchemyError as exc:
        engine.dispose()
        raise _translate(exc, target) from None
    try:
        try:
            for shared, key, region in wanted:
                if not _advisory_lock(conn, key, shared=shared, wait=wait):
                    raise LockedError(_locked(target.display, None, region))
        except sa_exc.SQLAlchemyError as exc:
            raise _translate(exc, target) from None
        yield
    finally:
        conn.close()  # with the engine disposed, the session ends and its locks with it
        engine.dispose()
