"""The schema as typed SQLAlchemy models; migrations/ must build exactly this."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from catalog.parse.times import SQLITE_PATTERN, SQLITE_STORAGE

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _text(length: int) -> TypeEngine[str]:
    """VARCHAR(length) in SQLite files, as they always were; on PostgreSQL, TEXT: the lengths
    were never rules, and SQLite never enforced them (migration 0007)."""
    return String(length).with_variant(Text(), "postgresql")


def _ordered(length: int | None = None) -> TypeEngine[str]:
    """A column that is sorted or range-compared: on PostgreSQL it compares bytes (COLLATE "C"),
    as SQLite does, whatever the database's locale (migration 0007)."""
    base = Text() if length is None else String(length)
    return base.with_variant(Text(collation="C"), "postgresql")


def _time() -> TypeEngine[datetime]:
    """A time, naive UTC; SQLite files hold it as ISO 8601 text with a Z (migration 0009)."""
    stored = sqlite.DATETIME(storage_format=SQLITE_STORAGE, regexp=SQLITE_PATTERN)  # type: ignore[no-untyped-call]
    return DateTime().with_variant(stored, "sqlite")


# The views the migrations create (0009 gave them their present names), which no model describes.
VIEWS = ("v_image", "v_image_event", "v_latest")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SyncRun(Base):
    """One sync or import of one region: a complete listing, applied in one transaction."""

    __tablename__ = "sync_run"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'ok', 'failed')", name="status"),
        Index("ix_sync_run_region_status", "region", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    region: Mapped[str] = mapped_column(_ordered(64))
    source: Mapped[str] = mapped_column(_text(16))  # "sync", "import" or "digests"
    detail: Mapped[str | None] = mapped_column(Text)  # endpoint or file names
    started_at: Mapped[datetime] = mapped_column(_time())
    finished_at: Mapped[datetime | None] = mapped_column(_time())
    status: Mapped[str] = mapped_column(_text(16))
    pages: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    requests: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    retries: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    seen: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    added: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    changed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    removed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    restored: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)


