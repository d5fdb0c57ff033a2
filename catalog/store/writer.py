"""All writes: store one complete listing of a region as one run, in one transaction."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, bindparam, select, update
from sqlalchemy import exc as sa_exc

from catalog.config import DIGEST_SOURCE, utcnow
from catalog.errors import CatalogError, DatabaseError, InputError, SafetyError
from catalog.parse import PUBLIC_NAMES
from catalog.parse.records import ApiImage
from catalog.parse.text import visible
from catalog.parse.uri import host_region
from catalog.store import pages
from catalog.store.bulk import BulkInserter
from catalog.store.models import Base, Image, ImageEvent, ImageLabel, ImageVersion, VersionScope
from catalog.store.rows import version_row
from catalog.store.runs import RunInfo, RunStats, failure_text, record_failure, run_t, start_run

_tables = Base.metadata.tables
image_t = _tables[Image.__tablename__]
version_t = _tables[ImageVersion.__tablename__]
label_t = _tables[ImageLabel.__tablename__]
scope_t = _tables[VersionScope.__tablename__]
event_t = _tables[ImageEvent.__tablename__]

# Fields whose change makes a new version; "labels" stands for the whole label set.
COMPARED_FIELDS = (
    "name",
    "description",
    "uri",
    "accessibility",
    "workspace_id",
    "user_id",
    "parent_user_id",
    "gmt_create_time",
    "gmt_modified_time",
    "size",
    "source_id",
    "source_type",
)


BATCH = 2000  # rows per INSERT or UPDATE batch
# A run may remove, or change the meaning of (official flag, scopes, accelerator), at most
# this share of a region's live images, or this many, unless told the change is real.
MASS_SHARE = 0.2
MASS_MIN = 5


@dataclass(frozen=True)
class Guards:
    """Which of a run's safety checks are lifted: the listing's change is known to be real."""

    allow_mass_removal: bool = False
    allow_mass_change: bool = False


class _Old(NamedTuple):
    """What a run needs to know of an image already in the catalog."""

    image_pk: int
    removed_run_id: int | None
    version_id: int
    content_hash: str


def _current(conn: Connection, region: str) -> dict[str, _Old]:
    """The latest version of every image of the region, live or removed, by image key."""
    query = (
        select(
            image_t.c.image_id,
            image_t.c.id,
            image_t.c.removed_run_id,
            version_t.c.id,
            version_t.c.content_hash,
        )
        .join(version_t, version_t.c.image_pk == image_t.c.id)
        .where(image_t.c.region == region, version_t.c.is_latest.is_(True))
    )
    return {row[0]: _Old(*row[1:]) for row in conn.execute(query)}


def _chunks(items: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# What an image means to resolve, beyond its version: a change here changes answers.
MEANING_FIELDS = ("official", "scopes", "accelerator")
_State = tuple[dict[str, Any], dict[str, str | None], tuple[Any, ...]]  # fields, labels, meaning


def _old_states(conn: Connection, version_ids: Sequence[int]) -> dict[int, _State]:
    """Compared fields, labels and meaning of old versions, read in batches, to name what
    changed."""
    states: dict[int, _State] = {}
    columns = [version_t.c[name] for name in (*COMPARED_FIELDS, *MEANING_FIELDS)]
    compared = len(COMPARED_FIELDS)
    for chunk in _chunks(version_ids):
        for row in conn.execute(select(version_t.c.id, *columns).where(version_t.c.id.in_(chunk))):
            fields = dict(zip(COMPARED_FIELDS, row[1 : compared + 1], strict=True))
            states[row[0]] = (fields, {}, _meaning(row[compared + 1 :]))
        query = select(label_t.c.version_id, label_t.c.key, label_t.c.value)
        for vid, key, value in conn.execute(query.where(label_t.c.version_id.in_(chunk))):
            states[vid][1][key] = value
    return states


def _meaning(values: Sequence[Any]) -> tuple[Any, ...]:
    official, scopes, accelerator = values
    return (bool(official), scopes or None, accelerator or None)


def _changed_fields(state: _State, image: ApiImage) -> list[str]:
    fields, labels, _ = state
    names = [
        PUBLIC_NAMES.get(name, name)
        for name in COMPARED_FIELDS
        if fields[name] != image.fields.get(name)
    ]
    if labels != dict(image.labels):
        names.append("labels")
    return names


def _last_ok_run(conn: Connection, region: str, before: int) -> int | None:
    query = select(run_t.c.id).where(
        run_t.c.region == region,
        run_t.c.status == "ok",
        run_t.c.source != DIGEST_SOURCE,
        run_t.c.id < before,
    )
    return conn.execute(query.order_by(run_t.c.id.desc()).limit(1)).scalar()


_CLOSE = (
    update(version_t)
    .where(version_t.c.id == bindparam("vid"))
    .values(valid_to=bindparam("now"), valid_to_run_id=bindparam("run"))
)
_NOT_LATEST = update(version_t).where(version_t.c.id == bindparam("vid")).values(is_latest=False)
_MARK = update(image_t).where(image_t.c.id == bindparam("pk"))
_IMAGE_COLUMNS = ("region", "image_id", "first_seen_run_id")
_EVENT_COLUMNS = ("run_id", "image_pk", "version_id", "kind", "changed_fields")


def hosts_elsewhere(images: Sequence[ApiImage], region: str) -> tuple[str, str] | None:
    """When the images' registry hosts name regions, none of them ``region`` (a misspelt
    region): the region most of them name, and each named region with its count."""
    named: dict[str, int] = {}
    for image in images:
        found = host_region(image.fields.get("uri"))
        if found is not None:
            named[found] = named.get(found, 0) + 1
    if not named or region in named:
        return None
    counted = ", ".join(f"{name} ({count})" for name, count in sorted(named.items()))
    return max(named, key=named.__getitem__), counted


class ListingWriter:
    """Store one complete listing of a region as one run, page by page, in one transaction.

    ``open`` starts the transaction and the run; ``add`` compares a page with the catalog and
    writes its new and changed images at once; ``finish`` removes what was not listed, checks
    the mass-removal guard and commits; ``discard`` rolls it all back. Only the catalog's own
    state of the region (image key -> latest version) stays in memory, never the listing.

    As a context manager it rolls back whatever is not finished, and records a failed run for
    failures of the store itself; the caller records crawl failures.
    """

    def __init__(
        self,
        engine: Engine,
        run: RunInfo,
        *,
        guards: Guards = Guards(),
        confirm: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.run = run
        self.guards = guards
        self.confirm = confirm  # raises if the writer's lock was lost: checked before COMMIT
        self._conn: Connection | None = None
        self._txn: Any = None
        self._run_id: int  # set, with _conn, by open()
        self._current: dict[str, _Old] = {}
        # Version rows that read() worked out ahead, by image key and content hash.
        self._ahead: dict[tuple[str, str], dict[str, Any]] = {}
        self._helper: pages.Helper | None = None
        self._helper_tried = False
        self._helper_lock = threading.Lock()
        # A rolled-back run's number, used again: a PostgreSQL sequence never gives one back,
        # and run numbers should not depend on the backend or on how often a crawl restarted.
        self.spent_run_id: int | None = None

    def __enter__(self) -> ListingWriter:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            self.discard()
        finally:
            if self._helper is not None:
                self._helper.close()
        if exc is None or (isinstance(exc, CatalogError) and not isinstance(exc, SafetyError)):
            return
        if isinstance(exc, sa_exc.SQLAlchemyError):
            # One line, whatever the driver quotes: a corrupt file's bytes are cut off (SQLite
            # quotes the undecodable text), and any control character left is escaped.
            said = str(getattr(exc, "orig", None) or exc).split(" with text '")[0]
            reason = visible(said.strip())[:500]
            record_failure(self.engine, self.run, f"database error: {reason}", self.spent_run_id)
            what = f"Could not store the {self.run.region} listing"
            raise DatabaseError(f"{what}: {reason}.") from None
        # A refused run, a bug or an interrupt: the transaction is gone, the failure stays.
        record_failure(self.engine, self.run, failure_text(exc), self.spent_run_id)

    def open(self) -> None:
        """Start (or start again) the run's transaction."""
        self.discard()
        conn = self.engine.connect()
        try:
            txn = conn.begin()
            run_id = start_run(conn, self.run, self.spent_run_id)
            when = select(run_t.c.started_at).where(run_t.c.id == run_id)
            self._now = conn.execute(when).scalar_one()
            self._current = _current(conn, self.run.region)
        except BaseException:
            conn.close()  # rolls back: the run was not started
            raise
        self._conn, self._txn, self._run_id = conn, txn, run_id
        self._live = sum(1 for old in self._current.values() if old.removed_run_id is None)
        self._counts = {"added": 0, "changed": 0, "removed": 0, "restored": 0}
        self._moved = 0  # live images whose official flag, scopes or accelerator changed
        self._seen = 0
        # A region the catalog has never held: its first images must be on its own registry
        # hosts, or the region is likely misspelt (a sync of cn-hangzhuo served cn-hangzhou).
        self._first_of_region = not self._current
        self._insert = BulkInserter(conn)
        self._ahead = {}
        if self._helper is not None:
            self._helper.know(self.run.region, self._stored())

    def discard(self) -> None:
        """Roll back everything since ``open``."""
        if self._conn is None:
            return
        conn, self._conn, self._current, self._ahead = self._conn, None, {}, {}
        self.spent_run_id = self._run_id
        try:
            self._txn.rollback()
        except sa_exc.SQLAlchemyError:
            pass  # nothing was committed; closing the connection drops the rest
        finally:
            conn.close()

    def read(self, body: Any, where: str) -> tuple[list[ApiImage], int | None]:
        """Read one page's body into its images (InputError if malformed), with the version rows
        of its new and changed images worked out ahead of ``add``: from any thread, even while
        ``add``, ``open`` or ``discard`` run, since it reads the catalog's state and adds rows
        to a dict one step each. A row is kept by image key and content hash, so a row read for
        a pass that is then discarded is still right if the same image comes again."""
        answer = None
        helper = self._helper_for(body)
        if helper is not None:
            answer = helper.read(body, where)
        if answer is None:
            answer = pages.read_page(body, where, self.run.region, self._wants_row)
        images, total, rows = answer
        ahead = self._ahead
        for index, row in rows.items():
            image = images[index]
            ahead[image.key, image.content_hash] = row
        return images, total

    def _wants_row(self, image: ApiImage) -> bool:
        old = self._current.get(image.key)
        if old is None or old.removed_run_id is not None:
            return True
        return old.content_hash != image.content_hash

    def _stored(self) -> dict[str, str]:
        """Each listed image's key and content hash, as the catalog holds them."""
        current = self._current.copy()  # one step: add() may be taking images out of it
        return {k: old.content_hash for k, old in current.items() if old.removed_run_id is None}

    def _helper_for(self, body: Any) -> pages.Helper | None:
        """The page helper, started by the first page of a listing large enough to pay."""
        if self._helper is None and not self._helper_tried:
            total = body.get("TotalCount") if isinstance(body, dict) else None
            if isinstance(total, int) and total >= pages.HELPER_MIN_IMAGES:
                with self._helper_lock:
                    if not self._helper_tried:
                        self._helper_tried = True
                        self._helper = pages.Helper.start(self.run.region, self._stored())
        return self._helper

    def add(self, images: Sequence[ApiImage]) -> None:
        """Write the new and changed images of one page (or any part) of the listing."""
        if self._conn is None:
            raise RuntimeError("ListingWriter.add before open")
        conn, region, run_id = self._conn, self.run.region, self._run_id
        if self._first_of_region and images:
            self._first_of_region = False
            elsewhere = hosts_elsewhere(images, region)
            if elsewhere is not None:
                raise InputError(
                    f"The listing's registry hosts name {elsewhere[1]}, not {region}; nothing was "
                    f"stored: is the region {elsewhere[0]}?"
                )
        added: list[ApiImage] = []
        updated: list[tuple[ApiImage, _Old]] = []  # changed or restored
        for image in images:
            old = self._current.pop(image.key, None)
            if old is None:
                added.append(image)
            elif old.removed_run_id is not None or old.content_hash != image.content_hash:
                updated.append((image, old))
        self._seen += len(images)
        if not added and not updated:
            return
        new_pks = self._insert.returning_ids(
            image_t, _IMAGE_COLUMNS, [(region, i.key, run_id) for i in added]
        )
        edited = [old.version_id for img, old in updated if old.content_hash != img.content_hash]
        states = _old_states(conn, edited)
        # Every old version that a new one replaces ends with this run.
        ending = [old.version_id for _, old in updated if old.removed_run_id is None]
        if ending:
            conn.execute(_CLOSE, [{"vid": vid, "now": self._now, "run": run_id} for vid in ending])
        if updated:
            conn.execute(_NOT_LATEST, [{"vid": old.version_id} for _, old in updated])
        fresh = added + [image for image, _ in updated]
        owners = new_pks + [old.image_pk for _, old in updated]
        ahead = self._ahead
        rows = [
            ahead.pop(key) if (key := (image.key, image.content_hash)) in ahead
            else version_row(image, region)
            for image in fresh
        ]  # fmt: skip
        for row, image_pk in zip(rows, owners, strict=True):
            row.update(image_pk=image_pk, valid_from_run_id=run_id, valid_from=self._now)
            row["is_latest"] = True
        names = tuple(rows[0])
        version_ids = self._insert.returning_ids(
            version_t, names, [tuple(row.values()) for row in rows]
        )
        labels, scopes = [], []
        for image, row, vid in zip(fresh, rows, version_ids, strict=True):
            labels += [(vid, k, v) for k, v in image.labels]
            scopes += [(vid, s) for s in (row["scopes"] or "").split(",") if s]
        self._insert.rows(label_t, ("version_id", "key", "value"), labels)
        self._insert.rows(scope_t, ("version_id", "scope"), scopes)
        restored = [old.image_pk for _, old in updated if old.removed_run_id is not None]
        if restored:
            conn.execute(
                _MARK.values(removed_run_id=None, last_seen_run_id=None),
                [{"pk": pk} for pk in restored],
            )
        events: list[tuple[int, int, int, str, str | None]] = [
            (run_id, pk, vid, "added", None) for pk, vid in zip(new_pks, version_ids, strict=False)
        ]
        self._counts["added"] += len(added)
        for (image, old), vid, row in zip(
            updated, version_ids[len(added) :], rows[len(added) :], strict=True
        ):
            kind = "restored" if old.removed_run_id is not None else "changed"
            self._counts[kind] += 1
            changed = []
            if kind == "changed":
                state = states[old.version_id]
                changed = _changed_fields(state, image)
                self._moved += state[2] != _meaning([row[name] for name in MEANING_FIELDS])
            events.append(
                (run_id, old.image_pk, vid, kind, json.dumps(changed) if changed else None)
            )
        self._insert.rows(event_t, _EVENT_COLUMNS, events)

    def finish(self, run: RunInfo | None = None) -> RunStats:
        """Remove what the listing did not name, record the run (with ``run``'s final crawl
        counts when given) and commit."""
        if self._conn is None:
            raise RuntimeError("ListingWriter.finish before open")
        self.run = run or self.run
        conn, region, run_id = self._conn, self.run.region, self._run_id
        gone = [old for old in self._current.values() if old.removed_run_id is None]
        if _mass(len(gone), self._live) and not self.guards.allow_mass_removal:
            raise SafetyError(
                f"{region}: this run would remove {len(gone)} of {self._live} live images "
                f"({len(gone) / self._live:.0%}); nothing was written. If the removal is "
                "real, run again with --allow-mass-removal."
            )
        if _mass(self._moved, self._live) and not self.guards.allow_mass_change:
            raise SafetyError(
                f"{region}: this run would change the official flag, scopes or accelerator of "
                f"{self._moved} of {self._live} live images ({self._moved / self._live:.0%}); "
                "nothing was written. If the change is real, run again with --allow-mass-change."
            )
        if gone:
            last_ok = _last_ok_run(conn, region, run_id)
            for chunk in _chunks(gone):
                conn.execute(
                    _CLOSE, [{"vid": o.version_id, "now": self._now, "run": run_id} for o in chunk]
                )
                conn.execute(
                    _MARK.values(removed_run_id=run_id, last_seen_run_id=last_ok),
                    [{"pk": old.image_pk} for old in chunk],
                )
                self._insert.rows(
                    event_t,
                    _EVENT_COLUMNS,
                    [(run_id, o.image_pk, o.version_id, "removed", None) for o in chunk],
                )
        self._counts["removed"] = len(gone)
        conn.execute(
            update(run_t)
            .where(run_t.c.id == run_id)
            .values(
                status="ok", finished_at=utcnow(), seen=self._seen, pages=self.run.pages,
                requests=self.run.requests, retries=self.run.retries, **self._counts,
            )
        )  # fmt: skip
        if self.confirm is not None:
            self.confirm()
        self._txn.commit()
        self._conn, self._current, self._ahead = None, {}, {}
        conn.close()
        return RunStats(run_id=run_id, region=region, seen=self._seen, **self._counts)


def _mass(count: int, live: int) -> bool:
    """Whether a run touching ``count`` of ``live`` images touches too many to be usual."""
    return count > MASS_MIN and count > MASS_SHARE * live


def apply_listing(
    engine: Engine,
    run: RunInfo,
    images: Sequence[ApiImage],
    *,
    guards: Guards = Guards(),
    confirm: Callable[[], None] | None = None,
) -> RunStats:
    """Store a complete listing of a region as one run: all of it, or nothing but a failure."""
    with ListingWriter(engine, run, guards=guards, confirm=confirm) as writer:
        writer.open()
        for chunk in _chunks(images):
            writer.add(chunk)
        return writer.finish()
