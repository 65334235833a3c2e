"""``python -m bench``: run every benchmark in one go and print ratios against the floor.

Results go to ``bench/results/latest.json`` (and a timestamped copy) and the plot to
``docs/assets/benchmarks.png``. ``--quick`` runs a few iterations of everything (the smoke test
uses it); nothing asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import redis

from bench import asgi, check, commands, report, server, spread, storage
from bench.redis_servers import RedisCluster, RedisServer, servers
from bench.variants import BY_NAME, VARIANTS, Built, Environment, Variant, build, prepare, unavailable

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("check", "asgi", "server", "commands", "spread", "storage")


def _version(command: list[str]) -> Optional[str]:
    if shutil.which(command[0]) is None:
        return None
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else None


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    packages: dict[str, Optional[str]] = {}
    for name in ("authx-epoch", "authx", "fastapi", "starlette", "pyjwt", "redis", "hiredis", "uvicorn", "httpx"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    cpus = os.cpu_count()
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return {
        "commit": commit.stdout.strip() or None,
        "summary": f"{cpus} CPUs, Python {platform.python_version()}, {platform.system()} {platform.machine()}",
        "cpus": cpus,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor(),
        "packages": packages,
        "redis_server": _version(["redis-server", "--version"]),
        "wrk": _version(["wrk", "--version"]),
    }


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few iterations of everything (smoke run)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds in-process (default 15, quick 1)")
    parser.add_argument("--server-rounds", type=int, help="interleaved rounds through uvicorn (default 5, quick 1)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--variants", default="", help="comma-separated variant names (default: all)")
    parser.add_argument("--server-variants", default="", help="variants behind uvicorn (default: as --variants)")
    parser.add_argument("--workers", type=int, help="uvicorn workers per server (default 2, quick 1)")
    parser.add_argument("--duration", type=float, help="seconds per load-generator run (default 3, quick 0.3)")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--storage-users", type=int, help="users in the storage headline (default 100000)")
    parser.add_argument("--growth-users", type=int, help="users in the storage growth table (default 1000)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where the JSON goes")
    parser.add_argument("--plot", type=Path, help="the PNG (default docs/assets/benchmarks.png; quick: in --out)")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 15)
    args.server_rounds = args.server_rounds or (1 if quick else 5)
    args.workers = args.workers or (1 if quick else 2)
    args.duration = args.duration or (0.3 if quick else 3.0)
    args.storage_users = args.storage_users or (300 if quick else 100_000)
    args.growth_users = args.growth_users or (20 if quick else 1_000)
    if args.plot is None:
        args.plot = args.out / "quick.png" if quick else ROOT / "docs" / "assets" / "benchmarks.png"
    args.section_list = [name for name in args.sections.split(",") if name]
    unknown = set(args.section_list) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {sorted(unknown)}")
    return args


def _nodes(
    variants: Sequence[Variant], server_: Optional[RedisServer], cluster: Optional[RedisCluster]
) -> dict[str, list[redis.Redis]]:
    nodes: dict[str, list[redis.Redis]] = {}
    for variant in variants:
        if variant.name in ("seed-redis", "epoch-redis", "epoch-redis-cache") and server_ is not None:
            nodes[variant.name] = [server_.client()]
        elif variant.name == "epoch-cluster" and cluster is not None:
            nodes[variant.name] = [node.client() for node in cluster.nodes]
    return nodes


@contextlib.contextmanager
def _section(title: str, timings: dict[str, float]) -> Iterator[None]:
    print(f"· {title} …", file=sys.stderr, flush=True)
    started = time.perf_counter()
    yield
    timings[title] = round(time.perf_counter() - started, 2)


async def _in_process(
    args: argparse.Namespace,
    variants: Sequence[Variant],
    env: Environment,
    nodes: dict[str, list[redis.Redis]],
    timings: dict[str, float],
) -> dict[str, Any]:
    built: list[Built] = [build(variant, env) for variant in variants]
    results: dict[str, Any] = {}
    try:
        for item in built:
            await asgi.verify(item, env.tokens[item.variant.name])
        if "check" in args.section_list:
            with _section("per check", timings):
                results["check"] = await check.run(built, env.tokens, args.rounds, args.quick)
        if "asgi" in args.section_list:
            with _section("per request, in-process ASGI", timings):
                results["asgi"] = await asgi.run(built, env.tokens, args.rounds, args.quick)
        if "commands" in args.section_list:
            with _section("Redis commands per check", timings):
                results["commands"] = await commands.run(built, env.tokens, nodes, 20 if args.quick else 1_000)
    finally:
        for item in built:
            await item.close()
    return results


def run(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run the benchmarks the command line asks for; returns (and writes) the results."""
    args = parse(argv)
    wanted = {name for name in args.variants.split(",") if name}
    selected = [variant for variant in VARIANTS if not wanted or variant.name in wanted]
    needs_redis = any(variant.needs for variant in selected) or "storage" in args.section_list
    results: dict[str, Any] = {
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "settings": {
            key: getattr(args, key)
            for key in (
                "quick",
                "rounds",
                "server_rounds",
                "workers",
                "duration",
                "generator",
                "storage_users",
                "growth_users",
            )
        },
        "skipped": {},
        "notes": [],
        "timings_s": {},
    }
    with (
        tempfile.TemporaryDirectory(prefix="authx-epoch-bench-") as directory,
        servers(with_cluster=needs_redis and any(variant.needs == "cluster" for variant in selected)) as (
            redis_server,
            cluster,
            notes,
        ),
    ):
        results["notes"] += notes
        env = Environment(
            directory=directory,
            redis_url=redis_server.url if redis_server else None,
            cluster_url=cluster.url if cluster else None,
        )
        runnable = []
        for variant in selected:
            reason = unavailable(variant, env)
            if reason:
                results["skipped"][variant.name] = reason
                continue
            prepare(variant, env)
            runnable.append(variant)
        results["variants"] = [variant.name for variant in runnable]
        nodes = _nodes(runnable, redis_server, cluster)
        results.update(asyncio.run(_in_process(args, runnable, env, nodes, results["timings_s"])))
        if "server" in args.section_list:
            served = {name for name in args.server_variants.split(",") if name}
            behind = [variant for variant in runnable if not served or variant.name in served]
            with _section("through uvicorn", results["timings_s"]):
                results["server"] = server.run(
                    behind, env, args.server_rounds, args.duration, args.workers, args.generator
                )
        if "spread" in args.section_list:
            if redis_server is None or unavailable(BY_NAME["epoch-redis-cache"], env):
                results["notes"].append("spread skipped: no redis-server or no local cache")
            else:
                shape = spread.Spread(users=50, tokens=200, seconds=2.0) if args.quick else spread.Spread()
                with _section("local cache on a realistic spread", results["timings_s"]):
                    results["spread"] = asyncio.run(spread.run(redis_server.url, redis_server.client(), shape))
        if "storage" in args.section_list:
            if redis_server is None:
                results["notes"].append("storage skipped: no redis-server")
            elif unavailable(VARIANTS[5], env):
                results["notes"].append("storage skipped: the Redis store is not importable")
            else:
                with _section("storage in Redis", results["timings_s"]):
                    results["storage"] = storage.run(
                        redis_server.client(), redis_server.url, args.storage_users, args.growth_users
                    )
                results["notes"].append(
                    "storage headline: authx-epoch issues each user's first token through the store; later tokens "
                    "of the same user write nothing (the growth table issues every token to show it)"
                )
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str)
    # A quick run never overwrites the figures of a full one.
    (args.out / ("quick.json" if args.quick else "latest.json")).write_text(text, encoding="utf-8")
    if not args.quick:
        (args.out / f"run-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(text, encoding="utf-8")
    if not args.no_plot:
        why_not = report.plot(results, args.plot)
        if why_not:
            results["notes"].append(why_not)
    print(report.text_table(results))
    return results


if __name__ == "__main__":
    run()
