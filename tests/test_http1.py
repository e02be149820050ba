"""The HTTP/1.1 request reader: strict where safety needs it, total on any input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partysubd.core.http1 import Body, End, Event, Head, Refusal, RequestReader, response


def events(data: bytes, max_head: int = 4096, max_body: int = 1000, cut: int = 0) -> list[Event]:
    reader = RequestReader(max_head, max_body)
    pieces = [data[i : i + cut] for i in range(0, len(data), cut)] if cut else [data]
    got: list[Event] = []
    for piece in pieces:
        reader.feed(piece)
        while (event := reader.next_event()) is not None:
            got.append(event)
    return got


def merged(got: list[Event]) -> list[Event]:
    """Body events joined (how a body is cut into events depends on the reads)."""
    out: list[Event] = []
    for event in got:
        if isinstance(event, Body) and out and isinstance(out[-1], Body):
            out[-1] = Body(out[-1].data + event.data)
        else:
            out.append(event)
    return out


POST = b"POST /parties/pubsub/r HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n"
)


def test_a_request_with_a_body_then_the_next() -> None:
    got = events(POST + b"GET /x HTTP/1.1\r\nHost: y\r\n\r\n")
    head, body, end, second, end2 = got
    assert isinstance(head, Head) and head.method == b"POST" and head.content_length == 5
    assert head.header(b"host") == b"x" and head.keep_alive
    assert body == Body(b"hello") and isinstance(end, End) and isinstance(end2, End)
    assert isinstance(second, Head) and second.target == b"/x"


def test_chunked_bodies_are_decoded() -> None:
    assert merged(events(CHUNKED))[1:] == [Body(b"hello world"), End()]


@pytest.mark.parametrize(
    ("request_bytes", "status", "reason"),
    [
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 5\r\n\r\n",
            400,
            "Transfer-Encoding and Content-Length together",
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400, ""),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n", 413, "limit is 1000"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 30 + b"\r\n\r\n", 400, ""),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \xd9\xa3\r\n\r\n", 400, ""),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, ""),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, ""),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, ""),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "Host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "Host"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, "header line"),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "header line"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400, "control character"),
        (b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request line"),
        (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request line"),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, ""),
        (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", 417, ""),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 5000 + b"\r\n\r\n", 431, ""),
    ],
)
def test_refusals(request_bytes: bytes, status: int, reason: str) -> None:
    for cut in (0, 1, 7):
        got = events(request_bytes, cut=cut)
        refusal = got[-1]
        assert isinstance(refusal, Refusal) and refusal.status == status, got
        assert reason in refusal.reason


def test_a_chunk_past_the_body_limit_is_refused_on_its_size_line() -> None:
    reader = RequestReader(4096, 1000)
    reader.feed(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert isinstance(reader.next_event(), Head)
    reader.feed(b"FFFFFFFF\r\n")  # no byte of the chunk has arrived
    refusal = reader.next_event()
    assert isinstance(refusal, Refusal) and refusal.status == 413
    reader.feed(b"x" * 100)
    assert reader.next_event() is None and reader.finished, "nothing more is read"


def test_chunks_adding_up_past_the_limit() -> None:
    chunks = b"".join(b"100\r\n" + b"x" * 256 + b"\r\n" for _ in range(4))
    got = events(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    assert isinstance(got[-1], Refusal) and got[-1].status == 413
    assert sum(len(e.data) for e in got if isinstance(e, Body)) <= 1000


def test_expect_100_continue_and_connection_close() -> None:
    head = events(
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"
    )
    assert isinstance(head[0], Head) and head[0].expect_continue
    closing = events(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n")[0]
    assert isinstance(closing, Head) and not closing.keep_alive
    old = events(b"GET / HTTP/1.0\r\n\r\n")[0]
    assert isinstance(old, Head) and old.http10 and not old.keep_alive


def test_the_rest_after_an_upgrade_is_handed_over() -> None:
    reader = RequestReader(4096, 1000)
    reader.feed(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n\x81\x85frame")
    assert isinstance(reader.next_event(), Head)
    assert reader.next_event() == End()
    assert reader.rest() == b"\x81\x85frame"


requests = st.lists(
    st.sampled_from([POST, CHUNKED, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n", b"\r\n"]),
    min_size=1,
    max_size=6,
)


@given(requests, st.integers(1, 50))
def test_events_do_not_depend_on_how_the_bytes_are_cut(pieces: list[bytes], cut: int) -> None:
    data = b"".join(pieces)
    assert merged(events(data, cut=cut)) == merged(events(data))


@settings(max_examples=500)
@given(st.binary(max_size=400), st.integers(1, 40))
def test_any_bytes_give_events_or_a_refusal_never_an_exception(data: bytes, cut: int) -> None:
    got = events(data, max_head=200, max_body=50, cut=cut)
    assert all(isinstance(e, Head | Body | End | Refusal) for e in got)
    assert not any(isinstance(e, Refusal) for e in got[:-1]), "nothing after a refusal"


def test_a_trickled_head_is_scanned_once() -> None:
    """One byte per read: the search for the head's end resumes where it stopped, so
    the work is linear in the head, not quadratic (each byte is looked at once)."""
    reader = RequestReader(16384, 1000)
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 10_000 + b"\r\n\r\n"
    for i, byte in enumerate(head[:-1]):
        reader.feed(bytes([byte]))
        assert reader.next_event() is None
        assert reader._scan == i + 1, "the next search starts after what was searched"
    reader.feed(head[-1:])
    assert isinstance(reader.next_event(), Head)


def test_responses_carry_their_length() -> None:
    assert response(200, [(b"X", b"1")], b"OK") == (
        b"HTTP/1.1 200 OK\r\nX: 1\r\nContent-Length: 2\r\n\r\nOK"
    )
    assert response(204, [], b"") == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert response(200, [], b"body", head_only=True).endswith(b"Content-Length: 4\r\n\r\n")
