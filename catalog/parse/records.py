"""ListImages records: validate API JSON into ApiImage values, from pages or import files."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import itemgetter
from pathlib import Path
from typing import Any

from catalog.errors import InputError
from catalog.parse import PUBLIC_NAMES as PUBLIC_NAMES
from catalog.parse import times
from catalog.parse.text import CONTROL, CONTROL_BUT_LINES, visible

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
# What one image may hold (issue 13): far above anything PAI lists, whose descriptions and label
# values run to a few hundred characters, and far below what swamps memory or a terminal.
MAX_TEXT = 1 << 20  # characters in one field, label key or label value
MAX_LABELS = 10_000  # labels on one image
MAX_LABEL_TEXT = 16 << 20  # characters in all the label keys and values of one image
MAX_COUNT = 2**63 - 1  # Size and TotalCount: a signed 64-bit integer
MAX_FILE = 512 << 20  # bytes in one import file: a page of 100k images is under 100 MiB
STDIN = "-"  # the import file that is standard input
# A tab or a line break may stand in a description or a label value; no field holds any other
# C0 or C1 control character, or DEL: a terminal would take them as commands.
MULTILINE = ("Description",)
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
            payload = _payload(self.fields, self.labels)
            object.__setattr__(self, "content_hash", hashlib.sha256(payload.encode()).hexdigest())

    @property
    def uri(self) -> str | None:
        value = self.fields.get("uri")
        return value if isinstance(value, str) else None


def _payload(fields: Mapping[str, Any], labels: Iterable[tuple[str, str | None]]) -> str:
    """The JSON text that an image's content hash is taken of."""
    # The encoder takes a dict; parse_image's fields already are one.
    plain = fields if type(fields) is dict else dict(fields)
    return _HASH_JSON.encode({"fields": plain, "labels": sorted(labels, key=itemgetter(0))})


def _shown(value: Any, limit: int = 40) -> str:
    """A value as a message may quote it: control characters escaped, and cut short."""
    if isinstance(value, str):
        quoted = repr(value[:limit])
        return quoted if len(value) <= limit else f"{quoted[:-1]}...{quoted[-1]}"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        try:
            return f"a number of {len(str(abs(value))):,} digits"
        except ValueError:  # past Python's bound on the digits it writes
            return f"a number of more than {sys.get_int_max_str_digits():,} digits"
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return f"a JSON {'object' if isinstance(value, dict) else 'array'}"


def _named(obj: Mapping[str, Any]) -> str:
    """How a message names an image: its ImageId, else its ImageUri."""
    for api_name in ("ImageId", "ImageUri"):
        value = obj.get(api_name)
        if isinstance(value, str) and value.strip():
            return f"image {_shown(value)}"
    return "the image"


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
        raise InputError(f"{where}: Size must be a number of bytes, not {_shown(value)}.") from None
    if not 0 <= size <= MAX_COUNT:
        raise InputError(f"{where}: Size must be from 0 to {MAX_COUNT} bytes, not {_shown(value)}.")
    return size


def _time(value: str | None, obj: Mapping[str, Any], where: str, name: str) -> str | None:
    """API times as one sortable form, 2024-01-02T03:04:05.000000Z; refuses what is no time."""
    if not value:
        return value
    if _API_TIME_RE.fullmatch(value):
        # Already UTC: the same text as below without the costly time zone round trip.
        try:
            moment = datetime.fromisoformat(value[:-1])
        except ValueError:
            pass  # 2021-02-30 and the like: refused below
        else:
            return f"{value[:19]}.{moment.microsecond:06d}Z"
    _check_text(value, obj, where, name)
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if moment.tzinfo is not None:
            moment = moment.astimezone(timezone.utc)  # OverflowError before the year 1
    except (ValueError, OverflowError):
        raise InputError(
            f"{where}: {name} of {_named(obj)} is not a time ({_shown(value)}); give an "
            "ISO 8601 time such as 2024-01-02T03:04:05Z, or leave the field out."
        ) from None
    return times.stored(moment.replace(tzinfo=None))


def _check_text(
    value: str, obj: Mapping[str, Any], where: str, name: str, lines: bool = False
) -> None:
    """Refuse a text that is too long, or that holds a control character other than the tab
    and line breaks that a text of ``lines`` may hold."""
    if len(value) > MAX_TEXT:
        raise InputError(
            f"{where}: {name} of {_named(obj)} is {len(value):,} characters long, over the "
            f"limit of {MAX_TEXT:,}; shorten it or drop the image."
        )
    found = (CONTROL_BUT_LINES if lines else CONTROL).search(value)
    if found is not None:
        allowed = "no field may hold"
        if found[0] in ("\t", "\n", "\r"):
            allowed = "only Description and label values may hold"
        raise InputError(
            f"{where}: {name} of {_named(obj)} holds the control character "
            f"U+{ord(found[0]):04X}, which {allowed}; fix or drop the image."
        )


