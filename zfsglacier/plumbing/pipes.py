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


def one_malloc_arena():
    """Have glibc's malloc keep one arena for all threads, so memory freed by one thread is
    used again by the next, whichever it is.

    Parts of 16 MiB pass between threads; with glibc's default (an arena per thread, up to 8 per
    core, and a mmap threshold that rises as big blocks are freed) each arena kept its own freed
    parts: zg-backup peaked at 213, 246 and 260 MiB for 1.2, 4.7 and 17.2 GB streams, zg-fetch of
    4 GB at 230 MiB.  Giving big buffers their own mmap (a fixed M_MMAP_THRESHOLD) bounded that
    but made the kernel zero every new part: zg-backup of the 592 MB bench stream took 3.0-3.5 s
    instead of 2.4-2.8 s.  One arena (M_ARENA_MAX) bounds it too and is the fastest of the three:
    2.4-2.5 s, zg-restore 1.46 s against 1.55-1.89 (make bench rows, 2026-12-04).  Most threads
    that allocate hold Python's lock while they do, so one arena's lock costs little (the rows above
    got faster, not slower).  With one arena alone zg-backup still rose from 176 to 207 MiB between
    1.2 and 17.2 GB: the file store's read-back made a new 16 MiB object per part; it fills
    buffers used again now (PartBuffers), and the peak stayed at 171-200 MiB.  Call it before
    starting threads.
    """
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").mallopt(-8, 1)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass
