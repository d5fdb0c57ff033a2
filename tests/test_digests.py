"""pai-catalog digests against a real registry on 127.0.0.1: what tags point at, stored as
digests runs; pinned and platform-filtered answers; moved tags as history; registries that
cannot be reached; and the whole air-gapped flow from a sync to a pinned mirror plan."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from catalog.cli.main import main
from catalog.read.images import retrieve
from tests.conftest import api_image
from tests.dbkit import CatalogDb
from tests.registrykit import (
    OCI_INDEX,
    OCI_MANIFEST,
    SECRET,
    free_port,
    push_image,
    push_index,
    running_gate,
    serving,
)

REGION = "cn-hangzhou"
Listing = Callable[..., Path]


def pytorch(n: int, uri: str, version: str = "2.1.0", chip: str = "GPU") -> dict[str, Any]:
    """A PyTorch training image of the listing, at ``uri``."""
    labels = {
        "system.framework.PyTorch": version, "system.chipType": chip,
        "system.official": "true", "system.supported.dlc": "true",
    }  # fmt: skip
    return api_image(
        f"image-{n:04d}", uri, labels, GmtCreateTime=f"2026-01-{n % 28 + 1:02d}T00:00:00Z"
    )


def cli(db: CatalogDb | str, *args: str, env: dict[str, str] | None = None) -> Result:
    target = db if isinstance(db, str) else db.target
    return CliRunner().invoke(
        main, ["--db", target, *args], env={"PAI_CATALOG_MAX_AGE": "0", **(env or {})}
    )


def imported(db: CatalogDb, write_listing: Listing, images: list[dict[str, Any]]) -> None:
    done = cli(db, "import", str(write_listing(images)), "--region", REGION)
    assert done.exit_code == 0, done.output


@pytest.fixture
def two(registry: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """A single-platform image and a two-platform index, under a namespace of this test's own."""
    space = f"t{abs(hash(request.node.name)) % 10**8}"
    single, _ = push_image(registry, f"{space}/pytorch", "2.1.0-gpu", "amd64")
    index = push_index(
        registry,
        f"{space}/pytorch",
        "2.2.0-gpu",
        {"linux/amd64": "amd64", "linux/arm64/v8": "arm64"},
    )
    return {
        "space": space,
        "single": (f"{registry}/{space}/pytorch:2.1.0-gpu", single),
        "index": (f"{registry}/{space}/pytorch:2.2.0-gpu", index),
    }


def test_digests_store_digest_media_type_and_platforms_and_answer_pinned(
    catalog_db: CatalogDb, write_listing: Listing, two: dict[str, Any]
) -> None:
    (single_uri, single), (index_uri, index) = two["single"], two["index"]
    imported(catalog_db, write_listing, [pytorch(1, single_uri), pytorch(2, index_uri, "2.2.0")])
    done = cli(catalog_db, "digests")
    assert done.exit_code == 0, done.output
    assert f"{REGION}: digests: 2 of 2 answered, 2 new, 0 moved (run 2)" in done.output
    stored = catalog_db.rows(
        "SELECT uri, digest, media_type, platforms, run_id FROM image_manifest ORDER BY uri"
    )
    assert stored == [
        (single_uri, single, OCI_MANIFEST, "linux/amd64", 2),
        (index_uri, index, OCI_INDEX, "linux/amd64,linux/arm64/v8", 2),
    ]
    run = catalog_db.rows("SELECT source, status, seen, added, changed FROM sync_run WHERE id = 2")
    assert run == [("digests", "ok", 2, 2, 0)]
    # resolve --pin answers name@digest; JSON and show carry the digest, type and platforms.
    name = index_uri.rsplit(":", 1)[0]
    pinned = cli(catalog_db, "resolve", "pytorch", "--accelerator", "gpu", "--pin")
    assert (pinned.exit_code, pinned.stdout) == (0, f"{name}@{index}\n")
    answer = json.loads(
        cli(catalog_db, "resolve", "pytorch", "--accelerator", "gpu", "--json").stdout
    )
    assert answer["image_uri"] == index_uri
    assert (answer["manifest_digest"], answer["media_type"]) == (index, OCI_INDEX)
    assert answer["platforms"] == ["linux/amd64", "linux/arm64/v8"]
    assert answer["digest_seen_at"] == answer["digest_checked_at"] is not None
    shown = cli(catalog_db, "show", single_uri)
    assert f"manifest_digest  : {single}\n" in shown.output
    assert "platforms        : linux/amd64\n" in shown.output
    exported = {row["image_uri"]: row for row in json.loads(cli(catalog_db, "export").stdout)}
    assert (exported[index_uri]["manifest_digest"], exported[index_uri]["platforms"]) == (
        index, ["linux/amd64", "linux/arm64/v8"]
    )  # fmt: skip
    # v_image carries them too, and the listing's last run is still the import.
    assert catalog_db.rows(
        "SELECT manifest_digest, platforms, last_seen_run_id FROM v_image WHERE image_uri = :u",
        {"u": index_uri},
    ) == [(index, "linux/amd64,linux/arm64/v8", 1)]


