"""Benchmark the read path, the crawl and the store against the targets of issue 5.

Everything is measured in one run on one machine and printed as a ratio next to its target, with
the absolute times alongside (``--json`` prints the same numbers as JSON):

- warm resolve: ``catalog.retrieve`` in a loop over a fixed mix of latest, exact and prefix
  queries (several frameworks, scopes and accelerators, one region each) versus the same answers
  from raw ``sqlite3``, one indexed SELECT per query on the same file; both must name the same
  images. Per call, after warm-up, fastest of several timed blocks. Target <= 3x at every size.
- growth: warm ``retrieve`` per call at the largest catalog versus the smallest. Target <= 2x.
- cold CLI: median wall time of ``python -m catalog resolve pytorch latest --accelerator gpu
  --json`` versus ``python -c "import click, sqlite3"``. Target <= 2x.
- crawl: a full ``sync()`` from the fake PAI API (50 ms latency per request) into a fresh
  database versus a serial crawl of 50 per page, the way the PAI SDK pages, against the same
  server in the same run. Target >= 8x faster; and the sync within 1.5x of the page-fetch floor
  (pages read / workers x latency). Reported with verify on (the default: a second pass that
  reads only which images are listed) and off. The fake API runs in a process of its own.
- no-op sync: the same listing synced again must write no image, version, label or event row.
- memory and size: peak RSS of a child process that syncs a large listing (target <= 200 MB),
  and database bytes per image of the largest catalog (target <= 1.5 KB).

Catalogs are built through the store (``records.parse_image``, then ``writer.apply_listing``), one
run per region of at most 100k images (cn-r00, cn-r01, ...), to bound memory.

Usage: ``python scripts/bench.py [--quick] [--json] [--sizes 1000,100000,1000000] [--keep DIR]``.
``--sync 10000,100000 [--repeat 5]`` times only default syncs of those sizes, each in a fresh
process, as a cron job runs them: with a mechanism of the sync switched off and on, two such
runs tell what it saves.
Progress goes to stderr and the table to stdout (to stderr with --json). The exit status is 0
whatever the numbers, and 1 only when two paths disagree on a result (a correctness bug).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout as well as from an install

import catalog  # noqa: E402
import catalog.read.images as catalog_query  # noqa: E402
from catalog.account import Credentials  # noqa: E402
from catalog.config import parse_target  # noqa: E402
from catalog.parse import records, versions  # noqa: E402
from catalog.read import connection  # noqa: E402
from catalog.store import (  # noqa: E402
    db,
    pages,
    runs,
    writer,
)
from catalog.sync.client import OFFICIAL_LABELS, ClientSettings, PaiClient  # noqa: E402
from catalog.sync.run import RegionResult, SyncOptions, sync  # noqa: E402

REGION_CAP = 100_000  # images per region, each one apply_listing: bounds the builder's memory
CRAWL_REGION = "cn-hangzhou"
LATENCY = 0.05
SERIAL_PAGE_SIZE = 50  # the PAI SDK lists 50 images a page, one request after another
CREDS = Credentials("test-ak", "test-secret", source="the benchmark")
# A tiny backoff, so that a retry cannot hide half a second of sleep inside a measured time.
CLIENT = ClientSettings(backoff=0.01, backoff_cap=0.05)
MB = 1024 * 1024
_STARTED = time.perf_counter()


@dataclass(frozen=True)
class Mode:
    name: str
    sizes: tuple[int, ...]
    crawl_images: int
    memory_images: int
    cli_runs: int
    block_seconds: float  # each timed block of resolve calls lasts about this long
    blocks: int  # the fastest block counts: the slower ones absorbed noise from the machine


QUICK = Mode("quick", (1000, 20_000), 2000, 20_000, cli_runs=5, block_seconds=0.1, blocks=3)
FULL = Mode(
    "full", (1000, 100_000, 1_000_000), 10_000, 100_000, cli_runs=11, block_seconds=0.3, blocks=5
)


@dataclass
class Metric:
    name: str
    label: str
    value: float
    target: float
    op: str  # how the value must compare with the target: "<=", ">=" or "=="
    unit: str
    absolute: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool:
        if self.op == "<=":
            return self.value <= self.target
        if self.op == ">=":
            return self.value >= self.target
        return self.value == self.target


@dataclass
class Report:
    mode: Mode
    metrics: list[Metric] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def short(n: int) -> str:
    for unit, suffix in ((1_000_000, "M"), (1000, "k")):
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


@contextmanager
def phase(report: Report, name: str) -> Iterator[None]:
    log(f"{name} ...")
    clock = time.perf_counter()
    yield
    report.phases[name] = round(time.perf_counter() - clock, 2)
    log(f"{name}: {report.phases[name]:.1f} s")


def load_fake() -> ModuleType:
    path = ROOT / "scripts" / "fake_pai_api.py"
    spec = importlib.util.spec_from_file_location("fake_pai_api", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fake_pai_api"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def db_objects(path: Path) -> dict[str, int]:
    """Bytes per table and index, largest first: where the size per image goes."""
    conn = sqlite3.connect(path)
    try:
        sql = "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
        return {name: int(size) for name, size in conn.execute(sql)}
    except sqlite3.OperationalError:  # an SQLite built without the dbstat table
        return {}
    finally:
        conn.close()


# ------------------------------------------------------------------ catalogs, through the store


def build_catalog(fake: ModuleType, path: Path, size: int) -> dict[str, float]:
    """Store ``size`` synthetic images, one run per region; returns where the time went."""
    spent = {"generate": 0.0, "parse": 0.0, "apply_listing": 0.0}
    with db.writable(parse_target(str(path))) as engine:
        for index in range(math.ceil(size / REGION_CAP)):
            region, count = f"cn-r{index:02d}", min(REGION_CAP, size - index * REGION_CAP)
            clock = time.perf_counter()
            raw = fake.synthetic_images(count, region, 0)
            spent["generate"] += time.perf_counter() - clock
            clock = time.perf_counter()
            images = [records.parse_image(obj, f"{region} image {i}") for i, obj in enumerate(raw)]
            del raw
            spent["parse"] += time.perf_counter() - clock
            clock = time.perf_counter()
            writer.apply_listing(engine, runs.RunInfo(region, "import", detail="bench"), images)
            spent["apply_listing"] += time.perf_counter() - clock
            if size > REGION_CAP:
                log(f"  {short(size)}: {region} stored, {sum(spent.values()):.0f} s so far")
    return {name: round(seconds, 2) for name, seconds in spent.items()}


# ------------------------------------------------------------------------------ warm resolve

# The hand-written baseline: one SELECT per query, on the resolve index, fetching what an
# ImageInfo is made of (its columns and labels), so that both sides fetch the same answer.
# SQLite sorts NULL below every value, so "gmt_create_time DESC" puts undated images last.
_SELECT = """SELECT v.image_id, v.name, v.uri, v.framework, v.framework_version, v.accelerator,
v.python_version, v.cuda_version, v.os_version, v.scopes, v.official, v.parse_status,
v.gmt_create_time, v.valid_to, (SELECT json_group_object(l.key, l.value) FROM image_label l
WHERE l.version_id = v.id) AS labels FROM image_version v
JOIN image_scope s ON s.version_id = v.id AND s.scope = :scope
WHERE v.framework_key = :framework AND v.accelerator = :accelerator AND v.region = :region
AND v.valid_to IS NULL AND v.parse_status <> 'unrecognized'"""
# A version request never matches an unparsed version (class 0). Naming the two other classes
# lets SQLite seek to the key within each, in ORDER BY order, instead of walking every newer one.
_CLASSES = " AND v.version_class IN (2, 1)"
_ORDER = """
ORDER BY v.version_class DESC, v.version_key DESC, v.gmt_create_time DESC, v.uri LIMIT 1"""
RAW_SQL = {
    "latest": _SELECT + _ORDER,
    "exact": _SELECT + _CLASSES + " AND v.version_key = :low" + _ORDER,
    "prefix": _SELECT + _CLASSES + " AND v.version_key >= :low AND v.version_key < :high" + _ORDER,
}
# Every live (framework, version, accelerator, scope) of a region, to pick queries from.
_COMBINATIONS = """SELECT DISTINCT v.framework, v.framework_key, v.framework_version,
v.accelerator, s.scope FROM image_version v JOIN image_scope s ON s.version_id = v.id
WHERE v.region = ? AND v.valid_to IS NULL AND v.parse_status <> 'unrecognized'
AND v.framework_key IS NOT NULL AND v.version_class > 0 ORDER BY 2, 3, 4, 5"""


@dataclass(frozen=True)
class Timing:
    """Seconds per call: retrieve as called, retrieve without its answer memo, raw sqlite3."""

    api: float
    uncached: float
    raw: float


@dataclass(frozen=True)
class Query:
    framework: str  # as stored: what a user would type
    framework_key: str
    request: str  # "latest", an exact version or a prefix
    accelerator: str
    scope: str
    region: str

    @property
    def kind(self) -> str:
        return versions.parse_request(self.request).kind

    def retrieve(self, database: str) -> str:
        info = catalog.retrieve(
            self.framework,
            self.request,
            self.accelerator,
            self.scope,
            region=self.region,
            db=database,
        )
        return info.image_id

    def statement(self) -> tuple[str, dict[str, str]]:
        key = versions.parse_request(self.request).key
        params = {
            "scope": self.scope,
            "framework": self.framework_key,
            "accelerator": self.accelerator,
            "region": self.region,
            "low": key,
            "high": key + "~",  # "~" sorts after every character a version key holds
        }
        return RAW_SQL[self.kind], params


def pick_queries(path: Path, region: str) -> list[Query]:
    """Three queries per framework (latest, exact, prefix), rotating over chips and scopes."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(_COMBINATIONS, (region,)).fetchall()
    finally:
        conn.close()
    # framework key -> (accelerator, scope) -> versions, all sorted by the SQL
    found: dict[str, dict[tuple[str, str], list[str]]] = {}
    names: dict[str, str] = {}
    for framework, key, version, accelerator, scope in rows:
        names[key] = framework
        found.setdefault(key, {}).setdefault((accelerator, scope), []).append(version)
    queries = []
    for index, (key, by_pair) in enumerate(found.items()):
        pairs = sorted(by_pair)
        for slot, kind in enumerate(("latest", "exact", "prefix")):
            accelerator, scope = pairs[(4 * index + 5 * slot) % len(pairs)]  # a spread
            # The middle version, not the newest: exact and prefix then seek past newer ones.
            available = by_pair[(accelerator, scope)]
            parsed = versions.parse_version(available[len(available) // 2])
            assert parsed is not None  # version_class > 0
            request = {
                "latest": "latest",
                "exact": parsed.normalized,
                "prefix": ".".join(str(n) for n in parsed.release[:2]),
            }[kind]
            query = Query(names[key], key, request, accelerator, scope, region)
            assert query.kind == kind, (query, kind)
            queries.append(query)
    return queries


def _fastest_per_call(run_round: Callable[[], None], calls: int, mode: Mode) -> float:
    """Seconds per call: warm-up rounds, then the fastest of ``mode.blocks`` timed blocks."""
    clock = time.perf_counter()
    for _ in range(3):
        run_round()
    per_round = (time.perf_counter() - clock) / 3
    rounds = max(1, round(mode.block_seconds / max(per_round, 1e-9)))
    best = math.inf
    for _ in range(mode.blocks):
        clock = time.perf_counter()
        for _ in range(rounds):
            run_round()
        best = min(best, (time.perf_counter() - clock) / (rounds * calls))
    return best


def measure_resolve(path: Path, queries: list[Query], mode: Mode, report: Report) -> Timing:
    """Append the warm-resolve metrics of one catalog; returns retrieve's seconds per call."""
    database, size = str(path), _size_of(path)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    # retrieve() remembers answers until the file changes, so a loop of the same queries times a
    # dict lookup. A service's first call of each query, and every call after a sync, runs the
    # query: emptying the memo before each call times that path too.
    answers = getattr(catalog_query, "_ANSWERS", None)
    report.details["answer_cache"] = "catalog.read.images._ANSWERS" if answers is not None else None
    try:
        statements = [query.statement() for query in queries]
        for query, (sql, params) in zip(queries, statements, strict=True):
            api_id = query.retrieve(database)
            row = conn.execute(sql, params).fetchone()
            if row is None or row[0] != api_id:
                report.disagreements.append(
                    f"{short(size)} catalog: retrieve gave {api_id} but SQL gave "
                    f"{row and row[0]} for {query}"
                )

        def api_round() -> None:
            for query in queries:
                query.retrieve(database)

        def uncached_round() -> None:
            for query in queries:
                if answers is not None:
                    answers.clear()
                query.retrieve(database)

        def raw_round() -> None:
            for sql, params in statements:
                conn.execute(sql, params).fetchone()

        timing = Timing(
            _fastest_per_call(api_round, len(queries), mode),
            _fastest_per_call(uncached_round, len(queries), mode),
            _fastest_per_call(raw_round, len(queries), mode),
        )
    finally:
        conn.close()
    for suffix, label, api in (
        ("", "", timing.api),
        ("_uncached", ", answer memo emptied", timing.uncached),
    ):
        report.metrics.append(
            Metric(
                f"warm_resolve{suffix}_ratio_{size}",
                f"warm resolve, {short(size)} images{label}",
                api / timing.raw,
                3.0,
                "<=",
                "x",
                f"retrieve {api * 1e6:.1f} us vs sqlite3 {timing.raw * 1e6:.1f} us per call "
                f"({len(queries)} queries)",
                {"size": size, "retrieve_us": api * 1e6, "sqlite_us": timing.raw * 1e6},
            )
        )
    return timing


def add_growth(report: Report, small: int, first: Timing, large: int, last: Timing) -> None:
    """Per-call time at the largest catalog over the smallest, with and without the memo."""
    variants = (("", "", "api"), ("_uncached", ", answer memo emptied", "uncached"))
    for suffix, label, name in variants:
        after, before = getattr(last, name), getattr(first, name)
        report.metrics.append(
            Metric(
                f"resolve_growth{suffix}",
                f"resolve growth, {short(large)} vs {short(small)}{label}",
                after / before,
                2.0,
                "<=",
                "x",
                f"{after * 1e6:.1f} us vs {before * 1e6:.1f} us per call; sqlite3 "
                f"{last.raw * 1e6:.1f} us vs {first.raw * 1e6:.1f} us",
                {"large_us": after * 1e6, "small_us": before * 1e6},
            )
        )


def _size_of(path: Path) -> int:
    return int(path.stem.split("-")[-1])


# ----------------------------------------------------------------------------------- cold CLI


def measure_cold_cli(path: Path, region: str, workdir: Path, mode: Mode, report: Report) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PAI_CATALOG_DB"}
    env["XDG_DATA_HOME"] = str(workdir / "xdg")  # never the developer's own catalog
    command = [sys.executable, "-m", "catalog", "--db", str(path), "resolve", "pytorch"]
    command += ["latest", "--accelerator", "gpu", "--region", region, "--json"]
    baseline = [sys.executable, "-c", "import click, sqlite3"]

    def once(args: list[str]) -> tuple[float, str]:
        clock = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
        seconds = time.perf_counter() - clock
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
        return seconds, done.stdout

    _, out = once(command)  # also the first run that compiles bytecode and fills the page cache
    once(baseline)
    expected = catalog.retrieve("pytorch", "latest", "gpu", region=region, db=str(path)).image_id
    if json.loads(out.splitlines()[0])["image_id"] != expected:
        report.disagreements.append(f"the CLI answered {out.strip()} but retrieve {expected}")
    cli_times, base_times = [], []
    for _ in range(mode.cli_runs):  # interleaved, so that drift in the machine hits both alike
        base_times.append(once(baseline)[0])
        cli_times.append(once(command)[0])
    cli, base = statistics.median(cli_times), statistics.median(base_times)
    report.metrics.append(
        Metric(
            "cold_cli_ratio",
            f"cold CLI resolve, {short(_size_of(path))} images",
            cli / base,
            2.0,
            "<=",
            "x",
            f"resolve {cli * 1000:.0f} ms vs import click, sqlite3 {base * 1000:.0f} ms "
            f"(median of {mode.cli_runs})",
            {"cli_ms": cli * 1000, "baseline_ms": base * 1000, "runs": mode.cli_runs},
        )
    )


# ------------------------------------------------------------------------- the fake API server


def cached_server(fake: ModuleType, images: list[dict[str, Any]], latency: float) -> Any:
    """A FakePaiApi that filters its listing and encodes each image once, not once per page.

    The stock fake scans every image and deep-copies each one it serves for every page (20 ms
    a page at 10k images, 40 ms for a page of 1000), so its own CPU, not the sync, would set the
    pace. Signature checks, latency, pages and bodies are the stock server's; with any fault but
    latency switched on, it is the stock one.
    """

    class CachedListing(fake.FakePaiApi):  # type: ignore[name-defined,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._listings: dict[tuple[str, str, str, bool], list[str]] = {}

        def _list_images(self, query: dict[str, str]) -> Any:
            page, size = query.get("PageNumber", ""), query.get("PageSize", "")
            plain = self.faults == fake.Faults(latency=self.faults.latency)
            plain = plain and query.get("Order", "ASC") == "ASC"
            if not (plain and page.isdigit() and size.isdigit() and int(page) and int(size)):
                return super()._list_images(query)
            verbose = query.get("Verbose", "") == "true"
            key = (query.get("Labels", ""), query.get("Name", ""), query.get("Query", ""), verbose)
            with self._lock:
                self._pages_served += 1
                if key not in self._listings:
                    matches = [i for i in self._images if fake._matches(i, query)]
                    shown = (fake._present(i, verbose) for i in matches)
                    self._listings[key] = [json.dumps(i, ensure_ascii=False) for i in shown]
                encoded = self._listings[key]
            start = (int(page) - 1) * int(size)
            chunk = ", ".join(encoded[start : start + int(size)])
            request_id = str(uuid.uuid4()).upper()
            head = f'{{"RequestId": "{request_id}", "TotalCount": {len(encoded)}, "Images": ['
            body = f"{head}{chunk}]}}".encode()
            return fake._Reply(200, body, {"x-acs-request-id": request_id})

    return CachedListing({CRAWL_REGION: images}, faults=fake.Faults(latency=latency))


def serve_child(count: int, latency: float) -> None:
    """Runs in the server's own process: serve ``count`` synthetic images until stdin closes."""
    fake = load_fake()
    with cached_server(fake, fake.synthetic_images(count, CRAWL_REGION), latency) as api:
        for verbose in ("true", "false"):  # encode the listing now, not during a timed crawl
            api._list_images({"Labels": OFFICIAL_LABELS, "Verbose": verbose, "PageNumber": "1",
                              "PageSize": "1"})  # fmt: skip
        print(api.url, flush=True)
        sys.stdin.read()


@contextmanager
def fake_server(count: int, latency: float) -> Iterator[str]:
    """The base URL of a fake API serving ``count`` synthetic images, in a process of its own.

    The real API's CPU is not on this machine: in-process, the server's signature checks and
    JSON would compete with the sync for the interpreter lock, and it would be the server, not
    the client, that set the pace.
    """
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve-child", str(count), str(latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the fake API did not start (it said {url!r})")
        yield url
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# -------------------------------------------------------------------------------------- crawl


@dataclass(frozen=True)
class TimedSync:
    seconds: float
    pages_done: float  # when the last page arrived, from the start of sync()
    result: RegionResult


def timed_sync(url: str, path: Path, *, verify: bool) -> TimedSync:
    options = SyncOptions((CRAWL_REGION,), {"": url}, verify=verify, client=CLIENT)
    last_page = [0.0]

    def progress(_region: str, done: int, planned: int) -> None:
        if done == planned:
            last_page[0] = time.perf_counter()

    clock = time.perf_counter()
    [result] = sync(options, db_option=str(path), credentials=CREDS, progress=progress)
    seconds = time.perf_counter() - clock
    if not result.ok:
        raise RuntimeError(f"the benchmark sync failed: {result.error}")
    return TimedSync(seconds, last_page[0] - clock, result)


def serial_crawl(url: str) -> tuple[float, int, int]:
    """(seconds, pages, images) of reading the listing 50 at a time, one page after another."""
    client = PaiClient(CRAWL_REGION, url, CREDS, CLIENT)
    clock = time.perf_counter()
    try:
        read, page, total = 0, 0, None
        while total is None or read < total:
            page += 1
            body = client.list_images_page(page, SERIAL_PAGE_SIZE)
            total = body["TotalCount"]
            read += len(body["Images"])
            if not body["Images"]:
                break
    finally:
        client.close()
    return time.perf_counter() - clock, page, read


_TABLE_ROWS = {
    "image": "SELECT * FROM image",
    "image_version": "SELECT * FROM image_version",
    "image_label": "SELECT * FROM image_label",
    "image_event": "SELECT * FROM image_event",
}


def table_rows(path: Path) -> dict[str, set[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {table: set(conn.execute(sql)) for table, sql in _TABLE_ROWS.items()}
    finally:
        conn.close()


def measure_crawl(workdir: Path, mode: Mode, report: Report) -> None:
    n = mode.crawl_images
    with fake_server(n, LATENCY) as url:
        serial, serial_pages, serial_read = serial_crawl(url)
        log(f"  serial crawl: {serial_pages} pages, {serial_read} images, {serial:.2f} s")
        if serial_read != n:
            report.disagreements.append(f"the serial crawl read {serial_read} of {n} images")
        timed: dict[bool, TimedSync] = {}
        for verify in (True, False):
            path = workdir / f"crawl-{verify}.db"
            done = timed[verify] = timed_sync(url, path, verify=verify)
            log(f"  sync, verify {'on' if verify else 'off'}: {done.seconds:.2f} s")
            if done.result.seen != n:
                report.disagreements.append(f"sync stored {done.result.seen} of {n} images")
        before = table_rows(workdir / "crawl-True.db")
        noop = timed_sync(url, workdir / "crawl-True.db", verify=True)
        after = table_rows(workdir / "crawl-True.db")
    workers = SyncOptions().workers
    for verify, synced in timed.items():
        suffix, label = ("", "verify on") if verify else ("_no_verify", "verify off")
        floor = synced.result.pages / workers * LATENCY
        times = {"sync_s": synced.seconds, "serial_s": serial, "pages_done_s": synced.pages_done}
        times |= {"pages": synced.result.pages, "serial_pages": serial_pages, "floor_s": floor}
        report.metrics.append(
            Metric(
                f"crawl_speedup{suffix}",
                f"crawl {short(n)}, sync vs serial SDK ({label})",
                serial / synced.seconds,
                8.0,
                ">=",
                "x",
                f"serial {serial:.2f} s ({serial_pages} pages of {SERIAL_PAGE_SIZE}) vs sync "
                f"{synced.seconds:.2f} s",
                times,
            )
        )
        report.metrics.append(
            Metric(
                f"crawl_floor_ratio{suffix}",
                f"crawl {short(n)}, sync vs page floor ({label})",
                synced.seconds / floor,
                1.5,
                "<=",
                "x",
                f"floor {floor:.2f} s = {synced.result.pages} pages / {workers} workers x "
                f"{LATENCY * 1000:.0f} ms; pages done at {synced.pages_done:.2f} s, "
                f"stored at {synced.seconds:.2f} s",
                times,
            )
        )
    written = {t: len(after[t] - before[t]) + len(before[t] - after[t]) for t in _TABLE_ROWS}
    if noop.result.added or noop.result.changed or noop.result.removed or any(written.values()):
        report.disagreements.append(f"a repeated sync wrote rows: {written}, {noop.result}")
    report.metrics.append(
        Metric(
            "noop_rows_written",
            f"no-op sync of {short(n)}, rows written",
            sum(written.values()),
            0,
            "==",
            "rows",
            f"second sync {noop.seconds:.2f} s ({noop.result.pages} pages)",
            {"seconds": noop.seconds, "rows_by_table": written},
        )
    )


# ------------------------------------------------------------------------------------- memory


def peak_kb(pid: int | str = "self") -> int:
    """A process's peak RSS in KiB. On Linux, VmHWM: getrusage's ru_maxrss survives exec,
    so a child started by a large parent would report the parent's size instead of its own."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    if pid != "self":
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def sync_child(url: str, path: str) -> None:
    """Runs in the child: one default sync, then its time, CPU and peak RSS (its page
    helper's too) as JSON on stdout."""
    helpers: list[tuple[int, float]] = []
    close = pages.Helper.close

    def measured_close(helper: pages.Helper) -> None:
        # All its pages read: its peak and its CPU are behind it.
        helpers.append((peak_kb(helper._proc.pid), cpu_seconds(helper._proc.pid)))
        close(helper)

    pages.Helper.close = measured_close  # type: ignore[method-assign]
    options = SyncOptions((CRAWL_REGION,), {"": url}, client=CLIENT)
    clock, cpu = time.perf_counter(), time.process_time()
    [result] = sync(options, db_option=path, credentials=CREDS)
    outcome = {"ok": result.ok, "seen": result.seen, "pages": result.pages, "error": result.error}
    outcome |= {"seconds": time.perf_counter() - clock, "cpu": time.process_time() - cpu}
    outcome |= {"peak_kb": peak_kb(), "helper_peak_kb": sum(kb for kb, _ in helpers)}
    print(json.dumps({**outcome, "helper_cpu": sum(seconds for _, seconds in helpers)}))


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_sync_child(url: str, path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--sync-child", url, str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the sync child failed: {done.stderr.strip()}")
    child: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    if not child["ok"]:
        raise RuntimeError(f"the sync child's sync failed: {child}")
    return child


def measure_memory(workdir: Path, mode: Mode, report: Report) -> None:
    n = mode.memory_images
    path = workdir / "memory.db"
    # No latency here: this measures memory, and the latency only stretches the run.
    with fake_server(n, 0.0) as url:
        child = run_sync_child(url, path)
    if child["seen"] != n:
        raise RuntimeError(f"the memory child's sync stored {child['seen']} of {n} images")
    own, helper = child["peak_kb"] * 1024 / MB, child["helper_peak_kb"] * 1024 / MB
    peak = own + helper  # as if both peaked at once
    report.metrics.append(
        Metric(
            "sync_peak_rss_mb",
            f"peak RSS, sync of {short(n)} images",
            peak,
            200.0,
            "<=",
            "MB",
            f"sync {own:.0f} MB + page helper {helper:.0f} MB, {child['seconds']:.1f} s, "
            f"verify on, {db_bytes(path) / MB:.0f} MB db",
            {"seconds": child["seconds"], "sync_mb": own, "helper_mb": helper},
        )
    )


def measure_syncs(sizes: tuple[int, ...], repeat: int) -> str:
    """``--sync``: default syncs of each size into a fresh database, each in a fresh process
    (as a cron job runs), at the crawl's latency; what one mechanism of the sync saves is
    told by two such runs, one with it and one without."""
    workers = SyncOptions().workers
    lines = [
        f"{'images':>8} {'sync s (median, min-max)':<26} {'vs floor':>8}  {'CPU s':<12} peak RSS"
    ]
    with tempfile.TemporaryDirectory(prefix="pai-bench-") as tmp:
        for size in sizes:
            with fake_server(size, LATENCY) as url:
                runs = [
                    run_sync_child(url, Path(tmp) / f"sync-{size}-{n}.db") for n in range(repeat)
                ]
            seconds = sorted(child["seconds"] for child in runs)
            median = statistics.median(seconds)
            floor = runs[0]["pages"] / workers * LATENCY
            cpu = statistics.median(child["cpu"] for child in runs)
            helper_cpu = statistics.median(child["helper_cpu"] for child in runs)
            peak = max(child["peak_kb"] + child["helper_peak_kb"] for child in runs) / 1024
            log(f"  {short(size)}: " + ", ".join(f"{x:.2f} s" for x in seconds))
            lines.append(
                f"{short(size):>8} {f'{median:.2f} ({seconds[0]:.2f}-{seconds[-1]:.2f})':<26} "
                f"{median / floor:>7.2f}x  {f'{cpu:.2f}+{helper_cpu:.2f}':<12} {peak:.0f} MB"
            )
    lines.append(f"floor: pages / {workers} workers x {LATENCY * 1000:.0f} ms; CPU: the sync's "
                 "own + its page helper's")  # fmt: skip
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- report


def render_value(metric: Metric, value: float) -> str:
    if metric.unit == "x":
        return f"{value:.2f}x"
    if metric.unit == "rows":
        return f"{value:.0f}"
    return f"{value:.2f} {metric.unit}" if value < 10 else f"{value:.0f} {metric.unit}"


def render_table(report: Report) -> str:
    mode = report.mode
    lines = [
        f"pai-image-catalog benchmark, {mode.name} mode: catalogs of "
        f"{', '.join(short(s) for s in mode.sizes)} images; crawl {short(mode.crawl_images)}; "
        f"memory sync {short(mode.memory_images)}",
        f"{'metric':<46} {'value':>9}  {'target':<9} {'':<4}  absolute",
    ]
    for m in report.metrics:
        target = f"{m.op} {render_value(m, m.target)}"
        status = "ok" if m.met else "MISS"
        lines.append(
            f"{m.label:<46} {render_value(m, m.value):>9}  {target:<9} {status:<4}  {m.absolute}"
        )
    spent = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.phases.items())
    lines.append(f"time: {spent}; total {time.perf_counter() - _STARTED:.1f} s")
    for problem in report.disagreements:
        lines.append(f"DISAGREEMENT: {problem}")
    return "\n".join(lines)


def as_json(report: Report) -> str:
    return json.dumps(
        {
            "mode": report.mode.name,
            "sizes": list(report.mode.sizes),
            "crawl_images": report.mode.crawl_images,
            "memory_images": report.mode.memory_images,
            "metrics": [{**asdict(m), "met": m.met} for m in report.metrics],
            "resolve_answers_match": not any("retrieve" in d for d in report.disagreements),
            "disagreements": report.disagreements,
            "phases": report.phases,
            "total_seconds": round(time.perf_counter() - _STARTED, 2),
            **report.details,
        },
        indent=2,
    )


def run(mode: Mode, workdir: Path) -> Report:
    report = Report(mode)
    fake = load_fake()
    sizes = sorted(mode.sizes)
    paths = {size: workdir / f"catalog-{size}.db" for size in sizes}
    builds: dict[str, Any] = {}
    for size in sizes:
        with phase(report, f"build {short(size)}"):
            builds[short(size)] = build_catalog(fake, paths[size], size)
    report.details["build_seconds"] = builds
    queries = pick_queries(paths[sizes[0]], "cn-r00")  # the same mix at every size
    report.details["queries"] = [asdict(query) for query in queries]
    per_call: dict[int, Timing] = {}
    for size in sizes:
        with phase(report, f"resolve {short(size)}"):
            per_call[size] = measure_resolve(paths[size], queries, mode, report)
    small, large = sizes[0], sizes[-1]
    add_growth(report, small, per_call[small], large, per_call[large])
    with phase(report, "cold CLI"):
        measure_cold_cli(paths[large], "cn-r00", workdir, mode, report)
    connection.forget()  # the readers' open files; the catalogs are done with
    with phase(report, "crawl"):
        measure_crawl(workdir, mode, report)
    with phase(report, "memory"):
        measure_memory(workdir, mode, report)
    size, objects = db_bytes(paths[large]), db_objects(paths[large])
    biggest = ", ".join(f"{name} {n / large:.0f} B" for name, n in list(objects.items())[:4])
    report.details["db_bytes_by_object"] = objects
    report.metrics.append(
        Metric(
            "db_kb_per_image",
            f"database size per image, {short(large)} images",
            size / large / 1024,
            1.5,
            "<=",
            "KB",
            f"{size / MB:.0f} MB in all; per image: {biggest or 'no dbstat in this SQLite'}",
            {"bytes": size},
        )
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report.details["bench_peak_rss_mb"] = round(peak)
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Targets and measurements are described at the top of scripts/bench.py.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI (< 2 minutes)")
    parser.add_argument("--json", action="store_true", help="JSON on stdout, the table on stderr")
    parser.add_argument("--sizes", help="catalog sizes, comma-separated (default: by mode)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the databases in DIR")
    parser.add_argument(
        "--sync",
        metavar="SIZES",
        help="only time default syncs of these sizes (comma-separated), each in a fresh process",
    )
    parser.add_argument("--repeat", type=int, default=5, help="syncs per size with --sync")
    parser.add_argument("--sync-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--serve-child", nargs=2, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(sorted({int(s.replace("_", "")) for s in text.split(",") if s}))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sync_child:
        sync_child(*args.sync_child)
        return 0
    if args.serve_child:
        serve_child(int(args.serve_child[0]), float(args.serve_child[1]))
        return 0
    if args.sync:
        print(measure_syncs(_sizes(args.sync), max(1, args.repeat)))
        return 0
    mode = QUICK if args.quick else FULL
    if args.sizes:
        mode = dataclasses.replace(mode, sizes=_sizes(args.sizes))
    if args.keep:
        # Stale catalogs would turn the builds into no-op syncs, so only an empty folder will do.
        if args.keep.exists() and any(args.keep.iterdir()):
            print(f"--keep {args.keep}: the folder is not empty; name a new one.", file=sys.stderr)
            return 2
        args.keep.mkdir(parents=True, exist_ok=True)
        report = run(mode, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="pai-bench-") as tmp:
            report = run(mode, Path(tmp))
    table = render_table(report)
    if args.json:
        print(table, file=sys.stderr)
        print(as_json(report))
    else:
        print(table)
    for problem in report.disagreements:
        log(f"DISAGREEMENT: {problem}")
    return 1 if report.disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
