"""Compression inside the archive: a parallel block writer and one reader per algorithm.

The writer cuts the input into BLOCK_SIZE blocks and compresses each into an independent frame
(zstd frame, lz4 frame, bzip2 stream, xz stream) on a pool of threads, one per core, like pbzip2.
The frames, concatenated in input order, are an ordinary multi-frame stream of that algorithm:
every reader below reads across frames.  Independent blocks keep memory bounded (workers x 2
blocks in flight) and use all cores for every algorithm.  The header records algorithm and level,
so decrypting needs no flags.
"""

import bz2
import contextlib
import io
import lzma
import os
import threading
from dataclasses import dataclass
from typing import Callable, Optional

import lz4.frame
import zstandard

from ..plumbing.concurrency import OrderedMap
from ..plumbing.digest import BLOCK
from ..errors import CorruptArchiveError, UsageError, ZgError

DEFAULT = "zstd"


def check(algorithm, level):
    """The level to use (the codec's default when None); UsageError for an unknown algorithm or
    a level out of its range."""
    codec = CODECS.get(algorithm)
    if codec is None:
        raise UsageError(f"unknown compression {algorithm!r} (choose from {', '.join(ALGORITHMS)})")
    lo, hi = codec.levels
    if level is None:
        level = codec.default_level
    if not lo <= level <= hi:
        raise UsageError(f"{algorithm} level must be between {lo} and {hi}, not {level}")
    return level


BLOCK_SIZE = BLOCK  # 4 MiB: zstd -3's window is 2 MiB, bzip2's block 900 kB: such frames lose little
# zstd levels from LONG_LEVEL up: one stream with long-distance matching over a LONG_WINDOW_LOG
# window, compressed by zstd's own worker threads.  Smaller than the 2013 recipe's output on
# SQL-heavy streams, several times faster, for more memory (~220 MiB to write, ~150 MiB to read)
# and a single-threaded decompression.
LONG_LEVEL = 9
LONG_WINDOW_LOG = 27


def long_mode(algorithm, level):
    return algorithm == "zstd" and level >= LONG_LEVEL


def _zstd_frames_at(level):
    """A thread-safe function block -> independent zstd frame (a compressor per thread)."""
    local = threading.local()
    params = zstandard.ZstdCompressionParameters.from_level(level)

    def zstd_frame(block):
        cctx = getattr(local, "cctx", None)
        if cctx is None:
            cctx = local.cctx = zstandard.ZstdCompressor(compression_params=params)
        return cctx.compress(block)
    return zstd_frame


class _Abortable(io.RawIOBase):
    """A compressing writer that nobody closed belongs to an aborted archive: ``abort()`` drops
    its buffered blocks, and so does its finalizer.  io.IOBase's own finalizer would call close(),
    which compresses and writes them, from whatever thread the garbage collector interrupted.  Found
    when `make test` hung for good: the collector ran inside ThreadPoolExecutor.submit, which holds
    a lock that every pool's submit takes, and close() submitted to this writer's pool."""

    def abort(self):
        if not self.closed:
            self._drop()
            io.RawIOBase.close(self)  # closed, without this class's close(): nothing is written

    def __del__(self):
        self.abort()