def test_platform_filters_on_what_registries_said(
    catalog_db: CatalogDb, write_listing: Listing, two: dict[str, Any]
) -> None:
    (single_uri, _), (index_uri, _) = two["single"], two["index"]
    unasked = f"{single_uri.split('/')[0]}/{two['space']}/pytorch:2.3.0-gpu"  # never pushed
    imported(
        catalog_db, write_listing,
        [pytorch(1, single_uri), pytorch(2, index_uri, "2.2.0"), pytorch(3, unasked, "2.3.0")],
    )  # fmt: skip
    assert cli(catalog_db, "digests", "--version", "<2.3").exit_code == 0
    asked = ("linux/arm64", "LINUX/ARM64/v8", "linux/amd64", "linux/arm64/v7", "linux/s390x")
    on = {
        platform: cli(
            catalog_db, "resolve", "pytorch", "--accelerator", "gpu", "--platform", platform
        )
        for platform in asked
    }
    assert on["linux/arm64"].stdout == on["LINUX/ARM64/v8"].stdout == f"{index_uri}\n"
    assert on["linux/amd64"].stdout == f"{index_uri}\n"  # the highest that runs there
    for platform in ("linux/arm64/v7", "linux/s390x"):
        assert on[platform].exit_code == 1
        assert on[platform].output == (
            f"Error: None of the 3 images matching pytorch latest is known to run on {platform} "
            "(2 run on linux/amd64, linux/arm64/v8); 1 has no known platforms: 'pai-catalog "
            "digests' asks their registries.\n"
        )
    listed = cli(catalog_db, "list", "--platform", "linux/amd64", "--format", "json")
    assert [i["image_uri"] for i in json.loads(listed.stdout)] == [index_uri, single_uri]
    bad = cli(catalog_db, "list", "--platform", "arm64")
    assert (
        bad.exit_code == 2
        and "'arm64' is not a platform; write it as os/architecture" in bad.output
    )
    with pytest.raises(ValueError, match="is not a platform"):
        retrieve("pytorch", accelerator_type="GPU", platform="linux/%", db=catalog_db.target)


