"""Domain errors: one root, a few kinds; only the CLI turns them into click errors.

The kinds a caller of ``retrieve`` meets are also the built-in exceptions the PAI SDK raises
for the same cases, so code written against ``pai.image`` keeps catching them: a request the
caller got wrong is a ValueError; nothing found, too much found, or a database or credentials
file that cannot be used, a RuntimeError."""

from __future__ import annotations


class CatalogError(Exception):
    """Root of every error pai-catalog raises on purpose."""


def first_line(exc: BaseException) -> str:
    """What a driver's error says, for a one-line message: the first line of the driver's own
    exception (SQLAlchemy wraps it; psycopg adds hints on further lines), without its final
    period; its kind when it says nothing."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


class UsageError(CatalogError, ValueError):
    """The caller asked for something malformed (a bad option value, an unknown format, a
    version request that is no version)."""


class DatabaseError(CatalogError, RuntimeError):
    """The database is missing, corrupt, at the wrong schema revision, or not writable."""

    @classmethod
    def corrupt(cls, name: str, reason: str) -> DatabaseError:
        """A file SQLite cannot read as a database: damaged, or never one."""
        return cls(
            f"{name} is corrupt or not an SQLite database ({reason}); restore it from a copy "
            "or point --db at another file."
        )

    @classmethod
    def not_a_catalog(cls, name: str, reason: str, *, empty: bool) -> DatabaseError:
        """A database that pai-catalog did not create; an empty one can become a catalog."""
        advice = (
            "point --db at a catalog, or, if it is empty, create one in it with "
            "'pai-catalog db upgrade'"
            if empty
            else "point --db at another file"
        )
        return cls(f"{name} is not a pai-catalog database ({reason}); {advice}.")

    @classmethod
    def newer_revision(cls, name: str, revision: str) -> DatabaseError:
        return cls(
            f"{name} is at schema revision {revision}, which this pai-catalog does not know: "
            "it was written by a newer version; upgrade pai-catalog."
        )

    @classmethod
    def not_text(cls, name: str) -> DatabaseError:
        """A file whose schema is not UTF-8 text; the decode error itself would quote bytes."""
        return cls(
            f"{name} is corrupt: its schema is not valid UTF-8 text; restore it from a copy "
            "or point --db at another file."
        )


class InputError(CatalogError):
    """An input file or API page is malformed; nothing was written."""


class QueryError(CatalogError):
    """A statement of ``sql`` failed or was stopped: the database's own error, a timeout, a
    resource bound, or an interrupt; the catalog is untouched."""


class NotFoundError(CatalogError, RuntimeError):
    """Nothing in the catalog matches the request."""


class UnsupportedError(CatalogError, ValueError):
    """The catalog knows no framework, or no accelerator, of the name asked for."""


class AmbiguousError(CatalogError, RuntimeError):
    """The request matches images in several places and needs narrowing."""


class CredentialsError(CatalogError, RuntimeError):
    """No usable Alibaba Cloud credentials were found, or a credentials file is malformed."""


class ApiError(CatalogError):
    """The PAI API answered with an error, or not at all, after every allowed attempt."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class AuthError(ApiError):
    """The API refused the credentials or the permission: retrying will not help."""


class CrawlError(CatalogError):
    """The listing kept changing, or did not add up, through every allowed crawl."""


class SafetyError(CatalogError):
    """A run was refused to protect the catalog (mass removal); nothing was written."""


class LockedError(CatalogError):
    """Another sync holds the database's lock."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (systemd's stop, say): the command stops as Ctrl-C would stop it."""


def did_you_mean(name: str, known: list[str]) -> str:
    """ " Did you mean 'x'?" for the known name closest to a mistyped one, else ""."""
    import difflib  # only for a mistake

    close = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=1)
    return f" Did you mean {next(k for k in known if k.lower() == close[0])!r}?" if close else ""


def quoted(value: object, limit: int = 120) -> str:
    """``repr(value)`` for a message, its middle cut when longer than ``limit`` characters: a
    megabyte argument must not make a megabyte error."""
    text = repr(value)
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return f"{text[:half]} ... {text[-half:]} ({len(text)} characters)"
