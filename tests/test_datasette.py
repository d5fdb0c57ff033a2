"""publish --datasette: metadata read from docs/SCHEMA.md, and a real Datasette serving it."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from catalog.cli.main import main
from catalog.config import parse_target
from catalog.parse import records
from catalog.read import connection
from catalog.read.datasette import FACETS, SORTABLE, Example, datasette_metadata, documented
from catalog.read.export import info
from catalog.store import db as store_db
from catalog.store.runs import RunInfo
from catalog.store.writer import apply_listing
from tests.conftest import ROOT, api_image
from tests.registrykit import free_port
from tests.test_schema_doc import DOC, EXAMPLES, SHIPPED, actual, bound

HZ = "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai"
TORCH = api_image(
    "pt-1", f"{HZ}/pytorch:2.9.0-gpu-py311-cu121-ubuntu22.04",
    {"system.official": "true", "system.framework.PyTorch": "2.9.0", "system.chipType": "GPU"},
)  # fmt: skip


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def published(folder: Path, name: str = "catalog.db", source: Path = SHIPPED) -> Path:
    """OUT.db and OUT.metadata.json, as publish --datasette writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / name
    result = invoke("--db", str(source), "publish", str(out), "--datasette")
    assert result.exit_code == 0, result.output
    meta = folder / f"{out.stem}.metadata.json"
    assert result.stdout.splitlines()[-1] == f"{meta}: Datasette metadata for {name}"
    return out


def listed(
    path: Path,
    write_listing: Callable[..., Path],
    source: str,
    region: str,
    endpoint: str = "https://aiworkspace.{region}.aliyuncs.com",
) -> None:
    """One successful run of ``source`` listing one image of ``region`` into the file (a sync
    from ``endpoint``, by default Alibaba Cloud's)."""
    images = [{**TORCH, "ImageUri": TORCH["ImageUri"].replace("cn-hangzhou", region)}]
    engine = store_db.make_engine(parse_target(str(path)))
    try:
        detail = endpoint.format(region=region) if source == "sync" else f"{region}.json"
        run = RunInfo(region, source, detail=detail)
        apply_listing(engine, run, records.load_files([write_listing(images)]))
    finally:
        engine.dispose()
    connection.forget()


def test_the_metadata_describes_every_table_view_and_column_and_nothing_else(
    tmp_path: Path,
) -> None:
    out = published(tmp_path)
    meta = json.loads(out.with_name("catalog.metadata.json").read_text())
    tables = meta["databases"]["catalog"]["tables"]
    schema = actual(out)
    assert sorted(tables) == sorted(schema)
    doc = documented(DOC.read_text())
    for name, (_, columns) in schema.items():
        entry = tables[name]
        assert sorted(entry["columns"]) == sorted(c for c, _ in columns), name
        assert entry["description"] == doc[name].description != ""
        assert entry["columns"] == {c.name: c.meaning for c in doc[name].columns}
        assert set(entry.get("facets", [])) <= set(entry["columns"]), name
        assert set(entry.get("sortable_columns", [])) <= set(entry["columns"]), name
    assert set(FACETS) | set(SORTABLE) <= set(tables)
    assert tables["v_image"]["facets"] == ["framework_name", "region", "accelerator_type", "scopes"]
    assert tables["image_version"]["facets"] == ["framework", "region", "accelerator", "scopes"]
    assert tables["v_latest"]["facets"][-1] == "image_scope"
    queries = meta["databases"]["catalog"]["queries"]
    assert queries == {
        e.name: {"sql": e.sql, "title": e.title, "description": e.description} for e in EXAMPLES
    }
    assert meta["title"] == "PAI image catalog"
    assert meta["license"] == "Apache-2.0"


def test_the_shipped_catalog_says_it_is_the_demonstration(tmp_path: Path) -> None:
    meta = json.loads(published(tmp_path).with_name("catalog.metadata.json").read_text())
    assert meta["description"].startswith(
        "The reconstructed demonstration catalog that ships with pai-image-catalog: "
    )
    assert "It is not PAI's live list" in meta["description"]
    shipped = info(db=str(SHIPPED))
    counts = f"{shipped.images} images in {len(shipped.regions)} regions, last listed "
    assert f"{counts}{shipped.last_sync}." in meta["description"]
    assert "source_url" not in meta
    assert "public documentation" in meta["source"]
    assert datasette_metadata(db=str(SHIPPED)) == {
        **meta,
        "databases": {"catalog": meta["databases"]["catalog"]},
    }


