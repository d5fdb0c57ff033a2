"""Datasette metadata for a catalog file, read from the docs/SCHEMA.md that ships with it."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from catalog.config import DIGEST_SOURCE, resolve_target, shipped_db_path
from catalog.errors import CatalogError, DatabaseError, UsageError
from catalog.read import export, history

TITLE = "PAI image catalog"
LICENSE = "Apache-2.0"
LICENSE_URL = "https://www.apache.org/licenses/LICENSE-2.0"
LIVE_SOURCE = "Alibaba Cloud PAI AIWorkspace ListImages API (2021-02-04)"
LIVE_SOURCE_URL = "https://api.aliyun.com/api/AIWorkspace/2021-02-04/ListImages"
DEMO_SOURCE = "Image URIs in Alibaba Cloud's public documentation (pai-image-catalog data/snapshot)"
# What Datasette offers first: the questions people ask of the catalog.
FACETS: dict[str, tuple[str, ...]] = {
    "v_image": ("framework_name", "region", "accelerator_type", "scopes"),
    "image_version": ("framework", "region", "accelerator", "scopes"),
    "v_latest": ("framework_name", "region", "accelerator_type", "image_scope"),
    "v_image_event": ("kind", "region", "framework_name"),
    "sync_run": ("region", "source", "status"),
    "image_label": ("key",),
}
# Datasette sorts only by these, where set: times, versions, counts and what people group by.
SORTABLE: dict[str, tuple[str, ...]] = {
    "sync_run": (
        "id", "region", "source", "status", "started_at", "finished_at", "pages", "requests",
        "retries", "seen", "added", "changed", "removed", "restored",
    ),
    "image_version": (
        "id", "region", "framework", "version_key", "version_class", "accelerator",
        "valid_from", "valid_to", "gmt_create_time", "gmt_modified_time", "size",
    ),
    "image_event": ("id", "run_id", "kind"),
    "image_manifest": ("id", "seen_at", "checked_at"),
    "image_manifest_miss": ("failed_at", "failures", "run_id"),
    "v_image": (
        "image_id", "image_name", "image_uri", "region", "framework_name", "version_key",
        "accelerator_type", "python_version",
        "cuda_version", "created", "modified", "size", "state_since", "first_seen_run_id",
    ),
    "v_image_event": ("event_id", "run_id", "run_started_at", "kind", "region", "framework_name"),
    "v_latest": (
        "framework_name", "region", "accelerator_type", "image_scope", "image_uri", "created",
    ),
}  # fmt: skip
_SECTIONS = {"# Tables": "table", "# Views": "view", "# Example queries": "example"}
_CELL = re.compile(r"(?<!\\)\|")
_EXAMPLE = re.compile(r"([a-z][a-z0-9_]*): (\S.*)")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    meaning: str


@dataclass(frozen=True)
class Relation:
    """A table or view as docs/SCHEMA.md describes it."""

    kind: str  # "table" or "view"
    description: str
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class Example:
    """One of docs/SCHEMA.md's example queries: a Datasette canned query."""

    name: str
    title: str
    description: str
    sql: str


def schema_doc() -> str:
    """The text of docs/SCHEMA.md, as installed (catalog.docs) or in a checkout."""
    from importlib import resources

    try:
        return resources.files("catalog.docs").joinpath("SCHEMA.md").read_text("utf-8")
    except ModuleNotFoundError:  # a checkout on sys.path, or installed before catalog.docs was
        return (Path(__file__).resolve().parents[2] / "docs" / "SCHEMA.md").read_text("utf-8")


def _paragraphs(lines: list[str]) -> str:
    """Markdown prose as plain text: a paragraph's lines joined, paragraphs a blank line apart."""
    text = "\n".join(line.strip() for line in lines).strip()
    return "\n\n".join(" ".join(part.split("\n")) for part in re.split(r"\n\n+", text) if part)


