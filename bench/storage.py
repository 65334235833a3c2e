"""Bytes in Redis: this library against the seed's per-user token tracking.

The seed (AuthX's guide, flask-jwt-extended's Redis example) keeps a set ``USER_TOKENS:<uid>`` of
every token a user holds, so that "log out everywhere" can put each of them in the blocklist (one
key per revoked token, expiring with it). This library keeps one record per user and bumps it.

Scenario: ``users`` users with ``tokens_per_user`` live tokens each, then 10% of the users log out
everywhere. Measured as the growth of ``used_memory`` of the bench's own redis-server from empty.
The seed's tokens are random strings as long as a real AuthX token (a set member costs what its
length costs). On this library's side every user's first token is issued through the real store;
in the growth table every further token is issued too (they write nothing, which the table shows).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis

from authx_epoch import EpochRevocation
from bench.variants import fake_token, make_auth, redis_store

LOGOUT_FRACTION = 0.10
TOKEN_TTL = 7200
_CONCURRENCY = 64


def _used(client: redis.Redis) -> int:
    used: int = client.info("memory")["used_memory"]
    return used


def _empty(client: redis.Redis) -> int:
    client.flushall()
    return _used(client)


def seed(client: redis.Redis, users: int, tokens_per_user: int, token_length: int) -> dict[str, Any]:
    """The seed's footprint: token sets per user, then a blocklist key per token of users who log out."""
    base = _empty(client)
    pipe = client.pipeline(transaction=False)
    held: dict[int, list[str]] = {}
    leaving = set(range(0, users, round(1 / LOGOUT_FRACTION)))
    for user in range(users):
        tokens = [fake_token(token_length) for _ in range(tokens_per_user)]
        if user in leaving:
            held[user] = tokens
        pipe.sadd(f"USER_TOKENS:{user}", *tokens)
        if len(pipe) >= 2_000:
            pipe.execute()
    pipe.execute()
    for user, tokens in held.items():
        for token in tokens:
            pipe.set(f"blocklist:{token}", 1, ex=TOKEN_TTL)
        pipe.delete(f"USER_TOKENS:{user}")
        if len(pipe) >= 2_000:
            pipe.execute()
    pipe.execute()
    used = _used(client) - base
    return {"bytes": used, "bytes_per_user": used / users, "keys": client.dbsize()}


async def _epoch_async(url: str, users: int, tokens_per_user: int, issue_every_token: bool) -> None:
    store = redis_store(url, "storage")
    revocation = EpochRevocation(store)
    expires = time.time() + TOKEN_TTL
    issues = tokens_per_user if issue_every_token else 1
    step = round(1 / LOGOUT_FRACTION)

    async def worker(first: int) -> None:
        for user in range(first, users, _CONCURRENCY):
            uid = f"user-{user}"
            for _ in range(issues):
                await revocation.issue_stamps(uid, expires)
            if user % step == 0:
                await revocation.bump_user_epoch(uid, reason="logout everywhere")

    try:
        await store.aio.setup(time.time())
        await asyncio.gather(*(worker(first) for first in range(_CONCURRENCY)))
    finally:
        await store.aio.close()
        store.sync.close()


def epoch(client: redis.Redis, url: str, users: int, tokens_per_user: int, issue_every_token: bool) -> dict[str, Any]:
    """This library's footprint for the same scenario, written through the real Redis store."""
    base = _empty(client)
    asyncio.run(_epoch_async(url, users, tokens_per_user, issue_every_token))
    used = _used(client) - base
    return {
        "bytes": used,
        "bytes_per_user": used / users,
        "keys": client.dbsize(),
        "issue_calls_per_user": tokens_per_user if issue_every_token else 1,
    }


def run(client: redis.Redis, url: str, users: int, growth_users: int) -> dict[str, Any]:
    """The headline figure (``users`` × 10 tokens) and the growth with 1, 10 and 100 tokens per user."""
    token_length = len(make_auth().create_access_token(uid="user-123456"))
    headline = {
        "users": users,
        "tokens_per_user": 10,
        "seed": seed(client, users, 10, token_length),
        "epoch": epoch(client, url, users, 10, issue_every_token=False),
    }
    growth = []
    for tokens_per_user in (1, 10, 100):
        growth.append(
            {
                "users": growth_users,
                "tokens_per_user": tokens_per_user,
                "seed": seed(client, growth_users, tokens_per_user, token_length),
                "epoch": epoch(client, url, growth_users, tokens_per_user, issue_every_token=True),
            }
        )
    client.flushall()
    return {"token_length": token_length, "logout_fraction": LOGOUT_FRACTION, "headline": headline, "growth": growth}
