"""SHA-256 tree hash, the checksum the Amazon Glacier vault API puts on every upload and download.

Algorithm (AWS "Computing Checksums"): SHA-256 of each 1 MiB chunk (the last may be shorter);
then, level by level, concatenate consecutive pairs of digests and hash them; a digest left
without a partner is carried up unchanged; the single digest left is the tree hash. Empty input
hashes to SHA-256 of nothing (what botocore sends for an empty body).

Because a part size is a power of two of at least 1 MiB, every full part's tree hash is a node of
the whole archive's tree, so ``combine(part_hashes)`` is the archive's tree hash: a multipart
uploader never has to re-read its data to complete an upload.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

MIB = 1 << 20


def _pair(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(left + right).digest()


def combine(digests: Sequence[bytes]) -> bytes:
    """Tree hash from the digests of consecutive aligned subtrees (1 MiB leaves or full parts)."""
    level = list(digests)
    if not level:
        return hashlib.sha256(b"").digest()
    while len(level) > 1:
        nxt = [_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def leaf_hashes(data: bytes) -> list[bytes]:
    """SHA-256 of each 1 MiB chunk of ``data``."""
    view = memoryview(data)
    return [hashlib.sha256(view[i : i + MIB]).digest() for i in range(0, len(view), MIB)]


def tree_hash(data: bytes) -> bytes:
    """Tree hash (32 raw bytes) of ``data`` held in memory."""
    return combine(leaf_hashes(data))


class TreeHasher:
    """Incremental tree hash for streams: fed in any slices, memory O(log n) digests.

    Complete subtrees are kept on a stack like a binary counter (two equal-height subtrees merge
    at once); ``digest()`` folds what is left from the right, which is exactly where AWS carries
    an unpaired digest up. ``keep_leaves=True`` also records every 1 MiB leaf digest (see
    ``leaves()``), for callers that later need tree hashes of 1 MiB-aligned sub-ranges.
    """

    def __init__(self, keep_leaves: bool = False) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (height, digest); heights strictly decrease
        self._leaf = hashlib.sha256()
        self._leaf_len = 0
        self.length = 0
        self._leaves: list[bytes] | None = [] if keep_leaves else None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        self.length += len(view)
        pos = 0
        while pos < len(view):
            take = min(MIB - self._leaf_len, len(view) - pos)
            self._leaf.update(view[pos : pos + take])
            self._leaf_len += take
            pos += take
            if self._leaf_len == MIB:
                self._push_leaf(self._leaf.digest())
                self._leaf = hashlib.sha256()
                self._leaf_len = 0

    def _push_leaf(self, digest: bytes) -> None:
        if self._leaves is not None:
            self._leaves.append(digest)
        height = 0
        while self._stack and self._stack[-1][0] == height:
            digest = _pair(self._stack.pop()[1], digest)
            height += 1
        self._stack.append((height, digest))

    def digest(self) -> bytes:
        """Tree hash of everything fed so far (does not end the hasher)."""
        pending = [d for _, d in self._stack]
        if self._leaf_len or not pending:
            pending.append(self._leaf.digest())
        result = pending[-1]
        for left in reversed(pending[:-1]):
            result = _pair(left, result)
        return result

    def hexdigest(self) -> str:
        return self.digest().hex()

    def leaves(self) -> list[bytes]:
        """Digest of every 1 MiB chunk fed so far, the last (partial) one included."""
        if self._leaves is None:
            raise ValueError("TreeHasher(keep_leaves=True) is needed to list leaves")
        return self._leaves + ([self._leaf.digest()] if self._leaf_len else [])


def is_tree_hash_aligned(start: int, end: int, total: int) -> bool:
    """True when bytes ``start..end`` (inclusive) of a ``total``-byte archive form one tree node.

    AWS returns a checksum with retrieved data only for such ranges. A node covers 1 MiB chunks
    ``[i*2^k, min((i+1)*2^k, n))``; a range is aligned iff it has that shape for some k.
    """
    if total <= 0 or not (0 <= start <= end < total) or start % MIB:
        return False
    n = -(-total // MIB)
    if (end + 1) % MIB and end != total - 1:
        return False
    first, stop = start // MIB, -(-(end + 1) // MIB)
    width = 1
    while width < 2 * n:
        if first % width == 0 and stop == min(first + width, n):
            return True
        width *= 2
    return False

