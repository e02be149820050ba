"""Tokens and what they allow: every refusal path, no sockets."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from partysub.tokens import mint
from partysubd.core.auth import AuthSettings, Grant, check_api_key, covers, hash_api_key, verify
from partysubd.core.topics import matches

SECRET = "0123456789abcdef0123456789abcdef"
HS = AuthSettings(required=True, secret=SECRET)


def test_a_good_token_carries_its_claims() -> None:
    grant = verify(
        mint(SECRET, rooms=["lobby"], sub=["chat:*"], pub=["chat:1"], ttl=60), HS, time.time()
    )
    assert isinstance(grant, Grant)
    assert grant.rooms == ("lobby",) and grant.sub == ("chat:*",) and grant.pub == ("chat:1",)
    assert grant.expires_in is not None and 58 < grant.expires_in <= 60
    assert grant.may_enter("lobby") and not grant.may_enter("other")
    assert grant.may_subscribe("chat:*") and grant.may_subscribe("chat:a:*")
    assert grant.may_subscribe("chat:1") and not grant.may_subscribe("*")
    assert not grant.may_subscribe("news") and not grant.may_subscribe("chat")
    assert grant.may_publish("chat:1") and not grant.may_publish("chat:2")


def test_absent_claims_do_not_restrict() -> None:
    grant = verify(mint(SECRET, ttl=60, subject="user-1"), HS, time.time())
    assert isinstance(grant, Grant) and grant.subject == "user-1"
    assert grant.may_enter("x") and grant.may_subscribe("*") and grant.may_publish("y")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-token", "malformed token"),
        (mint("another-secret-another-secret-xx", ttl=60), "Signature verification failed"),
        (mint(SECRET, ttl=-120), "token expired"),
        (jwt.encode({"exp": int(time.time()) + 60}, "", algorithm="none"), "algorithm 'none'"),
        (jwt.encode({"iat": 1}, SECRET, algorithm="HS256"), "exp"),
        (
            jwt.encode({"exp": int(time.time()) + 60, "nbf": int(time.time()) + 600}, SECRET),
            "not yet",
        ),
    ],
    ids=["malformed", "wrong-secret", "expired", "alg-none", "no-exp", "not-yet-valid"],
)
def test_refusals(token: str, reason: str) -> None:
    result = verify(token, HS, time.time())
    assert isinstance(result, str) and reason in result


def test_a_tampered_signature_or_claim_is_refused() -> None:
    token = mint(SECRET, rooms=["lobby"], ttl=60)
    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["rooms"] = ["*"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    assert "Signature" in str(verify(f"{head}.{forged}.{signature}", HS, time.time()))
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    assert "Signature" in str(verify(f"{head}.{body}.{flipped}", HS, time.time()))


def test_clock_skew_leeway() -> None:
    token = mint(SECRET, ttl=-10)
    assert isinstance(verify(token, HS, time.time()), Grant), "within the default 30 s leeway"
    strict = AuthSettings(required=True, secret=SECRET, leeway=0)
    assert verify(token, strict, time.time()) == "token expired"


def test_audience_and_issuer_when_configured() -> None:
    settings = AuthSettings(required=True, secret=SECRET, audience="app", issuer="me")
    assert isinstance(
        verify(mint(SECRET, audience="app", issuer="me"), settings, time.time()), Grant
    )
    assert "Audience" in str(
        verify(mint(SECRET, audience="other", issuer="me"), settings, time.time())
    )
    assert (
        "issuer"
        in str(verify(mint(SECRET, audience="app", issuer="them"), settings, time.time())).lower()
    )


def rsa_pem() -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, public.decode()


def test_rs256_and_es256_with_a_public_key() -> None:
    key, public = rsa_pem()
    settings = AuthSettings(required=True, public_key=public)
    good = jwt.encode({"exp": int(time.time()) + 60, "pub": ["a"]}, key, algorithm="RS256")
    assert isinstance(verify(good, settings, time.time()), Grant)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_public = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    es = jwt.encode({"exp": int(time.time()) + 60}, ec_key, algorithm="ES256")
    assert isinstance(
        verify(es, AuthSettings(required=True, public_key=ec_public.decode()), time.time()), Grant
    )


def test_hs_rs_confusion_is_refused() -> None:
    """A token signed with HS256 using the *public* key as the secret must not pass."""
    _, public = rsa_pem()
    settings = AuthSettings(required=True, public_key=public)
    forged = _hs256(public.encode(), {"exp": int(time.time()) + 60})
    assert "algorithm 'HS256' is not accepted" in str(verify(forged, settings, time.time()))


def _hs256(key: bytes, claims: dict[str, object]) -> str:
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    signing = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(signature)


def test_jwks() -> None:
    key, _ = rsa_pem()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "k1"
    jwks = jwt.PyJWKSet.from_dict({"keys": [jwk]})
    settings = AuthSettings(required=True, jwks=jwks)
    token = jwt.encode(
        {"exp": int(time.time()) + 60}, key, algorithm="RS256", headers={"kid": "k1"}
    )
    assert isinstance(verify(token, settings, time.time()), Grant)
    other = jwt.encode(
        {"exp": int(time.time()) + 60}, key, algorithm="RS256", headers={"kid": "k2"}
    )
    assert "no key with kid 'k2'" in str(verify(other, settings, time.time()))


def test_api_keys_are_compared_by_hash() -> None:
    settings = AuthSettings(required=True, api_key_hashes=(hash_api_key("s3cret-key"),))
    assert check_api_key("s3cret-key", settings)
    assert not check_api_key("s3cret-kez", settings)


patterns = st.one_of(
    st.just("*"),
    st.text("ab:", max_size=4),
    st.builds(lambda t: t + ":*", st.text("ab:", max_size=3)),
)


@given(allowed=patterns, pattern=patterns, topic=st.text("ab:", max_size=6))
def test_covers_is_sound(allowed: str, pattern: str, topic: str) -> None:
    """If ``allowed`` covers ``pattern``, every topic ``pattern`` matches, ``allowed`` matches."""
    if covers(allowed, pattern) and matches(pattern, topic):
        assert matches(allowed, topic)


def test_time_is_the_caller_s() -> None:
    token = mint(SECRET, ttl=60)
    now = time.time()
    assert isinstance(verify(token, HS, now), Grant)
    assert verify(token, HS, now + 60 + 31) == "token expired", "past exp and the leeway"
    grant = verify(token, HS, now + 50)
    assert isinstance(grant, Grant) and grant.expires_in is not None and grant.expires_in <= 10


def _forge(
    header: dict[str, object], claims: dict[str, object], key: bytes = SECRET.encode()
) -> str:
    """A token with exactly this header and claims, HMAC-signed (any header we like)."""
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64(signature)}"


def _rsa_public_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "RS256", "typ": "JWT"},  # the other key family than the configured secret
        {"alg": "ES256"},
        {"alg": "HS256", "kid": ["a", "list"]},
        {"alg": ["HS256"]},
        {"alg": None},
    ],
)
def test_a_header_naming_another_key_family_is_a_refusal(header: dict[str, object]) -> None:
    exp = int(time.time()) + 60
    for settings in (HS, AuthSettings(required=True, public_key=_RSA_PUBLIC)):
        result = verify(_forge(header, {"exp": exp}), settings, time.time())
        assert isinstance(result, str), (header, result)


_RSA_PUBLIC = _rsa_public_pem()


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": "soon"},
        {"exp": True},
        {"exp": 1e400},
        {"exp": int(time.time()) + 60, "nbf": "later"},
        {"exp": int(time.time()) + 60, "rooms": [1, 2]},
        {"exp": int(time.time()) + 60, "pub": {"a": 1}},
        {"exp": int(time.time()) + 60, "sub": ["", "x"]},
    ],
)
def test_odd_claims_are_refusals(claims: dict[str, object]) -> None:
    result = verify(_forge({"alg": "HS256"}, claims), HS, time.time())
    assert isinstance(result, str)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


@given(st.dictionaries(st.sampled_from(["alg", "kid", "typ", "jku"]), json_like), json_like)
def test_verify_is_total(header: dict[str, object], claims: object) -> None:
    token = _forge(header, claims)  # type: ignore[arg-type]
    for settings in (HS, AuthSettings(required=True, public_key=_RSA_PUBLIC)):
        assert isinstance(verify(token, settings, time.time()), Grant | str)
