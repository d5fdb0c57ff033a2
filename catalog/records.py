"""ListImages records: validate API JSON into ApiImage values, from pages or import files."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import itemgetter
from pathlib import Path
from typing import Any

from catalog.errors import InputError

# API field -> column name; every field may be missing.
API_FIELDS = {
    "ImageId": "image_id",
    "Name": "name",
    "Description": "description",
    "ImageUri": "uri",
    "Accessibility": "accessibility",
    "WorkspaceId": "workspace_id",
    "UserId": "user_id",
    "ParentUserId": "parent_user_id",
    "GmtCreateTime": "gmt_create_time",
    "GmtModifiedTime": "gmt_modified_time",
    "Size": "size",
    "SourceId": "source_id",
    "SourceType": "source_type",
}
MAX_SHOWN = 5
# json.dumps builds a new encoder on every call that passes options: build the hash's one once.
# Text, numbers and None cannot refer to themselves: skip the check for circular references.
_HASH_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, check_circular=False)
# The API's own form of a time: UTC, to the second or a fraction of one. From the year 1000 on:
# strftime writes earlier years with fewer digits.
_API_TIME_RE = re.compile(r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z")


@dataclass(frozen=True, slots=True)
class ApiImage:
    """One image as the API listed it: its fields by column name and its labels in order."""

    key: str  # ImageId, or "uri:<ImageUri>" when the API gave no id
    fields: Mapping[str, Any] = field(hash=False)
    labels: tuple[tuple[str, str | None], ...] = ()
    content_hash: str = field(default="", compare=False)  # computed once, from the rest

    def __post_init__(self) -> None:
        if not self.content_hash:
            # The encoder takes a dict; parse_image's fields already are one.
            fields = self.fields if type(self.fields) is dict else dict(self.fields)
            labels = sorted(self.labels, key=itemgetter(0))
            payload = _HASH_JSON.encode({"fields": fields, "labels": labels})
            object.__setattr__(self, "content_hash", hashlib.sha256(payload.encode()).hexdigest())

    @property
    def uri(self) -> str | None:
        value = self.fields.get("uri")
        return value if isinstance(value, str) else None


def _text(value: Any, where: str, name: str) -> str | None:
    if value is None:
        return None
    if type(value) is str and value.isascii():  # nearly every value: nothing to check
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(f"{where}: {name} must be a string, not {type(value).__name__}.")
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{where}: {name} is not valid Unicode text.") from None
    return text


def _size(value: Any, where: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        size = int(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{where}: Size must be a number of bytes, not {value!r}.") from None
    if not 0 <= size < 2**63:
        raise InputError(f"{where}: Size {value!r} is out of range.")
    return size


def _time(value: str | None) -> str | None:
    """API times as one sortable form, 2024-01-02T03:04:05.000000Z; other text as given."""
    if not value:
        return value
    if _API_TIME_RE.fullmatch(value):
        # Already UTC: the same text as below without the costly time zone round trip.
        try:
            moment = datetime.fromisoformat(value[:-1])
        except ValueError:
            pass  # 2021-02-30 and the like: left to the general rule below
        else:
            return f"{value[:19]}.{moment.microsecond:06d}Z"
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_image(obj: Any, where: str) -> ApiImage:
    """Validate one element of ``Images``; raises InputError saying where and what."""
    if not isinstance(obj, dict):
        raise InputError(f"{where}: an image must be a JSON object, not {type(obj).__name__}.")
    fields: dict[str, Any] = {}
    for api_name, column in API_FIELDS.items():
        raw = obj.get(api_name)
        if column == "size":
            fields[column] = _size(raw, where)
        elif raw is None or (type(raw) is str and raw.isascii()):
            fields[column] = raw  # nearly every value: what _text would return, without the call
        else:
            fields[column] = _text(raw, where, api_name)
    for column in ("gmt_create_time", "gmt_modified_time"):
        fields[column] = _time(fields[column])
    labels: dict[str, str | None] = {}
    raw_labels = obj.get("Labels") or []
    if not isinstance(raw_labels, list):
        raise InputError(f"{where}: Labels must be a list of {{Key, Value}} objects.")
    for index, label in enumerate(raw_labels):
        key = label.get("Key") if isinstance(label, dict) else None
        if not isinstance(key, str):
            raise InputError(f"{where}: Labels[{index}] has no Key string.")
        value = label.get("Value")
        plain_key = type(key) is str and key.isascii()
        plain_value = value is None or (type(value) is str and value.isascii())
        if not (plain_key and plain_value):  # _text returns plain ASCII text as it is
            key = _text(key, where, f"Labels[{index}].Key") or ""
            value = _text(value, where, f"Labels[{index}].Value")
        # A repeated key keeps its last value, as a dict of labels would.
        key = sys.intern(key)
        # Keys and short values repeat across thousands of images: share one copy of each.
        labels[key] = sys.intern(value) if value is not None and len(value) <= 40 else value
    named = image_key(fields["image_id"], fields["uri"])
    if named is None:
        raise InputError(f"{where}: the image has neither ImageId nor ImageUri.")
    return ApiImage(key=named, fields=fields, labels=tuple(labels.items()))


def image_key(image_id: Any, uri: Any) -> str | None:
    """How the catalog names an image: its ImageId, or "uri:<ImageUri>" when it has none."""
    image_id, uri = _plain(image_id), _plain(uri)
    return image_id or (f"uri:{uri}" if uri else None)


def _plain(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return ""
    return str(value).strip()


def listed_keys(body: Any, where: str) -> tuple[list[str], int | None]:
    """Only the image keys of a ListImages body, and its TotalCount: enough to check which
    images a page lists, at a fraction of the cost of reading them."""
    if not isinstance(body, dict) or not isinstance(body.get("Images") or [], list):
        raise InputError(f'{where}: expected a ListImages response ({{"Images": [...]}}).')
    total = body.get("TotalCount")
    if total is not None and (isinstance(total, bool) or not isinstance(total, int)):
        raise InputError(f"{where}: TotalCount must be an integer, not {total!r}.")
    keys = []
    for index, item in enumerate(body.get("Images") or []):
        key = None
        if isinstance(item, dict):
            key = image_key(item.get("ImageId"), item.get("ImageUri"))
        if key is None:
            raise InputError(f"{where}: Images[{index}] has neither ImageId nor ImageUri.")
        keys.append(key)
    return keys, total


def parse_body(body: Any, where: str) -> tuple[list[ApiImage], int | None]:
    """A ListImages response body, or a bare list of images -> (images, TotalCount)."""
    if isinstance(body, list):
        items, total = body, None
    elif isinstance(body, dict) and "Images" in body:
        items, total = body.get("Images") or [], body.get("TotalCount")
        if not isinstance(items, list):
            raise InputError(f"{where}: Images must be a list.")
        if total is not None and (isinstance(total, bool) or not isinstance(total, int)):
            raise InputError(f"{where}: TotalCount must be an integer, not {total!r}.")
    else:
        raise InputError(
            f'{where}: expected a ListImages response ({{"Images": [...]}}) or a list of images.'
        )
    return [parse_image(item, f"{where}: Images[{i}]") for i, item in enumerate(items)], total


def dedupe(images: Iterable[ApiImage]) -> list[ApiImage]:
    """One record per image key; a later record of the same image wins."""
    by_key: dict[str, ApiImage] = {}
    for image in images:
        by_key.pop(image.key, None)
        by_key[image.key] = image
    return list(by_key.values())


def load_files(paths: Iterable[Path]) -> list[ApiImage]:
    """Read import files as one complete listing; refuse pages that do not add up."""
    images: list[ApiImage] = []
    totals: set[int] = set()
    for path in paths:
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(f"Cannot read {path}: {exc.strerror or exc}.") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} is not valid JSON ({exc}); nothing was imported.") from None
        page, total = parse_body(body, str(path))
        images.extend(page)
        if total is not None:
            totals.add(total)
    unique = dedupe(images)
    if len(totals) > 1:
        shown = ", ".join(str(t) for t in sorted(totals)[:MAX_SHOWN])
        raise InputError(
            f"The files disagree on TotalCount ({shown}); import pages of one listing together."
        )
    if totals and len(unique) != (expected := totals.pop()):
        raise InputError(
            f"The files hold {len(unique)} distinct images but TotalCount says {expected}; "
            "import every page of the listing so that removals are not guessed."
        )
    return unique
