"""Text fit for a terminal: control characters, which a terminal takes as commands, as escapes."""

from __future__ import annotations

import re

# C0 and C1 control characters and DEL (ESC ] 0 ; ... BEL retitles a terminal, ESC [ 2 J
# clears it); the second pattern leaves out the tab and the line breaks.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# What a terminal shows escaped: the control characters, and the bidirectional overrides and
# isolates, which reorder what follows them on the line (a URI or label shown reversed).
_TERMINAL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """``text`` for a terminal or a log: each control character written as an escape (\\t,
    \\n, \\x1b, \\x9b, \\u202e), everything else as it is."""
    return _TERMINAL.sub(_escape, text)


def _escape(found: re.Match[str]) -> str:
    char = found[0]
    code = ord(char)
    return _ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
