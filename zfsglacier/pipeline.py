"""Threads between stages, so that reading, hashing, (de)compressing, sealing and writing overlap.

Every heavy step here (file I/O, hashlib, zstd/bz2/lzma, PyCryptodome's AES via ctypes) releases
the GIL, so plain threads use both cores.  Queues are short: memory stays at a few pieces per stage.
An exception in a stage thread is re-raised in the thread that consumes from it, so errors surface
exactly where they would in a sequential program (and nothing after a failed piece is passed on).
"""

import io
import queue
import threading

_END = object()


class ReadAhead(io.RawIOBase):
    """A reader that calls ``produce()`` (bytes; b"" at the end) on its own thread, ``depth`` pieces ahead."""

    def __init__(self, produce, depth=3):
        self._produce = produce
        self._q = queue.Queue(depth)
        self._stop = threading.Event()
        self._cur = b""
        self._pos = 0
        self._done = False
        self._thread = threading.Thread(target=self._run, name="zg-read-ahead", daemon=True)
        self._thread.start()

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self):
        try:
            while True:
                piece = self._produce()
                if not self._put(piece) or not piece:
                    return
        except BaseException as err:  # handed to the consumer, raised there
            self._put(err)

    def readable(self):
        return True

    def read_piece(self):
        """The next piece as produced (no copy); b"" at the end."""
        if self._pos < len(self._cur):
            out, self._cur, self._pos = self._cur[self._pos:], b"", 0
            return out
        if self._done:
            return b""
        item = self._q.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if not item:
            self._done = True
        return item

    def readinto(self, b):
        if self._pos >= len(self._cur):
            self._cur, self._pos = self.read_piece(), 0
            if not self._cur:
                return 0
        n = min(len(b), len(self._cur) - self._pos)
        b[:n] = memoryview(self._cur)[self._pos:self._pos + n]
        self._pos += n
        return n

    def close(self):
        self._stop.set()
        super().close()


class WriteBehind:
    """Writes pieces to ``out`` on its own thread (updating ``hasher`` first, if given).

    A failure of ``out`` (e.g. a broken pipe) is raised by the next ``write`` or by ``close``.
    """

    def __init__(self, out, hasher=None, depth=3):
        self._out = out
        self._hasher = hasher
        self._q = queue.Queue(depth)
        self._error = None
        self.length = 0
        self._thread = threading.Thread(target=self._run, name="zg-write-behind", daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            item = self._q.get()
            if item is _END:
                return
            if self._error is not None:
                continue  # drain: the producer learns of the error on its next write
            try:
                if self._hasher is not None:
                    self._hasher.update(item)
                if self._out is not None:
                    self._out.write(item)
            except BaseException as err:
                self._error = err

    def write(self, data):
        if self._error is not None:
            raise self._error
        self._q.put(data)
        self.length += len(data)
        return len(data)

    def close(self):
        """Wait for every piece to be written; raise what went wrong, if anything."""
        if self._thread.is_alive():
            self._q.put(_END)
            self._thread.join()
        if self._error is not None:
            raise self._error
