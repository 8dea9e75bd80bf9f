"""Read an iterator in a thread of its own, but only while its reader waits on the database.

An import on PostgreSQL alternates: parse a batch of the file (the database idle), then write
it and wait while the database checks it (the parser idle). Overlapped, the two take about
the longer of their times, not the sum (bench/README.md, "Issue 19, fifth round"). A plain
producer thread did not overlap them: Python runs one thread at a time, so the parser took
turns with the importer's own work (the rows' formatting as they stream to the database,
the duplicate lookups) and slowed it as much as it saved.

So the parser here runs only in the importer's waits. The importer holds the turn and lends
it while it waits (`database_wait()`, or for the next item when none is parsed yet). The
parser takes items only while the turn is lent, and checks between items, so the importer
has it back within one item of its wait's end. (A plain lock was not enough: the running
parser took it again and again before the woken importer could.)

No Django: the items must not touch the database (a parser reads a file).
"""

import queue
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

# While a read-ahead runs, a thread that wants the interpreter back gets it within this
# (the default 5 ms, at each of an import's waits, cost it more than the overlap saved).
SWITCH_INTERVAL_SECONDS = 0.0005
# Items handed over at once: the handing over costs more than taking an item from a file.
GROUP = 64

_current = threading.local()  # the turn of the read-ahead this thread consumes, if any


@contextmanager
def read_ahead(items: Iterable[T], *, limit: int) -> Iterator[Iterator[T]]:
    """`items`, in order, taken from them by a thread of their own at most `limit` ahead,
    and only in this thread's waits. An exception they raise is raised here, in its place.
    On leaving the block the thread is stopped and joined, however far `items` were read.

    >>> with read_ahead(iter("abc"), limit=2) as letters:
    ...     "".join(letters)
    'abc'
    """
    turn = _Turn()
    room = threading.Semaphore(limit)  # one taken per item read and not yet consumed
    handoff: queue.SimpleQueue = queue.SimpleQueue()  # (list of items, exception or None)
    stopping = threading.Event()

    def produce() -> None:
        try:
            source = iter(items)
            while True:
                room.acquire()
                with turn.borrowed():
                    if stopping.is_set():
                        return
                    group, raised = _taken(source, turn, room)
                handoff.put((group, raised))
                if raised is not None or group[-1] is _END:
                    return
        except BaseException as exc:  # noqa: BLE001 (handed over, raised by the consumer)
            handoff.put(([], exc))

    def consume() -> Iterator[T]:
        while True:
            try:
                group, raised = handoff.get_nowait()
            except queue.Empty:
                with database_wait():  # nothing to do but wait for the parser
                    group, raised = handoff.get()
            if group:  # empty when the items raised first thing
                room.release(len(group))  # this group is the consumer's now
            for item in group:
                if item is _END:
                    return
                yield item
            if raised is not None:
                raise raised

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    previous, interval = getattr(_current, "turn", None), sys.getswitchinterval()
    _current.turn = turn
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL_SECONDS))
    thread.start()
    try:
        yield consume()
    finally:
        stopping.set()
        room.release()  # wake it if it waits for room,
        turn.lend()  # or for the turn, so that it sees it must stop
        thread.join()
        _current.turn = previous
        sys.setswitchinterval(interval)


@contextmanager
def database_wait() -> Iterator[None]:
    """Around a wait on the database: this thread's read-ahead, if any, runs meanwhile."""
    turn = getattr(_current, "turn", None)
    if turn is None:
        yield
        return
    turn.lend()
    try:
        yield
    finally:
        turn.take_back()


def _taken(source: Iterator[T], turn: "_Turn", room: threading.Semaphore,
           ) -> tuple[list, BaseException | None]:
    """Up to GROUP items (the first one's room is taken), while the turn is lent and there
    is room, _END after the last; with the exception that stopped them, if one did."""
    group = []
    try:
        while True:
            item = next(source, _END)
            group.append(item)
            if (item is _END or len(group) >= GROUP or not turn.lent()
                    or not room.acquire(blocking=False)):
                return group, None
    except BaseException as exc:  # noqa: BLE001 (raised by the consumer, after the items)
        return group, exc


class _Turn:
    """Whose turn it is to run: the consumer's, from the start; the parser's while lent."""

    def __init__(self):
        self._lock = threading.Lock()
        self._lock.acquire()
        self._lent = threading.Event()

    def lend(self) -> None:
        self._lent.set()
        self._lock.release()

    def take_back(self) -> None:
        self._lent.clear()  # the parser stops after the item it may be taking...
        self._lock.acquire()  # ...and this waits for that

    def lent(self) -> bool:
        return self._lent.is_set()

    @contextmanager
    def borrowed(self) -> Iterator[None]:
        self._lent.wait()
        with self._lock:
            yield


_END = object()
