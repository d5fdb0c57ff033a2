"""The timeline command: each version's life in each region, as data, an SVG or an HTML page."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from html import escape as _html_escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from catalog.cli.options import default_format, errors, format_option
from catalog.cli.output import Format, render, visible
from catalog.parse import SCOPES, times

if TYPE_CHECKING:
    from catalog.read.timeline import Mark, Span

COLUMNS = ("framework_name", "version", "region", "first_seen", "removed_at", "end", "images",
           "live_images", "spellings", "gaps", "changes")  # fmt: skip
SUFFIXES = (".svg", ".html")
LIVE, GONE = "#4e79a7", "#a0a0a0"  # bars: still listed, every image removed
# How each kind of mark is drawn: its colour and its legend entry.
MARKS = {"changed": ("#f28e2b", "changed"), "removed": ("#e15759", "image removed"),
         "restored": ("#59a14f", "restored"), "added": ("#1b3a5c", "image added")}  # fmt: skip
SANS = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif"
MONO = "DejaVu Sans Mono, Liberation Mono, Menlo, Consolas, monospace"
ROW, PLOT, PAD, TOP, CHAR = 20, 640, 16, 72, 7.3  # px; CHAR: a monospace character at 12px


@click.command("timeline")
@click.argument("framework", required=False)
@click.option("--accelerator", help="CPU, GPU or another chip type (any case), or any.")
@click.option(
    "--scope",
    type=click.Choice([*SCOPES, "any"], case_sensitive=False),
    help="training (DLC), inference (EAS) or develop (DSW); any: every image.",
)
@click.option("--region", help="Region id, such as cn-hangzhou [default: every region].")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write FILE.svg, the picture, or FILE.html, the picture with a table of its facts.",
)
@format_option
@click.pass_obj
@errors
def timeline_command(
    db: str | None, /, framework: str | None, out: Path | None, fmt: str | None, **filters: Any
) -> None:
    """Each version of FRAMEWORK (default: every framework) in each region: a bar from the
    catalog's first sighting to when its last image left it (removed, or relabelled to another
    version), or to the region's last sync while one is listed, marked where its images
    changed, went or came back; each image counts under the version it had at the time.
    Without --out, print the same facts (--format)."""
    if out is not None and fmt is not None:
        raise click.UsageError("--out writes a picture and --format prints data; give one.")
    if out is not None and out.suffix.lower() not in SUFFIXES:
        raise click.UsageError(f"--out takes a .svg or .html file, not {out.name!r}.")
    from catalog.read.timeline import timeline  # loaded by the command, not by every command

    spans = timeline(
        framework,
        image_scope=filters["scope"],
        accelerator_type=filters["accelerator"],
        region=filters["region"],
        db=db,
    )
    if out is None:
        chosen = Format(fmt) if fmt else default_format()
        whole = chosen in (Format.JSON, Format.NL)  # tables and CSV take a row of text
        render(spans if whole else map(flat, spans), chosen, sys.stdout, None if whole else COLUMNS)
        return
    title = _title(spans, filters)
    text = svg(spans, title) if out.suffix.lower() == ".svg" else html(spans, title)
    _write(out, text)
    click.echo(f"{out}: {len(spans)} bar{'' if len(spans) == 1 else 's'}")


def flat(span: Span, joint: str = "; ") -> dict[str, Any]:
    """A span as one row of text: its gaps as ``FROM/TO`` (ISO 8601's interval), its marks as
    ``TIME KIND IMAGE (FIELDS)``, each ``joint``-joined."""
    row = {name: getattr(span, name) for name in COLUMNS[:-2]}
    gaps = joint.join(f"{start}/{stop}" for start, stop in span.gaps)
    return {**row, "gaps": gaps, "changes": joint.join(map(_said, span.marks))}


def _said(mark: Mark) -> str:
    fields = f" ({', '.join(mark.changed_fields)})" if mark.changed_fields else ""
    return f"{mark.at} {mark.kind} {mark.image_id}{fields}"


def _title(spans: list[Span], filters: dict[str, Any]) -> str:
    names = sorted({span.framework_name for span in spans})
    what = names[0] if len(names) == 1 else "Framework"
    asked = [f"{name} {filters[name]}" for name in ("accelerator", "scope", "region")
             if filters[name]]  # fmt: skip
    return f"{what} images by version and region" + (f" ({', '.join(asked)})" if asked else "")


def _write(out: Path, text: str) -> None:
    """Write ``out`` whole or not at all: a reader never sees half a picture."""
    part = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        handle = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(handle, "wb") as stream:
            stream.write(text.encode("utf-8"))
        os.replace(part, out)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise click.ClickException(f"Cannot write {out}: {exc.strerror or exc}.") from None
    except BaseException:  # Ctrl-C or SIGTERM: no half-written file left behind
        part.unlink(missing_ok=True)
        raise


def _moment(text: str) -> datetime:
    moment = times.parse(text)
    assert moment is not None
    return moment


def _month(index: int) -> datetime:
    return datetime(index // 12, index % 12 + 1, 1)


def _axis(spans: list[Span]) -> tuple[datetime, datetime, list[datetime]]:
    """Whole months around every span, ticked every 1, 2, 3, 6, 12... months (12 ticks at
    most), each tick at a month that step divides."""
    low = min(_moment(span.first_seen) for span in spans)
    high = max(_moment(span.end) for span in spans)
    first, last = low.year * 12 + low.month - 1, high.year * 12 + high.month
    step = next((s for s in (1, 2, 3, 6, 12, 24, 60) if -(-(last - first) // s) <= 12), 120)
    first, last = first - first % step, -(-last // step) * step
    return _month(first), _month(last), [_month(m) for m in range(first, last + 1, step)]


def _n(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _mark(kind: str, x: float, y: float, data: str = "", said: str = "") -> str:
    """One mark's element: a filled dot (changed), a hollow one (added), a cross (removed), a
    triangle (restored); with ``data`` attributes and a tooltip ``said``, if given."""
    colour = MARKS[kind][0]
    if kind == "removed":
        tag, shape = "path", f'd="M{_n(x - 3.5)} {_n(y - 3.5)}l7 7m-7 0l7 -7" fill="none"'
        paint = f'stroke="{colour}" stroke-width="2.2"'
    elif kind == "restored":
        tag, shape = "path", f'd="M{_n(x)} {_n(y - 4.5)}l4.5 8h-9z" fill="{colour}"'
        paint = 'stroke="#ffffff" stroke-width="1"'
    else:
        fill, stroke = ("#ffffff", colour) if kind == "added" else (colour, "#ffffff")
        tag, shape = "circle", f'cx="{_n(x)}" cy="{_n(y)}" r="3.5" fill="{fill}"'
        paint = f'stroke="{stroke}" stroke-width="1.5"'
    head = f"<{tag} {data + ' ' if data else ''}{shape} {paint}"
    return f"{head}><title>{_esc(said)}</title></{tag}>" if said else f"{head}/>"


@dataclass(frozen=True)
class _Frame:
    """Where things go: the label column's width, the axis' first moment, pixels a second."""

    left: float
    start: datetime
    scale: float

    def x(self, moment: datetime | str) -> float:
        when = _moment(moment) if isinstance(moment, str) else moment
        return self.left + (when - self.start).total_seconds() * self.scale


def svg(spans: list[Span], title: str, *, declaration: bool = True) -> str:
    """The picture, self-contained: no script, font file, link or style sheet; the same spans
    give the same bytes."""
    several = len({span.framework_name for span in spans}) > 1
    names = [_short(f"{s.framework_name} {s.version}" if several else s.version) for s in spans]
    column = CHAR * (max(map(len, names)) + 2)
    left = PAD + column + CHAR * max(len(s.region) for s in spans) + 12
    start, stop, ticks = _axis(spans)
    frame = _Frame(left, start, PLOT / (stop - start).total_seconds())
    width, bottom = _n(left + PLOT + 32), TOP + ROW * len(spans)
    height = bottom + 64
    since, until = min(s.first_seen for s in spans)[:10], max(s.end for s in spans)[:10]
    when = f"on {since}" if since == until else f"{since} to {until}"
    note = (
        f"First seen to removal, {when} (UTC); a bar still listed ends at its region's last sync."
    )
    out = ['<?xml version="1.0" encoding="UTF-8"?>'] if declaration else []
    out += [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" font-family="{SANS}" font-size="12">',
        f"<title>{_esc(f'{title}, {when}')}</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{PAD}" y="24" font-size="16" font-weight="bold">{_esc(title)}</text>',
        f'<text x="{PAD}" y="44" fill="#555555">{_esc(note)}</text>',
    ]
    band = 0  # a light band behind every other version
    for row, name in enumerate(names):
        band += row > 0 and name != names[row - 1]
        if band % 2:
            top = TOP + ROW * row
            out.append(f'<rect x="0" y="{top}" width="{width}" height="{ROW}" fill="#f1f4f8"/>')
    yearly = len(ticks) > 1 and (ticks[1] - ticks[0]).days > 300
    for tick in ticks:
        x, grey = _n(frame.x(tick)), "#9a9a9a" if tick.month == 1 else "#dddddd"
        out.append(f'<line x1="{x}" y1="{TOP - 6}" x2="{x}" y2="{bottom}" stroke="{grey}"/>')
        label = f"{tick:%Y}" if yearly else f"{tick:%Y-%m}"
        out.append(
            f'<text x="{x}" y="{TOP - 10}" text-anchor="middle" fill="#444444">{label}</text>'
        )
    for row, (span, name) in enumerate(zip(spans, names, strict=True)):
        y = TOP + ROW * row + ROW / 2
        out.append(
            f'<g><text x="{PAD}" y="{_n(y + 4)}" font-family="{MONO}"><tspan>{_esc(name)}</tspan>'
            f'<tspan x="{_n(PAD + column)}" fill="#555555">{_esc(span.region)}</tspan></text>'
        )
        out += [*_bar(span, frame, y), "</g>"]
    out += _legend(bottom + 28)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _bar(span: Span, frame: _Frame, y: float) -> list[str]:
    """A span's bar, its open end while it is listed, and its marks (one per kind and time)."""
    x0, x1 = frame.x(span.first_seen), max(frame.x(span.end), frame.x(span.first_seen) + 2)
    removed = span.removed_at is not None
    state = f"removed {span.removed_at}" if removed else f"listed at the last sync, {span.end}"
    said = (
        f"{span.framework_name} {span.version} in {span.region}: first seen {span.first_seen}, "
        f"{state}; {span.live_images} of {span.images} images listed"
    )
    out = [
        f"<rect data-framework={_q(span.framework_name)} "
        f"data-version={_q(span.version)} data-region={_q(span.region)} "
        f'data-from="{span.first_seen}" data-to="{span.end}" '
        f'data-removed="{"true" if removed else "false"}" x="{_n(x0)}" y="{_n(y - 5)}" '
        f'width="{_n(x1 - x0)}" height="10" rx="2" fill="{GONE if removed else LIVE}">'
        f"<title>{_esc(said)}</title></rect>"
    ]
    if not removed:  # an open end: the version is still there
        out.append(
            f'<path class="open-end" d="M{_n(x1 + 2)} {_n(y - 5)}l6 5l-6 5z" fill="{LIVE}"/>'
        )
    for start, stop in span.gaps:  # the bar fades while none of its images was listed
        a, b = frame.x(start), frame.x(stop)
        out.append(
            f'<rect class="gap" data-from="{start}" data-to="{stop}" x="{_n(a)}" y="{_n(y - 5)}" '
            f'width="{_n(b - a)}" height="10" fill="#ffffff" fill-opacity="0.75"/>'
        )
    drawn: dict[str, dict[str, list[Mark]]] = {}
    for mark in span.marks:
        drawn.setdefault(mark.at, {}).setdefault(mark.kind, []).append(mark)
    for at, kinds in drawn.items():  # marks of one time side by side, 8 px apart
        for n, (kind, marks) in enumerate(kinds.items()):
            data = f'data-kind="{kind}" data-at="{at}"'
            x = frame.x(at) + 8 * (n - (len(kinds) - 1) / 2)
            out.append(_mark(kind, x, y, data, "; ".join(map(_said, marks))))
    return out


def _legend(y: int) -> list[str]:
    """Two lines: the bars, then the marks."""
    out = [
        f'<rect x="{PAD}" y="{y - 9}" width="18" height="10" rx="2" fill="{LIVE}"/>',
        f'<path d="M{PAD + 20} {y - 9}l6 5l-6 5z" fill="{LIVE}"/>',
        f'<text x="{PAD + 32}" y="{y}">listed (open end: at the region\'s last sync)</text>',
        f'<rect x="{PAD + 360}" y="{y - 9}" width="18" height="10" rx="2" fill="{GONE}"/>',
        f'<text x="{PAD + 384}" y="{y}">every image removed</text>',
        f'<rect x="{PAD + 560}" y="{y - 9}" width="18" height="10" rx="2" fill="{LIVE}"/>',
        f'<rect x="{PAD + 566}" y="{y - 9}" width="12" height="10" fill="#ffffff" '
        'fill-opacity="0.75"/>',
        f'<text x="{PAD + 584}" y="{y}">none listed</text>',
    ]
    x = float(PAD)
    for kind, (_, text) in MARKS.items():
        out.append(_mark(kind, x + 4, y + 16))
        out.append(f'<text x="{_n(x + 14)}" y="{y + 20}">{_esc(text)}</text>')
        x += 14 + 7 * len(text) + 18
    return out


def html(spans: list[Span], title: str) -> str:
    """A page with the picture inline and a table of the same facts; no script."""
    heads = ("Framework", "Version", "Region", "First seen", "Removed", "Bar ends", "Images",
             "Listed now", "Spellings", "None listed", "Changes")  # fmt: skip
    rows = [
        "<tr>"
        + "".join(f"<td>{_cell(value)}</td>" for value in flat(span, "\n").values())
        + "</tr>"
        for span in spans
    ]
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;"
        "margin-top:1.5em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;"
        "vertical-align:top;font-size:13px}svg{max-width:100%;height:auto}</style>",
        "</head>",
        "<body>",
        f"<h1>{_esc(title)}</h1>",
        svg(spans, title, declaration=False).rstrip("\n"),
        "<table>",
        "<thead><tr>" + "".join(f"<th>{_esc(head)}</th>" for head in heads) + "</tr></thead>",
        "<tbody>",
        *rows,
        "</tbody>",
        "</table>",
        "</body>",
        "</html>",
    ]) + "\n"  # fmt: skip


def _cell(value: Any) -> str:
    """A table cell's HTML: a list comma-joined, lines (gaps, marks) broken."""
    if value is None:
        return ""
    text = ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return "<br>".join(_esc(line) for line in text.split("\n"))


def _esc(text: str) -> str:
    """Text for XML and HTML: a control character, or any other that XML may not hold
    (U+FFFE, U+FFFF, a lone surrogate), as an escape."""
    return _html_escape(_NOT_XML.sub(_code, visible(text)), quote=False)


def _q(text: str) -> str:
    """An attribute's value, quoted, its control characters as escapes."""
    return '"' + _html_escape(_NOT_XML.sub(_code, visible(text)), quote=True) + '"'


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _short(text: str, most: int = 40) -> str:
    """A label of at most ``most`` characters, cut in the middle (the bar's title and the
    data attributes keep it whole)."""
    if len(text) <= most:
        return text
    keep = (most - 1) // 2
    return f"{text[:keep]}…{text[-(most - 1 - keep) :]}"


def _code(found: re.Match[str]) -> str:
    return f"\\u{ord(found[0]):04x}"
