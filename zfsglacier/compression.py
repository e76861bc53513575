"""Compression inside the archive: a parallel block writer and one reader per algorithm.

The writer cuts the input into BLOCK_SIZE blocks and compresses each into an independent frame
(zstd frame, lz4 frame, bzip2 stream, xz stream) on a pool of threads, one per core, like pbzip2.
The frames, concatenated in input order, are an ordinary multi-frame stream of that algorithm:
every reader below reads across frames.  Independent blocks keep memory bounded (workers x 2
blocks in flight) and use all cores for every algorithm.  The header records algorithm and level,
so decrypting needs no flags.
"""

import bz2
import io
import lzma
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import lz4.frame
import zstandard

from .errors import UsageError

DEFAULT = "zstd"
DEFAULT_LEVELS = {"zstd": 3, "lz4": 0, "bz2": 9, "xz": 6, "none": 0}
LEVEL_RANGES = {"zstd": (-7, 22), "lz4": (0, 16), "bz2": (1, 9), "xz": (0, 9), "none": (0, 0)}
ALGORITHMS = tuple(DEFAULT_LEVELS)


def check(algorithm, level):
    if algorithm not in LEVEL_RANGES:
        raise UsageError(f"unknown compression {algorithm!r} (choose from {', '.join(ALGORITHMS)})")
    lo, hi = LEVEL_RANGES[algorithm]
    if level is None:
        level = DEFAULT_LEVELS[algorithm]
    if not lo <= level <= hi:
        raise UsageError(f"{algorithm} level must be between {lo} and {hi}, not {level}")
    return level


BLOCK_SIZE = 4 << 20  # zstd -3's window is 2 MiB, bzip2's block 900 kB: 4 MiB frames lose little


def _frame_function(algorithm, level):
    """A thread-safe function block -> independent compressed frame."""
    if algorithm == "zstd":
        local = threading.local()

        def zstd_frame(block):
            cctx = getattr(local, "cctx", None)
            if cctx is None:
                cctx = local.cctx = zstandard.ZstdCompressor(level=level)
            return cctx.compress(block)
        return zstd_frame
    if algorithm == "lz4":
        return lambda block: lz4.frame.compress(block, compression_level=level)
    if algorithm == "bz2":
        return lambda block: bz2.compress(block, level)
    if algorithm == "xz":
        return lambda block: lzma.compress(block, preset=level)
    if algorithm == "none":
        return None
    raise UsageError(f"unknown compression {algorithm!r}")


class ParallelCompressor(io.RawIOBase):
    """Writable: compresses BLOCK_SIZE blocks on ``workers`` threads, writes frames to ``out`` in order."""

    def __init__(self, algorithm, level, out, workers=-1, block_size=BLOCK_SIZE):
        self._out = out
        self._fn = _frame_function(algorithm, level)
        self._block = block_size
        self._buf = bytearray()
        self._pending = []
        n = workers if workers and workers > 0 else (os.cpu_count() or 1)
        self._depth = 2 * n
        self._pool = ThreadPoolExecutor(n, thread_name_prefix="zg-compress") if self._fn else None

    def writable(self):
        return True

    def write(self, data):
        if self._fn is None:
            return self._out.write(data)
        if not self._buf and len(data) == self._block:
            self._submit(bytes(data))  # the common case: the reader hands over whole blocks
            return len(data)
        self._buf += data
        while len(self._buf) >= self._block:
            self._submit(bytes(self._buf[:self._block]))
            del self._buf[:self._block]
        return len(data)

    def _submit(self, block):
        self._pending.append(self._pool.submit(self._fn, block))
        while len(self._pending) > self._depth or (self._pending and self._pending[0].done()):
            self._out.write(self._pending.pop(0).result())

    def close(self):
        if self.closed:
            return
        try:
            if self._fn is not None:
                if self._buf:
                    self._submit(bytes(self._buf))
                    self._buf.clear()
                while self._pending:
                    self._out.write(self._pending.pop(0).result())
        finally:
            if self._pool:
                self._pool.shutdown(wait=True, cancel_futures=True)
            super().close()


def writer(algorithm, level, out, threads=-1):
    """A binary writer that compresses into ``out`` (which stays open); call close() to flush."""
    return ParallelCompressor(algorithm, level, out, workers=threads)


def reader(algorithm, src):
    """A binary reader that decompresses what it reads from ``src``, with bounded memory."""
    if algorithm == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(src, read_size=1 << 20, read_across_frames=True,
                                                          closefd=False)
    if algorithm == "lz4":
        return lz4.frame.LZ4FrameFile(src, "rb")
    if algorithm == "bz2":
        return bz2.BZ2File(src, "rb")
    if algorithm == "xz":
        return lzma.LZMAFile(src, "rb")
    if algorithm == "none":
        return src
    raise UsageError(f"unknown compression {algorithm!r}")
