"""A small HTTP/1.1 load generator on raw asyncio sockets, for machines without wrk.

Run as ``python -m bench.loadgen --port P --token T``; it prints one JSON object: requests,
non-200 answers, requests per second, and p50/p99 latency in milliseconds. Every connection
keeps one request in flight (like wrk), over keep-alive.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from bench.stats import percentile


async def _connection(port: int, request: bytes, deadline: float, latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(1)
    finally:
        writer.close()


async def generate(
    port: int, token: str, connections: int, duration: float, path: str = "/protected"
) -> dict[str, float]:
    """Drive ``http://127.0.0.1:port/path`` for ``duration`` seconds and summarise what it answered."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(*(_connection(port, request, deadline, latencies, errors) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(ordered, 0.50) * 1e3,
        "p99_ms": percentile(ordered, 0.99) * 1e3,
    }


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(generate(args.port, args.token, args.connections, args.duration))))


if __name__ == "__main__":
    main()
