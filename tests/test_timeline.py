"""timeline: each version's life in each region, from a history of known times, as data, an
SVG (parsed, and rendered once in headless Chromium) and an HTML page; the README's picture."""

from __future__ import annotations

import csv
import io
import json
import shutil
import struct
import subprocess
import zlib
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner, Result

from catalog.cli.main import main
from catalog.cli.timeline import html, svg
from catalog.errors import NotFoundError, UnsupportedError, UsageError
from catalog.read.timeline import Mark, Span, timeline
from catalog.sync.run import import_files
from tests.conftest import ROOT, api_image
from tests.dbkit import CatalogDb

HZ = "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai"
BJ = "dsw-registry.cn-beijing.cr.aliyuncs.com/pai"
SVG = "{http://www.w3.org/2000/svg}"
NOW = "2026-03-20T00:00:00Z"  # the catalog's clock while it is read: after every run


def image(image_id: str, uri: str, name: str, version: str, chip: str = "GPU", **extra: str) -> Any:
    labels = {
        "system.official": "true",
        f"system.framework.{name}": version,
        "system.chipType": chip,
        "system.supported.dlc": "true",
    }
    return api_image(image_id, uri, {**labels, **extra})


A1 = image("pt-21", f"{HZ}/pytorch:2.1-gpu-py310", "PyTorch", "2.1")
A2 = image("pt-21", f"{HZ}/pytorch:2.1-gpu-py310", "PyTorch", "2.1", **{"release.note": "x"})
B = image("pt-200", f"{HZ}/pytorch:2.0.0-gpu-py310", "PyTorch", "2.0.0")
C = image("pt-210-cpu", f"{HZ}/pytorch:2.1.0-cpu-py310", "PyTorch", "2.1.0", "CPU")
TF = image("tf-215", f"{HZ}/tensorflow:2.15-gpu-py310", "TensorFlow", "2.15")
BJ21 = image("bj-21", f"{BJ}/pytorch:2.1.0-gpu-py310", "PyTorch", "2.1.0")
BJ22 = image("bj-22", f"{BJ}/pytorch:2.2.0-gpu-py311", "PyTorch", "2.2.0")

RUNS = [
    ("2026-01-01", "cn-hangzhou", [A1, B, TF]),
    ("2026-01-02", "cn-beijing", [BJ21]),
    ("2026-01-10", "cn-hangzhou", [A2, C, TF]),  # a label of A, C comes, B goes
    ("2026-02-03", "cn-beijing", [BJ22]),  # 2.1.0 goes from the region, 2.2.0 comes
    ("2026-03-01", "cn-hangzhou", [A2, B, TF]),  # B comes back, C goes
    ("2026-03-02", "cn-beijing", [BJ22]),  # nothing new
]


def epoch(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.replace(tzinfo=moment.tzinfo or timezone.utc).timestamp())


def z(day: str) -> str:
    return f"{day}T00:00:00Z"


