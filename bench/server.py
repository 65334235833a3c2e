"""Through a real server: uvicorn with several workers per variant, driven from a second process.

Every variant gets its own uvicorn (started once, all at the same time) on a loopback port; the
load generator (wrk when installed, else ``bench.loadgen``) then visits them in interleaved
rounds. Reports requests per second (and its ratio to the floor of the same round) and p50/p99
latency. ``create_app`` is the factory the uvicorn workers import.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from bench.redis_servers import free_port
from bench.stats import ratios, summary
from bench.variants import Environment, Variant, build, environment_from_os

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 32


def create_app() -> FastAPI:
    """The app of one uvicorn worker: the variant named in the environment."""
    variant, env = environment_from_os()
    return build(variant, env).app


@contextmanager
def running(variants: Sequence[Variant], env: Environment, workers: int) -> Iterator[dict[str, int]]:
    """Start one uvicorn per variant and yield their ports once every one answers."""
    processes: list[subprocess.Popen[bytes]] = []
    ports: dict[str, int] = {}
    try:
        for variant in variants:
            port = free_port()
            environ = {
                **os.environ,
                "AUTHX_EPOCH_BENCH_VARIANT": variant.name,
                "AUTHX_EPOCH_BENCH_ENV": json.dumps(dataclasses.asdict(env)),
                "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            }
            command = [sys.executable, "-m", "uvicorn", "bench.server:create_app", "--factory"]
            command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
            command += ["--log-level", "warning", "--no-access-log"]
            processes.append(subprocess.Popen(command, cwd=ROOT, env=environ, stdout=subprocess.DEVNULL))
            ports[variant.name] = port
        started = time.perf_counter()
        for name, port in ports.items():
            _wait_ready(name, port, env.tokens[name])
        print(f"  {len(ports)} servers ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _status(port: int, path: str, token: str | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def _wait_ready(name: str, port: int, tokens: list[str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if _status(port, "/health") == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn for {name} did not start")
        time.sleep(0.1)
    if _status(port, "/protected", tokens[0]) != 200:
        raise RuntimeError(f"{name}: the server refused the accepted token")
    if name != "floor" and _status(port, "/protected", tokens[1]) != 401:
        raise RuntimeError(f"{name}: the server accepted the revoked token")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, float]:
    """Requests per second, p50/p99 latency (ms) and non-2xx answers from ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    total = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if not (rps and p50 and p99 and total):
        raise ValueError(f"cannot read wrk's output:\n{output}")
    return {
        "requests": float(total.group(1)),
        "errors": float(errors.group(1)) if errors else 0.0,
        "rps": float(rps.group(1)),
        "p50_ms": _ms(p50.group(1)),
        "p99_ms": _ms(p99.group(1)),
    }


def load(port: int, token: str, duration: float, use_wrk: bool) -> dict[str, float]:
    """Drive one server for ``duration`` seconds from a second process."""
    if use_wrk:
        command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(duration))}s", "--latency"]
        command += ["-H", f"Authorization: Bearer {token}", f"http://127.0.0.1:{port}/protected"]
        return parse_wrk(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    command = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--token", token]
    command += ["--connections", str(CONNECTIONS), "--duration", str(duration)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def run(
    variants: Sequence[Variant], env: Environment, rounds: int, duration: float, workers: int, generator: str
) -> dict[str, Any]:
    """Requests per second and latency of every variant behind uvicorn, in interleaved rounds."""
    use_wrk = generator == "wrk" or (generator == "auto" and shutil.which("wrk") is not None and duration >= 1)
    names = [variant.name for variant in variants]
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    with running(variants, env, workers) as ports:
        if duration >= 1:
            for name in names:
                load(ports[name], env.tokens[name][0], 1.0, use_wrk)  # warm-up
        for round_index in range(rounds):
            shift = round_index % len(names)
            for name in [*names[shift:], *names[:shift]]:
                samples[name].append(load(ports[name], env.tokens[name][0], duration, use_wrk))
    floor = [sample["rps"] for sample in samples.get("floor", [])]
    results: dict[str, Any] = {
        "generator": "wrk" if use_wrk else "bench.loadgen",
        "workers": workers,
        "connections": CONNECTIONS,
        "duration_s": duration,
        "variants": {},
    }
    for name in names:
        rps = [sample["rps"] for sample in samples[name]]
        results["variants"][name] = {
            "rps": summary(rps),
            "ratio": summary(ratios(rps, floor)) if floor else None,
            "p50_ms": summary([sample["p50_ms"] for sample in samples[name]]),
            "p99_ms": summary([sample["p99_ms"] for sample in samples[name]]),
            "errors": sum(sample["errors"] for sample in samples[name]),
        }
    return results
