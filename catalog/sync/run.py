"""Bring listings into the catalog: saved API responses, or a live crawl; one store path."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select

from catalog.account import Credentials, default_region, resolve_credentials
from catalog.config import hide_password, resolve_target, utcnow
from catalog.errors import CatalogError, DatabaseError, SafetyError, UsageError
from catalog.parse import records
from catalog.parse.uri import check_region
from catalog.store import db, locks, runs
from catalog.store.writer import Guards, ListingWriter, apply_listing, hosts_elsewhere, image_t
from catalog.sync import BACKOFF, PAGE_SIZE, RETRIES, TIMEOUT, WORKERS, crawl
from catalog.sync.client import ClientSettings, PaiClient, endpoint_for

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]  # (region, pages done, pages planned)


def import_files(
    paths: Sequence[Path],
    region: str,
    *,
    db_option: str | None = None,
    allow_mass_removal: bool = False,
    allow_mass_change: bool = False,
    wait: bool = False,
) -> runs.RunStats:
    """Import ListImages bodies as one complete listing of ``region`` (one run, one transaction)."""
    region = check_region(region)
    images = records.load_files(paths)
    _check_region_of(images, region)
    target = resolve_target(db_option, write=True)
    with (
        locks.write_lock(target, [region], wait=wait, holder="import") as held,
        db.writable(target) as engine,
    ):
        detail = ", ".join(path.name for path in paths)
        run = runs.RunInfo(region, "import", detail=detail, started_at=utcnow())
        guards = Guards(allow_mass_removal, allow_mass_change)
        return apply_listing(engine, run, images, guards=guards, confirm=held.confirm)


def _check_region_of(images: Sequence[records.ApiImage], region: str) -> None:
    """Refuse a listing whose registry hosts all name another region: a misspelt --region
    would create a region of its own, a copy of the one meant."""
    elsewhere = hosts_elsewhere(images, region)
    if elsewhere is not None:
        meant, counted = elsewhere
        raise UsageError(
            f"The images' registry hosts name {counted}, not {region}; import them with "
            f"--region {meant}."
        )


@dataclass(frozen=True)
class SyncOptions:
    """What to crawl and how; the CLI builds one from its options."""

    regions: tuple[str, ...] = ()
    endpoints: Mapping[str, str] = field(default_factory=dict)
    vpc: bool = False
    page_size: int = PAGE_SIZE
    workers: int = WORKERS
    verify: bool = True
    allow_mass_removal: bool = False
    allow_mass_change: bool = False
    wait: bool = False
    client: ClientSettings = field(default_factory=ClientSettings)


@dataclass(frozen=True)
class RegionResult:
    """How one region's sync ended."""

    region: str
    ok: bool
    seen: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    restored: int = 0
    pages: int = 0
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    run_id: int | None = None
    error: str | None = None


def _known_regions(engine: Engine) -> list[str]:
    table = image_t
    with engine.connect() as conn:
        return list(
            conn.execute(select(table.c.region).distinct().order_by(table.c.region)).scalars()
        )


def _client(region: str, credentials: Credentials, options: SyncOptions) -> PaiClient:
    endpoint = endpoint_for(region, options.endpoints, vpc=options.vpc)
    return PaiClient(region, endpoint, credentials, options.client)


def _sync_region(
    engine: Engine,
    client: PaiClient,
    options: SyncOptions,
    progress: Progress | None,
    confirm: Callable[[], None] | None = None,
) -> RegionResult:
    """Crawl one region with ``client`` and store it; closes the client."""
    region, started, clock = client.region, utcnow(), time.monotonic()
    endpoint = hide_password(client.base_url)  # an endpoint URL may carry a password

    def run_info(pages: int) -> runs.RunInfo:
        counters = client.counters
        return runs.RunInfo(
            region, "sync", endpoint, started, pages, counters.requests, counters.retries
        )

    def on_page(done: int, planned: int) -> None:
        if progress is not None:
            progress(region, done, planned)

    pages = 0
    log.info("%s: syncing from %s", region, endpoint)
    guards = Guards(options.allow_mass_removal, options.allow_mass_change)
    writer = ListingWriter(engine, run_info(0), guards=guards, confirm=confirm)
    try:
        # The writer stores the first pass while later pages are still on the wire.
        with writer:
            result = crawl.crawl(
                client.list_images_page,
                writer,
                page_size=options.page_size,
                workers=options.workers,
                verify=options.verify,
                progress=on_page,
            )
            pages = result.pages
            stats = writer.finish(run_info(pages))
    except CatalogError as exc:
        log.info("%s: sync failed: %s", region, exc)  # the summary line says it too
        info = run_info(pages)
        run_id = None
        if not isinstance(exc, (SafetyError, DatabaseError)):  # those record themselves
            run_id = runs.record_failure(engine, info, str(exc), writer.spent_run_id)
        return RegionResult(
            region, False, pages=pages, requests=info.requests, retries=info.retries,
            seconds=time.monotonic() - clock, run_id=run_id, error=str(exc),
        )  # fmt: skip
    finally:
        client.close()
    return RegionResult(
        region, True, stats.seen, stats.added, stats.changed, stats.removed, stats.restored,
        pages, client.counters.requests, client.counters.retries, time.monotonic() - clock,
        stats.run_id,
    )  # fmt: skip


