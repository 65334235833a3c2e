"""A smoke run of every benchmark (a few iterations), so the bench cannot rot. Nothing here times anything."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.__main__ import run
from bench.constants import main
from bench.server import parse_wrk
from bench.variants import VARIANTS

WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:8000/protected
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     8.10ms    1.20ms  30.00ms   90.00%
    Req/Sec     3.95k   100.00     4.10k    80.00%
  Latency Distribution
     50%    7.90ms
     75%    8.40ms
     90%    9.10ms
     99%    1.20s
  11850 requests in 3.00s, 1.80MB read
  Non-2xx or 3xx responses: 3
Requests/sec:   3950.12
Transfer/sec:    614.20KB
"""


def test_parse_wrk_reads_rate_latency_and_errors() -> None:
    parsed = parse_wrk(WRK_OUTPUT)
    assert parsed == {"requests": 11850.0, "errors": 3.0, "rps": 3950.12, "p50_ms": 7.9, "p99_ms": 1200.0}


def test_parse_wrk_refuses_output_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="cannot read"):
        parse_wrk("wrk: connection refused")


@pytest.mark.slow
def test_every_benchmark_runs(tmp_path: Path) -> None:
    results = run(
        [
            "--quick",
            "--generator",
            "python",
            "--server-variants",
            "floor,epoch-memory,epoch-sqlite",
            "--out",
            str(tmp_path),
            "--plot",
            str(tmp_path / "plot.png"),
        ]
    )
    assert (tmp_path / "quick.json").is_file()
    measured = results["variants"]
    assert set(measured) | set(results["skipped"]) == {variant.name for variant in VARIANTS}
    assert {"floor", "seed-set", "epoch-memory", "epoch-sqlite"} <= set(measured)
    for name in measured:
        assert results["check"]["variants"][name]["authx_us"]["median"] > 0
        assert results["asgi"][name]["sequential_ratio"]["median"] > 0
        assert results["asgi"][name]["concurrent_ratio"]["median"] > 0
    assert results["asgi"]["floor"]["sequential_ratio"]["median"] == 1.0
    for name in ("floor", "epoch-memory", "epoch-sqlite"):
        served = results["server"]["variants"][name]
        assert served["rps"]["median"] > 0
        assert served["errors"] == 0
    for name in ("pyjwt_hs256_verify", "pyjwt_unverified_decode", "claim_read_memo_miss"):
        assert results["check"]["references"][name]["median"] > 0
    if shutil.which("redis-server") and "epoch-redis" in measured:
        # The server sees one command per check from the client: the whole check is one call.
        assert results["commands"]["epoch-redis"]["commands_per_check"] == 1
        assert sum(results["commands"]["epoch-redis"]["sent"].values()) == 20
        assert results["commands"]["seed-redis"]["sent"] == {"exists": 20}
        # Checks in flight together share round trips on the check connection; redis-py's pool does not.
        assert results["commands"]["epoch-redis"]["concurrent"]["checks_per_round_trip"] > 2
        assert results["commands"]["seed-redis"]["concurrent"]["checks_per_round_trip"] <= 1.5
        shape = results["spread"]
        # Every token was accepted, and the server's count of check scripts is what the caches missed.
        assert shape["refused"] == 0
        assert 0 < shape["store_reads"] < shape["checks"]
        assert shape["hit_rate"] == 1 - shape["store_reads"] / shape["checks"]
        growth = results["storage"]["growth"]
        assert growth[-1]["seed"]["bytes_per_user"] > 10 * growth[-1]["epoch"]["bytes_per_user"]
    if "plot.png" in {path.name for path in tmp_path.iterdir()}:
        assert (tmp_path / "plot.png").stat().st_size > 10_000


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_the_projection_constants_are_measured() -> None:
    found = main(["--entries", "200"])
    redis_found, sqlite_found = found["redis"], found["sqlite"]
    # A session and a revoked jti cost memory of their own; a user's record is its own key.
    assert redis_found["bytes_per_user"] > redis_found["user_key_length"]
    assert redis_found["bytes_per_jti"] > 0
    assert redis_found["bytes_per_session"] > 0
    assert redis_found["check_script_usec"] > 0
    assert redis_found["unpipelined_command_cpu_usec"] > 0
    assert {"epochs", "revoked_tokens", "sessions"} <= set(sqlite_found)
    assert all(size > 0 for size in sqlite_found.values())
