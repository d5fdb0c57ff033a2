"""Run rows: what a run is before it touches the catalog, what it did, and how it failed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy import exc as sa_exc

from catalog.config import utcnow
from catalog.errors import SafetyError, Terminated
from catalog.store.models import Base, SyncRun

run_t = Base.metadata.tables[SyncRun.__tablename__]


@dataclass(frozen=True)
class RunInfo:
    """What a run is, before the catalog is touched: its region, origin and crawl cost."""

    region: str
    source: str  # "sync" or "import"
    detail: str | None = None
    started_at: datetime | None = None
    pages: int = 0
    requests: int = 0
    retries: int = 0


@dataclass(frozen=True)
class RunStats:
    """What one run did to one region."""

    run_id: int
    region: str
    seen: int
    added: int
    changed: int
    removed: int
    restored: int


def start_run(conn: Connection, run: RunInfo, run_id: int | None = None) -> int:
    """Insert the run's row, numbered ``run_id`` when that number is free."""
    if run_id is not None and conn.execute(select(run_t.c.id).where(run_t.c.id == run_id)).first():
        run_id = None
    result = conn.execute(
        insert(run_t).values(
            **({} if run_id is None else {"id": run_id}),
            region=run.region,
            source=run.source,
            detail=run.detail,
            started_at=run.started_at or utcnow(),
            status="running",
            pages=run.pages,
            requests=run.requests,
            retries=run.retries,
        )
    )
    return run_id or int(result.inserted_primary_key[0])  # type: ignore[index]


def failure_text(exc: BaseException) -> str:
    """What a failed run's row says of what stopped it."""
    if isinstance(exc, Terminated):
        return "terminated (SIGTERM)"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (SIGINT)"
    if isinstance(exc, SafetyError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def record_failure(
    engine: Engine, run: RunInfo, error: str, run_id: int | None = None
) -> int | None:
    """Record a failed run in its own transaction (as number ``run_id``, the rolled-back
    attempt's, when free); the catalog itself is untouched."""
    try:
        with engine.begin() as conn:
            run_id = start_run(conn, run, run_id)
            conn.execute(
                update(run_t)
                .where(run_t.c.id == run_id)
                .values(status="failed", finished_at=utcnow(), error=error[:2000])
            )
            return run_id
    except sa_exc.SQLAlchemyError:
        return None
