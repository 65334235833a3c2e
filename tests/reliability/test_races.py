"""Check-then-act races: a revocation that lands between a request's check and the token it mints.

The attack (issue 10): a thief holding a stolen refresh token refreshes while the victim logs out
everywhere. The refresh checks the token, other requests run, then it reads the epochs to stamp
the new pair. If the victim's bump lands in between, a new pair stamped with the *new* epoch would
outlive "log out everywhere". Invariant 8 forbids it: a token minted on the authority of a
presented token never carries an epoch newer than that token's, unless the request moved it itself.

Two kinds of tests, on every store (memory, SQLite, Redis, Redis + local cache, Redis Cluster):

* deterministic: ``HookedStore`` runs the victim's whole request at the exact point between the
  thief's check and its stamp read (no sleep anywhere), for a rotation, a plain AuthX refresh route,
  and the implicit cookie refresh;
* real races: the thief refreshes in a loop in one thread while the victim bumps in another, for
  hundreds of trials; once the victim's call has returned, nothing the thief holds is accepted.
"""

import asyncio
import datetime as dt
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import pytest
from authx import AuthX, TokenPayload
from fastapi import Depends, FastAPI, Request, Response

import authx_epoch
from authx_epoch import EpochRevocation, SessionTokens, StoreUnavailableError
from authx_epoch.stores import Store
from tests.conftest import FakeClock
from tests.helpers import bearer, claims_of, make_auth
from tests.hooked import HookedStore, elsewhere
from tests.properties import evidence

pytestmark = pytest.mark.anyio

#: Trials per store of each real race (``AUTHX_EPOCH_RACE_TRIALS`` changes it); the ones through
#: HTTP run half as many, the global bump a quarter (each of its trials logs everyone out).
TRIALS = int(os.environ.get("AUTHX_EPOCH_RACE_TRIALS", "200"))

COOKIES = {
    "JWT_TOKEN_LOCATION": ["cookies", "headers"],
    "JWT_COOKIE_CSRF_PROTECT": False,
    "JWT_COOKIE_SECURE": False,
    "JWT_IMPLICIT_REFRESH_DELTATIME": dt.timedelta(minutes=10),
}


@dataclass
class RaceApp:
    """An app with every route the races need, over a store whose operations can be hooked."""

    app: FastAPI
    auth: AuthX[Any]
    rev: EpochRevocation
    hooked: HookedStore

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://testserver")


def race_app(store: Store, clock: FakeClock | None = None, **config: Any) -> RaceApp:
    app = FastAPI()
    auth = make_auth(**config)
    auth.handle_errors(app)
    hooked = HookedStore(store)
    rev = authx_epoch.install(auth, store=hooked, app=app, **({"clock": clock} if clock else {}))
    access = Annotated[TokenPayload, Depends(auth.access_token_required)]
    refresh = Annotated[TokenPayload, Depends(auth.refresh_token_required)]

    @app.post("/login")
    async def login(uid: str) -> SessionTokens:
        return await rev.create_token_pair(uid, fresh=True)

    @app.post("/rotate")
    async def rotate(request: Request, payload: refresh) -> SessionTokens:
        token = (request.headers.get("authorization") or "").removeprefix("Bearer ")
        return await rev.rotate_refresh_token(token)

    @app.post("/refresh")
    async def plain_refresh(payload: refresh) -> dict[str, str]:
        # AuthX's own refresh pattern: no session helpers, just a new access token for the subject.
        return {"access_token": auth.create_access_token(uid=payload.sub)}

    @app.get("/protected")
    async def protected(payload: access) -> dict[str, Any]:
        return {"sub": payload.sub}

    @app.post("/logout")
    async def logout(payload: access) -> dict[str, str]:
        await rev.revoke_token(payload)
        return {}

    @app.post("/logout-all")
    async def logout_all(payload: access) -> dict[str, str]:
        await rev.bump_user_epoch(payload.sub, reason="logout_all")
        return {}

    @app.post("/logout-everyone")
    async def logout_everyone(payload: access) -> dict[str, str]:
        await rev.bump_global_epoch(reason="incident")
        return {}

    @app.post("/logout-device")
    async def logout_device(payload: access) -> dict[str, str]:
        await rev.revoke_session((payload.model_extra or {})["session_id"])
        return {}

    @app.post("/change-password")
    async def change_password(payload: Annotated[TokenPayload, Depends(auth.fresh_token_required)]) -> SessionTokens:
        await rev.bump_user_epoch(payload.sub, reason="password_change")
        return await rev.create_token_pair(payload.sub, fresh=True)

    if "cookies" in config.get("JWT_TOKEN_LOCATION", ()):
        app.middleware("http")(auth.implicit_refresh_middleware)

    @app.post("/cookie-login")
    async def cookie_login(uid: str, response: Response) -> dict[str, str]:
        token = auth.create_access_token(uid=uid, expiry=dt.timedelta(minutes=2))
        auth.set_access_cookies(token, response)
        return {}

    return RaceApp(app, auth, rev, hooked)


