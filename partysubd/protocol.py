"""The partysub message protocol: what clients send, what we send back.

Pure functions over text and bytes. A frame the client got wrong never becomes
a publish: it becomes a :class:`ProtocolError`, which the session turns into
an ``{"__error": {...}}`` frame for the sender alone.

Two formats share one message model: JSON text frames (what partysocket
sends, the default) and MessagePack binary frames (``format=msgpack``), which
can carry bytes. Subscribers may also ask for each message's cursor
(``ids=1``). So one message has up to four encodings, its *variants*; each is
made at most once per publish, only if a subscriber needs it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

import msgpack
import orjson

from .frames import binary_frame, text_frame


class ErrorCode(StrEnum):
    """Codes of ``__error`` frames; documented in docs/protocol.md."""

    BAD_JSON = "bad_json"
    BAD_MSGPACK = "bad_msgpack"
    BAD_MESSAGE = "bad_message"
    BAD_TOPIC = "bad_topic"
    BAD_TOPICS = "bad_topics"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN = "forbidden"
    UNAUTHORIZED = "unauthorized"


class Variant(IntEnum):
    """How a subscriber wants its frames: format, and whether cursors are included."""

    JSON = 0
    JSON_IDS = 1
    MSGPACK = 2
    MSGPACK_IDS = 3

    @classmethod
    def of(cls, msgpack_format: bool, ids: bool) -> Variant:
        return cls(2 * msgpack_format + ids)

    @property
    def msgpack(self) -> bool:
        return self >= Variant.MSGPACK


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    data: Any
    has_data: bool = True
    idem: str | None = None  # idempotency key: a repeat is not delivered again


@dataclass(frozen=True, slots=True)
class Subscribe:
    patterns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """``{"__token": "<jwt>"}``: a fresh token before the current one expires."""

    token: str


@dataclass(frozen=True, slots=True)
class ProtocolError:
    code: ErrorCode
    message: str
    retry_after: float | None = None


ClientMessage = Publish | Subscribe | RefreshToken | ProtocolError

BYTES_MARKER = "__bytes"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: str | bytes) -> Any:
    """Parse JSON; orjson for speed, the stdlib for what orjson refuses but JSON allows.

    orjson rejects escaped lone surrogates (``"\\ud800"``), which are valid
    JSON; a client that sends them must not get an error. Integers beyond 64
    bits become doubles, exactly as JSON.parse makes them in the browser.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text, parse_constant=_reject_constant)


def _bytes_for_json(value: Any) -> Any:
    """What JSON cannot carry (bytes from a MessagePack publisher), in a documented form."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {BYTES_MARKER: base64.b64encode(value).decode("ascii")}
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(value: Any) -> bytes:
    """Compact JSON bytes, keys in insertion order (so ``topic`` comes first)."""
    try:
        return orjson.dumps(value, default=_bytes_for_json, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        # Integers beyond 64 bits, lone surrogates, odd map keys from MessagePack.
        return json.dumps(
            value, separators=(",", ":"), default=_bytes_for_json, skipkeys=True
        ).encode()


def interpret(message: Any, describe: str) -> ClientMessage:
    """Classify one decoded client message (from either format)."""
    if not isinstance(message, dict):
        return ProtocolError(
            ErrorCode.BAD_MESSAGE,
            f'message must be {describe} like {{"topic": ..., "data": ...}}, '
            f"not {_json_type(message)}",
        )
    if "__topics" in message:
        return parse_topics(message["__topics"])
    if "__token" in message:
        token = message["__token"]
        if not isinstance(token, str) or not token:
            return ProtocolError(ErrorCode.BAD_MESSAGE, '"__token" must be a non-empty string')
        return RefreshToken(token)
    if "topic" not in message:
        return ProtocolError(
            ErrorCode.BAD_TOPIC, 'message has no "topic" (to publish) or "__topics" (to subscribe)'
        )
    topic = message["topic"]
    if not isinstance(topic, str) or not topic:
        return ProtocolError(
            ErrorCode.BAD_TOPIC, f'"topic" must be a non-empty string, not {_json_type(topic)}'
        )
    idem = message.get("idem")
    if idem is not None and (not isinstance(idem, str) or not idem):
        return ProtocolError(
            ErrorCode.BAD_MESSAGE, f'"idem" must be a non-empty string, not {_json_type(idem)}'
        )
    if "data" in message:
        return Publish(topic, message["data"], idem=idem)
    return Publish(topic, None, has_data=False, idem=idem)


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Classify one WebSocket text message (JSON) from a client."""
    try:
        message = loads(text)
    except ValueError as exc:
        return ProtocolError(ErrorCode.BAD_JSON, f"message is not valid JSON: {exc}")
    return interpret(message, "a JSON object")


