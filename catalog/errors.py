"""Domain errors: one root, a few kinds; only the CLI turns them into click errors."""

from __future__ import annotations


class CatalogError(Exception):
    """Root of every error pai-catalog raises on purpose."""


class UsageError(CatalogError):
    """The caller asked for something malformed (a bad option value, an unknown format)."""


class DatabaseError(CatalogError):
    """The database is missing, corrupt, at the wrong schema revision, or not writable."""


class InputError(CatalogError):
    """An input file or API page is malformed; nothing was written."""


class NotFoundError(CatalogError):
    """Nothing in the catalog matches the request."""


class AmbiguousError(CatalogError):
    """The request matches images in several places and needs narrowing."""
