"""Client messages in, frames out."""

from __future__ import annotations

import json

import pytest

from partysubd.protocol import (
    ErrorCode,
    ProtocolError,
    Publish,
    Subscribe,
    Variant,
    error_frame,
    message_frame,
    parse_client_message,
    parse_http_publish,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"topic":"a","data":"x"}', Publish("a", "x")),
        ('{"topic":"a","data":null}', Publish("a", None)),
        ('{"topic":"a","data":0}', Publish("a", 0)),
        ('{"topic":"a"}', Publish("a", None, has_data=False)),
        ('{"topic":"a","data":1,"extra":true}', Publish("a", 1)),
        ('{"__topics":["a","b:*"]}', Subscribe(("a", "b:*"))),
        ('{"__topics":[]}', Subscribe(())),
        # __topics wins over topic, as in the original.
        ('{"__topics":["a"],"topic":"b","data":1}', Subscribe(("a",))),
        # Beyond 64 bits a number is a double, as JSON.parse makes it in a browser.
        (
            '{"topic":"n","data":123456789012345678901234567890}',
            Publish("n", 1.2345678901234568e29),
        ),
    ],
)
def test_valid_messages(text: str, expected: object) -> None:
    assert parse_client_message(text) == expected
    assert parse_client_message(text.encode()) == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", ErrorCode.BAD_JSON),
        ("", ErrorCode.BAD_JSON),
        ('{"topic":', ErrorCode.BAD_JSON),
        ("NaN", ErrorCode.BAD_JSON),
        ("null", ErrorCode.BAD_MESSAGE),
        ("[1,2]", ErrorCode.BAD_MESSAGE),
        ('"topic"', ErrorCode.BAD_MESSAGE),
        ("42", ErrorCode.BAD_MESSAGE),
        ('{"data":1}', ErrorCode.BAD_TOPIC),
        ("{}", ErrorCode.BAD_TOPIC),
        ('{"topic":1,"data":1}', ErrorCode.BAD_TOPIC),
        ('{"topic":null,"data":1}', ErrorCode.BAD_TOPIC),
        ('{"topic":"","data":1}', ErrorCode.BAD_TOPIC),
        ('{"__topics":"abc"}', ErrorCode.BAD_TOPICS),
        ('{"__topics":[1]}', ErrorCode.BAD_TOPICS),
        ('{"__topics":null}', ErrorCode.BAD_TOPICS),
    ],
)
def test_bad_messages_become_errors(text: str, code: ErrorCode) -> None:
    result = parse_client_message(text)
    assert isinstance(result, ProtocolError)
    assert result.code is code
    assert result.message


def encode_publish(message: Publish) -> bytes:
    """The JSON payload of the frame plain subscribers get (after the 2-byte header)."""
    frame = message_frame(message, "e:1", Variant.JSON)
    return frame[2:] if frame[1] < 126 else frame[4:]


def test_publish_frame_is_topic_then_data() -> None:
    assert (
        encode_publish(Publish("t", {"b": 1, "a": [1, "x"]}))
        == b'{"topic":"t","data":{"b":1,"a":[1,"x"]}}'
    )
    assert encode_publish(Publish("t", None, has_data=False)) == b'{"topic":"t"}'
    assert encode_publish(Publish("t", "é")) == '{"topic":"t","data":"é"}'.encode()


def test_values_orjson_refuses_still_round_trip() -> None:
    big = 2**70  # only the stdlib encoder takes it
    assert json.loads(encode_publish(Publish("t", big))) == {"topic": "t", "data": big}
    lone = parse_client_message('{"topic":"t","data":"\\ud800"}')
    assert isinstance(lone, Publish)
    assert json.loads(encode_publish(lone)) == {"topic": "t", "data": "\ud800"}


def test_error_frame() -> None:
    frame = error_frame(ProtocolError(ErrorCode.BAD_TOPIC, "nope"))
    assert json.loads(frame[2:]) == {"__error": {"code": "bad_topic", "message": "nope"}}
    limited = error_frame(ProtocolError(ErrorCode.RATE_LIMITED, "slow down", retry_after=0.25))
    assert json.loads(limited[2:])["__error"]["retry_after"] == 0.25


@pytest.mark.parametrize("data", ["", 0, False, None, [], {}])
def test_http_publish_accepts_falsy_data(data: object) -> None:
    body = json.dumps({"topic": "t", "data": data}).encode()
    assert parse_http_publish(body) == Publish("t", data)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "body is empty"),
        (b"   ", "body is empty"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid"),
        (b"[]", "must be a JSON object"),
        (b'{"data":1}', '"topic" must be a non-empty string'),
        (b'{"topic":"","data":1}', '"topic" must be a non-empty string'),
        (b'{"topic":5,"data":1}', '"topic" must be a non-empty string'),
        (b'{"topic":"t"}', '"data" is missing'),
    ],
)
def test_http_publish_reasons(body: bytes, reason: str) -> None:
    result = parse_http_publish(body)
    assert isinstance(result, str)
    assert reason in result