def test_a_synced_catalog_says_where_it_came_from(
    tmp_path: Path, write_listing: Callable[..., Path]
) -> None:
    copy = tmp_path / "copy.db"
    shutil.copy(SHIPPED, copy)
    shipped = info(db=str(SHIPPED))
    listed(copy, write_listing, "sync", "us-east-1")
    meta = datasette_metadata(db=str(copy))
    # The shipped regions are still the demonstration, and it says so beside the live one.
    regions = sorted(r.region for r in shipped.regions)
    more = f" and {len(regions) - 5} more" if len(regions) > 5 else ""
    assert meta["description"].startswith(
        "Listings of Alibaba Cloud PAI's container images, by region; synced from PAI's live "
        "ListImages API: us-east-1; the reconstructed demonstration that ships with "
        "pai-image-catalog (from public documentation, not PAI's live list): "
        f"{', '.join(regions[:5])}{more}. {shipped.images + 1} images in "
        f"{len(shipped.regions) + 1} regions, last listed "
    )
    assert meta["description"].endswith("The listings are Alibaba Cloud's; no licence is claimed.")
    assert "license" not in meta
    assert meta["source_url"] == "https://api.aliyun.com/api/AIWorkspace/2021-02-04/ListImages"
    assert list(meta["databases"]) == ["copy"]


def test_imported_listings_are_not_taken_for_the_demonstration(
    sqlite_path: Path, write_listing: Callable[..., Path]
) -> None:
    """A file named as a snapshot file is: what matches is the shipped runs, times included."""
    assert datasette_metadata(db=str(sqlite_path))["description"].startswith(
        "An empty catalog: no region has been synced or imported."
    )
    snapshot = ROOT / "data" / "snapshot" / "cn-hangzhou.json"
    result = invoke("--db", str(sqlite_path), "import", str(snapshot), "--region", "cn-hangzhou")
    assert result.exit_code == 0, result.output
    connection.forget()
    description = datasette_metadata(db=str(sqlite_path))["description"]
    assert description.startswith(
        "Listings of Alibaba Cloud PAI's container images, by region; imported from saved "
        "ListImages responses (sync_run.detail names the files): cn-hangzhou. "
        "38 images in 1 region, last listed "
    )
    listed(sqlite_path, write_listing, "sync", "cn-beijing")
    description = datasette_metadata(db=str(sqlite_path))["description"]
    assert "synced from PAI's live ListImages API: cn-beijing; imported from saved" in description
    # A sync from anywhere but Alibaba Cloud (the fake API) is never called the live list.
    listed(sqlite_path, write_listing, "sync", "us-west-1", "http://127.0.0.1:8123")
    meta = datasette_metadata(db=str(sqlite_path))
    assert (
        "synced from an endpoint that is not Alibaba Cloud's (http://127.0.0.1:8123), not PAI's "
        "live list: us-west-1;" in meta["description"]
    )


def test_publishing_again_gives_the_same_bytes(tmp_path: Path) -> None:
    first = published(tmp_path / "a")
    again = published(tmp_path / "b", source=first)
    assert (
        first.with_name("catalog.metadata.json").read_bytes()
        == again.with_name("catalog.metadata.json").read_bytes()
    )
    assert oct(again.with_name("catalog.metadata.json").stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "catalog.db", "catalog.db.sha256", "catalog.metadata.json",
    ]  # fmt: skip


