"""Real Redis servers for the tests: a shared one, private ones a test may break, and a 3-master Cluster.

* ``redis_url``: ``$REDIS_URL`` when set; otherwise 127.0.0.1:6379 when it answers; otherwise a
  ``redis-server`` this session starts on a free loopback port. Tests on it get a unique key
  prefix each and never flush it.
* ``private_redis``: a ``redis-server`` of the test's own (free port, no persistence), which the
  test may flush, fill to its memory limit, stop and restart.
* ``redis_cluster``: three ``redis-server --cluster-enabled yes`` masters joined with
  ``redis-cli --cluster create``, once per session.

Where no server can be had, the tests that need one are skipped with one line saying how to run
them, unless ``AUTHX_EPOCH_REQUIRE_REDIS=1`` (set by ``.ci/run``), which makes it a failure.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

HOW_TO_RUN = (
    "no Redis: set REDIS_URL, run redis-server on 127.0.0.1:6379, or put redis-server on PATH "
    "(apt-get install redis-server); AUTHX_EPOCH_REQUIRE_REDIS=1 turns this skip into a failure"
)


def unavailable(reason: str = HOW_TO_RUN) -> None:
    """Skip the test, or fail it when Redis is required."""
    if os.environ.get("AUTHX_EPOCH_REQUIRE_REDIS") == "1":
        pytest.fail(f"{reason} (AUTHX_EPOCH_REQUIRE_REDIS=1)", pytrace=False)
    pytest.skip(reason)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback TCP port nobody listens on right now, whose Cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = random.randint(20000, 50000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free loopback port pair found")


def answers(url: str) -> bool:
    """Whether a Redis answers PING at ``url`` within a short timeout."""
    try:
        import redis
    except ImportError:
        return False
    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class RedisServer:
    """A ``redis-server`` process on a loopback port, which a test may stop and restart on the same port."""

    def __init__(self, directory: Path, *args: str, port: Optional[int] = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.args = args
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            *self.args,
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.01)  # waiting for another process to come up, not for a clock
        return self

    def stop(self) -> None:
        """Kill the server at once (no save), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """Freeze the server: connections stay open but nothing answers (a hung Redis)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, socket_timeout=5)


def _need_binaries(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        unavailable(f"{', '.join(missing)} not on PATH: {HOW_TO_RUN}")


def _need_driver() -> None:
    try:
        import redis  # noqa: F401
    except ImportError:
        unavailable("the redis client is not installed: pip install -e '.[dev]'")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The shared Redis: tests get their own key prefix on it and never flush it."""
    _need_driver()
    env = os.environ.get("REDIS_URL")
    if env:
        if not answers(env):
            unavailable(f"REDIS_URL={env} does not answer PING")
        yield env
        return
    default = "redis://127.0.0.1:6379/0"
    if answers(default):
        yield default
        return
    _need_binaries("redis-server")
    server = RedisServer(tmp_path_factory.mktemp("redis-shared")).start()
    yield server.url
    server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, to flush, evict, stop and restart."""
    _need_driver()
    _need_binaries("redis-server")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.resume() if server.process is not None else None
    server.stop()


class RedisCluster:
    """Three masters on loopback ports, joined into one Cluster."""

    def __init__(self, directory: Path) -> None:
        self.servers = [
            RedisServer(
                directory / f"node{index}",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(directory / f"node{index}" / "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
            )
            for index in range(3)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{server.port}" for server in self.servers)

    def start(self) -> RedisCluster:
        for server in self.servers:
            server.start()
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{server.port}" for server in self.servers),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while not all(self._ok(server) for server in self.servers):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)  # waiting for the nodes to agree, not for a clock
        return self

    @staticmethod
    def _ok(server: RedisServer) -> bool:
        client = server.client()
        try:
            info = client.execute_command("CLUSTER INFO")
        finally:
            client.close()
        state = info.get("cluster_state") if isinstance(info, dict) else None
        return state in ("ok", b"ok") or (isinstance(info, (bytes, str)) and "cluster_state:ok" in str(info))

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster for the whole session; tests use their own key prefix on it."""
    _need_driver()
    _need_binaries("redis-server", "redis-cli")
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
    except (RuntimeError, subprocess.SubprocessError) as exc:
        cluster.stop()
        unavailable(f"could not start a Redis Cluster: {exc}")
    yield cluster
    cluster.stop()


def unique_prefix() -> str:
    """A key prefix no other test uses."""
    return f"authx-epoch-test:{uuid.uuid4().hex}"


#: Timeouts of the stores the shared-server fixtures build (the library's default is 0.25 s).
FORGIVING_TIMEOUTS = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}


@pytest.fixture
def redis_store(redis_url: str) -> Iterator[Any]:
    """A fresh, empty RedisStore on the shared Redis (its own prefix; wiped afterwards)."""
    from authx_epoch.stores.redis import RedisStore

    # Contract tests judge answers, not latency: a forgiving timeout keeps a loaded machine from
    # turning a slow connect into a failure. Timeout behaviour is tested on private servers.
    store = RedisStore.from_url(redis_url, prefix=unique_prefix(), **FORGIVING_TIMEOUTS)
    yield store
    store.sync.wipe()
    store.close()


@pytest.fixture
def cached_redis_store(redis_store: Any) -> Iterator[Any]:
    """``redis_store`` behind the local cache (``LocalCache``): the contract must hold through it too."""
    from authx_epoch.stores.cache import LocalCache

    cache = LocalCache(redis_store)
    yield cache
    cache.close()


@pytest.fixture
def cluster_store(redis_cluster: RedisCluster) -> Iterator[Any]:
    """A fresh, empty RedisStore on the session's Redis Cluster (its own prefix; wiped afterwards)."""
    from authx_epoch.stores.redis import RedisStore

    store = RedisStore.from_url(redis_cluster.url, prefix=unique_prefix(), **FORGIVING_TIMEOUTS)
    yield store
    store.sync.wipe()
    store.close()
