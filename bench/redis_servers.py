"""Throwaway redis-server processes for the benchmarks: one plain server and a 3-master cluster.

The bench starts its own servers so that command counts and memory figures see nothing but the
bench's own traffic.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis


def redis_server_binary() -> str | None:
    """The path of ``redis-server``, or ``None`` when it is not installed."""
    return shutil.which("redis-server")


def free_port(below: int = 65536) -> int:
    """A TCP port on loopback that nothing listens on right now, lower than ``below``."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port < below:
            return port


#: A cluster node also listens on its port + 10000, so its port must leave room for that.
_CLUSTER_PORT_LIMIT = 55536


@dataclass
class RedisServer:
    """One redis-server process on loopback."""

    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def url(self) -> str:
        """The server's ``redis://`` URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A blocking client of this server."""
        return redis.Redis(port=self.port)

    def command(self, *args: object) -> Any:
        """Run one command on this server and return Redis' reply."""
        client = self.client()
        try:
            return client.execute_command(*args)  # type: ignore[no-untyped-call]
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server and forget its files."""
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_server(*extra: str) -> RedisServer:
    """Start a redis-server without persistence on a free port and wait until it answers PING."""
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    directory = Path(tempfile.mkdtemp(prefix="authx-epoch-bench-redis-"))
    port = free_port(_CLUSTER_PORT_LIMIT if "--cluster-enabled" in extra else 65536)
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", str(directory), *extra]
    log = open(directory / "redis.log", "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    server = RedisServer(port, process, directory)
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis(port=port, socket_connect_timeout=0.2).ping():
                return server
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                output = (directory / "redis.log").read_text(errors="replace")[-500:]
                server.stop()
                raise RuntimeError(f"redis-server did not start on port {port}: {output}") from None
            time.sleep(0.05)


@dataclass
class RedisCluster:
    """A Redis Cluster of three masters, no replicas, on loopback."""

    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The store URL of the cluster (``redis+cluster://h:p,h:p,h:p``)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


def start_cluster(masters: int = 3) -> RedisCluster:
    """Start ``masters`` cluster-enabled servers, assign the slots and wait until the cluster is ok."""
    cluster = RedisCluster()
    try:
        for _ in range(masters):
            cluster.nodes.append(start_server("--cluster-enabled", "yes", "--cluster-node-timeout", "2000"))
        slots = 16384
        share = slots // masters
        for index, node in enumerate(cluster.nodes):
            first = index * share
            last = slots - 1 if index == masters - 1 else first + share - 1
            node.command("CLUSTER", "ADDSLOTSRANGE", first, last)
        head = cluster.nodes[0]
        for node in cluster.nodes[1:]:
            node.command("CLUSTER", "MEET", "127.0.0.1", head.port)
        deadline = time.monotonic() + 20
        while True:
            states = [node.command("CLUSTER", "INFO") for node in cluster.nodes]
            if all(b"cluster_state:ok" in state for state in states):
                return cluster
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise


@contextlib.contextmanager
def servers(with_cluster: bool = True) -> Iterator[tuple[RedisServer | None, RedisCluster | None, list[str]]]:
    """Start the bench's Redis servers; yields ``(server, cluster, notes)`` with ``None`` for what could not start."""
    notes: list[str] = []
    server: RedisServer | None = None
    cluster: RedisCluster | None = None
    if redis_server_binary() is None:
        notes.append("redis-server is not installed: the Redis variants were skipped")
    else:
        server = start_server()
        if with_cluster:
            try:
                cluster = start_cluster()
            except RuntimeError as exc:
                notes.append(f"Redis Cluster skipped: {exc}")
    try:
        yield server, cluster, notes
    finally:
        if cluster is not None:
            cluster.stop()
        if server is not None:
            server.stop()