@pytest.fixture
def race(store: Store) -> RaceApp:
    return race_app(store)


async def accepted(rev: EpochRevocation, token: str) -> bool:
    return (await rev.check(token)).accepted


# -- deterministic: the victim's request runs between the thief's check and its stamp read --------


VICTIM_ROUTES = {"user": "/logout-all", "global": "/logout-everyone", "session": "/logout-device"}


@pytest.mark.parametrize("what", ["user", "global", "session"])
async def test_a_rotation_straddling_a_logout_is_refused(race: RaceApp, what: str) -> None:
    async with race.client() as http:
        pair = SessionTokens.model_validate((await http.post("/login", params={"uid": "alice"})).json())

        async def victim() -> None:
            response = await http.post(VICTIM_ROUTES[what], headers=bearer(pair.access_token))
            assert response.status_code == 200, response.text

        # The thief's refresh: checked, then (the victim logs out), then the stamp read.
        race.hooked.before("issue", victim)
        thief = await http.post("/rotate", headers=bearer(pair.refresh_token))
        assert race.hooked.fired == ["issue"]
        assert thief.status_code == 401, thief.text
        assert thief.json()["error_type"] == "RevokedTokenError"
        for token in (pair.access_token, pair.refresh_token):
            assert not await accepted(race.rev, token)
    evidence.add("races.deterministic.rotation")


@pytest.mark.parametrize("what", ["user", "global"])
async def test_authx_own_refresh_route_straddling_a_bump_mints_nothing(race: RaceApp, what: str) -> None:
    # AuthX's pattern: Depends(auth.refresh_token_required), then auth.create_access_token(sub).
    # The stamping wrapper reads the epochs where the mint happens; the bump lands just before.
    refresh = race.auth.create_refresh_token(uid="alice")
    bump = race.rev.sync.bump_user_epoch if what == "user" else race.rev.sync.bump_global_epoch
    race.hooked.before("issue", lambda: elsewhere(bump, *(["alice"] if what == "user" else [])))
    async with race.client() as http:
        thief = await http.post("/refresh", headers=bearer(refresh))
    assert race.hooked.fired == ["issue"]
    assert thief.status_code == 401, thief.text
    assert thief.json() == {"message": "Invalid token", "error_type": "RevokedTokenError"}
    assert not await accepted(race.rev, refresh)
    evidence.add("races.deterministic.authx_route")


async def test_the_implicit_refresh_straddling_a_bump_renews_nothing(store: Store) -> None:
    race = race_app(store, **COOKIES)
    name = race.auth.config.JWT_ACCESS_COOKIE_NAME
    async with race.client() as http:
        await http.post("/cookie-login", params={"uid": "alice"})
        cookie = http.cookies[name]
        race.hooked.before("issue", lambda: elsewhere(race.rev.sync.bump_user_epoch, "alice"))
        response = await http.get("/protected")
        # The request itself was accepted before the bump; its renewal is not minted.
        assert response.status_code == 200
        assert race.hooked.fired == ["issue"]
        assert name not in response.cookies
    assert not await accepted(race.rev, cookie)


async def test_a_password_change_bumps_and_mints_the_new_pair_itself(race: RaceApp) -> None:
    # The counter-case: the same request moved the epoch, so the new pair carries the new one.
    async with race.client() as http:
        old = SessionTokens.model_validate((await http.post("/login", params={"uid": "alice"})).json())
        response = await http.post("/change-password", headers=bearer(old.access_token))
        assert response.status_code == 200, response.text
        new = SessionTokens.model_validate(response.json())
        assert (await http.get("/protected", headers=bearer(new.access_token))).status_code == 200
        assert (await http.get("/protected", headers=bearer(old.access_token))).status_code == 401
        assert (await http.post("/rotate", headers=bearer(new.refresh_token))).status_code == 200


