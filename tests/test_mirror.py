"""Mirrors: the URI a cluster behind a mirror registry pulls, and the plan of what to copy."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

import catalog
from catalog.cli.main import main
from catalog.errors import NotFoundError, UsageError
from catalog.parse.uri import check_mirror, mirrored
from catalog.read.export import export_rows
from catalog.read.mirror import plan
from catalog.sync.run import import_files
from tests.conftest import api_image
from tests.dbkit import CatalogDb
from tests.test_query import BJ, HZ, fill, fw, hangzhou

TAG = "pytorch:2.10.0-gpu-py312-cu124-ubuntu22.04"


@pytest.fixture
def db(catalog_db: CatalogDb, write_listing: Any) -> str:
    return fill(catalog_db.target, write_listing)


@pytest.mark.parametrize(
    ("uri", "prefix", "expected"),
    [
        (f"{HZ}/{TAG}", "registry.local:5000", f"registry.local:5000/pai/{TAG}"),
        (f"{HZ}/{TAG}", "registry.local/pai-mirror", f"registry.local/pai-mirror/pai/{TAG}"),
        (f"{HZ}/pytorch@sha256:{'a' * 64}", "r.local", f"r.local/pai/pytorch@sha256:{'a' * 64}"),
        ("ubuntu:22.04", "r.local", "r.local/ubuntu:22.04"),  # no host: the path is the URI
        ("localhost:5000/pai/x:1", "r.local", "r.local/pai/x:1"),
    ],
)
def test_a_mirrored_uri_replaces_the_host_and_keeps_the_path(
    uri: str, prefix: str, expected: str
) -> None:
    assert mirrored(uri, check_mirror(prefix)) == expected


@pytest.mark.parametrize(
    "prefix",
    [
        "https://registry.local",
        "mirror",
        "",
        "r.local/pai:tag",
        "r .local",
        "r.local//x",
        "r.local/PAI",
        "r.local:99999",
        "r.local:0",
    ],
)
def test_a_prefix_that_is_no_registry_is_refused(prefix: str) -> None:
    with pytest.raises(UsageError, match="is not a mirror registry; write it like"):
        check_mirror(prefix)


def test_retrieve_gives_the_mirror_uri_beside_the_stored_one(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = catalog.retrieve("pytorch", "2.10.0", "GPU", region="cn-hangzhou", db=db)
    there = catalog.retrieve(
        "pytorch", "2.10.0", "GPU", region="cn-hangzhou", mirror="r.local:5000/", db=db
    )
    assert plain.mirror_uri is None and there.image_uri == plain.image_uri == f"{HZ}/{TAG}"
    assert there.mirror_uri == f"r.local:5000/pai/{TAG}"
    # A remembered answer carries no mirror into a call that asks for none, and the other way.
    again = catalog.retrieve("pytorch", "2.10.0", "GPU", region="cn-hangzhou", db=db)
    assert again.mirror_uri is None
    monkeypatch.setenv("PAI_CATALOG_MIRROR", "env.local")
    from_env = catalog.list_images("pytorch", region="cn-hangzhou", db=db)
    assert {i.mirror_uri.split("/", 1)[0] for i in from_env if i.mirror_uri} == {"env.local"}
    assert catalog.show("pt-2100", db=db).mirror_uri == f"env.local/pai/{TAG}"
    with pytest.raises(UsageError):
        catalog.retrieve("pytorch", region="cn-hangzhou", mirror=5, db=db)  # type: ignore[arg-type]


def test_the_command_line_prints_the_uri_to_pull(db: str) -> None:
    def run(*args: str) -> Any:
        return CliRunner().invoke(main, ["--db", db, *args])

    resolved = run("resolve", "pytorch", "2.10.0", "--accelerator", "gpu", "--region",
                   "cn-hangzhou", "--mirror", "r.local")  # fmt: skip
    assert resolved.stdout == f"r.local/pai/{TAG}\n"
    both = json.loads(run("resolve", "pytorch", "2.10.0", "--accelerator", "gpu", "--region",
                          "cn-hangzhou", "--mirror", "r.local", "--json").stdout)  # fmt: skip
    assert (both["image_uri"], both["mirror_uri"]) == (f"{HZ}/{TAG}", f"r.local/pai/{TAG}")
    listed = run("list", "pytorch", "--region", "cn-hangzhou", "--mirror", "r.local",
                 "--format", "csv").stdout.splitlines()  # fmt: skip
    assert listed[0].startswith("mirror_uri,framework_name,")
    assert all(line.startswith("r.local/pai/") for line in listed[1:])
    bad = run("resolve", "pytorch", "--mirror", "https://r.local")
    assert bad.exit_code == 2 and bad.stderr.splitlines()[-1].startswith(
        "Error: 'https://r.local' is not a mirror registry"
    )


def test_export_rows_carry_the_mirror_uri_after_the_stored_one(db: str) -> None:
    rows = list(export_rows(mirror="r.local", db=db))
    assert rows and all(list(row)[1:3] == ["image_uri", "mirror_uri"] for row in rows)
    assert all(row["mirror_uri"] == mirrored(row["image_uri"], "r.local") for row in rows)
    assert "mirror_uri" not in next(iter(export_rows(db=db)))


def test_a_plan_copies_each_image_once_and_narrows_by_version_and_run(
    db: str, write_listing: Any
) -> None:
    # The same image under Beijing's host too: one copy.
    import_files([write_listing([api_image("pt-2100-bj", f"{BJ}/{TAG}", fw("PyTorch", "2.10.0", "GPU", "training"))])],  # noqa: E501
                 "cn-beijing", db_option=db, allow_mass_removal=True)  # fmt: skip
    copies = plan("r.local", "pytorch", accelerator_type="gpu", db=db)
    targets = [c.target for c in copies]
    assert len(targets) == len(set(targets)) and f"r.local/pai/{TAG}" in targets
    newest = plan("r.local", "pytorch", accelerator_type="gpu", latest=1, db=db)
    assert {c.framework_version for c in newest} == {"2.10.0"}  # a release before a candidate
    before = max(r.run_id for r in catalog_runs(db))
    added = api_image("pt-2130", f"{HZ}/pytorch:2.13.0-gpu-py312-cu126-ubuntu24.04",
                      fw("PyTorch", "2.13.0", "GPU", "training"))  # fmt: skip
    import_files([write_listing([*hangzhou(), added])], "cn-hangzhou", db_option=db)
    since = plan("r.local", since=before, db=db)
    assert [c.image_id for c in since] == ["pt-2130"]
    with pytest.raises(NotFoundError, match="No run 999"):
        plan("r.local", since=999, db=db)


def catalog_runs(db: str) -> list[Any]:
    from catalog.read.history import runs

    return runs(db=db)


def test_a_plan_prints_as_skopeo_lines_a_sync_file_or_json(db: str) -> None:
    def run(*args: str) -> Any:
        return CliRunner().invoke(main, ["--db", db, "mirror", "plan", "--to", "r.local", *args])

    lines = run("pytorch", "--region", "cn-hangzhou", "--accelerator", "gpu").stdout.splitlines()
    assert f"skopeo copy --all docker://{HZ}/{TAG} docker://r.local/pai/{TAG}" in lines
    yaml = run("pytorch", "--region", "cn-hangzhou", "--format", "skopeo-sync").stdout
    assert yaml.startswith(
        "# skopeo sync --src yaml --dest docker THIS_FILE r.local/pai\n"
        '"dsw-registry.cn-hangzhou.cr.aliyuncs.com":\n  images:\n    "pai/pytorch":\n'
    )
    assert f'      - "{TAG.split(":")[1]}"\n' in yaml
    pairs = json.loads(run("--format", "json").stdout)
    assert pairs and all(p["target"] == mirrored(p["source"], "r.local") for p in pairs)
    assert "--mirror PREFIX" not in run("--help").stdout
    empty = run("pytorch", "--region", "cn-hangzhou", "--scope", "inference", "--format",
                "skopeo-sync", "--accelerator", "xpu")  # fmt: skip
    assert empty.exit_code != 0 and empty.stdout == ""
    one = run("--namespace", "pai", "--format", "skopeo-sync")
    assert one.exit_code == 0 and one.stdout.startswith("# skopeo sync --src yaml --dest docker")
