"""Where the database is: option > PAI_CATALOG_DB > the user's synced file > the shipped one."""

from __future__ import annotations

import contextvars
import os
import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from catalog.errors import UsageError

__version__ = "0.1.0"
ENV_DB = "PAI_CATALOG_DB"
# The schema this code reads and writes: the newest of migrations/versions/, whose ids count up
# from 0001 (a test holds the two equal).
SCHEMA_REVISION = "0010"
# Runs that ask registries what tags point at (source 'digests') list no images: "the last
# sync" of a region never means one of them. LISTING is the SQL condition on sync_run.
DIGEST_SOURCE = "digests"
LISTING = f"source <> '{DIGEST_SOURCE}'"
# The changed_fields of the event a digests run writes when a URI's tag moved to another digest.
MOVED_FIELDS = '["manifest_digest"]'
ENV_REGION = "PAI_CATALOG_REGION"
ENV_MIRROR = "PAI_CATALOG_MIRROR"
# Where the request came from, so that messages name the spelling the caller used: the CLI
# sets "cli" (--region); Python callers see region=.
INTERFACE: contextvars.ContextVar[str] = contextvars.ContextVar("interface", default="python")


@dataclass(frozen=True)
class DbTarget:
    """A database to open: an SQLAlchemy URL, and the file path when it is SQLite."""

    url: str
    path: Path | None

    @property
    def display(self) -> str:
        """How to name the database in messages: the path, or the URL without its password."""
        if self.path is not None:
            return str(self.path)
        return hide_password(self.url)


_SECRET_PARAMS = {"password", "passwd", "pwd", "secret", "token", "sslpassword"}


def hide_password(url: str) -> str:
    """The URL with any password (in the user part or the query) replaced by ***."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***"
    # As SQLAlchemy reads it, a password runs to the next "@" and may hold "/".
    rest = re.sub(r"^([^:/@]*):[^@]*@", r"\1:***@", rest)
    location, slash, tail = rest.partition("/")
    # The host follows the last "@": a password may itself contain "@".
    user_info, at, host = location.rpartition("@")
    if at and ":" in user_info:
        location = user_info.split(":", 1)[0] + ":***@" + host
    path, question, query = tail.partition("?")
    if question:
        pairs = [pair.partition("=") for pair in query.split("&")]
        query = "&".join(
            k + (eq and "=") + ("***" if k.lower() in _SECRET_PARAMS else v) for k, eq, v in pairs
        )
    return f"{scheme}://{location}{slash}{path}{question}{query}"


def utcnow() -> datetime:
    """Now in UTC (naive, as stored); PAI_CATALOG_BUILD_TIME (unix seconds) pins it, so that
    building a catalog to ship is reproducible."""
    epoch = os.environ.get("PAI_CATALOG_BUILD_TIME")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), timezone.utc).replace(tzinfo=None)
    return datetime.now(timezone.utc).replace(tzinfo=None)


def user_db_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pai-catalog" / "catalog.db"


def shipped_db_path() -> Path:
    """The catalog built from public documentation that ships inside the package."""
    from importlib import resources

    try:
        return Path(str(resources.files("catalog.data"))) / "catalog.db"
    except ModuleNotFoundError:  # a checkout on sys.path without an install
        return Path(__file__).resolve().parents[1] / "data" / "catalog.db"


def parse_target(value: str) -> DbTarget:
    """Turn a path or an SQLAlchemy URL into a target; a relative path is taken from the
    working folder."""
    try:
        folder = os.getcwd()
    except OSError:  # the working folder was deleted: only an absolute path or a URL will do
        folder = ""
    return _parse_target(value, folder)


# A warm retrieve() parses its database on every call: remembering the parse makes that call
# 40% faster (7 us instead of 12, scripts/bench.py). The working folder is part of the key,
# since a relative path names another file after a chdir.
@lru_cache(maxsize=64)
def _parse_target(value: str, folder: str) -> DbTarget:
    value = value.strip()
    if not value:
        raise UsageError("The database name is empty; give a file path or an SQLAlchemy URL.")
    if value.startswith("sqlite:"):
        match = re.fullmatch(r"sqlite(?:\+pysqlite)?:///(.+)", value)
        if match is None or match.group(1).startswith(":memory:"):
            raise UsageError(f"Cannot use {value!r}: give an SQLite URL with a file path.")
        return _file_target(Path(folder, Path(match.group(1)).expanduser()))
    if "://" in value:
        location = value.partition("://")[2].partition("/")[0]
        if location.count("@") > 1:
            # SQLAlchemy ends the password at its first "@" and takes the rest for the host,
            # which the driver would then look up, and quote in its error.
            raise UsageError(
                f"The password in {hide_password(value)} holds a raw '@'; write it as %40, or "
                "keep it in PGPASSWORD or ~/.pgpass."
            )
        from sqlalchemy.engine import make_url  # a server's URL: SQLAlchemy reads it anyway

        try:
            port = make_url(value).port
        except ValueError:  # a port that is no number, or an unclosed [IPv6 address]
            port = -1
        if port is not None and not 0 < port < 65536:
            raise UsageError(
                f"Cannot read the host and port of {hide_password(value)}; give a file path or "
                "an SQLAlchemy URL such as postgresql+psycopg://USER@HOST:PORT/DATABASE."
            )
        return DbTarget(url=value, path=None)
    return _file_target(Path(folder, Path(value).expanduser()))


def _file_target(path: Path) -> DbTarget:
    path = path.expanduser().absolute()
    return DbTarget(url=f"sqlite:///{path}", path=path)


def resolve_target(
    option: str | None = None, *, write: bool = False, own: bool = False
) -> DbTarget:
    """The database a command uses; reads fall back to the shipped file, writes never do.

    Reads that answer questions about images use the user's catalog once it holds a successful
    run: a first sync that failed, or was killed, must not hide the shipped catalog behind an
    empty one. A read that falls back for that reason warns (UnsyncedCatalogWarning) and says
    which catalog answered. Reads about the catalog itself (``own``: its runs, its revision, a
    published copy of it) use the user's catalog whenever it exists.
    """
    value = option if option is not None else os.environ.get(ENV_DB)
    if value is not None and (value or option is not None):
        target = parse_target(value)  # an empty --db is an error; an empty variable is unset
        if write and target.path is not None and _same_file(target.path, shipped_db_path()):
            raise UsageError(
                f"{target.display} is the catalog shipped with pai-catalog, which no command "
                "changes; sync or import into a catalog of your own (leave out --db), or a copy."
            )
        return target
    user = user_db_path()
    if write or (own and user.exists()):
        return _file_target(user)
    reason = _unsynced(user)
    if reason is None:
        return _file_target(user)
    shipped = _file_target(shipped_db_path())
    if reason:
        warnings.warn(
            UnsyncedCatalogWarning(
                f"your catalog {user} {reason}, so the shipped catalog ({shipped.path}) "
                "answered; run 'pai-catalog sync' to fill yours."
            ),
            stacklevel=3,
        )
    elif INTERFACE.get() == "cli" or not _SHIPPED_SAID:
        warnings.warn(
            ShippedCatalogWarning(
                f"the shipped catalog ({shipped.path}) answered: a demonstration reconstructed "
                "from public documentation, not PAI's live list; run 'pai-catalog sync' to "
                "build your own, or point PAI_CATALOG_DB at a published copy."
            ),
            stacklevel=3,
        )
        # Python hears it once (under -W error, until it is caught); the CLI remembers it in
        # a file.
        _SHIPPED_SAID.append(True)
    return shipped


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:  # one of them does not exist (yet)
        return False


class UnsyncedCatalogWarning(UserWarning):
    """The user's catalog holds no successful run yet, so the shipped one answered."""


