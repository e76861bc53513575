"""Threads, in four shapes only: every module that overlaps work uses these, and nothing else.

``OrderedMap``  fn(item) on N worker threads, results handed out in the order items went in, at
                most ``depth`` items in and not yet handed out (that is the memory bound).
``BoundedPool`` fn(item) on N worker threads for effect, in any order, at most N items in
                flight: a slot frees as soon as any item is done (uploads of parts, where one
                slow part must not hold the others up as an ordered map would).
``Source`` / ``Sink``  one function on one thread of its own, joined to the caller by a short
                queue: a Source's thread produces items the caller takes, a Sink's thread consumes
                items the caller puts.
``InOrder``     consume(piece) on pieces numbered 1, 2, 3... in that order, run by whichever
                worker completes the sequence (a sequential hash of ranges fetched in parallel,
                off the reading thread); ``wait(n)`` until piece n is consumed.

The rules, the same everywhere:
- An error of a thread is raised in the caller, in order: by OrderedMap.next() when that item's
  turn comes, by BoundedPool.submit()/join() (the first error; items not begun then are skipped), by Source.get() after every item produced before it, by Sink.put()/finish() (a
  Sink consumes nothing after a failure, so a later item is never written after a lost one).
- Nothing waits without bound on a side that has gone: closing a Source makes its thread's next
  emit() raise Stopped; closing an OrderedMap cancels what has not started and waits for what has.
- Queues are short (a few items), so memory stays a few items per stage.

Plain threads use both cores because every heavy step (hashlib, zstd/bz2/lzma, PyCryptodome's
AES, file and socket I/O) releases the GIL.
"""

from __future__ import annotations

import collections
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

END = object()  # what Source.get() returns once the thread's function has returned


class Stopped(Exception):
    """Raised in a Source's thread by emit() once the caller closed the Source."""


class OrderedMap:
    """``fn(item)`` on ``workers`` threads; ``next()`` returns ``(tag, result)`` in submission order."""

    def __init__(self, fn: Callable[[Any], Any], workers: int, *, depth: Optional[int] = None,
                 name: str = "zg-worker"):
        workers = max(1, int(workers))
        self._fn = fn
        self.depth = depth or workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._queue: collections.deque = collections.deque()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def full(self) -> bool:
        """``depth`` items are in and not handed out: take one with next() before submitting."""
        return len(self._queue) >= self.depth

    @property
    def ready(self) -> bool:
        """The oldest item's result is there (next() would not wait)."""
        return bool(self._queue) and self._queue[0][1].done()

    def submit(self, item: Any, tag: Any = None) -> None:
        self._queue.append((tag, self._pool.submit(self._fn, item)))

    def next(self) -> tuple[Any, Any]:
        """(tag, result) of the oldest item, waiting for it; its exception is raised here."""
        tag, future = self._queue.popleft()
        return tag, future.result()

    def first_error(self) -> Optional[BaseException]:
        """An exception some finished item raised, if any (to stop a producer early)."""
        for _, future in self._queue:
            if future.done() and not future.cancelled() and future.exception() is not None:
                return future.exception()
        return None

    def close(self) -> None:
        """Cancel the items not started, wait for those running; results not taken are dropped."""
        for _, future in self._queue:
            future.cancel()
        self._queue.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def abandon(self) -> None:
        """Drop everything and wait for nothing: for a finalizer, which must take no lock that
        another pool may hold in the thread the garbage collector interrupted."""
        for _, future in self._queue:
            future.cancel()
        self._queue.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def parallel_map(fn: Callable[[Any], Any], items, workers: int) -> list:
    """[fn(item) for item in items] on ``workers`` threads (OrderedMap, ``workers`` ahead)."""
    out = []
    with OrderedMap(fn, workers) as m:
        for item in items:
            if m.full:
                out.append(m.next()[1])
            m.submit(item)
        while len(m):
            out.append(m.next()[1])
    return out