class Image(Base):
    """The identity of one image in one region, and when it came and went."""

    __tablename__ = "image"
    __table_args__ = (UniqueConstraint("region", "image_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    region: Mapped[str] = mapped_column(_ordered(64))
    image_id: Mapped[str] = mapped_column(_ordered(255))
    first_seen_run_id: Mapped[int] = mapped_column(ForeignKey("sync_run.id"))
    # Set when the image is removed: the last run that still listed it. A live image was seen by
    # the latest successful run of its region; v_image computes that.
    last_seen_run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_run.id"))
    removed_run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_run.id"), index=True)


class ImageVersion(Base):
    """One state of an image: its API fields and what they mean, valid over a span of runs."""

    __tablename__ = "image_version"
    __table_args__ = (
        CheckConstraint("parse_status IN ('ok', 'partial', 'unrecognized')", name="parse_status"),
        Index("ix_image_version_valid", "valid_from", "valid_to"),
        Index("ix_image_version_image_pk_is_latest", "image_pk", "is_latest"),
        Index("ix_image_version_uri", "uri"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_pk: Mapped[int] = mapped_column(ForeignKey("image.id"))
    region: Mapped[str] = mapped_column(_ordered(64))
    valid_from_run_id: Mapped[int] = mapped_column(ForeignKey("sync_run.id"))
    valid_to_run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_run.id"))
    valid_from: Mapped[datetime] = mapped_column(_time())
    valid_to: Mapped[datetime | None] = mapped_column(_time())
    is_latest: Mapped[bool] = mapped_column(Boolean)
    content_hash: Mapped[str] = mapped_column(_text(64))
    # API fields, as listed
    image_id: Mapped[str] = mapped_column(_ordered(255))
    name: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    uri: Mapped[str | None] = mapped_column(_ordered())
    accessibility: Mapped[str | None] = mapped_column(_text(32))
    workspace_id: Mapped[str | None] = mapped_column(_text(64))
    user_id: Mapped[str | None] = mapped_column(_text(64))
    parent_user_id: Mapped[str | None] = mapped_column(_text(64))
    gmt_create_time: Mapped[str | None] = mapped_column(_ordered(40))
    gmt_modified_time: Mapped[str | None] = mapped_column(_text(40))
    size: Mapped[int | None] = mapped_column(BigInteger)
    source_id: Mapped[str | None] = mapped_column(Text)
    source_type: Mapped[str | None] = mapped_column(_text(64))
    # the URI, split
    host: Mapped[str | None] = mapped_column(Text)
    namespace: Mapped[str | None] = mapped_column(Text)
    repository: Mapped[str | None] = mapped_column(Text)
    tag: Mapped[str | None] = mapped_column(Text)
    digest: Mapped[str | None] = mapped_column(Text)
    # what the labels and the tag mean
    official: Mapped[bool] = mapped_column(Boolean)
    framework: Mapped[str | None] = mapped_column(_ordered())
    framework_key: Mapped[str | None] = mapped_column(Text)  # lower-cased, for matching
    framework_version: Mapped[str | None] = mapped_column(Text)
    version_key: Mapped[str] = mapped_column(_ordered())
    version_class: Mapped[int] = mapped_column(Integer)  # 2 release, 1 prerelease, 0 none
    accelerator: Mapped[str | None] = mapped_column(_text(16))
    python_version: Mapped[str | None] = mapped_column(_text(16))
    cuda_version: Mapped[str | None] = mapped_column(_text(16))
    os_version: Mapped[str | None] = mapped_column(_text(64))
    components: Mapped[str | None] = mapped_column(Text)  # JSON [[name, version], ...]
    build_suffix: Mapped[str | None] = mapped_column(Text)
    scopes: Mapped[str | None] = mapped_column(Text)  # comma-joined copy of image_scope
    scope_inferred: Mapped[bool] = mapped_column(Boolean)
    parse_status: Mapped[str] = mapped_column(_text(16))
    parse_reason: Mapped[str | None] = mapped_column(Text)


class ImageLabel(Base):
    """Every label of an image version, unknown keys included."""

    __tablename__ = "image_label"
    # The primary key is the table: no rowid, no second copy of every key (migration 0004).
    __table_args__ = ({"sqlite_with_rowid": False},)

    version_id: Mapped[int] = mapped_column(ForeignKey("image_version.id"), primary_key=True)
    key: Mapped[str] = mapped_column(_ordered(255), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)


class VersionScope(Base):
    """Where an image version runs: training (DLC), inference (EAS), develop (DSW)."""

    __tablename__ = "image_scope"
    __table_args__ = (
        CheckConstraint("scope IN ('training', 'inference', 'develop')", name="scope"),
        {"sqlite_with_rowid": False},
    )

    version_id: Mapped[int] = mapped_column(ForeignKey("image_version.id"), primary_key=True)
    scope: Mapped[str] = mapped_column(_text(16), primary_key=True)


class ImageEvent(Base):
    """An addition, change, removal or restoration of an image, tied to its run."""

    __tablename__ = "image_event"
    __table_args__ = (
        CheckConstraint("kind IN ('added', 'changed', 'removed', 'restored')", name="kind"),
        Index("ix_image_event_image_pk_id", "image_pk", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("sync_run.id"), index=True)
    image_pk: Mapped[int] = mapped_column(ForeignKey("image.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("image_version.id"))
    kind: Mapped[str] = mapped_column(_text(16))
    changed_fields: Mapped[str | None] = mapped_column(Text)  # JSON list of field names


class ImageManifest(Base):
    """What an image URI's tag pointed at, as its registry answered: one row per digest the
    URI was seen to point at, the newest (highest id) current (migration 0010)."""

    __tablename__ = "image_manifest"
    __table_args__ = (Index("ix_image_manifest_uri_id", "uri", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uri: Mapped[str] = mapped_column(_ordered())
    digest: Mapped[str] = mapped_column(_text(80))  # sha256:<64 hex>
    media_type: Mapped[str | None] = mapped_column(Text)
    platforms: Mapped[str | None] = mapped_column(Text)  # comma-joined os/architecture[/variant]
    seen_at: Mapped[datetime] = mapped_column(_time())  # first answered
    checked_at: Mapped[datetime] = mapped_column(_time())  # last answered
    run_id: Mapped[int] = mapped_column(ForeignKey("sync_run.id"))  # the run that first saw it


class ImageManifestMiss(Base):
    """A URI whose registry did not say what its tag points at, when it last failed and why;
    the row goes when an answer comes (migration 0010)."""

    __tablename__ = "image_manifest_miss"

    uri: Mapped[str] = mapped_column(_ordered(), primary_key=True)
    failed_at: Mapped[datetime] = mapped_column(_time())
    failures: Mapped[int] = mapped_column(Integer)  # in a row
    reason: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[int] = mapped_column(ForeignKey("sync_run.id"))  # the run that last failed


# Serves resolve's ORDER BY, so "latest" stops at the first matching row (migrations 0005-6);
# only images tying on version and time are sorted by URI.
Index(
    "ix_image_version_resolve",
    ImageVersion.framework_key,
    ImageVersion.accelerator,
    ImageVersion.version_class.desc(),
    ImageVersion.version_key.desc(),
    # NULLS LAST is what DESC means in SQLite; 0005 says it outright for other databases.
    ImageVersion.gmt_create_time.desc().nulls_last(),
)
