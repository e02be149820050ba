"""The partysub message protocol: what clients send, what we send back.

Pure functions over text and bytes. A frame the client got wrong never becomes
a publish: it becomes a :class:`ProtocolError`, which the session turns into
an ``{"__error": {...}}`` frame for the sender alone.

Two formats share one message model (values.py): JSON text frames (what
partysocket sends, the default) and MessagePack binary frames
(``format=msgpack``), which can carry bytes. ``make_publish`` is the door every
message passes: checked once, encoded once in both formats. Subscribers may
also ask for each message's cursor (``ids=1``), so one message has up to four
frames, its *variants*, each spliced from the door's bytes at most once per
publish, only if a subscriber needs it.
"""

from __future__ import annotations

import base64
import functools
import gc
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, ParamSpec, TypeVar

import msgpack
import orjson

from . import values
from .frames import binary_frame, text_frame
from .values import describe

P = ParamSpec("P")
T = TypeVar("T")


class ErrorCode(StrEnum):
    """Codes of ``__error`` frames; documented in docs/protocol.md."""

    BAD_JSON = "bad_json"
    BAD_MSGPACK = "bad_msgpack"
    BAD_MESSAGE = "bad_message"
    BAD_TOPIC = "bad_topic"
    BAD_TOPICS = "bad_topics"
    BAD_VALUE = "bad_value"
    TOO_LARGE = "too_large"
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


# Longest idempotency key accepted: it is kept with the message in a history.
MAX_IDEM_LENGTH = 256
# What a cursor adds to a message's form, at most: ``,"id":"<8 hex>:<19 digits>"``.
CURSOR_ROOM = 40


@dataclass(frozen=True, slots=True)
class MessageLimits:
    """What the door checks a message against (from ``[server]``)."""

    max_message_size: int = 256 * 1024
    max_topic_length: int = 256
    max_depth: int = values.DEFAULT_MAX_DEPTH


@dataclass(frozen=True, slots=True)
class Publish:
    """A message that passed the door: checked, and encoded once in both formats.

    ``json`` and ``packed`` are the map ``{"topic": T, "data": D}`` (no
    ``data`` key when the client sent none) as JSON and as MessagePack. Every
    frame, history entry, relay item and tail line is made from these bytes,
    so no later encoding can fail, and what a message costs to keep is its size.
    """

    topic: str
    json: bytes
    packed: bytes
    idem: str | None = None  # idempotency key: a repeat is not delivered again

    @property
    def has_data(self) -> bool:
        return self.packed[0] == 0x82

    @property
    def data(self) -> Any:
        """The data, decoded again (tests, tools); the delivery path never needs it."""
        return msgpack.unpackb(self.packed, raw=False).get("data")

    @property
    def size(self) -> int:
        """Bytes this message holds (both forms and its key)."""
        return len(self.json) + len(self.packed) + len(self.idem or "")


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


def _bytes_for_json(value: Any) -> Any:
    """What JSON cannot carry (bytes from a MessagePack publisher), in a documented form."""
    if isinstance(value, bytes):
        return {BYTES_MARKER: base64.b64encode(value).decode("ascii")}
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(value: Any) -> bytes:
    """Compact JSON bytes, keys in insertion order (so ``topic`` comes first).

    Only for values the daemon builds itself (control frames, views) or that
    passed the door: the value model guarantees orjson can write them.
    """
    return orjson.dumps(value, default=_bytes_for_json)