@pytest.fixture
def db(catalog_db: CatalogDb, write_listing: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The six runs, then a failed listing and a digests run of cn-beijing, which no bar may
    reach; read at NOW, so that messages saying the catalog's age never depend on today."""
    for number, (day, region, images) in enumerate(RUNS, 1):
        monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", str(epoch(day)))
        import_files([write_listing(images, name=f"run-{number}.json")], region,
                     db_option=catalog_db.target)  # fmt: skip
    late = "2026-03-10T00:00:00.000000Z"
    for source, status in (("import", "failed"), ("digests", "ok")):
        catalog_db.execute(
            "INSERT INTO sync_run (region, source, status, started_at, finished_at) VALUES "
            f"('cn-beijing', '{source}', '{status}', '{late}', '{late}')"
        )
    monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", str(epoch(NOW)))
    return catalog_db.target


def mark(kind: str, day: str, image_id: str, *fields: str) -> Mark:
    return Mark(kind, z(day), image_id, fields)


PYTORCH = [
    Span("PyTorch", "2.2.0", "cn-beijing", z("2026-02-03"), None, z("2026-03-02"), 1, 1,
         ("2.2.0",), (), ()),
    Span("PyTorch", "2.1.0", "cn-beijing", z("2026-01-02"), z("2026-02-03"), z("2026-02-03"), 1,
         0, ("2.1.0",), (), (mark("removed", "2026-02-03", "bj-21"),)),
    Span("PyTorch", "2.1.0", "cn-hangzhou", z("2026-01-01"), None, z("2026-03-01"), 2, 1,
         ("2.1", "2.1.0"), (), (
             mark("added", "2026-01-10", "pt-210-cpu"),
             mark("changed", "2026-01-10", "pt-21", "labels"),
             mark("removed", "2026-03-01", "pt-210-cpu"),
         )),
    Span("PyTorch", "2.0.0", "cn-hangzhou", z("2026-01-01"), None, z("2026-03-01"), 1, 1,
         ("2.0.0",), ((z("2026-01-10"), z("2026-03-01")),), (
             mark("removed", "2026-01-10", "pt-200"),
             mark("restored", "2026-03-01", "pt-200"),
         )),
]  # fmt: skip
TENSORFLOW = Span("TensorFlow", "2.15", "cn-hangzhou", z("2026-01-01"), None, z("2026-03-01"),
                  1, 1, ("2.15",), (), ())  # fmt: skip


def test_one_span_per_version_and_region_with_its_dates_and_marks(db: str) -> None:
    assert timeline("pytorch", db=db) == PYTORCH


def test_every_framework_and_the_filters(db: str) -> None:
    assert timeline(db=db) == [*PYTORCH, TENSORFLOW]
    assert timeline("PyTorch", region="cn-beijing", db=db) == PYTORCH[:2]
    assert timeline("pytorch", region="any", db=db) == PYTORCH
    # Without the CPU image, 2.1.0 in cn-hangzhou is one image, changed once; its version
    # keeps the spelling cn-beijing gives it.
    gpu = timeline("pytorch", accelerator_type="gpu", image_scope="training", db=db)
    changed = mark("changed", "2026-01-10", "pt-21", "labels")
    hangzhou = Span("PyTorch", "2.1.0", "cn-hangzhou", z("2026-01-01"), None, z("2026-03-01"),
                    1, 1, ("2.1",), (), (changed,))  # fmt: skip
    assert gpu == [PYTORCH[0], PYTORCH[1], hangzhou, PYTORCH[3]]


def test_a_tag_moved_after_the_last_listing_extends_its_bar(db: str) -> None:
    """A digests run's event is a change, and the bar reaches it."""
    CatalogDb(db).execute(
        "INSERT INTO image_event (run_id, image_pk, version_id, kind, changed_fields) "
        "SELECT r.id, v.image_pk, v.id, 'changed', '[\"manifest_digest\"]' FROM sync_run r, "
        "image_version v WHERE r.source = 'digests' AND v.image_id = 'bj-22'"
    )
    moved = mark("changed", "2026-03-10", "bj-22", "manifest_digest")
    assert timeline("pytorch", region="cn-beijing", db=db)[0] == Span(
        "PyTorch", "2.2.0", "cn-beijing", z("2026-02-03"), None, z("2026-03-10"), 1, 1,
        ("2.2.0",), (), (moved,),
    )  # fmt: skip


def test_errors_name_what_the_catalog_holds(db: str) -> None:
    age = "catalog last updated 2026-03-02, 18 days ago"
    with pytest.raises(UnsupportedError) as unknown:
        timeline("pytorh", db=db)
    assert str(unknown.value) == (
        f"Unknown framework 'pytorh'. Did you mean 'PyTorch'? Known frameworks: PyTorch, "
        f"TensorFlow ({age})."
    )
    with pytest.raises(NotFoundError) as region:
        timeline("pytorch", region="cn-hangzou", db=db)
    assert str(region.value) == (
        "No image in region 'cn-hangzou'. Did you mean 'cn-hangzhou'? Regions in the catalog: "
        f"cn-beijing, cn-hangzhou ({age})."
    )
    with pytest.raises(NotFoundError) as none:
        timeline("tensorflow", accelerator_type="cpu", db=db)
    assert str(none.value) == (
        "No tensorflow image for accelerator CPU; it has images for GPU (accelerator_type=) "
        f"({age})."
    )
    with pytest.raises(UsageError, match="Give a framework name"):
        timeline(" ", db=db)
    with pytest.raises(UsageError, match="framework_name must be text"):
        timeline(2, db=db)  # type: ignore[arg-type]


def cli(db: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--db", db, "timeline", *args])


def test_json_and_csv_give_the_same_facts(db: str) -> None:
    facts = [(s.version, s.region, s.first_seen, s.removed_at, s.end) for s in PYTORCH]
    found = json.loads(cli(db, "pytorch", "--format", "json").stdout)
    names = ("version", "region", "first_seen", "removed_at", "end")
    assert [tuple(span[name] for name in names) for span in found] == facts
    assert found[2]["marks"][1] == {
        "kind": "changed", "at": "2026-01-10T00:00:00Z", "image_id": "pt-21",
        "changed_fields": ["labels"],
    }  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(cli(db, "pytorch", "--format", "csv").stdout)))
    assert [tuple(row[name] or None for name in names) for row in rows] == facts
    assert rows[2]["changes"] == (
        "2026-01-10T00:00:00Z added pt-210-cpu; 2026-01-10T00:00:00Z changed pt-21 (labels); "
        "2026-03-01T00:00:00Z removed pt-210-cpu"
    )
    assert rows[2]["spellings"] == "2.1,2.1.0"
    assert rows[3]["gaps"] == "2026-01-10T00:00:00Z/2026-03-01T00:00:00Z"
    lines = cli(db, "pytorch").stdout.splitlines()  # not a terminal: one JSON object a line
    assert [json.loads(line)["version"] for line in lines] == ["2.2.0", "2.1.0", "2.1.0", "2.0.0"]


