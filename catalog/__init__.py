"""pai-image-catalog: an offline, queryable catalog of Alibaba Cloud PAI's official images."""

from catalog.config import UnsyncedCatalogWarning, __version__
from catalog.errors import (
    AmbiguousError,
    CatalogError,
    DatabaseError,
    InputError,
    NotFoundError,
    QueryError,
    UsageError,
)
from catalog.query import ImageInfo, list_images, list_versions, retrieve, show

__all__ = [
    "AmbiguousError",
    "CatalogError",
    "DatabaseError",
    "ImageInfo",
    "InputError",
    "NotFoundError",
    "QueryError",
    "UnsyncedCatalogWarning",
    "UsageError",
    "__version__",
    "list_images",
    "list_versions",
    "retrieve",
    "show",
]
