"""Garbage in is refused, not stored: one validation for import and sync; no raw control
characters reach a terminal; input that defeats Python's JSON reader is one line, not a
traceback."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import catalog
from catalog.cli.main import main
from catalog.cli.output import Format, render, render_record, visible
from catalog.errors import InputError
from catalog.parse import records
from catalog.sync.run import import_files
from tests.conftest import ROOT, api_image
from tests.dbkit import CatalogDb, dump
from tests.test_credentials import SECRET as CLI_SECRET
from tests.test_credentials import ak, failure
from tests.test_sync import REGION, SECRET, fake, run

HZ = f"dsw-registry.{REGION}.cr.aliyuncs.com/pai"
TORCH = f"{HZ}/pytorch:2.1.0-gpu-py310-cu121-ubuntu22.04"
# What a terminal would obey: set its title, then clear the screen.
HOSTILE_URI = f"{TORCH}\x1b]0;owned\x07\x1b[2J"
LABELS = {"system.official": "true", "system.framework.PyTorch": "2.1.0"}
MAX = str(records.MAX_COUNT)


def good(image_id: str = "img-bad", **fields: Any) -> dict[str, Any]:
    return api_image(image_id, TORCH, LABELS, GmtCreateTime="2024-01-02T03:04:05Z", **fields)


def base() -> list[dict[str, Any]]:
    return [
        api_image(f"pt-{n}", f"{HZ}/pytorch:2.{n}.0-gpu-py310", LABELS, Description=f"PyTorch {n}")
        for n in range(3)
    ]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def imported(catalog_db: CatalogDb, write_listing: Any) -> CatalogDb:
    """A catalog holding one good import, so that a refusal can be seen to change nothing."""
    import_files([write_listing(base())], REGION, db_option=catalog_db.target)
    return catalog_db


def refused(db: CatalogDb, path: Path) -> str:
    """The one-line error of importing ``path`` into ``db``, which must be left as it was."""
    before = dump(db)
    with pytest.raises(InputError) as caught:
        import_files([path], REGION, db_option=db.target)
    assert dump(db) == before
    return str(caught.value)


# --- import: one rule for every field ---------------------------------------------------------

REFUSALS = [
    (
        {"ImageUri": HOSTILE_URI},
        "ImageUri of image 'img-bad' holds the control character U+001B, which no field may "
        "hold; fix or drop the image.",
    ),
    (
        {"ImageId": "img\x00bad"},
        "ImageId of image 'img\\x00bad' holds the control character U+0000, which no field may "
        "hold; fix or drop the image.",
    ),
    (
        {"Labels": [{"Key": "system.framework.PyTorch", "Value": "2.1\x00"}]},
        "the value of label 'system.framework.PyTorch' of image 'img-bad' holds the control "
        "character U+0000, which no field may hold; fix or drop the image.",
    ),
    (
        {"Labels": [{"Key": "system.\x9bofficial", "Value": "true"}]},
        "the key of label 'system.\\x9bofficial' of image 'img-bad' holds the control character "
        "U+009B, which no field may hold; fix or drop the image.",
    ),
    (
        {"Name": "pytorch\nofficial"},
        "Name of image 'img-bad' holds the control character U+000A, which only Description and "
        "label values may hold; fix or drop the image.",
    ),
    (
        {"Description": "PyTorch\x7f"},
        "Description of image 'img-bad' holds the control character U+007F, which no field may "
        "hold; fix or drop the image.",
    ),
    (
        {"GmtCreateTime": "9999-99-99T99:99:99Z"},
        "GmtCreateTime of image 'img-bad' is not a time ('9999-99-99T99:99:99Z'); give an ISO "
        "8601 time such as 2024-01-02T03:04:05Z, or leave the field out.",
    ),
    (
        {"GmtModifiedTime": "not a time"},
        "GmtModifiedTime of image 'img-bad' is not a time ('not a time'); give an ISO 8601 time "
        "such as 2024-01-02T03:04:05Z, or leave the field out.",
    ),
    (
        {"GmtCreateTime": "2024-01-02T03:04:05Z\x1b[2J"},
        "GmtCreateTime of image 'img-bad' holds the control character U+001B, which no field may "
        "hold; fix or drop the image.",
    ),
    (
        {"Description": "x" * (records.MAX_TEXT + 1)},
        "Description of image 'img-bad' is 1,048,577 characters long, over the limit of "
        "1,048,576; shorten it or drop the image.",
    ),
    (
        {"Labels": [{"Key": f"user.{n}", "Value": "v"} for n in range(records.MAX_LABELS + 1)]},
        "image 'img-bad' has 10,001 labels, over the limit of 10,000; drop labels or the image.",
    ),
    (
        {"Labels": [{"Key": f"k{n:02d}", "Value": "v" * records.MAX_TEXT} for n in range(17)]},
        "the labels of image 'img-bad' hold 17,825,843 characters, over the limit of 16,777,216; "
        "shorten them or drop the image.",
    ),
    (
        {"Labels": None},
        "image 'img-bad' has no Labels field; read the listing with Verbose=true, which gives "
        "every image its Labels ([] when it has none).",
    ),
    (
        {
            "Labels": [
                {"Key": "system.official", "Value": "true"},
                {"Key": "system.official", "Value": "false"},
            ]
        },
        "image 'img-bad' lists label 'system.official' twice with different values ('true' and "
        "'false'); keep one.",
    ),
    (
        {"Labels": [{"Key": " ", "Value": "true"}]},
        "Labels[0] of image 'img-bad' has an empty Key.",
    ),
]


REFUSED = [
    "escapes-in-uri", "nul-in-id", "nul-in-label-value", "c1-in-label-key", "newline-in-name",
    "del-in-description", "impossible-time", "not-a-time", "escapes-in-time", "long-description",
    "too-many-labels", "too-much-label-text", "no-labels-field", "label-twice", "empty-key",
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), REFUSALS, ids=REFUSED)
def test_an_import_with_garbage_is_refused_naming_image_and_field(
    imported: CatalogDb, write_listing: Any, change: dict[str, Any], message: str
) -> None:
    bad = {**good(), **change}
    if bad["Labels"] is None:
        del bad["Labels"]  # no field at all, as a listing without Verbose=true
    path = write_listing([*base(), bad])
    assert refused(imported, path) == f"{path}: Images[3]: {message}"


def test_garbage_far_past_the_bounds_is_refused_by_the_same_checks() -> None:
    """The issue's own examples, read straight from memory: a 50 MB description and a million
    labels (the same label object a million times, so the test stays small)."""
    huge = {**good(), "Description": "x" * (50 * 1024 * 1024)}
    with pytest.raises(InputError, match=r"^w: Description of image 'img-bad' is 52,428,800 "):
        records.parse_image(huge, "w")
    many = {**good(), "Labels": [{"Key": "k", "Value": "v"}] * 1_000_000}
    with pytest.raises(InputError) as caught:
        records.parse_image(many, "w")
    assert str(caught.value) == (
        "w: image 'img-bad' has 1,000,000 labels, over the limit of 10,000; drop labels or the "
        "image."
    )


def test_tabs_and_line_breaks_are_kept_where_they_belong(
    catalog_db: CatalogDb, write_listing: Any
) -> None:
    text = "PyTorch 2.1\n\tCUDA 12.1\r\nUbuntu 22.04"
    image = good("img-text", Description=text, GmtModifiedTime="2024-01-02T03:04:05+08:00")
    image["Labels"].append({"Key": "user.notes", "Value": text})
    bare = {**good("img-bare"), "ImageUri": f"{HZ}/xgboost:1.6.0", "Labels": []}
    longest = {**good("img-long"), "ImageUri": f"{HZ}/xgboost:1.7.0"}
    longest["Description"] = "d" * records.MAX_TEXT  # at the bound: kept
    import_files([write_listing([image, bare, longest])], REGION, db_option=catalog_db.target)
    rows = catalog_db.rows(
        "SELECT image_id, description, gmt_create_time, gmt_modified_time FROM image_version "
        "ORDER BY image_id"
    )
    assert [row[0] for row in rows] == ["img-bare", "img-long", "img-text"]
    assert rows[1][1] == "d" * records.MAX_TEXT
    # Valid times keep their normal form: UTC, to the microsecond.
    assert rows[2][1:] == (text, "2024-01-02T03:04:05.000000Z", "2024-01-01T19:04:05.000000Z")
    assert catalog_db.rows("SELECT value FROM image_label WHERE key = 'user.notes'") == [(text,)]


TEXT_FIELDS = [name for name in records.API_FIELDS if name not in ("Size", "ImageId")]
TEXT_FIELDS = [name for name in TEXT_FIELDS if not name.startswith("Gmt")]  # times: above
# Any code point but a lone surrogate, with control characters and ASCII often.
ANY_TEXT = st.text(
    st.one_of(
        st.characters(exclude_categories=["Cs"]),
        st.characters(categories=["Cc"]),
        st.characters(max_codepoint=127),
    ),
    max_size=12,
)


def forbidden(text: str, lines: bool) -> bool:
    return any(
        (ord(char) < 32 or 0x7F <= ord(char) <= 0x9F) and not (lines and char in "\t\n\r")
        for char in text
    )


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(st.sampled_from(TEXT_FIELDS), ANY_TEXT),
    st.dictionaries(ANY_TEXT.filter(str.strip), st.one_of(st.none(), ANY_TEXT), max_size=4),
)
@pytest.mark.slow
def test_the_quick_look_misses_no_control_character(
    fields: dict[str, str], labels: dict[str, str | None]
) -> None:
    """parse_image clears most images with one look at their JSON: it must refuse exactly the
    images that a character-by-character reading refuses."""
    obj = {
        "ImageId": "img-x",
        **fields,
        "Labels": [{"Key": k, "Value": v} for k, v in labels.items()],
    }
    expected = any(forbidden(v, name == "Description") for name, v in fields.items()) or any(
        forbidden(k, False) or (v is not None and forbidden(v, True)) for k, v in labels.items()
    )
    try:
        image = records.parse_image(obj, "w")
    except InputError as exc:
        assert expected and "holds the control character U+" in str(exc), str(exc)
        return
    assert not expected
    assert {name: image.fields[records.API_FIELDS[name]] for name in fields} == fields
    assert dict(image.labels) == labels


# --- import: an image listed twice --------------------------------------------------------------


def test_an_image_in_two_files_is_refused_naming_it(
    imported: CatalogDb, write_listing: Any
) -> None:
    first = write_listing(base()[:2], total=None)
    again = write_listing([base()[1], base()[2]], total=None)
    before = dump(imported)
    with pytest.raises(InputError) as caught:
        import_files([first, again], REGION, db_option=imported.target)
    assert str(caught.value) == (
        "The files list an image more than once ('pt-1'); keep one record of each image and "
        "import again."
    )
    assert dump(imported) == before


def test_an_id_with_spaces_is_the_same_image(imported: CatalogDb, write_listing: Any) -> None:
    spaced = {**base()[0], "ImageId": " pt-0 ", "Description": "another record of pt-0"}
    path = write_listing([*base(), spaced], total=None)
    with pytest.raises(InputError) as caught:
        import_files([path], REGION, db_option=imported.target)
    assert str(caught.value) == (
        "The files list an image more than once ('pt-0'); keep one record of each image and "
        "import again."
    )


def test_many_repeated_images_show_five(catalog_db: CatalogDb, write_listing: Any) -> None:
    images = [api_image(f"img-{n}", f"{HZ}/pytorch:2.{n}", LABELS) for n in range(8)]
    result = invoke(
        "--db", catalog_db.target, "import", str(write_listing(images, total=None)),
        str(write_listing(images[1:], total=None)), "--region", REGION,
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: The files list 7 images more than once ('img-1', 'img-2', 'img-3', 'img-4', "
        "'img-5' and 2 more); keep one record of each image and import again.\n"
    )
    assert catalog_db.rows("SELECT count(*) FROM sync_run") == [(0,)]


# --- JSON that Python's reader chokes on ---------------------------------------------------------

DIGITS = "1" * 5000


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 200_000, "arrays or objects nested too deeply"),
        ('{"Images": [], "TotalCount": ' + DIGITS + "}", "a number of more than 4,300 digits"),
    ],
    ids=["nested", "digits"],
)
def test_unreadable_json_in_an_import_is_one_line(
    catalog_db: CatalogDb, tmp_path: Path, text: str, reason: str
) -> None:
    path = tmp_path / "page.json"
    path.write_text(text, encoding="utf-8")
    result = invoke("--db", catalog_db.target, "import", str(path), "--region", REGION)
    assert result.exit_code == 1, result.exception
    assert result.stderr == f"Error: {path} is not valid JSON ({reason}); nothing was imported.\n"


def test_an_import_of_a_device_is_refused_at_once(catalog_db: CatalogDb) -> None:
    """/dev/zero was read until the memory ran out."""
    result = invoke("--db", catalog_db.target, "import", "/dev/zero", "--region", REGION)
    assert (result.exit_code, result.stderr) == (
        1,
        "Error: /dev/zero is not a regular file; import saved responses.\n",
    )


def test_an_import_file_past_the_bound_is_refused_unread(
    catalog_db: CatalogDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "MAX_FILE", 1 << 20)
    path = tmp_path / "huge.json"
    path.write_text('{"Images": [], "TotalCount": 0}' + " " * (1 << 20), encoding="utf-8")
    result = invoke("--db", catalog_db.target, "import", str(path), "--region", REGION)
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: {path} is over 1 MiB; import a listing's pages as separate files.\n",
    )
    assert catalog_db.rows("SELECT count(*) FROM sync_run") == [(0,)]


@pytest.mark.parametrize(
    ("total", "shown"),
    [(10**3999, "a number of 4,000 digits"), (-2, "-2"), (2**63, str(2**63))],
    ids=["4000-digits", "negative", "past-64-bits"],
)
def test_a_total_count_that_is_no_count_is_refused(
    catalog_db: CatalogDb, write_listing: Any, total: int, shown: str
) -> None:
    path = write_listing(base(), total=total)
    assert refused(catalog_db, path) == (
        f"{path}: TotalCount must be a whole number from 0 to {MAX}, not {shown}."
    )


# --- sync: the same rules, on pages from the fake API -------------------------------------------


def secret_free(db: CatalogDb, *texts: str) -> None:
    assert all(SECRET not in text for text in texts)
    assert not any(SECRET in line for line in dump(db))


@pytest.fixture
def synced(catalog_db: CatalogDb) -> Iterator[tuple[Any, CatalogDb]]:
    """The fake API serving a small listing, already synced once into the catalog."""
    with fake.FakePaiApi({REGION: fake.synthetic_images(12, REGION)}) as api:
        assert run(api, catalog_db).ok
        yield api, catalog_db


def failed_sync(api: Any, db: CatalogDb, caplog: pytest.LogCaptureFixture, **kwargs: Any) -> str:
    """The error of a sync that must fail and store nothing (a failed run is recorded)."""
    before = dump(db, skip=("sync_run",))
    with caplog.at_level(logging.DEBUG, logger="catalog"):
        result = run(api, db, **kwargs)
    assert not result.ok
    assert dump(db, skip=("sync_run",)) == before
    secret_free(db, result.error, caplog.text)
    return str(result.error)


def test_a_served_control_character_fails_the_sync(
    synced: tuple[Any, CatalogDb], caplog: pytest.LogCaptureFixture
) -> None:
    api, db = synced
    # The served listing changes: one URI now carries escape sequences.
    uri = api.images()[4]["ImageUri"]
    victim = api.edit(4, ImageUri=uri + "\x1b]0;owned\x07\x1b[2J")
    assert failed_sync(api, db, caplog) == (
        f"The API sent a malformed page: ListImages page 1: Images[4]: ImageUri of image "
        f"'{victim['ImageId']}' holds the control character U+001B, which no field may hold; "
        "fix or drop the image."
    )


def test_a_served_time_that_is_no_time_fails_the_sync(
    synced: tuple[Any, CatalogDb], caplog: pytest.LogCaptureFixture
) -> None:
    api, db = synced
    # The newest, so the order by GmtCreateTime stays.
    victim = api.edit(-1, GmtModifiedTime="9999-99-99T99:99:99Z")
    assert failed_sync(api, db, caplog) == (
        f"The API sent a malformed page: ListImages page 1: Images[11]: GmtModifiedTime of image "
        f"'{victim['ImageId']}' is not a time ('9999-99-99T99:99:99Z'); give an ISO 8601 time "
        "such as 2024-01-02T03:04:05Z, or leave the field out."
    )


def test_a_listing_that_loses_its_labels_fails_and_resolve_stays(
    synced: tuple[Any, CatalogDb], caplog: pytest.LogCaptureFixture
) -> None:
    api, db = synced
    official = db.rows("SELECT count(*) FROM v_image WHERE official")
    answer = catalog.retrieve("pytorch", "latest", "GPU", db=db.target)
    first = api.images()[0]["ImageId"]
    api.faults.missing_fields = ("Labels",)
    assert failed_sync(api, db, caplog) == (
        f"The API sent a malformed page: ListImages page 1: Images[0]: image '{first}' has no "
        "Labels field; read the listing with Verbose=true, which gives every image its Labels "
        "([] when it has none)."
    )
    assert db.rows("SELECT count(*) FROM v_image WHERE official") == official == [(12,)]
    assert catalog.retrieve("pytorch", "latest", "GPU", db=db.target) == answer


def test_the_check_pass_reads_no_labels_and_still_agrees(synced: tuple[Any, CatalogDb]) -> None:
    api, db = synced
    api.requests.clear()
    result = run(api, db, verify=True)
    assert result.ok, result.error
    checks = [r for r in api.requests if r.query.get("Verbose") == "false"]
    assert checks and all(r.status == 200 for r in checks)


def test_a_total_count_of_4000_digits_fails_the_sync(
    synced: tuple[Any, CatalogDb], caplog: pytest.LogCaptureFixture
) -> None:
    api, db = synced
    api.faults.total_count_lie = 10**3999  # within what json.dumps writes: 4,000 digits
    assert failed_sync(api, db, caplog) == (
        f"The API sent a malformed page: ListImages page 1: TotalCount must be a whole number "
        f"from 0 to {MAX}, not a number of 4,000 digits."
    )


def test_an_error_answer_quoted_in_the_error_has_no_raw_escape(
    synced: tuple[Any, CatalogDb], caplog: pytest.LogCaptureFixture
) -> None:
    api, db = synced
    api.faults.always_error = "Denied\x1b]0;owned\x07"  # the Code, and the Message quotes it
    assert failed_sync(api, db, caplog) == (
        f"{REGION}: page 1 failed with HTTP 400 Denied\\x1b]0;owned\\x07: The request failed "
        "with Denied\\x1b]0;owned\\x07."
    )


@pytest.fixture
def raw_server(tmp_path: Path) -> Iterator[Any]:
    """Start the fake API as its own process, with Python's bounds on nesting and on digits
    lifted there only, so that it can serve what another server could: ``start(*args)``."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> Any:
        lifted = (
            "import runpy, sys; sys.setrecursionlimit(100_000); "
            f"sys.argv = ['fake_pai_api', *sys.argv[1:]]; "
            f"runpy.run_path({str(ROOT / 'scripts' / 'fake_pai_api.py')!r}, run_name='__main__')"
        )
        env = {**os.environ, "PYTHONINTMAXSTRDIGITS": "0"}
        command = [sys.executable, "-c", lifted, "--port", "0", "--region", REGION, *args]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        started.append(process)
        assert process.stdout is not None
        return type("Server", (), {"url": process.stdout.readline().strip()})

    yield start
    for process in started:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)