async def test_a_rotation_straddling_another_users_bump_goes_through(race: RaceApp) -> None:
    async with race.client() as http:
        pair = SessionTokens.model_validate((await http.post("/login", params={"uid": "alice"})).json())
        race.hooked.before("issue", lambda: elsewhere(race.rev.sync.bump_user_epoch, "bob"))
        response = await http.post("/rotate", headers=bearer(pair.refresh_token))
        assert response.status_code == 200, response.text
        assert await accepted(race.rev, SessionTokens.model_validate(response.json()).access_token)


# -- real races: threads, no hooks ------------------------------------------------------------------


@dataclass
class Trial:
    """One race: what the thief got, how far it went, and whether the victim's call had returned."""

    thief_tokens: list[str] = field(default_factory=list)
    start: threading.Barrier = field(default_factory=lambda: threading.Barrier(2))
    progress: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    victim_done: threading.Event = field(default_factory=threading.Event)

    def wait_for(self, steps: int) -> None:
        """The victim strikes while the thief is at work: after ``steps`` of the thief's requests."""
        for _ in range(steps):
            if not self.progress.acquire(timeout=5):
                return


@pytest.fixture(autouse=True)
def busy_switching() -> Iterator[None]:
    # Threads switch far more often than the default 5 ms, so the in-process stores (whose calls
    # never wait on a socket) interleave inside each other's check-then-act too.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


async def _until_done(call: Callable[[], Awaitable[Any]]) -> Any:
    """What a client does after a 503: try again. A shared test server may be slow for a moment."""
    for _ in range(20):
        try:
            return await call()
        except StoreUnavailableError:
            continue
    return await call()


def _run_threads(*targets: Any) -> None:
    errors: list[BaseException] = []

    def guard(target: Any) -> None:
        try:
            target()
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=guard, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]


def _race_rotation(race: RaceApp, what: str, trials: int) -> tuple[int, int]:
    """Thief rotates with a stolen refresh token in a loop; the victim logs out. Returns (survivors, rotations)."""
    survivors = rotations = 0
    for trial in range(trials):
        uid = f"victim-{trial}"
        pair = race.rev.sync.create_token_pair(uid)
        record = Trial([pair.access_token, pair.refresh_token])

        def thief(refresh: str = pair.refresh_token, got: Trial = record) -> None:
            async def loop() -> int:
                token, done = refresh, 0
                got.start.wait()
                # Rotate until refused, as a thief keeping the session alive would.
                for _ in range(8):
                    try:
                        fresh = await race.rev.rotate_refresh_token(token)
                    except Exception:
                        break
                    finally:
                        got.progress.release()
                    got.thief_tokens += [fresh.access_token, fresh.refresh_token]
                    token, done = fresh.refresh_token, done + 1
                return done

            nonlocal rotations
            rotations += asyncio.run(loop())

        def victim(uid: str = uid, got: Trial = record, delay: int = trial % 4) -> None:
            async def act() -> None:
                got.start.wait()
                got.wait_for(delay)  # spread the bump over the thief's loop
                if what == "user":
                    await _until_done(lambda: race.rev.bump_user_epoch(uid, reason="logout_all"))
                else:
                    await _until_done(lambda: race.rev.bump_global_epoch(reason="incident"))
                got.victim_done.set()

            asyncio.run(act())

        _run_threads(thief, victim)
        assert record.victim_done.is_set()
        survivors += sum(race.rev.sync.check(token).accepted for token in record.thief_tokens)
    return survivors, rotations


@pytest.mark.slow
def test_a_thief_rotating_in_a_loop_never_outlives_logout_everywhere(
    store: Store, request: pytest.FixtureRequest
) -> None:
    race = race_app(store)
    label = request.node.callspec.params["any_store"].removesuffix("_store")
    survivors, rotations = _race_rotation(race, "user", TRIALS)
    evidence.add(f"races.rotation_vs_bump.trials.{label}", TRIALS)
    evidence.add(f"races.rotation_vs_bump.rotations.{label}", rotations)
    evidence.add(f"races.rotation_vs_bump.survivors.{label}", survivors)
    assert rotations > 0
    assert survivors == 0


