"""Whatever bytes arrive, the sans-I/O session answers or closes; it never raises."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from partysubd.core.config import DEFAULT_BINDING_TOML, parse_config
from partysubd.core.hub import Hub
from partysubd.core.session import Session, State

HUB_CONFIG = "[server]\nmax_message_size = 4096\nmax_topics = 5\n" + DEFAULT_BINDING_TOML

UPGRADE = (
    b"GET /parties/pubsub/fuzz?topics=a,b:* HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def new_session() -> tuple[Hub, Session]:
    config = parse_config(HUB_CONFIG, "fuzz")
    hub = Hub.build(config, rng=random.Random(0))
    return hub, Session(hub, config.server, "127.0.0.1:1", now=0.0)


def feed(session: Session, chunks: list[bytes]) -> None:
    for i, chunk in enumerate(chunks):
        session.data_received(chunk, float(i))
        session.tick(float(i))
    session.connection_lost()


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_random_bytes_as_http(chunks: list[bytes]) -> None:
    hub, session = new_session()
    feed(session, chunks)
    assert not any(room.connections for room in hub.registry.parties["pubsub"].rooms.values())


http_pieces = st.sampled_from(
    [
        b"GET ",
        b"POST ",
        b"OPTIONS ",
        b"/parties/pubsub/r",
        b"/parties/x/",
        b"?topics=a",
        b"%FF",
        b" HTTP/1.1\r\n",
        b"Host: x\r\n",
        b"Content-Length: 5\r\n",
        b"Content-Length: -1\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Upgrade: websocket\r\n",
        b"Connection: Upgrade\r\n",
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        b"Sec-WebSocket-Version: 13\r\n",
        b"Origin: https://evil\r\n",
        b"\r\n",
        b'{"topic":"t","data":1}',
        b"5\r\nhello\r\n0\r\n\r\n",
    ]
)


@settings(max_examples=300)
@given(st.lists(http_pieces, max_size=14), st.integers(1, 40))
def test_plausible_http_in_any_order_and_cut_anywhere(pieces: list[bytes], cut: int) -> None:
    _, session = new_session()
    data = b"".join(pieces)
    feed(session, [data[i : i + cut] for i in range(0, len(data), cut)])


def client_frame(opcode: int, payload: bytes, fin: bool, mask: bool, rsv: int) -> bytes:
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    length = bytes([n]) if n < 126 else bytes([126]) + n.to_bytes(2, "big")
    if mask:
        length = bytes([length[0] | 0x80]) + length[1:]
        key = b"\x01\x02\x03\x04"
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return bytes([first]) + length + key + payload
    return bytes([first]) + length + payload


frames = st.builds(
    client_frame,
    opcode=st.sampled_from([0, 1, 2, 3, 8, 9, 10, 11]),
    payload=st.one_of(
        st.binary(max_size=200),
        st.sampled_from(
            [
                b'{"topic":"a","data":1}',
                b'{"__topics":["a","b","c","d","e","f"]}',
                b"null",
                b'{"__token":"x"}',
                b"\x03\xe8bye",
                b"\xff\xfe",
            ]
        ),
    ),
    fin=st.booleans(),
    mask=st.booleans(),
    rsv=st.integers(0, 7),
)


@settings(max_examples=300)
@given(st.lists(frames, max_size=10), st.integers(1, 64))
def test_random_frames_after_an_upgrade(frame_list: list[bytes], cut: int) -> None:
    hub, session = new_session()
    session.data_received(UPGRADE, 0.0)
    assert session.state is State.OPEN
    data = b"".join(frame_list)
    feed(session, [data[i : i + cut] for i in range(0, len(data), cut)])
    assert "fuzz" not in hub.registry.parties["pubsub"].rooms, "the room is released"
