"""Hostile input: to the blocklist callback (what an unauthenticated client sends) and to every public method.

Properties (Hypothesis):

* the callback never raises and answers within a generous bound (no input makes it slow);
* over HTTP, for a token AuthX alone rejects, the app with authx-epoch answers exactly what the
  same app without it answers (status and JSON body): the library never turns a rejected token
  into an accepted one, nor changes AuthX's answer; for a validly signed token it may only add a
  401 (a malformed stamp, a missing record), never a 500;
* a public method given a bad argument raises ``InvalidArgumentError`` (or its subclass
  ``InvalidTokenError``) and leaves the store exactly as it was.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import authx_epoch
from authx_epoch import EpochRevocation, InvalidArgumentError, SqliteStore
from authx_epoch.stores import Store
from tests.properties import evidence

SECRET = "authx-epoch-hostile-secret-0123456789abcdef"
#: Per call, far above what a check costs (microseconds), far below anything a user would notice.
#: A local store answers in microseconds; 50 ms leaves room for a loaded CI machine.
CALL_BOUND = 0.05
#: A network store is bounded by its socket timeouts (0.25 s, one immediate retry on a broken
#: connection), not by parsing: under load a loopback round trip alone can pass 50 ms.
NETWORK_CALL_BOUND = 1.0
HOSTILE = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def compact(header: Any, payload_text: str, signature: str = "c2ln") -> str:
    """A compact JWT whose payload segment is exactly ``payload_text`` (any bytes, JSON or not)."""
    return f"{_b64(json.dumps(header).encode())}.{_b64(payload_text.encode('utf-8', 'surrogatepass'))}.{signature}"


def signed(payload: dict[str, Any], key: str = SECRET, **header: Any) -> str:
    return jwt.encode(payload, key, algorithm="HS256", headers=header or None)


def valid_claims(**over: Any) -> dict[str, Any]:
    now = time.time()
    claims: dict[str, Any] = {
        "sub": "alice",
        "jti": "jti-1",
        "type": "access",
        "fresh": False,
        "csrf": "",
        "iat": int(now),
        "exp": now + 600,
        "uep": 1,
        "gep": 1,
    }
    claims.update(over)
    return claims


BAD_EPOCHS = st.sampled_from(["1", 1.5, True, False, -1, 2**70, None, [], {}, "", 1e308])
BAD_SUBS = st.one_of(
    st.sampled_from([0, 1.5, None, True, [], ["alice"], {}, "", "x" * 100_000, "\ud800", "{tag}", "a\x00b"]),
    st.text(max_size=40),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def hostile_tokens(draw: st.DrawFn) -> str:
    """Tokens an attacker can send: garbage, truncated, undecodable, wrongly typed, forged, oversized."""
    kind = draw(
        st.sampled_from(
            [
                "text",
                "truncated",
                "not_json",
                "json_value",
                "bad_epoch",
                "bad_sub",
                "duplicate_keys",
                "alg_none",
                "big_header",
                "wrong_key",
                "dots",
            ]
        )
    )
    header = {"alg": "HS256", "typ": "JWT"}
    if kind == "text":
        return draw(st.text(max_size=300))
    if kind == "truncated":
        token = signed(valid_claims())
        # A fraction rather than a length: the token's length moves with the clock.
        return token[: len(token) * draw(st.integers(min_value=0, max_value=999)) // 1000]
    if kind == "not_json":
        return compact(header, draw(st.text(max_size=200)))
    if kind == "json_value":
        return compact(header, json.dumps(draw(JSON_VALUES)))
    if kind == "bad_epoch":
        claims = valid_claims(**{draw(st.sampled_from(["uep", "gep"])): draw(BAD_EPOCHS)})
        return signed(claims, key=draw(st.sampled_from([SECRET, "another-key-" + "k" * 32])))
    if kind == "bad_sub":
        claims = valid_claims(sub=draw(BAD_SUBS))
        return compact(header, json.dumps(claims), signature=draw(st.sampled_from(["c2ln", ""])))
    if kind == "duplicate_keys":
        # Python's json keeps the last duplicate; other parsers keep the first.
        body = json.dumps(valid_claims())[:-1] + ', "sub": ' + json.dumps(draw(BAD_SUBS)) + ', "uep": "2"}'
        return compact(header, body)
    if kind == "alg_none":
        return compact({"alg": "none", "typ": "JWT"}, json.dumps(valid_claims()), signature="")
    if kind == "big_header":
        return compact(
            {**header, "kid": "k" * draw(st.sampled_from([100, 20_000, 200_000]))}, json.dumps(valid_claims())
        )
    if kind == "wrong_key":
        return signed(valid_claims(sub=draw(st.text(max_size=30))), key="wrong-key-" + "w" * 32)
    return "." * draw(st.integers(min_value=0, max_value=6)) + draw(st.text(max_size=10))


def build(store: Any) -> tuple[FastAPI, AuthX[Any]]:
    app = FastAPI()
    auth: AuthX[Any] = AuthX(config=AuthXConfig(JWT_SECRET_KEY=SECRET, JWT_TOKEN_LOCATION=["headers"]))
    auth.handle_errors(app)
    if store is not None:
        authx_epoch.install(auth, store=store, app=app)

    @app.get("/protected")
    async def protected(payload: TokenPayload = Depends(auth.access_token_required)) -> dict[str, Any]:  # noqa: B008
        return {"jti": payload.jti}

    return app, auth


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One loop for a whole test: a network store's connections belong to the loop that opened them."""
    running = asyncio.new_event_loop()
    yield running
    # Finalizing async generators closes the network store's clients of this loop.
    running.run_until_complete(running.shutdown_asyncgens())
    running.run_until_complete(running.shutdown_default_executor())
    running.close()