class BoundedPool:
    """``fn(item)`` on ``workers`` threads, at most ``workers`` items in flight (``submit`` waits
    for a free slot); the first error is raised by the next ``submit()`` and by ``join()``, and
    items that had not begun by then are skipped."""

    def __init__(self, fn: Callable[[Any], None], workers: int, *, name: str = "zg-pool"):
        self._fn = fn
        self._workers = max(1, int(workers))
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix=name)
        self._slots = threading.Semaphore(self._workers)
        self._lock = threading.Lock()
        self._futures: list = []
        self._in_flight = 0
        self.in_flight_peak = 0  # the most items that ran at once
        self.error: Optional[BaseException] = None

    def submit(self, item: Any) -> None:
        self._slots.acquire()
        if self.error is not None:
            self._slots.release()
            raise self.error
        with self._lock:
            self._in_flight += 1
            self.in_flight_peak = max(self.in_flight_peak, self._in_flight)
        self._futures = [f for f in self._futures if not f.done()]
        self._futures.append(self._pool.submit(self._run, item))

    def check(self) -> None:
        """Raise the first error, if an item has failed."""
        if self.error is not None:
            raise self.error

    def _run(self, item: Any) -> None:
        try:
            if self.error is None:
                self._fn(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the submitting thread
            with self._lock:
                if self.error is None:
                    self.error = exc
        finally:
            with self._lock:
                self._in_flight -= 1
            self._slots.release()

    def join(self) -> None:
        """Wait for every item; raise the first error, if any."""
        self.close()
        self.check()

    def close(self) -> None:
        """Wait for the items in flight (none is begun after this)."""
        for future in self._futures:
            future.exception()
        self._futures.clear()
        self._pool.shutdown(wait=True)


class Source:
    """``run(emit)`` on a thread of its own; the caller takes what it emits with ``get()``."""

    def __init__(self, run: Callable[[Callable[[Any], None]], None], *, depth: int = 3,
                 name: str = "zg-source"):
        self._q: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._ended = False

        def main():
            try:
                run(self.emit)
                self._put(END)
            except Stopped:
                pass
            except BaseException as err:  # noqa: BLE001 - raised by get(), in the caller
                try:
                    self._put(_Failure(err))
                except Stopped:
                    pass

        self._thread = threading.Thread(target=main, name=name, daemon=True)
        self._thread.start()

    def emit(self, item: Any) -> None:
        """Hand ``item`` to the caller (in the thread); waits while the queue is full, raises
        Stopped once the caller has closed."""
        self._put(item)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        raise Stopped

    def get(self) -> Any:
        """The next item emitted, END once ``run`` has returned; its exception instead, in order."""
        if self._ended:
            return END
        item = self._q.get()
        if item is END:
            self._ended = True
        elif isinstance(item, _Failure):
            self._ended = True
            raise item.err
        return item

    def close(self) -> None:
        """Stop the thread at its next emit (it is not waited for)."""
        self._stop.set()

    def join(self) -> None:
        """Wait for the thread to end; raise its error, if it had one (items still queued are
        dropped: use this when nothing is emitted)."""
        while self.get() is not END:
            pass
        self._thread.join()


class Sink:
    """``consume(item)`` on a thread of its own for every ``put(item)``, in order."""

    def __init__(self, consume: Callable[[Any], None], *, depth: int = 3, name: str = "zg-sink"):
        self._q: queue.Queue = queue.Queue(depth)
        self._error: Optional[BaseException] = None

        def main():
            while True:
                item = self._q.get()
                if item is END:
                    return
                if self._error is not None:
                    continue  # drain: the caller learns of the error on its next put
                try:
                    consume(item)
                except BaseException as err:  # noqa: BLE001 - raised by put()/finish()
                    self._error = err

        self._thread = threading.Thread(target=main, name=name, daemon=True)
        self._thread.start()

    def put(self, item: Any) -> None:
        if self._error is not None:
            raise self._error
        self._q.put(item)

    def finish(self) -> None:
        """Wait until every item is consumed; raise what went wrong, if anything."""
        if self._thread.is_alive():
            self._q.put(END)
            self._thread.join()
        if self._error is not None:
            raise self._error


class InOrder:
    """Feed pieces numbered 1, 2, 3... from any threads, in any order; ``consume`` sees them in
    number order, called by the thread whose piece made the sequence contiguous (the others leave
    theirs and go on), one call at a time.  ``wait(n)`` blocks until piece n has been consumed:
    a reader that waits for each piece before handing it out never holds more than the pieces
    in flight.  Measured (zg-fetch of 512 MB from Ceph RGW): the whole object's SHA-256 took
    0.6 s on the reading thread, now spread over the fetching threads while they wait on the
    network."""

    def __init__(self, consume: Callable[[Any], None], first: int = 1):
        self._consume = consume
        self._next = first  # the number consume needs next
        self._waiting: dict[int, Any] = {}
        self._busy = False  # a thread is consuming (outside the lock)
        self._cond = threading.Condition()
        self._error: Optional[BaseException] = None

    def feed(self, n: int, piece) -> None:
        with self._cond:
            self._waiting[n] = piece
            if self._busy:
                return
            self._busy = True
        while True:
            with self._cond:
                piece = self._waiting.pop(self._next, None) if self._error is None else None
                if piece is None:
                    self._busy = False
                    self._cond.notify_all()
                    return
            try:
                self._consume(piece)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiter
                with self._cond:
                    self._error = exc
            with self._cond:
                self._next += 1
                self._cond.notify_all()

    def wait(self, n: int) -> None:
        """Until piece n is consumed; its consumer's error, if it failed."""
        with self._cond:
            while self._next <= n and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self._error


class _Failure:
    def __init__(self, err: BaseException):
        self.err = err
