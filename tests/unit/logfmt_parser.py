"""A strict logfmt parser for the tests: one line, pairs separated by one space.

key = 1*(any char but space, '=', '"' and controls); value = bare | quoted;
bare = 1*(any char but space, '=', '"' and controls);
quoted = '"' *(any char but '"', '\\' and controls | escape) '"';
escape = \\" \\\\ \\n \\r \\t \\uXXXX. Anything else fails.
"""

from __future__ import annotations

import re

_KEY = r'[^\s="\x00-\x1f]+'
_PAIR = re.compile(
    rf'(?P<key>{_KEY})=(?:(?P<bare>[^\s="\x00-\x1f\x7f]+)|"(?P<quoted>(?:[^"\\\x00-\x1f]|\\["\\nrt]|\\u[0-9a-f]{{4}})*)")'
)
_UNESCAPE = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def parse_logfmt(line: str) -> dict[str, str]:
    assert "\n" not in line, line
    fields: dict[str, str] = {}
    position = 0
    while True:
        match = _PAIR.match(line, position)
        assert match is not None, f"not logfmt at column {position}: {line!r}"
        key = match["key"]
        assert key not in fields, f"duplicate key {key}: {line!r}"
        if match["bare"] is not None:
            fields[key] = match["bare"]
        else:
            fields[key] = re.sub(
                r"\\(u[0-9a-f]{4}|.)",
                lambda m: chr(int(m[1][1:], 16)) if m[1][0] == "u" else _UNESCAPE[m[1]],
                match["quoted"],
            )
        position = match.end()
        if position == len(line):
            return fields
        assert line[position] == " ", f"no single space at column {position}: {line!r}"
        position += 1
