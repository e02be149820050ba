"""The control plane's app: routes, tokens, host names, the dashboard, the tail's door."""

from __future__ import annotations

import pytest

from fakes import hub_with
from partysubd.control.admin import AdminApp, AdminState
from partysubd.control.views import Clock


def test_admin_routes_and_auth() -> None:
    hub = hub_with(seed=3)
    state = AdminState(
        hub=hub, version="1", started=0.0, clock=lambda: Clock(5.0, 100.0), token="t0k"
    )
    app = AdminApp(state)
    assert app.handle("GET", "/health", {})[0] == 200
    assert app.handle("GET", "/rooms", {})[0] == 401
    assert app.handle("GET", "/rooms", {b"authorization": b"Bearer t0k"})[0] == 200
    assert app.handle("POST", "/rooms", {b"authorization": b"Bearer t0k"})[0] == 405
    auth = {b"authorization": b"Bearer t0k"}
    assert app.handle("GET", "/rooms/pubsub/none", auth)[0] == 404
    status, body, content_type, _ = app.handle("GET", "/metrics", auth)
    assert status == 200 and content_type.startswith("text/plain") and b"partysub_rooms" in body
    state.draining = True
    assert app.handle("GET", "/ready", {})[0] == 503


def test_dashboard_files_and_the_token_cookie() -> None:
    state = AdminState(
        hub=hub_with(seed=3), version="1", started=0.0, clock=lambda: Clock(5.0, 100.0), token="t0k"
    )
    app = AdminApp(state)
    status, body, content_type, extra = app.handle("GET", "/", {})
    assert status == 200 and content_type.startswith("text/html") and b"/dashboard/app.js" in body
    assert dict(extra)[b"content-security-policy"].startswith(b"default-src 'none'")
    for path, kind in (
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
    ):
        status, body, content_type, _ = app.handle("GET", path, {})
        assert status == 200 and content_type.startswith(kind) and body
    assert app.handle("GET", "/?token=wrong", {}, b"token=wrong")[0] == 401
    status, _, _, extra = app.handle("GET", "/", {}, b"token=t0k")
    headers = dict(extra)
    assert status == 303 and headers[b"location"] == b"/"
    cookie = headers[b"set-cookie"].decode()
    assert cookie.startswith("partysub_admin=t0k;") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert app.handle("GET", "/rooms", {b"cookie": b"partysub_admin=t0k"})[0] == 200
    assert app.handle("GET", "/rooms", {b"cookie": b"partysub_admin=nope"})[0] == 401
    assert app.handle("GET", "/rooms", {b"cookie": b"\x00garbage;;="})[0] == 401
    assert app.handle("DELETE", "/", {})[0] == 401, "DELETE never reaches the page"


def refused(app: AdminApp, path: str, headers: dict[bytes, bytes]) -> int:
    refusal = app._tail_refusal(path, headers)
    assert refusal is not None, "refused"
    return refusal[0]


def test_tail_refusals() -> None:
    state = AdminState(
        hub=hub_with(seed=3), version="1", started=0.0, clock=lambda: Clock(5.0, 100.0), token="t0k"
    )
    state.port = 2000
    app = AdminApp(state)
    auth = {b"authorization": b"Bearer t0k", b"host": b"127.0.0.1:2000"}
    assert app._tail_refusal("/tail/pubsub/r", auth) is None
    assert refused(app, "/tail/pubsub/r", {b"host": b"127.0.0.1:2000"}) == 401
    evil = {**auth, b"origin": b"https://evil.example"}
    assert refused(app, "/tail/pubsub/r", evil) == 403
    # DNS rebinding: Origin and Host both name the attacker's host, which resolves here.
    rebound = {**auth, b"host": b"evil.example:2000", b"origin": b"http://evil.example:2000"}
    assert refused(app, "/tail/pubsub/r", rebound) == 403
    other_port = {**auth, b"origin": b"http://127.0.0.1:9999"}
    assert refused(app, "/tail/pubsub/r", other_port) == 403
    # A page on someone else's server at an IP address, on this port: not ours.
    for foreign in (b"http://203.0.113.7:2000", b"http://[2001:db8::1]:2000"):
        assert refused(app, "/tail/pubsub/r", {**auth, b"origin": foreign}) == 403, foreign
    state.listen_host = "10.0.0.5"
    assert app._tail_refusal("/tail/pubsub/r", {**auth, b"origin": b"http://10.0.0.5:2000"}) is None
    for own in (b"http://127.0.0.1:2000", b"http://localhost:2000", b"http://[::1]:2000"):
        assert app._tail_refusal("/tail/pubsub/r", {**auth, b"origin": own}) is None, own
    state.allowed_origins = ("https://ops.example",)
    configured = {**auth, b"origin": b"https://ops.example"}
    assert app._tail_refusal("/tail/pubsub/r", configured) is None
    assert refused(app, "/tail/nope/r", auth) == 404
    assert refused(app, "/tail/pubsub", auth) == 404


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (b"127.0.0.1:2000", True),
        (b"localhost:2000", True),
        (b"[::1]:2000", True),
        (b"10.1.2.3:2000", True),
        (b"LOCALHOST", True),
        (b"evil.example:2000", False),
        (b"localhost.evil.example", False),
        (b"ops.example:2000", True),
    ],
)
def test_the_control_plane_answers_only_to_its_own_host_names(host: bytes, allowed: bool) -> None:
    state = AdminState(
        hub=hub_with(seed=3), version="1", started=0.0, clock=lambda: Clock(5.0, 100.0)
    )
    state.port = 2000
    state.allowed_hosts = ("ops.example",)
    status = AdminApp(state).handle("GET", "/health", {b"host": host})[0]
    assert status == (200 if allowed else 403)
