"""Model-based test: random histories of issue, check, revoke, bump, time and loss, against a plain model.

A Hypothesis state machine drives a real AuthX (in a real FastAPI app, through httpx's ASGI
transport) with authx-epoch installed over each store, and keeps beside it a reference model: a
few dictionaries saying which token must be accepted. Every check must agree with the model,
with one allowed difference: a token minted before a loss of state (a wipe) may be rejected
where the model accepts it, never accepted where the model rejects it.

Only the revocation decision is modelled: AuthX rejects expired tokens on its own, so a token is
not judged within ``MARGIN`` seconds of its expiry (AuthX verifies ``exp`` with the real clock).
Every store listed in ``tests/backends.py`` runs this test through the ``store`` fixture.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import httpx
import jwt
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import authx_epoch
from authx_epoch import EpochRevocation
from authx_epoch.records import RECORD_SLACK
from authx_epoch.stores import Store
from tests.conftest import FakeClock
from tests.properties import evidence

SECRET = "authx-epoch-model-test-secret-0123456789abcdef"
UIDS = ("alice", "bob", "carol")
#: Token lifetimes; the longest exceeds MAX_TOKEN_LIFETIME on purpose (AuthX lets a caller do that).
LIFETIMES = (60.0, 900.0, 3600.0, 3 * 3600.0, 6 * 3600.0)
MAX_TOKEN_LIFETIME = 4 * 3600.0
SESSION_LIFETIME = 2 * 3600.0
LEEWAY = 60.0
#: A token is not judged this close to its expiry: AuthX checks exp against the real clock.
MARGIN = 30.0
#: Entries whose expiry is this close to "now" are not judged (float sums of clock steps).
BOUNDARY = 1e-3
#: What AuthX answers (401) for a token the callback calls revoked.
REVOKED_BODY = {"message": "Invalid token", "error_type": "RevokedTokenError"}
ADVANCES = (0.5, 7.0, 59.0, 600.0, 3599.0, 7261.0)

EXAMPLES = int(os.environ.get("AUTHX_EPOCH_MODEL_EXAMPLES", "60"))
MODEL_SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@dataclass
class Minted:
    """A token the machine minted, with what the model knew when it was minted."""

    token: str
    uid: str
    kind: str
    jti: str
    sid: Optional[str]
    exp: float
    global_version: int
    user_version: int
    era: int


@dataclass
class SessionModel:
    """A session's record as the store keeps it: until when, whether revoked, in which era."""

    until: float
    revoked: bool
    era: int


@dataclass
class Model:
    """What must be accepted: versions of each epoch, revoked ids, and how many losses happened."""

    global_version: int = 0
    user_versions: dict[str, int] = field(default_factory=dict)
    revoked_jtis: dict[str, float] = field(default_factory=dict)
    sessions: dict[str, SessionModel] = field(default_factory=dict)
    era: int = 0

    def stamp(self, uid: str) -> tuple[int, int]:
        return self.global_version, self.user_versions.get(uid, 0)

    def _live_session(self, sid: str, now: float) -> Optional[SessionModel]:
        record = self.sessions.get(sid)
        return record if record is not None and record.era == self.era and record.until > now else None

    def mint_in_session(self, sid: str, exp: float, now: float) -> None:
        """A token of ``sid`` lives until ``exp``: its record lives at least until then (plus slack, when extended)."""
        keep = exp + LEEWAY
        record = self._live_session(sid, now)
        if record is None:
            self.sessions[sid] = SessionModel(keep + RECORD_SLACK, False, self.era)
        elif record.until < keep:
            record.until = keep + RECORD_SLACK

    def revoke_session(self, sid: str, until: float, now: float) -> None:
        """The record is marked revoked and kept at least until ``until`` (and as long as it already lived)."""
        record = self._live_session(sid, now)
        if record is not None:
            record.until, record.revoked = max(record.until, until), True
        elif until > now:
            self.sessions[sid] = SessionModel(until, True, self.era)

    def session_revoked_until(self, sid: Optional[str]) -> Optional[float]:
        record = self.sessions.get(sid or "")
        return record.until if record is not None and record.revoked and record.era == self.era else None

    def expect(self, minted: Minted, now: float) -> Optional[bool]:
        """True: must be accepted; False: must be rejected; None: not judged (expiring, or at a boundary)."""
        if now >= minted.exp - MARGIN:
            return None
        if minted.global_version != self.global_version:
            return False
        if minted.user_version != self.user_versions.get(minted.uid, 0):
            return False
        if _revoked(self.revoked_jtis.get(minted.jti), now) or _revoked(self.session_revoked_until(minted.sid), now):
            return False
        undecided = (self.revoked_jtis.get(minted.jti), self.session_revoked_until(minted.sid))
        if any(until is not None and abs(until - now) < BOUNDARY for until in undecided):
            return None
        return True


