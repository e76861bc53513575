"""The plaintext digest an archive's trailer commits to: SHA-256 over the SHA-256s of 4 MiB blocks.

    digest = SHA-256( SHA-256(P[0:B]) || SHA-256(P[B:2B]) || ... )     B = 4 MiB, last block shorter

A flat hash list, not one SHA-256 of the whole stream, so that blocks are hashed on all cores
while they are compressed or decompressed: a single sequential SHA-256 alone takes as long as
everything else zg-decrypt does.  Empty plaintext has no blocks: SHA-256 of nothing.  To compute it
without zfsglacier:

    python3 -c 'import sys,hashlib as h; f=sys.stdin.buffer; d=h.sha256()
    while b:=f.read(4<<20): d.update(h.sha256(b).digest())
    print(d.hexdigest())' < plaintext
"""

import hashlib

BLOCK = 4 << 20


class BlockDigest:
    """Accumulates the digest from data pieces, or from whole blocks hashed elsewhere."""

    def __init__(self):
        self._list = hashlib.sha256()
        self._partial = hashlib.sha256()
        self._fill = 0  # bytes in the block being hashed here
        self._closed = False  # a short block was added whole: it must be the last
        self.length = 0

    def add_block(self, size, block_digest):
        """Add a block hashed elsewhere: ``size`` bytes (BLOCK, or fewer for the last) at a block
        boundary.  Returns False (adding nothing) when it is not at a boundary or too long."""
        if self._fill or not 0 < size <= BLOCK or self._closed:
            return False
        self._list.update(block_digest)
        self.length += size
        self._closed = size < BLOCK
        return True

    def add(self, data, block_digest=None):
        """Add plaintext ``data``; ``block_digest`` (its SHA-256) saves hashing it again when
        ``data`` is one whole block at a block boundary."""
        if block_digest is not None and self.add_block(len(data), block_digest):
            return
        if self._closed and data:
            raise ValueError("plaintext continues after its short last block")
        view = memoryview(data)
        while view:
            take = min(BLOCK - self._fill, len(view))
            self._partial.update(view[:take])
            self._fill += take
            view = view[take:]
            if self._fill == BLOCK:
                self._list.update(self._partial.digest())
                self._partial, self._fill = hashlib.sha256(), 0
        self.length += len(data)

    update = add  # so it can stand where a hashlib object is expected

    def digest(self):
        final = self._list.copy()
        if self._fill:
            final.update(self._partial.digest())
        return final.digest()

    def hexdigest(self):
        return self.digest().hex()


def block_sha256(block):
    """SHA-256 of one block, for worker threads (hashlib releases the GIL)."""
    return hashlib.sha256(block).digest()
