"""Read ListImages pages into images and the version rows they need: in the reading thread, or
in a helper process that spares the sync's own core on a large listing."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout  # not the builtin before 3.11
from pathlib import Path
from typing import IO, Any, cast

from catalog.errors import InputError
from catalog.parse import records, tags
from catalog.parse.records import ApiImage
from catalog.store.rows import version_row

# (images, TotalCount, version rows of the images that need one, by position in the page)
Read = tuple[list[ApiImage], int | None, dict[int, dict[str, Any]]]
# A listing this large has its pages read in a helper process; a smaller one is read before a
# helper would be ready. The helper earns its keep: the sync's own process is CPU-bound, and
# reading the pages there made a sync of 10k images 20-30% slower and one of 100k 36% slower
# (scripts/bench.py --sync on 2 cores, 50 ms a request).
HELPER_MIN_IMAGES = 2000
# The helper forgets the tags it has read after this many images: a listing's tags are nearly
# all unique, and their cache would otherwise grow to tens of megabytes.
HELPER_CACHE_IMAGES = 20_000
# A page the helper has not answered in this many seconds is read by the caller, and the
# helper, which cannot be well, is stopped.
HELPER_TIMEOUT = 60.0
# What the helper needs of the environment (credentials stay behind).
_KEPT_ENV = ("PATH", "PYTHONHOME", "PYTHONPATH", "LANG", "SYSTEMROOT", "TMPDIR")
_PROTOCOL = pickle.HIGHEST_PROTOCOL
log = logging.getLogger(__name__)


def read_page(body: Any, where: str, region: str, wanted: Callable[[ApiImage], bool]) -> Read:
    """A ListImages body's images and TotalCount, with the version rows of the images that
    ``wanted`` names; raises InputError for a malformed page."""
    images, total = records.parse_body(body, where)
    rows = {i: version_row(image, region) for i, image in enumerate(images) if wanted(image)}
    return images, total, rows


def helper_cores() -> int:
    """The cores this process may run on: a helper only pays with two or more."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def child_env() -> dict[str, str]:
    """The helper's environment: what Python needs, no credentials."""
    return {k: v for k, v in os.environ.items() if k in _KEPT_ENV or k.startswith("LC_")}


