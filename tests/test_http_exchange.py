"""One connection's HTTP exchange: requests in order, bodies gathered, one answer each."""

from __future__ import annotations

from partysubd.core.http1 import CONTINUE, Head, Refusal
from partysubd.core.http_exchange import HttpExchange, PostBody
from partysubd.core.http_plan import Reply


def exchange() -> HttpExchange:
    return HttpExchange(max_head=4096, max_body=1000, now=0.0)


def test_a_request_then_its_body_when_asked_for() -> None:
    http = exchange()
    http.feed(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel")
    head = http.next()
    assert isinstance(head, Head) and head.method == b"POST"
    assert http.read_body() == b""
    assert http.next() is None, "the body is not all here yet"
    http.feed(b"lo")
    assert http.next() == PostBody(b"hello")


def test_expect_continue_is_answered_when_the_body_is_wanted() -> None:
    http = exchange()
    http.feed(b"POST /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert isinstance(http.next(), Head)
    assert http.read_body() == CONTINUE


def test_one_answer_per_request_and_keep_alive_serves_the_next() -> None:
    http = exchange()
    http.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    first = http.next()
    assert isinstance(first, Head) and first.target == b"/a"
    answer, close = http.answer(Reply(200, "OK"), now=1.0)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and not close
    assert http.started == 1.0, "the next request's clock starts at the answer"
    assert http.answer(Reply(200, "again"), now=1.0) == (b"", True), "never twice"
    second = http.next()
    assert isinstance(second, Head) and second.target == b"/b"


def test_connection_close_and_http10_end_after_the_answer() -> None:
    for request in (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
    ):
        http = exchange()
        http.feed(request)
        assert isinstance(http.next(), Head)
        answer, close = http.answer(Reply(200, "OK"), now=0.0)
        assert close and b"Connection: close\r\n" in answer


def test_a_reply_that_closes_says_so() -> None:
    http = exchange()
    http.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    http.next()
    answer, close = http.answer(Reply(400, "bad", close=True), now=0.0)
    assert close and answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_head_gets_the_headers_without_the_body() -> None:
    http = exchange()
    http.feed(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    http.next()
    answer, _ = http.answer(Reply(200, "a body"), now=0.0)
    assert answer.endswith(b"Content-Length: 6\r\n\r\n")


def test_a_malformed_request_is_a_refusal() -> None:
    http = exchange()
    http.feed(b"GARBAGE\r\n\r\n")
    refusal = http.next()
    assert isinstance(refusal, Refusal) and refusal.status == 400


def test_an_upgrade_hands_over_the_bytes_that_followed() -> None:
    http = exchange()
    http.feed(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n\x81\x80")
    assert isinstance(http.next(), Head)
    answer, rest = http.upgrade(b"token")
    assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: token\r\n" in answer and rest == b"\x81\x80"


def test_an_internal_error_answers_500_once_and_only_an_unanswered_request() -> None:
    http = exchange()
    assert http.internal_error() is None, "no request yet"
    http.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    http.next()
    error = http.internal_error()
    assert error is not None and error.startswith(b"HTTP/1.1 500 ")
    assert b"Traceback" not in error
    assert http.internal_error() is None
