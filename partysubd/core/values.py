"""The value model: what a published message may hold, written down once.

A message is accepted only if it can later be delivered in every form a room
may need: JSON and MessagePack, with and without a cursor, kept in a history
and replayed, and relayed to another daemon through Redis. So a value is
checked once, where it comes in, against the intersection of what every
encoder on those paths carries, and nothing accepted can fail later:

* **containers**: arrays and maps, nested at most ``max_depth`` levels inside
  ``data`` as JSON subscribers get it (bytes are an object there,
  ``{"__bytes": ...}``, so they count as one level) (``server.max_depth``,
  default 32; at most ``MAX_DEPTH_LIMIT``, which leaves room for the envelopes
  around ``data`` under orjson's limit of 254 levels);
* **map keys**: strings (JSON has no other kind);
* **strings**: Unicode text without lone surrogates (UTF-8 cannot carry them;
  both decoders refuse them, and this checks again);
* **integers**: -2**63 to 2**64 - 1, what MessagePack and orjson carry. A JSON
  integer outside that range is read as a double, exactly as ``JSON.parse``
  reads it in a browser;
* **floats**: finite. ``NaN`` and ``Infinity`` are not JSON, and orjson would
  quietly write them as ``null``; ``1e999`` is refused where it is parsed;
* **true, false, null**;
* **bytes**: only from MessagePack; JSON subscribers get ``{"__bytes": base64}``;
* **nothing else**: MessagePack extension types are refused, timestamps are
  read as integer nanoseconds and must fit the integer range.

``check`` is the rule written as code: a total function, any value in, a
reason or None out, walking the value in Python. The door (protocol.py) does
not walk every message: it checks at C speed with what the encoders already
refuse, ``within_depth`` on the JSON it wrote and ``may_hold_nonfinite`` on the
MessagePack, and walks only to name a refusal or to settle a float that looks
non-finite. The tests hold the two ways to the same answer.
"""

from __future__ import annotations

import math
import re
from typing import Any

DEFAULT_MAX_DEPTH = 32
MAX_DEPTH_LIMIT = 200
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1

_SURROGATE = re.compile("[\ud800-\udfff]")
# A JSON string (orjson wrote it: escapes are well formed), unrolled for speed.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_BRACKETS = bytes.maketrans(b"[]{}", b"()()")
# MessagePack float64 (what msgpack-python always writes) whose exponent is all
# ones: an infinity or a NaN. The same bytes inside a string or bytes only make
# it look so; the walk then settles it.
_NONFINITE = re.compile(rb"\xcb[\x7f\xff][\xf0-\xff]")


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (which no UTF-8 encoder can write)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def within_depth(json_text: bytes, levels: int) -> bool:
    """Whether ``json_text`` (valid JSON) nests at most ``levels`` arrays and objects.

    At C speed: strings are cut out, brackets kept, and innermost pairs removed
    once per level; a text that is empty after ``levels`` passes is shallow
    enough. Each pass is linear, and at most ``levels`` run."""
    structure = _JSON_STRING.sub(b"", json_text).translate(_BRACKETS, _NOT_BRACKETS)
    for _ in range(levels):
        if not structure:
            return True
        structure = structure.replace(b"()", b"")
    return not structure


def may_hold_nonfinite(packed: bytes) -> bool:
    """False when the MessagePack ``packed`` surely holds no NaN or infinity."""
    return _NONFINITE.search(packed) is not None


def check(value: Any, max_depth: int) -> str | None:
    """Why ``value`` is outside the model, or None when every encoder can carry it.

    Iterative, so a value nested thousands of levels deep costs a loop, not the
    interpreter's stack; each element is looked at once.
    """
    problem = _scalar(value)
    if problem is not _CONTAINER:
        return problem
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        container, level = stack.pop()
        if level > max_depth:
            return f"data is nested more than {max_depth} levels deep"
        if type(container) is bytes:
            continue  # {"__bytes": ...} for JSON subscribers: its level is counted
        if type(container) is dict:
            for key, item in container.items():
                if type(key) is not str:
                    return f"map keys must be strings, not {describe(key)}"
                if has_surrogate(key):
                    return "a map key holds a lone surrogate (not valid Unicode text)"
                problem = _scalar(item)
                if problem is _CONTAINER:
                    stack.append((item, level + 1))
                elif problem is not None:
                    return problem
        else:
            for item in container:
                problem = _scalar(item)
                if problem is _CONTAINER:
                    stack.append((item, level + 1))
                elif problem is not None:
                    return problem
    return None


_CONTAINER = "container"  # a sentinel: identity, never shown


def _scalar(value: Any) -> str | None:
    """None for a good scalar, ``_CONTAINER`` for a list or dict, else the reason."""
    kind = type(value)
    if kind is str:
        if has_surrogate(value):
            return "a string holds a lone surrogate (not valid Unicode text)"
        return None
    if kind is int:
        if INT_MIN <= value <= INT_MAX:
            return None
        return "an integer is outside the 64-bit range (-2**63 to 2**64-1)"
    if kind is float:
        return None if math.isfinite(value) else "numbers must be finite (no NaN or Infinity)"
    if value is None or kind is bool:
        return None
    if kind is list or kind is dict or kind is bytes:
        return _CONTAINER
    return f"{describe(value)} cannot be carried in every format"


def describe(value: Any) -> str:
    """A value's kind in a client's terms, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    if isinstance(value, bytes | bytearray):
        return "bytes"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a value of type {type(value).__name__}"
