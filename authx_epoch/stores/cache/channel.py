"""The invalidation channel: publishing changes on ``<prefix>:changes``, and the subscriber thread.

The subscriber makes ``Memory`` live while it is subscribed and drops the parts each message
names; when the subscription drops it clears everything, so checks go to the store until it is
back. A forked child starts its own subscriber and trusts nothing the parent held.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, Optional

from authx_epoch.stores.cache.changes import Change, decode_message, encode_message
from authx_epoch.stores.cache.memory import Memory

logger = logging.getLogger("authx_epoch")

# Subscriber timing (seconds): how often it pings Redis, and how long a silence means a dead link.
_TICK = 0.1
_MAX_BACKOFF = 1.0


class Channel:
    """Publishes changes on ``<prefix>:changes`` and runs the one subscriber thread of a process.

    One thread serves both the blocking and the asyncio side, whatever event loops come and go;
    it only ever drops entries, so it never holds up a request.
    """

    def __init__(self, client: Any, name: str, memory: Memory) -> None:
        self.client = client
        self.name = name
        self.memory = memory
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()
        self._start_lock = threading.Lock()
        #: Identifies this cache's messages, so that their echo is ignored.
        self.origin = os.urandom(8)
        self.reconnects = 0
        _CHANNELS.add(self)

    def ensure_running(self) -> None:
        """Start the subscriber if it is not running (first check, or first check after a fork)."""
        if (self._thread is not None and self._pid == os.getpid()) or self._stop.is_set():
            return
        with self._start_lock:
            if (self._thread is not None and self._pid == os.getpid()) or self._stop.is_set():
                return
            self._pid = os.getpid()
            thread = threading.Thread(target=self._run, name="authx-epoch-cache", daemon=True)
            thread.start()
            self._thread = thread

    def after_fork(self) -> None:
        """In a forked child: the parent's thread is gone, so nothing here is known to be fresh."""
        # Locks held by a parent's thread at the fork would never be released in the child.
        self.memory.reset_lock()
        self.memory.set_live(False)
        self.origin = os.urandom(8)  # the parent's messages are not the child's own
        self._thread = None
        self._start_lock = threading.Lock()

    def publish(self, changes: Sequence[Change]) -> None:
        """Tell every other process what changed; a failure is logged, the write stands."""
        try:
            self.client.publish(self.name, encode_message(self.origin, changes))
        except Exception as exc:  # the write itself succeeded; others see it within the bound
            logger.warning(
                "authx-epoch local cache: could not publish a change (%s: %s); "
                "other processes see it within their staleness bound",
                type(exc).__name__,
                exc,
            )

    def stop(self) -> None:
        """Stop the subscriber (it exits within one tick) and stop answering from memory."""
        self._stop.set()
        self.memory.set_live(False)

    def _run(self) -> None:
        backoff = _TICK / 2
        while not self._stop.is_set():
            try:
                self._listen()
                backoff = _TICK / 2
            except Exception as exc:  # the thread must outlive any Redis trouble
                if not self._stop.is_set():
                    logger.warning(
                        "authx-epoch local cache: invalidation channel lost (%s: %s); checks go to the store",
                        type(exc).__name__,
                        exc,
                    )
            finally:
                self.memory.set_live(False)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _listen(self) -> None:
        pubsub = self.client.pubsub()
        try:
            pubsub.subscribe(self.name)
            memory = self.memory
            # A silence this long means the link is dead even if the socket looks open (a frozen
            # Redis, a cut network); no answer is ever kept longer than the staleness bound anyway.
            ping_every = max(_TICK, min(1.0, memory.staleness / 2))
            dead_after = 3 * ping_every
            heard = pinged = time.monotonic()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=_TICK)
                moment = time.monotonic()
                if message is not None:
                    heard = moment
                    kind = message.get("type")
                    if kind == "message":
                        origin, changes = decode_message(message.get("data"))
                        # Its own changes were dropped before the write returned; dropping them
                        # again when the echo arrives would only throw away fresher answers.
                        if origin != self.origin:
                            memory.forget(changes)
                    elif kind == "subscribe":
                        # The server now sends us every change: start from nothing. Also seen
                        # when redis-py reconnects on its own, after changes may have been missed.
                        self.reconnects += 1
                        memory.set_live(True)
                if moment - pinged >= ping_every:
                    pubsub.ping("authx-epoch")
                    pinged = moment
                if moment - heard > dead_after:
                    raise TimeoutError(f"no answer from Redis on the invalidation channel for {dead_after:g} s")
        finally:
            self.memory.set_live(False)
            # Closing a broken connection may fail; it is gone either way.
            with contextlib.suppress(Exception):
                pubsub.close()


_CHANNELS: weakref.WeakSet[Channel] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for channel in list(_CHANNELS):
        channel.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
