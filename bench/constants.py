"""The measured constants of the scale projection in docs/benchmarks.md: bytes per entry, server µs per command.

``python -m bench.constants [--entries N]`` prints JSON:

- ``redis``: growth of ``used_memory`` per user record (short ids, then UUIDs), per revoked jti and per session, each
  written through the real Redis store into a throwaway ``redis-server``, with ``MEMORY USAGE``
  of one key of each kind; the server's µs per check script (the blocking side's check, and a
  check with a session), per ``HMGET`` of the asyncio check without a session (the global
  record tracked by its connection) and per bump (``INFO commandstats``); the server's CPU per
  unpipelined command (a ``GET`` sent one at a time).
- ``sqlite``: ``dbstat`` bytes per entry of each table and index of a real store file.
- ``postgresql`` (when ``psql`` reaches ``127.0.0.1:5432``): ``pg_relation_size`` per row of
  tables and indexes shaped like the SQLite schema, in a scratch schema that is dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import redis

from authx_epoch.stores import open_store
from bench.redis_servers import start_server

_DAY = 86_400.0


def _uid(i: int) -> str:
    return f"user-{i:06d}"


def _fill(store: Any, entries: int, what: str, now: float) -> None:
    """Write ``entries`` user records, revoked jtis or sessions through ``store.sync``."""
    sync = store.sync
    for i in range(entries):
        if what == "users":
            sync.issue(_uid(i), now, now + 30 * _DAY)
        elif what == "uuid_users":
            # The ids many apps use: 36 characters, which must not push a value past 64 bytes.
            sync.issue(str(uuid.UUID(int=i)), now, now + 30 * _DAY)
        elif what == "jtis":
            sync.revoke_token(_uid(i), f"{i:032x}", now + 900, now)
        else:
            sync.issue(_uid(i), now, now + 30 * _DAY, session_id=f"sess-{i:032x}")


async def _tracked_checks(store: Any, client: redis.Redis, entries: int, now: float) -> float:
    """Server µs per ``HMGET`` of the asyncio check of tokens without a session (global record tracked)."""
    await store.aio.fetch(_uid(0), None, None, now)  # the check connection, tracking the global record
    client.config_resetstat()
    for i in range(entries):
        await store.aio.fetch(_uid(i), f"{i:032x}", None, now)
    stats = client.info("commandstats")
    await store.aio.close()
    assert "cmdstat_evalsha_ro" not in stats, "the asyncio check ran the script: is tracking off?"
    return float(stats["cmdstat_hmget"]["usec_per_call"])


def _server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def redis_constants(entries: int) -> dict[str, Any]:
    """Bytes per entry and server µs per command, on a throwaway ``redis-server``."""
    server = start_server()
    try:
        client = server.client()
        store = open_store(server.url)
        now = time.time()
        store.sync.setup(now)
        found: dict[str, Any] = {}
        for what in ("users", "jtis", "sessions", "uuid_users"):
            before = int(client.info("memory")["used_memory"])
            _fill(store, entries, what, now)
            found[f"bytes_per_{what[:-1]}"] = (int(client.info("memory")["used_memory"]) - before) / entries
        user_key = next(iter(client.scan_iter(match=b"*:h", count=1000)))
        session_key = next(iter(client.scan_iter(match=b"*:s:*", count=1000)))
        found["user_key_length"] = len(user_key)
        found["memory_usage_user_with_one_jti"] = client.memory_usage(user_key, samples=0)
        found["memory_usage_session"] = client.memory_usage(session_key, samples=0)
        client.config_resetstat()
        for i in range(entries):
            store.sync.fetch(_uid(i), f"{i:032x}", f"sess-{i:032x}" if i % 2 else None, now)
        for i in range(entries):
            store.sync.bump_user(_uid(i), now, "projection", now + 30 * _DAY)
        stats = client.info("commandstats")
        found["check_script_usec"] = stats["cmdstat_evalsha_ro"]["usec_per_call"]
        found["bump_script_usec"] = stats["cmdstat_evalsha"]["usec_per_call"]
        found["tracked_check_hmget_usec"] = asyncio.run(_tracked_checks(store, client, entries, now))
        client.set(b"projection", b"x")
        calls = entries * 5
        before_cpu = _server_cpu(client)
        for _ in range(calls):
            client.get(b"projection")
        found["unpipelined_command_cpu_usec"] = (_server_cpu(client) - before_cpu) / calls * 1e6
        store.close()
        return found
    finally:
        server.stop()


def _dbstat(path: Path, entries: int) -> dict[str, float]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    return {name: size / entries for name, size in rows if name != "sqlite_schema"}


def sqlite_constants(entries: int) -> dict[str, Any]:
    """``dbstat`` bytes per entry of every table and index, after users, then jtis, then sessions."""
    directory = Path(tempfile.mkdtemp(prefix="authx-epoch-constants-"))
    try:
        path = directory / "epochs.db"
        now = time.time()
        for what in ("users", "jtis", "sessions"):
            store = open_store(f"sqlite:///{path}")
            store.sync.setup(now)
            _fill(store, entries, what, now)
            store.close()
        return _dbstat(path, entries)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


_PG_TABLES = """
CREATE TABLE epochs (ns text NOT NULL, scope text NOT NULL, epoch bigint NOT NULL,
    created_at double precision NOT NULL, bumped_at double precision, reason text,
    expires_at double precision, PRIMARY KEY (ns, scope));