def sync(
    options: SyncOptions,
    *,
    db_option: str | None = None,
    credentials: Credentials | None = None,
    progress: Progress | None = None,
) -> list[RegionResult]:
    """Crawl each region and store it as one run; a failed region leaves its catalog as it was.

    Without regions, the region the environment binds (PAI_CATALOG_REGION,
    ALIBABA_CLOUD_REGION_ID, the aliyun CLI profile's region_id) is synced, else the regions
    already in the catalog.
    """
    bound = None if options.regions else default_region()
    regions = [
        check_region(region) for region in options.regions or ([bound.region] if bound else [])
    ]
    target = resolve_target(db_option, write=True)
    if regions:
        _check_endpoints(options, regions)
    elif target.path is not None and not target.path.exists():
        raise UsageError(_NO_REGIONS)  # before the lock or the catalog make a file
    credentials = credentials or resolve_credentials()
    with (
        locks.write_lock(target, regions, wait=options.wait, holder="sync") as held,
        db.writable(target) as engine,
    ):
        if not regions:
            regions = _known_regions(engine)
            if not regions:
                raise UsageError(_NO_REGIONS)
            _check_endpoints(options, regions)
        return [
            _sync_region(
                engine, _client(region, credentials, options), options, progress, held.confirm
            )
            for region in regions
        ]


_NO_REGIONS = "The catalog has no regions yet; name one with --region cn-hangzhou."


def _check_endpoints(options: SyncOptions, regions: Sequence[str]) -> None:
    """Refuse a sync where endpoints are named per region but a region being synced has none:
    a misspelt region (or endpoint) would otherwise send that region's crawl to the live API.
    Endpoints for other regions are fine (one setting shared by one cron line per region)."""
    named = set(options.endpoints) - {""}
    if not named or "" in options.endpoints:
        return
    bare = [region for region in regions if region not in named]
    if bare:
        raise UsageError(
            f"--endpoint names {', '.join(sorted(named))} but not {', '.join(bare)}, which "
            "would go to the live API; give it an endpoint too (REGION=URL), or sync only the "
            "regions named."
        )


def sync_options(
    *,
    regions: Sequence[str] = (),
    endpoints: Sequence[str] = (),
    vpc: bool = False,
    page_size: int = PAGE_SIZE,
    workers: int = WORKERS,
    retries: int = RETRIES,
    backoff: float = BACKOFF,
    timeout: float = TIMEOUT,
    verify: bool = True,
    allow_mass_removal: bool = False,
    allow_mass_change: bool = False,
    wait: bool = False,
) -> SyncOptions:
    """SyncOptions from plain values, as the command line gives them."""
    from catalog.sync.client import parse_endpoints

    found = parse_endpoints(list(endpoints))
    checked = tuple(dict.fromkeys(check_region(r) for r in regions))
    if "" in found and len(checked) > 1 and len(found) == 1:
        raise UsageError(
            "One --endpoint URL cannot serve several regions; write --endpoint REGION=URL "
            "for each region."
        )
    return SyncOptions(
        regions=checked,
        endpoints=found,
        vpc=vpc,
        page_size=page_size,
        workers=workers,
        verify=verify,
        allow_mass_removal=allow_mass_removal,
        allow_mass_change=allow_mass_change,
        wait=wait,
        client=ClientSettings(
            read_timeout=timeout, retries=retries, backoff=backoff, pool_size=max(workers, 1) + 1
        ),
    )
