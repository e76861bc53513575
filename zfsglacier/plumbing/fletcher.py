"""Fletcher-4 as ZFS computes it over a send stream, vectorised with numpy.

ZFS's fletcher-4 runs four 64-bit sums over the stream's 32-bit words ``w`` (in the stream's byte
order): ``a += w; b += a; c += b; d += c``, all modulo 2^64.  A word-by-word Python loop manages
~10 MB/s; zg-encrypt compresses at ~500 MB/s, so the sums are computed in closed form instead:

- processing n words from a state multiplies it by a fixed matrix T(n) and adds the *local* sums
  of those words from a zero state (``combine``):
      a' = a + A,  b' = b + n a + B,  c' = c + n b + t2(n) a + C,
      d' = d + n c + t2(n) b + t3(n) a + D,      t2(k) = k(k+1)/2, t3(k) = k(k+1)(k+2)/6;
- the local sums of a row of L words are weighted sums: word j from the end (1-based) counts
  1, j, t2(j), t3(j) times in A, B, C, D.  For L = 64 every such sum is below 2^52, so one float64
  matrix product (BLAS) computes them exactly for all rows at once;
- the rows are then combined with the same T(k) weights, k = L x (rows after it), in uint64
  arithmetic, which wraps modulo 2^64 exactly as ZFS's sums do.

Measured here (2 cores, AES-NI/SHA-NI machine): ~3 GB/s on one core for 4 MiB pieces, against
~10 MB/s for the plain loop.  That still cost zg-encrypt 7-9% of its throughput (plus ~80 ms to
import numpy), over the 5% the stream check may cost; so where the optional C extension
(zfsglacier/plumbing/_fletcher.c, setup.py) was built, ``update`` is its straight loop instead: ~6 GB/s, and
no numpy import.  The numpy form stays as the fallback for machines without a compiler;
``tests/test_stream_check.py`` holds both to the definition.
"""

import os
import struct
import threading

_M64 = (1 << 64) - 1
ZERO = (0, 0, 0, 0)
ROW = 64  # words per row of the matrix product: the largest L whose sums stay exact in float64
_MAX_ROWS = (4 << 20) // (4 * ROW)  # longest run handed to numpy at once (4 MiB)
_CACHE_ROWS = 1024  # rows converted to float64 at a time: 512 KiB, stays in cache


def _t2(k):
    return k * (k + 1) // 2


def _t3(k):
    return k * (k + 1) * (k + 2) // 6


def combine(state, local, n):
    """The state after ``n`` words whose sums from a zero state are ``local``."""
    a, b, c, d = state
    la, lb, lc, ld = local
    t2, t3 = _t2(n), _t3(n)
    return ((a + la) & _M64,
            (b + n * a + lb) & _M64,
            (c + n * b + t2 * a + lc) & _M64,
            (d + n * c + t2 * b + t3 * a + ld) & _M64)


def _plain(words, state=ZERO):
    """The word-by-word definition (for short runs and as the reference)."""
    a, b, c, d = state
    for w in words:
        a = (a + w) & _M64
        b = (b + a) & _M64
        c = (c + b) & _M64
        d = (d + c) & _M64
    return a, b, c, d


class _Tables:
    """numpy and the weights, loaded on first use: per word of a row (float64), and per row of a
    run (uint64).  Loaded lazily because importing numpy costs ~80 ms, which filters that never
    see a ZFS stream (zg-decrypt) should not pay.

    OpenBLAS runs one thread: with its default of one per core, its idle threads spin between the
    small matrix products and took a whole core from the compressors (zg-encrypt of a 325 MB
    stream: 2.2-2.6 s instead of 1.5 s; with one thread 1.58 s)."""

    def __init__(self):
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        global np
        import numpy as np
        j = np.arange(ROW, 0, -1, dtype=np.float64)  # position from the end of the row, 1-based
        self.row = np.stack([np.ones(ROW), j, j * (j + 1) / 2, j * (j + 1) * (j + 2) / 6])  # 4 x ROW
        # k = words after a row (from the end): 0, L, 2L, ... with L = 64, so t2(k) = 32q (64q + 1) and
        # t3(k) = 64q (32q + 1) (64q + 1) / 3, where one factor is a multiple of 3: divided first,
        # every product is exact modulo 2^64 in uint64 arithmetic (no Python loop: ~1 ms, not 40)
        q = np.arange(_MAX_ROWS, dtype=np.uint64)
        a, b, c = q, 32 * q + 1, 64 * q + 1
        a, b, c = (np.where(q % 3 == 0, a // 3, a), np.where(q % 3 == 1, b // 3, b), np.where(q % 3 == 2, c // 3, c))
        self.k = (ROW * q)[::-1].copy()
        self.k2 = (32 * q * (64 * q + 1))[::-1].copy()
        self.k3 = (64 * a * b * c)[::-1].copy()


_tables = None
_scratch = threading.local()
np = None  # numpy, once _Tables is made


def _rows_local(words):
    """Local sums of ``words`` (a uint32 array whose length is a multiple of ROW, at most 4 MiB)."""
    t = _tables
    m = len(words) // ROW
    scratch = _scratch.__dict__
    if "sums" not in scratch:  # per thread, made once: fresh 512 KiB buffers cost page faults every call
        scratch["sums"], scratch["buf"] = np.empty((4, _MAX_ROWS)), np.empty(_CACHE_ROWS * ROW)
    sums, buf = scratch["sums"][:, :m], scratch["buf"]
    for r in range(0, m, _CACHE_ROWS):  # in cache-sized pieces: 1.1 ms per 4 MiB instead of 1.8
        k = min(_CACHE_ROWS, m - r)
        rows = buf[:k * ROW]
        np.copyto(rows, words[r * ROW:(r + k) * ROW], casting="unsafe")
        np.matmul(t.row, rows.reshape(k, ROW).T, out=sums[:, r:r + k])  # exact: every sum < 2^52
    ra, rb, rc, rd = sums.astype(np.uint64)
    k, k2, k3 = t.k[-m:], t.k2[-m:], t.k3[-m:]
    la = int(ra.sum())
    lb = int((k * ra + rb).sum())
    lc = int((k2 * ra + k * rb + rc).sum())
    ld = int((k3 * ra + k2 * rb + k * rc + rd).sum())
    return la & _M64, lb & _M64, lc & _M64, ld & _M64


def update_numpy(state, data, byteorder="little"):
    """Continue ``state`` over ``data`` (whole 32-bit words; a last partial word is ignored, as
    ZFS ignores it)."""
    global _tables
    if _tables is None:
        _tables = _Tables()
    view = memoryview(data).cast("B")
    n = len(view) // 4
    words = np.frombuffer(view[:n * 4], dtype="<u4" if byteorder == "little" else ">u4")
    pos = 0
    step = _MAX_ROWS * ROW
    while n - pos >= ROW:
        take = min(step, (n - pos) // ROW * ROW)
        state = combine(state, _rows_local(words[pos:pos + take]), take)
        pos += take
    if pos < n:
        fmt = ("<" if byteorder == "little" else ">") + f"{n - pos}I"
        state = _plain(struct.unpack(fmt, view[pos * 4:n * 4]), state)
    return state


def update_c(state, data, byteorder="little"):
    """The same in C (zfsglacier/plumbing/_fletcher.c): the straight loop, ~6 GB/s on one core here."""
    return _fletcher.update(state, data, byteorder == "big")


try:
    from . import _fletcher
except ImportError:  # not built (no compiler where it was installed): the numpy form
    _fletcher = None
update = update_c if _fletcher is not None else update_numpy
