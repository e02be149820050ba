"""Tokens for partysub's ``auth = "token"`` bindings, minted by a back end.

The daemon verifies JWTs (partysubd.core.auth); this makes the HS256 ones its
claims describe, for back ends with no JWT library, ``partysub token`` and tests.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jwt


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
    """An HS256 token: ``rooms``, ``sub`` and ``pub`` are the patterns it allows
    (absent: no restriction), valid for ``ttl`` seconds from now."""
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
