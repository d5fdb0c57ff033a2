"""pai-image-catalog: an offline, queryable catalog of Alibaba Cloud PAI's official images."""

from catalog.config import ShippedCatalogWarning, UnsyncedCatalogWarning, __version__
from catalog.errors import (
    AmbiguousError,
    CatalogError,
    DatabaseError,
    InputError,
    NotFoundError,
    QueryError,
    UnsupportedError,
    UsageError,
)
from catalog.read.filters import ImageScope
from catalog.read.imageinfo import ImageInfo
from catalog.read.images import list_images, list_versions, retrieve, show

__all__ = [
    "AmbiguousError",
    "CatalogError",
    "DatabaseError",
    "ImageInfo",
    "ImageScope",
    "InputError",
    "NotFoundError",
    "QueryError",
    "ShippedCatalogWarning",
    "UnsupportedError",
    "UnsyncedCatalogWarning",
    "UsageError",
    "__version__",
    "list_images",
    "list_versions",
    "retrieve",
    "show",
]