def test_a_moved_tag_is_a_changed_event_and_pins_follow_it(
    catalog_db: CatalogDb, write_listing: Listing, registry: str, two: dict[str, Any]
) -> None:
    (uri, first) = two["single"]
    imported(catalog_db, write_listing, [pytorch(1, uri)])
    assert cli(catalog_db, "digests").exit_code == 0
    again = cli(catalog_db, "digests")  # nothing new to ask without --recheck
    assert (again.exit_code, again.output) == (
        0, "digests: nothing to ask; every selected image has a digest (--recheck asks again)\n"
    )  # fmt: skip
    same = cli(catalog_db, "digests", "--recheck")
    assert f"{REGION}: digests: 1 of 1 answered, 0 new, 0 moved (run 3)" in same.output
    moved, _ = push_image(registry, f"{two['space']}/pytorch", "2.1.0-gpu", "arm64")
    found = cli(catalog_db, "digests", "--recheck")
    assert f"{REGION}: digests: 1 of 1 answered, 0 new, 1 moved (run 4)" in found.output
    rows = catalog_db.rows("SELECT digest, platforms, run_id FROM image_manifest ORDER BY id")
    assert rows == [(first, "linux/amd64", 2), (moved, "linux/arm64", 4)]
    name = uri.rsplit(":", 1)[0]
    pinned = cli(catalog_db, "resolve", "pytorch", "--accelerator", "gpu", "--pin")
    assert pinned.stdout == f"{name}@{moved}\n"
    # As the catalog stood before the move, the pin is the digest of then.
    then = catalog_db.scalar("SELECT seen_at FROM image_manifest WHERE digest = :d", {"d": first})
    as_of = then if isinstance(then, str) else then.isoformat() + "Z"
    earlier = cli(
        catalog_db, "resolve", "pytorch", "--accelerator", "gpu", "--pin", "--as-of", as_of
    )
    assert earlier.stdout == f"{name}@{first}\n"
    # History: a changed event of the digests run, naming the field.
    events = catalog_db.rows(
        "SELECT kind, changed_fields, run_id, run_source FROM v_image_event ORDER BY event_id"
    )
    assert events == [
        ("added", None, 1, "import"),
        ("changed", '["manifest_digest"]', 4, "digests"),
    ]
    history = cli(catalog_db, "history", uri, "--format", "json")
    assert [(e["changed_fields"], e["manifest_digest"]) for e in json.loads(history.stdout)] == [
        ([], None), (["manifest_digest"], moved)
    ]  # fmt: skip
    # mirror plan --since the run before the move plans the moved image, pinned.
    plan = cli(catalog_db, "mirror", "plan", "--to", "mirror.local:5000", "--since", "3")
    assert plan.stdout == (
        f"skopeo copy --all --preserve-digests docker://{name}@{moved} "
        f"docker://mirror.local:5000/{two['space']}/pytorch:2.1.0-gpu\n"
    )
    assert cli(catalog_db, "mirror", "plan", "--to", "m.local", "--since", "4").stdout == ""
    # Digests runs are not listings: diff still compares the import with nothing, and the
    # region's last sync is the import's.
    assert "has only one successful run" in cli(catalog_db, "diff", "--region", REGION).output
    assert "Run 4 asked registries for digests" in cli(catalog_db, "diff", "1", "4").output


def test_unreachable_registries_cost_only_their_images(
    catalog_db: CatalogDb, write_listing: Listing, two: dict[str, Any]
) -> None:
    (uri, digest) = two["single"]
    closed = f"127.0.0.1:{free_port()}/pai/pytorch:2.0.0-gpu"  # nothing listens there
    missing = f"{uri.split('/')[0]}/{two['space']}/pytorch:1.0.0-gpu"  # no such tag
    imported(
        catalog_db, write_listing,
        [pytorch(1, uri), pytorch(2, closed, "2.0.0"), pytorch(3, missing, "1.0.0")],
    )  # fmt: skip
    done = cli(catalog_db, "digests", "--retries", "0", "--timeout", "2")
    assert done.exit_code == 0, done.output  # enrichment: what could be stored was
    assert f"{REGION}: digests: 1 of 3 answered, 1 new, 0 moved (run 2)" in done.output
    assert f"  not answered: {closed}: {closed.split('/')[0]} did not answer" in done.output
    assert (
        f"  not answered: {missing}: {missing.split('/')[0]} answered no such image" in done.output
    )
    assert catalog_db.rows("SELECT uri, digest FROM image_manifest") == [(uri, digest)]
    detail = catalog_db.scalar("SELECT detail FROM sync_run WHERE id = 2")
    assert "2 not answered" in detail
    # When nothing is answered, the run failed and the command says so.
    nothing = cli(catalog_db, "digests", "--retries", "0", "--timeout", "2", "--version", "2.0.0")
    assert nothing.exit_code == 1
    assert catalog_db.rows("SELECT status FROM sync_run WHERE id = 3") == [("failed",)]
    # The staleness of the catalog still counts from the import, not from digests runs.
    assert catalog_db.rows(
        "SELECT region, last_seen_run_id FROM v_image WHERE image_uri = :u", {"u": uri}
    ) == [(REGION, 1)]


