"""Crawl a region's complete listing into a sink, page by page, checked for drift."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from catalog.errors import ApiError, AuthError, CrawlError, InputError
from catalog.parse import records
from catalog.parse.records import ApiImage
from catalog.sync import PAGE_SIZE, WORKERS

FetchPage = Callable[[int, int, bool], Any]  # (page_number, page_size, verbose) -> body
Progress = Callable[[int, int], None]  # (pages done, pages planned)
MAX_PAGES = 10_000
# A check pass reads only which images are listed, a small answer per image, so it asks for
# pages this large, or larger where that lets every page go out at once (up to CHECK_PAGE_MAX:
# the pages under way are held whole). A server that caps them is followed; one that refuses
# them gets the usual size.
CHECK_PAGE_SIZE = 1000
CHECK_PAGE_MAX = 2000
_MASK = (1 << 64) - 1
log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where a crawl's pages go: one pass at a time, kept or rolled back as a whole."""

    def open(self) -> None:
        """Start taking a new pass, dropping whatever an earlier one left."""

    def read(self, body: Any, where: str) -> tuple[list[ApiImage], int | None]:
        """A page's images and TotalCount (InputError if the page is malformed), with what
        ``add`` will need of them worked out ahead. Runs in a fetching thread, in any order, at
        the same time as ``add``, ``open`` or ``discard``, and possibly after its own pass was
        discarded."""

    def add(self, images: list[ApiImage]) -> None:
        """Take one page, in page order."""

    def discard(self) -> None:
        """Drop the pass taken so far."""


class _Drift(Exception):
    """The listing moved under the crawl; the pass is void."""


@dataclass(frozen=True)
class CrawlResult:
    """How the crawl settled: the listing's size, and what it cost."""

    total: int
    pages: int  # page requests that got an answer, over every pass
    passes: int


@dataclass(frozen=True)
class _Pass:
    """What one consistent pass saw: how many images, and a digest of which ones that does not
    depend on their order (the API orders ties as it likes).

    Paging can only lose or repeat images, so which images were listed is what two passes
    compare, whatever their page sizes; an image whose labels changed in between is stored as
    the first pass read it.
    """

    total: int
    digest: int


def _page(
    body: Any, number: int, read: Callable[[Any, str], tuple[list[Any], int | None]]
) -> tuple[list[Any], int | None]:
    """The page's images, or only their keys, and its TotalCount."""
    try:
        return read(body, f"ListImages page {number}")
    except InputError as exc:
        raise CrawlError(f"The API sent a malformed page: {exc}") from None


def _plan(total: int, first: int, page_size: int) -> tuple[int, int, int]:
    """Images per page, pages in all, and the last page to ask for, from page 1's TotalCount
    and its number of images: a server may cap PageSize below what was asked, and page 1 tells
    the real size. One page past the end must come back empty: a TotalCount short by whole
    pages would otherwise pass every check, and the images past it would be stored as
    removed."""
    per_page = min(first, page_size) if first else page_size
    planned = max(1, math.ceil(total / per_page)) if per_page else 1
    return per_page, planned, planned + 1 if total else planned


def _ordered(
    pool: ThreadPoolExecutor,
    window: int,
    read: Callable[[int], Any],
    last: Callable[[], int],
    when_read: Callable[[], None] | None = None,
) -> Generator[Any, None, None]:
    """read(n) for n = 1, 2, ... up to last() (asked again as the pages come in), at most
    ``window`` ahead, yielded in order: pages that a slow consumer has not taken yet never pile
    up in memory. ``when_read`` is called once every read has come back (or failed), which can
    be before the consumer has taken them all. Reads not yet started when the consumer stops
    are cancelled."""
    pending: deque[Future[Any]] = deque()
    asked = 0

    def ask() -> None:
        nonlocal asked
        while len(pending) < window and asked < last():
            asked += 1
            pending.append(pool.submit(read, asked))

    ask()
    try:
        while pending:
            page = pending.popleft().result()
            ask()  # before the consumer takes it: a read may have told last() more
            yield page
            if when_read is not None and asked >= last() and all(f.done() for f in pending):
                when_read()
                when_read = None
    finally:
        for future in pending:  # a pass given up on asks for nothing more
            future.cancel()
    if when_read is not None:
        when_read()


