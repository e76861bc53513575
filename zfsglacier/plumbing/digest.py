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

    def add_blocks(self, size, digests):
        """Add ``size`` bytes hashed elsewhere as ``block_digests`` of them; False if not at a
        block boundary (nothing added)."""
        if self._fill or self._closed or len(digests) != -(-size // BLOCK):
            return False
        for i, d in enumerate(digests):
            self.add_block(min(BLOCK, size - i * BLOCK), d)
        return True

    def add(self, data, digests=None):
        """Add plaintext ``data``; ``digests`` (its block_digests) save hashing it again when
        ``data`` starts at a block boundary."""
        if digests is not None and data and self.add_blocks(len(data), digests):
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


def block_digests(data):
    """SHA-256 of each BLOCK of ``data`` (a whole number of blocks, or ending the plaintext), for
    worker threads: hashlib releases the GIL."""
    with memoryview(data) as view:
        return [hashlib.sha256(view[i:i + BLOCK]).digest() for i in range(0, len(data), BLOCK)]
