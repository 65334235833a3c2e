"""The bounded memo behind the claim reader and the Redis codec, read and filled by many threads."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from authx_epoch._memo import Memo


@pytest.fixture
def eager_thread_switches() -> Iterator[None]:
    # Switch threads every microsecond so two evictions of the same entry really interleave.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_keeps_the_newest_entries_up_to_its_size() -> None:
    memo: Memo[int, str] = Memo(3)
    for key in range(10):
        memo.put(key, str(key))
    assert list(memo) == [7, 8, 9]
    assert memo.get(9) == "9"
    assert memo.get(0) is None


def test_size_zero_keeps_nothing() -> None:
    memo: Memo[str, int] = Memo(0)
    memo.put("a", 1)
    assert len(memo) == 0
    assert memo.get("a") is None


@pytest.mark.usefixtures("eager_thread_switches")
def test_many_threads_filling_a_full_memo_never_fail_and_it_stays_bounded() -> None:
    # The Redis codec's process-wide memo once raised KeyError here: two threads evicted the same
    # oldest entry, and the second `del` failed a user's bump.
    memo: Memo[tuple[int, int], int] = Memo(4)
    errors: list[BaseException] = []

    def fill(thread: int) -> None:
        try:
            for key in range(5_000):
                memo.put((thread, key), key)
        except BaseException as error:  # any failure is the finding
            errors.append(error)

    threads = [threading.Thread(target=fill, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(memo) <= 4 + len(threads)
