"""Crawl a region's complete listing: page 1, then the rest concurrently, checked for drift."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from catalog import records
from catalog.errors import CrawlError, InputError
from catalog.records import ApiImage

FetchPage = Callable[[int, int], Any]  # (page_number, page_size) -> response body
Progress = Callable[[int, int], None]  # (pages done, pages planned)
MAX_PAGES = 10_000
log = logging.getLogger(__name__)


class _Drift(Exception):
    """The listing moved under the crawl; the pass is void."""


@dataclass(frozen=True)
class CrawlResult:
    """The listing a crawl settled on, and what it cost."""

    images: list[ApiImage]
    total: int
    pages: int  # page requests that got an answer, over every pass
    passes: int


def _page(body: Any, number: int) -> tuple[list[ApiImage], int | None]:
    try:
        return records.parse_body(body, f"ListImages page {number}")
    except InputError as exc:
        raise CrawlError(f"The API sent a malformed page: {exc}") from None


def _one_pass(
    fetch: FetchPage, page_size: int, workers: int, progress: Progress | None
) -> tuple[list[ApiImage], int]:
    """(images, TotalCount) of one consistent pass; raises _Drift if it is inconsistent."""
    first, total = _page(fetch(1, page_size), 1)
    if total is None:
        raise CrawlError("The API sent no TotalCount, so a complete listing cannot be checked.")
    if total == 0 or not first:
        if total or first:
            raise _Drift(f"page 1 has {len(first)} images but TotalCount is {total}")
        return [], 0
    # A server may cap PageSize below what was asked; page 1 tells the real size.
    per_page = min(len(first), page_size)
    planned = math.ceil(total / per_page)
    if planned > MAX_PAGES:
        raise CrawlError(f"The listing would take {planned} pages, over the limit of {MAX_PAGES}.")
    if progress is not None:
        progress(1, planned)
    pages: dict[int, list[ApiImage]] = {1: first}

    def read(number: int) -> tuple[int, list[ApiImage], int | None]:
        images, page_total = _page(fetch(number, page_size), number)
        return number, images, page_total

    # One page past the end must come back empty: a TotalCount short by whole pages would
    # otherwise pass every check, and the images past it would be stored as removed.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for number, images, page_total in pool.map(read, range(2, planned + 2)):
            if page_total != total:
                raise _Drift(f"TotalCount moved from {total} to {page_total}")
            if number > planned:
                if images:
                    raise _Drift(
                        f"page {number}, past TotalCount {total}, lists {len(images)} images"
                    )
                continue
            pages[number] = images
            if progress is not None:
                progress(len(pages), planned)
    collected = [image for number in sorted(pages) for image in pages[number]]
    for number in range(1, planned + 1):
        expected = per_page if number < planned else total - per_page * (planned - 1)
        if len(pages[number]) != expected:
            raise _Drift(f"page {number} has {len(pages[number])} images, expected {expected}")
    unique = records.dedupe(collected)
    if len(unique) != total:
        raise _Drift(f"{len(collected) - len(unique)} images were listed twice")
    return unique, total


def _fingerprint(images: list[ApiImage]) -> dict[str, str]:
    return {image.key: image.content_hash for image in images}


def crawl(
    fetch: FetchPage,
    *,
    page_size: int = 100,
    workers: int = 4,
    verify: bool = True,
    max_recrawls: int = 3,
    progress: Progress | None = None,
) -> CrawlResult:
    """Read the whole listing; with ``verify``, until two consistent passes agree.

    Offset paging over a live list can skip an image when one is deleted and another added
    between two page requests, leaving every count right; only a second read shows it.
    """
    reads: list[int] = []  # list.append is atomic, so worker threads can count here

    def counted(number: int, size: int) -> Any:
        body = fetch(number, size)
        reads.append(number)
        return body

    previous: dict[str, str] | None = None  # the last pass's fingerprint, not its images
    reasons: list[str] = []
    for attempt in range(1, max_recrawls + 2):
        try:
            images, total = _one_pass(counted, page_size, workers, progress)
        except _Drift as drift:
            log.info("the listing moved during pass %d (%s); crawling again", attempt, drift)
            reasons.append(str(drift))
            previous = None
            continue
        fingerprint = _fingerprint(images)
        if not verify or previous == fingerprint:
            return CrawlResult(images=images, total=total, pages=len(reads), passes=attempt)
        if previous is not None:
            reasons.append("two passes listed different images")
        previous = fingerprint
        del images
    shown = "; ".join(reasons[-3:]) or "the passes never agreed"
    raise CrawlError(
        f"The listing kept changing during {max_recrawls + 1} crawls ({shown}); "
        "nothing was stored, run the sync again later."
    )