def bars(root: ElementTree.Element) -> list[tuple[Any, ...]]:
    """Each row's bar (version, region, from, to, removed), its marks and its open end."""
    found = []
    for row in root.iter(f"{SVG}g"):
        (bar,) = [e for e in row if e.get("data-version") is not None]
        marks = [(e.get("data-kind"), e.get("data-at")) for e in row if e.get("data-kind")]
        opened = [e for e in row if e.get("class") == "open-end"]
        gaps = [(e.get("data-from"), e.get("data-to")) for e in row if e.get("class") == "gap"]
        found.append((
            bar.get("data-version"), bar.get("data-region"), bar.get("data-from"),
            bar.get("data-to"), bar.get("data-removed"), marks, len(opened), gaps,
        ))  # fmt: skip
    return found


EXPECTED_BARS = [
    ("2.2.0", "cn-beijing", z("2026-02-03"), z("2026-03-02"), "false", [], 1, []),
    ("2.1.0", "cn-beijing", z("2026-01-02"), z("2026-02-03"), "true",
     [("removed", z("2026-02-03"))], 0, []),
    ("2.1.0", "cn-hangzhou", z("2026-01-01"), z("2026-03-01"), "false",
     [("added", z("2026-01-10")), ("changed", z("2026-01-10")), ("removed", z("2026-03-01"))], 1,
     []),
    ("2.0.0", "cn-hangzhou", z("2026-01-01"), z("2026-03-01"), "false",
     [("removed", z("2026-01-10")), ("restored", z("2026-03-01"))], 1,
     [(z("2026-01-10"), z("2026-03-01"))]),
]  # fmt: skip


def write(db: str, out: Path, *args: str) -> str:
    result = cli(db, "pytorch", *args, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".part")]
    return out.read_text(encoding="utf-8")


def test_the_svg_holds_one_bar_per_version_and_region(db: str, tmp_path: Path) -> None:
    result = cli(db, "pytorch", "--out", str(tmp_path / "t.svg"))
    assert result.stdout == f"{tmp_path / 't.svg'}: 4 bars\n"
    text = (tmp_path / "t.svg").read_text(encoding="utf-8")
    root = ElementTree.fromstring(text)
    assert root.tag == f"{SVG}svg" and root.find(f"{SVG}title") is not None
    assert bars(root) == EXPECTED_BARS
    labels = ["".join(t.itertext()) for g in root.iter(f"{SVG}g") for t in g.iter(f"{SVG}text")]
    assert labels == ["2.2.0cn-beijing", "2.1.0cn-beijing", "2.1.0cn-hangzhou", "2.0.0cn-hangzhou"]
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("text-anchor") == "middle"]
    assert ticks == ["2026-01", "2026-02", "2026-03", "2026-04"]
    # Self-contained and the same every time.
    for needle in ("<script", "href", "url(", "@import", "<style", "<image", "<foreignObject"):
        assert needle not in text
    assert write(db, tmp_path / "again.svg") == text


