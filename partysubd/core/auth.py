"""Who may connect, subscribe and publish: JWTs, their claims, and API keys.

A binding with ``auth = "token"`` accepts a connection only with a valid JWT
(the ``token`` query parameter, since browsers cannot set headers on a
WebSocket, or ``Authorization: Bearer``). Its claims say where the bearer may
go, in the topic pattern syntax: ``rooms`` (room names), ``sub`` (patterns it
may subscribe to), ``pub`` (topics it may publish to). A claim that is absent
does not restrict. HTTP publishers may instead present an API key, stored in
the config only as its SHA-256.

The accepted algorithms come from the kind of key configured, never from the
token: a shared secret allows HS256 only, a public key or JWKS RS256/ES256
only, and ``none`` never; that closes the algorithm-confusion attacks.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from .topics import EVERYTHING, matches, prefix_of

HMAC_ALGORITHMS = ("HS256",)
PUBLIC_KEY_ALGORITHMS = ("RS256", "ES256")


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """A binding's authentication, ready to verify (keys already read)."""

    required: bool = False
    secret: str | None = None  # HS256
    public_key: str | None = None  # PEM, RS256/ES256
    jwks: Any = None  # a jwt.PyJWKSet
    audience: str | None = None
    issuer: str | None = None
    leeway: float = 30.0
    api_key_hashes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows. None means the claim was absent: no restriction."""

    rooms: tuple[str, ...] | None = None
    sub: tuple[str, ...] | None = None
    pub: tuple[str, ...] | None = None
    expires_in: float | None = None  # seconds from verification
    subject: str | None = None

    def may_enter(self, room_name: str) -> bool:
        return self.rooms is None or any(matches(p, room_name) for p in self.rooms)

    def may_publish(self, topic: str) -> bool:
        return self.pub is None or any(matches(p, topic) for p in self.pub)

    def may_subscribe(self, pattern: str) -> bool:
        return self.sub is None or any(covers(allowed, pattern) for allowed in self.sub)


FULL_ACCESS = Grant()


def covers(allowed: str, pattern: str) -> bool:
    """Whether every topic ``pattern`` matches is also matched by ``allowed``."""
    if allowed == EVERYTHING:
        return True
    if pattern == EVERYTHING:
        return False
    prefix = prefix_of(allowed)
    if prefix is None:
        return allowed == pattern
    return pattern.startswith(prefix)


def hash_api_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _patterns(claims: dict[str, Any], name: str) -> tuple[str, ...] | str | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    return f'claim "{name}" must be a list of patterns'


def verify(token: str, settings: AuthSettings, now: float) -> Grant | str:
    """The grant a token carries at wall-clock time ``now``, or why it is refused (a 401).

    Total: whatever the token holds and whatever PyJWT or the crypto library
    raise for it and the configured key, the answer is a grant or a reason,
    never an exception. Time comes from the caller: PyJWT's own clock checks
    are off, and ``exp``/``nbf`` are checked here against ``now``.
    """
    try:
        return _verify(token, settings, now)
    except Exception as exc:
        return f"invalid token: {type(exc).__name__}: {exc}"[:200]


def _verify(token: str, settings: AuthSettings, now: float) -> Grant | str:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        return f"malformed token: {exc}"
    if not isinstance(header, dict):
        return "malformed token: the header is not an object"
    key: Any
    algorithms: Sequence[str]
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        return "malformed token: kid must be a string"
    if settings.secret is not None:
        key, algorithms = settings.secret, HMAC_ALGORITHMS
    elif settings.jwks is not None:
        try:
            key = settings.jwks[kid].key if kid else settings.jwks.keys[0].key
        except KeyError:
            return f"no key with kid {kid!r} in the JWKS"
        algorithms = PUBLIC_KEY_ALGORITHMS
    elif settings.public_key is not None:
        key, algorithms = settings.public_key, PUBLIC_KEY_ALGORITHMS
    else:
        return "no verification key is configured"
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        return f"algorithm {alg!r} is not accepted here ({', '.join(algorithms)})"
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=settings.audience,
            issuer=settings.issuer,
            # "sub" here is a list of topic patterns (the JWT subject when a
            # string); times are checked below, against the caller's clock.
            options={
                "require": ["exp"],
                "verify_aud": settings.audience is not None,
                "verify_sub": False,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidTokenError as exc:
        return f"invalid token: {exc}"
    expires = _time_claim(claims, "exp")
    not_before = _time_claim(claims, "nbf")
    if isinstance(expires, str) or isinstance(not_before, str):
        return next(v for v in (expires, not_before) if isinstance(v, str))
    assert expires is not None  # required above
    if now > expires + settings.leeway:
        return "token expired"
    if not_before is not None and now + settings.leeway < not_before:
        return "token not yet valid (nbf)"
    subject = claims.get("sub")
    rooms = _patterns(claims, "rooms")
    sub = _patterns(claims, "sub") if isinstance(subject, list) else None
    pub = _patterns(claims, "pub")
    if isinstance(rooms, str) or isinstance(sub, str) or isinstance(pub, str):
        return next(v for v in (rooms, sub, pub) if isinstance(v, str))
    return Grant(
        rooms,
        sub,
        pub,
        max(0.0, expires - now),
        subject if isinstance(subject, str) else None,
    )


def _time_claim(claims: dict[str, Any], name: str) -> float | str | None:
    """A NumericDate claim as seconds, None when absent, or why it is unusable."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f'invalid token: claim "{name}" must be a number of seconds'
    return float(value)


def check_api_key(presented: str, settings: AuthSettings) -> bool:
    digest = hash_api_key(presented)
    return any(hmac.compare_digest(digest, known) for known in settings.api_key_hashes)