def test_the_limit_caps_a_run_and_the_rest_wait(
    catalog_db: CatalogDb, write_listing: Listing, two: dict[str, Any]
) -> None:
    (single_uri, _), (index_uri, _) = two["single"], two["index"]
    imported(catalog_db, write_listing, [pytorch(1, single_uri), pytorch(2, index_uri, "2.2.0")])
    first = cli(catalog_db, "digests", "--limit", "1", "--json")
    summary = json.loads(first.stdout)
    assert (summary["due"], summary["left"], len(summary["runs"])) == (2, 1, 1)
    assert summary["runs"][0]["answered"] == 1
    second = cli(catalog_db, "digests", "--limit", "1")
    assert "digests: 1 of 1 answered, 1 new" in second.output and "left for" not in second.output
    assert catalog_db.scalar("SELECT count(*) FROM image_manifest") == 2
    assert cli(catalog_db, "digests", "--limit", "0").exit_code == 2
    assert "No such option '--as-of'" in cli(catalog_db, "digests", "--as-of", "2026-01-01").output


def test_pin_without_a_digest_is_a_clear_error(
    catalog_db: CatalogDb, write_listing: Listing, two: dict[str, Any]
) -> None:
    imported(catalog_db, write_listing, [pytorch(1, two["single"][0])])
    answer = cli(catalog_db, "resolve", "pytorch", "--accelerator", "gpu", "--pin")
    assert answer.exit_code == 1
    assert answer.output == (
        f"Error: No digest is known for {two['single'][0]}; run 'pai-catalog digests' to ask "
        "its registry, or answer without pinning.\n"
    )


def test_a_registry_behind_a_bearer_challenge_with_dockers_credentials(
    catalog_db: CatalogDb, write_listing: Listing, registry: str, tmp_path: Path
) -> None:
    digest, _ = push_image(registry, "gated/pytorch", "2.1.0-gpu")
    with running_gate(registry, need_password=True) as gate:
        uri = f"{gate}/gated/pytorch:2.1.0-gpu"
        imported(catalog_db, write_listing, [pytorch(1, uri)])
        refused = cli(catalog_db, "digests", "--retries", "0")
        assert refused.exit_code == 1 and "answered HTTP 401" in refused.output
        home = tmp_path / "home"
        (home / ".docker").mkdir(parents=True)
        auth = base64.b64encode(f"me:{SECRET}".encode()).decode()
        (home / ".docker" / "config.json").write_text(json.dumps({"auths": {gate: {"auth": auth}}}))
        done = cli(catalog_db, "--log-level", "debug", "digests", env={"HOME": str(home)})
    assert done.exit_code == 0, done.output
    assert catalog_db.rows("SELECT digest FROM image_manifest") == [(digest,)]
    # The secret reached the token endpoint only: not the output, nor the catalog.
    assert SECRET not in done.output and auth not in done.output
    assert SECRET not in json.dumps(catalog_db.rows("SELECT * FROM sync_run"), default=str)