def documented(text: str) -> dict[str, Relation]:
    """Every table and view under '# Tables' and '# Views': its description (the prose under its
    '## name' heading) and each row of its '| column | type | meaning |' table."""
    found: dict[str, Relation] = {}
    kind = name = None
    prose: list[str] = []
    columns: list[Column] = []

    def close() -> None:
        if kind in ("table", "view") and name is not None:
            found[name] = Relation(kind, _paragraphs(prose), tuple(columns))

    for line in text.splitlines():
        if line.startswith("# ") or line.startswith("## "):
            close()
            prose, columns, name = [], [], None
            if line.startswith("# "):
                kind = _SECTIONS.get(line.strip())
            elif kind in ("table", "view"):
                name = line[3:].strip()
                if not re.fullmatch(r"\w+", name):
                    raise ValueError(f"The heading {line!r} is not a table or view name.")
        elif name is None:
            continue
        elif line.startswith("| `"):
            cells = [c.strip().replace("\\|", "|") for c in _CELL.split(line.strip().strip("|"))]
            if len(cells) != 3:
                raise ValueError(f"The row {line!r} of {name} is not column | type | meaning.")
            columns.append(Column(cells[0].strip("`"), cells[1], cells[2]))
        elif not line.startswith("|"):
            prose.append(line)
    close()
    return found


def examples(text: str) -> tuple[Example, ...]:
    """The '# Example queries': each a '## name: title' heading, its description and its
    one ```sql block."""
    found: list[Example] = []
    section = heading = None
    prose: list[str] = []
    sql: list[str] | None = None
    for line in text.splitlines():
        if sql is not None:  # inside a ```sql block
            if line.strip() != "```":
                sql.append(line)
                continue
            match = _EXAMPLE.fullmatch(heading or "")
            if match is None:
                raise ValueError(f"The example after {heading!r} needs a '## name: title' heading.")
            text_sql = "\n".join(sql).strip()
            found.append(Example(match[1], match[2].strip(), _paragraphs(prose), text_sql))
            sql, heading, prose = None, None, []
        elif line.startswith("# "):
            section, heading, prose = _SECTIONS.get(line.strip()), None, []
        elif section != "example":
            continue
        elif line.startswith("## "):
            heading, prose = line[3:].strip(), []
        elif line.strip() == "```sql":
            sql = []
        elif heading is not None:
            prose.append(line)
    names = [example.name for example in found]
    if len(set(names)) != len(names):
        raise ValueError(f"Example names repeat: {', '.join(names)}.")
    return tuple(found)


def provenance(*, db: str | None = None) -> tuple[str, str, str | None]:
    """(what the data is, its source, the source's address), from each region's runs.

    A region whose successful listings are exactly the shipped catalog's imports of it (same
    files and start time) is the reconstructed demonstration; one synced from an endpoint of
    Alibaba Cloud (*.aliyuncs.com) is PAI's live list; one synced from any other endpoint (the
    fake API, a proxy) is said to be so, with the endpoint; imports alone are saved responses.
    """
    listed = _listings(db)
    if not listed:
        return "An empty catalog: no region has been synced or imported.", "none yet", None
    shipped: dict[str, set[_Listing]] = {}
    for item in _shipped_listings() or set():
        shipped.setdefault(item[0], set()).add(item)
    regions: dict[str, set[_Listing]] = {}
    for item in listed:
        regions.setdefault(item[0], set()).add(item)
    kinds: dict[str, list[str]] = {}
    endpoints: set[str] = set()
    for region, runs in sorted(regions.items()):
        syncs = [str(detail) for _, source, detail, _ in runs if source == "sync"]
        if not syncs and runs == shipped.get(region):
            kind = "demo"
        elif any(_alibaba(detail) for detail in syncs):
            kind = "live"
        elif syncs:
            kind = "elsewhere"
            endpoints.update(syncs)
        else:
            kind = "imported"
        kinds.setdefault(kind, []).append(region)
    if set(kinds) == {"demo"}:
        return (
            "The reconstructed demonstration catalog that ships with pai-image-catalog: image "
            "URIs found in Alibaba Cloud's public documentation, with labels that say only what "
            "each tag says. It is not PAI's live list: an image in it may no longer exist, and "
            "many live images are missing; 'pai-catalog sync' builds the live catalog.",
            DEMO_SOURCE,
            None,
        )
    said = {
        "live": "synced from PAI's live ListImages API",
        "elsewhere": "synced from an endpoint that is not Alibaba Cloud's "
        f"({_some(sorted(endpoints))}), not PAI's live list",
        "imported": "imported from saved ListImages responses (sync_run.detail names the files)",
        "demo": "the reconstructed demonstration that ships with pai-image-catalog (from public "
        "documentation, not PAI's live list)",
    }
    parts = [f"{said[kind]}: {_some(kinds[kind])}" for kind in said if kind in kinds]
    what = "Listings of Alibaba Cloud PAI's container images, by region; " + "; ".join(parts) + "."
    if "live" in kinds:
        return what, LIVE_SOURCE, LIVE_SOURCE_URL
    return what, "ListImages responses named in sync_run.detail", None


