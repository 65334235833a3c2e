"""Model-based test: random histories of issue, check, revoke, bump, rotation, time and loss, against a plain model.

A Hypothesis state machine drives a real AuthX (in a real FastAPI app, through httpx's ASGI
transport) with authx-epoch installed over each store, and keeps beside it a reference model: a
few dictionaries saying which token must be accepted. Every check must agree with the model,
with one allowed difference: a token minted before a loss of state (a wipe) may be rejected
where the model accepts it, never accepted where the model rejects it.

Sessions are modelled with their rotation: ``create_token_pair`` opens one, ``rotate_refresh_token``
(async, sync, or through HTTP) must answer exactly what the model's session record says (a new
pair, the grace pair, ``RefreshTokenReusedError`` with the whole session revoked, or a refusal),
and after a loss of state a rotation is refused, never answered with a new pair. A rotation can
straddle a bump or a logout: the store runs it between the rotation's check and its stamp read
(``tests/hooked.py``); then the rotation is refused and nothing moves, unless the bump was another
user's. Each model
generation is tied to the one number the store handed out for it, so a generation handed out
twice, or a pair stamped with a stale one, fails the test.

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
from enum import Enum
from typing import Any, Optional

import httpx
import jwt
import pytest
from authx import AuthX, AuthXConfig, TokenPayload
from authx.exceptions import RevokedTokenError
from fastapi import Depends, FastAPI, Request
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
from authx_epoch import EpochRevocation, RefreshTokenReusedError, SessionTokens
from authx_epoch.records import RECORD_SLACK, RotationStatus
from authx_epoch.stores import Store
from tests.conftest import FakeClock
from tests.hooked import HookedStore, elsewhere
from tests.properties import evidence

SECRET = "authx-epoch-model-test-secret-0123456789abcdef"
UIDS = ("alice", "bob", "carol")
#: Token lifetimes; the longest exceeds MAX_TOKEN_LIFETIME on purpose (AuthX lets a caller do that).
LIFETIMES = (60.0, 900.0, 3600.0, 3 * 3600.0, 6 * 3600.0)
MAX_TOKEN_LIFETIME = 4 * 3600.0
SESSION_LIFETIME = 2 * 3600.0
LEEWAY = 60.0
#: A rotation mints with AuthX's configured lifetimes, counted from the real time: long enough
#: that the fake clock, which runs ahead of the real one, does not leave them expired at once.
ROTATED_ACCESS_LIFETIME = dt.timedelta(days=1)
ROTATED_REFRESH_LIFETIME = dt.timedelta(days=2)
#: The grace interval of refresh-token rotation (seconds); ADVANCES has steps on both sides of it.
GRACE = 5.0
#: A token is not judged this close to its expiry: AuthX checks exp against the real clock.
MARGIN = 30.0
#: Entries whose expiry is this close to "now" are not judged (float sums of clock steps).
BOUNDARY = 1e-3
#: What AuthX answers (401) for a token the callback calls revoked.
REVOKED_BODY = {"message": "Invalid token", "error_type": "RevokedTokenError"}
REUSED_BODY = {"message": "Invalid token", "error_type": "RefreshTokenReusedError"}
ADVANCES = (0.5, 3.0, 7.0, 59.0, 600.0, 3599.0, 7261.0)

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
    """A token the machine minted, with what the model knew when it was minted.

    ``gen`` is the model's generation of the token's session (``None`` without a session).
    """

    token: str
    uid: str
    kind: str
    jti: str
    sid: Optional[str]
    exp: float
    global_version: int
    user_version: int
    era: int
    gen: Optional[int] = None


@dataclass
class SessionModel:
    """A session's record as the store keeps it: until when, whether revoked, in which era, and its rotation.

    Generations are the model's own numbers (0, 1, 2, ... over the whole run); the machine ties
    each to the number the store handed out for it.
    """

    until: float
    revoked: bool
    era: int
    generation: int = 0
    previous: Optional[int] = None
    rotated_at: Optional[float] = None
    #: The replaced generation was answered within the grace since the last rotation (once only).
    grace_used: bool = False


class Rotation(str, Enum):
    """What ``rotate_refresh_token`` must do with a presented refresh token."""

    #: The token's generation is the current one: a new pair, one generation further.
    ROTATED = "rotated"
    #: The generation just replaced, within the grace, the first time: the current pair, nothing moves.
    GRACE = "grace"
    #: Anything older, or the replaced one after the grace or a second time: RefreshTokenReusedError,
    #: session revoked.
    REUSED = "reused"
    #: The check rejects the token (revoked, bumped, no session, lost state): RevokedTokenError.
    REFUSED = "refused"
    #: At the grace boundary (float sums of clock steps): GRACE or REUSED, whichever the store says.
    GRACE_OR_REUSED = "grace_or_reused"


@dataclass
class Model:
    """What must be accepted: versions of each epoch, revoked ids, and how many losses happened."""

    global_version: int = 0
    user_versions: dict[str, int] = field(default_factory=dict)
    revoked_jtis: dict[str, float] = field(default_factory=dict)
    sessions: dict[str, SessionModel] = field(default_factory=dict)
    era: int = 0
    generations: itertools.count[int] = field(default_factory=itertools.count)

    def stamp(self, uid: str) -> tuple[int, int]:
        return self.global_version, self.user_versions.get(uid, 0)

    def live_session(self, sid: Optional[str], now: float) -> Optional[SessionModel]:
        record = self.sessions.get(sid or "")
        return record if record is not None and record.era == self.era and record.until > now else None

    def mint_in_session(self, sid: str, exp: float, now: float) -> int:
        """A token of ``sid`` lives until ``exp``: its record lives at least until then (plus slack, when extended).

        Returns the generation the token is stamped with: the record's current one.
        """
        keep = exp + LEEWAY
        record = self.live_session(sid, now)
        if record is None:
            record = SessionModel(keep + RECORD_SLACK, False, self.era, next(self.generations))
            self.sessions[sid] = record
        elif record.until < keep:
            record.until = keep + RECORD_SLACK
        return record.generation

    def revoke_session(self, sid: str, until: float, now: float) -> None:
        """The record is marked revoked and kept at least until ``until`` (and as long as it already lived)."""
        record = self.live_session(sid, now)
        if record is not None:
            record.until, record.revoked = max(record.until, until), True
        elif until > now:
            self.sessions[sid] = SessionModel(until, True, self.era, next(self.generations))

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

    def rotation(self, minted: Minted, now: float) -> Rotation:
        """What rotating ``minted`` (a judged refresh token of this era) must do; changes nothing."""
        if not self.expect(minted, now) or minted.sid is None or minted.gen is None:
            return Rotation.REFUSED
        record = self.live_session(minted.sid, now)
        assert record is not None, "an accepted session token outlived its record in the model"
        if minted.gen == record.generation:
            return Rotation.ROTATED
        if minted.gen == record.previous and record.rotated_at is not None and not record.grace_used:
            late = now - record.rotated_at - GRACE
            if abs(late) < BOUNDARY:
                return Rotation.GRACE_OR_REUSED
            return Rotation.GRACE if late < 0 else Rotation.REUSED
        return Rotation.REUSED

    def rotate(self, sid: str, now: float) -> int:
        """The session's generation moves forward; returns the new one."""
        record = self.sessions[sid]
        record.previous, record.generation, record.rotated_at = record.generation, next(self.generations), now
        record.grace_used = False
        return record.generation

    def keep_session(self, sid: str, exp: float) -> None:
        """A rotation minted a token of ``sid`` living until ``exp``: the record lives at least until then."""
        record = self.sessions[sid]
        record.until = max(record.until, exp + LEEWAY)