def _revoked(until: Optional[float], now: float) -> bool:
    return until is not None and until > now + BOUNDARY


def build_app(store: Store, clock: FakeClock) -> tuple[FastAPI, AuthX[Any], EpochRevocation]:
    """The application under test: AuthX's error handlers, authx-epoch, and three routes."""
    app = FastAPI()
    auth: AuthX[Any] = AuthX(config=AuthXConfig(JWT_SECRET_KEY=SECRET, JWT_TOKEN_LOCATION=["headers"]))
    auth.handle_errors(app)
    revocation = authx_epoch.install(
        auth,
        store=store,
        app=app,
        clock=clock,
        revocation_leeway=dt.timedelta(seconds=LEEWAY),
        max_token_lifetime=dt.timedelta(seconds=MAX_TOKEN_LIFETIME),
        session_lifetime=dt.timedelta(seconds=SESSION_LIFETIME),
    )

    @app.get("/protected")
    async def protected(payload: TokenPayload = Depends(auth.access_token_required)) -> dict[str, Any]:  # noqa: B008
        return {"sub": payload.sub}

    @app.post("/refresh")
    async def refresh(payload: TokenPayload = Depends(auth.refresh_token_required)) -> dict[str, Any]:  # noqa: B008
        return {"sub": payload.sub}

    @app.post("/logout")
    async def logout(payload: TokenPayload = Depends(auth.access_token_required)) -> dict[str, Any]:  # noqa: B008
        # The pattern the docs show: revoke the verified payload the dependency handed over.
        await revocation.revoke_token(payload)
        return {"revoked": payload.jti}

    return app, auth, revocation


def _aware(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc)