@pytest.fixture
def apps(store: Store, loop: asyncio.AbstractEventLoop) -> tuple[FastAPI, AuthX[Any], FastAPI]:
    app, auth = build(store)
    twin, _ = build(None)
    # Records for alice exist, so a forged stamped token for her meets a real record.
    installed = authx_epoch.installed(auth)
    assert installed is not None
    installed.sync.issue_stamps("alice", time.time() + 600)
    # Warm up: the first call on a network store opens its connections, which is not per-check cost.
    loop.run_until_complete(auth.is_token_in_blocklist(signed(valid_claims())))
    return app, auth, twin


def _header_safe(token: str) -> bool:
    # What an HTTP client can put in a header at all.
    return all(32 <= ord(char) < 127 for char in token)


@HOSTILE
@given(token=hostile_tokens())
def test_the_callback_never_raises_and_stays_fast(
    apps: tuple[FastAPI, AuthX[Any], FastAPI], loop: asyncio.AbstractEventLoop, token: str
) -> None:
    _, auth, _ = apps
    installed = authx_epoch.installed(auth)
    assert installed is not None
    bound = CALL_BOUND if installed.store.sync.kind in ("memory", "sqlite") else NETWORK_CALL_BOUND
    started = time.perf_counter()
    answer = loop.run_until_complete(auth.is_token_in_blocklist(token))
    elapsed = time.perf_counter() - started
    assert isinstance(answer, bool)
    assert elapsed < bound, f"{elapsed * 1000:.1f} ms for a {len(token)}-character token"
    evidence.add("hostile.callback_inputs")


@HOSTILE
@given(token=hostile_tokens())
def test_http_answer_is_exactly_authx_own(
    apps: tuple[FastAPI, AuthX[Any], FastAPI], loop: asyncio.AbstractEventLoop, token: str
) -> None:
    app, _, twin = apps
    if not _header_safe(token):
        token = "".join(char for char in token if 32 <= ord(char) < 127)

    async def ask(target: FastAPI) -> tuple[int, Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=target), base_url="http://testserver") as http:
            response = await http.get("/protected", headers={"Authorization": f"Bearer {token}"})
            return response.status_code, response.json()

    ours, theirs = loop.run_until_complete(ask(app)), loop.run_until_complete(ask(twin))
    assert ours[0] != 500
    if theirs[0] != 200:
        # AuthX rejects it: the answer must be exactly AuthX's own.
        assert ours == theirs
    else:
        # A validly signed token AuthX accepts: the library may only add its 401.
        assert ours == theirs or ours == (401, {"message": "Invalid token", "error_type": "RevokedTokenError"})
    evidence.add("hostile.http_inputs")


