"""Store what registries answered for image URIs (image_manifest), as one digests run per
region in one transaction: a URI's first digest is a new row, the same digest again moves its
checked_at, another digest is a new row and a ``changed`` event of every live image with that
URI."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from catalog.config import DIGEST_SOURCE, MOVED_FIELDS, utcnow
from catalog.store.models import Base, ImageManifest, ImageManifestMiss
from catalog.store.runs import RunInfo, run_t, start_run
from catalog.store.writer import event_t, version_t

manifest_t = Base.metadata.tables[ImageManifest.__tablename__]
miss_t = Base.metadata.tables[ImageManifestMiss.__tablename__]
CHUNK = 500  # URIs per IN (...)


@dataclass(frozen=True)
class Answer:
    """What a registry answered for one URI; ``platforms`` None when it was not read."""

    uri: str
    digest: str
    media_type: str
    platforms: tuple[str, ...] | None


@dataclass(frozen=True)
class Known:
    """A URI's current manifest row."""

    digest: str
    checked_at: datetime


@dataclass(frozen=True)
class DigestStats:
    """What one digests run did in one region."""

    run_id: int
    region: str
    asked: int
    answered: int
    added: int
    moved: int
    failures: tuple[tuple[str, str], ...]  # (uri, why), in the order asked


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _current_rows(conn: Connection, uris: Sequence[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for chunk in _chunks(list(dict.fromkeys(uris))):
        newest = (
            select(func.max(manifest_t.c.id))
            .where(manifest_t.c.uri.in_(chunk))
            .group_by(manifest_t.c.uri)
        )
        for row in conn.execute(select(manifest_t).where(manifest_t.c.id.in_(newest))):
            found[row.uri] = row
    return found


def known(engine: Engine, uris: Sequence[str]) -> dict[str, Known]:
    """The current digest of each of ``uris`` that has one, with when it was last checked."""
    with engine.connect() as conn:
        rows = _current_rows(conn, uris)
    return {uri: Known(row.digest, row.checked_at) for uri, row in rows.items()}


def missed(engine: Engine, uris: Sequence[str]) -> dict[str, datetime]:
    """When each of ``uris`` whose registry did not answer last failed."""
    found: dict[str, datetime] = {}
    with engine.connect() as conn:
        for chunk in _chunks(list(dict.fromkeys(uris))):
            query = select(miss_t.c.uri, miss_t.c.failed_at).where(miss_t.c.uri.in_(chunk))
            found.update({uri: failed_at for uri, failed_at in conn.execute(query)})
    return found


def _platforms(answer: Answer) -> str | None:
    return ",".join(answer.platforms) if answer.platforms else None


def store_answers(
    engine: Engine,
    regions: Mapping[str, Sequence[str]],
    answers: Sequence[Answer],
    failures: Mapping[str, str],
    *,
    started_at: datetime,
    detail: str,
    cost: Mapping[str, tuple[int, int]] | None = None,
    confirm: Callable[[], None] | None = None,
) -> list[DigestStats]:
    """Store one digests run for each region of ``regions`` (region -> the URIs asked for it),
    all in one transaction. A URI asked for several regions is stored once; its move is an
    event in each region that lists it. Digests are dated when the asking began
    (``started_at``, the runs' start), as a listing's states are dated by their run's start;
    ``cost`` gives each URI's (requests, retries)."""
    by_uri = {answer.uri: answer for answer in answers}
    now = started_at
    cost = cost or {}
    stats: list[DigestStats] = []
    with engine.begin() as conn:
        current = _current_rows(conn, list(by_uri))
        stored: dict[str, str] = {}  # uri -> "added" | "moved" | "same", once per transaction
        for region in sorted(regions):
            asked = list(dict.fromkeys(regions[region]))
            run_id = start_run(conn, RunInfo(region, DIGEST_SOURCE, detail, started_at))
            added = moved = answered = 0
            for uri in asked:
                answer = by_uri.get(uri)
                if answer is None:
                    continue
                answered += 1
                if uri not in stored:
                    stored[uri] = _store(conn, current.get(uri), answer, run_id, now)
                if stored[uri] == "added":
                    added += 1
                elif stored[uri] == "moved":
                    moved += 1
                    _events(conn, region, uri, run_id)
            failed = tuple((uri, failures[uri]) for uri in asked if uri in failures)
            status = "failed" if asked and not answered and failed else "ok"
            conn.execute(
                update(run_t)
                .where(run_t.c.id == run_id)
                .values(
                    status=status,
                    finished_at=utcnow(),
                    seen=answered,
                    requests=sum(cost.get(uri, (0, 0))[0] for uri in asked),
                    retries=sum(cost.get(uri, (0, 0))[1] for uri in asked),
                    added=added,
                    changed=moved,
                    error=_summary(failed) if status == "failed" else None,
                    detail=f"{detail}; {_summary(failed)}" if failed and status == "ok" else detail,
                )
            )
            stats.append(DigestStats(run_id, region, len(asked), answered, added, moved, failed))
        _misses(conn, list(by_uri), failures, stats, now)
        if confirm is not None:
            confirm()
    return stats


def _misses(
    conn: Connection,
    answered: Sequence[str],
    failures: Mapping[str, str],
    stats: Sequence[DigestStats],
    now: datetime,
) -> None:
    """Forget the misses of URIs now answered; count those of URIs that failed again."""
    for chunk in _chunks(list(answered)):
        conn.execute(delete(miss_t).where(miss_t.c.uri.in_(chunk)))
    run_of = {uri: run.run_id for run in reversed(stats) for uri, _ in run.failures}
    before: dict[str, int] = {}
    for chunk in _chunks(list(failures)):
        query = select(miss_t.c.uri, miss_t.c.failures).where(miss_t.c.uri.in_(chunk))
        before.update({uri: count for uri, count in conn.execute(query)})
    for uri, reason in failures.items():
        if uri not in run_of:
            continue
        values = {"failed_at": now, "reason": reason[:500], "run_id": run_of[uri]}
        if uri in before:
            conn.execute(
                update(miss_t).where(miss_t.c.uri == uri).values(failures=before[uri] + 1, **values)
            )
        else:
            conn.execute(insert(miss_t).values(uri=uri, failures=1, **values))


def _summary(failed: Sequence[tuple[str, str]]) -> str:
    if not failed:
        return ""
    return f"{len(failed)} not answered, first: {failed[0][1]}"[:2000]


def _store(conn: Connection, row: Any, answer: Answer, run_id: int, now: datetime) -> str:
    if row is not None and row.digest == answer.digest:
        values: dict[str, Any] = {"checked_at": now}
        if answer.platforms is not None:  # read again: what it says now
            values.update(media_type=answer.media_type, platforms=_platforms(answer))
        conn.execute(update(manifest_t).where(manifest_t.c.id == row.id).values(**values))
        return "same"
    conn.execute(
        insert(manifest_t).values(
            uri=answer.uri,
            digest=answer.digest,
            media_type=answer.media_type,
            platforms=_platforms(answer),
            seen_at=now,
            checked_at=now,
            run_id=run_id,
        )
    )
    return "added" if row is None else "moved"


def _events(conn: Connection, region: str, uri: str, run_id: int) -> None:
    """A ``changed`` event of every live image of ``region`` whose URI is ``uri``."""
    live = select(version_t.c.image_pk, version_t.c.id).where(
        version_t.c.region == region, version_t.c.uri == uri, version_t.c.valid_to.is_(None)
    )
    rows = [
        {"run_id": run_id, "image_pk": pk, "version_id": vid, "kind": "changed",
         "changed_fields": MOVED_FIELDS}
        for pk, vid in conn.execute(live)
    ]  # fmt: skip
    if rows:
        conn.execute(insert(event_t), rows)