def test_the_html_page_embeds_the_svg_and_a_table_of_the_same_rows(db: str, tmp_path: Path) -> None:
    page = write(db, tmp_path / "t.html")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    picture = page[page.index("<svg") : page.index("</svg>") + len("</svg>")]
    assert bars(ElementTree.fromstring(picture)) == EXPECTED_BARS
    table = Cells()
    table.feed(page)
    assert [row[1:6] for row in table.rows[1:]] == [
        [s.version, s.region, s.first_seen, s.removed_at or "", s.end] for s in PYTORCH
    ]
    assert table.rows[3][-1] == (
        "2026-01-10T00:00:00Z added pt-210-cpu|2026-01-10T00:00:00Z changed pt-21 (labels)"
        "|2026-03-01T00:00:00Z removed pt-210-cpu"
    )


def test_hostile_text_stays_text() -> None:
    """Markup and control characters in a catalog's values never break the XML or the page."""
    changed = mark("changed", "2026-01-02", "a&b\x1b")
    odd = Span('<b>"Torch" & co', "1.0\x1b]0;x\x07", "cn-<x>", z("2026-01-01"), None,
               z("2026-01-02"), 1, 1, ("1.0",), (), (changed,))  # fmt: skip
    root = ElementTree.fromstring(svg([odd], "T <&>"))
    assert bars(root) == [
        ("1.0\\x1b]0;x\\x07", "cn-<x>", z("2026-01-01"), z("2026-01-02"), "false",
         [("changed", z("2026-01-02"))], 1, []),
    ]  # fmt: skip
    page = html([odd], "T <&>")
    assert "<b>" not in page and "\x1b" not in page
    assert '<td>&lt;b&gt;"Torch" &amp; co</td><td>1.0\\x1b]0;x\\x07</td>' in page