def make_publish(
    topic: Any,
    data: Any,
    limits: MessageLimits,
    *,
    has_data: bool = True,
    idem: Any = None,
    from_json: bool = False,
) -> Publish | ProtocolError:
    """The door: a message from its parts, or the error that refuses it.

    Checks the topic and the idempotency key, then encodes both forms once and
    checks the data against the value model on what the encoders wrote, at C
    speed (a Python walk of a large value would hold the loop): orjson refuses
    what JSON cannot carry (keys that are not strings, integers past 64 bits,
    lone surrogates, more than 254 levels); the nesting is measured on the
    JSON; non-finite floats are looked for in the MessagePack (``from_json``:
    orjson parsed the data, which refuses them). Only a refusal, or a float
    that looks non-finite, walks the value (values.check) for the exact answer.
    Last, a message any of whose forms, with a cursor, would be larger than
    ``max_message_size`` is refused: such a frame could not be delivered,
    replayed or relayed to everyone who may need it.
    """
    if not isinstance(topic, str) or not topic:
        return ProtocolError(
            ErrorCode.BAD_TOPIC, f'"topic" must be a non-empty string, not {describe(topic)}'
        )
    if len(topic) > limits.max_topic_length:
        return ProtocolError(
            ErrorCode.BAD_TOPIC, f"topic longer than {limits.max_topic_length} characters"
        )
    if values.has_surrogate(topic):
        return ProtocolError(ErrorCode.BAD_TOPIC, "topic holds a lone surrogate")
    if idem is not None and (
        not isinstance(idem, str)
        or not idem
        or len(idem) > MAX_IDEM_LENGTH
        or values.has_surrogate(idem)
    ):
        return ProtocolError(
            ErrorCode.BAD_MESSAGE,
            f'"idem" must be a non-empty string of at most {MAX_IDEM_LENGTH} characters',
        )
    envelope: dict[str, Any] = {"topic": topic, "data": data} if has_data else {"topic": topic}
    try:
        # A copy of exactly its size: orjson's result holds a 4 KiB buffer
        # however short, and this one is kept (history, queues).
        as_json = memoryview(dumps(envelope)).tobytes()
        as_msgpack: bytes = msgpack.packb(envelope)
    except (TypeError, ValueError, OverflowError) as exc:
        problem = values.check(data, limits.max_depth) or f"cannot be encoded ({exc})"
        return ProtocolError(ErrorCode.BAD_VALUE, problem)
    if has_data and not values.within_depth(as_json, limits.max_depth + 1):
        return ProtocolError(
            ErrorCode.BAD_VALUE, f"data is nested more than {limits.max_depth} levels deep"
        )
    if has_data and not from_json and values.may_hold_nonfinite(as_msgpack):
        nonfinite = values.check(data, limits.max_depth)
        if nonfinite is not None:
            return ProtocolError(ErrorCode.BAD_VALUE, nonfinite)
    largest = max(len(as_json), len(as_msgpack)) + CURSOR_ROOM
    if largest > limits.max_message_size:
        form = "JSON" if len(as_json) >= len(as_msgpack) else "MessagePack"
        return ProtocolError(
            ErrorCode.TOO_LARGE,
            f"as {form} this message would be {largest} bytes with its cursor; "
            f"messages are delivered only up to {limits.max_message_size} bytes",
        )
    return Publish(topic, as_json, as_msgpack, idem)