def parse_msgpack_message(payload: bytes) -> ClientMessage:
    """Classify one WebSocket binary message (MessagePack) from a client."""
    try:
        # Timestamps as integer nanoseconds and no extension types: only
        # values that both formats can carry on.
        message = msgpack.unpackb(payload, raw=False, timestamp=2, ext_hook=_no_extensions)
    except (ValueError, msgpack.UnpackException, msgpack.ExtraData) as exc:
        return ProtocolError(ErrorCode.BAD_MSGPACK, f"message is not valid MessagePack: {exc}")
    return interpret(message, "a MessagePack map")


def _no_extensions(code: int, data: bytes) -> Any:
    raise ValueError(f"extension type {code} is not supported")


def parse_topics(value: Any) -> Subscribe | ProtocolError:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        return ProtocolError(
            ErrorCode.BAD_TOPICS, f'"__topics" must be a list of strings, not {_json_type(value)}'
        )
    return Subscribe(tuple(value))


def parse_http_publish(body: bytes) -> Publish | str:
    """Validate an HTTP publish body; a string is the reason it was refused."""
    if not body.strip():
        return 'body is empty; send {"topic": "...", "data": ...}'
    try:
        message = loads(body)
    except ValueError as exc:
        return f"body is not valid JSON: {exc}"
    except UnicodeDecodeError:
        return "body is not valid UTF-8"
    if not isinstance(message, dict):
        return f"body must be a JSON object, not {_json_type(message)}"
    topic = message.get("topic")
    if not isinstance(topic, str) or not topic:
        return f'"topic" must be a non-empty string, not {_json_type(topic)}'
    if "data" not in message:
        return '"data" is missing'
    return Publish(topic, message["data"])


def message_frame(message: Publish, cursor: str | None, variant: Variant) -> bytes:
    """A WebSocket frame for subscribers: ``{"topic":T,"data":D}``, then ``"id"`` if asked."""
    return encode_message(message, cursor, int(variant))


def encode_message(message: Publish, cursor: str | None, variant: int) -> bytes:
    """``message_frame`` for the publish path, where the variant is a plain int:
    bit 0 asks for the cursor, bit 1 for MessagePack."""
    payload: dict[str, Any] = {"topic": message.topic}
    if message.has_data:
        payload["data"] = message.data
    if variant & 1 and cursor is not None:
        payload["id"] = cursor
    if variant & 2:
        return binary_frame(msgpack.packb(payload))
    return text_frame(dumps(payload))


def control_frame(key: str, value: dict[str, Any], msgpack_format: bool) -> bytes:
    """``{"__error"|"__resume"|"__gap": {...}}`` in the connection's format."""
    if msgpack_format:
        return binary_frame(msgpack.packb({key: value}))
    return text_frame(dumps({key: value}))


def error_frame(error: ProtocolError, msgpack_format: bool = False) -> bytes:
    body: dict[str, Any] = {"code": error.code.value, "message": error.message}
    if error.retry_after is not None:
        body["retry_after"] = round(error.retry_after, 3)
    return control_frame("__error", body, msgpack_format)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    if isinstance(value, list):
        return "an array"
    return "an object"