def _one_pass(
    fetch: FetchPage,
    pool: ThreadPoolExecutor,
    window: int,
    page_size: int,
    take: Callable[[list[ApiImage]], None] | None,
    progress: Progress | None,
    *,
    read_page: Callable[[Any, str], tuple[list[ApiImage], int | None]] | None = None,
    when_read: Callable[[int], None] | None = None,
    expected: int | None = None,
) -> _Pass:
    """Read every page once, handing each to ``take`` in order (without ``take``, only the
    image keys are read) after ``read_page`` read it in the fetching thread; ``when_read`` gets
    the TotalCount once every page has come back. Raises _Drift if the pass is inconsistent.

    Page 1 tells how many pages there are; with the ``expected`` number of images, the pages
    that many would fill are asked for along with it."""
    full = take is not None
    reader = (read_page or records.parse_body) if full else records.listed_keys

    def read(number: int) -> tuple[int, list[Any], int | None]:
        images, page_total = _page(fetch(number, page_size, full), number, reader)
        if number == 1 and isinstance(page_total, int):
            _, planned, final = _plan(page_total, len(images), page_size)
            if planned <= MAX_PAGES:  # the later pages go out before page 1 is taken
                last[0] = final
        return number, images, page_total

    # Until page 1 has come: the pages the expected listing fills, and the one past them.
    last = [min(math.ceil(expected / page_size) + 1, MAX_PAGES) if expected else 1]
    total, per_page, planned = 0, page_size, 1
    seen: set[str] = set()
    digest = 0

    def accept(number: int, images: list[Any], page_total: int | None) -> None:
        nonlocal digest
        if page_total != total:
            raise _Drift(f"TotalCount moved from {total} to {page_total}")
        count = min(per_page, total - per_page * (number - 1))
        if len(images) != count:
            raise _Drift(f"page {number} has {len(images)} images, expected {count}")
        for image in images:
            key = image.key if full else image
            if key in seen:
                raise _Drift(f"image {key} was listed twice")
            seen.add(key)
            digest = (digest + hash(key)) & _MASK  # hash() is stable within the process
        if take is not None and images:
            take(images)
        if progress is not None:
            progress(number, planned)

    read_all = None if when_read is None else (lambda: when_read(total))
    pages = _ordered(pool, window, read, lambda: last[0], read_all)
    with contextlib.closing(pages):  # on any failure, at once: no more requests for this pass
        for number, images, page_total in pages:
            if number == 1:
                if page_total is None:
                    raise CrawlError(
                        "The API sent no TotalCount, so a complete listing cannot be checked."
                    )
                total = page_total
                per_page, planned, last[0] = _plan(total, len(images), page_size)
                if planned > MAX_PAGES:
                    raise CrawlError(
                        f"The listing would take {planned} pages, over the limit of {MAX_PAGES}."
                    )
            if number > planned:
                if page_total != total or images:
                    raise _Drift(
                        f"page {number}, past TotalCount {total}, lists {len(images)} images"
                    )
                continue
            accept(number, images, page_total)
    return _Pass(total, digest)


def check_size(total: int, page_size: int, workers: int) -> int:
    """The page size of a check of ``total`` images: the pages it fills and the one past them
    all go out at once where CHECK_PAGE_MAX allows, and never smaller than ``page_size``."""
    at_once = math.ceil(total / max(1, workers - 1))  # one request is the page past the end
    return max(page_size, CHECK_PAGE_SIZE, min(at_once, CHECK_PAGE_MAX))


def _refused_size(exc: ApiError) -> bool:
    """Whether a page request failed for a reason a smaller PageSize may cure."""
    return exc.status == 400 and not isinstance(exc, AuthError)