class ParallelCompressor(_Abortable):
    """Writable: compresses BLOCK_SIZE blocks on ``workers`` threads, writes frames to ``out`` in order.

    ``digest`` (from plumbing.digest) is fed the plaintext in input order: by the workers, as
    block hashes, when it has a ``worker_hash``; else here, as it is written."""

    def __init__(self, algorithm, level, out, workers=-1, digest=None):
        self._out = out
        self._fn = CODECS[algorithm].frame(level)
        self._digest = digest
        self._hash = digest.worker_hash if digest is not None else None
        self._block = BLOCK_SIZE
        self._buf = bytearray()
        self._blocks = 0
        n = workers if workers and workers > 0 else (os.cpu_count() or 1)
        self._map = OrderedMap(self._work, n, depth=2 * n, name="zg-compress") if self._fn else None

    def writable(self):
        return True

    def write(self, data):
        if self._digest is not None and (self._fn is None or self._hash is None):
            self._digest.add(data)
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

    def _work(self, block):
        return len(block), self._hash(block) if self._hash is not None else None, self._fn(block)

    def _submit(self, block):
        self._blocks += 1
        while self._map.full:
            self._emit()
        self._map.submit(block)
        while self._map.ready:
            self._emit()

    def _emit(self):
        _, (size, digests, frame) = self._map.next()
        if size and self._hash is not None and not self._digest.add_blocks(size, digests):
            raise ValueError("compressed blocks out of step with the plaintext digest")
        self._out.write(frame)

    def close(self):
        if self.closed:
            return
        try:
            if self._fn is not None:
                if self._buf or not self._blocks:  # empty input still gets one (empty) frame
                    self._submit(bytes(self._buf))
                    self._buf.clear()
                while len(self._map):
                    self._emit()
        finally:
            if self._map is not None:
                self._map.close()
            super().close()

    def _drop(self):
        if getattr(self, "_buf", None) is not None:
            self._buf.clear()
        if getattr(self, "_map", None) is not None:
            self._map.abandon()


class LongZstdWriter(_Abortable):
    """Writable: one zstd stream with long-distance matching, on zstd's own worker threads."""

    def __init__(self, level, out, workers=-1, digest=None):
        n = workers if workers and workers > 0 else (os.cpu_count() or 1)
        params = zstandard.ZstdCompressionParameters.from_level(
            level, enable_ldm=True, window_log=LONG_WINDOW_LOG, threads=n)
        self._writer = zstandard.ZstdCompressor(compression_params=params).stream_writer(
            out, closefd=False, write_size=1 << 20)
        self._digest = digest

    def writable(self):
        return True

    def write(self, data):
        if self._digest is not None:
            self._digest.add(data)
        return self._writer.write(data)

    def close(self):
        if not self.closed:
            self._writer.close()
            super().close()

    def _drop(self):
        pass  # the zstd writer is let go unflushed


def writer(algorithm, level, out, threads=-1, digest=None):
    """A binary writer that compresses into ``out`` (which stays open); call close() to flush.
    ``digest`` (from plumbing.digest) is fed the plaintext (hashed on the worker threads where the
    blocks are independent and the digest has a ``worker_hash``)."""
    if long_mode(algorithm, level):
        return LongZstdWriter(level, out, workers=threads, digest=digest)
    return ParallelCompressor(algorithm, level, out, workers=threads, digest=digest)


# Decoding limits, whatever the data claims (the data is authenticated, but anyone with a .pub can
# write an archive).  zstd: the long mode's 128 MiB window is the largest zfsglacier writes.  xz:
# preset 9 (64 MiB dictionary) decodes in ~65 MiB; a stream that asks more is refused.  bzip2 and
# lz4 decode in a few MiB whatever the data; every reader returns at most what it is asked for.
ZSTD_MAX_WINDOW = 1 << LONG_WINDOW_LOG
XZ_MEMLIMIT = 128 << 20
_TRUNCATED = (EOFError, ValueError)  # every decoder's "ends early" / "not a frame of mine"


@contextlib.contextmanager
def decoding(codec):
    """Around a decoder call only (never a write): what ``codec`` raises for bad data becomes
    CorruptArchiveError here, in the codec layer, so an output that cannot be written is never
    reported as a damaged archive.  Errors of our own (ZgError: authentication, the input, the
    output) pass as they are."""
    try:
        yield
    except ZgError:
        raise
    except codec.errors as err:
        raise CorruptArchiveError(f"archive's {codec.name} data cannot be decompressed: {err}") from None


def _zstd_decompressor():
    return zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)


class XzReader(io.RawIOBase):
    """Concatenated .xz streams (the only xz format zfsglacier writes), decoded within XZ_MEMLIMIT,
    at most the asked size per read."""

    def __init__(self, src):
        self._src, self._dec, self._pending = src, None, b""

    def readable(self):
        return True

    def readinto(self, b):
        while True:
            if self._dec is None:
                data, self._pending = self._pending or self._src.read(1 << 20), b""
                if not data:
                    return 0
                self._dec = lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT)
            elif self._dec.needs_input:
                data = self._src.read(1 << 20)
                if not data:
                    raise EOFError("xz stream ends early")
            else:
                data = b""
            out = self._dec.decompress(data, max_length=len(b))
            if self._dec.eof:
                self._pending, self._dec = self._dec.unused_data, None
            if out:
                b[:len(out)] = out
                return len(out)