def _collector_paused(parse: Callable[P, T]) -> Callable[P, T]:
    """Run a parse with the cyclic garbage collector paused.

    Decoding allocates a container per array and object; past a few thousand
    the collector runs, and every tenth run scans the whole heap: 70% of the
    time of decoding a message of many small arrays (measured, 1 MB). Decoded
    messages hold no cycles, and the decoded value is gone (by reference
    counts) when the parse returns, before the collector is resumed."""

    @functools.wraps(parse)
    def paused(*args: P.args, **kwargs: P.kwargs) -> T:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return parse(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return paused


def interpret(
    message: Any, describe_as: str, limits: MessageLimits, from_json: bool
) -> ClientMessage:
    """Classify one decoded client message (from either format)."""
    if not isinstance(message, dict):
        return ProtocolError(
            ErrorCode.BAD_MESSAGE,
            f'message must be {describe_as} like {{"topic": ..., "data": ...}}, '
            f"not {describe(message)}",
        )
    if "__topics" in message:
        return parse_topics(message["__topics"])
    if "__token" in message:
        token = message["__token"]
        if not isinstance(token, str) or not token or not token.isascii():
            return ProtocolError(
                ErrorCode.BAD_MESSAGE, '"__token" must be a non-empty ASCII string'
            )
        return RefreshToken(token)
    if "topic" not in message:
        return ProtocolError(
            ErrorCode.BAD_TOPIC, 'message has no "topic" (to publish) or "__topics" (to subscribe)'
        )
    return make_publish(
        message["topic"],
        message.get("data"),
        limits,
        has_data="data" in message,
        idem=message.get("idem"),
        from_json=from_json,
    )


@_collector_paused
def parse_client_message(payload: bytes, limits: MessageLimits) -> ClientMessage:
    """Classify one WebSocket text message (JSON, UTF-8 only) from a client."""
    try:
        message = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return ProtocolError(ErrorCode.BAD_JSON, f"message is not valid JSON: {exc}")
    return interpret(message, "a JSON object", limits, True)


@_collector_paused
def parse_msgpack_message(payload: bytes, limits: MessageLimits) -> ClientMessage:
    """Classify one WebSocket binary message (MessagePack) from a client."""
    message = _unpack(payload)
    if isinstance(message, ProtocolError):
        return message
    return interpret(message, "a MessagePack map", limits, False)


def _unpack(payload: bytes) -> Any:
    try:
        # Timestamps as integer nanoseconds and no extension types: only
        # values that both formats can carry on.
        return msgpack.unpackb(payload, raw=False, timestamp=2, ext_hook=_no_extensions)
    except Exception as exc:  # msgpack raises many kinds; any is a refusal
        return ProtocolError(ErrorCode.BAD_MSGPACK, f"message is not valid MessagePack: {exc}")


def _no_extensions(code: int, data: bytes) -> Any:
    raise ValueError(f"extension type {code} is not supported")


def parse_topics(value: Any) -> Subscribe | ProtocolError:
    if (
        not isinstance(value, list)
        or not all(isinstance(p, str) for p in value)
        or any(values.has_surrogate(p) for p in value)
    ):
        return ProtocolError(
            ErrorCode.BAD_TOPICS, f'"__topics" must be a list of strings, not {describe(value)}'
        )
    return Subscribe(tuple(value))


@_collector_paused
def parse_relayed(envelope: bytes, idem: Any, limits: MessageLimits) -> Publish | ProtocolError:
    """A message from another daemon (its MessagePack map), through the same door."""
    message = _unpack(envelope)
    if isinstance(message, ProtocolError):
        return message
    if not isinstance(message, dict):
        return ProtocolError(ErrorCode.BAD_MESSAGE, "a relayed message must be a map")
    return make_publish(
        message.get("topic"), message.get("data"), limits, has_data="data" in message, idem=idem
    )


MSGPACK_TYPES = frozenset(
    {"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"}
)


@_collector_paused
def parse_http_publish(
    body: bytes, content_type: str, limits: MessageLimits
) -> Publish | ProtocolError:
    """Validate an HTTP publish body: JSON, or MessagePack by its Content-Type."""
    binary = content_type.partition(";")[0].strip().lower() in MSGPACK_TYPES
    if not body.strip():
        what = "a MessagePack map" if binary else '{"topic": "...", "data": ...}'
        return ProtocolError(ErrorCode.BAD_MESSAGE, f"body is empty; send {what}")
    if binary:
        message = _unpack(body)
        if isinstance(message, ProtocolError):
            return message
    else:
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return ProtocolError(ErrorCode.BAD_JSON, f"body is not valid JSON: {exc}")
    if not isinstance(message, dict):
        form = "a MessagePack map" if binary else "a JSON object"
        return ProtocolError(ErrorCode.BAD_MESSAGE, f"body must be {form}, not {describe(message)}")
    topic = message.get("topic")
    if "data" not in message and isinstance(topic, str) and topic:
        return ProtocolError(ErrorCode.BAD_MESSAGE, '"data" is missing')
    return make_publish(
        topic,
        message.get("data"),
        limits,
        has_data="data" in message,
        idem=message.get("idem"),
        from_json=not binary,
    )


def message_frame(message: Publish, cursor: str | None, variant: Variant) -> bytes:
    """A WebSocket frame for subscribers: ``{"topic":T,"data":D}``, then ``"id"`` if asked."""
    return encode_message(message, cursor, int(variant))


def encode_message(message: Publish, cursor: str | None, variant: int) -> bytes:
    """``message_frame`` for the publish path, where the variant is a plain int:
    bit 0 asks for the cursor, bit 1 for MessagePack. Splices bytes the door
    encoded; nothing here can fail."""
    if variant & 2:
        payload = message.packed
        if variant & 1 and cursor is not None:
            # A fixmap of 1 or 2 entries gains one: the header byte counts them.
            payload = b"".join(
                (bytes((payload[0] + 1,)), payload[1:], b"\xa2id", msgpack.packb(cursor))
            )
        return binary_frame(payload)
    payload = message.json
    if variant & 1 and cursor is not None:
        payload = b"".join((payload[:-1], b',"id":"', cursor.encode("ascii"), b'"}'))
    return text_frame(payload)


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