def _alibaba(detail: str) -> bool:
    try:
        host = urlsplit(detail).hostname or ""
    except ValueError:
        return False
    return host == "aliyuncs.com" or host.endswith(".aliyuncs.com")


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


_Listing = tuple[str, str, str | None, str]


def _listings(db: str | None) -> set[_Listing]:
    """(region, source, detail, started_at) of each successful run that listed images."""
    return {
        (run.region, run.source, run.detail, run.started_at)
        for run in history.runs(status="ok", db=db)
        if run.source != DIGEST_SOURCE
    }


def _shipped_listings() -> set[_Listing] | None:
    try:
        return _listings(str(shipped_db_path()))
    except CatalogError:  # no shipped catalog in this install: nothing is the demonstration
        return None


def datasette_metadata(*, db: str | None = None, name: str | None = None) -> dict[str, Any]:
    """Datasette 0.65 metadata for the catalog file ``db`` (served as database ``name``, by
    default the file's stem): docs/SCHEMA.md's descriptions and example queries, facets, and
    what the data is and where it came from."""
    database = name or _stem(db)
    what, source, source_url = provenance(db=db)
    found = export.info(db=db)
    if found.images or found.regions:
        regions = len(found.regions)
        what += f" {found.images} images in {regions} region{'' if regions == 1 else 's'}"
        what += f", last listed {found.last_sync}." if found.last_sync else "."
    what += " Every table, view and column is described as in docs/SCHEMA.md; start with v_image."
    doc = schema_doc()
    tables: dict[str, Any] = {}
    for table, relation in documented(doc).items():
        entry: dict[str, Any] = {
            "description": relation.description,
            "columns": {column.name: column.meaning for column in relation.columns},
        }
        if table in FACETS:
            entry["facets"] = list(FACETS[table])
        if table in SORTABLE:
            entry["sortable_columns"] = list(SORTABLE[table])
        tables[table] = entry
    queries = {
        example.name: {
            "title": example.title,
            "description": example.description,
            "sql": example.sql,
        }
        for example in examples(doc)
    }
    metadata: dict[str, Any] = {
        "title": TITLE,
        "description": what,
        "source": source,
        "databases": {database: {"tables": tables, "queries": queries}},
    }
    if source == DEMO_SOURCE:  # the reconstruction is the project's own, under its licence
        metadata.update(license=LICENSE, license_url=LICENSE_URL)
    else:  # a listing is Alibaba Cloud's, not ours to license
        metadata["description"] += " The listings are Alibaba Cloud's; no licence is claimed."
    if source_url is not None:
        metadata["source_url"] = source_url
    return metadata


def _stem(db: str | None) -> str:
    target = resolve_target(db, own=True)
    if target.path is None:
        raise UsageError("Datasette metadata is for a catalog file; publish one first.")
    return target.path.stem


def metadata_path(out: Path) -> Path:
    """Where the metadata of the published copy ``out`` goes: OUT.metadata.json beside it."""
    return out.with_name(out.stem + ".metadata.json")


def check_replaceable(path: Path) -> None:
    """Refuse a ``path`` that writing the metadata would wrongly replace."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise UsageError(f"Cannot write {path}: it is not a regular file; remove it or move it.")
    if path.exists():
        try:
            title = json.loads(path.read_text("utf-8")).get("title")
        except (OSError, ValueError, AttributeError):
            title = None
        if title != TITLE:
            raise UsageError(
                f"Cannot write {path}: it exists and is not Datasette metadata that publish "
                "wrote, which is all publish replaces; remove it or give another file name."
            )


def write_metadata(path: Path, *, db: str | None = None) -> Path:
    """Write ``datasette_metadata(db=db)`` to ``path`` atomically; the same catalog gives the
    same bytes."""
    path = Path(path).expanduser().absolute()
    check_replaceable(path)
    body = json.dumps(datasette_metadata(db=db), indent=2, sort_keys=True, ensure_ascii=False)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DatabaseError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(name, 0o644)  # mkstemp's 0600 would hide it from whoever serves the copy
        os.replace(name, path)
    except OSError as exc:
        raise DatabaseError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    finally:
        Path(name).unlink(missing_ok=True)
    return path
