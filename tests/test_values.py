"""The value model: one check, and every encoder on the path agrees with it."""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from partysubd.core import values
from partysubd.core.protocol import (
    MessageLimits,
    ProtocolError,
    Publish,
    dumps,
    make_publish,
    parse_client_message,
)

# Everything a decoder (or a bug) could hand the door, the awkward parts included.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
    | st.binary(max_size=8)
)
keys = st.text(max_size=4) | st.integers(0, 3) | st.binary(max_size=2)
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)


def depth(value: Any) -> int:
    """The reference: levels of containers, recursively, as JSON subscribers get them
    (bytes are an object there, {"__bytes": ...})."""
    if isinstance(value, bytes):
        return 1
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def reference(value: Any, max_depth: int) -> bool:
    """The model written the slow, obvious way."""
    if depth(value) > max_depth:
        return False

    def ok(v: Any) -> bool:
        if isinstance(v, bool) or v is None or isinstance(v, bytes):
            return True
        if isinstance(v, int):
            return values.INT_MIN <= v <= values.INT_MAX
        if isinstance(v, float):
            return math.isfinite(v)
        if isinstance(v, str):
            return not any(0xD800 <= ord(c) <= 0xDFFF for c in v)
        if isinstance(v, list):
            return all(ok(i) for i in v)
        if isinstance(v, dict):
            return all(isinstance(k, str) and ok(k) and ok(i) for k, i in v.items())
        return False

    return ok(value)


@settings(max_examples=500)
@given(anything, st.integers(1, 4))
def test_check_agrees_with_the_reference(value: Any, max_depth: int) -> None:
    assert (values.check(value, max_depth) is None) == reference(value, max_depth)


def _refuse_constant(name: str) -> Any:
    raise AssertionError(f"{name} in the JSON")


@settings(max_examples=500)
@given(anything)
@example("Infinity")
@example({"NaN": ["-Infinity"]})
def test_what_the_model_accepts_every_encoder_carries(value: Any) -> None:
    if values.check(value, values.DEFAULT_MAX_DEPTH) is not None:
        return
    packed = msgpack.packb(value)
    assert msgpack.unpackb(packed, raw=False, strict_map_key=False) == value
    as_json = orjson.loads(dumps(value))
    # No NaN or Infinity token (a string may well say "Infinity"): the strict parser
    # of the standard library is told to refuse them.
    json.loads(dumps(value), parse_constant=_refuse_constant)
    if not _has_bytes(value):
        assert as_json == value


def _has_bytes(value: Any) -> bool:
    if isinstance(value, bytes):
        return True
    if isinstance(value, list):
        return any(_has_bytes(v) for v in value)
    if isinstance(value, dict):
        return any(_has_bytes(v) for v in value.values())
    return False


@settings(max_examples=1000)
@given(anything, st.integers(1, 4))
def test_the_door_s_fast_checks_agree_with_the_walk(value: Any, max_depth: int) -> None:
    """The door checks on what the encoders wrote, at C speed; the walk is the rule."""
    limits = MessageLimits(max_message_size=1 << 30, max_depth=max_depth)
    made = make_publish("t", value, limits)
    assert isinstance(made, Publish) == (values.check(value, max_depth) is None), made


def test_a_float_that_only_looks_non_finite_is_taken() -> None:
    """Bytes that read like a MessagePack infinity make the door walk, not refuse."""
    looks = b"\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00"
    assert values.may_hold_nonfinite(make_publish("t", looks, MessageLimits()).packed)  # type: ignore[union-attr]
    assert isinstance(make_publish("t", [looks, 1.5], MessageLimits()), Publish)
    refused = make_publish("t", [looks, float("inf")], MessageLimits())
    assert isinstance(refused, ProtocolError) and "finite" in refused.message


@settings(max_examples=300)
@given(anything, anything, st.none() | st.text(max_size=5) | st.integers())
def test_the_door_is_total(topic: Any, data: Any, idem: Any) -> None:
    made = make_publish(topic, data, MessageLimits(), idem=idem)
    assert isinstance(made, Publish | ProtocolError)


def test_deep_values_cost_a_loop_not_the_stack() -> None:
    value: Any = 1
    for _ in range(100_000):
        value = [value]
    assert "nested more than" in str(values.check(value, 32))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=30,
)


@settings(max_examples=500)
@given(json_values, st.integers(1, 6))
def test_the_json_shortcut_is_sound(data: Any, max_depth: int) -> None:
    """Skipping the walk for JSON with few brackets never lets a bad value in."""
    text = json.dumps({"topic": "t", "data": data}, ensure_ascii=False).encode()
    result = parse_client_message(text, MessageLimits(max_depth=max_depth))
    decoded = orjson.loads(text)["data"]
    assert isinstance(result, Publish) == (values.check(decoded, max_depth) is None)
