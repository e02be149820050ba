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
import time
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

    def may_enter(self, room: str) -> bool:
        return self.rooms is None or any(matches(p, room) for p in self.rooms)

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
        return tuple(value.split(","))
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return f'claim "{name}" must be a list of patterns'


def verify(token: str, settings: AuthSettings) -> Grant | str:
    """The grant a token carries, or the reason it is refused (for a 401)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        return f"malformed token: {exc}"
    key: Any
    algorithms: Sequence[str]
    if settings.secret is not None:
        key, algorithms = settings.secret, HMAC_ALGORITHMS
    elif settings.jwks is not None:
        kid = header.get("kid")
        try:
            key = settings.jwks[kid].key if kid else settings.jwks.keys[0].key
        except KeyError:
            return f"no key with kid {kid!r} in the JWKS"
        algorithms = PUBLIC_KEY_ALGORITHMS
    elif settings.public_key is not None:
        key, algorithms = settings.public_key, PUBLIC_KEY_ALGORITHMS
    else:
        return "no verification key is configured"
    if header.get("alg") not in algorithms:
        return f"algorithm {header.get('alg')!r} is not accepted here ({', '.join(algorithms)})"
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=list(algorithms),
            audience=settings.audience,
            issuer=settings.issuer,
            leeway=settings.leeway,
            # "sub" here is a list of topic patterns (the JWT subject when a string).
            options={
                "require": ["exp"],
                "verify_aud": settings.audience is not None,
                "verify_sub": False,
            },
        )
    except jwt.ExpiredSignatureError:
        return "token expired"
    except jwt.InvalidTokenError as exc:
        return f"invalid token: {exc}"
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
        float(claims["exp"]) - time.time(),
        subject if isinstance(subject, str) else None,
    )


def check_api_key(presented: str, settings: AuthSettings) -> bool:
    digest = hash_api_key(presented)
    return any(hmac.compare_digest(digest, known) for known in settings.api_key_hashes)


def mint(
    secret: str,
    *,
    rooms: Sequence[str] | None = None,
    sub: Sequence[str] | None = None,
    pub: Sequence[str] | None = None,
    ttl: float = 3600,
    subject: str | None = None,  # used when ``sub`` (topic patterns) is not
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """An HS256 token for ``partysub token`` and for tests."""
    now = int(time.time())
    claims: dict[str, Any] = {"iat": now, "exp": now + int(ttl)}
    if rooms is not None:
        claims["rooms"] = list(rooms)
    if sub is not None:
        claims["sub"] = list(sub)
    elif subject is not None:
        claims["sub"] = subject
    if pub is not None:
        claims["pub"] = list(pub)
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