BAD_UIDS = st.one_of(
    st.sampled_from([None, 1, 1.5, True, b"alice", ["alice"], {"a": 1}, "x" * 20_000, "\ud800", "a\udfffb"]),
    st.binary(max_size=10),
    st.integers(),
)
BAD_REASONS = st.one_of(st.sampled_from([1, b"why", ["why"], "r" * 501, True]), st.integers(), st.binary(max_size=5))
BAD_SESSIONS = st.one_of(st.sampled_from([None, "", 1, b"s", ["s"], "s" * 20_000, "\ud800"]), st.integers())
BAD_EXPIRES = st.sampled_from(["tomorrow", True, b"1", dt.datetime(2030, 1, 1), [1], {}])


def _bad_tokens() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([None, 1, b"token", ["t"], "", "garbage", "a.b.c"]),
        st.builds(lambda claims: signed(claims, key="wrong-key-" + "w" * 32), st.just(valid_claims())),
        st.builds(lambda: signed({k: v for k, v in valid_claims().items() if k != "jti"})),
        st.builds(lambda: signed({k: v for k, v in valid_claims().items() if k != "sub"})),
        st.builds(lambda: signed(valid_claims(jti="\ud800"))),
        st.builds(lambda: signed(valid_claims(sub=12))),
        st.builds(lambda: signed(valid_claims(jti=["j"]))),
        st.builds(lambda: compact({"alg": "none"}, json.dumps(valid_claims()), signature="")),
    )


@st.composite
def bad_calls(draw: st.DrawFn) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    method = draw(
        st.sampled_from(["bump_user_epoch", "bump_global_epoch", "revoke_token", "revoke_session", "get_user_record"])
    )
    if method == "bump_user_epoch":
        if draw(st.booleans()):
            return method, (draw(BAD_UIDS),), {}
        return method, ("alice",), {"reason": draw(BAD_REASONS)}
    if method == "bump_global_epoch":
        return method, (), {"reason": draw(BAD_REASONS)}
    if method == "revoke_token":
        return method, (draw(_bad_tokens()),), {}
    if method == "revoke_session":
        if draw(st.booleans()):
            return method, (draw(BAD_SESSIONS),), {}
        return method, ("s-1",), {"expires_at": draw(BAD_EXPIRES)}
    return method, (draw(BAD_UIDS),), {}


@pytest.fixture
def service(store: Store, loop: asyncio.AbstractEventLoop) -> EpochRevocation:
    _, auth = build(store)
    found = authx_epoch.installed(auth)
    assert found is not None
    found.sync.issue_stamps("alice", time.time() + 600)
    found.sync.revoke_session("s-0")
    return found


@HOSTILE
@given(call=bad_calls(), twin=st.sampled_from(["async", "sync"]))
def test_public_methods_refuse_bad_arguments_and_change_nothing(
    service: EpochRevocation,
    loop: asyncio.AbstractEventLoop,
    call: tuple[str, tuple[Any, ...], dict[str, Any]],
    twin: str,
) -> None:
    method, args, kwargs = call
    store = service.store.sync
    before = sorted(map(repr, store.export_entries(time.time())))
    target = getattr(service.sync, method) if twin == "sync" else getattr(service, method)

    def call_it() -> Any:
        result = target(*args, **kwargs)
        return loop.run_until_complete(result) if twin == "async" else result

    with pytest.raises(InvalidArgumentError) as error:
        call_it()
    assert str(error.value)
    assert len(str(error.value)) < 300, "an error message must not echo a huge argument"
    after = sorted(map(repr, store.export_entries(time.time())))
    assert after == before
    evidence.add("hostile.bad_arguments")


def test_an_oversized_forged_token_costs_no_more_than_authx_own_check(tmp_path: Any) -> None:
    """A 1 MB forged token is not parsed as JSON before verification: the callback's cost stays
    within a small multiple of the signature check AuthX itself makes on it anyway."""
    store = SqliteStore(tmp_path / "r.db")
    _, auth = build(store)
    token = compact({"alg": "HS256"}, json.dumps(valid_claims(pad="p" * 1_000_000)))
    started = time.perf_counter()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, SECRET, algorithms=["HS256"])
    authx_cost = time.perf_counter() - started
    loop = asyncio.new_event_loop()
    try:
        started = time.perf_counter()
        assert loop.run_until_complete(auth.is_token_in_blocklist(token)) is False
        ours = time.perf_counter() - started
    finally:
        loop.close()
        store.close()
    assert ours < 3 * authx_cost + 0.01, (ours, authx_cost)
