"""Rebuild data/snapshot/ from the public image list, then data/catalog.db from the snapshot.

The shipped catalog is reconstructed from public documentation, not fetched from the API:
each official image URI seen in a public source becomes an API-shaped record whose labels
follow the documented label conventions and say only what the tag itself says. Both steps are
deterministic, so rebuilding from the same inputs gives the same database.

    python scripts/build_snapshot.py                 # both steps
    python scripts/build_snapshot.py --db-only       # only data/catalog.db, from data/snapshot/
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "data" / "snapshot"
DATABASE = ROOT / "data" / "catalog.db"
DEFAULT_TSV = ROOT / "tests" / "fixtures" / "public-images.tsv"
# The day the public list was read; run times in the shipped database are this moment.
SNAPSHOT_EPOCH = 1795824000  # 2026-11-28T00:00:00Z

# PAI's product-image namespaces; others (team, project and test images) are not listed by
# ListImages with system.official=true. pai-common holds platform sidecars, not user images.
OFFICIAL_NAMESPACES = {"pai", "pai-dlc", "pai-eas", "cloud-dsw", "pai_product"}
SCOPE_LABELS = {
    "training": "system.supported.dlc",
    "inference": "system.supported.eas",
    "develop": "system.supported.dsw",
}
_REGION = re.compile(r"\.((?:cn|ap|eu|us|me|sa)-[a-z0-9-]+?)\.")
_UNIX_TIME = re.compile(r"(?:^|[-_])(1[5-9]\d{8})(?:$|[-_])")


def region_of(host: str) -> str | None:
    match = _REGION.search("." + host + ".")
    return match.group(1) if match else None


def image_id(region: str, path: str) -> str:
    digest = hashlib.sha256(f"{region}/{path}".encode()).hexdigest()
    return "image-" + digest[:18]


def labels_for(uri: str, scopes: set[str]) -> list[dict[str, str]]:
    """The labels PAI documents, filled only with what the tag says."""
    from catalog.parse.tags import KNOWN_FRAMEWORKS, LIBRARIES, parse_image

    parsed = parse_image(uri, {})
    labels = {"system.official": "true", "system.origin": "PAI"}
    for scope in sorted(scopes):
        labels[SCOPE_LABELS[scope]] = "true"
    # Framework labels only when the main framework and its version are known, and then only
    # for frameworks: a lone label for a library (cuDNN, NCCL) would become the main framework.
    frameworks = set(KNOWN_FRAMEWORKS.values()) - LIBRARIES
    if parsed.framework in frameworks and parsed.framework_version:
        labels[f"system.framework.{parsed.framework}"] = parsed.framework_version
        for name, version in parsed.components:
            if name in frameworks and version:
                labels.setdefault(f"system.framework.{name}", version)
    if parsed.accelerator:
        labels["system.chipType"] = parsed.accelerator
    if parsed.python_version:
        labels["system.pythonVersion"] = parsed.python_version
    if parsed.cuda_version:
        labels["system.dsw.cudaVersion"] = parsed.cuda_version
    if parsed.os_version:
        match = re.fullmatch(r"([a-z]+)(\d[\d.]*)?", parsed.os_version)
        if match:
            labels["system.dsw.os"] = match.group(1)
            if match.group(2):
                labels["system.dsw.osVersion"] = match.group(2)
    return [{"Key": key, "Value": value} for key, value in labels.items()]


def build_snapshot(tsv: Path, out: Path) -> dict[str, int]:
    """Write one ListImages-shaped file per region; returns image counts by region."""
    from catalog.parse.tags import parse_uri

    chosen: dict[tuple[str, str], dict[str, object]] = {}
    with tsv.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            uri = row["uri"].strip()
            ref = parse_uri(uri)
            if ref.error or not ref.host or ref.namespace not in OFFICIAL_NAMESPACES:
                continue
            region = region_of(ref.host)
            if region is None:
                continue
            path = f"{ref.namespace}/{ref.repository}:{ref.tag or 'latest'}"
            entry = chosen.setdefault((region, path), {"uri": uri, "scopes": set(), "sources": []})
            # The same image through the VPC and the public registry is one image; keep the
            # public address, as a user outside the VPC would pull it.
            if "-vpc." in str(entry["uri"]) and "-vpc." not in uri:
                entry["uri"] = uri
            if row["scope_hint"] in SCOPE_LABELS:
                entry["scopes"].add(row["scope_hint"])  # type: ignore[attr-defined]
            entry["sources"].append(row["source"])  # type: ignore[attr-defined]
    by_region: dict[str, list[dict[str, object]]] = {}
    for (region, path), entry in sorted(chosen.items()):
        uri = str(entry["uri"])
        ref = parse_uri(uri)
        record: dict[str, object] = {
            "ImageId": image_id(region, path),
            "Name": f"{ref.repository}:{ref.tag or 'latest'}",
            "Description": "Reconstructed from public documentation: "
            + "; ".join(sorted(set(entry["sources"])))[:400],  # type: ignore[call-overload]
            "ImageUri": uri,
            "Accessibility": "PUBLIC",
            "Labels": labels_for(uri, entry["scopes"]),  # type: ignore[arg-type]
        }
        stamp = _UNIX_TIME.search(ref.tag or "")
        if stamp:
            from datetime import datetime, timezone

            moment = datetime.fromtimestamp(int(stamp.group(1)), tz=timezone.utc)
            record["GmtCreateTime"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        by_region.setdefault(region, []).append(record)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.json"):
        old.unlink()
    for region, images in by_region.items():
        body = {"RequestId": "public-snapshot", "TotalCount": len(images), "Images": images}
        text = json.dumps(body, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
        (out / f"{region}.json").write_text(text, encoding="utf-8")
    return {region: len(images) for region, images in by_region.items()}


def build_database(snapshot: Path, database: Path) -> None:
    """Import every region file into a new database through ``pai-catalog import``."""
    tmp = database.with_suffix(".db.tmp")
    tmp.unlink(missing_ok=True)
    env = {**os.environ, "PAI_CATALOG_BUILD_TIME": str(SNAPSHOT_EPOCH), "PAI_CATALOG_DB": str(tmp)}
    for path in sorted(snapshot.glob("*.json")):
        subprocess.run(
            [sys.executable, "-m", "catalog", "import", str(path), "--region", path.stem],
            check=True,
            env=env,
        )
    import sqlite3

    conn = sqlite3.connect(tmp)
    # A shipped file is read-only: a rollback journal lets it open where no -shm can be made.
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("VACUUM")
    conn.close()
    tmp.replace(database)
    tmp.with_name(tmp.name + ".lock").unlink(missing_ok=True)  # the imports' write lock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tsv", type=Path, default=DEFAULT_TSV, help="public-images.tsv")
    parser.add_argument("--db-only", action="store_true", help="skip the snapshot step")
    parser.add_argument("--out", type=Path, default=DATABASE, help="database to write")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if not args.db_only:
        counts = build_snapshot(args.tsv, SNAPSHOT)
        print(f"snapshot: {sum(counts.values())} images in {len(counts)} regions", file=sys.stderr)
    build_database(SNAPSHOT, args.out)
    print(f"database: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
