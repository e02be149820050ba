"""Client messages in, frames out: the door every message passes, and what it makes."""

from __future__ import annotations

import json

import msgpack
import pytest

from fakes import message
from partysubd.core.protocol import (
    CURSOR_ROOM,
    ErrorCode,
    MessageLimits,
    ProtocolError,
    Publish,
    Subscribe,
    Variant,
    error_frame,
    message_frame,
    parse_client_message,
    parse_http_publish,
    parse_msgpack_message,
)

LIMITS = MessageLimits()


def parse(text: str) -> object:
    return parse_client_message(text.encode(), LIMITS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"topic":"a","data":"x"}', message("a", "x")),
        ('{"topic":"a","data":null}', message("a", None)),
        ('{"topic":"a","data":0}', message("a", 0)),
        ('{"topic":"a"}', message("a", None, has_data=False)),
        ('{"topic":"a","data":1,"extra":true}', message("a", 1)),
        ('{"__topics":["a","b:*"]}', Subscribe(("a", "b:*"))),
        ('{"__topics":[]}', Subscribe(())),
        # __topics wins over topic, as in the original.
        ('{"__topics":["a"],"topic":"b","data":1}', Subscribe(("a",))),
        # Beyond 64 bits a number is a double, as JSON.parse makes it in a browser.
        (
            '{"topic":"n","data":123456789012345678901234567890}',
            message("n", 1.2345678901234568e29),
        ),
    ],
)
def test_valid_messages(text: str, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", ErrorCode.BAD_JSON),
        ("", ErrorCode.BAD_JSON),
        ('{"topic":', ErrorCode.BAD_JSON),
        ("NaN", ErrorCode.BAD_JSON),
        ('{"topic":"t","data":NaN}', ErrorCode.BAD_JSON),
        ('{"topic":"t","data":Infinity}', ErrorCode.BAD_JSON),
        ('{"topic":"t","data":1e999}', ErrorCode.BAD_JSON),
        ('{"topic":"t","data":"\\ud800"}', ErrorCode.BAD_JSON),  # a lone surrogate
        ("null", ErrorCode.BAD_MESSAGE),
        ("[1,2]", ErrorCode.BAD_MESSAGE),
        ('"topic"', ErrorCode.BAD_MESSAGE),
        ("42", ErrorCode.BAD_MESSAGE),
        ('{"data":1}', ErrorCode.BAD_TOPIC),
        ("{}", ErrorCode.BAD_TOPIC),
        ('{"topic":1,"data":1}', ErrorCode.BAD_TOPIC),
        ('{"topic":null,"data":1}', ErrorCode.BAD_TOPIC),
        ('{"topic":"","data":1}', ErrorCode.BAD_TOPIC),
        ('{"topic":"' + "x" * 257 + '","data":1}', ErrorCode.BAD_TOPIC),
        ('{"__topics":"abc"}', ErrorCode.BAD_TOPICS),
        ('{"__topics":[1]}', ErrorCode.BAD_TOPICS),
        ('{"__topics":null}', ErrorCode.BAD_TOPICS),
        ('{"__token":""}', ErrorCode.BAD_MESSAGE),
        ('{"__token":"é"}', ErrorCode.BAD_MESSAGE),
        ('{"topic":"t","data":1,"idem":""}', ErrorCode.BAD_MESSAGE),
        ('{"topic":"t","data":1,"idem":"' + "k" * 257 + '"}', ErrorCode.BAD_MESSAGE),
        ('{"topic":"t","data":' + "[" * 40 + "]" * 40 + "}", ErrorCode.BAD_VALUE),
        ('{"topic":"t","data":' + "[" * 10_000 + "]" * 10_000 + "}", ErrorCode.BAD_JSON),
    ],
)
def test_bad_messages_become_errors(text: str, code: ErrorCode) -> None:
    result = parse(text)
    assert isinstance(result, ProtocolError)
    assert result.code is code
    assert result.message


def test_json_is_utf8_only() -> None:
    text = '{"topic":"t","data":"é"}'
    for encoding in ("utf-16", "utf-32", "utf-8-sig"):
        result = parse_client_message(text.encode(encoding), LIMITS)
        assert isinstance(result, ProtocolError) and result.code is ErrorCode.BAD_JSON


def test_depth_is_counted_inside_data_and_configurable() -> None:
    deep = '{"topic":"t","data":' + "[" * 32 + "]" * 32 + "}"
    assert isinstance(parse(deep), Publish), "32 levels is the default limit"
    shallow = MessageLimits(max_depth=3)
    assert isinstance(parse_client_message(b'{"topic":"t","data":[[[1]]]}', shallow), Publish)
    refused = parse_client_message(b'{"topic":"t","data":[[[[1]]]]}', shallow)
    assert isinstance(refused, ProtocolError) and "3 levels" in refused.message
    # Brackets inside strings do not make a value deep.
    assert isinstance(parse_client_message(b'{"topic":"t","data":"[[[[[["}', shallow), Publish)


def payload(frame: bytes) -> bytes:
    """A frame's payload (after the 2- or 4-byte header)."""
    return frame[2:] if frame[1] < 126 else frame[4:]


def test_publish_frame_is_topic_then_data() -> None:
    frame = message_frame(message("t", {"b": 1, "a": [1, "x"]}), "e:1", Variant.JSON)
    assert payload(frame) == b'{"topic":"t","data":{"b":1,"a":[1,"x"]}}'
    assert payload(message_frame(message("t", has_data=False), None, Variant.JSON)) == (
        b'{"topic":"t"}'
    )
    assert payload(message_frame(message("t", "é"), None, Variant.JSON)) == (
        '{"topic":"t","data":"é"}'.encode()
    )