CREATE INDEX epochs_expiry ON epochs (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE revoked_tokens (ns text NOT NULL, uid text NOT NULL, jti text NOT NULL,
    expires_at double precision NOT NULL, PRIMARY KEY (ns, uid, jti));
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);
CREATE TABLE sessions (ns text NOT NULL, id text NOT NULL, generation bigint NOT NULL,
    first_generation bigint NOT NULL, created_at double precision NOT NULL,
    expires_at double precision NOT NULL, uid text, rotated_at double precision, previous bigint,
    revoked boolean NOT NULL DEFAULT false, grace_used boolean NOT NULL DEFAULT false,
    PRIMARY KEY (ns, id));
CREATE INDEX sessions_expiry ON sessions (expires_at);
INSERT INTO epochs SELECT '', 'u:user-' || lpad(i::text, 6, '0'), 29000000 + i, 1.7e9, NULL, NULL,
    1.7e9 + 2592000 + i FROM generate_series(1, {n}) i;
INSERT INTO revoked_tokens SELECT '', 'user-' || lpad(i::text, 6, '0'), md5(i::text), 1.7e9 + 900 + i
    FROM generate_series(1, {n}) i;
INSERT INTO sessions SELECT '', 'sess-' || md5(i::text), 1, 1, 1.7e9, 1.7e9 + 2592000 + i,
    'user-' || lpad(i::text, 6, '0'), NULL, NULL, false, false FROM generate_series(1, {n}) i;
VACUUM ANALYZE epochs, revoked_tokens, sessions;
"""


def postgresql_constants(entries: int) -> Optional[dict[str, float]]:
    """Bytes per row of each table and index shaped like SQLite's, or ``None`` without a server."""
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
    if shutil.which("psql") is None:
        return None
    schema = f"authx_epoch_constants_{int(time.time())}"
    script = (
        f"CREATE SCHEMA {schema}; SET search_path = {schema};"
        + _PG_TABLES.format(n=entries)
        + "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        + f" WHERE n.nspname = '{schema}' AND c.relkind IN ('r', 'i');"
    )
    try:
        # Through stdin, not -c: psql runs -c as one transaction, where VACUUM may not run.
        done = subprocess.run(psql, input=script, capture_output=True, text=True, timeout=120, check=True)
    except (subprocess.SubprocessError, OSError):
        return None
    finally:
        subprocess.run([*psql, "-c", f"DROP SCHEMA IF EXISTS {schema} CASCADE"], capture_output=True, timeout=60)
    sizes = (line.split("|") for line in done.stdout.splitlines() if "|" in line)
    return {name: int(size) / entries for name, size in sizes}


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    """Measure every constant and print them as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.constants", description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000, help="entries of each kind (default 20000)")
    args = parser.parse_args(argv)
    found = {
        "entries": args.entries,
        "redis": redis_constants(args.entries),
        "sqlite": sqlite_constants(args.entries),
        "postgresql": postgresql_constants(args.entries),
    }
    print(json.dumps(found, indent=1))
    return found


if __name__ == "__main__":
    main()
