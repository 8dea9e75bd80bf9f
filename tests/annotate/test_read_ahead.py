"""The read-ahead an import parses with: in order, in its own thread, only in the waits."""

import sys
import threading
import time

import pytest

from annotate.read_ahead import GROUP, database_wait, read_ahead


class Counted:
    """0, 1, 2, ... up to `stop` (or on), noting how many were taken and by which threads."""

    def __init__(self, stop: int | None = None, fail_at: int | None = None):
        self.stop, self.fail_at = stop, fail_at
        self.taken = 0
        self.threads: set[int] = set()

    def __iter__(self):
        while self.stop is None or self.taken < self.stop:
            if self.taken == self.fail_at:
                raise ValueError(f"item {self.taken} is bad")
            self.threads.add(threading.get_ident())
            self.taken += 1
            yield self.taken - 1


def reader_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "read-ahead"]


def eventually(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_the_items_come_in_order_taken_by_another_thread():
    items = Counted(stop=1000)
    with read_ahead(items, limit=100) as ahead:
        assert list(ahead) == list(range(1000))
    assert items.threads and threading.get_ident() not in items.threads
    assert reader_threads() == []


def test_an_exception_comes_after_the_items_read_before_it():
    got = []
    with pytest.raises(ValueError, match="item 150 is bad"), read_ahead(
            Counted(fail_at=150), limit=1000) as ahead:
        for item in ahead:
            got.append(item)
    assert got == list(range(150))
    assert reader_threads() == []


def test_items_that_cannot_be_iterated_are_refused_here_not_waited_for():
    """The error comes to the consumer (the reader's thread must not die with it unsaid)."""
    with pytest.raises(TypeError), read_ahead(42, limit=10) as ahead:
        next(ahead)
    assert reader_threads() == []


@pytest.mark.parametrize("fail_at", [0, GROUP, GROUP + 1])
def test_an_exception_first_in_a_group_is_raised_as_it_is(fail_at):
    """Raised before the first item of a group is taken: nothing is handed over but the
    exception, which must come through as it is."""
    with pytest.raises(ValueError, match=f"item {fail_at} is bad"), read_ahead(
            Counted(fail_at=fail_at), limit=1000) as ahead:
        assert list(ahead) == list(range(fail_at))
    assert reader_threads() == []


def test_leaving_early_stops_the_reader_within_its_limit():
    items = Counted()  # endless
    with read_ahead(items, limit=50) as ahead:
        assert next(ahead) == 0
        with database_wait():  # let it read up to its limit past the group in hand
            assert eventually(lambda: items.taken == 100)
            time.sleep(0.05)
    assert reader_threads() == []
    assert items.taken == 100


def test_the_reader_takes_items_only_while_this_thread_waits():
    """Outside a wait, the thread's work is not shared with the parser: no item is taken."""
    items = Counted(stop=10_000)
    with read_ahead(items, limit=5000) as ahead:
        assert next(ahead) == 0  # waiting for it let the reader take a group
        taken = items.taken
        time.sleep(0.2)  # this thread is busy (not waiting on the database)
        assert items.taken == taken
        with database_wait():
            assert eventually(lambda: items.taken > taken + GROUP)
        taken = items.taken
        time.sleep(0.2)
        assert items.taken == taken  # the turn is back: the reader stopped at once
        assert list(ahead) == list(range(1, 10_000))


def test_a_wait_without_a_read_ahead_just_waits_and_the_switch_interval_is_restored():
    before = sys.getswitchinterval()
    with database_wait():
        pass
    with read_ahead(iter(range(3)), limit=2) as ahead:
        assert sys.getswitchinterval() < before
        assert list(ahead) == [0, 1, 2]
    assert sys.getswitchinterval() == before
    with database_wait():  # the read-ahead is gone: nothing to lend the turn to
        pass