def _revoked(until: Optional[float], now: float) -> bool:
    return until is not None and until > now + BOUNDARY


def build_app(store: Store | HookedStore, clock: FakeClock) -> tuple[FastAPI, AuthX[Any], EpochRevocation]:
    """The application under test: AuthX's error handlers, authx-epoch, and four routes."""
    app = FastAPI()
    auth: AuthX[Any] = AuthX(
        config=AuthXConfig(
            JWT_SECRET_KEY=SECRET,
            JWT_TOKEN_LOCATION=["headers"],
            JWT_ACCESS_TOKEN_EXPIRES=ROTATED_ACCESS_LIFETIME,
            JWT_REFRESH_TOKEN_EXPIRES=ROTATED_REFRESH_LIFETIME,
        )
    )
    auth.handle_errors(app)
    revocation = authx_epoch.install(
        auth,
        store=store,
        app=app,
        clock=clock,
        revocation_leeway=dt.timedelta(seconds=LEEWAY),
        max_token_lifetime=dt.timedelta(seconds=MAX_TOKEN_LIFETIME),
        session_lifetime=dt.timedelta(seconds=SESSION_LIFETIME),
        refresh_reuse_grace=dt.timedelta(seconds=GRACE),
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

    @app.post("/rotate")
    async def rotate(request: Request) -> SessionTokens:
        # The refresh endpoint the sessions page shows: the raw refresh token, rotated.
        token = (request.headers.get("authorization") or "").removeprefix("Bearer ")
        return await revocation.rotate_refresh_token(token)

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
        self.hooked = HookedStore(self.store)
        self.app, self.auth, self.rev = build_app(self.hooked, self.clock)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://testserver")
        self.model = Model()
        self.tokens: list[Minted] = []
        self.sessions: list[str] = []
        self.serial = itertools.count()
        #: The generation number the store handed out for each model generation, per session.
        self.handed_out: dict[tuple[str, int], int] = {}

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
        record = self.model.sessions.get(minted.sid or "")
        if record is not None and minted.gen is not None and record.era == minted.era:
            if accepted and minted.gen != record.generation:
                evidence.add(f"model.older_generation_accepted.{self.label}")
            elif not accepted and record.revoked:
                evidence.add(f"model.revoked_session_rejected.{self.label}")

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
        gen = self.model.mint_in_session(sid, exp, self.clock()) if sid is not None else None
        self._record(uid, sid, gen, made)

    def _record(self, uid: str, sid: Optional[str], gen: Optional[int], made: list[tuple[str, str]]) -> list[Minted]:
        """Keep minted tokens with what the model says about them; each must carry its session's generation."""
        global_version, user_version = self.model.stamp(uid)
        kept = []
        for token_kind, token in made:
            claims = jwt.decode(token, options={"verify_signature": False})
            assert (claims["sub"], claims.get("session_id"), claims["type"]) == (uid, sid, token_kind)
            if sid is not None and gen is not None:
                # One store number per model generation: a generation handed out twice, or a
                # token stamped with a stale one, shows up here.
                handed = self.handed_out.setdefault((sid, gen), claims["sgen"])
                assert claims["sgen"] == handed, (
                    f"session {sid}: generation {gen} stamped {claims['sgen']}, was {handed}"
                )
            minted = Minted(
                token,
                uid,
                token_kind,
                claims["jti"],
                sid,
                float(claims["exp"]),
                global_version,
                user_version,
                self.model.era,
                gen,
            )
            self.tokens.append(minted)
            kept.append(minted)
        evidence.add(f"model.tokens.{self.label}", len(made))
        return kept

    def _pick(self, index: int, kind: Optional[str] = None) -> Optional[Minted]:
        pool = [minted for minted in self.tokens if kind is None or minted.kind == kind]
        return pool[index % len(pool)] if pool else None

    def _pick_refresh(self, index: int, prefer: str) -> Optional[Minted]:
        """A refresh token of a live session of this era, of its current, previous or an older generation.

        ``any`` picks among every refresh token (sessionless ones and those of lost sessions too).
        Returns ``None`` when no token fits.
        """
        pool = [minted for minted in self.tokens if minted.kind == "refresh"]
        if prefer != "any":
            now, wanted = self.clock(), []
            for minted in pool:
                record = self.model.live_session(minted.sid, now)
                if record is None or minted.gen is None or minted.era != self.model.era:
                    continue
                if prefer == "current":
                    fits = minted.gen == record.generation
                elif prefer == "previous":
                    fits = minted.gen == record.previous
                else:
                    fits = minted.gen < (record.previous if record.previous is not None else record.generation)
                if fits:
                    wanted.append(minted)
            if prefer == "current":
                # A client refreshes with a token it still holds: one that is accepted.
                wanted = [minted for minted in wanted if self.model.expect(minted, now)]
            pool = wanted
        return pool[index % len(pool)] if pool else None

    def _rotate_via(self, token: str, via: str) -> tuple[Optional[SessionTokens], Optional[type[Exception]]]:
        """Rotate through one channel; return the pair, or the class of the error it was refused with."""
        if via == "http":
            response = self._run(self.http.post("/rotate", headers={"Authorization": f"Bearer {token}"}))
            if response.status_code == 200:
                return SessionTokens.model_validate(response.json()), None
            assert response.status_code == 401, response.text
            body = response.json()
            assert body in (REVOKED_BODY, REUSED_BODY), body
            return None, RefreshTokenReusedError if body == REUSED_BODY else RevokedTokenError
        try:
            if via == "sync":
                return self.rev.sync.rotate_refresh_token(token), None
            return self._run(self.rev.rotate_refresh_token(token)), None
        except RevokedTokenError as exc:  # RefreshTokenReusedError included
            return None, type(exc)

    # -- issue -------------------------------------------------------------------------------

    @initialize(uid=st.sampled_from(UIDS))
    def first_login(self, uid: str) -> None:
        self._mint(uid, "pair", 900.0, None)

    @initialize(
        uid=st.sampled_from(UIDS),
        via=st.sampled_from(("async", "sync", "http")),
        again_after=st.sampled_from((None, 0.0, 3.0, GRACE, 7.0, 3600.0)),
    )
    def first_session(self, uid: str, via: str, again_after: Optional[float]) -> None:
        # Every history opens a session and rotates it at once, so rotations are not left to chance.
        self.create_pair(uid, 900.0, 3 * 3600.0, "async")
        self.rotate(0, via, again_after)

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

    @rule(
        uid=st.sampled_from(UIDS),
        access=st.sampled_from(LIFETIMES),
        refresh=st.sampled_from(LIFETIMES),
        via=st.sampled_from(("async", "sync")),
    )
    def create_pair(self, uid: str, access: float, refresh: float, via: str) -> None:
        """A login through ``create_token_pair``: a new session, both tokens at its first generation."""
        now = self.clock()
        expiries = {"access_expiry": _aware(now + access), "refresh_expiry": _aware(now + refresh)}
        if via == "sync":
            pair = self.rev.sync.create_token_pair(uid, **expiries)
        else:
            pair = self._run(self.rev.create_token_pair(uid, **expiries))
        sid = pair.session_id
        assert sid not in self.model.sessions, "create_token_pair reused a session id"
        self.sessions.append(sid)
        gen = self.model.mint_in_session(sid, now + max(access, refresh), now)
        self._record(uid, sid, gen, [("access", pair.access_token), ("refresh", pair.refresh_token)])
        evidence.add(f"model.pairs.{self.label}")

    # -- rotate ------------------------------------------------------------------------------

    @rule(
        index=st.integers(min_value=0, max_value=10_000),
        via=st.sampled_from(("async", "sync", "http")),
        again_after=st.sampled_from((None, None, 0.0, 3.0, GRACE, 7.0, 3600.0)),
    )
    def rotate(self, index: int, via: str, again_after: Optional[float]) -> None:
        """The client's refresh: an accepted refresh token of its session's current generation (a new session if none).

        With ``again_after``, the same token comes back that many seconds later: a lost response
        retried, a second tab, or a thief who copied it.
        """
        minted = self._pick_refresh(index, "current")
        if minted is None:
            self.create_pair(UIDS[index % len(UIDS)], 900.0, 3 * 3600.0, "async")
            minted = self._pick_refresh(index, "current")
        assert minted is not None
        self._rotate(minted, via)
        if again_after is not None:
            self.clock.advance(again_after)
            self._rotate(minted, "http" if via != "http" else "async")

    @rule(
        index=st.integers(min_value=0, max_value=10_000),
        via=st.sampled_from(("async", "sync", "http")),
        what=st.sampled_from(("user", "global", "session", "other user")),
    )
    def rotate_straddling_a_logout(self, index: int, via: str, what: str) -> None:
        """A thief's refresh and the victim's logout: the logout lands between the check and the stamp read."""
        minted = self._pick_refresh(index, "current")
        if minted is None or minted.sid is None or self.model.expect(minted, self.clock()) is None:
            return
        sid, uid = minted.sid, minted.uid
        other = next(name for name in UIDS if name != uid)
        now = self.clock()

        def logout() -> None:
            if what == "user":
                elsewhere(self.rev.sync.bump_user_epoch, uid, reason="logout_all")
                self.model.user_versions[uid] = self.model.user_versions.get(uid, 0) + 1
            elif what == "global":
                elsewhere(self.rev.sync.bump_global_epoch, reason="incident")
                self.model.global_version += 1
            elif what == "session":
                elsewhere(self.rev.sync.revoke_session, sid)
                self.model.revoke_session(sid, now + SESSION_LIFETIME + LEEWAY, now)
            else:
                elsewhere(self.rev.sync.bump_user_epoch, other, reason="unrelated")
                self.model.user_versions[other] = self.model.user_versions.get(other, 0) + 1

        self.hooked.before("issue", logout)
        if what == "other user":
            self._rotate(minted, via)  # another user's logout changes nothing here
        else:
            pair, error = self._rotate_via(minted.token, via)
            assert pair is None, f"a rotation straddling a {what} logout minted a pair"
            assert error is RevokedTokenError, error
            evidence.add(f"model.straddling_rotations_refused.{self.label}")
        assert self.hooked.fired[-1:] == ["issue"], "the logout did not land"
        assert not self.hooked.pending()
        record = self.rev.sync.get_session_record(sid)
        assert record is not None
        if what != "other user":
            # Nothing moved: the session's generation is the model's, revoked only if logged out.
            assert record.generation == self.handed_out[(sid, self.model.sessions[sid].generation)]
            assert record.revoked == (what == "session")

    @precondition(lambda self: any(minted.kind == "refresh" for minted in self.tokens))
    @rule(
        index=st.integers(min_value=0, max_value=10_000),
        prefer=st.sampled_from(("previous", "older", "any")),
        via=st.sampled_from(("async", "sync", "http")),
    )
    def replay(self, index: int, prefer: str, via: str) -> None:
        """A second tab, a retry, or a thief: a refresh token that has already been rotated (or any other)."""
        minted = self._pick_refresh(index, prefer) or self._pick_refresh(index, "any")
        assert minted is not None
        self._rotate(minted, via)

    def _rotate(self, minted: Minted, via: str) -> None:
        """``rotate_refresh_token`` answers what the model's session record says, and nothing else."""
        now = self.clock()
        if self.model.expect(minted, now) is None:
            return  # expiring (AuthX may refuse it on its own) or at a boundary: nothing to compare
        lost = minted.era < self.model.era
        expected = Rotation.REFUSED if lost else self.model.rotation(minted, now)
        pair, error = self._rotate_via(minted.token, via)
        label = self.label
        evidence.add(f"model.rotation_attempts.{label}")
        if lost:
            # Its state was lost: refused like any revoked token, never a new pair, never a "reuse".
            assert pair is None, f"rotation after a loss minted a pair for session {minted.sid}"
            assert error is RevokedTokenError, f"rotation after a loss: {error}"
            self._store_refuses_lost_session(minted)
            evidence.add(f"model.rotations_refused_after_loss.{label}")
            return
        if expected is Rotation.GRACE_OR_REUSED:
            expected = Rotation.GRACE if pair is not None else Rotation.REUSED
        if expected is Rotation.REFUSED:
            assert pair is None, f"{minted.sid}: refusal expected, got a pair"
            assert error is RevokedTokenError, f"{minted.sid}: refusal expected, got {error}"
            evidence.add(f"model.rotations_refused.{label}")
            return
        assert minted.sid is not None
        assert minted.gen is not None
        if expected is Rotation.REUSED:
            assert pair is None, f"{minted.sid}: reuse expected, got a pair"
            assert error is RefreshTokenReusedError, f"{minted.sid}: reuse expected, got {error}"
            self.model.sessions[minted.sid].revoked = True
            evidence.add(f"model.reuses_caught.{label}")
        else:
            assert error is None, f"{minted.sid}: {expected.value} expected, got {error}"
            assert pair is not None
            assert pair.session_id == minted.sid
            if expected is Rotation.ROTATED:
                gen = self.model.rotate(minted.sid, now)
                evidence.add(f"model.rotations.{label}")
            else:
                gen = self.model.sessions[minted.sid].generation
                self.model.sessions[minted.sid].grace_used = True
                evidence.add(f"model.graces.{label}")
            made = self._record(
                minted.uid, minted.sid, gen, [("access", pair.access_token), ("refresh", pair.refresh_token)]
            )
            for fresh in made:
                self.model.keep_session(minted.sid, fresh.exp)
            if expected is Rotation.ROTATED:
                older = self.handed_out[(minted.sid, minted.gen)]
                assert self.handed_out[(minted.sid, gen)] > older, "a rotation did not move the generation forward"
            for fresh in made:
                self._judge(fresh, self.rev.sync.check(fresh.token).accepted, "rotated")
        self._agrees_with_store(minted.sid)

    def _agrees_with_store(self, sid: str) -> None:
        """The store's record of a session is the model's: the same generation, previous, revoked flag and grace."""
        record = self.rev.sync.get_session_record(sid)
        model = self.model.sessions[sid]
        assert record is not None
        assert record.revoked == model.revoked
        assert record.grace_used == model.grace_used
        assert record.generation == self.handed_out[(sid, model.generation)]
        if model.previous is not None:
            assert record.previous == self.handed_out[(sid, model.previous)]

    def _store_refuses_lost_session(self, minted: Minted) -> None:
        """Asked directly, the store rotates nothing for a session it lost (or revoked since)."""
        if minted.sid is None or minted.gen is None:
            return
        now = self.clock()
        generation = self.handed_out[(minted.sid, minted.gen)]
        before = self.rev.sync.get_session_record(minted.sid)
        outcome = self.store.sync.rotate_session(minted.sid, minted.uid, generation, now, GRACE, now + 60.0)
        current = self.model.live_session(minted.sid, now)
        assert outcome.status is (RotationStatus.MISSING if current is None else RotationStatus.REVOKED), outcome
        assert self.rev.sync.get_session_record(minted.sid) == before

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


def test_model(store: Store, request: pytest.FixtureRequest) -> None:
    """Every check and every rotation agrees with the reference model, on every store."""
    # The fixture's name, so Redis with and without the local cache are counted apart.
    label = request.node.callspec.params["any_store"].removesuffix("_store")
    loop = asyncio.new_event_loop()
    machine = type(
        "EpochMachineFor" + label.title().replace("_", ""),
        (EpochMachine,),
        {"store": store, "loop": loop, "label": label},
    )
    try:
        run_state_machine_as_test(machine, settings=MODEL_SETTINGS)
    finally:
        # Finalizing async generators closes the network store's clients of this loop.
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    assert evidence.COUNTS[f"model.examples.{label}"] >= 1