def _check_image(
    obj: Mapping[str, Any], fields: Mapping[str, Any], labels: Mapping[str, str | None], where: str
) -> None:
    """Every text of an image that may be too long or hold a control character, one by one."""
    for api_name, column in API_FIELDS.items():
        value = fields[column]
        if isinstance(value, str):
            _check_text(value, obj, where, api_name, api_name in MULTILINE)
    total = 0
    for key, value in labels.items():
        _check_text(key, obj, where, f"the key of label {_shown(key)}")
        total += len(key)
        if value is not None:
            _check_text(value, obj, where, f"the value of label {_shown(key)}", lines=True)
            total += len(value)
    if total > MAX_LABEL_TEXT:
        raise InputError(
            f"{where}: the labels of {_named(obj)} hold {total:,} characters, over the limit "
            f"of {MAX_LABEL_TEXT:,}; shorten them or drop the image."
        )


def parse_image(obj: Any, where: str) -> ApiImage:
    """Validate one element of ``Images``; raises InputError saying where and what."""
    if not isinstance(obj, dict):
        raise InputError(f"{where}: an image must be a JSON object, not {type(obj).__name__}.")
    fields: dict[str, Any] = {}
    odd = False  # whether a text that is not plain ASCII holds what is not printable
    for api_name, column in API_FIELDS.items():
        raw = obj.get(api_name)
        if column == "size":
            fields[column] = _size(raw, where)
        elif raw is None or (type(raw) is str and raw.isascii()):
            fields[column] = raw  # nearly every value: what _text would return, without the call
        else:
            fields[column] = text = _text(raw, where, api_name)
            odd = odd or not (text or "").isprintable()
    for column, api_name in (
        ("gmt_create_time", "GmtCreateTime"),
        ("gmt_modified_time", "GmtModifiedTime"),
    ):
        fields[column] = _time(fields[column], obj, where, api_name)
    labels: dict[str, str | None] = {}
    raw_labels = obj.get("Labels")
    if raw_labels is None:
        # Verbose listings give every image its Labels, [] when it has none; without them an
        # official image would be stored as unofficial (issue 13).
        raise InputError(
            f"{where}: {_named(obj)} has no Labels field; read the listing with Verbose=true, "
            "which gives every image its Labels ([] when it has none)."
        )
    if not isinstance(raw_labels, list):
        raise InputError(f"{where}: Labels must be a list of {{Key, Value}} objects.")
    if len(raw_labels) > MAX_LABELS:
        raise InputError(
            f"{where}: {_named(obj)} has {len(raw_labels):,} labels, over the limit of "
            f"{MAX_LABELS:,}; drop labels or the image."
        )
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
            odd = odd or not key.isprintable() or not (value or "").isprintable()
        if not key.strip():
            raise InputError(f"{where}: Labels[{index}] of {_named(obj)} has an empty Key.")
        if key in labels and labels[key] != value:
            # Which one holds (system.official true or false)? Not for the catalog to guess.
            raise InputError(
                f"{where}: {_named(obj)} lists label {_shown(key)} twice with different values "
                f"({_shown(labels[key])} and {_shown(value)}); keep one."
            )
        key = sys.intern(key)
        # Keys and short values repeat across thousands of images: share one copy of each.
        labels[key] = sys.intern(value) if value is not None and len(value) <= 40 else value
    named = image_key(fields["image_id"], fields["uri"])
    if named is None:
        raise InputError(f"{where}: the image has neither ImageId nor ImageUri.")
    pairs = tuple(labels.items())
    payload = _payload(fields, pairs)
    # The hash's JSON escapes each C0 character with a backslash, and plain ASCII text holds
    # no C1 character: a look at it clears nearly every image; the rest are read text by text.
    if odd or "\\" in payload or "\x7f" in payload or len(payload) > MAX_TEXT:
        _check_image(obj, fields, labels, where)
    digest = hashlib.sha256(payload.encode()).hexdigest()
    return ApiImage(key=named, fields=fields, labels=pairs, content_hash=digest)


def image_key(image_id: Any, uri: Any) -> str | None:
    """How the catalog names an image: its ImageId, or "uri:<ImageUri>" when it has none."""
    image_id, uri = _plain(image_id), _plain(uri)
    return image_id or (f"uri:{uri}" if uri else None)