def reader(algorithm, src):
    """A binary reader that decompresses what it reads from ``src``, with bounded memory."""
    return CODECS[algorithm].reader(src)


# --- parallel zstd decompression -----------------------------------------------------------------
# Archives from the default levels are independent frames that say their content size, so a
# reader can decompress several at once.  A frame's end is found by walking its block headers
# (RFC 8878, section 3.1.1), which is cheap.  Any other zstd data (one long stream from the high
# levels, frames without a content size or bigger than PARALLEL_FRAME_LIMIT) is decompressed as a
# stream from that point on: same result, bounded memory, one core.

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PARALLEL_FRAME_LIMIT = 16 << 20


def _zstd_frame_end(buf, start, resume=0):
    """(end, resume): ``end`` is the offset just past the zstd frame starting at ``start`` in
    ``buf``, None if it is not all there yet, or -1 when it is not a frame for the parallel path
    (see above); when None, pass ``resume`` back in with more bytes, so that no block header is
    walked twice (a frame arriving in many small pieces would otherwise cost quadratic time)."""
    n = len(buf)
    if n - start < 5:
        return None, 0
    if bytes(buf[start:start + 4]) != ZSTD_MAGIC:
        raise ValueError("not a zstd frame")
    fhd = buf[start + 4]
    fcs_flag, single, checksum, did_flag = fhd >> 6, (fhd >> 5) & 1, (fhd >> 2) & 1, fhd & 3
    pos = resume
    if not resume:
        pos = start + 5 + (0 if single else 1) + (0, 1, 2, 4)[did_flag]
        pos += (1 if single else 0, 2, 4, 8)[fcs_flag]
        if pos > n:
            return None, 0
        content = zstandard.frame_content_size(bytes(buf[start:pos]))
        if not 0 <= content <= PARALLEL_FRAME_LIMIT:
            return -1, 0
    while True:
        if pos - start > PARALLEL_FRAME_LIMIT + (1 << 20):
            return -1, 0  # more bytes than such a frame can have (say, endless empty blocks): not buffered
        if pos + 3 > n:
            return None, pos
        header = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        last, kind, size = header & 1, (header >> 1) & 3, header >> 3
        if kind == 3:
            raise ValueError("reserved zstd block type")
        if not last and pos + 3 + (1 if kind == 1 else size) > n:
            return None, pos  # this block is not all there yet: walk it again when it is
        pos += 3 + (1 if kind == 1 else size)
        if last:
            break
    pos += 4 if checksum else 0
    return (pos, 0) if pos <= n else (None, 0)


class _Rest(io.RawIOBase):
    """What is left of a split stream: buffered bytes first, then the remaining pieces."""

    def __init__(self, head, read_piece):
        self._head, self._read_piece = bytes(head), read_piece

    def readable(self):
        return True

    def read(self, n=-1):
        if self._head:
            out, self._head = self._head, b""
            return out
        return self._read_piece()

    def readinto(self, b):
        data = self.read()
        b[:len(data)] = data
        return len(data)


def zstd_frames(read_piece):
    """Yield whole small zstd frames from a stream given as pieces (``read_piece()``; b"" at the
    end); where a frame is not one for the parallel path, yield a ``_Rest`` of the stream and stop."""
    buf, start, resume = bytearray(), 0, 0
    while True:
        end, resume = _zstd_frame_end(buf, start, resume) if len(buf) > start else (None, 0)
        if end == -1:
            yield _Rest(buf[start:], read_piece)
            return
        if end is not None:
            with memoryview(buf) as view:
                frame = bytes(view[start:end])  # one copy; the view is released before buf changes
            yield frame
            start = end
            continue
        piece = read_piece()
        if not piece:
            if start < len(buf):  # an incomplete frame: the stream decoder (and trailer) judge it
                yield _Rest(buf[start:], read_piece)
            return
        if start > len(buf) // 2:  # drop consumed bytes only now and then: each drop moves the rest
            del buf[:start]
            resume -= start if resume else 0
            start = 0
        buf += piece


