"""Reading an archive back and checking it end to end: zg-verify's work, and zg-drill's where it
does not receive."""

import hashlib

from ..errors import CorruptArchiveError, IntegrityError
from ..format import archive
from ..format.header import FOOTER, footer_ok
from ..plumbing.pipes import IO_SIZE
from .watch import NOBODY, Counted


class _Hashing:
    """Pass-through reader that hashes and remembers the last footer-sized bytes."""

    def __init__(self, raw):
        self.raw, self.digest, self.length, self.tail = raw, hashlib.sha256(), 0, b""

    def read(self, n=-1):
        data = self.raw.read(n)
        self.digest.update(data)
        self.length += len(data)
        self.tail = (self.tail + data[-FOOTER.size:])[-FOOTER.size:]
        return data

    def close(self):
        self.raw.close()


def verify_archive(store, row, idents, n_jobs, signers=(), watch=NOBODY):
    """Read archive ``row`` back from ``store`` and check it end to end; returns its length.
    With ``idents`` every chunk is authenticated and the trailer's length and plaintext SHA-256
    checked (a restore's work without `zfs receive`); without, the store's checksums, the footer
    and the SHA-256 recorded at upload.  Raises IntegrityError / CorruptArchiveError."""
    reader = _Hashing(Counted(store.open_read(row.id, jobs=n_jobs, recorded=row), watch))
    try:
        if idents:
            archive.decrypt(reader, None, idents, signers=signers)
        else:
            while reader.read(IO_SIZE):
                pass
            if row.meta.format and not footer_ok(reader.tail, reader.length):
                raise CorruptArchiveError(f"{row.id}: archive is truncated (no valid footer)")
    finally:
        reader.close()
    if row.sha256 and reader.digest.hexdigest() != row.sha256:
        raise IntegrityError(f"{row.id}: SHA-256 differs from the one recorded at upload")
    return reader.length
