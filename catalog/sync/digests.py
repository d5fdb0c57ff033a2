"""Ask image URIs' registries what their tags point at, and store it as digests runs.

Which URIs: those a selection names (the list filters), each once; by default only those with
no digest yet, with ``recheck`` every one, the longest unchecked first; at most ``limit`` per
run. The registries are asked without the catalog's lock, a few at a time; the answers are
stored under it in one transaction. A registry that cannot be reached costs only its own URIs:
what was answered is stored, and what was not is reported (digests are enrichment, never a
reason for a sync to fail)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import exc as sa_exc

from catalog.config import resolve_target, utcnow
from catalog.errors import CatalogError, UsageError
from catalog.parse.uri import on_network
from catalog.store import db, locks
from catalog.store.manifests import Answer, DigestStats, known, missed, store_answers
from catalog.sync import (
    DIGEST_BACKOFF,
    DIGEST_LIMIT,
    DIGEST_NETWORKS,
    DIGEST_RETRIES,
    DIGEST_TIMEOUT,
    DIGEST_WORKERS,
)
from catalog.sync.registry import (
    MissingError,
    RegistryClient,
    UnreachableError,
    docker_credentials,
)

log = logging.getLogger(__name__)
GIVE_UP = 3  # a registry that did not answer this many requests in a row is not asked again


@dataclass(frozen=True)
class DigestOptions:
    """How to ask: which URIs, how many, how many at once, how patiently, by which host."""

    recheck: bool = False
    limit: int = DIGEST_LIMIT
    workers: int = DIGEST_WORKERS
    retries: int = DIGEST_RETRIES
    backoff: float = DIGEST_BACKOFF
    timeout: float = DIGEST_TIMEOUT
    network: str = "public"  # the registry host form asked: public, vpc, or as-listed

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or self.limit < 1:
            raise UsageError(f"The limit must be 1 or more URIs, not {self.limit!r}.")
        if not isinstance(self.workers, int) or not 1 <= self.workers <= 32:
            raise UsageError(f"workers must be from 1 to 32, not {self.workers!r}.")
        if self.network not in DIGEST_NETWORKS:
            raise UsageError(f"Unknown network {self.network!r}; use {', '.join(DIGEST_NETWORKS)}.")


@dataclass(frozen=True)
class DigestResult:
    """What a digests job did: its runs (one per region), and what it left for later."""

    runs: tuple[DigestStats, ...]
    selected: int  # URIs the selection named
    candidates: int  # of those, the ones due (without a digest, or all with recheck)
    left: int  # of those, not asked because of the limit

    missing: int = 0  # of the failures, images their registry said it does not have

    @property
    def failures(self) -> tuple[tuple[str, str], ...]:
        return tuple(failure for run in self.runs for failure in run.failures)

    @property
    def nothing_answered(self) -> bool:
        """No registry answered, and not merely that it lacks an image: unreachable,
        refused or misconfigured (exit status 1)."""
        answered = sum(run.answered for run in self.runs)
        return bool(self.runs) and not answered and len(self.failures) > self.missing


def digests(
    selection: Sequence[tuple[str, str]],
    options: DigestOptions = DigestOptions(),
    *,
    db_option: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DigestResult:
    """Ask the registries of ``selection`` ((region, URI) pairs, as a listing gives them) and
    store what they answer."""
    target = resolve_target(db_option, write=True)
    regions_of: dict[str, list[str]] = {}
    for region, uri in selection:
        if uri:
            regions_of.setdefault(uri, []).append(region)
    engine = db.make_engine(target)
    try:
        before = known(engine, list(regions_of))
        failed = missed(engine, list(regions_of))
    except sa_exc.SQLAlchemyError as exc:
        raise db.translate(exc, target) from None
    finally:
        engine.dispose()
    due = [uri for uri in regions_of if options.recheck or uri not in before]

    def last_asked(uri: str) -> datetime:
        """Never asked first, then the longest since an answer or a failure: an image whose
        registry keeps failing waits behind the others instead of taking every run's turn."""
        times = [
            when for when in (failed.get(uri), uri in before and before[uri].checked_at) if when
        ]
        return max(times, default=datetime.min)

    due.sort(key=last_asked)  # stable: the listing's order among equals
    asked = due[: options.limit]
    started = utcnow()
    asked_result = _ask(asked, {u: k.digest for u, k in before.items()}, options, progress)
    answers, failures = asked_result.answers, asked_result.failures
    by_region: dict[str, list[str]] = {}
    for uri in asked:
        for region in dict.fromkeys(regions_of[uri]):
            by_region.setdefault(region, []).append(uri)
    runs: list[DigestStats] = []
    if by_region:
        hosts = sorted({_asked(uri, options.network).split("/")[0] for uri in asked})
        detail = "registries: " + ", ".join(hosts[:5]) + (" ..." if len(hosts) > 5 else "")
        # The answers are in hand: wait for another writer rather than lose them.
        with (
            locks.write_lock(target, list(by_region), wait=True, holder="digests") as held,
            db.writable(target) as engine,
        ):
            runs = store_answers(
                engine, by_region, answers, failures, started_at=started, detail=detail,
                cost=asked_result.cost, confirm=held.confirm,
            )  # fmt: skip
    return DigestResult(
        tuple(runs), len(regions_of), len(due), len(due) - len(asked), len(asked_result.missing)
    )


