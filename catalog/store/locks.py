"""The write lock every writer takes: a file lock beside an SQLite catalog, advisory locks on
PostgreSQL."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, text
from sqlalchemy import exc as sa_exc

from catalog.config import DbTarget
from catalog.errors import DatabaseError, LockedError
from catalog.store.db import check_writable, make_engine, make_folder, translate

# The first key of pai-catalog's PostgreSQL advisory locks for writers: "PAIC" in ASCII. The
# second key is 0 for the whole catalog, else a hash of the region.
_SYNC_LOCKS = 0x50414943


class Held:
    """A write lock being held. ``confirm`` raises LockedError if it was lost meanwhile: a
    PostgreSQL session can end under a long run (a server timeout, pg_terminate_backend), and
    its locks with it, so a writer confirms its lock before it commits."""

    def __init__(self, confirm: Callable[[], None] | None = None) -> None:
        self._confirm = confirm

    def confirm(self) -> None:
        if self._confirm is not None:
            self._confirm()


@contextmanager
def write_lock(
    target: DbTarget, regions: Sequence[str] = (), *, wait: bool = False, holder: str = "sync"
) -> Iterator[Held]:
    """Hold the catalog's write lock, which every writer takes (sync, import, db upgrade,
    db reparse and db forget-region): a second writer fails at once, or waits with ``wait``.

    SQLite uses an flock on a file beside the database (beside the file a symbolic link names,
    so that every name of a catalog shares one lock), which names its holder (pid and
    ``holder``) for the message a second writer gets; the kernel drops it if the holder dies,
    so a killed writer never leaves a stale lock. PostgreSQL uses session advisory locks, one
    per region, so that syncs of different regions run side by side; without ``regions``
    (every region, db upgrade or db reparse) the whole catalog is locked.
    """
    if target.path is None:
        with _advisory_locks(target, regions, wait=wait, holder=holder) as held:
            yield held
        return
    import fcntl

    check_writable(target)
    make_folder(target.path)
    real = Path(os.path.realpath(target.path))
    lock_path = real.with_name(real.name + ".lock")
    handle = _open_lock(lock_path, target)
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockedError(_locked(target.display, _holder(handle))) from None
        try:
            _announce(handle, f"{os.getpid()} {holder}")
            yield Held()
        finally:
            _announce(handle, "")
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_lock(lock_path: Path, target: DbTarget) -> IO[str]:
    """The lock file, opened for writing; never through a symbolic link or as a hard link of
    another file, either of which could make a writer (root's cron job, say) truncate a file
    it names, and never anything but a file."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(lock_path, flags | getattr(os, "O_NONBLOCK", 0), 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            reason = "it is a symbolic link; remove it"
        else:
            reason = f"{exc.strerror or exc}; make its folder writable"
        raise DatabaseError(
            f"Cannot lock {target.display}: cannot open {lock_path} ({reason}), or point --db "
            "at a catalog in another folder."
        ) from None
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode) or found.st_nlink > 1:
        os.close(fd)
        what = "is not a regular file" if found.st_nlink <= 1 else "has another name (a hard link)"
        raise DatabaseError(
            f"Cannot lock {target.display}: {lock_path} {what}; remove it, or point --db at a "
            "catalog in another folder."
        )
    os.set_blocking(fd, True)
    return os.fdopen(fd, "r+", encoding="utf-8")


def _announce(handle: IO[str], text: str) -> None:
    """Say in the lock file who holds it (nothing when released); best effort."""
    try:
        handle.seek(0)
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
def _advisory_locks(
    target: DbTarget, regions: Sequence[str], *, wait: bool, holder: str
) -> Iterator[Held]:
    """Every sync shares the catalog's lock and holds its regions' locks alone; a sync of the
    whole catalog holds the catalog's lock alone. Locks are taken in one order, so two
    waiting syncs never deadlock, on a connection of their own that ends with the sync (or
    with its process: the server then drops the locks)."""
    engine = make_engine(target)
    if engine.dialect.name != "postgresql":
        engine.dispose()
        yield Held()
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
            # The session sits idle while the run writes on another one: a server that ends
            # idle sessions would end it, and drop the locks.
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                conn.execute(text("SET idle_session_timeout = 0"))  # PostgreSQL 14 and later
            # Named, so that a second writer's message can say who holds the lock.
            conn.execute(text("SELECT set_config('application_name', :name, false)"),
                         {"name": f"{_APPLICATION} {holder}"})  # fmt: skip
            for shared, key, region in wanted:
                if not _advisory_lock(conn, key, shared=shared, wait=wait):
                    raise LockedError(_server_locked(conn, target.display, key, region))
        except sa_exc.SQLAlchemyError as exc:
            raise translate(exc, target) from None

        def confirm() -> None:
            try:
                held = conn.execute(_HELD, {"space": _SYNC_LOCKS}).scalar()
            except sa_exc.SQLAlchemyError:
                held = 0
            if held != len(wanted):
                raise LockedError(
                    f"The write lock on {target.display} was lost while the run was under way "
                    "(its database session ended), so another writer may have started; "
                    "nothing was stored: run again."
                )

        yield Held(confirm)
    finally:
        conn.close()  # with the engine disposed, the session ends and its locks with it
        engine.dispose()


_APPLICATION = "pai-catalog"
_HOLDER = text(
    "SELECT a.application_name, a.usename, a.pid FROM pg_locks l "
    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
    "AND l.classid = (:space)::bigint::oid AND l.objid = (:key)::bigint::oid "
    "AND l.pid <> pg_backend_pid() ORDER BY l.pid LIMIT 1"
)


def _server_locked(conn: Connection, display: str, key: int, region: str) -> str:
    """Who holds a lock on the server: a pai-catalog command names itself in its session's
    application_name; any other session is named by its role, application and pid (a
    session that took the catalog's advisory lock by hand, say)."""
    try:
        found = conn.execute(_HOLDER, {"space": _SYNC_LOCKS, "key": key & 0xFFFFFFFF}).first()
    except sa_exc.SQLAlchemyError:
        found = None
    if found is None:
        return _locked(display, None, region)
    application, role, pid = found
    if str(application or "").startswith(_APPLICATION + " "):
        return _locked(display, f"{application} (server pid {pid})", region)
    where = f"{region} in " if region else ""
    return (
        f"Another session (role {role}, application {application or 'unnamed'!r}, server pid "
        f"{pid}) holds the write lock on {where}{display}; wait for it to end, or ask its "
        "owner to end it (pg_terminate_backend, by someone allowed to)."
    )


_HELD = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND pid = pg_backend_pid() AND classid = (:space)::bigint::oid"
)
