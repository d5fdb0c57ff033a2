"""Hostile input: fuzzed parsing, huge pages, SQL in arguments, damaged databases, secrets."""

from __future__ import annotations

import hashlib
import json
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.cli.main import main
from catalog.errors import InputError
from catalog.parse import SCOPES, records, tags, versions
from catalog.read import connection
from catalog.store import writer
from catalog.sync.run import sync
from tests.dbkit import CatalogDb, Databases, dump, sqlite_dump
from tests.test_reliability import (
    FOREVER,
    assert_catalog_equals,
    catalog_dump,
    matrix_options,
    run_rows,
    subprocess_env,
    sync_command,
)
from tests.test_sync import CREDS, REGION, fake

STATUSES = {"ok", "partial", "unrecognized"}
SQL = [
    "'; DROP TABLE image; --", '"; DROP TABLE image_version; --', "' OR '1'='1", "1=1",
    "'); DELETE FROM image_label; --", "/*", "*/", "%", "_", "\\", "UNION SELECT * FROM sync_run",
    "; ATTACH DATABASE '/tmp/x' AS x; --", "\x00", "' || load_extension('x') || '",
]  # fmt: skip
# Pieces real URIs, tags and labels are made of, so the fuzzer reaches past the first check.
PIECES = [
    "/", ":", "@", ".", "-", "_", "__", "sha256:", "a" * 64, "dsw-registry.cn-hangzhou.cr.",
    "aliyuncs.com", "pai", "pytorch", "tensorflow", "2.1.0", "v1.15", "rc1", "dev", "gpu", "cpu",
    "py310", "python3.11", "cu121", "cuda12.1", "ubuntu22.04", "centos7", "deeprec2204u1",
    "tf2.12gpu", "vllm", "0.2.6", "1" * 12, "abc1234", "system.framework.", "PyTorch",
    "system.chipType", "GPU", "system.supported.dlc", "true", " ", "\t", "\n",
]  # fmt: skip
CHAR = st.one_of(
    st.characters(),  # any code point but lone surrogates
    st.characters(categories=["Cs"]),  # lone surrogates, as json.loads("\\ud800") makes
    st.characters(categories=["Cc"]),  # control characters
)
HOSTILE = st.lists(
    st.one_of(st.text(CHAR, max_size=12), st.sampled_from(PIECES), st.sampled_from(SQL)),
    max_size=24,
).map("".join)
# 100k characters: a fuzzed fragment repeated (the fuzzer's own strings stay small).
# A million characters: a regex that backtracks over them (quadratic or worse) would run for
# many minutes, far past HANG_GUARD, while a linear scan takes well under a second.
N = 1_000_000
HANG_GUARD = 60
HUGE = st.builds(
    lambda piece, tail: (piece * (N // max(1, len(piece)) + 1))[:N] + tail,
    HOSTILE.filter(bool),
    HOSTILE,
)
LABELS = st.dictionaries(
    st.one_of(
        st.sampled_from(
            [
                "system.framework", "system.framework.PyTorch", "system.chipType",
                "system.pythonVersion", "system.dsw.cudaVersion", "system.dsw.os",
                "system.dsw.osVersion", "system.supported.dlc", "system.supported.eas",
                "system.official", "SYSTEM.FRAMEWORK.tensorflow ",
            ]
        ),
        HOSTILE,
    ),
    HOSTILE,
    max_size=8,
)  # fmt: skip
# A real repository with a fuzzed tag, so the tag parser sees more than rejected URIs.
OFFICIAL_REPOSITORY = HOSTILE.map(
    lambda tag: f"dsw-registry.{REGION}.cr.aliyuncs.com/pai/pytorch:{tag}"
)
FAST = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


def assert_parsed(parsed: tags.ParsedImage) -> None:
    assert parsed.parse_status in STATUSES
    assert (parsed.parse_reason is None) == (parsed.parse_status == "ok")
    assert set(parsed.scopes) <= set(SCOPES)
    for value in (parsed.framework, parsed.framework_version, parsed.accelerator):
        assert value is None or isinstance(value, str)
    # What the store derives from it must not raise either.
    assert isinstance(versions.sort_key(parsed.framework_version), str)
    assert versions.version_class(parsed.framework_version) in (0, 1, 2)


# --- parsing never raises ----------------------------------------------------------------------


@FAST
@given(HOSTILE)
def test_parse_uri_never_raises_and_what_it_accepts_it_splits_exactly(uri: str) -> None:
    ref = tags.parse_uri(uri)
    if ref.error is None:
        assert ref.repository
        joined = "/".join(part for part in (ref.host, ref.namespace, ref.repository) if part)
        joined += f":{ref.tag}" if ref.tag is not None else ""
        joined += f"@{ref.digest}" if ref.digest is not None else ""
        assert joined == uri.strip()


@FAST
@given(HOSTILE, st.one_of(st.none(), HOSTILE))
def test_parse_tag_never_raises(tag: str, framework: str | None) -> None:
    info = tags.parse_tag(tag, framework)
    assert all(isinstance(name, str) for name, _ in info.components)
    assert info.accelerator in (None, "GPU", "CPU", "PPU", "XPU")


@FAST
@given(st.one_of(HOSTILE, OFFICIAL_REPOSITORY), LABELS)
def test_parse_image_always_gives_a_status(uri: str, labels: dict[str, str]) -> None:
    assert_parsed(tags.parse_image(uri, labels))


@FAST
@given(st.dictionaries(st.sampled_from(list(records.API_FIELDS)), HOSTILE), LABELS)
def test_an_api_record_is_refused_with_input_error_or_stored_parsed(
    fields: dict[str, str], labels: dict[str, str]
) -> None:
    obj: dict[str, Any] = {**fields, "Labels": [{"Key": k, "Value": v} for k, v in labels.items()]}
    try:
        image = records.parse_image(obj, "fuzzed")
    except InputError as exc:  # a clean refusal: one line that says where
        assert str(exc).startswith("fuzzed: ") and "\n" not in str(exc)
        return
    row = writer.version_row(image, REGION)
    assert row["parse_status"] in STATUSES and row["image_id"] == image.key
    json.dumps(row, ensure_ascii=False).encode()  # every value can be stored as UTF-8 text


@settings(deadline=None, suppress_health_check=list(HealthCheck))
@given(HUGE, LABELS)
@pytest.mark.slow
def test_huge_strings_parse_quickly(hang_guard: Any, text: str, labels: dict[str, str]) -> None:
    with hang_guard(HANG_GUARD):  # no regex backtracks for ever on one field
        tags.parse_uri(text)
        tags.parse_tag(text)
        assert_parsed(tags.parse_image(text, {**labels, text[:1000]: text}))
        assert_parsed(tags.parse_image(f"r.io/pai/pytorch:{text}", {"system.framework": text}))


@pytest.mark.parametrize(
    "text",
    [
        "a" * N, "-" * N, "a-" * (N // 2), "1." * (N // 2), "1" * N, "ab12" * (N // 4),
        "cu" + "1" * N, "py" * (N // 2), "/" * N, ":" * N, "@" * N, "a/" * (N // 2),
        "a__" * (N // 3), "h." * (N // 2) + "/r:t", "r:" + "a" * N, "r@sha256:" + "a" * N,
        "ubuntu22.04-" * (N // 12), "\x00" * N, "é" * N, "\ud800" * N, SQL[0] * (N // 24),
        "pytorch2.3.0tensorflow2.16.1" * (N // 28), "v1.2.3rc1-" * (N // 10),
        "aaa" * (N // 3) + "1.1.1x",
    ],
    ids=lambda text: f"{text[:8]!r}x{len(text)}",
)  # fmt: skip
def test_pathological_strings_parse_quickly(text: str, hang_guard: Any) -> None:
    with hang_guard(HANG_GUARD):
        for uri in (text, f"dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai/pytorch:{text}"):
            tags.parse_uri(uri)
            assert_parsed(tags.parse_image(uri, {"system.framework.PyTorch": text, text: text}))
        tags.parse_tag(text, "PyTorch")


# --- huge pages: bounded memory, stored right ------------------------------------------------

MiB = 1024 * 1024
# Runs a command as its own child and prints that child's peak RSS, so nothing else the test
# process ever ran (RUSAGE_CHILDREN keeps the largest) can blur the number.
PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stderr.write(done.stderr)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
    "sys.exit(done.returncode)\n"
)


def peak_rss(command: list[str]) -> tuple[int, str]:
    """(peak RSS in bytes of ``command``, its stderr); fails unless it exits 0."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *command],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout), done.stderr


def import_command(db: CatalogDb, *files: Path) -> list[str]:
    files_ = [str(f) for f in files]
    return [
        sys.executable,
        "-m",
        "catalog",
        "--db",
        db.target,
        "import",
        *files_,
        "--region",
        REGION,
    ]


def heavy_image() -> dict[str, Any]:
    """One image with 10 MB of labels: 5,000 labels of 2 KB, one of them 1 MB of one value."""
    image = fake.synthetic_images(1, REGION, seed=7)[0]
    rng = random.Random(7)
    extra = [
        {"Key": f"user.note.{n:05d}", "Value": "".join(rng.choices("abcdefgh ", k=2000))}
        for n in range(4999)
    ]
    extra.append({"Key": "user.blob", "Value": "x" * MiB})
    image["Labels"] = [*image["Labels"], *extra]
    return image


def stored_labels(db: CatalogDb, image_id: str) -> dict[str, str | None]:
    rows = db.rows(
        "SELECT l.key, l.value FROM image_label l JOIN v_image v ON v.version_id = "
        "l.version_id WHERE v.image_id = :image_id",
        {"image_id": image_id},
    )
    return dict(rows)


@pytest.mark.slow
def test_ten_megabytes_of_labels_on_one_image(
    catalog_db: CatalogDb, databases: Databases, tmp_path: Path
) -> None:
    heavy = heavy_image()
    assert len(json.dumps(heavy["Labels"])) > 10 * MiB
    listing = [*fake.synthetic_images(30, REGION), heavy]
    page = tmp_path / "page.json"
    page.write_text(json.dumps({"TotalCount": len(listing), "Images": listing}), encoding="utf-8")
    imported, _ = peak_rss(import_command(catalog_db, page))
    assert imported < 512 * MiB, f"import of one 10 MB image peaked at {imported / MiB:.0f} MiB"
    assert_catalog_equals(catalog_db, listing)
    expected = {label["Key"]: label["Value"] for label in heavy["Labels"]}
    assert stored_labels(catalog_db, heavy["ImageId"]) == expected
    # The same image through a sync: the API serves it on a page of its own.
    (tmp_path / "synced").mkdir()
    synced = databases.empty(tmp_path / "synced")
    try:
        with fake.FakePaiApi({REGION: listing}) as api:
            peak, _ = peak_rss(sync_command(synced, api, "--page-size", "25"))
            assert_catalog_equals(synced, api.listing())
        assert peak < 512 * MiB, f"sync of one 10 MB image peaked at {peak / MiB:.0f} MiB"
        assert stored_labels(synced, heavy["ImageId"]) == expected
    finally:
        databases.drop(synced)
    print(f"\n10 MB of labels: import peaked at {imported / MiB:.0f}, sync {peak / MiB:.0f} MiB")


@pytest.mark.slow
def test_a_page_of_100k_images(catalog_db: CatalogDb, tmp_path: Path, long_run: bool) -> None:
    if long_run:  # realistic images, 90 MB of JSON
        listing = fake.synthetic_images(100_000, REGION)
    else:  # the same count, lean records: 18 MB of JSON
        listing = [
            {
                "ImageId": f"image-{n:08d}",
                "ImageUri": f"dsw-registry.{REGION}.cr.aliyuncs.com/pai/pytorch:2.{n % 9}.{n}",
                "Labels": [{"Key": "system.official", "Value": "true"}],
            }
            for n in range(100_000)
        ]
    page = tmp_path / "page.json"
    page.write_text(json.dumps({"TotalCount": len(listing), "Images": listing}), encoding="utf-8")
    size = page.stat().st_size
    peak, _ = peak_rss(import_command(catalog_db, page))
    # 670 MiB for the realistic 90 MB page when this was written: about 7 times the JSON.
    assert peak < 1024 * MiB, f"{size / MiB:.0f} MB page peaked at {peak / MiB:.0f} MiB"
    assert_catalog_equals(catalog_db, listing)
    print(f"\n100k images, {size / MiB:.0f} MiB page: import peaked at {peak / MiB:.0f} MiB")


# --- SQL in command-line arguments -------------------------------------------------------------

DROP = "pytorch'; DROP TABLE image; --"


@pytest.fixture(scope="module")
def real_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real catalog of 120 synced images, in one checkpointed file."""
    path = tmp_path_factory.mktemp("real") / "catalog.db"
    with fake.FakePaiApi({REGION: fake.synthetic_images(120, REGION)}) as api:
        [result] = sync(matrix_options(api), db_option=str(path), credentials=CREDS)
    assert result.ok, result.error
    assert not path.with_name(path.name + "-wal").exists()
    return path


@pytest.fixture(scope="module")
def real_db(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CatalogDb]:
    """The same catalog on the backend under test."""
    made = databases.empty(tmp_path_factory.mktemp("real_db"))
    with fake.FakePaiApi({REGION: fake.synthetic_images(120, REGION)}) as api:
        [result] = sync(matrix_options(api), db_option=made.target, credentials=CREDS)
    assert result.ok, result.error
    yield made
    databases.drop(made)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def invoke(db: Path | CatalogDb, *args: str) -> Any:
    env = {k: v for k, v in subprocess_env().items() if k.startswith("ALIBABA_CLOUD_")}
    target = db.target if isinstance(db, CatalogDb) else str(db)
    return CliRunner().invoke(main, ["--db", target, *args], env=env)


SYNC_FAILED = re.compile(r"[a-z]{2,}(-[a-z0-9]+)+: failed after [0-9.]+ s: ")


def assert_clean_exit(result: Any) -> None:
    """Exit 0, or a one-line ``Error:`` (after click's usage lines for exit 2); no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        return
    lines = result.stderr.splitlines()
    if result.exit_code == 1:  # an error, or a sync's one summary line per failed region
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("Error: ") or SYNC_FAILED.match(lines[0]), result.stderr
    else:
        assert result.exit_code == 2 and lines[0].startswith("Usage: "), result.stderr
        assert [line for line in lines if line.startswith("Error: ")] == [lines[-1]]


HOSTILE_ARGS = [
    ["resolve", DROP],
    ["resolve", "pytorch", "2.1'; DELETE FROM image_version; --"],
    ["resolve", "pytorch", "--region", "cn-hangzhou' OR '1'='1"],
    ["resolve", "pytorch", "--os", "ubuntu'; DROP TABLE image_label; --"],
    ["resolve", "pytorch", "--os", "%"],
    ["resolve", "pytorch", "--python", "3.10' OR 1=1 --"],
    ["resolve", "pytorch", "--cuda", '12.1"; DROP TABLE image; --'],
    ["resolve", "pytorch", "--accelerator", "GPU' OR '1'='1"],
    ["resolve", "pytorch", "--as-of", "2024-01-01'; DROP TABLE image; --"],
    ["list", DROP],
    ["list", "--version", "1' OR '1'='1"],
    ["list", "pytorch", "--region", "'; DROP TABLE image; --", "--os", "u'--"],
    ["versions", '"; DROP TABLE image_version; --'],
    ["show", "x' OR 1=1 --"],
    ["history", "image-1'; DROP TABLE image_event; --"],
    ["runs", "--region", "x' OR 1=1 --"],
    ["diff", "--region", "'; DELETE FROM sync_run; --"],
    ["export", "--as-of", "'; DROP TABLE image; --"],
    ["sql", "DROP TABLE image"],
    ["sql", "DELETE FROM image_label"],
    ["sql", "UPDATE image SET region = 'x'"],
    ["sql", "SELECT 1; DROP TABLE image"],
    ["sql", "WITH x AS (SELECT 1) DELETE FROM image_event"],
    ["sql", "ATTACH DATABASE ':memory:' AS other"],
    ["sql", "PRAGMA writable_schema = 1"],
    ["sql", "PRAGMA journal_mode = DELETE"],
    ["sql", "CREATE TEMP TABLE t AS SELECT * FROM image"],
    ["sql", "SELECT load_extension('/tmp/x.so')"],
    ["sql", "SELECT * FROM image WHERE region = :r", "-p", "r", "x' OR '1'='1"],
    ["sync", "--region", "cn-hangzhou'; DROP TABLE image; --", "--endpoint", "http://127.0.0.1:9"],
    ["sync", "--region", REGION, "--endpoint", "http://127.0.0.1:9/'; DROP TABLE x", "--retries=0"],
    ["import", "missing.json", "--region", "'; DROP TABLE image; --"],
    ["db", "upgrade", "--revision", "head'; DROP TABLE image; --"],
]


@pytest.mark.parametrize("args", HOSTILE_ARGS, ids=lambda args: " ".join(args)[:60])
def test_sql_in_arguments_changes_nothing(
    databases: Databases, real_db: CatalogDb, tmp_path: Path, args: list[str]
) -> None:
    db = databases.copy(real_db, tmp_path)
    try:
        before = (dump(db), sha256(db.path) if db.path else None)
        result = invoke(db, *args)
        assert_clean_exit(result)
        connection.forget()
        if args[0] == "sync" and result.exit_code == 1:
            # A failed sync records itself, hostile text and all, as data in one sync_run row.
            assert catalog_dump(db) == catalog_dump(real_db)
            [failed] = [row for row in run_rows(db) if row["status"] == "failed"]
            assert failed["detail"].endswith("DROP TABLE x") and len(run_rows(db)) == 2
        else:
            after = (dump(db), sha256(db.path) if db.path else None)
            assert after == before, result.output
        assert not list(tmp_path.glob("*.so")) and not (tmp_path / "x").exists()
    finally:
        databases.drop(db)


def test_vacuum_into_is_refused(real_catalog: Path, tmp_path: Path) -> None:
    stolen = tmp_path / "copy.db"
    result = invoke(real_catalog, "sql", f"VACUUM INTO '{stolen}'")
    assert_clean_exit(result)
    assert result.exit_code == 2 and not stolen.exists()


# --- damaged database files --------------------------------------------------------------------


def damaged(real: Path, kind: str, path: Path) -> Path:
    data = real.read_bytes()
    if kind == "corrupt":  # random bytes over the middle half
        rng = random.Random(kind)
        middle = bytes(rng.randrange(256) for _ in range(len(data) // 2))
        data = data[: len(data) // 4] + middle + data[len(data) // 4 + len(middle) :]
    elif kind == "truncated":
        data = data[: len(data) // 2]
    elif kind == "text":
        data = b"pai-catalog, but as a text file\n" * 200
    elif kind == "empty":
        data = b""
    elif kind == "schema-not-utf8":  # SQLite quotes the broken schema text in its error
        start = data.index(b"CREATE TABLE") + len(b"CREATE ")
        data = data[:start] + b"\xff\xfe\xfd\xfc\xfb" + data[start + 5 :]
    path.write_bytes(data)
    if kind == "newer":  # as a later pai-catalog would leave it
        conn = sqlite3.connect(path)
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
        conn.commit()
        conn.close()
    return path


COMMANDS = {
    "resolve": ["resolve", "pytorch"],
    "list": ["list"],
    "sync": ["sync", "--region", REGION, "--endpoint", "http://127.0.0.1:9", "--retries", "0"],
    "import": ["import", "{listing}", "--region", REGION],
    "db check": ["db", "check"],
}
# What each message must name; readers and writers word it differently (see docs/RELIABILITY.md).
PROBLEMS = {
    "corrupt": r"is corrupt or not an SQLite database \(database disk image is malformed\)"
    r"|Cannot use the database .*: database disk image is malformed",
    "truncated": r"is corrupt or not an SQLite database \(database disk image is malformed\)"
    r"|Cannot use the database .*: database disk image is malformed",
    "text": r"is (corrupt or )?not an SQLite database",
    "empty": r"is not a pai-catalog database \(no schema revision\)|is at revision none, not head",
    "newer": r"is at schema revision 0099, which this pai-catalog does not know: it was "
    r"written by a newer version; upgrade pai-catalog",
    "schema-not-utf8": r"corrupt|malformed|not an SQLite database",
}


@pytest.fixture
def listing_file(tmp_path: Path) -> Path:
    path = tmp_path / "listing.json"
    images = fake.synthetic_images(3, REGION)
    path.write_text(json.dumps({"TotalCount": 3, "Images": images}), encoding="utf-8")
    return path


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", list(PROBLEMS))
def test_a_damaged_database_gives_one_line_naming_the_problem(
    real_catalog: Path, tmp_path: Path, listing_file: Path, kind: str, command: str
) -> None:
    db = damaged(real_catalog, kind, tmp_path / "catalog.db")
    before = sha256(db)
    args = [arg.format(listing=listing_file) for arg in COMMANDS[command]]
    result = invoke(db, *args)
    assert_clean_exit(result)
    if kind == "empty" and command in ("import", "sync"):
        # An empty file is an empty SQLite database: writers make it a catalog (judgement call).
        assert (result.exit_code, command) == (0, "import") or "cannot connect" in result.stderr
        assert len(run_rows(CatalogDb.file(db))) == 1  # the import, or the sync's failure, recorded
        return
    assert result.exit_code == 1 and result.stdout == ""
    assert re.search(PROBLEMS[kind], result.stderr), result.stderr
    assert sha256(db) == before  # a refused command leaves the file as it was


@pytest.mark.parametrize("seed", range(12))
def test_random_corruption_never_escapes_as_a_traceback(
    real_catalog: Path, tmp_path: Path, listing_file: Path, seed: int
) -> None:
    rng = random.Random(seed)
    data = bytearray(real_catalog.read_bytes())
    start, length = rng.randrange(len(data)), rng.choice([1, 16, 512, 4096, len(data) // 3])
    data[start : start + length] = bytes(rng.randrange(256) for _ in range(length))
    del data[len(data) if seed % 3 else rng.randrange(len(data)) :]  # one in three truncated
    for command, args in COMMANDS.items():
        db = tmp_path / f"{command}.db"
        db.write_bytes(bytes(data))
        connection.forget()
        result = invoke(db, *[arg.format(listing=listing_file) for arg in args])
        assert_clean_exit(result)
        assert result.exit_code in (0, 1), (command, result.output)


@pytest.mark.parametrize("args", [["export"], ["sql", "SELECT count(*) FROM image_label"]])
def test_export_and_sql_name_a_corrupt_database(
    real_catalog: Path, tmp_path: Path, args: list[str]
) -> None:
    """Bug 3 in docs/RELIABILITY.md (fixed in 90e4b11): the damage was reported as a usage
    error, exit 2 with click's usage text and 'SQL error: database disk image is malformed'."""
    db = tmp_path / "catalog.db"
    db.write_bytes(real_catalog.read_bytes())
    conn = sqlite3.connect(db)
    pages = conn.execute(
        "SELECT pageno FROM dbstat WHERE name = 'image_label' AND pagetype = 'leaf'"
    ).fetchall()
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    # Only label pages: the file opens and its revision reads, and the scan hits the damage.
    data, rng = bytearray(db.read_bytes()), random.Random(0)
    for (page,) in pages:
        data[(page - 1) * size : page * size] = bytes(rng.randrange(256) for _ in range(size))
    db.write_bytes(bytes(data))
    result = invoke(db, *args)
    assert_clean_exit(result)
    assert result.exit_code == 1 and re.search(PROBLEMS["corrupt"], result.stderr), result.stderr


# --- secrets -----------------------------------------------------------------------------------

# Distinctive values, so that any copy of them, anywhere, is found.
FAKE_SECRET = "FAKE-secret-Qz7pT3vL9xW2kR"
FAKE_TOKEN = "FAKE-sts-CAIS8d4hK2mN5qR7tV1wY3zB6cE9fG0"
SECRET_ENV = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "test-ak",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": FAKE_SECRET,
    "ALIBABA_CLOUD_SECURITY_TOKEN": FAKE_TOKEN,
}
# A crash nobody planned: the store raises, and the CLI's traceback goes to stderr.
CRASH = (
    "import sys\n"
    "from catalog.store import writer\n"
    "from catalog.cli.main import main\n"
    "def crash(*args, **kwargs):\n"
    "    raise RuntimeError('the disk caught fire')\n"
    "writer.ListingWriter.add = crash\n"
    "main(sys.argv[1:], prog_name='pai-catalog')\n"
)


def assert_no_secret(*texts: str | bytes) -> None:
    for text in texts:
        data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
        for secret in (FAKE_SECRET, FAKE_TOKEN):
            # The whole value, and its halves, in case something cut or wrapped it.
            for piece in (secret, secret[: len(secret) // 2], secret[len(secret) // 2 :]):
                assert piece.encode() not in data, f"{piece!r} leaked"


def everything_stored(db: Path) -> list[bytes]:
    """Every table dumped, and the raw bytes of every file beside the database."""
    dumped = "\n".join(sqlite_dump(db)) if db.exists() and db.stat().st_size else ""
    files = [path.read_bytes() for path in db.parent.iterdir() if path.is_file()]
    return [dumped.encode(), *files]


@pytest.fixture
def secret_api() -> Iterator[Any]:
    images = {REGION: fake.synthetic_images(60, REGION)}
    with fake.FakePaiApi(images, access_key_secret=FAKE_SECRET, security_token=FAKE_TOKEN) as api:
        yield api


SECRET_SCENARIOS: dict[str, dict[str, Any]] = {
    "success, with retries": {"throttle_first": 2, "reset_first": 1, "error_5xx_first": 1},
    "throttled to failure": {"always_error": "Throttling.User"},
    "the server hangs up": {"reset_first": FOREVER},
    "malformed answers": {"malformed_first": FOREVER},
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "scenario", [*SECRET_SCENARIOS, "wrong secret", "wrong token", "crash", "sigkill"]
)
def test_the_secret_and_token_appear_nowhere(
    secret_api: Any, tmp_path: Path, scenario: str
) -> None:
    db = tmp_path / "state" / "catalog.db"
    db.parent.mkdir()
    env = subprocess_env(**SECRET_ENV)
    for name, value in SECRET_SCENARIOS.get(scenario, {}).items():
        setattr(secret_api.faults, name, value)
    if scenario == "wrong secret":
        env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = FAKE_SECRET[::-1]
    if scenario == "wrong token":
        env["ALIBABA_CLOUD_SECURITY_TOKEN"] = FAKE_TOKEN[::-1]
    args = ["--page-size", "10", "--workers", "1", "--retries", "5", "--json"]
    command = sync_command(db, secret_api, *args)
    command[3:3] = ["--log-level", "debug"]  # python -m catalog --log-level debug --db ...
    if scenario == "crash":
        command[1:3] = ["-c", CRASH]
    if scenario == "sigkill":
        secret_api.faults.latency = 0.2  # 12 pages: about 3 s
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(secret_api.requests) < 3:  # in the middle: a quarter of the pages answered
            assert process.poll() is None and time.monotonic() < deadline, process.returncode
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL
        assert b"DEBUG" in stderr  # it was killed while it was talking
    else:
        done = subprocess.run(command, env=env, capture_output=True, timeout=120)
        stdout, stderr = done.stdout, done.stderr
        assert done.returncode == (0 if scenario.startswith("success") else 1), stderr
        assert b"INFO catalog.sync" in stderr or scenario == "crash"
        if scenario not in ("the server hangs up", "crash"):
            assert b"DEBUG catalog.sync.client" in stderr  # every answer was logged
        if scenario == "crash":
            assert b"Traceback" in stderr and b"the disk caught fire" in stderr
    assert_no_secret(stdout, stderr, *everything_stored(db))


def test_exception_text_and_every_debug_log_in_process(secret_api: Any, tmp_path: Path) -> None:
    import logging
    import traceback

    from catalog.account import Credentials
    from catalog.sync.client import ClientSettings, PaiClient

    records_: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records_.append  # type: ignore[method-assign]
    loggers = [logging.getLogger(), logging.getLogger("catalog")]  # catalog may not propagate
    saved = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)  # urllib3's connection and request lines too
    texts: list[str] = []
    credentials = Credentials("test-ak", FAKE_SECRET, FAKE_TOKEN, source="the test")
    try:
        for faults in [*SECRET_SCENARIOS.values(), {"always_error": "SignatureDoesNotMatch"}]:
            for name, value in faults.items():
                setattr(secret_api.faults, name, value)
            options = matrix_options(secret_api, retries=2)
            db = str(tmp_path / "catalog.db")
            [result] = sync(options, db_option=db, credentials=credentials)
            texts.append(repr(result))
            client = PaiClient(REGION, secret_api.url, credentials, ClientSettings(retries=1))
            try:
                client.list_images_page(1, 10)
            except Exception as exc:  # the client's own errors, with their whole chain
                texts += ["".join(traceback.format_exception(exc)), repr(exc), repr(vars(exc))]
            texts += [repr(vars(client)), repr(credentials), str(credentials)]
            client.close()
            secret_api.faults = fake.Faults()
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
    logged = [record.getMessage() for record in records_]
    assert any("catalog" in record.name for record in records_) and len(texts) > 10
    assert_no_secret(*texts, *logged, *everything_stored(tmp_path / "catalog.db"))
