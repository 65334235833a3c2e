"""Failing examples the model-based and fault tests found, kept as plain tests so they stay fixed."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import httpx
import pytest

from authx_epoch import SqliteStore
from authx_epoch.stores import Store
from tests.conftest import FakeClock
from tests.properties.test_model import LEEWAY, MAX_TOKEN_LIFETIME, REVOKED_BODY, build_app


def test_logout_through_the_verified_payload_lasts_until_the_token_expires(store: Store) -> None:
    """Found by the model test: ``revoke_token(payload)`` ignored the payload's ``exp``.

    AuthX hands routes a ``TokenPayload`` whose ``exp`` is a datetime; the service only read
    numbers, fell back to ``iat + max_token_lifetime``, and so forgot the revocation while a
    token minted with a longer expiry was still valid (or revoked nothing at all when that
    moment had already passed).
    """
    clock = FakeClock()
    app, auth, _ = build_app(store, clock)
    lifetime = MAX_TOKEN_LIFETIME + 2 * 3600.0
    token = auth.create_access_token("alice", expiry=dt.timedelta(seconds=lifetime))
    headers = {"Authorization": f"Bearer {token}"}
    start = clock.now

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
            assert (await http.post("/logout", headers=headers)).status_code == 200
            for elapsed in (0.0, MAX_TOKEN_LIFETIME + 600.0, lifetime - 60.0):
                clock.now = start + elapsed
                response = await http.get("/protected", headers=headers)
                assert response.status_code == 401, (elapsed, response.text)
                assert response.json() == REVOKED_BODY
                assert await auth.is_token_in_blocklist(token)

    asyncio.run(scenario())
    # The entry is kept as long as the token lives, plus the leeway, and not for ever either.
    assert store.sync.stats(start + lifetime + LEEWAY - 1.0).revoked_tokens == 1
    assert store.sync.stats(start + lifetime + LEEWAY + 1.0).revoked_tokens == 0


def test_logout_of_a_token_minted_ahead_of_max_lifetime_still_revokes(store: Store) -> None:
    """Found by the model test: with ``iat + max_token_lifetime`` already past, nothing was stored."""
    clock = FakeClock()
    app, auth, revocation = build_app(store, clock)
    clock.advance(MAX_TOKEN_LIFETIME + 3600.0)
    # Minted "now" by the injected clock while AuthX stamps iat with the real time: the case of a
    # token whose iat is older than max_token_lifetime but whose exp is still ahead.
    token = auth.create_access_token("alice", expiry=dt.datetime.fromtimestamp(clock() + 60.0, tz=dt.timezone.utc))
    headers = {"Authorization": f"Bearer {token}"}

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
            assert (await http.post("/logout", headers=headers)).status_code == 200
            assert (await http.get("/protected", headers=headers)).status_code == 401

    asyncio.run(scenario())
    assert revocation.sync.check(token).accepted is False


@pytest.mark.sqlite
def test_sqlite_session_of_a_deleted_file_is_lost_not_unavailable(tmp_path: Path) -> None:
    """Found by the fault test: with the database deleted under a running app, ``get_session``
    answered ``StoreUnavailableError`` ("no such table") where ``fetch`` rightly says the state is
    lost, so ``get_session_record`` was a 503 until something wrote to the new, empty file.
    """
    clock = FakeClock()
    db = tmp_path / "revocation.db"
    store = SqliteStore(db)
    try:
        store.sync.issue("alice", clock(), clock() + 900.0, "s1")
        assert store.sync.get_session("s1", clock()) is not None
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            path.unlink(missing_ok=True)
        assert store.sync.get_session("s1", clock()) is None
        assert store.sync.fetch("alice", None, "s1", clock()).session is None
    finally:
        store.close()
