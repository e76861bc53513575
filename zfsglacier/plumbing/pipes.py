"""Plumbing for filters that sit in Unix pipes: big pipe buffers, peeking, exact reads."""

import fcntl
import os
import stat

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_SIZE = 1 << 20  # 1 MiB pipes more than double a Python copy loop's throughput (field notes)
IO_SIZE = 1 << 20


def widen_pipe(fileobj):
    """Raise a pipe's kernel buffer to 1 MiB; silently keep the default where not allowed."""
    try:
        fd = fileobj.fileno()
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, ValueError, AttributeError):
        pass


class PeekReader:
    """A binary reader that can look at its first bytes before deciding how to read them.

    The filters must sniff the input (zfsglacier archive? 2013 archive? ZFS stream?) without
    losing those bytes, and stdin cannot seek.
    """

    def __init__(self, raw):
        self._raw = raw
        self._head = b""

    def peek(self, n):
        """Up to n bytes from the current position, fewer only at end of input."""
        while len(self._head) < n:
            piece = self._raw.read(max(n - len(self._head), IO_SIZE))
            if not piece:
                break
            self._head += piece
        return self._head[:n]

    def read(self, n=-1):
        if self._head:
            if n is None or n < 0:
                out, self._head = self._head + self._raw.read(), b""
                return out
            out, self._head = self._head[:n], self._head[n:]
            return out
        if n is None or n < 0:
            return self._raw.read()
        return self._raw.read(n)

    def readinto(self, buf):
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)


def read_full(src, n):
    """Read n bytes, fewer only at end of input (pipes return short reads)."""
    buf = bytearray()
    while len(buf) < n:
        piece = src.read(n - len(buf))
        if not piece:
            break
        buf += piece
    return bytes(buf)


def big_buffers_from_mmap(threshold=8 << 20):
    """Have glibc give buffers of ``threshold`` bytes and more their own mmap, returned on free.

    Transfers pass 16 MiB parts between threads; with glibc's default (a threshold that rises as
    big blocks are freed) those land in per-thread arenas that only grow: zg-fetch of 4 GB peaked
    at 230 MiB.  With a fixed threshold it stays near 110 MiB and runs faster.  (The filters'
    1-4 MiB pieces are better left to the arenas: measured slower there.)
    """
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").mallopt(-3, threshold)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass
