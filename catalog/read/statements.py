"""Every statement the read side runs, assembled here and nowhere else: values are always bound
parameters (``:name``); what is put together in text is only the code's own column names and
conditions. The columns of image_version that reads return come from one list."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from catalog.config import DIGEST_SOURCE, LISTING, MOVED_FIELDS
from catalog.parse import PUBLIC_NAMES

if TYPE_CHECKING:
    from catalog.read.filters import Filters

# image_version's columns as an image is read and exported: ImageInfo's fields first, in its
# order, then the catalog's own. Reads call them by PUBLIC_NAMES where the SDK names them.
IMAGE_COLUMNS = (
    "name", "uri", "framework", "framework_version", "accelerator", "python_version", "image_id",
    "region", "cuda_version", "os_version", "scopes", "official", "parse_status",
    "gmt_create_time", "gmt_modified_time", "scope_inferred", "host", "namespace", "repository",
    "tag", "digest", "components", "build_suffix", "parse_reason", "description",
    "accessibility", "size",
)  # fmt: skip
# What retrieve() and its kin read: ImageInfo's fields, and what ranks and dates the answer.
_ANSWER_COLUMNS = (
    "id", *IMAGE_COLUMNS[: IMAGE_COLUMNS.index("gmt_create_time") + 1], "version_key",
    "version_class", "valid_to",
)  # fmt: skip
# What the URI's tag pointed at (image_manifest's newest row for it; at an --as-of time, the
# newest seen by then), called as ImageInfo names it.
_MANIFEST_COLUMNS = (
    "m.digest AS manifest_digest, m.media_type AS manifest_media_type, "
    "m.platforms AS manifest_platforms, m.seen_at AS manifest_seen_at, "
    "m.checked_at AS manifest_checked_at"
)
_ANSWER = ", ".join(f"v.{column}" for column in _ANSWER_COLUMNS) + f", {_MANIFEST_COLUMNS}"


def _manifest(f: Filters, alias: str) -> str:
    """The id of the manifest row the URI of ``v`` points at (at ``f.as_of``, if given)."""
    then = " AND n.seen_at <= :as_of" if f.as_of is not None else ""
    return f"{alias}.id = (SELECT max(n.id) FROM image_manifest n WHERE n.uri = v.uri{then})"


_EXPORT = ", ".join(
    ["v.id AS version_id"]
    + [f"v.{c} AS {PUBLIC_NAMES[c]}" if c in PUBLIC_NAMES else f"v.{c}" for c in IMAGE_COLUMNS]
    + ["m.digest AS manifest_digest", "m.platforms AS platforms", "v.valid_from AS state_since"]
    + ["l.key AS label_key", "l.value AS label_value"]
)
# Newest image first among equal versions; an image without a time after every dated one.
ORDER = "v.version_class DESC, v.version_key DESC, v.gmt_create_time DESC NULLS LAST, v.uri ASC"
# A listing: by framework (those without one last), then as above.
LIST_ORDER = f"v.framework_key ASC NULLS LAST, {ORDER}"
# The labels come in the same statement, as one JSON object per row.
_LABELS_JSON = {
    "sqlite": "(SELECT json_group_object(l.key, l.value) FROM image_label l "
    "WHERE l.version_id = v.id) AS labels_json",
    "postgresql": "(SELECT json_object_agg(l.key, l.value ORDER BY l.key) FROM image_label l "
    "WHERE l.version_id = v.id)::text AS labels_json",
}
Statement = tuple[str, dict[str, Any]]


def where(f: Filters) -> tuple[str, str, dict[str, Any]]:
    """(join, where, params) selecting the image versions ``f`` asks for."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    for column, name in (
        ("framework_key", "framework_key"),
        ("accelerator", "accelerator"),
        ("region", "region"),
    ):
        value = getattr(f, name)
        if value is not None:
            clauses.append(f"v.{column} = :{name}")
            params[name] = value
    for column, name in (("python_version", "python"), ("cuda_version", "cuda")):
        value = getattr(f, name)
        if value is not None:
            # "12" asks for any 12.x; "12.1" for exactly that.
            clauses.append(f"(v.{column} = :{name} OR v.{column} LIKE :{name}_minor)")
            params[name] = value
            params[f"{name}_minor"] = f"{value}.%" if "." not in value else value
    if f.os is not None:
        clauses.append("lower(v.os_version) LIKE :os")
        params["os"] = f.os.replace("%", "").replace("_", "") + "%"
    if f.as_of is not None:
        clauses.append("v.valid_from <= :as_of AND (v.valid_to IS NULL OR v.valid_to > :as_of)")
        params["as_of"] = f.as_of
    elif f.all_states:
        pass  # every state an image ever had: a timeline's
    elif f.include_removed:
        clauses.append("v.is_latest")
    else:
        clauses.append("v.valid_to IS NULL")
    if f.platform is not None:
        # linux/arm64 is linux/arm64 or any of its variants; linux/arm64/v8 only itself.
        clauses.append(
            "EXISTS (SELECT 1 FROM image_manifest p WHERE "
            f"{_manifest(f, 'p')} AND (',' || p.platforms || ',' LIKE :platform ESCAPE '!' "
            "OR ',' || p.platforms || ',' LIKE :platform_variant ESCAPE '!'))"
        )
        literal = f.platform.replace("!", "!!").replace("_", "!_").replace("%", "!%")
        params["platform"] = f"%,{literal},%"
        params["platform_variant"] = (
            f"%,{literal}/%" if f.platform.count("/") == 1 else params["platform"]
        )
    join = ""
    if f.scope is not None:
        join = "JOIN image_scope s ON s.version_id = v.id AND s.scope = :scope"
        params["scope"] = f.scope
    return join, " AND ".join(clauses) or "1 = 1", params


def answers(
    f: Filters,
    dialect: str,
    extra: str = "",
    params: dict[str, Any] | None = None,
    *,
    limit: int | None = None,
    labels: bool = False,
    order: str = ORDER,
) -> Statement:
    """The image versions ``f`` selects (narrowed by ``extra``), ranked by ``order``."""
    join, condition, base = where(f)
    columns = f"{_ANSWER}, {_LABELS_JSON[dialect]}" if labels else _ANSWER
    manifest = f"LEFT JOIN image_manifest m ON {_manifest(f, 'm')}"
    sql = (
        f"SELECT {columns} FROM image_version v {join} {manifest} WHERE {condition} {extra} "
        f"ORDER BY {order}"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql, {**base, **params} if params else base


def distinct(column: str, f: Filters) -> Statement:
    """The values of an image_version column among the images ``f`` selects, sorted."""
    join, condition, params = where(f)
    return (
        f"SELECT DISTINCT v.{column} AS value FROM image_version v {join} WHERE {condition} "
        f"AND v.{column} IS NOT NULL ORDER BY v.{column}",
        params,
    )


def regions_of(f: Filters, extra: str, params: dict[str, Any]) -> Statement:
    """The regions (with versions) of the image versions ``f`` and ``extra`` select."""
    join, condition, base = where(f)
    return (
        f"SELECT DISTINCT v.region, v.framework_version FROM image_version v {join} "
        f"WHERE {condition} {extra}",
        {**base, **params},
    )


def versions_of(f: Filters) -> Statement:
    """Each version spelling of the images ``f`` selects, by region and accelerator, with the
    time it was first seen."""
    join, condition, params = where(f)
    return (
        "SELECT v.framework_version AS text, v.version_key AS key, v.region, v.accelerator, "
        f"min(v.valid_from) AS first FROM image_version v {join} WHERE {condition} "
        "AND v.framework_version IS NOT NULL "
        "GROUP BY v.framework_version, v.version_key, v.region, v.accelerator",
        params,
    )


def export(f: Filters) -> Statement:
    """Every image version ``f`` selects, one row per label, by URI."""
    _, condition, params = where(f)
    return (
        f"SELECT {_EXPORT} FROM image_version v "
        f"LEFT JOIN image_manifest m ON {_manifest(f, 'm')} "
        f"LEFT JOIN image_label l ON l.version_id = v.id WHERE {condition} "
        "ORDER BY (v.uri IS NULL), v.uri, v.region, v.image_id, v.id, l.key",
        params,
    )


REGIONS = f"""SELECT r.region,
    (SELECT count(*) FROM image_version v WHERE v.region = r.region AND v.valid_to IS NULL)
    AS images,
    (SELECT count(*) FROM image i WHERE i.region = r.region AND i.removed_run_id IS NOT NULL)
    AS removed,
    (SELECT count(*) FROM image_version v WHERE v.region = r.region AND v.valid_to IS NULL
        AND v.accelerator IS NULL) AS no_accelerator,
    (SELECT count(*) FROM image_version v WHERE v.region = r.region AND v.valid_to IS NULL
        AND NOT EXISTS (SELECT 1 FROM image_scope s WHERE s.version_id = v.id)) AS no_scope,
    (SELECT max(s.finished_at) FROM sync_run s WHERE s.region = r.region AND s.status = 'ok'
        AND s.{LISTING})
    AS last_sync,
    (SELECT s.status FROM sync_run s WHERE s.region = r.region AND s.{LISTING}
        ORDER BY s.id DESC LIMIT 1)
    AS last_status
FROM (SELECT DISTINCT region FROM sync_run) r ORDER BY r.region"""
RUN_REGIONS = "SELECT DISTINCT region FROM sync_run"
REVISION = "SELECT version_num FROM alembic_version"
TABLES = "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
FIRST_SYNC = f"SELECT min(started_at) FROM sync_run WHERE status = 'ok' AND {LISTING}"
LAST_SYNC = f"SELECT max(finished_at) FROM sync_run WHERE status = 'ok' AND {LISTING}"
LAST_SYNCS = f"""SELECT region, max(CASE WHEN status = 'ok' THEN finished_at END) AS last_sync
FROM sync_run WHERE {LISTING} GROUP BY region"""
# Each region's last successful digests run: when its pins were last checked.
LAST_DIGESTS = f"""SELECT region, max(finished_at) AS last_digests FROM sync_run
WHERE status = 'ok' AND source = '{DIGEST_SOURCE}' GROUP BY region"""
CURRENT_IMAGES = "SELECT region, image_id FROM image_version WHERE valid_to IS NULL"
CURRENT_COUNT = "SELECT count(*) FROM image_version WHERE valid_to IS NULL"
_RUN_COLUMNS = """id, region, source, status, started_at, finished_at, pages, requests, retries,
    seen, added, changed, removed, restored, error, detail"""
# Conditions a run listing may combine.
_RUN_WHERE = {
    "id": "id = :id",
    "region": "region = :region",
    "status": "status = :status",
    "before": "id < :before",
    "after": "id > :after",
}


def runs(limit: int | None = None, *, listings: bool = False, **conditions: Any) -> Statement:
    """Runs newest first, narrowed by the conditions whose values are not None; with
    ``listings``, only runs that listed images (no registry checks)."""
    params = {name: value for name, value in conditions.items() if value is not None}
    sql = f"SELECT {_RUN_COLUMNS} FROM sync_run WHERE {LISTING if listings else '1 = 1'}"
    sql += "".join(f" AND {_RUN_WHERE[name]}" for name in params) + " ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit
    return sql, params


def state(columns: tuple[str, ...], region: str, run_id: int) -> Statement:
    """The image versions that made up a region's catalog as it stood after run ``run_id``."""
    return (
        "SELECT v.id, v.image_pk, v.image_id, v.uri AS image_uri, v.framework AS framework_name, "
        f"v.framework_version, {', '.join(f'v.{name}' for name in columns)} "
        "FROM image_version v WHERE v.region = :region AND v.valid_from_run_id <= :run "
        "AND (v.valid_to_run_id IS NULL OR v.valid_to_run_id > :run)",
        {"region": region, "run": run_id},
    )


def changed_labels(region: str, a: int, b: int) -> Statement:
    """Labels of the versions valid at run a or run b; those valid all along cannot differ."""
    return (
        "SELECT l.version_id, l.key, l.value FROM image_label l "
        "JOIN image_version v ON v.id = l.version_id "
        "WHERE v.region = :region AND v.valid_from_run_id <= :b "
        "AND (v.valid_to_run_id IS NULL OR v.valid_to_run_id > :a) "
        "AND NOT (v.valid_from_run_id <= :a "
        "AND (v.valid_to_run_id IS NULL OR v.valid_to_run_id > :b))",
        {"region": region, "a": a, "b": b},
    )


def events_of(needle: str, vpc: str, public: str) -> Statement:
    """Every event of the image with this URI (in either host form) or ImageId, oldest first."""
    return (
        "SELECT e.event_id, e.kind, e.run_id, e.region, e.run_started_at, e.image_id, "
        "e.image_uri, e.framework_name, e.framework_version, e.changed_fields, "
        # A moved tag's event: the digest the URI was seen at by then (each region's run of
        # one digests job starts at the same time; the manifest is dated by it).
        "CASE WHEN e.changed_fields = :moved THEN (SELECT m.digest FROM image_manifest m "
        "WHERE m.uri = e.image_uri AND m.seen_at <= e.run_started_at ORDER BY m.id DESC LIMIT 1) "
        "END AS manifest_digest FROM v_image_event e WHERE e.image_pk IN "
        "(SELECT v.image_pk FROM image_version v "
        "WHERE v.uri IN (:needle, :vpc, :public) OR v.image_id = :needle) ORDER BY event_id",
        {"needle": needle, "vpc": vpc, "public": public, "moved": MOVED_FIELDS},
    )


RUN_EXISTS = "SELECT 1 FROM sync_run WHERE id = :run"


def since(run: int) -> Statement:
    """The image versions current now that a run after ``run`` wrote (added, changed or
    restored), and those whose URI's tag moved to another digest since."""
    return (
        "SELECT image_id, region FROM image_version WHERE valid_to IS NULL AND "
        "(valid_from_run_id > :run OR image_pk IN (SELECT e.image_pk FROM image_event e "
        "WHERE e.run_id > :run AND e.changed_fields = :moved))",
        {"run": run, "moved": MOVED_FIELDS},
    )


def _timeline_rows(f: Filters) -> tuple[str, dict[str, Any]]:
    """(sql, params) of the image_version rows of a timeline: every state ``f`` selects
    (``f.all_states``) that names a version."""
    join, condition, params = where(f)
    sql = f"FROM image_version v {join} WHERE {condition} AND v.framework_version IS NOT NULL"
    return sql, params


def timeline_states(f: Filters) -> Statement:
    """The states of a timeline: each with its image, version, and when it was valid (to
    empty: still current)."""
    rows, params = _timeline_rows(f)
    return (
        "SELECT v.id, v.image_pk, v.image_id, v.region, v.framework, v.framework_key, "
        "v.framework_version AS text, v.valid_from AS valid_from, v.valid_to AS valid_to "
        f"{rows} ORDER BY v.image_pk, v.id",
        params,
    )


def timeline_events(f: Filters) -> Statement:
    """Every event of the states of a timeline, with the start of the run that saw it."""
    rows, params = _timeline_rows(f)
    return (
        "SELECT e.version_id, e.image_pk, e.kind, e.changed_fields, r.started_at AS at "
        "FROM image_event e JOIN sync_run r ON r.id = e.run_id "
        f"WHERE e.version_id IN (SELECT v.id {rows}) ORDER BY e.id",
        params,
    )


# Each region's last successful listing (a digests run lists nothing), as states date it.
LAST_LISTINGS = f"""SELECT region, max(started_at) AS last_listing FROM sync_run
WHERE status = 'ok' AND {LISTING} GROUP BY region"""