def test_sync_with_digests_then_publish_install_resolve_pinned_behind_a_mirror(
    registry: str, tmp_path: Path
) -> None:
    """The air-gapped flow: sync (fake API) -> digests (real registry) -> publish -> copy ->
    db install on a read-only-elsewhere layout -> resolve --mirror --pin -> mirror plan."""
    from tests.test_sync import SECRET as API_SECRET
    from tests.test_sync import fake

    arm_and_amd = push_index(registry, "flow/pytorch", "2.2.0-gpu",
                             {"linux/amd64": "amd64", "linux/arm64": "arm64"})  # fmt: skip
    single, _ = push_image(registry, "flow/pytorch", "2.1.0-gpu")
    images = [
        pytorch(1, f"{registry}/flow/pytorch:2.1.0-gpu"),
        pytorch(2, f"{registry}/flow/pytorch:2.2.0-gpu", "2.2.0"),
    ]
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "test-ak", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": API_SECRET,
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true", "ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true",
    }  # fmt: skip
    source = str(tmp_path / "online" / "catalog.db")
    with fake.FakePaiApi({REGION: images}) as api:
        synced = cli(
            source, "sync", "--region", REGION, "--endpoint", api.url, "--digests", env=env
        )
    assert synced.exit_code == 0, synced.output
    assert f"{REGION}: 2 seen, 2 added" in synced.output
    assert f"{REGION}: digests: 2 of 2 answered, 2 new, 0 moved (run 2)" in synced.output
    assert API_SECRET not in synced.output
    # publish, carry the file and its checksum to the other machine, install it there.
    published = tmp_path / "out" / "catalog.db"
    published.parent.mkdir()
    done = cli(source, "publish", str(published))
    assert done.exit_code == 0, done.output
    carried = tmp_path / "usb"
    carried.mkdir()
    for name in ("catalog.db", "catalog.db.sha256"):
        shutil.copy(published.parent / name, carried / name)
    carried.chmod(stat.S_IRUSR | stat.S_IXUSR)  # the medium is read-only
    installed = str(tmp_path / "airgap" / "pai-catalog" / "catalog.db")
    try:
        done = cli(installed, "db", "install", str(carried / "catalog.db"))
        assert done.exit_code == 0, done.output
        assert sorted(os.listdir(carried)) == ["catalog.db", "catalog.db.sha256"]
    finally:
        carried.chmod(stat.S_IRWXU)
    mirror = "mirror.airgap.local:5000/pai-mirror"
    answer = cli(
        installed, "resolve", "pytorch", "--accelerator", "gpu", "--mirror", mirror, "--pin"
    )
    assert (answer.exit_code, answer.stdout) == (0, f"{mirror}/flow/pytorch@{arm_and_amd}\n")
    arm = cli(installed, "resolve", "pytorch", "2.1", "--accelerator", "gpu", "--platform",
              "linux/arm64", "--mirror", mirror)  # fmt: skip
    assert arm.exit_code == 1 and "1 runs on linux/amd64" in arm.output
    plan = cli(installed, "mirror", "plan", "--to", mirror, "--format", "skopeo-sync")
    assert plan.exit_code == 0, plan.output
    assert plan.stdout == (
        f"# skopeo sync --src yaml --dest docker --preserve-digests THIS_FILE {mirror}/flow\n"
        f'"{registry}":\n'
        "  images:\n"
        '    "flow/pytorch":\n'
        '      - "2.2.0-gpu"\n'
        f'      - "{arm_and_amd}"\n'
        '      - "2.1.0-gpu"\n'
        f'      - "{single}"\n'
    )


def test_images_whose_registry_fails_wait_behind_the_others(
    catalog_db: CatalogDb, write_listing: Listing, two: dict[str, Any]
) -> None:
    """A registry that keeps failing must not take every run's turn under --limit."""
    host = two["single"][0].split("/")[0]
    gone = [f"{host}/{two['space']}/gone:{n}" for n in (1, 2)]  # no such tags
    imported(
        catalog_db, write_listing,
        [pytorch(1, gone[0], "9.0.0"), pytorch(2, gone[1], "9.0.0"),
         pytorch(3, two["single"][0]), pytorch(4, two["index"][0], "2.2.0")],
    )  # fmt: skip
    first = cli(catalog_db, "digests", "--limit", "2", "--retries", "0")
    # "No such image" is an answer: a nightly job does not fail for images gone from a registry.
    assert first.exit_code == 0 and "0 of 2 answered" in first.output
    misses = catalog_db.rows("SELECT uri, failures, run_id FROM image_manifest_miss ORDER BY uri")
    assert misses == [(gone[0], 1, 2), (gone[1], 1, 2)]
    second = cli(catalog_db, "digests", "--limit", "2", "--retries", "0")
    assert second.exit_code == 0 and "2 of 2 answered, 2 new" in second.output
    third = cli(catalog_db, "digests", "--limit", "2", "--retries", "0")
    assert "0 of 2 answered" in third.output
    assert catalog_db.rows("SELECT failures FROM image_manifest_miss") == [(2,), (2,)]