def crawl(
    fetch: FetchPage,
    sink: Sink,
    *,
    page_size: int = PAGE_SIZE,
    workers: int = WORKERS,
    verify: bool = True,
    max_recrawls: int = 3,
    progress: Progress | None = None,
) -> CrawlResult:
    """Read the whole listing into ``sink``; with ``verify``, until two passes agree.

    Offset paging over a live list can skip an image when one is deleted and another added
    between two page requests, leaving every count right; only a second read shows it. The
    sink takes the first pass as it arrives, so storing overlaps the crawl; a check pass then
    reads only which images are listed, in pages of CHECK_PAGE_SIZE or more, and a disagreement
    rolls the sink back and reads again.
    """
    reads: list[int] = []  # list.append is atomic, so worker threads can count here
    refused = False  # whether the server refused pages larger than ``page_size``
    window = 2 * max(1, workers)
    # ``workers`` requests are under way at most; reading a page that has come does not hold
    # one back, so the threads are as many as the pages that may run ahead.
    requests = threading.BoundedSemaphore(max(1, workers))

    def counted(number: int, size: int, verbose: bool, stop: threading.Event | None) -> Any:
        with requests:
            if stop is not None and stop.is_set():
                raise _GivenUp
            body = fetch(number, size, verbose)
        reads.append(number)
        return body

    def counting(progress: Progress | None) -> Progress | None:
        """A pass's progress as the pages read by the whole crawl: the number its summary
        gives (every pass, and the page past the end that each asks for)."""
        if progress is None:
            return None
        before = len(reads)
        return lambda number, planned: progress(before + number, before + planned)

    def check(progress: Progress | None, total: int, stop: threading.Event | None = None) -> _Pass:
        nonlocal refused
        fetch_keys = functools.partial(counted, stop=stop)
        size = page_size if refused else check_size(total, page_size, workers)
        asked = len(reads)
        try:
            return _one_pass(
                fetch_keys, pool, window, size, None, counting(progress), expected=total
            )
        except ApiError as exc:
            # The size was refused only if no page of that size came back.
            if size == page_size or not _refused_size(exc) or len(reads) > asked:
                raise
            log.info("pages of %d were refused (%s); checking in pages of %d", size, exc,
                     page_size)  # fmt: skip
            refused = True
            return _one_pass(
                fetch_keys, pool, window, page_size, None, counting(progress), expected=total
            )

    fetch_pages = functools.partial(counted, stop=None)
    previous: _Pass | None = None  # the last consistent pass
    stored: _Pass | None = None  # the pass the sink holds
    early: _Early | None = None  # a check started once the stored pass's reads were in
    reasons: list[str] = []
    try:
        with _threads(window) as pool, _threads(1) as checker:

            def start_check(total: int) -> None:
                nonlocal early
                stop = threading.Event()
                # No progress from it: the stored pass is still reporting its own.
                early = _Early(checker.submit(check, None, total, stop), stop)

            try:
                for attempt in range(1, max_recrawls + 2):
                    taking = stored is None
                    try:
                        if taking:
                            _drop(early)
                            early = None
                            sink.open()
                            # The check may start as soon as the pass is read, while the sink
                            # still stores its last pages, unless an earlier check may settle it.
                            when_read = start_check if verify and previous is None else None
                            seen = _one_pass(
                                fetch_pages, pool, window, page_size, sink.add,
                                counting(progress), read_page=sink.read, when_read=when_read,
                            )  # fmt: skip
                        elif early is not None:
                            seen, early = early.future.result(), None
                        else:
                            seen = check(progress, stored.total if stored else 0)
                    except _Drift as drift:
                        log.info("the listing moved during pass %d (%s); reading again",
                                 attempt, drift)  # fmt: skip
                        reasons.append(str(drift))
                        previous = stored = None
                        sink.discard()
                        continue
                    if taking:
                        stored = seen
                    if not verify or (previous is not None and previous == seen):
                        if progress is not None:  # the summary's count, to the last page
                            progress(len(reads), len(reads))
                        return CrawlResult(total=seen.total, pages=len(reads), passes=attempt)
                    if not taking:  # this read disagrees with the one the sink holds
                        reasons.append("two passes listed different images")
                        stored = None
                        sink.discard()
                    previous = seen
            finally:
                _drop(early)  # a failure, or the last attempt: it is not wanted any more
    except BaseException:
        sink.discard()
        raise
    shown = "; ".join(reasons[-3:]) or "the passes never agreed"
    raise CrawlError(
        f"The listing kept changing during {max_recrawls + 1} crawls ({shown}); "
        "nothing was stored, run the sync again later."
    )


@contextlib.contextmanager
def _threads(count: int) -> Generator[ThreadPoolExecutor, None, None]:
    """A thread pool that, when left on an interrupt (Ctrl-C, SIGTERM), does not wait for the
    requests under way: the command is stopping, and nothing waits for their answers."""
    pool = ThreadPoolExecutor(max_workers=count)
    try:
        yield pool
    except (KeyboardInterrupt, SystemExit):
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


class _GivenUp(Exception):
    """A read of a check that is no longer wanted."""


@dataclass(frozen=True)
class _Early:
    """A check pass under way in the background, and how to stop it."""

    future: Future[_Pass]
    stop: threading.Event


def _drop(early: _Early | None) -> None:
    """Stop a check that is no longer wanted: no new request, and wait for those under way."""
    if early is not None:
        early.stop.set()
        if not early.future.cancel():
            early.future.exception()
