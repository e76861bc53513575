"""Part-size policy and the parallel part machinery shared by every store.

Uploads: ``PartPipeline`` cuts a written stream into numbered parts and runs a handler for each on
``jobs`` threads; downloads: ``OrderedReader`` fetches numbered ranges on ``jobs`` threads and
hands the bytes back in order.  Both keep memory bounded (see ``MEMORY_HELP``), and both leave the
talking to a store to a callback, so S3, the vault and the file store share one implementation.

Part-size policy (AWS limits from the field notes: at most 10,000 parts; S3 parts 5 MiB..5 GiB and
may differ; vault parts one power of two 1 MiB..4 GiB):

- S3, unknown length: 16 MiB parts, doubling every 800 parts up to 1 GiB.  That covers
  ``s3_plan().capacity`` = 5.85 TiB in 10,000 parts, more than S3's 5 TiB object limit, while the
  part size (and so memory) stays small for the common small stream: 128 MiB parts are reached
  only after 100 GiB.
- S3 with an expected size E: one constant size fitting 1.25 x E in 8,000 parts (memory is then
  the least possible), growing after that so a wrong estimate still has room.
- Vault: one power of two for the whole archive.  Default 128 MiB (1.22 TiB in 10,000 parts); with
  E, the smallest one holding 1.25 x E.  A stream outgrowing it fails before part 10,000 is sent,
  saying to pass --expected-size.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional

from .concurrency import BoundedPool, InOrder, OrderedMap

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

MAX_PARTS = 10_000
S3_MIN_PART = 5 * MiB
S3_MAX_PART = 5 * GiB
S3_MAX_OBJECT = 5 * TiB
S3_FIRST_PART = 16 * MiB
S3_GROW_EVERY = 800
S3_GROW_CAP = 1 * GiB
VAULT_MIN_PART = 1 * MiB
VAULT_MAX_PART = 4 * GiB
VAULT_DEFAULT_PART = 128 * MiB
HEADROOM = 1.25  # an expected size is an estimate (zfs send -nP): plan for 25 % more

MEMORY_HELP = (
    "Memory: about 60 MiB for the program, plus JOBS parts in flight and the one being filled, "
    "each of which may be held twice while it is sent (our buffer and the AWS SDK's request): at "
    "most 60 MiB + 2 x (JOBS + 1) x part size, whatever the stream's size (220 MiB with 4 jobs of "
    "16 MiB parts); a download likewise with its range size."
)


def human(n: float) -> str:
    """Bytes as a short binary-unit string (16 MiB, 5.85 TiB)."""
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.2f} {unit}"
    return f"{int(n)} B"


_UNITS = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB, "P": 1024 * TiB}


def parse_size(text: str) -> int:
    """``512M``, ``2G``, ``1.5T``, ``64MiB`` (powers of 1024) -> bytes; ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*", str(text), re.I)
    if not m:
        raise ValueError(f"not a size: {text!r} (e.g. 512M, 2G, 1.5T)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


@dataclass(frozen=True)
class PartPlan:
    """Size of part N (1-based): ``first`` up to part ``grow_after``, then doubling every
    ``grow_every`` parts up to ``cap``.  ``max_parts`` None means no part-count limit."""

    first: int
    grow_after: int = 0  # 0: never grows
    grow_every: int = 1
    cap: int = 0
    max_parts: Optional[int] = MAX_PARTS
    what: str = "parts"  # names the destination in errors

    def size(self, n: int) -> int:
        if not self.grow_after or n <= self.grow_after:
            return self.first
        steps = (n - 1 - self.grow_after) // self.grow_every + 1
        return min(self.first << min(steps, 62), self.cap)

    @property
    def largest(self) -> int:
        """Largest part this plan ever uses (what memory is bounded by)."""
        return self.size(self.max_parts) if self.max_parts else self.first

    @property
    def capacity(self) -> Optional[int]:
        """Largest stream that fits in ``max_parts`` parts; None when unlimited."""
        return _capacity(self)

    def describe(self, jobs: int) -> str:
        """One line for --help/--verbose: part sizes, reach, memory bound."""
        grow = f", growing to {human(self.largest)}" if self.largest != self.first else ""
        reach = f"; holds up to {human(self.capacity)}" if self.capacity else ""
        return (f"{self.what}: {human(self.first)} parts{grow}{reach}; "
                f"memory about {human((jobs + 1) * self.first)}"
                + (f" to {human((jobs + 1) * self.largest)}" if grow else "")
                + f" with {jobs} jobs")


@functools.lru_cache(maxsize=64)
def _capacity(plan: PartPlan) -> Optional[int]:
    # Summed once per plan: 10,000 parts summed at every upload's start cost zg-backup 30 ms.
    if plan.max_parts is None:
        return None
    return sum(plan.size(n) for n in range(1, plan.max_parts + 1))


def s3_plan(expected_size: Optional[int] = None, *, first: Optional[int] = None) -> PartPlan:
    """S3 part plan; ``first`` (>= 5 MiB) overrides the starting size (tests, tuning)."""
    from ..errors import UsageError

    base = S3_FIRST_PART if first is None else int(first)
    if not S3_MIN_PART <= base <= S3_MAX_PART:
        raise UsageError(f"S3 part size {human(base)} is outside 5 MiB..5 GiB")
    if expected_size is None:
        return PartPlan(base, S3_GROW_EVERY, S3_GROW_EVERY, max(base, S3_GROW_CAP), what="S3")
    if expected_size > S3_MAX_OBJECT:
        raise UsageError(f"expected size {human(expected_size)} exceeds S3's 5 TiB object limit")
    size = max(base, _round_up(int(expected_size * HEADROOM) // 8000 + 1, MiB))
    size = min(size, S3_MAX_PART)
    return PartPlan(size, 8000, 500, S3_MAX_PART, what="S3")


def vault_plan(expected_size: Optional[int] = None, *, part_size: Optional[int] = None) -> PartPlan:
    """Vault part plan: one power of two from 1 MiB to 4 GiB for the whole archive."""
    from ..errors import UsageError

    if part_size is not None:
        size = int(part_size)
        if size < VAULT_MIN_PART or size > VAULT_MAX_PART or size & (size - 1):
            raise UsageError(f"vault part size {size} is not a power of two from 1 MiB to 4 GiB")
    elif expected_size is None:
        size = VAULT_DEFAULT_PART
    else:
        need = int(expected_size * HEADROOM) // MAX_PARTS + 1
        size = VAULT_MIN_PART
        while size < need:
            size *= 2
        if size > VAULT_MAX_PART:
            raise UsageError(f"expected size {human(expected_size)} exceeds what a vault archive "
                             f"holds (4 GiB x 10,000 parts = {human(VAULT_MAX_PART * MAX_PARTS)})")
    return PartPlan(size, what="vault")


def fixed_plan(size: int, *, max_parts: Optional[int] = None, what: str = "parts") -> PartPlan:
    return PartPlan(int(size), max_parts=max_parts, what=what)


def too_big_message(plan: PartPlan) -> str:
    return (f"the stream outgrew {human(plan.capacity)}, the most {plan.max_parts:,} "
            f"{plan.what} parts of this size hold: pass --expected-size (an upper bound of the "
            f"stream size) so larger parts are chosen, or set a larger part_size for this destination "
            f"in config.toml")


# --------------------------------------------------------------------------- retries

def retry_call(fn: Callable[[], Any], *, transient: Callable[[BaseException], bool],
               attempts: int = 4, delay: float = 1.0, max_delay: float = 20.0,
               sleep: Callable[[float], None] = time.sleep) -> Any:
    """Call ``fn`` again after a transient failure (connection drop, body cut short), with
    exponential backoff; the SDK's own retries cover requests, this covers whole parts."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except BaseException as exc:  # noqa: BLE001 - classified right below
            if attempt == attempts or not transient(exc):
                raise
            sleep(min(max_delay, delay * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- upload side

@dataclass
class Part:
    """One numbered slice of the stream; ``sha256`` is filled in on the worker thread.  ``data``
    may be a buffer that is used again after the part is stored (see ``PartPipeline``)."""

    number: int
    offset: int
    data: bytes | bytearray
    sha256: bytes = b""

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class PartDone:
    """What is kept of a part after it was stored: no data, just where it is and its digests."""

    number: int
    offset: int
    size: int
    sha256: bytes
    receipt: Any = None  # store-specific (S3 ETag, vault tree hash, ...)


@dataclass
class PipelineResult:
    """``single`` is the whole stream when it never outgrew the first part (no part was sent);
    ``sha256`` is the digest of the whole stream."""

    single: Optional[bytes] = None
    parts: list = field(default_factory=list)
    size: int = 0
    sha256: bytes = b""


class PartBuffers:
    """Part-sized buffers, used again once a part is stored.

    Measured (perf, zg-upload of 213 MB to Ceph RGW): with a fresh 16 MiB ``bytes`` per part
    (joined from the written pieces), the kernel's zeroing of the new pages was 17% of the
    process's CPU, more than MD5 and SHA-256 together; a part written into a buffer whose pages
    are already mapped costs one memcpy.  At most ``jobs + 1`` buffers exist (the parts in flight
    and the one being filled), the same bound as before; buffers of a size no longer asked for
    (parts grew) are let go."""

    def __init__(self):
        self._lock = threading.Lock()
        self._size = 0
        self._free: list[bytearray] = []

    def get(self, size: int) -> bytearray:
        with self._lock:
            if size != self._size:
                self._size, self._free = size, []
            if self._free:
                return self._free.pop()
        return bytearray(size)

    def put(self, buf: bytearray) -> None:
        with self._lock:
            if len(buf) == self._size:
                self._free.append(buf)


class PartPipeline:
    """Cut a written stream into parts and store each with ``handle(part) -> receipt`` on ``jobs``
    threads, at most ``jobs`` parts in flight: memory is about (jobs + 1) x the largest part.

    A full part is held back until one more byte arrives, so a stream of at most one part is
    returned whole by ``finish()`` (the caller stores it with a single request). ``start()`` runs
    once, on the writing thread, just before the first part is handed out (lazy multipart start).
    ``size_of(n)`` gives part n's size; writing past ``capacity`` raises ``too_big()``.
    ``part_sha256()`` says, when a part is handed out, whether it needs its SHA-256 (a hash of
    every byte: skipped where the store neither checks nor records it).  The SHA-256 of the whole
    stream is taken on the part threads, in part order (``InOrder``), each part before it is
    sent: measured (zg-upload of 213 MB to Ceph RGW), on the writing thread it was a third of
    that thread's time, which reads the input and so paces everything.

    A part's ``data`` is a ``bytearray`` that is filled again with a later part once ``handle``
    returns (``PartBuffers``): a handler keeps no reference to it, and passes ``bytes(data)`` to
    an API that needs ``bytes``.  The last part, and the single blob, are ``bytes`` of their own.
    """

    def __init__(self, size_of: Callable[[int], int], handle: Callable[[Part], Any], *,
                 jobs: int = 4, capacity: Optional[int] = None,
                 too_big: Callable[[], BaseException] = lambda: ValueError("stream too big"),
                 start: Optional[Callable[[], None]] = None,
                 part_sha256: Callable[[], bool] = lambda: True):
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        self._size_of = size_of
        self._handle = handle
        self._jobs = jobs
        self._capacity = capacity
        self._too_big = too_big
        self._start = start
        self._part_sha256 = part_sha256
        self._buffers = PartBuffers()
        self._buf: Optional[bytearray] = None  # the part being filled (part number self._next)
        self._fill = 0
        self._written = 0
        self._next = 1
        self._offset = 0
        self._started = False
        self._pool: Optional[BoundedPool] = None
        self._done: dict[int, PartDone] = {}
        self._closed = False
        self._whole = hashlib.sha256()
        self._in_order = InOrder(self._hashed)
        self._halfway: set[int] = set()  # parts either hashed or sent, not yet both
        self._lock = threading.Lock()

    @property
    def written(self) -> int:
        return self._written

    @property
    def started(self) -> bool:
        return self._started

    def write(self, data) -> int:
        self._check()
        view = memoryview(data).cast("B")
        n = len(view)
        if not n:
            return 0
        if self._capacity is not None and self._written + n > self._capacity:
            raise self._too_big()
        pos = 0
        while pos < n:
            if self._buf is not None and self._fill == len(self._buf):
                self._submit(self._buf)  # a full part goes once a byte past it has come
                self._buf = None
            if self._buf is None:
                self._buf, self._fill = self._buffers.get(self._size_of(self._next)), 0
            k = min(n - pos, len(self._buf) - self._fill)
            self._buf[self._fill:self._fill + k] = view[pos:pos + k]  # callers may reuse their buffer
            self._fill += k
            pos += k
        self._written += n
        return n

    def finish(self) -> PipelineResult:
        """Flush the last part, wait for every part, return them in order (or the single blob)."""
        self._check()
        self._closed = True
        if not self._started:
            single = self._take_last()
            return PipelineResult(single=single, size=self._written, sha256=hashlib.sha256(single).digest())
        if self._buf is not None and self._fill == len(self._buf):
            self._submit(self._buf)
            self._buf = None
        elif last := self._take_last():
            self._submit(last)
        self._pool.join()
        parts = [self._done[n] for n in range(1, self._next)]
        return PipelineResult(parts=parts, size=self._written, sha256=self._whole.digest())

    def cancel(self) -> None:
        """Stop: no further parts; wait for those in flight (so nothing is sent after abort)."""
        self._closed = True
        self._buf, self._fill = None, 0
        self._drain()

    # internals
    def _check(self) -> None:
        if self._pool is not None:
            self._pool.check()
        if self._closed:
            raise ValueError("upload already finished or cancelled")

    def _take_last(self) -> bytes:
        """The part being filled, as ``bytes`` of its own (its buffer goes back)."""
        buf, self._buf = self._buf, None
        if buf is None:
            return b""
        data = bytes(memoryview(buf)[:self._fill])
        self._buffers.put(buf)
        return data

    def _submit(self, data) -> None:
        if not self._started:
            if self._start is not None:
                self._start()
            self._started = True
            self._pool = BoundedPool(self._run, self._jobs, name="zg-part")
        part = Part(self._next, self._offset, data)
        self._next += 1
        self._offset += len(data)
        self._pool.submit(part)

    def _run(self, part: Part) -> None:
        data = part.data
        self._in_order.feed(part.number, (part.number, data))  # hashed now, or by the part before's thread
        try:
            if self._part_sha256():
                part.sha256 = hashlib.sha256(data).digest()
            receipt = self._handle(part)
            self._done[part.number] = PartDone(part.number, part.offset, part.size, part.sha256, receipt)
        finally:
            part.data = b""
        self._let_go(part.number, data)  # not after a failure: the buffer is then dropped

    def _hashed(self, numbered) -> None:
        n, data = numbered
        self._whole.update(data)
        self._let_go(n, data)

    def _let_go(self, n: int, data) -> None:
        """A part's buffer is used again once the part is both hashed and sent."""
        with self._lock:
            if n not in self._halfway:
                self._halfway.add(n)
                return
            self._halfway.discard(n)
        if isinstance(data, bytearray):
            self._buffers.put(data)

    @property
    def in_flight_peak(self) -> int:
        return self._pool.in_flight_peak if self._pool is not None else 0

    def _drain(self) -> None:
        if self._pool is not None:
            self._pool.close()


# --------------------------------------------------------------------------- download side

class OrderedReader(io.RawIOBase):
    """A readable stream over ``fetch(item) -> bytes`` for each item, fetched on ``jobs`` threads
    but delivered strictly in order; at most ``jobs`` results wait, so memory is bounded.

    ``deliver(item, data, last)`` runs on the reading thread, in order, just before an item's
    bytes are handed out (whole-object checks that must pass before the last byte goes out).
    A fetch error is raised when the reader reaches that item, not before.  ``start`` skips to
    that byte offset (items then need ``offset`` and ``size``).  ``on_close`` runs
    once when the reader is closed (release a file descriptor, a connection).  ``release(data)``
    runs when the reader is done with an item's bytes (when the next item is taken; at close they
    are simply dropped), so ``fetch`` may fill buffers used again (``PartBuffers``); a piece from
    ``pieces()`` is then valid until the next one is asked for.

    ``verifies`` is the store's checksum (``ArchiveInfo.checksum`` notation) that the whole is
    checked against before its last byte is handed out, when the store does that check (not on
    a resumed read); a caller holding a recorded checksum compares it instead of hashing again.
    """

    verifies: Optional[str] = None

    def __init__(self, items: Iterable, fetch: Callable[[Any], bytes], *, jobs: int = 4,
                 deliver: Optional[Callable[[Any, bytes, bool], None]] = None,
                 on_close: Optional[Callable[[], None]] = None, start: int = 0,
                 release: Optional[Callable[[Any], None]] = None):
        super().__init__()
        self._on_close = on_close
        self._release = release
        self._data = None  # the item's bytes self._buf is a view of (for release)
        self._skip = 0
        if start:  # resume a download: items need .offset and .size; the first is cut
            items = [i for i in items if i.offset + i.size > start]
            self._skip = start - items[0].offset if items else 0
        self._items = iter(items)
        self._deliver = deliver
        self._jobs = max(1, jobs)
        self._map = OrderedMap(fetch, self._jobs, name="zg-read")
        self._buf = memoryview(b"")
        self._failed: Optional[BaseException] = None
        self._lookahead = self._advance()
        for _ in range(self._jobs):
            self._fill_one()

    def _advance(self):
        try:
            return next(self._items)
        except StopIteration:
            return _END

    def _fill_one(self) -> None:
        if self._lookahead is _END:
            return
        item, self._lookahead = self._lookahead, self._advance()
        self._map.submit(item, tag=(item, self._lookahead is _END))

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bool:
        if not len(self._map):
            return False
        self._let_go()
        (item, last), data = self._map.next()
        if self._deliver is not None:
            self._deliver(item, data, last)
        self._fill_one()
        self._buf, self._data = memoryview(data)[self._skip:], data
        self._skip = 0
        return True

    def _let_go(self) -> None:
        data, self._data = self._data, None
        self._buf = memoryview(b"")
        if data is not None and self._release is not None:
            self._release(data)

    def readinto(self, b) -> int:
        if self.closed:
            raise ValueError("read from closed reader")
        while not len(self._buf):
            if not self._next_chunk():
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if self.closed:
            raise ValueError("read from closed reader")
        if self._failed is not None:
            raise self._failed
        out = []
        while size > 0:  # like a buffered reader: short only at the end or before an error
            try:
                if not len(self._buf) and not self._next_chunk():
                    break
            except BaseException as exc:
                if not out:
                    raise
                self._failed = exc  # hand out the good bytes first; raise on the next read
                break
            piece = self._buf[:size]
            out.append(bytes(piece))
            self._buf = self._buf[len(piece):]
            size -= len(piece)
        return b"".join(out)

    def pieces(self) -> Iterator[memoryview]:
        """The rest of the stream as the fetched buffers themselves: read() without a copy."""
        if self.closed:
            raise ValueError("read from closed reader")
        if self._failed is not None:
            raise self._failed
        while len(self._buf) or self._next_chunk():
            piece, self._buf = self._buf, memoryview(b"")
            yield piece

    def readall(self) -> bytes:
        out = [bytes(self._buf)]
        self._buf = memoryview(b"")
        while self._next_chunk():
            out.append(bytes(self._buf))
            self._buf = memoryview(b"")
        return b"".join(out)

    def close(self) -> None:
        if not self.closed:
            self._map.close()
            if self._on_close is not None:
                self._on_close()
        super().close()


_END = object()
