"""Outgoing frames built once, and the incoming frame splitter against wsproto."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol

from partysubd.core.frames import OPCODE_BINARY, OPCODE_TEXT, FrameSplitter, text_frame, unmask


def decode_server_frames(data: bytes) -> list[str]:
    client = FrameProtocol(client=True, extensions=[])
    client.receive_bytes(data)
    return [frame.payload for frame in client.received_frames()]  # type: ignore[misc]


@given(st.text(max_size=70000))
def test_text_frames_decode_with_wsproto(text: str) -> None:
    assert decode_server_frames(text_frame(text.encode())) == [text]


@given(st.binary(max_size=64), st.binary(min_size=4, max_size=4))
def test_unmask_is_an_involution(payload: bytes, key: bytes) -> None:
    assert unmask(unmask(payload, key), key) == payload
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert unmask(payload, key) == expected


def client_frames(messages: list[tuple[bool, bytes]]) -> bytes:
    proto = FrameProtocol(client=True, extensions=[])
    out = b""
    for binary, payload in messages:
        out += proto.send_data(payload if binary else payload.decode("latin-1"), True)
    return out


messages = st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), min_size=1, max_size=8)


@given(messages, st.lists(st.integers(1, 50), max_size=30))
def test_splitter_yields_each_frame_once_however_the_bytes_arrive(
    sent: list[tuple[bool, bytes]], cuts: list[int]
) -> None:
    stream = client_frames(sent)
    splitter = FrameSplitter(max_size=10_000)
    got: list[tuple[int, bytes]] = []
    pos = 0
    for cut in [*cuts, len(stream)]:
        splitter.feed(stream[pos : pos + cut])
        pos += cut
        while (frame := splitter.next()) is not None:
            got.append(frame)
        if pos >= len(stream):
            break
    expected = [
        (OPCODE_BINARY if binary else OPCODE_TEXT, p if binary else p.decode("latin-1").encode())
        for binary, p in sent
    ]
    assert got == expected


def test_oversized_frame_is_refused_from_its_header() -> None:
    splitter = FrameSplitter(max_size=100)
    header = bytes([0x81, 0x80 | 127]) + (10**9).to_bytes(8, "big") + b"mask"
    splitter.feed(header)
    assert splitter.next() == (FrameSplitter.TOO_BIG, b"")


def test_control_and_fragmented_frames_go_to_wsproto_whole() -> None:
    proto = FrameProtocol(client=True, extensions=[])
    ping = bytes(proto.ping(b"hi"))
    first = bytes(proto.send_data("ab", False))
    last = bytes(proto.send_data("cd", True))
    after = bytes(proto.send_data("ef", True))
    splitter = FrameSplitter(max_size=100)
    splitter.feed(ping + first + last + after)
    assert splitter.next() == (FrameSplitter.RAW, ping)
    assert splitter.next() == (FrameSplitter.RAW, first)
    assert splitter.next() == (FrameSplitter.RAW, last)
    assert splitter.next() == (OPCODE_TEXT, b"ef")
    assert splitter.next() is None


def test_unmasked_client_frame_goes_to_wsproto() -> None:
    frame = bytes([0x81, 2]) + b"hi"
    splitter = FrameSplitter(max_size=100)
    splitter.feed(frame)
    assert splitter.next() == (FrameSplitter.RAW, frame)


def test_oversized_control_frame_goes_to_wsproto_at_once() -> None:
    header = bytes([0x89, 0x80 | 126]) + (200).to_bytes(2, "big")
    splitter = FrameSplitter(max_size=100)
    splitter.feed(header)
    assert splitter.next() == (FrameSplitter.RAW, header)


def test_a_frame_trickled_one_byte_at_a_time_is_not_copied_per_byte() -> None:
    """Appending in place: the buffer is the same object however many reads it took
    (the old splitter built a new bytes object per read: quadratic in the frame)."""
    from partysubd.core.frames import FrameSplitter

    frame = bytes((0x81, 0x80 | 126)) + (60_000).to_bytes(2, "big") + b"\0\0\0\0" + b"x" * 60_000
    splitter = FrameSplitter(100_000)
    buffer = splitter._buffer
    for byte in frame[:-1]:
        splitter.feed(bytes([byte]))
        assert splitter.next() is None
    assert splitter._buffer is buffer and len(buffer) == len(frame) - 1
    splitter.feed(frame[-1:])
    assert splitter.next() == (0x1, b"x" * 60_000)
