"""Where each key is written: tomllib gives values but no positions.

A line scan recovers them for the keys people write one per line, which is
what error messages need; a key it cannot place is reported at its table's
line, or with the file alone.
"""

from __future__ import annotations

import re

from .issues import KeyPath

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_ASSIGN = re.compile(rf"^\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")


def key_lines(text: str) -> dict[KeyPath, int]:
    """Line of every table header and key assignment, by path (array entries by index)."""
    lines: dict[KeyPath, int] = {}
    array_counts: dict[tuple[str, ...], int] = {}
    table: KeyPath = ()
    in_multiline_string = False
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.count('"""') % 2 or raw.count("'''") % 2:
            in_multiline_string = not in_multiline_string
            if not in_multiline_string:
                continue
        if in_multiline_string:
            continue
        header = _HEADER.match(raw)
        if header:
            names = tuple(_split_key(header.group(2)))
            if header.group(1) == "[[":
                index = array_counts.get(names, -1) + 1
                array_counts[names] = index
                table = (*_resolve(names, array_counts), index)
            else:
                table = _resolve(names, array_counts)
            lines.setdefault(table, number)
            continue
        assign = _ASSIGN.match(raw)
        if assign:
            lines.setdefault((*table, *_split_key(assign.group(1))), number)
    return lines


def _split_key(dotted: str) -> list[str]:
    parts = re.findall(r"""(?:"[^"]*"|'[^']*'|[^.]+)""", dotted)
    return [part.strip().strip("\"'") for part in parts]


def _resolve(names: tuple[str, ...], array_counts: dict[tuple[str, ...], int]) -> KeyPath:
    """Insert the current index after each array-of-tables name in a header path."""
    path: list[str | int] = []
    for i, name in enumerate(names):
        path.append(name)
        prefix = names[: i + 1]
        if prefix in array_counts and i < len(names) - 1:
            path.append(array_counts[prefix])
    return tuple(path)