class ParallelZstdReader:
    """Decompresses the frames of ``read_piece`` on ``workers`` threads; ``read_block()`` yields
    (plaintext, ``block_hash(plaintext)`` or None) in order.  Memory: 2 x workers frames in flight."""

    def __init__(self, read_piece, workers=-1, block_hash=None):
        self._frames = zstd_frames(read_piece)
        n = workers if workers and workers > 0 else (os.cpu_count() or 1)
        self._map = OrderedMap(self._decompress, n, depth=2 * n, name="zg-decompress")
        self._local = threading.local()
        self._hash = block_hash
        self._stream = None  # set when the rest of the data is decompressed as a stream
        self._done = False

    def _decompress(self, frame):
        dctx = getattr(self._local, "dctx", None)
        if dctx is None:
            dctx = self._local.dctx = _zstd_decompressor()
        data = dctx.decompress(frame)  # content size is known and at most PARALLEL_FRAME_LIMIT
        return data, self._hash(data) if self._hash is not None else None

    def read_block(self):
        while not self._done and not self._map.full:
            item = next(self._frames, None)
            if item is None:
                self._done = True
            elif isinstance(item, _Rest):
                self._done = True
                self._stream = _zstd_decompressor().stream_reader(
                    item, read_size=1 << 20, read_across_frames=True, closefd=False)
            else:
                self._map.submit(item)
        if len(self._map):
            return self._map.next()[1]
        if self._stream is not None:
            data = self._stream.read(BLOCK)
            return data, None
        return b"", None

    def close(self):
        self._map.close()


# --- the registry ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Codec:
    """All zfsglacier knows of one compression algorithm.

    ``name`` is how the header, the CLI and the object metadata spell it; ``id`` its header byte
    (format.Compression is made from these: SPEC 2.1); ``levels`` the accepted (lowest, highest)
    and ``default_level``; ``frame(level)`` a thread-safe function block -> independent frame
    (None: blocks are stored as they are); ``reader(src)`` decodes concatenated frames with
    bounded memory; ``errors`` what its decoder raises for bad data (reported as a damaged
    archive); ``parallel_reader(read_piece)``, where its frames say their size, decodes several
    at once (``read_block()`` -> (plaintext, its ``block_hash`` or None)).
    """

    name: str
    id: int
    levels: tuple
    default_level: int
    frame: Callable
    reader: Callable
    errors: tuple
    parallel_reader: Optional[Callable] = None


_LZ4_ERRORS = (RuntimeError, getattr(lz4.frame, "LZ4FrameError", RuntimeError))
CODECS = {c.name: c for c in (
    Codec("zstd", 1, (-7, 22), 3, _zstd_frames_at,
          lambda src: _zstd_decompressor().stream_reader(src, read_size=1 << 20, read_across_frames=True,
                                                         closefd=False),
          (zstandard.ZstdError,) + _TRUNCATED, ParallelZstdReader),
    Codec("lz4", 2, (0, 16), 0, lambda level: lambda block: lz4.frame.compress(block, compression_level=level),
          lambda src: lz4.frame.LZ4FrameFile(src, "rb"), _LZ4_ERRORS + _TRUNCATED),
    Codec("bz2", 3, (1, 9), 9, lambda level: lambda block: bz2.compress(block, level),
          lambda src: bz2.BZ2File(src, "rb"), (OSError,) + _TRUNCATED),  # bz2: OSError "Invalid data stream"
    Codec("xz", 4, (0, 9), 6, lambda level: lambda block: lzma.compress(block, preset=level),
          lambda src: io.BufferedReader(XzReader(src), 1 << 20), (lzma.LZMAError,) + _TRUNCATED),
    Codec("none", 0, (0, 0), 0, lambda level: None, lambda src: src, ()),
)}
ALGORITHMS = tuple(CODECS)