def _plain(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return ""
    return str(value).strip()


def _total(value: Any, where: str) -> int | None:
    """A body's TotalCount: a count the crawl can do arithmetic with, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise InputError(
            f"{where}: TotalCount must be a whole number from 0 to {MAX_COUNT}, "
            f"not {_shown(value)}."
        )
    return value


def listed_keys(body: Any, where: str) -> tuple[list[str], int | None]:
    """Only the image keys of a ListImages body, and its TotalCount: enough to check which
    images a page lists, at a fraction of the cost of reading them."""
    if not isinstance(body, dict) or "Images" not in body:
        raise InputError(f'{where}: expected a ListImages response ({{"Images": [...]}}).')
    total = _total(body.get("TotalCount"), where)
    keys = []
    for index, item in enumerate(_images(body, total, where)):
        key = None
        if isinstance(item, dict):
            key = image_key(item.get("ImageId"), item.get("ImageUri"))
        if key is None:
            raise InputError(f"{where}: Images[{index}] has neither ImageId nor ImageUri.")
        keys.append(key)
    return keys, total


def _images(body: dict[str, Any], total: int | None, where: str) -> list[Any]:
    """A page's Images: a list; null only on an answer that counts no image at all. Any
    other value ({}, "", 0, false) read as an empty page would mark every image removed."""
    items = body["Images"]
    if items is None and total == 0:
        return []
    if not isinstance(items, list):
        raise InputError(f"{where}: Images must be a list, not {_shown(items)}.")
    return items


def parse_body(body: Any, where: str) -> tuple[list[ApiImage], int | None]:
    """A ListImages response body, or a bare list of images -> (images, TotalCount)."""
    if isinstance(body, list):
        items, total = body, None
    elif isinstance(body, dict) and "Images" in body:
        total = _total(body.get("TotalCount"), where)
        items = _images(body, total, where)
    else:
        raise InputError(
            f'{where}: expected a ListImages response ({{"Images": [...]}}) or a list of images.'
        )
    return [parse_image(item, f"{where}: Images[{i}]") for i, item in enumerate(items)], total


def loads(data: str | bytes) -> Any:
    """json.loads for text from outside: every failure is a ValueError whose text says what is
    wrong without quoting the input, including JSON that Python cannot read (arrays nested
    past its recursion limit, numbers past its bound on digits)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("arrays or objects nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except ValueError:  # int("1" * 5000): Python's bound on the digits of a number it reads
        limit = sys.get_int_max_str_digits()
        raise ValueError(f"a number of more than {limit:,} digits") from None


def _read(path: Path) -> str:
    """An import file's text: a regular file of at most MAX_FILE bytes (a device such as
    /dev/zero, or a runaway file, would fill the memory before any other bound applied), or
    standard input for "-", read to at most MAX_FILE bytes too."""
    if str(path) == STDIN:
        data = sys.stdin.buffer.read(MAX_FILE + 1)
    else:
        # Without O_NONBLOCK, opening a FIFO would wait for a writer before any check ran.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags)
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InputError(
                    f"{visible(str(path))} is not a regular file; import saved responses."
                )
            os.set_blocking(fd, True)
            data = handle.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise InputError(
            f"{visible(str(path))} is over {MAX_FILE >> 20} MiB; import a listing's pages as "
            "separate files."
        )
    return data.decode("utf-8")


def load_files(paths: Iterable[Path]) -> list[ApiImage]:
    """Read import files as one complete listing; refuse images listed twice and pages that
    do not add up."""
    images: list[ApiImage] = []
    totals: set[int] = set()
    for path in paths:
        shown = "standard input" if str(path) == STDIN else str(path)
        try:
            body = loads(_read(path))
        except OSError as exc:
            raise InputError(f"Cannot read {shown}: {exc.strerror or exc}.") from None
        except ValueError as exc:
            raise InputError(f"{shown} is not valid JSON ({exc}); nothing was imported.") from None
        page, total = parse_body(body, shown)
        images.extend(page)
        if total is not None:
            totals.add(total)
    keys: set[str] = set()
    repeated: dict[str, None] = {}  # an ordered set: the first ones repeated are named
    for image in images:
        if image.key in keys:
            repeated[image.key] = None
        keys.add(image.key)
    if repeated:
        shown = ", ".join(_shown(key) for key in list(repeated)[:MAX_SHOWN])
        more = f" and {len(repeated) - MAX_SHOWN:,} more" if len(repeated) > MAX_SHOWN else ""
        count = f"{len(repeated):,} images" if len(repeated) > 1 else "an image"
        raise InputError(
            f"The files list {count} more than once ({shown}{more}); keep one record of each "
            "image and import again."
        )
    if len(totals) > 1:
        shown = ", ".join(str(t) for t in sorted(totals)[:MAX_SHOWN])
        raise InputError(
            f"The files disagree on TotalCount ({shown}); import pages of one listing together."
        )
    if totals and len(images) != (expected := totals.pop()):
        raise InputError(
            f"The files hold {len(images)} distinct images but TotalCount says {expected}; "
            "import every page of the listing so that removals are not guessed."
        )
    return images
