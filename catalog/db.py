"""Write-side database access: engines, migrations to head, and schema checks."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.close()


def make_engine(target: DbTarget) -> Engine:
    """An engine for writing; for SQLite, the file's folder is created if needed."""
    if target.path is not None:
        try:
            target.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(
                f"Cannot create the folder for {target.path}: {exc.strerror or exc}."
            ) from None
    try:
        engine = create_engine(target.url)
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
    # A server's message can run to several lines (psycopg adds a hint): the first says it.
    reason = str(original).strip().splitlines()[0] if str(original).strip() else repr(original)
    return DatabaseError(f"Cannot use the database {target.display}: {reason}")


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, target: DbTarget, revision: str = "head") -> None:
    """Migrate the database to ``revision`` in one transaction."""
    _migrate(engine, target, "upgrade", revision)


def downgrade(engine: Engine, target: DbTarget, revision: str) -> None:
    _migrate(engine, target, "downgrade", revision)


def _migrate(engine: Engine, target: DbTarget, way: str, revision: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    try:
        wanted = head_revision() if revision == "head" else revision
        if current_revision(engine) == (None if wanted == "base" else wanted):
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
    """An engine on a database at migration head, created or upgraded as needed."""
    engine = make_engine(target)
    try:
        if current_revision_safe(engine, target) != head_revision():
            upgrade(engine, target)
        if engine.dialect.name == "sqlite":
            # Readers keep reading while a sync writes; the mode stays with the file.
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode = WAL")
        yield engine
    finally:
        engine.dispose()


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


def upgrade_command(option: str | None, revision: str = "head") -> str:
    """``db upgrade``: create or migrate the (writable) database; says what it did."""
    target = resolve_target(option, write=True)
    engine = make_engine(target)
    try:
        before = current_revision_safe(engine, target)
        upgrade(engine, target, revision)
        after = current_revision(engine)
    finally:
        engine.dispose()
    if before == after:
        return f"{target.display}: already at revision {after}"
    return f"{target.display}: upgraded from {before or 'an empty database'} to revision {after}"


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
def sync_lock(
    target: DbTarget, regions: Sequence[str] = (), *, wait: bool = False
) -> Iterator[None]:
    """Hold the sync lock: a second sync fails at once, or waits with ``wait``.

    SQLite uses an flock on a file beside the database, one writer per file; the kernel drops
    it if the holder dies, so a killed sync never leaves a stale lock. PostgreSQL uses session
    advisory locks, one per region, so that syncs of different regions run side by side;
    without ``regions`` (every region, or a reparse) the whole catalog is locked.
    """
    if target.path is None:
        with _advisory_locks(target, regions, wait=wait):
            yield
        return
    import fcntl

    lock_path = target.path.with_name(target.path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockedError(
                f"Another sync is writing {target.display}; let it finish, or pass --wait "
                "to start when it does."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def import_lock(target: DbTarget, region: str) -> Iterator[None]:
    """On PostgreSQL, an import waits for any sync or import of its region: two runs of one
    region would otherwise both write over the same latest versions. SQLite's own write lock,
    taken by a run's first statement, already keeps them apart."""
    if target.path is not None:
        yield
        return
    with _advisory_locks(target, [region], wait=True):
        yield


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
                    where = f"{region} in " if region else ""
                    raise LockedError(
                        f"Another sync is writing {where}{target.display}; let it finish, "
                        "or pass --wait to start when it does."
                    )
        except sa_exc.SQLAlchemyError as exc:
            raise _translate(exc, target) from None
        yield
    finally:
        conn.close()  # with the engine disposed, the session ends and its locks with it
        engine.dispose()


@contextmanager
def removed_unless_stored(target: DbTarget) -> Iterator[Callable[[], None]]:
    """Delete a database file this run created unless the run stored something.

    A new, empty catalog would otherwise hide the shipped one from every later read.
    """
    created = target.path is not None and not target.path.exists()
    kept = False

    def keep() -> None:
        nonlocal kept
        kept = True

    try:
        yield keep
    finally:
        if created and not kept and target.path is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                target.path.with_name(target.path.name + suffix).unlink(missing_ok=True)