def test_a_registry_that_stops_answering_is_given_up_on(
    catalog_db: CatalogDb, write_listing: Listing
) -> None:
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    images = [pytorch(n, f"{closed}/pai/pytorch:2.{n}.0-gpu", f"2.{n}.0") for n in range(8)]
    imported(catalog_db, write_listing, images)
    done = cli(catalog_db, "digests", "--retries", "0", "--workers", "1", "--timeout", "1")
    assert done.exit_code == 1
    given_up = f"{closed} did not answer 3 requests in a row; not asked."
    assert done.output.count(f"{closed} did not answer (ConnectionError).") == 3
    assert done.output.count(given_up) == 5
    reasons = [r for (r,) in catalog_db.rows("SELECT reason FROM image_manifest_miss")]
    assert sorted(set(reasons)) == [f"{closed} did not answer (ConnectionError).", given_up]
    assert reasons.count(given_up) == 5


def test_a_digests_run_leaves_no_wal_behind(
    sqlite_path: Path, write_listing: Listing, two: dict[str, Any]
) -> None:
    """A copy of the file alone (as cp or a backup takes it) holds what digests stored."""
    target = str(sqlite_path)
    done = cli(
        target, "import", str(write_listing([pytorch(1, two["single"][0])])), "--region", REGION
    )
    assert done.exit_code == 0
    assert cli(target, "digests").exit_code == 0
    wal = Path(f"{target}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    copy = sqlite_path.with_name("copy.db")
    shutil.copy(sqlite_path, copy)
    assert CatalogDb.file(copy).scalar("SELECT count(*) FROM image_manifest") == 1


def test_a_selection_of_nothing_says_so(
    catalog_db: CatalogDb, write_listing: Listing, two: dict[str, Any]
) -> None:
    imported(catalog_db, write_listing, [pytorch(1, two["single"][0])])
    nothing = cli(catalog_db, "digests", "--version", "9")
    assert (nothing.exit_code, nothing.output) == (
        0, "digests: nothing to ask; no live image matches the filters\n"
    )  # fmt: skip


def test_a_platform_with_an_underscore_matches_itself_only(
    catalog_db: CatalogDb, write_listing: Listing, registry: str
) -> None:
    push_image(registry, "odd/pytorch", "2.1.0-gpu", "x86_64")
    push_image(registry, "odd/pytorch", "2.0.0-gpu", "x86-64")
    imported(
        catalog_db, write_listing,
        [pytorch(1, f"{registry}/odd/pytorch:2.1.0-gpu"),
         pytorch(2, f"{registry}/odd/pytorch:2.0.0-gpu", "2.0.0")],
    )  # fmt: skip
    assert cli(catalog_db, "digests").exit_code == 0
    for platform, tag in (("linux/x86_64", "2.1.0-gpu"), ("linux/x86-64", "2.0.0-gpu")):
        found = cli(catalog_db, "list", "--platform", platform, "--format", "json")
        assert [i["image_uri"] for i in json.loads(found.stdout)] == [
            f"{registry}/odd/pytorch:{tag}"
        ]


def test_installing_a_catalog_with_older_digests_is_refused(
    sqlite_path: Path, write_listing: Listing, registry: str, two: dict[str, Any], tmp_path: Path
) -> None:
    """Same listing, pins checked earlier: installing it would move pins back."""
    source, (uri, _) = str(sqlite_path), two["single"]
    assert (
        cli(source, "import", str(write_listing([pytorch(1, uri)])), "--region", REGION).exit_code
        == 0
    )
    assert cli(source, "digests").exit_code == 0
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    assert cli(source, "publish", str(first)).exit_code == 0
    moved, _ = push_image(registry, f"{two['space']}/pytorch", "2.1.0-gpu", "arm64")
    assert cli(source, "digests", "--recheck").exit_code == 0
    assert cli(source, "publish", str(second)).exit_code == 0
    target = str(tmp_path / "airgap" / "catalog.db")
    assert cli(target, "db", "install", str(second)).exit_code == 0
    older = cli(target, "db", "install", str(first))
    assert older.exit_code == 1
    assert f"{REGION}'s digests were last checked " in older.output
    assert "nothing was installed" in older.output
    name = uri.rsplit(":", 1)[0]
    assert (
        cli(target, "resolve", "pytorch", "--accelerator", "gpu", "--pin").stdout
        == f"{name}@{moved}\n"
    )


def test_each_region_s_history_names_the_digest_a_tag_moved_to(
    catalog_db: CatalogDb, write_listing: Listing, registry: str, two: dict[str, Any]
) -> None:
    uri = two["single"][0]
    for region in (REGION, "cn-shanghai"):
        done = cli(catalog_db, "import", str(write_listing([pytorch(1, uri)])), "--region", region)
        assert done.exit_code == 0, done.output
    assert cli(catalog_db, "digests", "--region", "any").exit_code == 0
    moved, _ = push_image(registry, f"{two['space']}/pytorch", "2.1.0-gpu", "arm64")
    assert cli(catalog_db, "digests", "--recheck", "--region", "any").exit_code == 0
    for region in (REGION, "cn-shanghai"):
        found = cli(catalog_db, "history", "image-0001", "--region", region, "--format", "json")
        events = json.loads(found.stdout)
        assert [(e["changed_fields"], e["manifest_digest"]) for e in events] == [
            ([], None), (["manifest_digest"], moved)
        ]  # fmt: skip
    runs = catalog_db.rows("SELECT requests FROM sync_run WHERE source = 'digests' ORDER BY id")
    assert all(requests >= 1 for (requests,) in runs) and len(runs) == 4


def test_listing_a_platform_nothing_is_known_to_run_on_says_why(
    catalog_db: CatalogDb, write_listing: Listing, two: dict[str, Any]
) -> None:
    imported(
        catalog_db,
        write_listing,
        [pytorch(1, two["single"][0]), pytorch(2, two["index"][0], "2.2.0")],
    )
    nothing = cli(catalog_db, "list", "--platform", "linux/arm64")
    assert nothing.exit_code == 1
    assert (
        "2 have no known platforms: 'pai-catalog digests' asks their registries" in nothing.output
    )
    assert cli(catalog_db, "digests").exit_code == 0
    found = cli(catalog_db, "list", "--platform", "linux/arm64", "--format", "json")
    assert [i["image_uri"] for i in json.loads(found.stdout)] == [two["index"][0]]
    plan = json.loads(
        cli(catalog_db, "mirror", "plan", "--to", "m.local", "--format", "json").stdout
    )
    name = two["index"][0].rsplit(":", 1)[0]
    assert plan[0]["source"] == f"{name}@{two['index'][1]}"  # never a tag and a digest together
    assert plan[0]["target"] == f"m.local/{two['space']}/pytorch:2.2.0-gpu"


class Busy(BaseHTTPRequestHandler):
    """A registry that is always too busy: 429, with a long Retry-After."""

    asked = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        type(self).asked += 1
        self.send_response(429)
        self.send_header("Retry-After", "1000")
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_registry_that_is_always_busy_is_given_up_on(
    catalog_db: CatalogDb, write_listing: Listing
) -> None:
    with serving(Busy) as host:
        images = [pytorch(n, f"{host}/pai/pytorch:2.{n}.0-gpu", f"2.{n}.0") for n in range(6)]
        imported(catalog_db, write_listing, images)
        Busy.asked = 0
        done = cli(catalog_db, "digests", "--retries", "0", "--workers", "1")
    assert done.exit_code == 1
    assert done.output.count("answered HTTP 429 for pai/pytorch/manifests/") == 3
    assert done.output.count(f"{host} did not answer 3 requests in a row; not asked.") == 3
    assert Busy.asked == 3