class EpochMachine(RuleBasedStateMachine):
    """Drives the real stack and the model side by side; set ``store``, ``loop`` and ``label`` on the class."""

    store: Store
    loop: asyncio.AbstractEventLoop
    label: str

    def __init__(self) -> None:
        super().__init__()
        evidence.add(f"model.examples.{self.label}")
        self.store.sync.wipe()
        self.clock = FakeClock()
        self.app, self.auth, self.rev = build_app(self.store, self.clock)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://testserver")
        self.model = Model()
        self.tokens: list[Minted] = []
        self.sessions: list[str] = []
        self.serial = itertools.count()

    def teardown(self) -> None:
        # A last look at every token: the final state must agree with the model too.
        for minted in self.tokens:
            self._judge(minted, self.rev.sync.check(minted.token).accepted, "final")
        self._run(self.http.aclose())

    # -- plumbing ------------------------------------------------------------------------

    def _run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def _judge(self, minted: Minted, accepted: bool, channel: str) -> None:
        expected = self.model.expect(minted, self.clock())
        evidence.add(f"model.checks.{self.label}")
        if expected is None:
            return
        if minted.era < self.model.era:
            # State was lost since this token was minted: rejecting more is allowed, accepting more is not.
            assert expected or not accepted, f"{channel}: a token the model rejects was accepted after a loss"
            return
        if accepted != expected:
            evidence.add(f"model.disagreements.{self.label}")
        assert accepted == expected, (
            f"{channel}: {minted.kind} token of {minted.uid} (session {minted.sid}) "
            f"accepted={accepted}, model says {expected}"
        )

    def _mint(self, uid: str, kind: str, lifetime: float, sid: Optional[str]) -> None:
        data = {"session_id": sid} if sid is not None else None
        exp = self.clock() + lifetime
        expiry = _aware(exp)
        if kind == "pair":
            pair = self.auth.create_token_pair(uid, data=data, access_expiry=expiry, refresh_expiry=expiry)
            made = [("access", pair.access_token), ("refresh", pair.refresh_token)]
        elif kind == "access":
            made = [("access", self.auth.create_access_token(uid, data=data, expiry=expiry))]
        else:
            made = [("refresh", self.auth.create_refresh_token(uid, data=data, expiry=expiry))]
        global_version, user_version = self.model.stamp(uid)
        if sid is not None:
            self.model.mint_in_session(sid, exp, self.clock())
        for token_kind, token in made:
            jti = jwt.decode(token, options={"verify_signature": False})["jti"]
            self.tokens.append(
                Minted(token, uid, token_kind, jti, sid, exp, global_version, user_version, self.model.era)
            )
        evidence.add(f"model.tokens.{self.label}", len(made))

    def _pick(self, index: int, kind: Optional[str] = None) -> Optional[Minted]:
        pool = [minted for minted in self.tokens if kind is None or minted.kind == kind]
        return pool[index % len(pool)] if pool else None

    # -- issue -------------------------------------------------------------------------------

    @initialize(uid=st.sampled_from(UIDS))
    def first_login(self, uid: str) -> None:
        self._mint(uid, "pair", 900.0, None)

    @rule(
        uid=st.sampled_from(UIDS),
        kind=st.sampled_from(("access", "refresh", "pair")),
        lifetime=st.sampled_from(LIFETIMES),
        with_session=st.booleans(),
    )
    def login(self, uid: str, kind: str, lifetime: float, with_session: bool) -> None:
        sid = None
        if with_session:
            sid = f"sess-{next(self.serial)}"
            self.sessions.append(sid)
        self._mint(uid, kind, lifetime, sid)

    @precondition(lambda self: any(minted.kind == "refresh" for minted in self.tokens))
    @rule(index=st.integers(min_value=0, max_value=10_000), lifetime=st.sampled_from(LIFETIMES), rotate=st.booleans())
    def refresh(self, index: int, lifetime: float, rotate: bool) -> None:
        """What a refresh endpoint does: check the refresh token, then mint within its session."""
        minted = self._pick(index, "refresh")
        assert minted is not None
        accepted = not self._run(self.auth.is_token_in_blocklist(minted.token))
        self._judge(minted, accepted, "refresh")
        if accepted and self.model.expect(minted, self.clock()) is not None:
            self._mint(minted.uid, "pair" if rotate else "access", lifetime, minted.sid)

    # -- check -------------------------------------------------------------------------------

    @precondition(lambda self: self.tokens)
    @rule(
        index=st.integers(min_value=0, max_value=10_000),
        channel=st.sampled_from(("callback", "service", "sync", "http")),
    )
    def check(self, index: int, channel: str) -> None:
        minted = self._pick(index)
        assert minted is not None
        if channel == "callback":
            accepted = not self._run(self.auth.is_token_in_blocklist(minted.token))
        elif channel == "service":
            accepted = self._run(self.rev.check(minted.token)).accepted
        elif channel == "sync":
            accepted = not self.rev.sync.is_token_revoked(minted.token)
        else:
            if self.model.expect(minted, self.clock()) is None:
                return  # AuthX may reject it as expired on its own: nothing to compare.
            path = "/protected" if minted.kind == "access" else "/refresh"
            method = "GET" if minted.kind == "access" else "POST"
            response = self._run(self.http.request(method, path, headers={"Authorization": f"Bearer {minted.token}"}))
            assert response.status_code in (200, 401), response.text
            if response.status_code == 401:
                assert response.json() == REVOKED_BODY
            accepted = response.status_code == 200
        self._judge(minted, accepted, channel)

    # -- revoke ------------------------------------------------------------------------------

    @precondition(lambda self: self.tokens)
    @rule(index=st.integers(min_value=0, max_value=10_000), via=st.sampled_from(("async", "sync", "logout")))
    def revoke_token(self, index: int, via: str) -> None:
        minted = self._pick(index)
        assert minted is not None
        now = self.clock()
        if via == "logout" and minted.kind == "access" and self.model.expect(minted, now):
            response = self._run(self.http.post("/logout", headers={"Authorization": f"Bearer {minted.token}"}))
            if response.status_code == 401:
                # Only a token minted before a loss may be refused here; it stays refused.
                assert minted.era < self.model.era, response.text
            else:
                assert response.status_code == 200, response.text
        elif via == "sync":
            self.rev.sync.revoke_token(minted.token)
        else:
            self._run(self.rev.revoke_token(minted.token))
        until = minted.exp + LEEWAY
        if until > now:
            self.model.revoked_jtis[minted.jti] = max(until, self.model.revoked_jtis.get(minted.jti, 0.0))

    @precondition(lambda self: self.sessions)
    @rule(
        index=st.integers(min_value=0, max_value=10_000),
        via=st.sampled_from(("async", "sync", "authx")),
        until_last_token=st.booleans(),
    )
    def revoke_session(self, index: int, via: str, until_last_token: bool) -> None:
        sid = self.sessions[index % len(self.sessions)]
        now = self.clock()
        expires_at: Optional[float] = None
        if until_last_token and via != "authx":
            # The careful caller's way: keep the session revoked until its last token expires.
            expires_at = max([m.exp for m in self.tokens if m.sid == sid], default=now)
        if via == "authx":
            self._run(self.auth.revoke_session(sid))
        elif via == "sync":
            self.rev.sync.revoke_session(sid, expires_at=expires_at)
        else:
            self._run(self.rev.revoke_session(sid, expires_at=None if expires_at is None else _aware(expires_at)))
        until = (now + SESSION_LIFETIME if expires_at is None else expires_at) + LEEWAY
        # A session's revocation lives in its record, which outlives every token minted for it.
        self.model.revoke_session(sid, until, now)

    # -- bump --------------------------------------------------------------------------------

    @rule(uid=st.sampled_from(UIDS), via=st.sampled_from(("async", "sync", "authx")))
    def bump_user_epoch(self, uid: str, via: str) -> None:
        if via == "async":
            record = self._run(self.rev.bump_user_epoch(uid, reason="model"))
        elif via == "sync":
            record = self.rev.sync.bump_user_epoch(uid, reason="model")
        else:
            self._run(self.auth.revoke_all_sessions(uid))
            record = self.rev.sync.get_user_record(uid)
            assert record is not None
        assert record.epoch > 0
        self.model.user_versions[uid] = self.model.user_versions.get(uid, 0) + 1

    @rule(via=st.sampled_from(("async", "sync")))
    def bump_global_epoch(self, via: str) -> None:
        if via == "async":
            self._run(self.rev.bump_global_epoch(reason="model"))
        else:
            self.rev.sync.bump_global_epoch(reason="model")
        self.model.global_version += 1

    # -- time and loss -----------------------------------------------------------------------

    @rule(seconds=st.sampled_from(ADVANCES))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(dice=st.integers(min_value=0, max_value=3))
    def lose_everything(self, dice: int) -> None:
        """The store forgets everything (a flush, a failover, a restored empty file); rarer than other steps."""
        if dice:
            return
        self.store.sync.wipe()
        # Restoring a store takes time: the clock has moved past every epoch the lost state held
        # (see docs/security.md, "Loss of state"). Within one microsecond it would not have.
        self.clock.advance(1.0)
        self.model.era += 1
        evidence.add(f"model.wipes.{self.label}")

    @invariant()
    def epochs_only_grow(self) -> None:
        record = self.rev.sync.get_global_record()
        previous = getattr(self, "_last_global", None)
        if record is not None:
            assert previous is None or record.epoch >= previous
            self._last_global = record.epoch


def test_model(store: Store) -> None:
    """Every check agrees with the reference model, on every store."""
    loop = asyncio.new_event_loop()
    machine = type(
        "EpochMachineFor" + store.sync.kind.replace("+", "_").title(),
        (EpochMachine,),
        {"store": store, "loop": loop, "label": store.sync.kind},
    )
    try:
        run_state_machine_as_test(machine, settings=MODEL_SETTINGS)
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    assert evidence.COUNTS[f"model.examples.{store.sync.kind}"] >= 1
