"""The partysub message protocol: what clients send, what we send back.

Pure functions over text and bytes. A frame the client got wrong never becomes
a publish: it becomes a :class:`ProtocolError`, which the session turns into
an ``{"__error": {...}}`` frame for the sender alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson


class ErrorCode(StrEnum):
    """Codes of ``__error`` frames; documented in docs/protocol.md."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    BAD_TOPIC = "bad_topic"
    BAD_TOPICS = "bad_topics"
    BINARY_NOT_SUPPORTED = "binary_not_supported"


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    data: Any
    has_data: bool = True


@dataclass(frozen=True, slots=True)
class Subscribe:
    patterns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProtocolError:
    code: ErrorCode
    message: str


ClientMessage = Publish | Subscribe | ProtocolError


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


def dumps(value: Any) -> bytes:
    """Compact JSON bytes, keys in insertion order (so ``topic`` comes first)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Classify one WebSocket text message from a client."""
    try:
        message = loads(text)
    except ValueError as exc:
        return ProtocolError(ErrorCode.BAD_JSON, f"message is not valid JSON: {exc}")
    if not isinstance(message, dict):
        return ProtocolError(
            ErrorCode.BAD_MESSAGE,
            f'message must be a JSON object like {{"topic": ..., "data": ...}}, '
            f"not {_json_type(message)}",
        )
    if "__topics" in message:
        return parse_topics(message["__topics"])
    if "topic" not in message:
        return ProtocolError(
            ErrorCode.BAD_TOPIC, 'message has no "topic" (to publish) or "__topics" (to subscribe)'
        )
    topic = message["topic"]
    if not isinstance(topic, str) or not topic:
        return ProtocolError(
            ErrorCode.BAD_TOPIC, f'"topic" must be a non-empty string, not {_json_type(topic)}'
        )
    if "data" in message:
        return Publish(topic, message["data"])
    return Publish(topic, None, has_data=False)


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


def encode_publish(message: Publish) -> bytes:
    """The frame subscribers receive: exactly ``{"topic":T,"data":D}``, topic first."""
    if message.has_data:
        return dumps({"topic": message.topic, "data": message.data})
    return dumps({"topic": message.topic})


def encode_error(error: ProtocolError) -> bytes:
    return dumps({"__error": {"code": error.code.value, "message": error.message}})


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    if isinstance(value, list):
        return "an array"
    return "an object"
