"""Threads between stages, so that reading, hashing, (de)compressing, sealing and writing overlap:
a reader running ahead and a writer running behind, built on concurrency.Source and Sink (whose
rules they follow: errors surface exactly where they would in a sequential program, and nothing
after a failed piece is passed on)."""

import io

from .concurrency import END, Sink, Source


class ReadAhead(io.RawIOBase):
    """A reader that calls ``produce()`` (bytes; b"" at the end) on its own thread, ``depth`` pieces ahead."""

    def __init__(self, produce, depth=3):
        def run(emit):
            while True:
                piece = produce()
                emit(piece)
                if not piece:
                    return

        self._source = Source(run, depth=depth, name="zg-read-ahead")
        self._cur = b""
        self._pos = 0
        self._done = False

    def readable(self):
        return True

    def read_piece(self):
        """The next piece as produced (no copy); b"" at the end."""
        if self._pos < len(self._cur):
            out, self._cur, self._pos = self._cur[self._pos:], b"", 0
            return out
        if self._done:
            return b""
        try:
            item = self._source.get()
        except BaseException:
            self._done = True
            raise
        if item is END or not item:
            self._done = True
            return b""
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
        self._source.close()
        super().close()


class WriteBehind:
    """Writes pieces to ``out`` on its own thread (updating ``hasher`` first, if given).

    A failure of ``out`` (e.g. a broken pipe) is raised by the next ``write`` or by ``close``.
    """

    def __init__(self, out, hasher=None, depth=3):
        def consume(item):
            if hasher is not None:
                hasher.update(item)
            if out is not None:
                out.write(item)

        self._sink = Sink(consume, depth=depth, name="zg-write-behind")
        self.length = 0

    def write(self, data):
        self._sink.put(data)
        self.length += len(data)
        return len(data)

    def close(self):
        """Wait for every piece to be written; raise what went wrong, if anything."""
        self._sink.finish()