@pytest.mark.slow
def test_a_thief_rotating_in_a_loop_never_outlives_a_global_bump(store: Store, request: pytest.FixtureRequest) -> None:
    race = race_app(store)
    label = request.node.callspec.params["any_store"].removesuffix("_store")
    trials = max(TRIALS // 4, 20)
    survivors, rotations = _race_rotation(race, "global", trials)
    evidence.add(f"races.rotation_vs_global.trials.{label}", trials)
    evidence.add(f"races.rotation_vs_global.survivors.{label}", survivors)
    assert rotations > 0
    assert survivors == 0


@pytest.mark.slow
def test_authx_own_refresh_route_racing_a_bump_leaves_nothing_alive(
    store: Store, request: pytest.FixtureRequest
) -> None:
    race = race_app(store)
    label = request.node.callspec.params["any_store"].removesuffix("_store")
    survivors = minted = 0
    trials = max(TRIALS // 2, 20)
    for trial in range(trials):
        uid = f"victim-{trial}"
        refresh = race.auth.create_refresh_token(uid=uid)
        record = Trial([refresh])

        def thief(refresh: str = refresh, got: Trial = record) -> None:
            async def loop() -> None:
                async with race.client() as http:
                    got.start.wait()
                    for _ in range(6):
                        response = await http.post("/refresh", headers=bearer(refresh))
                        got.progress.release()
                        if response.status_code != 200:
                            break
                        got.thief_tokens.append(response.json()["access_token"])

            asyncio.run(loop())

        def victim(uid: str = uid, got: Trial = record, delay: int = trial % 4) -> None:
            async def act() -> None:
                got.start.wait()
                got.wait_for(delay)
                await _until_done(lambda: race.rev.bump_user_epoch(uid))

            asyncio.run(act())

        _run_threads(thief, victim)
        minted += len(record.thief_tokens) - 1
        survivors += sum(race.rev.sync.check(token).accepted for token in record.thief_tokens)
    evidence.add(f"races.authx_route_vs_bump.trials.{label}", trials)
    evidence.add(f"races.authx_route_vs_bump.survivors.{label}", survivors)
    assert minted > 0
    assert survivors == 0


@pytest.mark.slow
def test_a_renewal_racing_a_logout_of_the_same_cookie_dies_with_it(
    store: Store, request: pytest.FixtureRequest
) -> None:
    # Issue 10 item 4: a GET with a near-expiry cookie (renewed by the implicit refresh) racing a
    # logout with the same cookie. Whatever the interleaving, once the logout has returned no cookie
    # the GET got is accepted: a renewal keeps the jti, and the revocation outlives every renewal.
    race = race_app(store, **COOKIES)
    label = request.node.callspec.params["any_store"].removesuffix("_store")
    name = race.auth.config.JWT_ACCESS_COOKIE_NAME
    survivors = renewed = 0
    for trial in range(TRIALS):
        cookie = race.auth.create_access_token(uid=f"user-{trial}", expiry=dt.timedelta(minutes=2))
        record = Trial()

        def browsing(cookie: str = cookie, got: Trial = record) -> None:
            async def loop() -> None:
                async with race.client() as http:
                    http.cookies.set(name, cookie)
                    got.start.wait()
                    response = await http.get("/protected")
                    if name in response.cookies:
                        got.thief_tokens.append(response.cookies[name])

            asyncio.run(loop())

        def logging_out(cookie: str = cookie, got: Trial = record, delay: int = trial % 3) -> None:
            async def act() -> None:
                async with race.client() as http:
                    got.start.wait()
                    for _ in range(delay):
                        await asyncio.sleep(0)
                    response = await http.post("/logout", headers=bearer(cookie))
                    while response.status_code == 503:  # a slow shared server: the client tries again
                        response = await http.post("/logout", headers=bearer(cookie))
                    assert response.status_code in (200, 401), response.text

            asyncio.run(act())

        _run_threads(browsing, logging_out)
        renewed += len(record.thief_tokens)
        survivors += sum(race.rev.sync.check(token).accepted for token in [cookie, *record.thief_tokens])
    evidence.add(f"races.renewal_vs_logout.trials.{label}", TRIALS)
    evidence.add(f"races.renewal_vs_logout.renewals.{label}", renewed)
    evidence.add(f"races.renewal_vs_logout.survivors.{label}", survivors)
    assert survivors == 0


def test_a_renewal_keeps_the_jti_so_logging_out_the_old_cookie_reaches_the_new_one(store: Store) -> None:
    async def run() -> None:
        race = race_app(store, **COOKIES)
        name = race.auth.config.JWT_ACCESS_COOKIE_NAME
        async with race.client() as http:
            await http.post("/cookie-login", params={"uid": "alice"})
            parent = http.cookies[name]
            response = await http.get("/protected")
            child = response.cookies[name]
            assert claims_of(child)["jti"] == claims_of(parent)["jti"]
            assert (await http.post("/logout", headers=bearer(parent))).status_code == 200
            assert not await accepted(race.rev, child)
            assert (await http.get("/protected", headers=bearer(child))).status_code == 401

    asyncio.run(run())
