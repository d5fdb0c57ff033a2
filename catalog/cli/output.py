"""Renderers: one per output format, rows streamed to a text stream."""

from __future__ import annotations

import csv
import dataclasses
import enum
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from catalog.parse.text import CONTROL_BUT_LINES
from catalog.parse.text import visible as visible  # what the CLI prints outside a table, too

# Sync and import refuse control characters, but an older catalog or a hand-edited file may
# hold them, so text output shows them as escapes (text.visible).
# JSON escapes C0 itself; DEL and C1 it writes as they are.
_JSON_RAW = re.compile(r"[\x7f-\x9f]")


class Format(str, enum.Enum):
    TABLE = "table"
    JSON = "json"
    NL = "nl"
    CSV = "csv"


def as_dict(item: Any) -> dict[str, Any]:
    """A row as a plain dict: dataclasses and mappings both work."""
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return {f.name: _plain(getattr(item, f.name)) for f in dataclasses.fields(item)}
    return {key: _plain(value) for key, value in dict(item).items()}


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()  # an SQL BLOB, as SQLite's hex() writes it
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return as_dict(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _json_line(row: Any) -> str:
    """One row as JSON, with DEL and C1 characters escaped as C0 ones are, and a number JSON
    has no word for (NaN, Infinity: an SQL result may hold them) as a string."""
    try:
        text = json.dumps(row, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(row), ensure_ascii=False, default=str)
    if text.isascii() and "\x7f" not in text:
        return text
    return _JSON_RAW.sub(lambda found: f"\\u{ord(found[0]):04x}", text)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        # A list of records (info's regions) as JSON, never as Python's repr; a list of names
        # comma-joined.
        if isinstance(value, dict) or any(isinstance(item, (dict, list)) for item in value):
            return json.dumps(value, ensure_ascii=False)
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _cell(value: Any) -> str:
    """A table cell: on one line, with no control character."""
    return visible(_text(value))


_LONE_CR = re.compile(r"\r(?!\n)")


def _csv_cell(value: Any) -> str:
    """A CSV field: quoting carries tabs and line breaks; no other control character, nor a
    carriage return but one that ends a line (alone, it would let text overwrite itself on
    a terminal). Booleans as JSON writes them, true and false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = CONTROL_BUT_LINES.sub(lambda found: visible(found[0]), _text(value))
    return _LONE_CR.sub(r"\\r", text) if "\r" in text else text


def render(
    rows: Iterable[Any], fmt: Format, out: TextIO, columns: Sequence[str] | None = None
) -> int:
    """Write ``rows`` in ``fmt``; only ``columns`` (all fields if None). Returns the row count."""
    dicts = (as_dict(row) for row in rows)
    if columns is not None:
        dicts = ({name: row.get(name) for name in columns} for row in dicts)
    if fmt is Format.JSON:
        return _json(dicts, out)
    if fmt is Format.NL:
        count = 0
        for row in dicts:
            count += 1
            out.write(_json_line(row) + "\n")
        return count
    if fmt is Format.CSV:
        return _csv(dicts, out, columns)
    return _table(list(dicts), out, columns)


def _json(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    count = 0
    out.write("[")
    for count, row in enumerate(rows, 1):
        out.write(("," if count > 1 else "") + "\n  " + _json_line(row))
    out.write("\n]\n" if count else "]\n")
    return count


def _csv(rows: Iterable[dict[str, Any]], out: TextIO, columns: Sequence[str] | None) -> int:
    writer = csv.writer(out, lineterminator="\n")
    names: list[str] | None = list(columns) if columns is not None else None
    if names is not None:
        writer.writerow([_csv_cell(name) for name in names])
    count = 0
    for row in rows:
        count += 1
        if names is None:
            names = list(row)
            writer.writerow([_csv_cell(name) for name in names])
        writer.writerow([_csv_cell(row.get(name)) for name in names])
    return count


# The width tables fit, in characters (the terminal's, set by the CLI); None: no limit.
TABLE_WIDTH: list[int | None] = [None]
_GAP = 2  # spaces between columns
_NARROWEST = 20  # a column is never cut below this: a time (2026-11-28T00:00:00Z) stays whole
_WHOLE = ("image_uri", "image_id")  # never cut: what a reader copies to pull or to look up


def _table(rows: list[dict[str, Any]], out: TextIO, columns: Sequence[str] | None) -> int:
    names = list(columns or (rows[0] if rows else []))
    if not names:
        return 0
    cells = [[_cell(row.get(name)) for name in names] for row in rows]
    heads = [_cell(name) for name in names]
    widths = [max([len(head), *(len(line[i]) for line in cells)]) for i, head in enumerate(heads)]
    if TABLE_WIDTH[0] is not None:
        # A column keeps its heading whole, and at least _NARROWEST characters.
        floors = [
            w if h in _WHOLE else min(w, max(len(h), _NARROWEST))
            for w, h in zip(widths, heads, strict=True)
        ]
        if sum(floors) + _GAP * (len(floors) - 1) > TABLE_WIDTH[0]:
            return _expanded(heads, cells, out)
        widths = _fitted(widths, floors, TABLE_WIDTH[0])
        cells = [[_cut(c, w) for c, w in zip(line, widths, strict=True)] for line in cells]
    out.write("  ".join(n.ljust(w) for n, w in zip(heads, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for line in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n")
    return len(rows)


def _expanded(heads: list[str], cells: list[list[str]], out: TextIO) -> int:
    """A table too wide for the terminal even with its long values cut, as psql's expanded
    display prints one: a block of ``field | value`` lines per row, values whole."""
    width = max(len(head) for head in heads)
    for number, line in enumerate(cells, 1):
        out.write(f"-[ {number} ]-\n")
        for head, cell in zip(heads, line, strict=True):
            out.write(f"{head.ljust(width)} | {cell}".rstrip() + "\n")
    return len(cells)


def _fitted(widths: list[int], floors: list[int], total: int) -> list[int]:
    """Column widths that fit ``total`` characters, taken from the widest column first (a
    long URI), none below its floor; as they are when they fit."""
    widths = list(widths)
    while (excess := sum(widths) + _GAP * (len(widths) - 1) - total) > 0:
        above = [i for i, w in enumerate(widths) if w > floors[i]]
        if not above:
            break  # it cannot fit: the lines run over
        widest = max(above, key=widths.__getitem__)
        others = max([floors[widest], *(w for i, w in enumerate(widths) if i != widest)])
        widths[widest] -= min(excess, max(widths[widest] - others, 1))
    return widths


def _cut(text: str, width: int) -> str:
    """``text`` in ``width`` characters, a middle part replaced by "…" (a URI keeps the start
    of its registry and the end of its tag)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 3  # more of the end: a URI's repository and tag
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def render_one(item: Any, fmt: Format, out: TextIO) -> None:
    """One record in ``fmt``: a JSON object (not an array of one), a CSV header and row, or
    aligned ``field: value`` lines for a table."""
    if fmt is Format.TABLE:
        render_record(item, out)
    elif fmt is Format.CSV:
        _csv([as_dict(item)], out, None)
    else:
        out.write(_json_line(as_dict(item)) + "\n")


def render_record(item: Any, out: TextIO) -> None:
    """One record as aligned ``field: value`` lines (labels one per line)."""
    row = as_dict(item)
    width = max(len(key) for key in row)
    for key, value in row.items():
        if isinstance(value, dict):
            out.write(f"{key.ljust(width)}:\n")
            for label, label_value in value.items():
                out.write(f"  {visible(str(label))} = {_cell(label_value)}\n")
        else:
            out.write(f"{key.ljust(width)}: {_cell(value)}\n")
