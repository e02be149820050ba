"""The WebSocket reader: bytes in, whole client messages out, wsproto's rules kept."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from wsproto.frame_protocol import CloseReason, FrameProtocol

from partysubd.core.ws_reader import Closed, Event, Message, Pinged, TooBig, WebSocketReader
from raw_sockets import masked_frame


def client() -> FrameProtocol:
    return FrameProtocol(client=True, extensions=[])


def events(reader: WebSocketReader, data: bytes) -> list[Event]:
    reader.feed(data)
    found: list[Event] = []
    while (event := reader.next()) is not None:
        found.append(event)
    return found


def test_text_and_binary_frames_are_messages() -> None:
    reader, peer = WebSocketReader(100, keep_binary=True), client()
    data = bytes(peer.send_data('{"a":1}', True)) + bytes(peer.send_data(b"\x81\x01", True))
    assert events(reader, data) == [Message(b'{"a":1}', False), Message(b"\x81\x01", True)]


@given(st.binary(min_size=1, max_size=300), st.lists(st.integers(1, 50), max_size=20))
def test_a_message_cut_anywhere_comes_out_whole_once(payload: bytes, cuts: list[int]) -> None:
    reader, peer = WebSocketReader(1000, keep_binary=True), client()
    data = bytes(peer.send_data(payload, True))
    found: list[Event] = []
    at = 0
    for cut in [*cuts, len(data)]:
        found += events(reader, data[at : at + cut])
        at += cut
    found += events(reader, data[at:])
    assert found == [Message(payload, True)]


def test_fragments_are_assembled_in_order() -> None:
    reader, peer = WebSocketReader(100, keep_binary=False), client()
    data = bytes(peer.send_data("ab", False)) + bytes(peer.send_data("cd", True))
    assert events(reader, data) == [Message(b"abcd", False)]


def test_a_fragmented_message_is_refused_as_soon_as_it_is_too_big() -> None:
    reader, peer = WebSocketReader(10, keep_binary=False), client()
    assert events(reader, bytes(peer.send_data("x" * 8, False))) == []
    assert events(reader, bytes(peer.send_data("y" * 8, False))) == [TooBig()]


def test_a_frame_over_the_limit_is_refused_before_it_is_read() -> None:
    reader, peer = WebSocketReader(10, keep_binary=False), client()
    head = bytes(peer.send_data("z" * 1000, True))[:8]  # the header says 1000 bytes
    assert events(reader, head) == [TooBig()]


def test_a_json_connection_counts_binary_fragments_without_keeping_them() -> None:
    reader, peer = WebSocketReader(100, keep_binary=False), client()
    data = bytes(peer.send_data(b"\x01\x02", False)) + bytes(peer.send_data(b"\x03", True))
    [message] = events(reader, data)
    assert isinstance(message, Message) and message.binary and message.payload == b""


def test_a_ping_is_reported_with_its_size_and_answered_while_open() -> None:
    reader, peer = WebSocketReader(100, keep_binary=False), client()
    frame = bytes(peer.ping(b"hi"))
    assert events(reader, frame) == [Pinged(b"hi", len(frame))]
    pong = reader.pong(b"hi")
    assert pong is not None and pong[0] == 0x8A  # FIN + pong


def test_a_client_close_is_answered_and_then_nothing_is_read() -> None:
    reader, peer = WebSocketReader(100, keep_binary=False), client()
    found = events(reader, bytes(peer.close(1000, "bye")) + bytes(peer.send_data("late", True)))
    assert len(found) == 1 and isinstance(found[0], Closed) and found[0].code is None
    assert found[0].reply is not None and found[0].reply[0] == 0x88  # our close frame
    assert reader.pong(b"x") is None and reader.close(1000, "again") is None


def test_an_unmasked_frame_is_a_protocol_error_with_its_close() -> None:
    reader = WebSocketReader(100, keep_binary=False)
    server_side = FrameProtocol(client=False, extensions=[])
    [closed] = events(reader, bytes(server_side.send_data("x", True)))
    assert isinstance(closed, Closed) and closed.code == 1002 and closed.reply


def test_invalid_utf8_text_is_1007() -> None:
    reader = WebSocketReader(100, keep_binary=False)
    # A fragment goes through wsproto, which checks the text as it arrives.
    data = masked_frame(0x1, b"\xff\xfe", fin=False) + masked_frame(0x0, b"x")
    [closed] = events(reader, data)
    assert isinstance(closed, Closed) and closed.code == 1007


def test_our_close_is_sent_once() -> None:
    reader = WebSocketReader(100, keep_binary=False)
    first = reader.close(1001, "going away")
    assert first is not None and first[0] == 0x88
    assert reader.close(int(CloseReason.GOING_AWAY), "again") is None