def _asked(uri: str, network: str) -> str:
    """The URI asked for: its registry host in the form ``network`` names."""
    return uri if network == "as-listed" else on_network(uri, network)


@dataclass
class _Asked:
    answers: list[Answer] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)  # URIs whose registry has no such image
    cost: dict[str, tuple[int, int]] = field(default_factory=dict)  # uri -> requests, retries


def _ask(
    uris: Sequence[str],
    digests_known: dict[str, str],
    options: DigestOptions,
    progress: Callable[[int, int], None] | None,
) -> _Asked:
    credentials = docker_credentials()
    local = threading.local()
    clients: list[RegistryClient] = []
    lock = threading.Lock()
    done = [0]
    silent: dict[str, int] = {}  # registry host -> requests in a row it did not answer
    result = _Asked()

    def client() -> RegistryClient:
        if not hasattr(local, "client"):
            local.client = RegistryClient(
                credentials, timeout=options.timeout, retries=options.retries,
                backoff=options.backoff,
            )  # fmt: skip
            with lock:
                clients.append(local.client)
        return local.client  # type: ignore[no-any-return]

    def one(uri: str) -> Answer | str:
        asked = _asked(uri, options.network)
        host = asked.split("/")[0]
        with lock:
            if silent.get(host, 0) >= GIVE_UP:
                return f"{host} did not answer {GIVE_UP} requests in a row; not asked."
        ask = client()
        spent = (ask.requests, ask.retries)
        try:
            found = ask.manifest(asked, known=digests_known.get(uri))
        except CatalogError as exc:
            log.info("%s: %s", uri, exc)
            with lock:
                if isinstance(exc, UnreachableError):
                    silent[host] = silent.get(host, 0) + 1
                if isinstance(exc, MissingError):
                    result.missing.add(uri)
            return str(exc)
        finally:
            with lock:
                result.cost[uri] = (ask.requests - spent[0], ask.retries - spent[1])
                done[0] += 1
                if progress is not None:
                    progress(done[0], len(uris))
        with lock:
            silent[host] = 0
        return Answer(uri, found.digest, found.media_type, found.platforms)

    pool = ThreadPoolExecutor(max_workers=options.workers)
    try:
        for uri, outcome in zip(uris, pool.map(one, uris), strict=True):
            if isinstance(outcome, Answer):
                result.answers.append(outcome)
            else:
                result.failures[uri] = outcome
    except BaseException:
        # Stopped (Ctrl-C, SIGTERM): no waiting for requests still under way.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    else:
        pool.shutdown()
    finally:
        for each in clients:
            each.close()
    return result


def digests_for(
    framework_name: str | None = None,
    *,
    framework_version: str | None = None,
    image_scope: str | None = None,
    accelerator_type: str | None = None,
    regions: Sequence[str | None] = (None,),
    python_version: str | None = None,
    cuda_version: str | None = None,
    os: str | None = None,
    options: DigestOptions = DigestOptions(),
    db_option: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DigestResult:
    """Ask for the digests of the live images these filters select (as ``list_images``
    selects them, every scope unless ``image_scope`` narrows it) in the catalog that sync
    writes (or ``db_option``), one region of ``regions`` at a time (None: the region the
    environment binds, else every region)."""
    from catalog.read.connection import forget
    from catalog.read.images import list_images

    target = resolve_target(db_option, write=True)
    if target.path is not None and not target.path.exists():
        raise UsageError(
            f"There is no catalog at {target.display} yet; digests add to a synced catalog: "
            "run pai-catalog sync first."
        )
    where = str(target.path) if target.path is not None else target.url
    selection = [
        (image.region, image.image_uri)
        for region in regions
        for image in list_images(
            framework_name,
            image_scope=image_scope,
            framework_version=framework_version,
            accelerator_type=accelerator_type,
            region=region,
            python_version=python_version,
            cuda_version=cuda_version,
            os=os,
            labels=False,
            db=where,
        )
        if image.image_uri
    ]
    # The selection's reader is closed, so that the writer's commit is checkpointed into the
    # file when it closes, not left in a -wal beside it.
    forget(resolve_target(where))
    return digests(selection, options, db_option=where, progress=progress)