class Cells(HTMLParser):
    """The text of every table row's cells; a <br> inside a cell reads as |."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "br" and self.cell is not None:
            self.cell.append("|")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def test_usage_errors(db: str, tmp_path: Path) -> None:
    png = cli(db, "pytorch", "--out", str(tmp_path / "t.png"))
    assert png.exit_code == 2 and "--out takes a .svg or .html file, not 't.png'." in png.output
    both = cli(db, "pytorch", "--out", str(tmp_path / "t.svg"), "--format", "json")
    assert both.exit_code == 2
    assert "--out writes a picture and --format prints data; give one." in both.output
    nowhere = cli(db, "pytorch", "--out", str(tmp_path / "missing" / "t.svg"))
    assert nowhere.exit_code == 1
    missing = tmp_path / "missing" / "t.svg"
    assert nowhere.output == f"Error: Cannot write {missing}: No such file or directory.\n"
    typo = cli(db, "pytorh", "--out", str(tmp_path / "t.svg"))
    assert typo.exit_code == 1 and "Did you mean 'PyTorch'?" in typo.output
    assert not list(tmp_path.glob("*.svg"))


def test_the_readme_picture_is_the_shipped_catalogs(tmp_path: Path) -> None:
    """docs/pytorch-timeline.svg is what the README's command draws from data/catalog.db."""
    out = tmp_path / "pytorch-timeline.svg"
    result = CliRunner().invoke(
        main, ["--db", str(ROOT / "data" / "catalog.db"), "timeline", "pytorch", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == (ROOT / "docs" / "pytorch-timeline.svg").read_bytes(), (
        "docs/pytorch-timeline.svg is out of date: run pai-catalog --db data/catalog.db "
        "timeline pytorch --out docs/pytorch-timeline.svg"
    )


# Chromium, kept off every network: no background services, and a proxy on a closed loopback
# port for anything that would still ask.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-sync",
    "--disable-component-update", "--disable-extensions", "--disable-default-apps",
    "--force-device-scale-factor=1", "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
)  # fmt: skip


def test_the_svg_renders_in_headless_chromium(db: str, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed (apt-get install chromium)")
    picture = tmp_path / "t.svg"
    root = ElementTree.fromstring(write(db, picture))
    width, height = round(float(root.get("width", ""))), int(root.get("height", ""))
    png = tmp_path / "t.png"
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
         f"--window-size={width},{height}", f"--screenshot={png}", picture.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and png.is_file(), done.stderr[-2000:]
    (size, pixels) = decode_png(png.read_bytes())
    assert size == (width, height)
    counts: dict[tuple[int, int, int], int] = {}
    for pixel in pixels:
        counts[pixel] = counts.get(pixel, 0) + 1
    white = counts.get((255, 255, 255), 0)
    assert len(pixels) - white > len(pixels) // 50, "the picture is nearly blank"
    assert len(counts) > 20, f"only {len(counts)} colours: the picture is nearly blank"
    # The bars' own colours, solid inside each bar: listed (blue) and removed (grey).
    assert counts.get((0x4E, 0x79, 0xA7), 0) > 100
    assert counts.get((0xA0, 0xA0, 0xA0), 0) > 100


def decode_png(data: bytes) -> tuple[tuple[int, int], list[tuple[int, int, int]]]:
    """The size and RGB pixels of an 8-bit RGB or RGBA PNG, its scanline filters undone."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        chunks.append((data[at + 4 : at + 8], data[at + 8 : at + 8 + length]))
        at += 12 + length
    header = dict(chunks)[b"IHDR"]
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    step = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride, previous, pixels = width * step, bytearray(width * step), []
    for y in range(height):
        row = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        kind, line = row[0], bytearray(row[1:])
        for i in range(stride) if kind else ():
            left = line[i - step] if i >= step else 0
            up, corner = previous[i], previous[i - step] if i >= step else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                guess = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + guess) & 0xFF
        pixels += [tuple(line[i : i + 3]) for i in range(0, stride, step)]  # type: ignore[misc]
        previous = line
    return (width, height), pixels


def test_an_image_relabelled_to_another_version_or_chip_moves_bars_when_it_changed(
    catalog_db: CatalogDb, write_listing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each state counts under its own version and accelerator: the history of then, as
    export --as-of tells it, not the newest state's."""
    runs = [
        ("2026-02-01", [image("one", f"{BJ}/pytorch:a", "PyTorch", "2.1.0"),
                        image("three", f"{BJ}/pytorch:c", "PyTorch", "2.5.0", "GPU")]),
        ("2026-04-01", [image("one", f"{BJ}/pytorch:a", "PyTorch", "2.2.0"),
                        image("three", f"{BJ}/pytorch:c", "PyTorch", "2.5.0", "CPU")]),
    ]  # fmt: skip
    for number, (day, images) in enumerate(runs, 1):
        monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", str(epoch(day)))
        import_files([write_listing(images, name=f"relabel-{number}.json")], "cn-beijing",
                     db_option=catalog_db.target, allow_mass_change=True)  # fmt: skip
    found = {
        (s.version, s.first_seen, s.removed_at) for s in timeline("pytorch", db=catalog_db.target)
    }
    assert found == {
        ("2.2.0", z("2026-04-01"), None),
        ("2.1.0", z("2026-02-01"), z("2026-04-01")),
        ("2.5.0", z("2026-02-01"), None),  # one bar: every accelerator
    }
    gpu = timeline("pytorch", accelerator_type="gpu", db=catalog_db.target)
    assert {(s.version, s.first_seen, s.removed_at) for s in gpu} == {
        ("2.2.0", z("2026-04-01"), None),
        ("2.1.0", z("2026-02-01"), z("2026-04-01")),
        ("2.5.0", z("2026-02-01"), z("2026-04-01")),  # a GPU image until it was relabelled
    }
    cpu = timeline("pytorch", accelerator_type="cpu", db=catalog_db.target)
    assert [(s.version, s.first_seen, s.removed_at) for s in cpu] == [
        ("2.5.0", z("2026-04-01"), None)
    ]


def test_characters_xml_cannot_hold_and_very_long_versions_stay_readable() -> None:
    long = "9." + "1" * 3000
    spans = [
        Span("PyTorch", "nightly\uffff\ufffe", "cn-hangzhou", z("2026-01-01"), None,
             z("2026-01-02"), 1, 1, ("nightly",), (), ()),
        Span("PyTorch", long, "cn-hangzhou", z("2026-01-01"), None, z("2026-01-02"), 1, 1,
             (long,), (), ()),
    ]  # fmt: skip
    picture = svg(spans, "T")
    root = ElementTree.fromstring(picture)  # well-formed: U+FFFE and U+FFFF are escapes
    assert [bar[0] for bar in bars(root)] == ["nightly\\uffff\\ufffe", long]
    assert int(float(root.get("width", "0"))) < 1500  # the label is cut, not the picture widened
    page = html(spans, "T")
    assert "\uffff" not in page and "\ufffe" not in page


def test_an_interrupted_write_leaves_no_file_behind(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("catalog.cli.timeline.os.replace", interrupted)
    out = tmp_path / "pictures" / "t.svg"
    out.parent.mkdir()
    stopped = CliRunner().invoke(main, ["--db", db, "timeline", "pytorch", "--out", str(out)])
    assert stopped.exit_code != 0
    assert list(out.parent.iterdir()) == []