def test_every_variant_is_spliced_from_the_door_s_encodings() -> None:
    for data, has in ((1, True), ({"k": [1.5, None]}, True), (None, False)):
        m = message("t", data, has_data=has)
        expected = {"topic": "t", "data": data} if has else {"topic": "t"}
        with_id = {**expected, "id": "abc:7"}
        assert json.loads(payload(message_frame(m, "abc:7", Variant.JSON))) == expected
        assert json.loads(payload(message_frame(m, "abc:7", Variant.JSON_IDS))) == with_id
        assert msgpack.unpackb(payload(message_frame(m, "abc:7", Variant.MSGPACK))) == expected
        assert msgpack.unpackb(payload(message_frame(m, "abc:7", Variant.MSGPACK_IDS))) == with_id


def test_a_message_too_large_in_any_form_is_refused_at_the_door() -> None:
    limits = MessageLimits(max_message_size=1000)
    # Bytes are a third larger in JSON (base64); so refused although small as MessagePack.
    body = msgpack.packb({"topic": "t", "data": b"\x00" * 800})
    refused = parse_msgpack_message(body, limits)
    assert isinstance(refused, ProtocolError) and refused.code is ErrorCode.TOO_LARGE
    assert "as JSON" in refused.message
    # NUL characters are 1 byte in MessagePack and 6 in JSON.
    refused = parse_msgpack_message(msgpack.packb({"topic": "t", "data": "\x00" * 300}), limits)
    assert isinstance(refused, ProtocolError) and refused.code is ErrorCode.TOO_LARGE
    # Floats: "0.5" is 3 bytes of JSON and 9 of MessagePack.
    floats = ("[" + ",".join(["0.5"] * 200) + "]").encode()
    refused = parse_client_message(b'{"topic":"t","data":' + floats + b"}", limits)
    assert isinstance(refused, ProtocolError) and "as MessagePack" in refused.message
    # A message whose largest form fits with its cursor is taken.
    fits = parse_client_message(b'{"topic":"t","data":"' + b"x" * 900 + b'"}', limits)
    assert isinstance(fits, Publish)
    assert max(len(fits.json), len(fits.packed)) + CURSOR_ROOM <= 1000


def test_error_frame() -> None:
    frame = error_frame(ProtocolError(ErrorCode.BAD_TOPIC, "nope"))
    assert json.loads(frame[2:]) == {"__error": {"code": "bad_topic", "message": "nope"}}
    limited = error_frame(ProtocolError(ErrorCode.RATE_LIMITED, "slow down", retry_after=0.25))
    assert json.loads(limited[2:])["__error"]["retry_after"] == 0.25


@pytest.mark.parametrize("data", ["", 0, False, None, [], {}])
def test_http_publish_accepts_falsy_data(data: object) -> None:
    body = json.dumps({"topic": "t", "data": data}).encode()
    assert parse_http_publish(body, "application/json", LIMITS) == message("t", data)


def test_http_publish_in_msgpack_by_content_type() -> None:
    body = msgpack.packb({"topic": "t", "data": b"\x01\x02"})
    for content_type in ("application/msgpack", "application/x-msgpack; q=1"):
        assert parse_http_publish(body, content_type, LIMITS) == message("t", b"\x01\x02")
    refused = parse_http_publish(body, "application/json", LIMITS)
    assert isinstance(refused, ProtocolError) and refused.code is ErrorCode.BAD_JSON


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "body is empty"),
        (b"   ", "body is empty"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"data":1}', '"topic" must be a non-empty string'),
        (b'{"topic":"","data":1}', '"topic" must be a non-empty string'),
        (b'{"topic":5,"data":1}', '"topic" must be a non-empty string'),
        (b'{"topic":"t"}', '"data" is missing'),
    ],
)
def test_http_publish_reasons(body: bytes, reason: str) -> None:
    result = parse_http_publish(body, "", LIMITS)
    assert isinstance(result, ProtocolError)
    assert reason in result.message


def test_msgpack_messages() -> None:
    limits = MessageLimits()
    assert parse_msgpack_message(msgpack.packb({"topic": "t", "data": b"\x00"}), limits) == message(
        "t", b"\x00"
    )
    assert parse_msgpack_message(msgpack.packb({"__topics": ["a"]}), limits) == Subscribe(("a",))
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    timestamp96 = b"\xc7\x0c\xff" + (0).to_bytes(4, "big") + (2**62).to_bytes(8, "big")
    for bad, code in [
        (b"\xc1", ErrorCode.BAD_MSGPACK),
        (msgpack.packb([1]), ErrorCode.BAD_MESSAGE),
        (msgpack.packb({"topic": 1}), ErrorCode.BAD_TOPIC),
        (msgpack.packb(msgpack.ExtType(5, b"x")), ErrorCode.BAD_MSGPACK),
        (msgpack.packb({"topic": "t", "data": float("nan")}), ErrorCode.BAD_VALUE),
        (msgpack.packb({"topic": "t", "data": float("-inf")}), ErrorCode.BAD_VALUE),
        (msgpack.packb({"topic": "t", "data": {b"k": 1}}), ErrorCode.BAD_VALUE),
        (msgpack.packb({"topic": "t", "data": deep}), ErrorCode.BAD_VALUE),
        (b"\x82\xa5topic\xa1t\xa4data" + timestamp96, ErrorCode.BAD_VALUE),
        (b"\x82\xa5topic\xa1t\xa4data\xa3\xed\xa0\x80", ErrorCode.BAD_MSGPACK),  # surrogate
        (b"\x91" * 5000 + b"\x01", ErrorCode.BAD_MSGPACK),
    ]:
        result = parse_msgpack_message(bad, limits)
        assert isinstance(result, ProtocolError) and result.code is code, (bad[:20], result)
