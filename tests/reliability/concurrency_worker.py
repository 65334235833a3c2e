"""One OS process of the concurrency test: many asyncio tasks minting, checking, revoking and bumping.

Run as ``python -m tests.reliability.concurrency_worker STORE_URL SEED TASKS OPS USERS``. It sets
up, prints ``ready``, waits for a line on stdin (so every process starts at once), runs, and
prints one JSON event per line. Times are ``time.monotonic_ns()``, which every process of one
machine shares, so the parent can order events across processes.

Events: ``m`` a token minted, ``b`` a bump returned (``uid`` null for the global epoch), ``r`` a
token revoked, ``c`` a check (``acc`` true, false, or null when the store was unavailable).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any

import jwt
from authx import AuthX, AuthXConfig

import authx_epoch
from authx_epoch import StoreUnavailableError

SECRET = "authx-epoch-concurrency-secret-0123456789abcdef"


async def run(url: str, seed: int, tasks: int, ops: int, users: list[str]) -> list[dict[str, Any]]:
    """Run ``tasks`` tasks of ``ops`` operations each and return every event."""
    auth: AuthX[Any] = AuthX(config=AuthXConfig(JWT_SECRET_KEY=SECRET, JWT_TOKEN_LOCATION=["headers"]))
    revocation = authx_epoch.install(auth, store=url)
    events: list[dict[str, Any]] = []
    tokens: list[tuple[str, str]] = []
    clock = time.monotonic_ns
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def task(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        for _ in range(ops):
            roll = rng.random()
            if roll < 0.25 or not tokens:
                uid = rng.choice(users)
                start = clock()
                token = auth.create_access_token(uid)
                end = clock()
                jti = jwt.decode(token, options={"verify_signature": False})["jti"]
                tokens.append((token, jti))
                events.append({"k": "m", "uid": uid, "jti": jti, "s": start, "e": end})
            elif roll < 0.88:
                # Mostly recent tokens, so that checks race with the bumps that revoke them.
                token, jti = tokens[max(0, len(tokens) - 1 - int(rng.expovariate(1 / 20)))]
                start = clock()
                try:
                    if rng.random() < 0.7:
                        revoked = await auth.is_token_in_blocklist(token)
                    else:
                        revoked = await asyncio.to_thread(revocation.sync.is_token_revoked, token)
                    accepted: Any = not revoked
                except StoreUnavailableError:
                    accepted = None
                events.append({"k": "c", "jti": jti, "s": start, "e": clock(), "acc": accepted})
            elif roll < 0.96:
                uid = rng.choice(users)
                start = clock()
                if rng.random() < 0.5:
                    record = await revocation.bump_user_epoch(uid, reason="concurrency")
                else:
                    record = await asyncio.to_thread(revocation.sync.bump_user_epoch, uid, reason="concurrency")
                events.append({"k": "b", "uid": uid, "s": start, "e": clock(), "epoch": record.epoch})
            elif roll < 0.995:
                token, jti = rng.choice(tokens[-50:])
                start = clock()
                await revocation.revoke_token(token)
                events.append({"k": "r", "jti": jti, "s": start, "e": clock()})
            else:
                start = clock()
                record = await revocation.bump_global_epoch(reason="concurrency")
                events.append({"k": "b", "uid": None, "s": start, "e": clock(), "epoch": record.epoch})
            # Let the other tasks in between every operation, as requests interleave in a server.
            await asyncio.sleep(0)

    await asyncio.gather(*(task(index) for index in range(tasks)))
    await revocation.store.aio.close()
    revocation.store.sync.close()
    return events


def main() -> None:
    """Parse ``sys.argv``, run, and print the events."""
    url, seed, tasks, ops, users = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    events = asyncio.run(run(url, seed, tasks, ops, users.split(",")))
    out = sys.stdout
    for event in events:
        out.write(json.dumps(event) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