def test_a_file_that_is_not_our_metadata_is_not_replaced(tmp_path: Path) -> None:
    foreign = tmp_path / "catalog.metadata.json"
    foreign.write_text('{"title": "Someone else\'s"}')
    result = invoke("--db", str(SHIPPED), "publish", str(tmp_path / "catalog.db"), "--datasette")
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (
        2,
        f"Error: Cannot write {foreign}: it exists and is not Datasette metadata that publish "
        "wrote, which is all publish replaces; remove it or give another file name.",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.metadata.json"]


def test_without_the_flag_no_metadata_is_written(tmp_path: Path) -> None:
    result = invoke("--db", str(SHIPPED), "publish", str(tmp_path / "catalog.db"))
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1
    assert not (tmp_path / "catalog.metadata.json").exists()


# A real Datasette, started on 127.0.0.1 by the test, serving a published copy.


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, the published copy) of a Datasette serving OUT.db with OUT.metadata.json."""
    pytest.importorskip("datasette", minversion="0.65")
    out = published(tmp_path_factory.mktemp("served"))
    connection.forget()
    port = free_port()
    command = [
        sys.executable, "-m", "datasette", "serve", "--immutable", str(out),
        "-m", str(out.with_name("catalog.metadata.json")), "--host", "127.0.0.1",
        "--port", str(port),
    ]  # fmt: skip
    log = out.with_name("datasette.log")
    with open(log, "wb") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if get(f"{base}/-/versions.json").status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Datasette did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield base, out
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def get(url: str, **params: str) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False  # loopback only: never through a proxy the environment names
        return session.get(url, params=params, timeout=30)


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.name for example in EXAMPLES])
def test_a_canned_query_answers_what_pai_catalog_sql_does(
    served: tuple[str, Path], example: Example
) -> None:
    base, out = served
    params = bound(example)
    answer = get(f"{base}/catalog/{example.name}.json", _shape="arrays", **params)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ok"] is True and body["truncated"] is False
    flags = [arg for name, value in params.items() for arg in ("-p", name, value)]
    result = invoke("--db", str(out), "sql", example.sql, *flags, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert body["rows"] == [list(row.values()) for row in rows]
    assert body["columns"] == (list(rows[0]) if rows else body["columns"])
    if params:
        assert rows, "the shipped catalog answers the parameterized examples"


def test_a_parameter_changes_the_answer(served: tuple[str, Path]) -> None:
    base, _ = served
    torch = get(f"{base}/catalog/latest_per_region.json", framework="PyTorch", _shape="objects")
    tf = get(f"{base}/catalog/latest_per_region.json", framework="TensorFlow", _shape="objects")
    assert torch.json()["rows"] and tf.json()["rows"]
    assert {row["image_uri"] for row in torch.json()["rows"]}.isdisjoint(
        row["image_uri"] for row in tf.json()["rows"]
    )


def test_datasette_serves_the_metadata_and_its_facets(served: tuple[str, Path]) -> None:
    base, out = served
    written = json.loads(out.with_name("catalog.metadata.json").read_text())
    answer = get(f"{base}/-/metadata.json").json()
    for name, query in answer["databases"]["catalog"]["queries"].items():
        assert query.pop("name", name) == name  # Datasette adds each canned query's name
    assert answer == written
    found = get(f"{base}/catalog/v_image.json", _size="1").json()
    facets = found["facet_results"]
    assert list(facets) == ["framework_name", "region", "accelerator_type", "scopes"]
    regions = {value["value"]: value["count"] for value in facets["region"]["results"]}
    with sqlite3.connect(f"file:{out}?mode=ro", uri=True) as conn:
        counted = dict(conn.execute("SELECT region, count(*) FROM v_image GROUP BY region"))
    assert regions == counted
    page = get(f"{base}/catalog/v_image", _sort="description")
    assert page.status_code != 200 and "Cannot sort table by description" in page.text
    assert get(f"{base}/catalog/v_image.json", _sort="image_uri").status_code == 200
    assert get(f"{base}/catalog/v_image.json", _sort_desc="created").status_code == 200
    table = get(f"{base}/catalog/sync_run").text
    assert documented(DOC.read_text())["sync_run"].description in table


def test_a_publish_stopped_midway_leaves_no_old_description_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = published(tmp_path)
    meta = out.with_name("catalog.metadata.json")
    assert meta.exists()

    def stopped(*_: Any, **__: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("catalog.store.publish.publish", stopped)
    result = invoke("--db", str(SHIPPED), "publish", str(out), "--datasette")
    assert result.exit_code != 0
    assert not meta.exists()  # the copy in place may be old or new: no description claims it