def test_a_total_count_of_5000_digits_fails_the_sync_in_one_line(
    raw_server: Any, catalog_db: CatalogDb, caplog: pytest.LogCaptureFixture
) -> None:
    server = raw_server("--images", "5", "--total-count-lie", DIGITS)
    assert failed_sync(server, catalog_db, caplog, retries=1) == (
        f"{REGION}: page 1 failed after 2 attempts: page 1 was not valid JSON "
        "(a number of more than 4,300 digits)."
    )


def test_a_page_nested_too_deeply_fails_the_sync_in_one_line(
    raw_server: Any, catalog_db: CatalogDb, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = fake.synthetic_images(1, REGION)[0]
    image["SourceId"] = "NESTED"
    # Written as text: json.dumps in this process stops at the same depth as json.loads.
    body = json.dumps({"Images": [image]}).replace('"NESTED"', "[" * 3000 + "]" * 3000)
    (tmp_path / "snap").mkdir()
    (tmp_path / "snap" / f"{REGION}.json").write_text(body, encoding="utf-8")
    server = raw_server("--snapshot", str(tmp_path / "snap"))
    assert failed_sync(server, catalog_db, caplog, retries=1) == (
        f"{REGION}: page 1 failed after 2 attempts: page 1 was not valid JSON "
        "(arrays or objects nested too deeply)."
    )
    env = {
        "HOME": str(tmp_path),
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "test-ak",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
    }
    args = ["--db", catalog_db.target, "sync", "--region", REGION, "--endpoint", server.url]
    cli = CliRunner().invoke(main, [*args, "--retries", "0", "--backoff", "0"], env=env)
    assert cli.exit_code == 1, cli.output
    assert re.fullmatch(
        f"{REGION}: failed after [0-9.]+ s: {REGION}: page 1 failed after 1 attempts: page 1 "
        r"was not valid JSON \(arrays or objects nested too deeply\)\.\n",
        cli.stderr,
    ), cli.output
    assert SECRET not in cli.output


# --- output: control characters are shown, never sent ----------------------------------------


def rendered(fmt: Format, rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    render(rows, fmt, out, list(rows[0]) if fmt in (Format.TABLE, Format.CSV) else None)
    return out.getvalue()


def test_tables_show_control_characters_as_escapes() -> None:
    rows = [{"uri": HOSTILE_URI, "note": "a\tb\nc\x9bd", "labels": {"k": "\x1b[31m"}}]
    table = rendered(Format.TABLE, rows)
    assert "\x1b" not in table and "\x07" not in table and "\x9b" not in table
    assert "\\x1b]0;owned\\x07\\x1b[2J" in table and "a\\tb\\nc\\x9bd" in table
    assert table.count("\n") == 3  # header, rule, one row: a line break stays in its cell
    out = io.StringIO()
    render_record({"uri": HOSTILE_URI, "labels": {"k\x1b": "v\x07"}}, out)
    assert out.getvalue() == (
        f"uri   : {TORCH}\\x1b]0;owned\\x07\\x1b[2J\nlabels:\n  k\\x1b = v\\x07\n"
    )
    assert visible("plain text, ünïcode") == "plain text, ünïcode"


def test_json_and_csv_carry_the_value_without_raw_controls() -> None:
    rows = [{"uri": HOSTILE_URI, "note": "a\tb\nc\x9bd\x7f"}]
    for fmt in (Format.JSON, Format.NL):
        text = rendered(fmt, rows)
        assert not any(char in text for char in "\x1b\x07\x9b\x7f")
        loaded = json.loads(text)
        assert (loaded[0] if fmt is Format.JSON else loaded) == rows[0]
    text = rendered(Format.CSV, rows)
    assert not any(char in text for char in "\x1b\x07\x9b\x7f")
    assert '"a\tb\nc\\x9bd\\x7f"' in text  # quoting carries a tab and a line break


def test_list_and_show_of_a_hand_edited_catalog_send_no_escape(
    sqlite_path: Path, write_listing: Any
) -> None:
    import_files([write_listing(base())], REGION, db_option=str(sqlite_path))
    with sqlite3.connect(sqlite_path) as conn:  # as an older catalog, or a hand edit, holds
        conn.execute("UPDATE image_version SET uri = uri || ?", ("\x1b]0;owned\x07\x1b[2J",))
        conn.execute("UPDATE image_label SET value = ?", ("\x9b31m",))
    conn.close()
    for args in (("list", "--format", "table"), ("list", "--format", "csv"), ("show", "pt-1")):
        result = invoke("--db", str(sqlite_path), *args)
        assert result.exit_code == 0, result.output
        assert not any(char in result.stdout for char in "\x1b\x07\x9b"), args
        assert "\\x1b]0;owned\\x07\\x1b[2J" in result.stdout, args
    assert "  system.official = \\x9b31m\n" in result.stdout


# --- credentials: malformed config.json is one line, never the secret --------------------------


def config(home: Path, data: Any) -> None:
    path = home / ".aliyun" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")


SKIP = "fix it or set ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true to skip it."


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"current": [CLI_SECRET], "profiles": [ak("default")]},
            f'~/.aliyun/config.json has a "current" that is not a profile name; {SKIP}',
        ),
        (
            {"current": "default", "profiles": "nope"},
            f'~/.aliyun/config.json has "profiles" that are not a list; {SKIP}',
        ),
        (
            {"current": "default", "profiles": [ak("default", access_key_secret=[CLI_SECRET])]},
            "~/.aliyun/config.json (profile 'default'): access_key_secret must be a string; "
            "fix it.",
        ),
        (
            {"current": "default", "profiles": [{**ak("default"), "mode": [CLI_SECRET]}]},
            "~/.aliyun/config.json (profile 'default') has a mode that is not a string; use an AK "
            "or StsToken profile, or set ALIBABA_CLOUD_ACCESS_KEY_ID and "
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET.",
        ),
        (
            {"current": "default", "profiles": [{**ak("x"), "name": ["default"]}, ak("y")]},
            "Profile 'default' is not in ~/.aliyun/config.json (its profiles: y); choose one "
            "with --profile (ALIBABA_CLOUD_PROFILE).",
        ),
        (
            '{"current": "default", "profiles": ' + "[" * 10_000 + "]" * 10_000 + "}",
            "~/.aliyun/config.json is not valid JSON (arrays or objects nested too deeply); "
            + SKIP,
        ),
        (
            json.dumps({"current": "default", "profiles": [ak("default")]})[:-1]
            + ', "n": '
            + DIGITS
            + "}",
            f"~/.aliyun/config.json is not valid JSON (a number too long to read); {SKIP}",
        ),
    ],
    ids=[
        "current-list",
        "profiles-text",
        "secret-list",
        "mode-list",
        "name-list",
        "nested",
        "digits",
    ],
)
def test_a_malformed_cli_config_is_one_line_without_the_secret(
    tmp_path: Path, data: Any, message: str
) -> None:
    config(tmp_path, data)
    assert failure(tmp_path) == message  # failure() asserts the secret is not in it


def test_a_bidirectional_override_reaches_no_terminal(
    sqlite_path: Path, write_listing: Any
) -> None:
    """U+202E in a label went to the terminal raw, showing what follows it reversed."""
    image = good("img-rtl")
    image["Labels"] = [{"Key": "system.official", "Value": "true"},
                       {"Key": "note", "Value": "safe\u202egpj.exe"}]  # fmt: skip
    import_files([write_listing([image])], REGION, db_option=str(sqlite_path))
    shown = CliRunner().invoke(main, ["--db", str(sqlite_path), "show", "img-rtl"])
    assert shown.exit_code == 0, shown.stderr
    assert "\u202e" not in shown.stdout and "  note = safe\\u202egpj.exe\n" in shown.stdout
    exported = CliRunner().invoke(main, ["--db", str(sqlite_path), "export"])
    assert json.loads(exported.stdout)[0]["labels"]["note"] == "safe\u202egpj.exe"  # data kept