class Helper:
    """A helper process that reads pages for any number of threads. It never fails a read
    that the caller could do: until it is ready, after it stopped, for a page it could not
    read, and for one it did not take or answer within HELPER_TIMEOUT, ``read`` returns None
    and the caller reads the page itself. Callers write their pages to its pipe one at a
    time; a thread of its own takes the answers, and a watchdog kills a helper that stops
    taking what is written to it.

    ``stored`` maps each image key of the catalog's listed images to its content hash: an
    image stored as it is needs no version row.
    """

    def __init__(self, region: str, stored: Mapping[str, str]) -> None:
        self._lock = threading.Lock()  # the state below
        self._write_lock = threading.Lock()  # one whole message at a time into the pipe
        self._waiting: dict[int, Future[Read | None]] = {}
        self._next = 0
        self._ready = False
        self._stopped = False
        self._known: tuple[int, str, Mapping[str, str]] = (0, region, stored)
        self._writing_since: float | None = None
        self._gone = threading.Event()
        # Not -m: that would put the working directory, and any catalog package in it, first.
        root = str(Path(__file__).resolve().parents[2])
        command = (
            f"import sys; sys.path[0] = {root!r}; from catalog.store.pages import main; main()"
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=child_env(),
        )
        self._stdin: IO[bytes] = self._proc.stdin  # type: ignore[assignment]
        try:
            for work in (self._answers, self._watch):
                threading.Thread(target=work, name="page-helper", daemon=True).start()
        except RuntimeError as exc:  # no thread to be had
            self._proc.kill()
            self._proc.wait()
            raise OSError(str(exc)) from None
        log.debug("reading pages in a helper process (pid %d)", self._proc.pid)

    @classmethod
    def start(cls, region: str, stored: Mapping[str, str]) -> Helper | None:
        """A helper, or None where one cannot run or would not pay."""
        if helper_cores() < 2 or not sys.executable or getattr(sys, "frozen", False):
            return None  # a frozen program would run itself again, not this module
        try:
            return cls(region, stored)
        except (OSError, ValueError) as exc:
            log.debug("no page helper (%s); reading pages here", exc)
            return None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The helper process."""
        return self._proc

    @property
    def ready(self) -> bool:
        """Whether the helper has said it is up, and has not stopped since."""
        return self._ready and not self._stopped

    @property
    def stopped(self) -> bool:
        """Whether the helper was given up (killed, stuck, or closed); pages are read here."""
        return self._stopped

    def know(self, region: str, stored: Mapping[str, str]) -> None:
        """Compare the pages sent from now on with this state of the catalog."""
        with self._lock:
            self._known = known = (self._known[0] + 1, region, stored)
            ready = self._ready
        if ready:
            self._write(pickle.dumps(("known", *known), _PROTOCOL))

    def read(self, body: Any, where: str) -> Read | None:
        """What read_page would answer, or None when the caller should read the page itself;
        raises InputError for a malformed page."""
        if not self._ready or self._stopped:
            return None
        future: Future[Read | None] = Future()
        with self._lock:
            ident = self._next
            self._next += 1
        try:
            message = pickle.dumps(("page", ident, body, where), _PROTOCOL)
        except (pickle.PicklingError, TypeError, ValueError, RecursionError):
            return None  # not a JSON body: the caller's read says what is wrong with it
        with self._lock:
            if self._stopped:
                return None
            self._waiting[ident] = future
        if not self._write(message):
            return None
        try:
            return future.result(timeout=HELPER_TIMEOUT)
        except FutureTimeout:
            log.info("the page helper did not answer in %g s; reading pages here", HELPER_TIMEOUT)
            self._end()
            return None

    def close(self) -> None:
        """Stop the helper without waiting for it: it exits at the end of its input, or is
        killed if it has not within HELPER_TIMEOUT. Pages still waiting for it are left to
        their callers."""
        with self._lock:
            self._stopped = True
        if self._write_lock.acquire(timeout=1.0):
            with contextlib.suppress(OSError):
                self._stdin.close()
            self._write_lock.release()
        else:  # a write is stuck: the watchdog would end it, but nobody needs it any more
            self._end()
        threading.Thread(target=self._reap, name="page-helper", daemon=True).start()

    def _write(self, message: bytes) -> bool:
        """Write one message whole; False when the helper has stopped or is gone."""
        if not self._write_lock.acquire(timeout=HELPER_TIMEOUT):
            self._end()  # the write under way is stuck
            return False
        try:
            if self._stopped:
                return False
            self._writing_since = time.monotonic()
            self._stdin.write(message)
            self._stdin.flush()
            return True
        except (OSError, ValueError):  # gone, or closed
            with self._lock:
                self._stop()
            return False
        finally:
            self._writing_since = None
            self._write_lock.release()

    def _watch(self) -> None:
        """Kill a helper that has not taken a message within HELPER_TIMEOUT."""
        while not self._gone.wait(min(1.0, HELPER_TIMEOUT / 4)):
            since = self._writing_since
            if since is not None and time.monotonic() - since > HELPER_TIMEOUT:
                log.info("the page helper took nothing in %g s; reading pages here",
                         HELPER_TIMEOUT)  # fmt: skip
                self._end()

    def _reap(self) -> None:
        try:
            self._proc.wait(timeout=HELPER_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._end()

    def _end(self) -> None:
        """Kill the helper; every page waiting for it is left to its caller."""
        with self._lock:
            self._stop()
        self._proc.kill()

    def _stop(self) -> None:
        """No more pages for the helper (the caller holds the lock)."""
        self._stopped = True
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            future.set_result(None)

    def _answers(self) -> None:
        """Take the helper's answers, in the order it sends them, until it stops."""
        stream = self._proc.stdout
        assert stream is not None
        try:
            pickle.load(stream)  # it is ready
            with self._lock:
                known = self._known
            if not self._write(pickle.dumps(("known", *known), _PROTOCOL)):
                return
            with self._lock:
                self._ready = not self._stopped
            if self._known is not known:  # told more meanwhile: the helper keeps the newest
                self._write(pickle.dumps(("known", *self._known), _PROTOCOL))
            while True:
                ident, status, payload = pickle.load(stream)
                with self._lock:
                    future = self._waiting.pop(ident, None)
                if future is None:  # given up on
                    continue
                if status == "malformed":
                    future.set_exception(InputError(str(payload)))
                    continue
                answer = None
                if status == "ok":
                    try:
                        total, images, rows = payload
                        answer = ([ApiImage(*image) for image in images], total, rows)
                    except (TypeError, ValueError):
                        answer = None
                future.set_result(answer)
        except (EOFError, OSError, pickle.UnpicklingError, ValueError, TypeError):
            pass
        finally:
            with self._lock:
                if not self._stopped:
                    log.info("the page helper stopped (exit %s); reading pages here",
                             self._proc.poll())  # fmt: skip
                self._stop()
            self._gone.set()
            stream.close()
            try:
                self._proc.wait(timeout=HELPER_TIMEOUT)
            except subprocess.TimeoutExpired:  # not reading its input any more: not ours
                self._proc.kill()
                self._proc.wait()


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    """The helper's side: answer page messages until the input ends."""
    generation, region, stored = -1, "", cast("dict[str, str]", {})
    read = 0

    def wanted(image: ApiImage) -> bool:
        return stored.get(image.key) != image.content_hash

    pickle.dump(("ready",), out)
    out.flush()
    while True:
        try:
            message = pickle.load(inp)
        except EOFError:
            return
        if message[0] == "known":
            if message[1] > generation:  # a later state of the catalog than the one it has
                _, generation, region, stored = message
            continue
        _, ident, body, where = message
        if read >= HELPER_CACHE_IMAGES:
            tags.clear_caches()
            read = 0
        try:
            images, total, rows = read_page(body, where, region, wanted)
            read += len(images)
            shown = [(i.key, i.fields, i.labels, i.content_hash) for i in images]
            answer: tuple[Any, ...] = (ident, "ok", (total, shown, rows))
        except InputError as exc:
            answer = (ident, "malformed", str(exc))
        except Exception:  # the caller reads the page itself, and meets the error there
            answer = (ident, "failed", None)
        pickle.dump(answer, out, protocol=_PROTOCOL)
        out.flush()


def main() -> None:
    """The helper process: answer on stdout the messages that come on stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sync's to handle; it closes us
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print cannot corrupt the answers
    serve(sys.stdin.buffer, answers)
