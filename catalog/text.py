"""Text fit for a terminal: control characters, which a terminal takes as commands, as escapes."""

from __future__ import annotations

import re

# C0 and C1 control characters and DEL (ESC ] 0 ; ... BEL retitles a terminal, ESC [ 2 J
# clears it); the second pattern leaves out the tab and the line breaks.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def visible(text: str) -> str:
    """``text`` for a terminal or a log: each control character written as an escape (\\t,
    \\n, \\x1b, \\x9b), everything else as it is."""
    return CONTROL.sub(_escape, text)


def _escape(found: re.Match[str]) -> str:
    char = found[0]
    return _ESCAPES.get(char) or f"\\x{ord(char):02x}"
