"""The write lock every writer takes: a file lock beside an SQLite catalog, advisory locks on
PostgreSQL."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO

from sqlalchemy import Connection, text
from sqlalchemy import exc as sa_exc

from catalog.config import DbTarget
from catalog.db import check_writable, make_engine, make_folder, translate
from catalog.errors import DatabaseError, LockedError

# The first key of pai-catalog's PostgreSQL advisory locks for writers: "PAIC" in ASCII. The
# second key is 0 for the whole catalog, else a hash of the region.
_SYNC_LOCKS = 0x50414943


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
        make_folder(target.path)
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
        raise translate(exc, target) from None
    try:
        try:
            for shared, key, region in wanted:
                if not _advisory_lock(conn, key, shared=shared, wait=wait):
                    raise LockedError(_locked(target.display, None, region))
        except sa_exc.SQLAlchemyError as exc:
            raise translate(exc, target) from None
        yield
    finally:
        conn.close()  # with the engine disposed, the session ends and its locks with it
        engine.dispose()