_SHIPPED_SAID: list[bool] = []


class ShippedCatalogWarning(UserWarning):
    """No catalog of the user's exists, so the shipped demonstration answered. Python hears
    it once per process; the CLI says it once per shipped catalog."""


def state_dir() -> Path:
    """Where pai-catalog keeps what it remembers between runs ($XDG_STATE_HOME/pai-catalog)."""
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative path is to be ignored
        base = str(Path.home() / ".local" / "state")
    return Path(base) / "pai-catalog"


# User catalogs, by (device, inode), known to hold a successful run: runs are never deleted,
# so a catalog that held one always will, and reads skip the check.
_SYNCED: set[tuple[int, int]] = set()


def _unsynced(path: Path) -> str | None:
    """Why the user's catalog cannot answer reads yet ("" when it does not exist), or None
    when it can: it holds a successful run, or it is not a catalog a first run left empty,
    and the reader will say what is wrong with it."""
    try:
        stat = os.stat(path)
    except OSError:
        return ""
    if (stat.st_dev, stat.st_ino) in _SYNCED:
        return None
    if stat.st_size == 0:
        return "is empty"
    import sqlite3
    from urllib.parse import quote

    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if not tables:
            return "is empty"
        if "sync_run" not in tables:
            return None
        runs = conn.execute(
            f"SELECT status FROM sync_run WHERE status = 'ok' AND {LISTING} LIMIT 1"
        ).fetchall()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    if runs:
        _SYNCED.add((stat.st_dev, stat.st_ino))
        return None
    return "holds no successful sync or import yet"


def spelled(name: str, option: str | None = None) -> str:
    """An argument as the caller spells it: ``region=`` from Python, ``--region`` (or
    ``option``) from the command line."""
    if INTERFACE.get() == "cli":
        return option or f"--{name.replace('_', '-')}"
    return f"{name}="


def known_revision(revision: str) -> bool:
    """Whether ``revision`` is one of this code's migrations, so that it can upgrade from it."""
    return len(revision) == 4 and revision.isdigit() and "0001" <= revision <= SCHEMA_REVISION
